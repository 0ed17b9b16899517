//! Losses: cross-entropy with integer labels fused with log-softmax, and mean squared
//! error. Both average over the batch (PyTorch's `reduction="mean"`).

use crate::error::KernelError;
use crate::params::{check_len, matrix_len, nonzero};
use crate::simd::{LANES, f32x8, load_partial, max, store_partial};
use crate::softmax::{exp_shifted, sum_exp_shifted};

fn check_ce(
    rows: usize,
    classes: usize,
    logits: &[f32],
    labels: &[u32],
) -> Result<(), KernelError> {
    let n = matrix_len(rows, classes)?;
    check_len("logits", n, logits.len())?;
    check_len("labels", rows, labels.len())?;
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes)
    {
        return Err(KernelError::InvalidLabel {
            index,
            label,
            classes,
        });
    }
    Ok(())
}

/// Mean cross-entropy of `logits` (`rows x classes`, unnormalised) against integer
/// `labels`: `mean_r(logsumexp(logits[r]) - logits[r, labels[r]])`.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`], [`KernelError::LengthMismatch`],
/// [`KernelError::InvalidLabel`] for a label `>= classes`.
///
/// ```
/// let loss = cnnkit_kernels::cross_entropy(1, 2, &[0.0, 0.0], &[1]).unwrap();
/// assert!((loss - core::f32::consts::LN_2).abs() < 1e-6);
/// ```
pub fn cross_entropy(
    rows: usize,
    classes: usize,
    logits: &[f32],
    labels: &[u32],
) -> Result<f32, KernelError> {
    check_ce(rows, classes, logits, labels)?;
    let mut total = 0.0_f64;
    for (x, &l) in logits.chunks_exact(classes).zip(labels) {
        let m = max(x);
        total += row_loss(m, libm::logf(sum_exp_shifted(x, m)), x[l as usize]);
    }
    Ok((total / rows as f64) as f32)
}

/// [`cross_entropy`] and its gradient in one pass: returns the mean loss and overwrites
/// `grad` (`rows x classes`) with `(softmax(logits) - onehot(labels)) / rows`.
///
/// # Errors
/// As [`cross_entropy`]; [`KernelError::LengthMismatch`] for `grad`.
pub fn softmax_cross_entropy(
    rows: usize,
    classes: usize,
    logits: &[f32],
    labels: &[u32],
    grad: &mut [f32],
) -> Result<f32, KernelError> {
    check_ce(rows, classes, logits, labels)?;
    check_len("grad", logits.len(), grad.len())?;
    let inv_rows = 1.0 / rows as f32;
    let mut total = 0.0_f64;
    for ((x, g), &l) in logits
        .chunks_exact(classes)
        .zip(grad.chunks_exact_mut(classes))
        .zip(labels)
    {
        let m = max(x);
        let s = exp_shifted(x, m, g);
        total += row_loss(m, libm::logf(s), x[l as usize]);
        let scale = f32x8::splat(inv_rows / s);
        for v in g.chunks_mut(LANES) {
            let r = load_partial(v) * scale;
            store_partial(v, r);
        }
        g[l as usize] -= inv_rows;
    }
    Ok((total / rows as f64) as f32)
}

/// One row's loss, `(max - x[label]) + ln(sum exp(x - max))`, in f64: `max + ln(sum)`
/// in f32 first would round `ln(sum)` away against a large max (found by fuzzing).
#[inline]
fn row_loss(max: f32, ln_sum: f32, x_label: f32) -> f64 {
    (f64::from(max) - f64::from(x_label)) + f64::from(ln_sum)
}

fn check_mse(pred: &[f32], target: &[f32]) -> Result<(), KernelError> {
    nonzero(pred.len(), "pred")?;
    check_len("target", pred.len(), target.len())
}

/// Mean squared error `mean((pred - target)^2)`, summed in f32 vectors of 256 elements
/// and across them in f64.
///
/// # Errors
/// [`KernelError::ZeroSize`] for empty inputs, [`KernelError::LengthMismatch`].
pub fn mse_loss(pred: &[f32], target: &[f32]) -> Result<f32, KernelError> {
    check_mse(pred, target)?;
    let mut total = 0.0_f64;
    for (p, t) in pred.chunks(256).zip(target.chunks(256)) {
        let mut acc = f32x8::ZERO;
        for (a, b) in p.chunks(LANES).zip(t.chunks(LANES)) {
            let d = load_partial(a) - load_partial(b);
            acc = d.mul_add(d, acc);
        }
        total += f64::from(acc.reduce_add());
    }
    Ok((total / pred.len() as f64) as f32)
}

/// Gradient of [`mse_loss`]: `grad = 2 * (pred - target) / n`.
///
/// # Errors
/// As [`mse_loss`]; [`KernelError::LengthMismatch`] for `grad`.
pub fn mse_loss_backward(
    pred: &[f32],
    target: &[f32],
    grad: &mut [f32],
) -> Result<(), KernelError> {
    check_mse(pred, target)?;
    check_len("grad", pred.len(), grad.len())?;
    let s = f32x8::splat(2.0 / pred.len() as f32);
    crate::simd::map2(pred, target, grad, |p, t| (p - t) * s);
    Ok(())
}
