//! Reference activations, softmax, losses and fully connected layers.

use crate::error::KernelError;
use crate::params::{Activation, LinearParams, check_len, matrix_len, nonzero};

fn unary(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    check_len("output", x.len(), y.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f(v);
    }
    Ok(())
}

fn binary(
    a: &[f32],
    go: &[f32],
    gi: &mut [f32],
    f: impl Fn(f32, f32) -> f32,
) -> Result<(), KernelError> {
    nonzero(a.len(), "input")?;
    check_len("grad_output", a.len(), go.len())?;
    check_len("grad_input", a.len(), gi.len())?;
    for ((o, &v), &g) in gi.iter_mut().zip(a).zip(go) {
        *o = f(v, g);
    }
    Ok(())
}

fn check_slope(slope: f32) -> Result<(), KernelError> {
    if slope.is_finite() {
        Ok(())
    } else {
        Err(KernelError::InvalidParameter(
            "leaky_relu slope is not finite",
        ))
    }
}

/// Reference for [`crate::relu`].
///
/// # Errors
/// As [`crate::relu`].
pub fn relu(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    unary(x, y, |v| if v < 0.0 { 0.0 } else { v })
}

/// Reference for [`crate::relu_backward`].
///
/// # Errors
/// As [`crate::relu_backward`].
pub fn relu_backward(x: &[f32], grad_out: &[f32], grad_in: &mut [f32]) -> Result<(), KernelError> {
    binary(x, grad_out, grad_in, |v, g| if v <= 0.0 { 0.0 } else { g })
}

/// Reference for [`crate::relu6`].
///
/// # Errors
/// As [`crate::relu6`].
pub fn relu6(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    unary(x, y, |v| {
        let r = if v < 0.0 { 0.0 } else { v };
        if r > 6.0 { 6.0 } else { r }
    })
}

/// Reference for [`crate::relu6_backward`], from the forward output `y`.
///
/// # Errors
/// As [`crate::relu6_backward`].
pub fn relu6_backward(y: &[f32], grad_out: &[f32], grad_in: &mut [f32]) -> Result<(), KernelError> {
    binary(y, grad_out, grad_in, |v, g| {
        if v <= 0.0 || v >= 6.0 { 0.0 } else { g }
    })
}

/// Reference for [`crate::leaky_relu`].
///
/// # Errors
/// As [`crate::leaky_relu`].
pub fn leaky_relu(slope: f32, x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_slope(slope)?;
    unary(x, y, |v| if v > 0.0 { v } else { v * slope })
}

/// Reference for [`crate::leaky_relu_backward`].
///
/// # Errors
/// As [`crate::leaky_relu_backward`].
pub fn leaky_relu_backward(
    slope: f32,
    x: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    check_slope(slope)?;
    binary(
        x,
        grad_out,
        grad_in,
        |v, g| if v > 0.0 { g } else { g * slope },
    )
}

/// Reference for [`crate::sigmoid`]: `1 / (1 + exp(-x))` in f64, rounded once.
///
/// # Errors
/// As [`crate::sigmoid`].
pub fn sigmoid(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    unary(x, y, |v| (1.0 / (1.0 + libm::exp(-f64::from(v)))) as f32)
}

/// Reference for [`crate::sigmoid_backward`].
///
/// # Errors
/// As [`crate::sigmoid_backward`].
pub fn sigmoid_backward(
    y: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    binary(y, grad_out, grad_in, |y, g| {
        let y = f64::from(y);
        (f64::from(g) * y * (1.0 - y)) as f32
    })
}

/// Reference for [`crate::tanh`]: libm's f64 `tanh`, rounded once.
///
/// # Errors
/// As [`crate::tanh`].
pub fn tanh(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    unary(x, y, |v| libm::tanh(f64::from(v)) as f32)
}

/// Reference for [`crate::tanh_backward`].
///
/// # Errors
/// As [`crate::tanh_backward`].
pub fn tanh_backward(y: &[f32], grad_out: &[f32], grad_in: &mut [f32]) -> Result<(), KernelError> {
    binary(y, grad_out, grad_in, |y, g| {
        let y = f64::from(y);
        (f64::from(g) * (1.0 - y * y)) as f32
    })
}

/// `x Phi(x)` in f64 from libm's `erfc` (`Phi(x) = erfc(-x / sqrt 2) / 2`); `-inf -> -0`.
fn gelu_f64(x: f64) -> f64 {
    if x == f64::NEG_INFINITY {
        return -0.0;
    }
    x * 0.5 * libm::erfc(-x * core::f64::consts::FRAC_1_SQRT_2)
}

/// Reference for [`crate::gelu`]: in f64 from libm's `erfc`, rounded once.
///
/// # Errors
/// As [`crate::gelu`].
pub fn gelu(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    unary(x, y, |v| gelu_f64(f64::from(v)) as f32)
}

/// Reference for [`crate::gelu_backward`]: `Phi(x) + x phi(x)` in f64 (`x phi(x)` 0 at
/// the infinities).
///
/// # Errors
/// As [`crate::gelu_backward`].
pub fn gelu_backward(x: &[f32], grad_out: &[f32], grad_in: &mut [f32]) -> Result<(), KernelError> {
    binary(x, grad_out, grad_in, |x, g| {
        let x = f64::from(x);
        let cdf = 0.5 * libm::erfc(-x * core::f64::consts::FRAC_1_SQRT_2);
        let density = if x.is_infinite() {
            0.0
        } else {
            x * libm::exp(-0.5 * x * x)
                * 0.5
                * core::f64::consts::FRAC_2_SQRT_PI
                * core::f64::consts::FRAC_1_SQRT_2
        };
        (f64::from(g) * (cdf + density)) as f32
    })
}

/// Reference for [`crate::activation_backward`].
///
/// # Errors
/// As [`crate::activation_backward`].
pub fn activation_backward(
    act: Activation,
    y: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    let (lo, hi) = act.bounds()?;
    binary(y, grad_out, grad_in, |y, g| {
        let at_lo = lo != f32::NEG_INFINITY && y <= lo;
        let at_hi = hi != f32::INFINITY && y >= hi;
        if at_lo || at_hi { 0.0 } else { g }
    })
}

fn check_rows(rows: usize, cols: usize, x: &[f32], y: &[f32]) -> Result<(), KernelError> {
    let n = matrix_len(rows, cols)?;
    check_len("input", n, x.len())?;
    check_len("output", n, y.len())
}

/// `(max, ln(sum(exp(x - max))))` of a row in f64.
fn row_lse(x: &[f32]) -> (f64, f64) {
    let mut m = f64::NEG_INFINITY;
    for &v in x {
        if v.is_nan() {
            return (f64::NAN, f64::NAN);
        }
        m = m.max(f64::from(v));
    }
    let s: f64 = x.iter().map(|&v| libm::exp(f64::from(v) - m)).sum();
    (m, libm::log(s))
}

/// Reference for [`crate::softmax`].
///
/// # Errors
/// As [`crate::softmax`].
pub fn softmax(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_rows(rows, cols, x, y)?;
    for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
        let (m, l) = row_lse(xr);
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = libm::exp(f64::from(v) - m - l) as f32;
        }
    }
    Ok(())
}

/// Reference for [`crate::log_softmax`].
///
/// # Errors
/// As [`crate::log_softmax`].
pub fn log_softmax(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_rows(rows, cols, x, y)?;
    for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
        let (m, l) = row_lse(xr);
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = (f64::from(v) - m - l) as f32;
        }
    }
    Ok(())
}

fn check_rows_backward(
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

/// Reference for [`crate::softmax_backward`].
///
/// # Errors
/// As [`crate::softmax_backward`].
pub fn softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    check_rows_backward(rows, cols, y, grad_out, grad_in)?;
    for ((yr, gr), xr) in y
        .chunks_exact(cols)
        .zip(grad_out.chunks_exact(cols))
        .zip(grad_in.chunks_exact_mut(cols))
    {
        let dot: f64 = yr
            .iter()
            .zip(gr)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        for ((o, &a), &b) in xr.iter_mut().zip(yr).zip(gr) {
            *o = (f64::from(a) * (f64::from(b) - dot)) as f32;
        }
    }
    Ok(())
}

/// Reference for [`crate::log_softmax_backward`].
///
/// # Errors
/// As [`crate::log_softmax_backward`].
pub fn log_softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    check_rows_backward(rows, cols, y, grad_out, grad_in)?;
    for ((yr, gr), xr) in y
        .chunks_exact(cols)
        .zip(grad_out.chunks_exact(cols))
        .zip(grad_in.chunks_exact_mut(cols))
    {
        let s: f64 = gr.iter().map(|&v| f64::from(v)).sum();
        for ((o, &a), &b) in xr.iter_mut().zip(yr).zip(gr) {
            *o = (f64::from(b) - libm::exp(f64::from(a)) * s) as f32;
        }
    }
    Ok(())
}

fn check_ce(
    rows: usize,
    classes: usize,
    logits: &[f32],
    labels: &[u32],
) -> Result<(), KernelError> {
    let n = matrix_len(rows, classes)?;
    check_len("logits", n, logits.len())?;
    check_len("labels", rows, labels.len())?;
    for (index, &label) in labels.iter().enumerate() {
        if label as usize >= classes {
            return Err(KernelError::InvalidLabel {
                index,
                label,
                classes,
            });
        }
    }
    Ok(())
}

/// Reference for [`crate::cross_entropy`].
///
/// # Errors
/// As [`crate::cross_entropy`].
pub fn cross_entropy(
    rows: usize,
    classes: usize,
    logits: &[f32],
    labels: &[u32],
) -> Result<f32, KernelError> {
    check_ce(rows, classes, logits, labels)?;
    let mut total = 0.0;
    for (x, &l) in logits.chunks_exact(classes).zip(labels) {
        let (m, lse) = row_lse(x);
        // (max - x[label]) + lse: adding lse to a large max first would round it away,
        // even in f64 (found by fuzzing)
        total += (m - f64::from(x[l as usize])) + lse;
    }
    Ok((total / rows as f64) as f32)
}

/// Reference for [`crate::softmax_cross_entropy`].
///
/// # Errors
/// As [`crate::softmax_cross_entropy`].
pub fn softmax_cross_entropy(
    rows: usize,
    classes: usize,
    logits: &[f32],
    labels: &[u32],
    grad: &mut [f32],
) -> Result<f32, KernelError> {
    check_ce(rows, classes, logits, labels)?;
    check_len("grad", logits.len(), grad.len())?;
    let loss = cross_entropy(rows, classes, logits, labels)?;
    for ((x, g), &l) in logits
        .chunks_exact(classes)
        .zip(grad.chunks_exact_mut(classes))
        .zip(labels)
    {
        let (m, lse) = row_lse(x);
        for (j, (o, &v)) in g.iter_mut().zip(x).enumerate() {
            let p = libm::exp(f64::from(v) - m - lse);
            let t = if j == l as usize { 1.0 } else { 0.0 };
            *o = ((p - t) / rows as f64) as f32;
        }
    }
    Ok(loss)
}

/// Reference for [`crate::mse_loss`].
///
/// # Errors
/// As [`crate::mse_loss`].
pub fn mse_loss(pred: &[f32], target: &[f32]) -> Result<f32, KernelError> {
    nonzero(pred.len(), "pred")?;
    check_len("target", pred.len(), target.len())?;
    let s: f64 = pred
        .iter()
        .zip(target)
        .map(|(&p, &t)| {
            let d = f64::from(p) - f64::from(t);
            d * d
        })
        .sum();
    Ok((s / pred.len() as f64) as f32)
}

/// Reference for [`crate::mse_loss_backward`].
///
/// # Errors
/// As [`crate::mse_loss_backward`].
pub fn mse_loss_backward(
    pred: &[f32],
    target: &[f32],
    grad: &mut [f32],
) -> Result<(), KernelError> {
    nonzero(pred.len(), "pred")?;
    check_len("target", pred.len(), target.len())?;
    check_len("grad", pred.len(), grad.len())?;
    let n = pred.len() as f64;
    for ((g, &p), &t) in grad.iter_mut().zip(pred).zip(target) {
        *g = (2.0 * (f64::from(p) - f64::from(t)) / n) as f32;
    }
    Ok(())
}

/// Reference for [`crate::linear`].
///
/// # Errors
/// As [`crate::linear`] (no scratch).
pub fn linear(
    p: &LinearParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    let (li, lw, lo_len) = p.lens()?;
    let (lo, hi) = act.bounds()?;
    check_len("input", li, input.len())?;
    check_len("weight", lw, weight.len())?;
    if let Some(b) = bias {
        check_len("bias", p.out_features, b.len())?;
    }
    check_len("output", lo_len, output.len())?;
    let (ni, no) = (p.in_features, p.out_features);
    for b in 0..p.batch {
        for o in 0..no {
            let mut acc: f64 = (0..ni)
                .map(|i| f64::from(input[b * ni + i]) * f64::from(weight[o * ni + i]))
                .sum();
            if let Some(bias) = bias {
                acc += f64::from(bias[o]);
            }
            output[b * no + o] = super::clamp(acc as f32, lo, hi);
        }
    }
    Ok(())
}

/// Reference for [`crate::linear_backward_input`].
///
/// # Errors
/// As [`crate::linear_backward_input`] (no scratch).
pub fn linear_backward_input(
    p: &LinearParams,
    grad_output: &[f32],
    weight: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    let (li, lw, lo) = p.lens()?;
    check_len("grad_output", lo, grad_output.len())?;
    check_len("weight", lw, weight.len())?;
    check_len("grad_input", li, grad_input.len())?;
    let (ni, no) = (p.in_features, p.out_features);
    for b in 0..p.batch {
        for i in 0..ni {
            let acc: f64 = (0..no)
                .map(|o| f64::from(grad_output[b * no + o]) * f64::from(weight[o * ni + i]))
                .sum();
            grad_input[b * ni + i] = acc as f32;
        }
    }
    Ok(())
}

/// Reference for [`crate::linear_backward_weight`].
///
/// # Errors
/// As [`crate::linear_backward_weight`] (no scratch).
pub fn linear_backward_weight(
    p: &LinearParams,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) -> Result<(), KernelError> {
    let (li, lw, lo) = p.lens()?;
    check_len("input", li, input.len())?;
    check_len("grad_output", lo, grad_output.len())?;
    check_len("grad_weight", lw, grad_weight.len())?;
    let (ni, no) = (p.in_features, p.out_features);
    for o in 0..no {
        for i in 0..ni {
            let acc: f64 = (0..p.batch)
                .map(|b| f64::from(grad_output[b * no + o]) * f64::from(input[b * ni + i]))
                .sum();
            grad_weight[o * ni + i] = acc as f32;
        }
    }
    Ok(())
}

/// Reference for [`crate::linear_backward_bias`].
///
/// # Errors
/// As [`crate::linear_backward_bias`].
pub fn linear_backward_bias(
    p: &LinearParams,
    grad_output: &[f32],
    grad_bias: &mut [f32],
) -> Result<(), KernelError> {
    let (_, _, lo) = p.lens()?;
    check_len("grad_output", lo, grad_output.len())?;
    check_len("grad_bias", p.out_features, grad_bias.len())?;
    let no = p.out_features;
    for (o, gb) in grad_bias.iter_mut().enumerate() {
        *gb = (0..p.batch)
            .map(|b| f64::from(grad_output[b * no + o]))
            .sum::<f64>() as f32;
    }
    Ok(())
}

/// [`crate::Elementwise::forward`]'s oracle: the function's reference kernel.
///
/// # Errors
/// As the function's reference kernel.
pub fn elementwise_forward(
    e: crate::params::Elementwise,
    x: &[f32],
    y: &mut [f32],
) -> Result<(), KernelError> {
    use crate::params::Elementwise as E;
    match e {
        E::Relu => relu(x, y),
        E::LeakyRelu(s) => leaky_relu(s, x, y),
        E::Tanh => tanh(x, y),
        E::Sigmoid => sigmoid(x, y),
        E::Gelu => gelu(x, y),
        E::Relu6 => relu6(x, y),
    }
}

/// [`crate::Elementwise::backward`]'s oracle.
///
/// # Errors
/// As the function's reference backward kernel.
pub fn elementwise_backward(
    e: crate::params::Elementwise,
    x: &[f32],
    y: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    use crate::params::Elementwise as E;
    match e {
        E::Relu => relu_backward(x, grad_out, grad_in),
        E::LeakyRelu(s) => leaky_relu_backward(s, x, grad_out, grad_in),
        E::Tanh => tanh_backward(y, grad_out, grad_in),
        E::Sigmoid => sigmoid_backward(y, grad_out, grad_in),
        E::Gelu => gelu_backward(x, grad_out, grad_in),
        E::Relu6 => relu6_backward(y, grad_out, grad_in),
    }
}
