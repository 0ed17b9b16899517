//! Vectorised `exp`, `sigmoid`, `tanh` and `gelu`, generic over the vector type, accurate
//! to a few ULP over the whole f32 range, with correct saturation and NaN propagation.
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
    scale(n, m)
}

/// `2^n (1 + m)` for integral `n` in `[-155, 128]`, as `2^n1 * 2^n2` with both halves
/// normal (`n1 = floor(n / 2)` exactly, as `n` is integral and small): results down to
/// the smallest subnormal come out rounded once.
#[inline(always)]
fn scale<V: Arith, const N: usize>(n: [V; N], m: [V; N]) -> [V; N] {
    let p = each!(m, |m| m.add(V::splat(1.0)));
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

/// `min(max(x, 0), 6)` lane-wise (`x < 0 ? 0 : x`, then `6 < x ? 6 : x`: -0 and NaN
/// pass through), for the dispatched map of `activation::relu6`.
#[inline(always)]
pub(crate) fn relu6<V: Arith, const N: usize>(x: [V; N]) -> [V; N] {
    let (zero, six) = (V::splat(0.0), V::splat(6.0));
    let r = each!(x, |x| x.select_lt(zero, zero, x));
    each!(r, |r| six.select_lt(r, six, r))
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

/// `erf(x / sqrt 2) = x * sum c_n x^(2n)`, `c_n = sqrt(2/pi) (-1)^n / (2^n n! (2n + 1))`
/// (Taylor, highest first; for `|x| < 1` the first term left out is below 1e-8 of the
/// sum).
const ERF_TAYLOR: [f32; 8] = [
    -8.245_335e-8,
    1.331_938_7e-6,
    -1.888_931_2e-5,
    2.308_693_8e-4,
    -2.374_656_5e-3,
    1.994_711_3e-2,
    -0.132_980_76,
    0.797_884_6,
];

/// `erfc(z) = t e^(-z^2 + P(t))`, `t = 1 / (1 + z/2)` (the form of Numerical Recipes'
/// `erfcc`): `P`'s coefficients, highest first, fitted for the `z` [`gelu`] takes there
/// (`|x|` in `[1, 14.5]`, `t` in `[0.163, 0.739]`) with each coefficient rounded to f32
/// before the next is fitted: `|P - exact| < 1.4e-8` (`erfcc`'s own, for all `z`: 1.2e-7,
/// whose results had 1.9 times as many errors of 3 ULP or more). The fit:
/// `docs/fit_erfc.py`.
const ERFC_P: [f32; 9] = [
    -0.162_749_28,
    0.385_432_36,
    -0.082_700_02,
    -0.354_953_02,
    0.064_755_03,
    0.031_150_626,
    0.385_006_93,
    0.998_983_2,
    -1.265_469_4,
];

/// `|x|` above which `x Phi(x)` is `x` (positive) or rounds to `-0` (negative) in f32
/// (from 14.356069 on). Lanes beyond it are computed at 0 and replaced at the end: at
/// `|x| = 14.5` the terms would underflow, and on x86 every operation with a subnormal
/// operand or result takes a microcode assist (inputs of which 40% lie
/// beyond, uniform in [-24, 24], AVX2: 2.20 -> 1.40 ms for 802,816 floats).
const GELU_FAR: f32 = 14.36;

/// `2^SCALE_UP`: the factor by which [`erfc_parts`] returns `e` scaled up, so that `e`
/// stays normal wherever the result does (`e` reaches 1e-44 near the end of the range).
const SCALE_UP: f32 = 64.0;

/// `e^(hi + lo) 2^k` (integral `k`) with `hi` large and `|lo|` a few units: `hi - n ln2`
/// is exact (`LN2_HI` has 9 bits, `n` 8, `hi` a multiple of its ulp), so `hi`'s own
/// magnitude costs no accuracy, as it would in `exp(hi + lo)`. For `hi + lo` in
/// `[-107, 88]` and `n + k` in `[-155, 128]`.
#[inline(always)]
fn exp_hl<V: Arith, const N: usize>(hi: [V; N], lo: [V; N], k: f32) -> [V; N] {
    let n = zip!(hi, lo, |h, l| h.add(l).mul(V::splat(LOG2E)).round());
    let r = zip!(n, hi, |n, h| n.mul_add(V::splat(-LN2_HI), h));
    let s = zip!(n, lo, |n, l| n.mul_add(V::splat(-LN2_LO), l));
    let m = em1(zip!(r, s, |r, s| r.add(s)));
    scale(each!(n, |n| n.add(V::splat(k))), m)
}

/// For `a = |x|` at most [`GELU_FAR`] (NaN passes): `(t, e, h, l)` with
/// `erfc(a / sqrt 2) = t e 2^-k` and `a^2 = h + l` exactly (`Arith::mul_error`: an FMA,
/// or Dekker's product where the variant has none).
#[inline(always)]
#[allow(clippy::type_complexity)]
fn erfc_parts<V: Arith, const N: usize>(a: [V; N], k: f32) -> ([V; N], [V; N], [V; N], [V; N]) {
    let one = V::splat(1.0);
    let h = each!(a, |a| a.mul(a));
    let l = zip!(a, h, |a, h| a.mul_error(a, h));
    // t = 1 / (1 + a / (2 sqrt 2))
    let t = each!(a, |a| one.div(a.mul_add(V::splat(0.353_553_4), one)));
    let mut p = [V::splat(ERFC_P[0]); N];
    for c in &ERFC_P[1..] {
        p = zip!(p, t, |p, t| p.mul_add(t, V::splat(*c)));
    }
    // -z^2 + P(t) = -h/2 + (P(t) - l/2)
    let hi = each!(h, |h| h.mul(V::splat(-0.5)));
    let lo = zip!(l, p, |l, p| l.mul_add(V::splat(-0.5), p));
    (t, exp_hl(hi, lo, k), h, l)
}

/// `|x|`, and `|x|` with the lanes beyond [`GELU_FAR`] set to 0 (NaN passes).
#[inline(always)]
fn gelu_abs<V: Arith, const N: usize>(x: [V; N]) -> ([V; N], [V; N]) {
    let a = each!(x, |x| x.abs());
    let ac = each!(a, |a| a.select_gt(V::splat(GELU_FAR), V::splat(0.0), a));
    (a, ac)
}

/// `erf(x / sqrt 2)` for `|x| < 1` ([`ERF_TAYLOR`]).
#[inline(always)]
fn erf_near<V: Arith, const N: usize>(x: [V; N]) -> [V; N] {
    let u = each!(x, |x| x.mul(x));
    let mut s = [V::splat(ERF_TAYLOR[0]); N];
    for c in &ERF_TAYLOR[1..] {
        s = zip!(s, u, |s, u| s.mul_add(u, V::splat(*c)));
    }
    zip!(x, s, |x, s| x.mul(s))
}

/// `x Phi(x)` (GELU, `Phi` the standard normal distribution function) lane-wise on `N`
/// vectors, accurate over the whole f32 range, the negative tail included (the
/// `1 + erf` of the textbook formula cancels there: PyTorch's f32 kernel gives
/// `gelu(-5)` 17% low and `-0` below -9; the exact value stays representable down to
/// -14.36). For `|x| < 1`, `x/2 + x/2 erf(x / sqrt 2)` with one rounding ([`ERF_TAYLOR`]);
/// beyond, from `erfc(|x| / sqrt 2) = t e` ([`erfc_parts`]): `q e` for `x < 0` and
/// `x - q e` for `x > 0`, `q = x t / 2`, the exponent `-x^2/2` carried in two parts
/// ([`exp_hl`]). `+inf -> +inf`, `-inf -> -0` (the limits), NaN stays NaN. No branches.
/// The tests give its bound ([`crate::Elementwise::max_ulps`]) from every f32.
#[inline(always)]
pub(crate) fn gelu<V: Arith, const N: usize>(x: [V; N]) -> [V; N] {
    let half = V::splat(0.5);
    let hx = each!(x, |x| x.mul(half));
    // -0 keeps its sign: copysign (the sum alone gives +0)
    let en = erf_near(x);
    let near: [V; N] = lanes!(|i| hx[i].mul_add(en[i], hx[i]).copysign(x[i]));
    let (a, ac) = gelu_abs(x);
    let (t, e, _, _) = erfc_parts(ac, SCALE_UP);
    // q = x t / 2, scaled down as e is up (exact: q is at least 0.08)
    let down = V::splat(0.5 / 18_446_744_073_709_551_616.0);
    let q: [V; N] = lanes!(|i| t[i].mul(down).mul(ac[i].copysign(x[i])));
    lanes!(|i| {
        let far = x[i].select_lt(
            V::splat(0.0),
            q[i].mul(e[i]),
            V::splat(0.0).sub(q[i]).mul_add(e[i], x[i]),
        );
        let y = a[i].select_lt(V::splat(1.0), near[i], far);
        // beyond GELU_FAR: x, or -0
        let limit = x[i].select_lt(V::splat(0.0), V::splat(-0.0), x[i]);
        a[i].select_gt(V::splat(GELU_FAR), limit, y)
    })
}

/// The derivative of [`gelu`], `Phi(x) + x phi(x)` (`phi` the normal density), from the
/// same parts; `x phi(x)` is 0 at the infinities.
#[inline(always)]
pub(crate) fn gelu_derivative<V: Arith, const N: usize>(x: [V; N]) -> [V; N] {
    let half = V::splat(0.5);
    let en = erf_near(x);
    let (a, ac) = gelu_abs(x);
    let (t, e, h, l) = erfc_parts(ac, 0.0);
    let hi = each!(h, |h| h.mul(V::splat(-0.5)));
    let lo = each!(l, |l| l.mul(V::splat(-0.5)));
    let g = exp_hl(hi, lo, 0.0);
    lanes!(|i| {
        let tail = t[i].mul(half).mul(e[i]);
        let far = x[i].select_lt(V::splat(0.0), tail, V::splat(1.0).sub(tail));
        let cdf = a[i].select_lt(V::splat(1.0), half.mul_add(en[i], half), far);
        // 1 / sqrt(2 pi)
        let d = ac[i]
            .copysign(x[i])
            .mul(g[i])
            .mul_add(V::splat(0.398_942_3), cdf);
        // beyond GELU_FAR: 1, or 0 (NaN passes: the comparisons are false)
        let limit = x[i].select_lt(V::splat(0.0), V::splat(0.0), V::splat(1.0));
        a[i].select_gt(V::splat(GELU_FAR), limit, d)
    })
}
