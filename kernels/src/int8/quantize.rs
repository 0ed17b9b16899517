//! f32 to int8 and back, TFLite's affine mapping `real = scale * (q - zero_point)`.

use crate::error::KernelError;
use crate::qparams::check_affine;

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
