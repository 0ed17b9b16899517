//! f32 to int8 and back, TFLite's affine mapping `real = scale * (q - zero_point)`.

use super::requantize;
use crate::error::KernelError;
use crate::qparams::{
    AddParams, RequantizeParams, check_add_s8, check_affine, check_requantize_s8,
};

/// f32 to int8: `clamp(round(x / scale) + zero_point)`, the division in f32 and halves
/// rounded away from zero (TFLite's `AffineQuantize`); NaN gives the zero point, values
/// beyond the range its ends. Equals `reference::quantize_s8` bit for bit.
///
/// # Errors
/// [`KernelError::InvalidParameter`] for a scale not finite and above 0 or a zero point
/// out of -128..=127; [`KernelError::LengthMismatch`] for slices of different lengths.
///
/// ```
/// use cnnkit_kernels::quantize_s8;
/// let mut q = [0i8; 4];
/// quantize_s8(&[0.25, -0.25, 100.0, f32::NAN], 0.5, 1, &mut q).unwrap();
/// assert_eq!(q, [2, 0, 127, 1]); // 0.5 and -0.5 round away from zero
/// ```
pub fn quantize_s8(
    input: &[f32],
    scale: f32,
    zero_point: i32,
    output: &mut [i8],
) -> Result<(), KernelError> {
    check_affine(scale, zero_point, input.len(), output.len())?;
    let (lo, hi) = ((-128 - zero_point) as f32, (127 - zero_point) as f32);
    for (o, &x) in output.iter_mut().zip(input) {
        // clamped before the cast (NaN fails both comparisons and stays NaN: cast to 0)
        let r = libm::roundf(x / scale);
        let r = if r < lo {
            lo
        } else if r > hi {
            hi
        } else {
            r
        };
        *o = (r as i32 + zero_point) as i8;
    }
    Ok(())
}

/// int8 to f32: `scale * (q - zero_point)`, rounded once (TFLite's `Dequantize`). Equals
/// `reference::dequantize_s8` bit for bit.
///
/// # Errors
/// As [`quantize_s8`].
///
/// ```
/// use cnnkit_kernels::dequantize_s8;
/// let mut x = [0.0f32; 2];
/// dequantize_s8(&[3, -1], 0.5, 1, &mut x).unwrap();
/// assert_eq!(x, [1.0, -1.0]);
/// ```
pub fn dequantize_s8(
    input: &[i8],
    scale: f32,
    zero_point: i32,
    output: &mut [f32],
) -> Result<(), KernelError> {
    check_affine(scale, zero_point, input.len(), output.len())?;
    for (o, &q) in output.iter_mut().zip(input) {
        // the product of a 24-bit and a 9-bit integer is exact in f32's rounding of it:
        // one rounding, as TFLite's f64 product cast to f32
        *o = scale * (i32::from(q) - zero_point) as f32;
    }
    Ok(())
}

/// int8 to int8 at another scale and zero point (TFLite's `QUANTIZE` from int8). Equals
/// `reference::requantize_s8` bit for bit.
///
/// # Errors
/// As `reference::requantize_s8`.
///
/// ```
/// use cnnkit_kernels::{requantize_s8, RequantizeParams};
/// let q = RequantizeParams::from_scales(0.1, 0, 0.2, 5).unwrap();
/// let mut y = [0i8; 3];
/// requantize_s8(&q, &[10, -11, 127], &mut y).unwrap();
/// // 5 + x / 2: -5.5 rounds to -5 (the doubling high multiply rounds halves up)
/// assert_eq!(y, [10, 0, 69]);
/// ```
pub fn requantize_s8(
    q: &RequantizeParams,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    check_requantize_s8(q, input.len(), output.len())?;
    for (o, &x) in output.iter_mut().zip(input) {
        *o = requantize_one(q, x);
    }
    Ok(())
}

/// One value of [`requantize_s8`].
#[inline]
pub(crate) fn requantize_one(q: &RequantizeParams, x: i8) -> i8 {
    let v = requantize(i32::from(x) - q.input_zero_point, q.requant)
        .saturating_add(q.output_zero_point);
    v.clamp(-128, 127) as i8
}

/// int8 elementwise sum of two tensors of the same shape (TFLite's `ADD`, a residual
/// connection). Equals `reference::add_s8` bit for bit.
///
/// # Errors
/// As `reference::add_s8`.
///
/// ```
/// use cnnkit_kernels::{add_s8, AddParams};
/// let q = AddParams::from_scales(0.5, 0, 0.5, 0, 0.5, 0).unwrap();
/// let mut y = [0i8; 2];
/// add_s8(&q, &[3, 100], &[4, 100], &mut y).unwrap();
/// assert_eq!(y, [7, 127]);
/// ```
pub fn add_s8(q: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) -> Result<(), KernelError> {
    check_add_s8(q, a.len(), b.len(), output.len())?;
    for ((o, &x), &y) in output.iter_mut().zip(a).zip(b) {
        *o = add_one(q, x, y);
    }
    Ok(())
}

/// One value of [`add_s8`].
#[inline]
pub(crate) fn add_one(q: &AddParams, x: i8, y: i8) -> i8 {
    // (x - zp) * 2^20 fits: |x - zp| <= 255
    let xa = requantize(
        (i32::from(x) - q.a_zero_point) << AddParams::LEFT_SHIFT,
        q.a,
    );
    let yb = requantize(
        (i32::from(y) - q.b_zero_point) << AddParams::LEFT_SHIFT,
        q.b,
    );
    let v = requantize(xa + yb, q.output) + q.output_zero_point;
    v.max(i32::from(q.min)).min(i32::from(q.max)) as i8
}
