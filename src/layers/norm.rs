//! Batch normalisation over the channels of NCHW images (PyTorch's `nn.BatchNorm2d`).

use super::{LayerState, Mode, Shape};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `nn.BatchNorm2d(c)` with PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`, affine,
/// running statistics tracked. In training each shard of a batch is normalised with its
/// own statistics (as PyTorch's `DataParallel` without `SyncBatchNorm`); the running
/// statistics are updated once per step from the statistics of the whole batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm2d {
    /// Scale `gamma`, `[c]`, initialised to 1.
    pub weight: Tensor,
    /// Shift `beta`, `[c]`, initialised to 0.
    pub bias: Tensor,
    /// Running mean, `[c]`.
    pub running_mean: Tensor,
    /// Running (unbiased) variance, `[c]`.
    pub running_var: Tensor,
    /// Training steps seen (saved as PyTorch's int64 `num_batches_tracked`).
    pub num_batches_tracked: i64,
    /// Added to the variance.
    pub eps: f32,
    /// Weight of the new batch in the running statistics.
    pub momentum: f32,
}

impl BatchNorm2d {
    /// A fresh layer over `c` channels.
    ///
    /// # Errors
    /// When `c` is 0.
    pub fn new(c: usize) -> Result<Self> {
        if c == 0 || c > super::MAX_TENSOR {
            return Err(Error::invalid(format!(
                "batchnorm needs 1 to 2^28 channels, not {c}"
            )));
        }
        Ok(BatchNorm2d {
            weight: Tensor::from_vec(vec![c], vec![1.0; c])?,
            bias: Tensor::zeros(vec![c])?,
            running_mean: Tensor::zeros(vec![c])?,
            running_var: Tensor::from_vec(vec![c], vec![1.0; c])?,
            num_batches_tracked: 0,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.weight.len()
    }

    fn planes(b: usize, input: Shape) -> (usize, usize, usize) {
        match input {
            Shape::Image { c, h, w } => (b, c, h * w),
            Shape::Flat(n) => (b, n, 1),
        }
    }

    pub(super) fn forward(
        &self,
        b: usize,
        input: Shape,
        x: &[f32],
        y: &mut [f32],
        st: &mut LayerState,
        mode: Mode,
    ) -> Result<()> {
        let (n, c, hw) = Self::planes(b, input);
        if x.len() != n * c * hw || y.len() != x.len() {
            return Err(Error::invalid(
                "batchnorm: slice lengths do not fit the shape",
            ));
        }
        let gamma = self.weight.data();
        let beta = self.bias.data();
        for ch in 0..c {
            let (mean, invstd) = match mode {
                Mode::Eval => (
                    self.running_mean.data()[ch],
                    1.0 / (self.running_var.data()[ch] + self.eps).sqrt(),
                ),
                Mode::Train { .. } => {
                    // sums of (x - shift) and its square, per plane in f32 vectors, across
                    // planes in f64; the shift (the channel's first value) keeps the
                    // one-pass variance from cancelling when the mean is large
                    let shift = x[ch * hw];
                    let (mut s, mut ss) = (0.0f64, 0.0f64);
                    for i in 0..n {
                        let (a, q) = plane_sums(&x[(i * c + ch) * hw..][..hw], shift);
                        s += a;
                        ss += q;
                    }
                    let count = (n * hw) as f64;
                    let m = s / count;
                    let var = (ss / count - m * m).max(0.0);
                    let mean = f64::from(shift) + m;
                    let invstd = 1.0 / (var + f64::from(self.eps)).sqrt();
                    st.stats[ch] = mean as f32;
                    st.stats[c + ch] = invstd as f32;
                    st.stats[2 * c + ch] = var as f32;
                    (mean as f32, invstd as f32)
                }
            };
            let scale = gamma[ch] * invstd;
            let shift = beta[ch] - mean * scale;
            for i in 0..n {
                let o = (i * c + ch) * hw;
                for (yv, &xv) in y[o..o + hw].iter_mut().zip(&x[o..o + hw]) {
                    *yv = xv * scale + shift;
                }
            }
        }
        Ok(())
    }

    pub(super) fn backward(
        &self,
        b: usize,
        input: Shape,
        x: &[f32],
        gy: &[f32],
        mut gx: Option<&mut [f32]>,
        st: &mut LayerState,
    ) -> Result<()> {
        let (n, c, hw) = Self::planes(b, input);
        let count = (n * hw) as f32;
        let gamma = self.weight.data();
        let (gg, gb) = super::two(&mut st.grads);
        for ch in 0..c {
            let (mean, invstd) = (st.stats[ch], st.stats[c + ch]);
            // sum(gy) and sum(gy * (x - mean)), then scaled by invstd: sum(gy * xhat)
            let (mut sg, mut sgx) = (0.0f64, 0.0f64);
            for i in 0..n {
                let o = (i * c + ch) * hw;
                let (a, q) = dot_sums(&gy[o..o + hw], &x[o..o + hw], mean);
                sg += a;
                sgx += q;
            }
            let sgx = sgx * f64::from(invstd);
            gg[ch] = sgx as f32;
            gb[ch] = sg as f32;
            if let Some(gx) = gx.as_deref_mut() {
                let k = gamma[ch] * invstd;
                let (mg, mgx) = (sg as f32 / count, sgx as f32 / count);
                // gx = k * (g - mg - (x - mean) * invstd * mgx) = k*g + (a*x + b)
                let a = -k * invstd * mgx;
                let bb = -k * mg - a * mean;
                for i in 0..n {
                    let o = (i * c + ch) * hw;
                    for ((d, &g), &xv) in gx[o..o + hw]
                        .iter_mut()
                        .zip(&gy[o..o + hw])
                        .zip(&x[o..o + hw])
                    {
                        *d = k * g + (a * xv + bb);
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds one shard's batch statistics (from its [`LayerState`], `n` samples of
    /// `hw` pixels) to `acc`: per channel, the count-weighted sum of means and of
    /// second moments. `acc` holds `2 * channels` values.
    pub fn accumulate(&self, st: &LayerState, n: usize, hw: usize, acc: &mut [f64]) {
        let c = self.channels();
        let w = (n * hw) as f64;
        for ch in 0..c {
            let mean = f64::from(st.stats[ch]);
            acc[ch] += w * mean;
            acc[c + ch] += w * (f64::from(st.stats[2 * c + ch]) + mean * mean);
        }
    }

    /// Folds the statistics gathered by [`BatchNorm2d::accumulate`] over `count` values
    /// per channel into the running statistics (momentum update, unbiased variance, as
    /// PyTorch does).
    pub fn update_running(&mut self, acc: &[f64], count: usize) {
        let c = self.channels();
        if count == 0 {
            return;
        }
        let m = f64::from(self.momentum);
        let n = count as f64;
        for ch in 0..c {
            let mean = acc[ch] / n;
            let var = (acc[c + ch] / n - mean * mean).max(0.0);
            let unbiased = if count > 1 { var * n / (n - 1.0) } else { var };
            let rm = &mut self.running_mean.data_mut()[ch];
            *rm = ((1.0 - m) * f64::from(*rm) + m * mean) as f32;
            let rv = &mut self.running_var.data_mut()[ch];
            *rv = ((1.0 - m) * f64::from(*rv) + m * unbiased) as f32;
        }
        self.num_batches_tracked += 1;
    }
}

/// `(sum(x - shift), sum((x - shift)^2))` over a plane, in 8 f32 lanes.
fn plane_sums(x: &[f32], shift: f32) -> (f64, f64) {
    use wide::f32x8;
    let sh = f32x8::splat(shift);
    let (mut s, mut q) = (f32x8::ZERO, f32x8::ZERO);
    let mut chunks = x.chunks_exact(8);
    for v in &mut chunks {
        let d = f32x8::from(<[f32; 8]>::try_from(v).expect("8 lanes")) - sh;
        s += d;
        q += d * d;
    }
    let (mut s, mut q) = (f64::from(s.reduce_add()), f64::from(q.reduce_add()));
    for &v in chunks.remainder() {
        let d = f64::from(v - shift);
        s += d;
        q += d * d;
    }
    (s, q)
}

/// `(sum(g), sum(g * (x - mean)))` over a plane, in 8 f32 lanes.
fn dot_sums(g: &[f32], x: &[f32], mean: f32) -> (f64, f64) {
    use wide::f32x8;
    let m = f32x8::splat(mean);
    let (mut s, mut q) = (f32x8::ZERO, f32x8::ZERO);
    let (mut gc, mut xc) = (g.chunks_exact(8), x.chunks_exact(8));
    for (a, b) in (&mut gc).zip(&mut xc) {
        let a = f32x8::from(<[f32; 8]>::try_from(a).expect("8 lanes"));
        let b = f32x8::from(<[f32; 8]>::try_from(b).expect("8 lanes"));
        s += a;
        q += a * (b - m);
    }
    let (mut s, mut q) = (f64::from(s.reduce_add()), f64::from(q.reduce_add()));
    for (&a, &b) in gc.remainder().iter().zip(xc.remainder()) {
        s += f64::from(a);
        q += f64::from(a * (b - mean));
    }
    (s, q)
}
