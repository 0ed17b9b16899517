//! Vectorised `exp`, `sigmoid` and `tanh` over [`f32x8`], accurate to a few ULP over the
//! whole f32 range, with correct saturation and NaN propagation.
//!
//! `exp` uses Cody-Waite range reduction `x = n ln2 + r`, `|r| <= ln2 / 2`, the degree-7
//! Cephes polynomial, and scales by `2^n` in two steps so that results down to the
//! smallest subnormal and up to overflow come out right.

use crate::simd::f32x8;
use wide::i32x8;

const LOG2E: f32 = core::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` lane-wise: `+inf` above 88.72, 0 below -103.97, NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32x8) -> f32x8 {
    // Clamp to where the result is still finite / nonzero (NaN passes through).
    let lo = f32x8::splat(-104.0);
    let hi = f32x8::splat(89.0);
    let x = x.simd_lt(lo).select(lo, x);
    let x = x.simd_gt(hi).select(hi, x);
    let n = (x * f32x8::splat(LOG2E)).round();
    let r = n.mul_neg_add(f32x8::splat(LN2_HI), x);
    let r = n.mul_neg_add(f32x8::splat(LN2_LO), r);
    let r2 = r * r;
    let mut p = f32x8::splat(1.987_569_1e-4);
    p = p.mul_add(r, f32x8::splat(1.398_199_9e-3));
    p = p.mul_add(r, f32x8::splat(8.333_452e-3));
    p = p.mul_add(r, f32x8::splat(4.166_579_6e-2));
    p = p.mul_add(r, f32x8::splat(1.666_666_5e-1));
    p = p.mul_add(r, f32x8::splat(0.5));
    let p = p.mul_add(r2, r) + f32x8::ONE;
    // 2^n with n in [-150, 128], as 2^n1 * 2^n2 with both halves normal.
    let ni: i32x8 = n.round_int();
    let n1: i32x8 = ni >> 1_i32;
    let n2 = ni - n1;
    let bias = i32x8::splat(127);
    let s1 = f32x8::from_bits(((n1 + bias) << 23_i32).cast_unsigned());
    let s2 = f32x8::from_bits(((n2 + bias) << 23_i32).cast_unsigned());
    p * s1 * s2
}

/// `1 / (1 + e^-x)` lane-wise, computed from `e = e^-|x|` without overflow:
/// `1 / (1 + e)` for `x >= 0`, `e / (1 + e)` for `x < 0`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32x8) -> f32x8 {
    let e = exp(-x.abs());
    let num = x.simd_lt(f32x8::ZERO).select(e, f32x8::ONE);
    num / (f32x8::ONE + e)
}

/// `tanh` lane-wise: an odd polynomial (Cephes) below |x| = 0.625, else
/// `1 - 2 / (e^{2|x|} + 1)` with the sign of `x`.
#[inline(always)]
pub(crate) fn tanh(x: f32x8) -> f32x8 {
    let ax = x.abs();
    // small |x|
    let z = x * x;
    let mut p = f32x8::splat(-5.704_988_7e-3);
    p = p.mul_add(z, f32x8::splat(2.063_909e-2));
    p = p.mul_add(z, f32x8::splat(-5.373_971_6e-2));
    p = p.mul_add(z, f32x8::splat(1.333_144_2e-1));
    p = p.mul_add(z, f32x8::splat(-0.333_332_8));
    let small = (p * z).mul_add(ax, ax);
    // large |x|
    let e = exp(ax + ax);
    let big = f32x8::ONE - f32x8::splat(2.0) / (e + f32x8::ONE);
    // tanh is odd: both branches give |tanh x|; the sign (also of -0.0) comes last
    ax.simd_lt(f32x8::splat(0.625))
        .select(small, big)
        .copysign(x)
}
