//! Vectorised `exp`, `sigmoid` and `tanh`, generic over the vector type, accurate to a
//! few ULP over the whole f32 range, with correct saturation and NaN propagation.
//!
//! `exp` uses Cody-Waite range reduction `x = n ln2 + r`, `|r| <= ln2 / 2`, the degree-7
//! Cephes polynomial, and scales by `2^n` in two steps so that results down to the
//! smallest subnormal and up to overflow come out right. `tanh` uses the same reduction
//! for `e^(2|x|) - 1` and one division (see [`tanh`]).

use crate::vector::Vf32;

const LOG2E: f32 = core::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` lane-wise: `+inf` above 88.72, 0 below -103.97, NaN stays NaN.
#[inline(always)]
pub(crate) fn exp<V: Vf32>(x: V) -> V {
    // Clamp to where the result is still finite / nonzero (NaN passes through).
    let lo = V::splat(-104.0);
    let hi = V::splat(89.0);
    let x = x.select_lt(lo, lo, x);
    let x = x.select_gt(hi, hi, x);
    let (n, m) = reduce(x);
    let p = m.add(V::splat(1.0));
    // 2^n with n in [-150, 128], as 2^n1 * 2^n2 with both halves normal
    // (n1 = floor(n / 2) exactly, as n is integral and small).
    let n1 = n.mul(V::splat(0.5)).sub(V::splat(0.25)).round();
    let n2 = n.sub(n1);
    p.mul(n1.pow2i()).mul(n2.pow2i())
}

/// Cody-Waite reduction `x = n ln2 + r` (`|r| <= ln2 / 2`, `n` integral) and
/// `e^r - 1 = r + r^2 p(r)` with the degree-5 Cephes polynomial `p`: returns
/// `(n, e^r - 1)`.
#[inline(always)]
fn reduce<V: Vf32>(x: V) -> (V, V) {
    let n = x.mul(V::splat(LOG2E)).round();
    let r = n.mul_add(V::splat(-LN2_HI), x);
    let r = n.mul_add(V::splat(-LN2_LO), r);
    let r2 = r.mul(r);
    let mut p = V::splat(1.987_569_1e-4);
    p = p.mul_add(r, V::splat(1.398_199_9e-3));
    p = p.mul_add(r, V::splat(8.333_452e-3));
    p = p.mul_add(r, V::splat(4.166_579_6e-2));
    p = p.mul_add(r, V::splat(1.666_666_5e-1));
    p = p.mul_add(r, V::splat(0.5));
    (n, p.mul_add(r2, r))
}

/// `1 / (1 + e^-x)` lane-wise, computed from `e = e^-|x|` without overflow:
/// `1 / (1 + e)` for `x >= 0`, `e / (1 + e)` for `x < 0`.
#[inline(always)]
pub(crate) fn sigmoid<V: Vf32>(x: V) -> V {
    let one = V::splat(1.0);
    let e = exp(x.abs().mul(V::splat(-1.0)));
    let num = x.select_lt(V::splat(0.0), e, one);
    num.div(one.add(e))
}

/// `tanh` lane-wise, one formula over the whole range:
/// `tanh |x| = m / (m + 2)` with `m = e^(2|x|) - 1 = 2^n (e^r - 1) + (2^n - 1)` (one fused
/// multiply-add; `2^n - 1` is exact for the `n` in `0..=28` reached here, and for `n = 0`
/// `m = e^r - 1` keeps full relative precision down to the subnormals, where it returns
/// `x`). `|x|` is clamped to 9.5, above which the f32 result is 1; NaN passes through.
/// At most 2 ULP from the exact value over every finite f32 (checked exhaustively when it
/// was written; the tests sweep the range). No branches, one division.
#[inline(always)]
pub(crate) fn tanh<V: Vf32>(x: V) -> V {
    let hi = V::splat(9.5);
    let ax = x.abs();
    let ax = ax.select_gt(hi, hi, ax);
    let (n, m) = reduce(ax.add(ax));
    let s = n.pow2i();
    let m = s.mul_add(m, s.sub(V::splat(1.0)));
    m.div(m.add(V::splat(2.0))).copysign(x)
}
