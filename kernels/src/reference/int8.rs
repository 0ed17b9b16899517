//! The int8 operators in plain integer code: the oracle every int8 kernel equals bit for
//! bit. Each follows TFLite's reference kernel of the same operator (`reference_ops` /
//! `reference_integer_ops`), written out here; the fixed-point steps are computed in
//! `i64` from their definitions rather than with TFLite's bit tricks.

use crate::error::KernelError;
use crate::params::{Conv2dParams, LinearParams, Pool2dParams};
use crate::qparams::{
    AddParams, QuantOutput, Requant, RequantizeParams, SoftmaxParams, check_add_s8, check_affine,
    check_conv2d_s8, check_fully_connected_s8, check_pool2d_s8, check_requantize_s8,
    check_softmax_s8,
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

// ---- softmax: gemmlowp's fixed-point arithmetic, as TFLite's reference `Softmax` uses it

/// gemmlowp's `SaturatingRoundingMultiplyByPOT<e>`: a saturating left shift for `e > 0`,
/// the rounding right shift for `e < 0`.
fn mul_by_pot(x: i32, e: i32) -> i32 {
    if e >= 0 {
        let v = i64::from(x) << e;
        v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
    } else {
        divide_by_pot(x, (-e) as u32)
    }
}

/// The product of two fixed-point numbers (gemmlowp's `operator*`: the raw values'
/// doubling high multiply; the integer bits add up).
fn fx_mul(a: i32, b: i32) -> i32 {
    doubling_high_mul(a, b)
}

/// `exp(a)` for `a` in `[-1/4, 0)`, Q0.31 in and out (gemmlowp's
/// `exp_on_interval_between_negative_one_quarter_and_0_excl`).
fn exp_quarter(a: i32) -> i32 {
    const EXP_MINUS_ONE_EIGHTH: i32 = 1_895_147_668;
    const ONE_THIRD: i32 = 715_827_883;
    let x = a.wrapping_add(1 << 28);
    let x2 = fx_mul(x, x);
    let x3 = fx_mul(x2, x);
    let x4 = fx_mul(x2, x2);
    let x4_over_4 = mul_by_pot(x4, -2);
    let poly = mul_by_pot(
        fx_mul(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2),
        -1,
    );
    EXP_MINUS_ONE_EIGHTH.wrapping_add(fx_mul(EXP_MINUS_ONE_EIGHTH, x.wrapping_add(poly)))
}

/// `exp(a)` for `a <= 0` in Q5.26, the result in Q0.31 (gemmlowp's
/// `exp_on_negative_values` with 5 integer bits).
fn exp_negative_q5(a: i32) -> i32 {
    const FRAC: i32 = 26;
    let quarter = 1i32 << (FRAC - 2);
    let mod_quarter_minus_quarter = (a & (quarter - 1)).wrapping_sub(quarter);
    let mut result = exp_quarter(mul_by_pot(mod_quarter_minus_quarter, 5));
    let remainder = mod_quarter_minus_quarter.wrapping_sub(a);
    // exp(-2^e) for e = -2 ..= 4, Q0.31
    for (e, m) in [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ] {
        if remainder & (1 << (FRAC + e)) != 0 {
            result = fx_mul(result, m);
        }
    }
    if a == 0 { i32::MAX } else { result }
}

/// `1 / (1 + x)` for `x` in `[0, 1)`, Q0.31 in and out (gemmlowp's
/// `one_over_one_plus_x_for_x_in_0_1`: Newton-Raphson from 48/17 - 32/17 d).
fn one_over_one_plus_x(a: i32) -> i32 {
    // RoundingHalfSum(a, 1): (a + MAX + sign) / 2, truncated
    let sum = i64::from(a) + i64::from(i32::MAX);
    let half_denominator = ((sum + if sum >= 0 { 1 } else { -1 }) / 2) as i32;
    const C48_17: i32 = 1_515_870_810; // Q2.29
    const CNEG32_17: i32 = -1_010_580_540; // Q2.29
    const ONE_Q2: i32 = 1 << 29;
    let mut x = C48_17.wrapping_add(fx_mul(half_denominator, CNEG32_17));
    for _ in 0..3 {
        let hd_x = fx_mul(half_denominator, x); // Q2.29
        let one_minus = ONE_Q2.wrapping_sub(hd_x); // Q2.29
        // Q2 * Q2 = Q4, rescaled to Q2: a saturating left shift by 2
        x = x.wrapping_add(mul_by_pot(fx_mul(x, one_minus), 2));
    }
    // ExactMulByPot<-1>: Q2 -> Q1 (the same raw value), then Rescale<0>: a left shift by 1
    mul_by_pot(x, 1)
}

/// int8 softmax over `rows` rows of `depth` values, TFLite's reference kernel bit for bit
/// (gemmlowp's fixed-point exponential and reciprocal): the output's scale is 1/256 and
/// its zero point -128, as TFLite requires of an int8 softmax. `params` from
/// [`SoftmaxParams::new`]`(beta, input_scale)`; the input's zero point does not matter
/// (only differences from the row's maximum do).
///
/// # Errors
/// [`KernelError::LengthMismatch`] for slices that do not hold `rows * depth` values;
/// [`KernelError::ZeroSize`] for a depth of 0; invalid `params`.
pub fn softmax_s8(
    params: &SoftmaxParams,
    rows: usize,
    depth: usize,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    check_softmax_s8(params, rows, depth, input.len(), output.len())?;
    let rescale =
        |d: i32| doubling_high_mul(d.wrapping_mul(1i32 << params.left_shift), params.multiplier);
    for (x, y) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        let max = i32::from(x.iter().copied().max().unwrap_or(i8::MIN));
        // the sum of the exponentials, Q12.19
        let mut sum: i32 = 0;
        for &v in x {
            let d = i32::from(v) - max;
            if d >= params.diff_min {
                sum = sum.wrapping_add(mul_by_pot(exp_negative_q5(rescale(d)), -12));
            }
        }
        // GetReciprocal(sum, 12)
        let headroom_plus_one = (sum as u32).leading_zeros() as i32;
        let bits_over_unit = 12 - headroom_plus_one;
        let shifted_sum_minus_one =
            ((sum as u32).wrapping_shl(headroom_plus_one as u32)).wrapping_sub(1 << 31) as i32;
        let scale = one_over_one_plus_x(shifted_sum_minus_one);
        for (o, &v) in y.iter_mut().zip(x) {
            let d = i32::from(v) - max;
            *o = if d >= params.diff_min {
                let e = exp_negative_q5(rescale(d));
                let shift = bits_over_unit + 31 - 8;
                let u = if (0..=31).contains(&shift) {
                    divide_by_pot(fx_mul(scale, e), shift as u32)
                } else {
                    0
                };
                (u - 128).clamp(-128, 127) as i8
            } else {
                i8::MIN
            };
        }
    }
    Ok(())
}
