//! The int8 operators in plain integer code: the oracle every int8 kernel equals bit for
//! bit. Each follows TFLite's reference kernel of the same operator (`reference_ops` /
//! `reference_integer_ops`), written out here; the fixed-point steps are computed in
//! `i64` from their definitions rather than with TFLite's bit tricks.

use crate::error::KernelError;
use crate::params::{Conv2dParams, LinearParams, Pool2dParams};
use crate::qparams::{
    AddParams, QuantOutput, Requant, RequantizeParams, check_add_s8, check_affine, check_conv2d_s8,
    check_fully_connected_s8, check_pool2d_s8, check_requantize_s8,
};

/// `round(a * b / 2^31)`, halves rounded up (towards +infinity), saturated (TFLite's
/// `SaturatingRoundingDoublingHighMul`: only `i32::MIN * i32::MIN` saturates).
pub fn doubling_high_mul(a: i32, b: i32) -> i32 {
    let p = i64::from(a) * i64::from(b);
    // floor((p + 2^30) / 2^31)
    let q = (p + (1i64 << 30)) >> 31;
    q.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// `round(x / 2^e)`, halves away from zero (TFLite's `RoundingDivideByPOT`), `e` in 0..=31.
pub fn divide_by_pot(x: i32, e: u32) -> i32 {
    let x = i64::from(x);
    let q = (x.abs() + ((1i64 << e) >> 1)) >> e;
    (if x < 0 { -q } else { q }) as i32
}

/// TFLite's `MultiplyByQuantizedMultiplier`: `x * 2^shift` for a positive shift (wrapping
/// on overflow, as TFLite's C++ does on every compiler it ships with), the doubling high
/// multiply, then the rounding right shift for a negative one.
pub fn requantize(x: i32, r: Requant) -> i32 {
    let left = r.shift.max(0) as u32;
    let right = (-r.shift).max(0) as u32;
    divide_by_pot(
        doubling_high_mul(x.wrapping_mul(1 << left), r.multiplier),
        right,
    )
}

/// The int32 sum of one output, brought to int8: requantised, the zero point added,
/// clamped.
fn to_output(acc: i32, q: &QuantOutput<'_>, channel: usize) -> i8 {
    let v = requantize(acc, q.requant_of(channel)).saturating_add(q.output_zero_point);
    v.clamp(i32::from(q.min), i32::from(q.max)) as i8
}

/// int8 convolution, NHWC in and out, OHWI weights (see [`QuantOutput`]): for each
/// output, `sum((x - zp_in) * w)` over the taps inside the input (those in the padding add
/// nothing: padding holds the zero point) plus `bias`, then [`QuantOutput`]'s
/// requantisation and clamp. Stride, padding, dilation and groups as the f32
/// convolution's (`groups == in_channels` is depthwise).
///
/// # Errors
/// As [`Conv2dParams::dims`]; [`KernelError::InvalidParameter`] for a zero point out of
/// -128..=127, a clamp with `min > max` or an invalid [`Requant`];
/// [`KernelError::LengthMismatch`] for any slice of the wrong length (`requant`: 1 or
/// `out_channels`).
pub fn conv2d_s8(
    p: &Conv2dParams,
    q: &QuantOutput<'_>,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let d = check_conv2d_s8(
        p,
        q,
        input.len(),
        weight.len(),
        bias.map(<[i32]>::len),
        output.len(),
    )?;
    let (cin, cout) = (p.in_channels, p.out_channels);
    let (cig, cog) = (d.in_per_group, d.out_per_group);
    for n in 0..p.batch {
        for oy in 0..d.out_h {
            for ox in 0..d.out_w {
                for oc in 0..cout {
                    let g = oc / cog;
                    let mut acc: i32 = bias.map_or(0, |b| b[oc]);
                    for ky in 0..p.kernel_h {
                        let iy =
                            (oy * p.stride_h + ky * p.dilation_h) as isize - p.pad_top as isize;
                        if iy < 0 || iy >= p.in_h as isize {
                            continue;
                        }
                        for kx in 0..p.kernel_w {
                            let ix = (ox * p.stride_w + kx * p.dilation_w) as isize
                                - p.pad_left as isize;
                            if ix < 0 || ix >= p.in_w as isize {
                                continue;
                            }
                            let (iy, ix) = (iy as usize, ix as usize);
                            for ic in 0..cig {
                                let x =
                                    input[((n * p.in_h + iy) * p.in_w + ix) * cin + g * cig + ic];
                                let w =
                                    weight[((oc * p.kernel_h + ky) * p.kernel_w + kx) * cig + ic];
                                let t = (i32::from(x) - q.input_zero_point) * i32::from(w);
                                acc = acc.wrapping_add(t);
                            }
                        }
                    }
                    output[((n * d.out_h + oy) * d.out_w + ox) * cout + oc] = to_output(acc, q, oc);
                }
            }
        }
    }
    Ok(())
}

/// int8 fully connected layer: `input [batch, in]`, `weight [out, in]`, `output [batch,
/// out]`; each output as [`conv2d_s8`]'s (TFLite's `FullyConnected` with symmetric
/// weights; one [`Requant`] for all outputs, or one per output).
///
/// # Errors
/// As [`LinearParams::lens`] and [`conv2d_s8`]'s quantisation checks;
/// [`KernelError::LengthMismatch`] for a slice of the wrong length.
pub fn fully_connected_s8(
    p: &LinearParams,
    q: &QuantOutput<'_>,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &mut [i8],
) -> Result<(), KernelError> {
    check_fully_connected_s8(
        p,
        q,
        input.len(),
        weight.len(),
        bias.map(<[i32]>::len),
        output.len(),
    )?;
    let (k, m) = (p.in_features, p.out_features);
    for b in 0..p.batch {
        for o in 0..m {
            let mut acc: i32 = bias.map_or(0, |bv| bv[o]);
            for i in 0..k {
                let t = (i32::from(input[b * k + i]) - q.input_zero_point)
                    * i32::from(weight[o * k + i]);
                acc = acc.wrapping_add(t);
            }
            output[b * m + o] = to_output(acc, q, o);
        }
    }
    Ok(())
}

/// The input window of output `(oy, ox)` clipped to the image: rows and columns.
fn window(
    p: &Pool2dParams,
    oy: usize,
    ox: usize,
) -> (core::ops::Range<usize>, core::ops::Range<usize>) {
    let y0 = (oy * p.stride_h) as isize - p.pad_top as isize;
    let x0 = (ox * p.stride_w) as isize - p.pad_left as isize;
    let ys = y0.max(0) as usize..((y0 + p.kernel_h as isize).min(p.in_h as isize)) as usize;
    let xs = x0.max(0) as usize..((x0 + p.kernel_w as isize).min(p.in_w as isize)) as usize;
    (ys, xs)
}

/// int8 max pooling, NHWC: the largest value of each window's part inside the input,
/// clamped to `[min, max]` (TFLite's `MaxPool`). No dilation; padding below the window.
///
/// # Errors
/// As [`Pool2dParams::dims`]; [`KernelError::InvalidParameter`] for a dilation, padding
/// as large as the window, or `min > max`; [`KernelError::LengthMismatch`].
pub fn max_pool2d_s8(
    p: &Pool2dParams,
    min: i8,
    max: i8,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    let d = check_pool2d_s8(p, min, max, input.len(), output.len())?;
    let c = p.channels;
    for n in 0..p.batch {
        for oy in 0..d.out_h {
            for ox in 0..d.out_w {
                let (ys, xs) = window(p, oy, ox);
                for ch in 0..c {
                    let mut m = i8::MIN;
                    for y in ys.clone() {
                        for x in xs.clone() {
                            m = m.max(input[((n * p.in_h + y) * p.in_w + x) * c + ch]);
                        }
                    }
                    output[((n * d.out_h + oy) * d.out_w + ox) * c + ch] = m.clamp(min, max);
                }
            }
        }
    }
    Ok(())
}

/// int8 average pooling, NHWC: the sum of each window's part inside the input divided by
/// its count, rounded half away from zero, clamped to `[min, max]` (TFLite's `AveragePool`:
/// padding is not counted). Input and output share scale and zero point.
///
/// # Errors
/// As [`max_pool2d_s8`].
pub fn avg_pool2d_s8(
    p: &Pool2dParams,
    min: i8,
    max: i8,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    let d = check_pool2d_s8(p, min, max, input.len(), output.len())?;
    let c = p.channels;
    for n in 0..p.batch {
        for oy in 0..d.out_h {
            for ox in 0..d.out_w {
                let (ys, xs) = window(p, oy, ox);
                let count = (ys.len() * xs.len()) as i64;
                for ch in 0..c {
                    let mut sum = 0i64;
                    for y in ys.clone() {
                        for x in xs.clone() {
                            sum += i64::from(input[((n * p.in_h + y) * p.in_w + x) * c + ch]);
                        }
                    }
                    // half away from zero
                    let avg = (sum.abs() + count / 2) / count;
                    let avg = if sum < 0 { -avg } else { avg };
                    let v = avg.clamp(i64::from(min), i64::from(max));
                    output[((n * d.out_h + oy) * d.out_w + ox) * c + ch] = v as i8;
                }
            }
        }
    }
    Ok(())
}

/// f32 to int8: `clamp(round(x / scale) + zero_point)`, the division in f32 and halves
/// rounded away from zero (TFLite's `AffineQuantize`); NaN gives the zero point, the
/// infinities the ends of the range.
///
/// # Errors
/// [`KernelError::InvalidParameter`] for a scale not finite and above 0 or a zero point
/// out of -128..=127; [`KernelError::LengthMismatch`] for slices of different lengths.
pub fn quantize_s8(
    input: &[f32],
    scale: f32,
    zero_point: i32,
    output: &mut [i8],
) -> Result<(), KernelError> {
    check_affine(scale, zero_point, input.len(), output.len())?;
    for (o, &x) in output.iter_mut().zip(input) {
        let r = libm::roundf(x / scale);
        let v = if r.is_nan() {
            0.0
        } else {
            r.clamp(-1000.0, 1000.0)
        };
        *o = (v as i32 + zero_point).clamp(-128, 127) as i8;
    }
    Ok(())
}

/// int8 to f32: `scale * (q - zero_point)`, rounded once (TFLite's `Dequantize`).
///
/// # Errors
/// As [`quantize_s8`].
pub fn dequantize_s8(
    input: &[i8],
    scale: f32,
    zero_point: i32,
    output: &mut [f32],
) -> Result<(), KernelError> {
    check_affine(scale, zero_point, input.len(), output.len())?;
    for (o, &q) in output.iter_mut().zip(input) {
        *o = (f64::from(scale) * f64::from(i32::from(q) - zero_point)) as f32;
    }
    Ok(())
}

/// int8 elementwise sum of two tensors of the same shape (TFLite's `ADD`): each input minus
/// its zero point, times `2^20`, requantised to the common scale; the sum requantised to
/// the output's, its zero point added, clamped.
///
/// # Errors
/// [`KernelError::InvalidParameter`] for invalid [`AddParams`];
/// [`KernelError::LengthMismatch`] unless the three slices have one length.
pub fn add_s8(q: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) -> Result<(), KernelError> {
    check_add_s8(q, a.len(), b.len(), output.len())?;
    let shift = 1i32 << AddParams::LEFT_SHIFT;
    for ((o, &x), &y) in output.iter_mut().zip(a).zip(b) {
        let xa = requantize((i32::from(x) - q.a_zero_point) * shift, q.a);
        let yb = requantize((i32::from(y) - q.b_zero_point) * shift, q.b);
        let v = requantize(xa + yb, q.output) + q.output_zero_point;
        *o = v.clamp(i32::from(q.min), i32::from(q.max)) as i8;
    }
    Ok(())
}

/// int8 to int8 at another scale (TFLite's `QUANTIZE` from int8):
/// `clamp(zp_out + requant(x - zp_in))` to the int8 range.
///
/// # Errors
/// [`KernelError::InvalidParameter`] for invalid [`RequantizeParams`];
/// [`KernelError::LengthMismatch`] for slices of different lengths.
pub fn requantize_s8(
    q: &RequantizeParams,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    check_requantize_s8(q, input.len(), output.len())?;
    for (o, &x) in output.iter_mut().zip(input) {
        let v = requantize(i32::from(x) - q.input_zero_point, q.requant)
            .saturating_add(q.output_zero_point);
        *o = v.clamp(-128, 127) as i8;
    }
    Ok(())
}
