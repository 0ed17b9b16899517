//! Softmax and log-softmax over the rows of a `rows x cols` matrix, and their backward
//! passes. Each row is shifted by its maximum before `exp`, so no finite input
//! overflows; NaN anywhere in a row makes the whole row NaN, and `+inf` gives NaN, as in
//! PyTorch.

use crate::error::KernelError;
use crate::math;
use crate::params::{check_len, ctry, matrix_len};
use crate::simd::{LANES, f32x8, load, load_partial, max, store, store_partial};

const fn check(rows: usize, cols: usize, x: &[f32], y: &[f32]) -> Result<(), KernelError> {
    let n = ctry!(matrix_len(rows, cols));
    ctry!(check_len("input", n, x.len()));
    check_len("output", n, y.len())
}

/// Writes `exp(x - m)` into `y` and returns its sum.
#[inline]
pub(crate) fn exp_shifted(x: &[f32], m: f32, y: &mut [f32]) -> f32 {
    let mv = f32x8::splat(m);
    let mut acc = f32x8::ZERO;
    let mut xc = x.chunks_exact(LANES);
    let mut yc = y.chunks_exact_mut(LANES);
    for (xs, ys) in (&mut xc).zip(&mut yc) {
        let e = math::exp(load(xs) - mv);
        acc += e;
        store(ys, e);
    }
    let (xr, yr) = (xc.remainder(), yc.into_remainder());
    if !xr.is_empty() {
        let e = math::exp(load_partial(xr) - mv);
        // lanes beyond the row would hold exp(0 - m): keep them out of the sum
        let mut a = e.to_array();
        a[xr.len()..].fill(0.0);
        let e = f32x8::new(a);
        acc += e;
        store_partial(yr, e);
    }
    acc.reduce_add()
}

/// `y[r, :] = exp(x[r, :]) / sum(exp(x[r, :]))` for every row.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`], [`KernelError::LengthMismatch`].
///
/// ```
/// let mut y = [0.0; 2];
/// cnnkit_kernels::softmax(1, 2, &[0.0, 0.0], &mut y).unwrap();
/// assert_eq!(y, [0.5, 0.5]);
/// ```
pub fn softmax(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check(rows, cols, x, y)?;
    for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
        let s = exp_shifted(xr, max(xr), yr);
        let inv = f32x8::splat(1.0 / s);
        for v in yr.chunks_mut(LANES) {
            let r = load_partial(v) * inv;
            store_partial(v, r);
        }
    }
    Ok(())
}

/// `y[r, :] = x[r, :] - max - ln(sum(exp(x[r, :] - max)))` for every row.
///
/// # Errors
/// As [`softmax`].
pub fn log_softmax(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check(rows, cols, x, y)?;
    for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
        let m = max(xr);
        let s = exp_shifted(xr, m, yr);
        // (x - max) - ln(sum), as PyTorch: folding the two into one shift first would
        // round ln(sum) away against a large max (found by fuzzing)
        let (mv, ls) = (f32x8::splat(m), f32x8::splat(libm::logf(s)));
        for (xs, ys) in xr.chunks(LANES).zip(yr.chunks_mut(LANES)) {
            store_partial(ys, (load_partial(xs) - mv) - ls);
        }
    }
    Ok(())
}

fn check_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    gy: &[f32],
    gx: &[f32],
) -> Result<(), KernelError> {
    let n = matrix_len(rows, cols)?;
    check_len("output", n, y.len())?;
    check_len("grad_output", n, gy.len())?;
    check_len("grad_input", n, gx.len())
}

/// Backward pass of [`softmax`] from its output `y`:
/// `grad_in = y * (grad_out - sum(grad_out * y))` per row.
///
/// # Errors
/// As [`softmax`].
pub fn softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    check_backward(rows, cols, y, grad_out, grad_in)?;
    for ((yr, gr), xr) in y
        .chunks_exact(cols)
        .zip(grad_out.chunks_exact(cols))
        .zip(grad_in.chunks_exact_mut(cols))
    {
        let mut acc = f32x8::ZERO;
        for (a, b) in yr.chunks(LANES).zip(gr.chunks(LANES)) {
            acc = load_partial(a).mul_add(load_partial(b), acc);
        }
        let dot = f32x8::splat(acc.reduce_add());
        for ((a, b), o) in yr
            .chunks(LANES)
            .zip(gr.chunks(LANES))
            .zip(xr.chunks_mut(LANES))
        {
            store_partial(o, load_partial(a) * (load_partial(b) - dot));
        }
    }
    Ok(())
}

/// Backward pass of [`log_softmax`] from its output `y`:
/// `grad_in = grad_out - exp(y) * sum(grad_out)` per row.
///
/// # Errors
/// As [`softmax`].
pub fn log_softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    check_backward(rows, cols, y, grad_out, grad_in)?;
    for ((yr, gr), xr) in y
        .chunks_exact(cols)
        .zip(grad_out.chunks_exact(cols))
        .zip(grad_in.chunks_exact_mut(cols))
    {
        let s = f32x8::splat(crate::simd::sum(gr));
        for ((a, b), o) in yr
            .chunks(LANES)
            .zip(gr.chunks(LANES))
            .zip(xr.chunks_mut(LANES))
        {
            store_partial(
                o,
                math::exp(load_partial(a)).mul_neg_add(s, load_partial(b)),
            );
        }
    }
    Ok(())
}

/// `sum(exp(x - m))` without storing the terms.
#[inline]
pub(crate) fn sum_exp_shifted(x: &[f32], m: f32) -> f32 {
    let mv = f32x8::splat(m);
    let mut acc = f32x8::ZERO;
    let mut xc = x.chunks_exact(LANES);
    for xs in &mut xc {
        acc += math::exp(load(xs) - mv);
    }
    let xr = xc.remainder();
    if !xr.is_empty() {
        let mut a = math::exp(load_partial(xr) - mv).to_array();
        a[xr.len()..].fill(0.0);
        acc += f32x8::new(a);
    }
    acc.reduce_add()
}
