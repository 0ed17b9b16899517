//! Batch normalisation over NCHW data (PyTorch's `nn.BatchNorm2d`): the training forward
//! pass (batch statistics), the inference forward pass (running statistics), the
//! backward pass, and the fold of inference batch normalisation into the layer before it.
//!
//! Per channel, the statistics are taken over the batch and the plane: sums of `x - shift`
//! and its square per plane in `f32` vectors, across planes in `f64`; the shift (the
//! channel's first value) keeps the one-pass variance from cancelling when the mean is
//! large.
//!
//! ```
//! use cnnkit_kernels::{BatchNormParams, batch_norm_forward};
//! let p = BatchNormParams::new(2, 1, 2); // 2 images of 1 channel of 2 pixels
//! let x = [1.0, 3.0, 5.0, 7.0];
//! let (mut y, mut stats) = ([0.0; 4], [0.0; 3]);
//! batch_norm_forward(&p, &x, &[1.0], &[0.0], &mut y, &mut stats).unwrap();
//! assert_eq!(stats[0], 4.0); // mean
//! assert!((y[0] + 1.3416).abs() < 1e-4); // (1 - 4) / sqrt(5 + 1e-5)
//! ```

use crate::error::KernelError;
use crate::params::{BatchNormParams, check_len};
use crate::simd::f32x8;

/// Checks the per-channel slices.
fn check_channels(p: &BatchNormParams, named: &[(&'static str, usize)]) -> Result<(), KernelError> {
    for &(arg, len) in named {
        check_len(arg, p.channels, len)?;
    }
    Ok(())
}

/// The planes of channel `ch`, sample by sample.
fn planes<'a>(p: &BatchNormParams, x: &'a [f32], ch: usize) -> impl Iterator<Item = &'a [f32]> {
    let (c, hw) = (p.channels, p.plane);
    (0..p.batch).map(move |i| &x[(i * c + ch) * hw..][..hw])
}

/// Training forward pass: `y = (x - mean) / sqrt(var + eps) * gamma + beta` with each
/// channel's batch statistics, which go to `stats` (`3 * channels`: the means, the
/// inverse standard deviations, the biased variances) for the backward pass and the
/// running statistics.
///
/// # Errors
/// As [`BatchNormParams::len`]; [`KernelError::LengthMismatch`] for a slice of the wrong
/// length.
pub fn batch_norm_forward(
    p: &BatchNormParams,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    stats: &mut [f32],
) -> Result<(), KernelError> {
    let n = p.len()?;
    check_len("x", n, x.len())?;
    check_len("y", n, y.len())?;
    check_channels(p, &[("gamma", gamma.len()), ("beta", beta.len())])?;
    check_len("stats", 3 * p.channels, stats.len())?;
    let c = p.channels;
    let count = (p.batch * p.plane) as f64;
    for ch in 0..c {
        let shift = x[ch * p.plane];
        let (mut s, mut ss) = (0.0f64, 0.0f64);
        for plane in planes(p, x, ch) {
            let (a, q) = plane_sums(plane, shift);
            s += a;
            ss += q;
        }
        let m = s / count;
        let var = (ss / count - m * m).max(0.0);
        let mean = f64::from(shift) + m;
        let invstd = 1.0 / libm::sqrt(var + f64::from(p.eps));
        stats[ch] = mean as f32;
        stats[c + ch] = invstd as f32;
        stats[2 * c + ch] = var as f32;
        scale_shift(p, x, y, ch, gamma[ch], beta[ch], mean as f32, invstd as f32);
    }
    Ok(())
}

/// Inference forward pass with the running statistics: `y = (x - mean) / sqrt(var + eps)
/// * gamma + beta`.
///
/// # Errors
/// As [`batch_norm_forward`].
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_inference(
    p: &BatchNormParams,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    y: &mut [f32],
) -> Result<(), KernelError> {
    let n = p.len()?;
    check_len("x", n, x.len())?;
    check_len("y", n, y.len())?;
    check_channels(
        p,
        &[
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("mean", mean.len()),
            ("var", var.len()),
        ],
    )?;
    for ch in 0..p.channels {
        let invstd = 1.0 / libm::sqrtf(var[ch] + p.eps);
        scale_shift(p, x, y, ch, gamma[ch], beta[ch], mean[ch], invstd);
    }
    Ok(())
}

/// `y = x * scale + shift` over channel `ch`, `scale = gamma * invstd`.
#[allow(clippy::too_many_arguments)]
fn scale_shift(
    p: &BatchNormParams,
    x: &[f32],
    y: &mut [f32],
    ch: usize,
    gamma: f32,
    beta: f32,
    mean: f32,
    invstd: f32,
) {
    let scale = gamma * invstd;
    let shift = beta - mean * scale;
    let (c, hw) = (p.channels, p.plane);
    for i in 0..p.batch {
        let o = (i * c + ch) * hw;
        for (yv, &xv) in y[o..o + hw].iter_mut().zip(&x[o..o + hw]) {
            *yv = xv * scale + shift;
        }
    }
}

/// Backward pass of [`batch_norm_forward`]: from its input `x`, the `stats` it wrote and
/// the output gradient, the gradients of `gamma` and `beta` (overwritten) and, when asked,
/// of `x` (overwritten).
///
/// # Errors
/// As [`batch_norm_forward`].
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    p: &BatchNormParams,
    x: &[f32],
    grad_out: &[f32],
    gamma: &[f32],
    stats: &[f32],
    mut grad_in: Option<&mut [f32]>,
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) -> Result<(), KernelError> {
    let n = p.len()?;
    check_len("x", n, x.len())?;
    check_len("grad_out", n, grad_out.len())?;
    if let Some(g) = grad_in.as_deref() {
        check_len("grad_in", n, g.len())?;
    }
    check_channels(
        p,
        &[
            ("gamma", gamma.len()),
            ("grad_gamma", grad_gamma.len()),
            ("grad_beta", grad_beta.len()),
        ],
    )?;
    check_len("stats", 3 * p.channels, stats.len())?;
    let (c, hw) = (p.channels, p.plane);
    let count = (p.batch * hw) as f32;
    for ch in 0..c {
        let (mean, invstd) = (stats[ch], stats[c + ch]);
        // sum(gy) and sum(gy * (x - mean)), then scaled by invstd: sum(gy * xhat)
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for (g, xs) in planes(p, grad_out, ch).zip(planes(p, x, ch)) {
            let (a, q) = dot_sums(g, xs, mean);
            sg += a;
            sgx += q;
        }
        let sgx = sgx * f64::from(invstd);
        grad_gamma[ch] = sgx as f32;
        grad_beta[ch] = sg as f32;
        if let Some(gx) = grad_in.as_deref_mut() {
            let k = gamma[ch] * invstd;
            let (mg, mgx) = (sg as f32 / count, sgx as f32 / count);
            // gx = k * (g - mg - (x - mean) * invstd * mgx) = (k*g + b) + (x - mean) * a.
            // `x - mean` first: folding `a * mean` into the constant would cancel two
            // large products when the mean is large against the spread.
            let a = -k * invstd * mgx;
            let b = -k * mg;
            for i in 0..p.batch {
                let o = (i * c + ch) * hw;
                for ((d, &g), &xv) in gx[o..o + hw]
                    .iter_mut()
                    .zip(&grad_out[o..o + hw])
                    .zip(&x[o..o + hw])
                {
                    *d = (k * g + b) + (xv - mean) * a;
                }
            }
        }
    }
    Ok(())
}

/// Folds inference batch normalisation into the layer before it, whose `channels` outputs
/// have `per_channel` weights each (`weight`, `[channels, per_channel]`) and a bias:
/// `w' = w * s`, `b' = b * s + (beta - mean * s)` with `s = gamma / sqrt(var + eps)`, the
/// scale and shift [`batch_norm_forward_inference`] applies.
///
/// # Errors
/// [`KernelError::ZeroSize`]; [`KernelError::LengthMismatch`];
/// [`KernelError::InvalidParameter`] for an `eps` that is not finite and positive.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_fold(
    channels: usize,
    per_channel: usize,
    weight: &mut [f32],
    bias: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Result<(), KernelError> {
    let p = BatchNormParams::new(1, channels, per_channel).with_eps(eps);
    let n = p.len()?;
    check_len("weight", n, weight.len())?;
    check_channels(
        &p,
        &[
            ("bias", bias.len()),
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("mean", mean.len()),
            ("var", var.len()),
        ],
    )?;
    for ch in 0..channels {
        let invstd = 1.0 / libm::sqrtf(var[ch] + eps);
        let scale = gamma[ch] * invstd;
        let shift = beta[ch] - mean[ch] * scale;
        for w in &mut weight[ch * per_channel..(ch + 1) * per_channel] {
            *w *= scale;
        }
        bias[ch] = bias[ch] * scale + shift;
    }
    Ok(())
}

/// `(sum(x - shift), sum((x - shift)^2))` over a plane, in 8 f32 lanes.
fn plane_sums(x: &[f32], shift: f32) -> (f64, f64) {
    let sh = f32x8::splat(shift);
    let (mut s, mut q) = (f32x8::ZERO, f32x8::ZERO);
    let mut chunks = x.chunks_exact(8);
    for v in &mut chunks {
        let mut a = [0.0; 8];
        a.copy_from_slice(v);
        let d = f32x8::from(a) - sh;
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
    let m = f32x8::splat(mean);
    let (mut s, mut q) = (f32x8::ZERO, f32x8::ZERO);
    let (mut gc, mut xc) = (g.chunks_exact(8), x.chunks_exact(8));
    for (a, b) in (&mut gc).zip(&mut xc) {
        let (mut av, mut bv) = ([0.0; 8], [0.0; 8]);
        av.copy_from_slice(a);
        bv.copy_from_slice(b);
        let (a, b) = (f32x8::from(av), f32x8::from(bv));
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
