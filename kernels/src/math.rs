//! Vectorised `exp`, `sigmoid` and `tanh`, generic over the vector type, accurate to a
//! few ULP over the whole f32 range, with correct saturation and NaN propagation.
//!
//! `exp` uses Cody-Waite range reduction `x = n ln2 + r`, `|r| <= ln2 / 2`, the degree-7
//! Cephes polynomial, and scales by `2^n` in two steps so that results down to the
//! smallest subnormal and up to overflow come out right. `tanh` uses the same reduction
//! for `e^(2|x|) - 1` and one division (see [`tanh`]).

use crate::vector::Arith;

/// `f` on each of `N` vectors: `each!(x, |v| f(v))`. A macro and a loop rather than a
/// function taking a closure: a closure is a function of its own, which the inliner may
/// leave out of line in a large kernel, where it then runs without the variant's target
/// features (a long kernel such as GELU ran 10 times slower on AVX2 that way).
macro_rules! each {
    ($x:expr, |$v:ident| $body:expr) => {{
        let x = $x;
        let mut out = x;
        for i in 0..out.len() {
            let $v = x[i];
            out[i] = $body;
        }
        out
    }};
}

/// `f` on each pair of `N` vectors: `zip!(a, b, |u, v| f(u, v))` (see [`each`]).
macro_rules! zip {
    ($a:expr, $b:expr, |$u:ident, $v:ident| $body:expr) => {{
        let (a, b) = ($a, $b);
        let mut out = a;
        for i in 0..out.len() {
            let ($u, $v) = (a[i], b[i]);
            out[i] = $body;
        }
        out
    }};
}

/// The `N` vectors `f(0), f(1), ...`: `lanes!(|i| f(i))` (see [`each`]); `V` and `N` are
/// the caller's.
macro_rules! lanes {
    (|$i:ident| $body:expr) => {{
        let mut out = [V::splat(0.0); N];
        for $i in 0..N {
            out[$i] = $body;
        }
        out
    }};
}

const LOG2E: f32 = core::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` lane-wise: `+inf` above 88.72, 0 below -103.97, NaN stays NaN.
#[inline(always)]
pub(crate) fn exp<V: Arith>(x: V) -> V {
    exp_n([x])[0]
}

/// [`exp`] of `N` vectors, each step applied across all of them before the next (see
/// [`tanh`]).
#[inline(always)]
fn exp_n<V: Arith, const N: usize>(x: [V; N]) -> [V; N] {
    // Clamp to where the result is still finite / nonzero (NaN passes through).
    let lo = V::splat(-104.0);
    let hi = V::splat(89.0);
    let x = each!(x, |x| x.select_lt(lo, lo, x));
    let x = each!(x, |x| x.select_gt(hi, hi, x));
    let (n, m) = reduce(x);
    let p = each!(m, |m| m.add(V::splat(1.0)));
    // 2^n with n in [-150, 128], as 2^n1 * 2^n2 with both halves normal
    // (n1 = floor(n / 2) exactly, as n is integral and small).
    let n1 = each!(n, |n| n.mul(V::splat(0.5)).sub(V::splat(0.25)).round());
    let n2 = zip!(n, n1, |n, n1| n.sub(n1));
    let p = zip!(p, n1, |p, n1| p.mul(n1.pow2i()));
    zip!(p, n2, |p, n2| p.mul(n2.pow2i()))
}

/// `max(x, 0)` lane-wise (`x < 0 ? 0 : x`: -0 and NaN pass through), for the dispatched
/// map of `activation::relu` (one comparison: no chain to interleave).
#[inline(always)]
pub(crate) fn relu<V: Arith, const N: usize>(x: [V; N]) -> [V; N] {
    let zero = V::splat(0.0);
    each!(x, |x| x.select_lt(zero, zero, x))
}

/// `1.5 * 2^23`: added to a float below 2^22 in magnitude, rounds it to an integer held in
/// the low mantissa bits.
const SHIFTER: f32 = 12_582_912.0;

/// `e^r - 1 = r + r^2 p(r)` for `|r| <= ln2 / 2`, with the degree-5 Cephes polynomial `p`.
#[inline(always)]
fn em1<V: Arith, const N: usize>(r: [V; N]) -> [V; N] {
    let r2 = each!(r, |r| r.mul(r));
    let mut p = [V::splat(1.987_569_1e-4); N];
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = zip!(p, r, |p, r| p.mul_add(r, V::splat(c)));
    }
    lanes!(|i| p[i].mul_add(r2[i], r[i]))
}

/// Cody-Waite reduction `x = n ln2 + r` (`|r| <= ln2 / 2`, `n` integral) and
/// `e^r - 1 = r + r^2 p(r)` with the degree-5 Cephes polynomial `p`: returns
/// `(n, e^r - 1)`.
#[inline(always)]
fn reduce<V: Arith, const N: usize>(x: [V; N]) -> ([V; N], [V; N]) {
    let n = each!(x, |x| x.mul(V::splat(LOG2E)).round());
    let r = zip!(n, x, |n, x| n.mul_add(V::splat(-LN2_HI), x));
    let r = zip!(n, r, |n, r| n.mul_add(V::splat(-LN2_LO), r));
    (n, em1(r))
}

/// `1 / (1 + e^-x)` lane-wise on `N` vectors (see [`tanh`]), computed from
/// `e = e^-|x|` without overflow: `1 / (1 + e)` for `x >= 0`, `e / (1 + e)` for `x < 0`.
#[inline(always)]
pub(crate) fn sigmoid<V: Arith, const N: usize>(x: [V; N]) -> [V; N] {
    let one = V::splat(1.0);
    let e = exp_n(each!(x, |x| x.abs().mul(V::splat(-1.0))));
    let num = zip!(x, e, |x, e| x.select_lt(V::splat(0.0), e, one));
    zip!(num, e, |num, e| num.div(one.add(e)))
}

/// `tanh` lane-wise, one formula over the whole range:
/// `tanh |x| = m / (m + 2)` with `m = e^(2|x|) - 1 = 2^n (e^r - 1) + (2^n - 1)` (one fused
/// multiply-add; `2^n - 1` is exact for the `n` in `0..=28` reached here, and for `n = 0`
/// `m = e^r - 1` keeps full relative precision down to the subnormals, where it returns
/// `x`). `|x|` is clamped to 9.5 (a `min`, which lets NaN through), above which the f32
/// result is 1. `n` comes from the shifter [`SHIFTER`] added inside the first FMA and
/// `2^n` from its bits; `r = 2|x| - n ln2` in one FMA with `ln2` rounded to f32 (its
/// error times `n <= 28` stays below 6e-8 in `r`). At most 2 ULP from the exact value
/// over every finite f32, in each variant. No branches, one division.
///
/// Works on `N` vectors, each step applied across all of them before the next: one chain
/// of ~25 dependent operations leaves the FMA units idle (the chain counts and the
/// alternatives tried: docs/log.md, "Measurements behind constants"; re-measure with
/// `cnnkit bench --filter tanh --variant V`).
#[inline(always)]
pub(crate) fn tanh<V: Arith, const N: usize>(x: [V; N]) -> [V; N] {
    // 2|x| = n ln2 + r: the shifter's addition in the FMA rounds 2|x| log2(e) to the
    // nearest integer n, left in the low mantissa bits of `t`
    let shifter = V::splat(SHIFTER);
    let a2 = each!(x, |x| {
        let a = x.abs().min(V::splat(9.5));
        a.add(a)
    });
    let t = each!(a2, |a2| a2.mul_add(V::splat(LOG2E), shifter));
    let n = each!(t, |t| t.sub(shifter));
    let r = zip!(n, a2, |n, a2| {
        n.mul_add(V::splat(-core::f32::consts::LN_2), a2)
    });
    let m = zip!(t, em1(r), |t, m| {
        let s = t.pow2_shifted();
        s.mul_add(m, s.sub(V::splat(1.0)))
    });
    let t = each!(m, |m| m.div(m.add(V::splat(2.0))));
    zip!(t, x, |t, x| t.copysign(x))
}
