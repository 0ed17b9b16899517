//! Batch normalisation over the channels of NCHW images (PyTorch's `nn.BatchNorm2d`).

use super::{LayerState, Mode, Shape};
use cnnkit_kernels as k;

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

    /// Forward pass of `b` samples, clamped by `act` as it stores (a ReLU fused).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        b: usize,
        input: Shape,
        x: &[f32],
        y: &mut [f32],
        st: &mut LayerState,
        mode: Mode,
        act: k::Activation,
    ) -> Result<()> {
        let p = self.params(b, input).with_activation(act);
        let (gamma, beta) = (self.weight.data(), self.bias.data());
        match mode {
            Mode::Train { .. } => k::batch_norm_forward(&p, x, gamma, beta, y, &mut st.stats)?,
            Mode::Eval => k::batch_norm_forward_inference(
                &p,
                x,
                gamma,
                beta,
                self.running_mean.data(),
                self.running_var.data(),
                y,
            )?,
        }
        Ok(())
    }

    pub(super) fn backward(
        &self,
        b: usize,
        input: Shape,
        x: &[f32],
        gy: &[f32],
        gx: Option<&mut [f32]>,
        st: &mut LayerState,
    ) -> Result<()> {
        let p = self.params(b, input);
        let (gg, gb) = super::two(&mut st.grads);
        k::batch_norm_backward(&p, x, gy, self.weight.data(), &st.stats, gx, gg, gb)?;
        Ok(())
    }

    /// The kernels' geometry for `b` samples of `input`.
    fn params(&self, b: usize, input: Shape) -> k::BatchNormParams {
        let (n, c, hw) = Self::planes(b, input);
        k::BatchNormParams::new(n, c, hw).with_eps(self.eps)
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
