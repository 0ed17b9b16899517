//! Small helpers over `wide::f32x8`, the portable vector type (SSE2/AVX/AVX-512, NEON,
//! wasm simd128 or scalar lanes, chosen at compile time).

pub(crate) use wide::f32x8;

/// Lanes in an [`f32x8`].
pub(crate) const LANES: usize = 8;

/// Loads the first 8 elements of `s`; missing elements (if `s` is shorter) read as 0.
#[inline(always)]
pub(crate) fn load(s: &[f32]) -> f32x8 {
    match s.first_chunk::<LANES>() {
        Some(a) => f32x8::new(*a),
        None => load_partial(s),
    }
}

/// Loads `min(s.len(), 8)` elements of `s`, the other lanes 0.
#[inline(always)]
pub(crate) fn load_partial(s: &[f32]) -> f32x8 {
    let mut a = [0.0_f32; LANES];
    let n = s.len().min(LANES);
    a[..n].copy_from_slice(&s[..n]);
    f32x8::new(a)
}

/// Stores all 8 lanes into the first 8 elements of `d` (or as many as `d` holds).
#[inline(always)]
pub(crate) fn store(d: &mut [f32], v: f32x8) {
    match d.first_chunk_mut::<LANES>() {
        Some(a) => *a = v.to_array(),
        None => store_partial(d, v),
    }
}

/// Stores the first `min(d.len(), 8)` lanes of `v` into `d`.
#[inline(always)]
pub(crate) fn store_partial(d: &mut [f32], v: f32x8) {
    let a = v.to_array();
    let n = d.len().min(LANES);
    d[..n].copy_from_slice(&a[..n]);
}

/// `min(max(v, lo), hi)` lane by lane, with NaN in `v` passed through (PyTorch's rule).
#[inline(always)]
pub(crate) fn clamp(v: f32x8, lo: f32x8, hi: f32x8) -> f32x8 {
    let v = v.simd_lt(lo).select(lo, v);
    v.simd_gt(hi).select(hi, v)
}

/// Scalar [`clamp`]: NaN passes through.
#[inline(always)]
pub(crate) fn clamp1(v: f32, lo: f32, hi: f32) -> f32 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// Applies `f` to `x` eight lanes at a time, writing `y`; the tail goes through the same
/// vector code (zero-padded), so every element gets bit-identical treatment.
#[inline(always)]
pub(crate) fn map(x: &[f32], y: &mut [f32], f: impl Fn(f32x8) -> f32x8) {
    let mut xc = x.chunks_exact(LANES);
    let mut yc = y.chunks_exact_mut(LANES);
    for (xs, ys) in (&mut xc).zip(&mut yc) {
        store(ys, f(load(xs)));
    }
    let (xr, yr) = (xc.remainder(), yc.into_remainder());
    if !xr.is_empty() {
        store_partial(yr, f(load_partial(xr)));
    }
}

/// In-place [`map`].
#[inline(always)]
pub(crate) fn map_inplace(x: &mut [f32], f: impl Fn(f32x8) -> f32x8) {
    let mut xc = x.chunks_exact_mut(LANES);
    for xs in &mut xc {
        let v = f(load(xs));
        store(xs, v);
    }
    let xr = xc.into_remainder();
    if !xr.is_empty() {
        let v = f(load_partial(xr));
        store_partial(xr, v);
    }
}

/// Applies `f(a, y)` lane-wise, writing `y` in place.
#[inline(always)]
pub(crate) fn map2_inplace(a: &[f32], y: &mut [f32], f: impl Fn(f32x8, f32x8) -> f32x8) {
    let mut ac = a.chunks_exact(LANES);
    let mut yc = y.chunks_exact_mut(LANES);
    for (xa, ys) in (&mut ac).zip(&mut yc) {
        let v = f(load(xa), load(ys));
        store(ys, v);
    }
    let (ar, yr) = (ac.remainder(), yc.into_remainder());
    if !ar.is_empty() {
        let v = f(load_partial(ar), load_partial(yr));
        store_partial(yr, v);
    }
}

/// Applies `f(a, b)` lane-wise over two inputs, writing `y`.
#[inline(always)]
pub(crate) fn map2(a: &[f32], b: &[f32], y: &mut [f32], f: impl Fn(f32x8, f32x8) -> f32x8) {
    let mut ac = a.chunks_exact(LANES);
    let mut bc = b.chunks_exact(LANES);
    let mut yc = y.chunks_exact_mut(LANES);
    for ((xa, xb), ys) in (&mut ac).zip(&mut bc).zip(&mut yc) {
        store(ys, f(load(xa), load(xb)));
    }
    let (ar, br, yr) = (ac.remainder(), bc.remainder(), yc.into_remainder());
    if !ar.is_empty() {
        store_partial(yr, f(load_partial(ar), load_partial(br)));
    }
}

/// Sum of a slice, eight partial sums at a time.
#[inline]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = f32x8::ZERO;
    let mut c = x.chunks_exact(LANES);
    for s in &mut c {
        acc += load(s);
    }
    acc += load_partial(c.remainder());
    acc.reduce_add()
}

/// Sum of every element of several slices: four independent vector sums (a single chain
/// waits on the add latency) carried across the slices, one horizontal reduction at the
/// end.
#[inline]
pub(crate) fn sum_all<'a>(xs: impl Iterator<Item = &'a [f32]>) -> f32 {
    let mut acc = [f32x8::ZERO; 4];
    for x in xs {
        let mut c = x.chunks_exact(4 * LANES);
        for s in &mut c {
            for (j, a) in acc.iter_mut().enumerate() {
                *a += load(&s[j * LANES..(j + 1) * LANES]);
            }
        }
        let mut r = c.remainder().chunks_exact(LANES);
        for (s, a) in (&mut r).zip(acc.iter_mut().skip(1)) {
            *a += load(s);
        }
        acc[0] += load_partial(r.remainder());
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])).reduce_add()
}

/// Whether `x` holds no infinity and no NaN. Integer tests on the exponent bits, in
/// blocks of 256 that the compiler vectorises (an early exit per element would keep it
/// scalar: 1.3 ns per float measured, a quarter of a depthwise weight gradient).
#[inline]
pub(crate) fn all_finite(x: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    x.chunks(256).all(|block| {
        block
            .iter()
            .fold(0_u32, |bad, v| bad | u32::from(v.to_bits() & EXP == EXP))
            == 0
    })
}

/// Maximum of a non-empty slice; NaN anywhere gives NaN.
#[inline]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut acc = f32x8::splat(f32::NEG_INFINITY);
    let mut nan = f32x8::ZERO;
    let mut c = x.chunks_exact(LANES);
    for s in &mut c {
        let v = load(s);
        nan |= v.is_nan();
        acc = v.simd_gt(acc).select(v, acc);
    }
    let mut m = acc.to_array().into_iter().fold(f32::NEG_INFINITY, f32::max);
    for &v in c.remainder() {
        if v.is_nan() {
            return f32::NAN;
        }
        if v > m {
            m = v;
        }
    }
    if nan.any() { f32::NAN } else { m }
}
