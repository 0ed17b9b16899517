//! Reference batch normalisation and optimizer updates: two-pass statistics and every
//! update in `f64`, rounded once.

use crate::error::KernelError;
use crate::params::{BatchNormParams, check_len};

fn check(
    p: &BatchNormParams,
    (arg, len): (&'static str, usize),
    per_channel: &[(&'static str, usize)],
) -> Result<usize, KernelError> {
    let n = p.len()?;
    check_len(arg, n, len)?;
    for &(arg, len) in per_channel {
        check_len(arg, p.channels, len)?;
    }
    Ok(n)
}

/// Channel `ch`'s values, sample by sample.
fn values<'a>(p: &BatchNormParams, x: &'a [f32], ch: usize) -> impl Iterator<Item = f64> + 'a {
    let (c, hw) = (p.channels, p.plane);
    (0..p.batch).flat_map(move |i| x[(i * c + ch) * hw..][..hw].iter().map(|&v| f64::from(v)))
}

/// Mean and biased variance of channel `ch`, two passes in `f64`.
fn moments(p: &BatchNormParams, x: &[f32], ch: usize) -> (f64, f64) {
    let count = (p.batch * p.plane) as f64;
    let mean = values(p, x, ch).sum::<f64>() / count;
    let var = values(p, x, ch)
        .map(|v| (v - mean) * (v - mean))
        .sum::<f64>()
        / count;
    (mean, var)
}

/// [`crate::batch_norm_forward`]'s oracle (the clamp `p.act` applied to the rounded
/// value).
///
/// # Errors
/// As [`crate::batch_norm_forward`].
pub fn batch_norm_forward(
    p: &BatchNormParams,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    stats: &mut [f32],
) -> Result<(), KernelError> {
    let n = check(
        p,
        ("x", x.len()),
        &[("gamma", gamma.len()), ("beta", beta.len())],
    )?;
    check_len("y", n, y.len())?;
    check_len("stats", 3 * p.channels, stats.len())?;
    let (lo, hi) = p.act.bounds()?;
    let (c, hw) = (p.channels, p.plane);
    for ch in 0..c {
        let (mean, var) = moments(p, x, ch);
        let invstd = 1.0 / libm::sqrt(var + f64::from(p.eps));
        stats[ch] = mean as f32;
        stats[c + ch] = invstd as f32;
        stats[2 * c + ch] = var as f32;
        for i in 0..p.batch {
            let o = (i * c + ch) * hw;
            for (yv, &xv) in y[o..o + hw].iter_mut().zip(&x[o..o + hw]) {
                let v =
                    (f64::from(xv) - mean) * invstd * f64::from(gamma[ch]) + f64::from(beta[ch]);
                *yv = super::clamp(v as f32, lo, hi);
            }
        }
    }
    Ok(())
}

/// [`crate::batch_norm_forward_inference`]'s oracle.
///
/// # Errors
/// As [`crate::batch_norm_forward_inference`].
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
    let n = check(
        p,
        ("x", x.len()),
        &[
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("mean", mean.len()),
            ("var", var.len()),
        ],
    )?;
    check_len("y", n, y.len())?;
    let (lo, hi) = p.act.bounds()?;
    let (c, hw) = (p.channels, p.plane);
    for ch in 0..c {
        let invstd = 1.0 / libm::sqrt(f64::from(var[ch]) + f64::from(p.eps));
        for i in 0..p.batch {
            let o = (i * c + ch) * hw;
            for (yv, &xv) in y[o..o + hw].iter_mut().zip(&x[o..o + hw]) {
                let v = (f64::from(xv) - f64::from(mean[ch])) * invstd * f64::from(gamma[ch])
                    + f64::from(beta[ch]);
                *yv = super::clamp(v as f32, lo, hi);
            }
        }
    }
    Ok(())
}

/// [`crate::batch_norm_backward`]'s oracle: `dgamma = sum(gy * xhat)`, `dbeta = sum(gy)`,
/// `dx = gamma * invstd * (gy - mean(gy) - xhat * mean(gy * xhat))`, from the statistics
/// recomputed in `f64` (`stats` is checked for its length only).
///
/// # Errors
/// As [`crate::batch_norm_backward`].
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
    let n = check(
        p,
        ("x", x.len()),
        &[
            ("gamma", gamma.len()),
            ("grad_gamma", grad_gamma.len()),
            ("grad_beta", grad_beta.len()),
        ],
    )?;
    check_len("grad_out", n, grad_out.len())?;
    if let Some(g) = grad_in.as_deref() {
        check_len("grad_in", n, g.len())?;
    }
    check_len("stats", 3 * p.channels, stats.len())?;
    let (c, hw) = (p.channels, p.plane);
    let count = (p.batch * hw) as f64;
    for ch in 0..c {
        let (mean, var) = moments(p, x, ch);
        let invstd = 1.0 / libm::sqrt(var + f64::from(p.eps));
        let xhat = |v: f64| (v - mean) * invstd;
        let sg: f64 = values(p, grad_out, ch).sum();
        let sgx: f64 = values(p, grad_out, ch)
            .zip(values(p, x, ch))
            .map(|(g, v)| g * xhat(v))
            .sum();
        grad_gamma[ch] = sgx as f32;
        grad_beta[ch] = sg as f32;
        if let Some(gx) = grad_in.as_deref_mut() {
            let k = f64::from(gamma[ch]) * invstd;
            for i in 0..p.batch {
                let o = (i * c + ch) * hw;
                for j in o..o + hw {
                    let (g, v) = (f64::from(grad_out[j]), f64::from(x[j]));
                    gx[j] = (k * (g - sg / count - xhat(v) * sgx / count)) as f32;
                }
            }
        }
    }
    Ok(())
}

/// [`crate::batch_norm_fold`]'s oracle.
///
/// # Errors
/// As [`crate::batch_norm_fold`].
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
    check(
        &p,
        ("weight", weight.len()),
        &[
            ("bias", bias.len()),
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("mean", mean.len()),
            ("var", var.len()),
        ],
    )?;
    for ch in 0..channels {
        let s = f64::from(gamma[ch]) / libm::sqrt(f64::from(var[ch]) + f64::from(eps));
        for w in &mut weight[ch * per_channel..(ch + 1) * per_channel] {
            *w = (f64::from(*w) * s) as f32;
        }
        bias[ch] = (f64::from(bias[ch]) * s + f64::from(beta[ch]) - f64::from(mean[ch]) * s) as f32;
    }
    Ok(())
}

/// [`crate::sgd_step`]'s oracle.
///
/// # Errors
/// As [`crate::sgd_step`].
pub fn sgd_step(
    p: &crate::params::SgdParams,
    w: &mut [f32],
    g: &[f32],
    momentum_buf: Option<&mut [f32]>,
) -> Result<(), KernelError> {
    crate::params::nonzero(w.len(), "w")?;
    check_len("g", w.len(), g.len())?;
    let (lr, wd, mu) = (
        f64::from(p.lr),
        f64::from(p.weight_decay),
        f64::from(p.momentum),
    );
    match momentum_buf {
        None if p.momentum != 0.0 => Err(KernelError::InvalidParameter(
            "SGD with momentum needs its buffer",
        )),
        None => {
            for (w, &d) in w.iter_mut().zip(g) {
                let wv = f64::from(*w);
                *w = (wv - lr * (f64::from(d) + wd * wv)) as f32;
            }
            Ok(())
        }
        Some(m) => {
            check_len("momentum_buf", w.len(), m.len())?;
            for ((w, &d), m) in w.iter_mut().zip(g).zip(m) {
                let wv = f64::from(*w);
                let d = f64::from(d) + wd * wv;
                let mv = if p.first { d } else { mu * f64::from(*m) + d };
                *m = mv as f32;
                let u = if p.nesterov { d + mu * mv } else { mv };
                *w = (wv - lr * u) as f32;
            }
            Ok(())
        }
    }
}

/// [`crate::adam_step`]'s oracle (its bias corrections as the parameters give them).
///
/// # Errors
/// As [`crate::adam_step`].
pub fn adam_step(
    p: &crate::params::AdamParams,
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<(), KernelError> {
    crate::params::nonzero(w.len(), "w")?;
    check_len("g", w.len(), g.len())?;
    check_len("m", w.len(), m.len())?;
    check_len("v", w.len(), v.len())?;
    let f = f64::from;
    let (lr, wd, b1, b2) = (f(p.lr), f(p.weight_decay), f(p.beta1), f(p.beta2));
    for (((w, &d), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
        let mut wv = f(*w);
        let d = if p.decoupled {
            wv *= 1.0 - lr * wd;
            f(d)
        } else {
            f(d) + wd * wv
        };
        let mv = b1 * f(*m) + (1.0 - b1) * d;
        let vv = b2 * f(*v) + (1.0 - b2) * d * d;
        *m = mv as f32;
        *v = vv as f32;
        *w = (wv - f(p.step_size) * mv / (libm::sqrt(vv) / f(p.bc2_sqrt) + f(p.eps))) as f32;
    }
    Ok(())
}
