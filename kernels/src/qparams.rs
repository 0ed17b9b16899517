//! Parameters of the int8 operators, TFLite's quantisation scheme (which CMSIS-NN and
//! TFLite Micro follow bit for bit): weights int8, symmetric (zero point 0), one scale per
//! output channel; activations int8, asymmetric, one scale and zero point per tensor; bias
//! int32 at scale `input_scale * weight_scale`; the int32 sum brought to the output's scale
//! by a fixed-point multiplier and shift ([`Requant`]), the output's zero point added, and
//! the fused activation applied as the output's clamp.
//!
//! Layout: activations NHWC (`[batch, h, w, channels]`), convolution weights OHWI
//! (`[out_channels, kernel_h, kernel_w, in_channels / groups]`), linear weights
//! `[out, in]`. Channels last puts the values one output sums over (a pixel's input
//! channels) next to each other, which is what the int8 dot-product instructions take
//! (SMLAD's pairs, `vpdpbusd`'s and `sdot`'s quadruples) and what TFLite and CMSIS-NN use,
//! so their models map onto these kernels without a transpose.

use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, LinearParams, Pool2dDims, Pool2dParams};

/// A real multiplier `m` held as `multiplier * 2^(shift - 31)`, `multiplier` in
/// `[2^30, 2^31)` (or 0 for `m == 0`): how an int32 sum is brought to the output's scale
/// (TFLite's `QuantizeMultiplier` and `MultiplyByQuantizedMultiplier`).
///
/// ```
/// use cnnkit_kernels::Requant;
/// let r = Requant::from_real(0.25).unwrap();
/// assert_eq!((r.multiplier, r.shift), (1 << 30, -1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Requant {
    /// The multiplier's 31 fraction bits: `[2^30, 2^31)`, or 0.
    pub multiplier: i32,
    /// The power of two: `-31..=30`.
    pub shift: i32,
}

impl Requant {
    /// TFLite's `QuantizeMultiplier`: `real = q * 2^shift` with `q` in `[0.5, 1)`,
    /// `multiplier = round(q * 2^31)` (halves away from zero); a `q` that rounds up to 1
    /// halves and bumps `shift`; a multiplier below `2^-31` becomes 0.
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] for a negative, NaN or infinite `real`, or one of
    /// `2^30` or more.
    pub fn from_real(real: f64) -> Result<Self, KernelError> {
        if !(0.0..1_073_741_824.0).contains(&real) {
            return Err(KernelError::InvalidParameter(
                "requantisation multiplier: finite, 0 or more, below 2^30",
            ));
        }
        if real == 0.0 {
            return Ok(Self::default());
        }
        let (q, mut shift) = libm::frexp(real);
        let mut fixed = libm::round(q * 2_147_483_648.0) as i64;
        if fixed == 1 << 31 {
            fixed /= 2;
            shift += 1;
        }
        if shift < -31 {
            return Ok(Self::default());
        }
        Ok(Self {
            multiplier: fixed as i32,
            shift,
        })
    }

    /// TFLite's per-channel convolution multiplier, `input_scale * weight_scale /
    /// output_scale` computed in `f64` from the `f32` scales.
    ///
    /// # Errors
    /// As [`Requant::from_real`]; also for an `output_scale` of 0 or less.
    ///
    /// ```
    /// use cnnkit_kernels::Requant;
    /// let r = Requant::for_scales(0.5, 0.01, 0.02).unwrap();
    /// assert_eq!(r, Requant::from_real(0.25).unwrap());
    /// ```
    pub fn for_scales(
        input_scale: f32,
        weight_scale: f32,
        output_scale: f32,
    ) -> Result<Self, KernelError> {
        if output_scale.is_nan() || output_scale <= 0.0 {
            return Err(KernelError::InvalidParameter(
                "output scale: finite and above 0",
            ));
        }
        Self::from_real(f64::from(input_scale) * f64::from(weight_scale) / f64::from(output_scale))
    }

    /// Whether the fields are in range (what [`Requant::from_real`] makes).
    pub const fn is_valid(self) -> bool {
        (self.multiplier == 0 || self.multiplier >= 1 << 30)
            && self.shift >= -31
            && self.shift <= 30
    }
}

/// How an int8 layer's int32 sums become its int8 outputs: TFLite's
/// `out = clamp(zp_out + requant(sum((x - zp_in) * w) + bias))`.
///
/// ```
/// use cnnkit_kernels::{QuantOutput, Requant};
/// let r = [Requant::from_real(0.01).unwrap()];
/// let q = QuantOutput::new(-3, 5, &r);
/// assert_eq!((q.min, q.max), (-128, 127));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantOutput<'a> {
    /// The input's zero point, `-128..=127`.
    pub input_zero_point: i32,
    /// The output's zero point, `-128..=127`.
    pub output_zero_point: i32,
    /// One per output channel, or one for all.
    pub requant: &'a [Requant],
    /// The fused activation's clamp, in output values (ReLU: the zero point).
    pub min: i8,
    /// Upper end of the clamp.
    pub max: i8,
}

impl<'a> QuantOutput<'a> {
    /// No activation: the clamp is the whole int8 range.
    pub const fn new(
        input_zero_point: i32,
        output_zero_point: i32,
        requant: &'a [Requant],
    ) -> Self {
        Self {
            input_zero_point,
            output_zero_point,
            requant,
            min: i8::MIN,
            max: i8::MAX,
        }
    }

    /// With the fused activation's clamp `[min, max]`.
    pub const fn with_clamp(mut self, min: i8, max: i8) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// The multiplier of output channel `c`.
    #[inline]
    pub(crate) fn requant_of(&self, c: usize) -> Requant {
        if self.requant.len() == 1 {
            self.requant[0]
        } else {
            self.requant[c]
        }
    }

    /// Checks every field for `channels` output channels (a `const fn`: the int8
    /// network checks its layers at compile time).
    pub(crate) const fn check(&self, channels: usize) -> Result<(), KernelError> {
        if !zero_point_ok(self.input_zero_point) || !zero_point_ok(self.output_zero_point) {
            return Err(KernelError::InvalidParameter("zero point: -128..=127"));
        }
        if self.min > self.max {
            return Err(KernelError::InvalidParameter("clamp: min above max"));
        }
        let n = self.requant.len();
        if n != 1 && n != channels {
            return Err(KernelError::LengthMismatch {
                arg: "requant",
                expected: channels,
                actual: n,
            });
        }
        let mut i = 0;
        while i < n {
            if !self.requant[i].is_valid() {
                return Err(KernelError::InvalidParameter(
                    "requant: multiplier 0 or in [2^30, 2^31), shift -31..=30",
                ));
            }
            i += 1;
        }
        Ok(())
    }
}

/// An int8 elementwise sum `a + b` of two tensors of different scales (a residual
/// connection), TFLite's `ADD`: both inputs brought to a common scale with 20 bits of
/// headroom, summed, and the sum brought to the output's scale.
///
/// ```
/// use cnnkit_kernels::AddParams;
/// let q = AddParams::from_scales(0.1, 3, 0.2, -4, 0.25, 1).unwrap();
/// assert_eq!(q.a_zero_point, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddParams {
    /// Zero point of `a`, `-128..=127`.
    pub a_zero_point: i32,
    /// Zero point of `b`.
    pub b_zero_point: i32,
    /// Zero point of the output.
    pub output_zero_point: i32,
    /// `a`'s scale over twice the larger input scale (below 1: `shift <= 0`).
    pub a: Requant,
    /// `b`'s, likewise.
    pub b: Requant,
    /// Twice the larger input scale over `2^20` times the output's.
    pub output: Requant,
    /// The fused activation's clamp.
    pub min: i8,
    /// Upper end of the clamp.
    pub max: i8,
}

impl AddParams {
    /// The bits of headroom the inputs get before they are summed (TFLite's `left_shift`).
    pub const LEFT_SHIFT: u32 = 20;

    /// TFLite's `ADD` parameters from the three tensors' scales and zero points (every
    /// ratio computed in `f64` from the `f32` scales), no activation.
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] for a scale not finite and above 0, a zero point
    /// out of -128..=127, or scales so far apart that a multiplier is not below 1.
    pub fn from_scales(
        a_scale: f32,
        a_zero_point: i32,
        b_scale: f32,
        b_zero_point: i32,
        output_scale: f32,
        output_zero_point: i32,
    ) -> Result<Self, KernelError> {
        for s in [a_scale, b_scale, output_scale] {
            if !s.is_finite() || s <= 0.0 {
                return Err(KernelError::InvalidParameter("scale: finite and above 0"));
            }
        }
        let twice_max = 2.0 * f64::from(a_scale.max(b_scale));
        let below_one = |real: f64| {
            let r = Requant::from_real(real)?;
            if r.shift > 0 {
                return Err(KernelError::InvalidParameter(
                    "add: the output scale is too small against the inputs' (multiplier 1 or more)",
                ));
            }
            Ok(r)
        };
        let q = Self {
            a_zero_point,
            b_zero_point,
            output_zero_point,
            a: below_one(f64::from(a_scale) / twice_max)?,
            b: below_one(f64::from(b_scale) / twice_max)?,
            output: below_one(
                twice_max / (f64::from(1u32 << Self::LEFT_SHIFT) * f64::from(output_scale)),
            )?,
            min: i8::MIN,
            max: i8::MAX,
        };
        q.check()?;
        Ok(q)
    }

    /// With the fused activation's clamp `[min, max]`.
    pub const fn with_clamp(mut self, min: i8, max: i8) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// Checks every field: zero points, multipliers valid and below 1, the clamp.
    pub(crate) const fn check(&self) -> Result<(), KernelError> {
        if !zero_point_ok(self.a_zero_point)
            || !zero_point_ok(self.b_zero_point)
            || !zero_point_ok(self.output_zero_point)
        {
            return Err(KernelError::InvalidParameter("zero point: -128..=127"));
        }
        const fn below_one(r: Requant) -> bool {
            r.is_valid() && r.shift <= 0
        }
        if !below_one(self.a) || !below_one(self.b) || !below_one(self.output) {
            return Err(KernelError::InvalidParameter(
                "add: multipliers 0 or in [2^30, 2^31), shifts -31..=0",
            ));
        }
        if self.min > self.max {
            return Err(KernelError::InvalidParameter("clamp: min above max"));
        }
        Ok(())
    }
}

/// int8 to int8 at another scale and zero point (TFLite's `QUANTIZE` from int8):
/// `clamp(zp_out + requant(x - zp_in))`.
///
/// ```
/// use cnnkit_kernels::RequantizeParams;
/// let q = RequantizeParams::from_scales(0.1, 0, 0.2, 5).unwrap();
/// assert_eq!(q.output_zero_point, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequantizeParams {
    /// The input's zero point, `-128..=127`.
    pub input_zero_point: i32,
    /// The output's zero point.
    pub output_zero_point: i32,
    /// The input's scale over the output's.
    pub requant: Requant,
}

impl RequantizeParams {
    /// From the two scales (their ratio in `f64`) and zero points.
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] for a scale not finite and above 0, a zero point
    /// out of -128..=127, or a ratio of `2^30` or more.
    pub fn from_scales(
        input_scale: f32,
        input_zero_point: i32,
        output_scale: f32,
        output_zero_point: i32,
    ) -> Result<Self, KernelError> {
        if !input_scale.is_finite() || input_scale <= 0.0 {
            return Err(KernelError::InvalidParameter("scale: finite and above 0"));
        }
        let q = Self {
            input_zero_point,
            output_zero_point,
            requant: Requant::for_scales(input_scale, 1.0, output_scale)?,
        };
        q.check()?;
        Ok(q)
    }

    pub(crate) const fn check(&self) -> Result<(), KernelError> {
        if !zero_point_ok(self.input_zero_point) || !zero_point_ok(self.output_zero_point) {
            return Err(KernelError::InvalidParameter("zero point: -128..=127"));
        }
        if !self.requant.is_valid() {
            return Err(KernelError::InvalidParameter(
                "requant: multiplier 0 or in [2^30, 2^31), shift -31..=30",
            ));
        }
        Ok(())
    }
}

/// The checks of `add_s8`: the parameters, three equal lengths.
pub(crate) fn check_add_s8(
    q: &AddParams,
    a: usize,
    b: usize,
    output: usize,
) -> Result<(), KernelError> {
    q.check()?;
    check_len("b", a, b)?;
    check_len("output", a, output)
}

/// The checks of `requantize_s8`.
pub(crate) fn check_requantize_s8(
    q: &RequantizeParams,
    input: usize,
    output: usize,
) -> Result<(), KernelError> {
    q.check()?;
    check_len("output", input, output)
}

pub(crate) fn check_softmax_s8(
    p: &SoftmaxParams,
    rows: usize,
    depth: usize,
    input: usize,
    output: usize,
) -> Result<(), KernelError> {
    p.check()?;
    if depth == 0 {
        return Err(KernelError::ZeroSize("depth"));
    }
    let n = rows.checked_mul(depth).ok_or(KernelError::Overflow)?;
    check_len("input", n, input)?;
    check_len("output", n, output)
}

/// Whether an int8 zero point is in `-128..=127`.
const fn zero_point_ok(z: i32) -> bool {
    z >= -128 && z <= 127
}

fn check_len(arg: &'static str, expected: usize, actual: usize) -> Result<(), KernelError> {
    if expected == actual {
        Ok(())
    } else {
        Err(KernelError::LengthMismatch {
            arg,
            expected,
            actual,
        })
    }
}

/// The checks of `conv2d_s8` (the kernel's and the reference's): geometry, quantisation,
/// and every slice's length (NHWC input and output, OHWI weights, bias of `out_channels`).
pub(crate) fn check_conv2d_s8(
    p: &Conv2dParams,
    q: &QuantOutput<'_>,
    input: usize,
    weight: usize,
    bias: Option<usize>,
    output: usize,
) -> Result<Conv2dDims, KernelError> {
    let d = p.dims()?;
    q.check(p.out_channels)?;
    check_len("input", d.input_len, input)?;
    check_len("weight", d.weight_len, weight)?;
    if let Some(b) = bias {
        check_len("bias", d.bias_len, b)?;
    }
    check_len("output", d.output_len, output)?;
    Ok(d)
}

/// The checks of `fully_connected_s8`: `(input, weight, output)` lengths.
pub(crate) fn check_fully_connected_s8(
    p: &LinearParams,
    q: &QuantOutput<'_>,
    input: usize,
    weight: usize,
    bias: Option<usize>,
    output: usize,
) -> Result<(), KernelError> {
    let (li, lw, lo) = p.lens()?;
    q.check(p.out_features)?;
    check_len("input", li, input)?;
    check_len("weight", lw, weight)?;
    if let Some(b) = bias {
        check_len("bias", p.out_features, b)?;
    }
    check_len("output", lo, output)
}

/// The checks of the int8 pooling kernels (NHWC): geometry without dilation (TFLite's
/// pooling has none), the clamp, lengths.
pub(crate) fn check_pool2d_s8(
    p: &Pool2dParams,
    min: i8,
    max: i8,
    input: usize,
    output: usize,
) -> Result<Pool2dDims, KernelError> {
    let d = p.dims()?;
    if p.dilation_h != 1 || p.dilation_w != 1 {
        return Err(KernelError::InvalidParameter(
            "int8 pooling: dilation 1 (TFLite's pooling has none)",
        ));
    }
    if p.pad_top >= p.kernel_h
        || p.pad_bottom >= p.kernel_h
        || p.pad_left >= p.kernel_w
        || p.pad_right >= p.kernel_w
    {
        // a window wholly in the padding would have nothing to pool
        return Err(KernelError::InvalidParameter(
            "int8 pooling: padding smaller than the window",
        ));
    }
    if min > max {
        return Err(KernelError::InvalidParameter("clamp: min above max"));
    }
    check_len("input", d.input_len, input)?;
    check_len("output", d.output_len, output)?;
    Ok(d)
}

/// The checks of quantise / dequantise: a finite scale above 0, a zero point in
/// `-128..=127`, equal lengths.
pub(crate) fn check_affine(
    scale: f32,
    zero_point: i32,
    input: usize,
    output: usize,
) -> Result<(), KernelError> {
    if !scale.is_finite() || scale <= 0.0 {
        return Err(KernelError::InvalidParameter("scale: finite and above 0"));
    }
    if !(-128..=127).contains(&zero_point) {
        return Err(KernelError::InvalidParameter("zero point: -128..=127"));
    }
    check_len("output", input, output)
}

/// The parameters of TFLite's int8 softmax ([`crate::softmax_s8`]), from `beta` and the
/// input's scale as TFLite's `PreprocessSoftmaxScaling` and `CalculateInputRadius` compute
/// them (5 integer bits for the scaled differences): the multiplier and left shift that
/// turn an input difference `x - max` into a fixed-point `beta * scale * (x - max)`, and
/// the smallest difference whose exponential counts (below it, the output is -128).
///
/// ```
/// use cnnkit_kernels::SoftmaxParams;
/// let p = SoftmaxParams::new(1.0, 0.1).unwrap();
/// assert!(p.diff_min < 0 && p.left_shift >= 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftmaxParams {
    /// `QuantizeMultiplierGreaterThanOne(beta * scale * 2^26)`: the multiplier...
    pub multiplier: i32,
    /// ... and its left shift (0 to 31).
    pub left_shift: i32,
    /// `-floor(31 * 2^26 / 2^left_shift)`.
    pub diff_min: i32,
}

impl SoftmaxParams {
    /// From `beta` and the input scale.
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] for a `beta` or scale that is not finite and
    /// above 0, or whose product is too small for TFLite's scheme (a multiplier below 1).
    pub fn new(beta: f32, input_scale: f32) -> Result<Self, KernelError> {
        let ok = |v: f32| v.is_finite() && v > 0.0;
        if !ok(beta) || !ok(input_scale) {
            return Err(KernelError::InvalidParameter(
                "softmax: beta and the input scale finite and above 0",
            ));
        }
        let real =
            (f64::from(beta) * f64::from(input_scale) * f64::from(1u32 << 26)).min(2_147_483_647.0);
        let (q, shift) = libm::frexp(real);
        let mut fixed = libm::round(q * 2_147_483_648.0) as i64;
        let mut shift = shift;
        if fixed == 1 << 31 {
            fixed /= 2;
            shift += 1;
        }
        if !(0..=31).contains(&shift) {
            return Err(KernelError::InvalidParameter(
                "softmax: beta * input scale * 2^26 below 1 (TFLite's left shift would be negative)",
            ));
        }
        let radius = libm::floor(31.0 * f64::from(1u32 << 26) / libm::ldexp(1.0, shift));
        let p = SoftmaxParams {
            multiplier: fixed as i32,
            left_shift: shift,
            diff_min: -(radius as i32),
        };
        p.check()?;
        Ok(p)
    }

    /// Whether the fields are in range: a multiplier of `2^30` or more, a left shift of 0
    /// to 31, a `diff_min` of 0 or less.
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] naming the field.
    pub const fn check(&self) -> Result<(), KernelError> {
        if self.multiplier < (1 << 30) {
            return Err(KernelError::InvalidParameter(
                "softmax multiplier: 2^30 or more (a normalised fixed-point multiplier)",
            ));
        }
        if self.left_shift < 0 || self.left_shift > 31 {
            return Err(KernelError::InvalidParameter("softmax left shift: 0 to 31"));
        }
        if self.diff_min > 0 {
            return Err(KernelError::InvalidParameter("softmax diff_min: 0 or less"));
        }
        Ok(())
    }
}
