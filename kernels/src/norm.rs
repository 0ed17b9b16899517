//! Batch normalisation over NCHW data (PyTorch's `nn.BatchNorm2d`): the training forward
//! pass (batch statistics), the inference forward pass (running statistics), the
//! backward pass, and the fold of inference batch normalisation into the layer before it.
//!
//! Per channel, the statistics are taken over the batch and the plane: sums of `x - shift`
//! and its square per plane in `f32` vectors, across planes in `f64`; the shift (the
//! channel's first value) keeps the one-pass variance from cancelling when the mean is
//! large. Both passes run over the data in memory order (image by image, within a block
//! of up to 64 channels whose sums are kept), for the prefetchers: channel by channel, the
//! planes lie a whole image apart (the `fmnist` preset's first batch normalisation, 64
//! images of 32 x 28 x 28 on an AMD Zen 5: forward 1.0 -> 0.35 ms, backward 1.4 -> 0.64,
//! with the variant's vectors), and the forward passes take an optional clamp
//! ([`BatchNormParams::act`]: a ReLU fused into the store).
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

use crate::arch;
use crate::error::KernelError;
use crate::params::{BatchNormParams, check_len};
use crate::simd::{LANES, clamp1};
use crate::vector::{Arith, Vf32};

/// Checks the per-channel slices.
fn check_channels(p: &BatchNormParams, named: &[(&'static str, usize)]) -> Result<(), KernelError> {
    for &(arg, len) in named {
        check_len(arg, p.channels, len)?;
    }
    Ok(())
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
    let bounds = p.act.bounds()?;
    arch::dispatch!(forward_on(
        p: &BatchNormParams,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        y: &mut [f32],
        stats: &mut [f32],
        bounds: (f32, f32)
    ));
    Ok(())
}

/// [`batch_norm_forward`] on the variant of `V`, arguments checked. In blocks of up to
/// [`CB`] channels: the block's planes summed, then scaled, each pass over the planes in
/// memory order ([`block_planes`]).
#[inline(always)]
fn forward_on<V: Vf32>(
    p: &BatchNormParams,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    stats: &mut [f32],
    bounds: (f32, f32),
) {
    let (c, hw) = (p.channels, p.plane);
    let count = (p.batch * hw) as f64;
    let mut c0 = 0;
    while c0 < c {
        let cn = (c - c0).min(CB);
        let (mut s, mut ss) = ([0.0f64; CB], [0.0f64; CB]);
        block_planes(p, c0, cn, |o, j| {
            let (a, q) = plane_sums::<V>(&x[o..o + hw], x[(c0 + j) * hw]);
            s[j] += a;
            ss[j] += q;
        });
        let mut ab = [(0.0f32, 0.0f32); CB];
        for j in 0..cn {
            let ch = c0 + j;
            let m = s[j] / count;
            let var = (ss[j] / count - m * m).max(0.0);
            let mean = f64::from(x[ch * hw]) + m;
            let invstd = 1.0 / libm::sqrt(var + f64::from(p.eps));
            stats[ch] = mean as f32;
            stats[c + ch] = invstd as f32;
            stats[2 * c + ch] = var as f32;
            ab[j] = scale_and_shift(gamma[ch], beta[ch], mean as f32, invstd as f32);
        }
        block_planes(p, c0, cn, |o, j| {
            let (scale, shift) = ab[j];
            scale_plane::<V>(&x[o..o + hw], &mut y[o..o + hw], scale, shift, bounds);
        });
        c0 += cn;
    }
}

/// Channels whose statistics a pass gathers at once, image by image (memory order).
const CB: usize = 64;

/// Calls `f(offset, j)` for every plane of the channels `c0..c0 + cn` (`j` the channel's
/// index in the block, `offset` its plane's first value), image by image: the planes in
/// memory order. Channel by channel, each plane lay a whole image from the last and the
/// prefetchers started over on every one (the `fmnist` preset's first batch norm,
/// forward: 0.74 -> 0.35 ms).
#[inline(always)]
fn block_planes(p: &BatchNormParams, c0: usize, cn: usize, mut f: impl FnMut(usize, usize)) {
    for i in 0..p.batch {
        for j in 0..cn {
            f((i * p.channels + c0 + j) * p.plane, j);
        }
    }
}

/// Inference forward pass with the running statistics: `y = (x - mean) / sqrt(var + eps)
/// * gamma + beta`, clamped by `p.act`.
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
    let bounds = p.act.bounds()?;
    arch::dispatch!(inference_on(
        p: &BatchNormParams,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
        y: &mut [f32],
        bounds: (f32, f32)
    ));
    Ok(())
}

/// [`batch_norm_forward_inference`] on the variant of `V`, arguments checked.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn inference_on<V: Vf32>(
    p: &BatchNormParams,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    y: &mut [f32],
    bounds: (f32, f32),
) {
    let hw = p.plane;
    let mut c0 = 0;
    while c0 < p.channels {
        let cn = (p.channels - c0).min(CB);
        let mut ab = [(0.0f32, 0.0f32); CB];
        for (j, st) in ab.iter_mut().enumerate().take(cn) {
            let ch = c0 + j;
            let invstd = 1.0 / libm::sqrtf(var[ch] + p.eps);
            *st = scale_and_shift(gamma[ch], beta[ch], mean[ch], invstd);
        }
        block_planes(p, c0, cn, |o, j| {
            let (scale, shift) = ab[j];
            scale_plane::<V>(&x[o..o + hw], &mut y[o..o + hw], scale, shift, bounds);
        });
        c0 += cn;
    }
}

/// The `y = x * scale + shift` that normalises with `mean` and `invstd` and applies
/// `gamma` and `beta`.
fn scale_and_shift(gamma: f32, beta: f32, mean: f32, invstd: f32) -> (f32, f32) {
    let scale = gamma * invstd;
    (scale, beta - mean * scale)
}

/// `y = clamp(x * scale + shift, lo, hi)` over one plane.
#[inline(always)]
fn scale_plane<V: Vf32>(xs: &[f32], ys: &mut [f32], scale: f32, shift: f32, (lo, hi): (f32, f32)) {
    let (sv, tv) = (V::splat(scale), V::splat(shift));
    let (lov, hiv) = (V::splat(lo), V::splat(hi));
    let mut xc = xs.chunks_exact(LANES);
    let mut yc = ys.chunks_exact_mut(LANES);
    for (xv, yv) in (&mut xc).zip(&mut yc) {
        V::load(xv).mul_add(sv, tv).clamp(lov, hiv).store(yv);
    }
    for (yv, &xv) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *yv = clamp1(Arith::mul_add(xv, scale, shift), lo, hi);
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
    grad_in: Option<&mut [f32]>,
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
    let gx = grad_in;
    arch::dispatch!(backward_on(
        p: &BatchNormParams,
        x: &[f32],
        grad_out: &[f32],
        gamma: &[f32],
        stats: &[f32],
        gx: Option<&mut [f32]>,
        grad_gamma: &mut [f32],
        grad_beta: &mut [f32]
    ));
    Ok(())
}

/// [`batch_norm_backward`] on the variant of `V`, arguments checked; in blocks of
/// channels, the planes in memory order, as [`forward_on`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_on<V: Vf32>(
    p: &BatchNormParams,
    x: &[f32],
    grad_out: &[f32],
    gamma: &[f32],
    stats: &[f32],
    mut grad_in: Option<&mut [f32]>,
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) {
    let (c, hw) = (p.channels, p.plane);
    let count = (p.batch * hw) as f32;
    let mut c0 = 0;
    while c0 < c {
        let cn = (c - c0).min(CB);
        // sum(gy) and sum(gy * (x - mean)) per channel of the block
        let (mut sg, mut sgx) = ([0.0f64; CB], [0.0f64; CB]);
        block_planes(p, c0, cn, |o, j| {
            let (a, q) = dot_sums::<V>(&grad_out[o..o + hw], &x[o..o + hw], stats[c0 + j]);
            sg[j] += a;
            sgx[j] += q;
        });
        // (k, a, b): gx = k * (g - mg - (x - mean) * invstd * mgx) = (k*g + b) + (x -
        // mean) * a. `x - mean` first: folding `a * mean` into the constant would cancel
        // two large products when the mean is large against the spread.
        let mut kab = [(0.0f32, 0.0f32, 0.0f32); CB];
        for j in 0..cn {
            let ch = c0 + j;
            let invstd = stats[c + ch];
            // scaled by invstd: sum(gy * xhat)
            let sgx = sgx[j] * f64::from(invstd);
            grad_gamma[ch] = sgx as f32;
            grad_beta[ch] = sg[j] as f32;
            let k = gamma[ch] * invstd;
            let (mg, mgx) = (sg[j] as f32 / count, sgx as f32 / count);
            kab[j] = (k, -k * invstd * mgx, -k * mg);
        }
        if let Some(gx) = grad_in.as_deref_mut() {
            block_planes(p, c0, cn, |o, j| {
                let (ds, gs, xs) = (&mut gx[o..o + hw], &grad_out[o..o + hw], &x[o..o + hw]);
                input_grad_plane::<V>(ds, gs, xs, stats[c0 + j], kab[j]);
            });
        }
        c0 += cn;
    }
}

/// `gx = (k * g + b) + (x - mean) * a` over one plane.
#[inline(always)]
fn input_grad_plane<V: Vf32>(
    ds: &mut [f32],
    gs: &[f32],
    xs: &[f32],
    mean: f32,
    (k, a, b): (f32, f32, f32),
) {
    let (kv, av, bv, mv) = (V::splat(k), V::splat(a), V::splat(b), V::splat(mean));
    let mut dc = ds.chunks_exact_mut(LANES);
    let (mut gc, mut xc) = (gs.chunks_exact(LANES), xs.chunks_exact(LANES));
    for ((d, g), xv) in (&mut dc).zip(&mut gc).zip(&mut xc) {
        let kgb = V::load(g).mul_add(kv, bv);
        V::load(xv).sub(mv).mul_add(av, kgb).store(d);
    }
    for ((d, &g), &xv) in dc
        .into_remainder()
        .iter_mut()
        .zip(gc.remainder())
        .zip(xc.remainder())
    {
        *d = Arith::mul_add(xv - mean, a, Arith::mul_add(g, k, b));
    }
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

/// `(sum(x - shift), sum((x - shift)^2))` over a plane, in 8 f32 lanes (two vectors of
/// each at a time: the adds' latency, not memory, bounds one).
#[inline(always)]
fn plane_sums<V: Vf32>(x: &[f32], shift: f32) -> (f64, f64) {
    let sh = V::splat(shift);
    let z = V::splat(0.0);
    let (mut s, mut q) = ([z; 2], [z; 2]);
    let mut pairs = x.chunks_exact(2 * LANES);
    for v in &mut pairs {
        for (j, (s, q)) in s.iter_mut().zip(q.iter_mut()).enumerate() {
            let d = V::load(&v[j * LANES..]).sub(sh);
            *s = s.add(d);
            *q = d.mul_add(d, *q);
        }
    }
    let (mut s, mut q) = (s[0].add(s[1]), q[0].add(q[1]));
    let mut rest = pairs.remainder().chunks_exact(LANES);
    for v in &mut rest {
        let d = V::load(v).sub(sh);
        s = s.add(d);
        q = d.mul_add(d, q);
    }
    let (mut s, mut q) = (sum_lanes(s), sum_lanes(q));
    for &v in rest.remainder() {
        let d = f64::from(v - shift);
        s += d;
        q += d * d;
    }
    (s, q)
}

/// `(sum(g), sum(g * (x - mean)))` over a plane, in 8 f32 lanes (two vectors of each at
/// a time).
#[inline(always)]
fn dot_sums<V: Vf32>(g: &[f32], x: &[f32], mean: f32) -> (f64, f64) {
    let m = V::splat(mean);
    let z = V::splat(0.0);
    let (mut s, mut q) = ([z; 2], [z; 2]);
    let (mut gp, mut xp) = (g.chunks_exact(2 * LANES), x.chunks_exact(2 * LANES));
    for (a, b) in (&mut gp).zip(&mut xp) {
        for (j, (s, q)) in s.iter_mut().zip(q.iter_mut()).enumerate() {
            let gv = V::load(&a[j * LANES..]);
            *s = s.add(gv);
            *q = gv.mul_add(V::load(&b[j * LANES..]).sub(m), *q);
        }
    }
    let (mut s, mut q) = (s[0].add(s[1]), q[0].add(q[1]));
    let (mut gc, mut xc) = (
        gp.remainder().chunks_exact(LANES),
        xp.remainder().chunks_exact(LANES),
    );
    for (a, b) in (&mut gc).zip(&mut xc) {
        let gv = V::load(a);
        s = s.add(gv);
        q = gv.mul_add(V::load(b).sub(m), q);
    }
    let (mut s, mut q) = (sum_lanes(s), sum_lanes(q));
    for (&a, &b) in gc.remainder().iter().zip(xc.remainder()) {
        s += f64::from(a);
        q += f64::from(a * (b - mean));
    }
    (s, q)
}

/// The sum of a vector's lanes, in `f64`.
#[inline(always)]
fn sum_lanes<V: Vf32>(v: V) -> f64 {
    v.to_array().iter().map(|&x| f64::from(x)).sum()
}
