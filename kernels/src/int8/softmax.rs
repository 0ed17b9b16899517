//! int8 softmax to f32 (the int8-to-int8 one is TFLite's reference kernel,
//! `reference::softmax_s8`).

use crate::error::KernelError;

/// Softmax of int8 logits to f32 probabilities, `rows` rows of `depth`: `exp(beta *
/// scale * (x - max))` normalised per row, in f32 (the zero point cancels). For a model
/// whose output stays int8 up to here and whose caller wants probabilities.
///
/// # Errors
/// [`KernelError::InvalidParameter`] for a `beta` or scale that is not finite and above
/// 0, or whose product is not finite; [`KernelError::ZeroSize`] for a depth of 0;
/// [`KernelError::LengthMismatch`].
///
/// ```
/// use cnnkit_kernels::softmax_s8_f32;
/// let mut p = [0.0f32; 2];
/// softmax_s8_f32(1.0, 0.5, 1, 2, &[10, 10], &mut p).unwrap();
/// assert_eq!(p, [0.5, 0.5]);
/// ```
pub fn softmax_s8_f32(
    beta: f32,
    input_scale: f32,
    rows: usize,
    depth: usize,
    input: &[i8],
    output: &mut [f32],
) -> Result<(), KernelError> {
    let ok = |v: f32| v.is_finite() && v > 0.0;
    if !ok(beta) || !ok(input_scale) {
        return Err(KernelError::InvalidParameter(
            "softmax: beta and the input scale finite and above 0",
        ));
    }
    if depth == 0 {
        return Err(KernelError::ZeroSize("depth"));
    }
    let n = rows.checked_mul(depth).ok_or(KernelError::Overflow)?;
    for (arg, len) in [("input", input.len()), ("output", output.len())] {
        if len != n {
            return Err(KernelError::LengthMismatch {
                arg,
                expected: n,
                actual: len,
            });
        }
    }
    let k = beta * input_scale;
    if !k.is_finite() {
        // (inf * 0 at the row's maximum would be NaN)
        return Err(KernelError::InvalidParameter(
            "softmax: beta * input scale overflows f32",
        ));
    }
    for (x, y) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        let max = x.iter().copied().max().unwrap_or(i8::MIN);
        let mut sum = 0.0f32;
        for (o, &v) in y.iter_mut().zip(x) {
            *o = libm::expf(k * f32::from(i16::from(v) - i16::from(max)));
            sum += *o;
        }
        // (sum >= 1: the maximum's own term)
        for o in y.iter_mut() {
            *o /= sum;
        }
    }
    Ok(())
}
