//! The 8-lane `f32` vector the hot kernels are written against, so that one source
//! compiles to each variant: `wide::f32x8` (portable, compile-time features) and, on
//! x86_64, `__m256` under AVX2 + FMA or under AVX-512 (see `arch::x86`), instantiated
//! inside `#[target_feature]` functions after run-time detection. Its lane-wise
//! arithmetic ([`Arith`]) is a trait of its own, which AVX-512's 16-lane `Zmm` also
//! implements for the transcendental functions.

use crate::simd::{LANES, f32x8};

/// `[f(0), f(1), .., f(N - 1)]`, for the hot paths in place of `core::array::from_fn`
/// and `<[T; N]>::map`: those are not always inlined (a build without LTO, as a
/// dependent crate's default release profile, left them calls), and a closure they call
/// is then compiled without the variant's `#[target_feature]`s, every vector operation
/// in it a call (tanh measured 18x slower, ReLU 5x).
#[inline(always)]
pub(crate) fn build<T: Copy, const N: usize>(init: T, mut f: impl FnMut(usize) -> T) -> [T; N] {
    let mut a = [init; N];
    for (i, x) in a.iter_mut().enumerate() {
        *x = f(i);
    }
    a
}

/// An 8-lane `f32` vector. Methods are `#[inline(always)]` so that they take on the
/// target features of the function they are inlined into.
/// The lane-wise arithmetic of a vector type, whatever its width: what the
/// transcendental functions (`crate::math`) need, so that they also run on AVX-512's
/// 16-lane registers (`arch::x86::Zmm`). Methods are `#[inline(always)]` in every
/// implementation so that they take on the target features of the function they are
/// inlined into.
pub(crate) trait Arith: Copy {
    /// A vector of `x`.
    fn splat(x: f32) -> Self;
    /// `self * b + c`, fused where the variant has FMA.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// `self + b`.
    fn add(self, b: Self) -> Self;
    /// `self * b`.
    fn mul(self, b: Self) -> Self;
    /// `self - b`.
    fn sub(self, b: Self) -> Self;
    /// `self / b`.
    fn div(self, b: Self) -> Self;
    /// `|self|`.
    fn abs(self) -> Self;
    /// `|self|` with the sign bit of `sign`.
    fn copysign(self, sign: Self) -> Self;
    /// Round to the nearest integer (ties to even).
    fn round(self) -> Self;
    /// `2^self` for integral lanes in `[-126, 127]` (built from the exponent bits).
    fn pow2i(self) -> Self;
    /// `min(self, b)`; NaN in `self` passes through.
    fn min(self, b: Self) -> Self;
    /// `2^n` for `self = 1.5 * 2^23 + n` with `n` integral in `[-126, 127]`: the integer
    /// `n` sits in the low mantissa bits, and shifted into the exponent field it builds
    /// `2^n` without a conversion.
    fn pow2_shifted(self) -> Self;
    /// Lane-wise `if self < b { t } else { f }` (false for NaN).
    fn select_lt(self, b: Self, t: Self, f: Self) -> Self;
    /// Lane-wise `if self > b { t } else { f }` (false for NaN).
    fn select_gt(self, b: Self, t: Self, f: Self) -> Self;
    /// `self * b - p` exactly, for `p` the rounded `self * b` (the product's rounding
    /// error): one FMA where the variant has it; here Dekker's product (both factors split
    /// into halves of 12 bits, whose products are exact), for factors below `2^100`.
    #[inline(always)]
    fn mul_error(self, b: Self, p: Self) -> Self {
        let split = |v: Self| {
            let c = v.mul(Self::splat(4097.0));
            let hi = c.sub(c.sub(v));
            (hi, v.sub(hi))
        };
        let ((ah, al), (bh, bl)) = (split(self), split(b));
        ah.mul(bh)
            .sub(p)
            .add(ah.mul(bl))
            .add(al.mul(bh))
            .add(al.mul(bl))
    }
}

pub(crate) trait Vf32: Arith {
    /// Whether the GEMM's packing runs in functions of its own, compiled without the
    /// variant's features (`gemm::pack::*_apart`): under AVX-512, LLVM turns packing's
    /// strided stores into scatters, which are slow on AMD's Zen 4.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const PACK_APART: bool = false;
    /// Loads 8 floats.
    ///
    /// # Safety
    /// `p` must be valid for reading 8 `f32` (any alignment).
    unsafe fn load_ptr(p: *const f32) -> Self;
    /// Stores 8 floats.
    ///
    /// # Safety
    /// `p` must be valid for writing 8 `f32` (any alignment).
    unsafe fn store_ptr(self, p: *mut f32);
    /// From an array.
    fn from_array(a: [f32; LANES]) -> Self;
    /// To an array.
    fn to_array(self) -> [f32; LANES];
    /// `min(max(self, lo), hi)` with NaN in `self` passed through.
    fn clamp(self, lo: Self, hi: Self) -> Self;

    /// The even and the odd lanes of the 16 floats `self` then `hi`:
    /// `([s0, s2, .., s14], [s1, s3, .., s15])`.
    fn deinterleave(self, hi: Self) -> (Self, Self);
    /// Lanes moved up by `k < 8` (lane `l` takes lane `l - k`), zeros in the `k` lowest.
    #[inline(always)]
    fn shift_up(self, k: usize) -> Self {
        let a = self.to_array();
        let mut o = [0.0; LANES];
        o[k..].copy_from_slice(&a[..LANES - k]);
        Self::from_array(o)
    }
    /// The 8 lanes from lane `k < 8` of the 16 floats `self` then `next` (lane `l` takes
    /// `self`'s lane `l + k`, or `next`'s lane `l + k - 8`).
    #[inline(always)]
    fn shift_down_in(self, next: Self, k: usize) -> Self {
        let (a, b) = (self.to_array(), next.to_array());
        Self::from_array(build(0.0, |l| {
            if l + k < LANES {
                a[l + k]
            } else {
                b[l + k - LANES]
            }
        }))
    }
    /// The inverse of [`Vf32::deinterleave`]: `self` in the even lanes and `odd` in the
    /// odd lanes of 16 floats, `([s0, o0, .., s3, o3], [s4, o4, .., s7, o7])`.
    #[inline(always)]
    fn interleave(self, odd: Self) -> (Self, Self) {
        let (e, o) = (self.to_array(), odd.to_array());
        let mut z = [[0.0; LANES]; 2];
        for l in 0..LANES {
            z[l / 4][2 * (l % 4)] = e[l];
            z[l / 4][2 * (l % 4) + 1] = o[l];
        }
        (Self::from_array(z[0]), Self::from_array(z[1]))
    }
    /// One step of pooling's tournament between `a` and `b`, which comes later in the
    /// window: `b` wins where it is greater (`MIN`: less) or is NaN while `a` is not, so
    /// ties keep the first and so does NaN. Returns the winners and their tags.
    fn pick<const MIN: bool>(a: Self, ta: Self, b: Self, tb: Self) -> (Self, Self);

    /// The 8 x 8 transpose: lane `j` of row `i` becomes lane `i` of row `j`.
    #[inline(always)]
    fn transpose8(rows: [Self; LANES]) -> [Self; LANES] {
        let a: [[f32; LANES]; LANES] = build([0.0; LANES], |i| rows[i].to_array());
        build(Self::splat(0.0), |j| {
            Self::from_array(build(0.0, |i| a[i][j]))
        })
    }

    /// Stores lanes holding whole numbers in `[0, 2^24]` as `u32` into the first 8
    /// elements of `d` (or as many as it holds).
    #[inline(always)]
    fn store_index(self, d: &mut [u32]) {
        for (o, v) in d.iter_mut().zip(self.to_array()) {
            *o = v as u32;
        }
    }

    /// Hints that the cache line holding `p` will be read soon (a no-op where the variant
    /// has no prefetch instruction). `p` need not be valid: prefetches never fault.
    #[inline(always)]
    fn prefetch(_p: *const f32) {}

    /// Loads the first 8 elements of `s` (missing ones read as 0).
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        match s.first_chunk::<LANES>() {
            // SAFETY: the chunk holds 8 readable floats.
            Some(a) => unsafe { Self::load_ptr(a.as_ptr()) },
            None => {
                let mut a = [0.0; LANES];
                let n = s.len().min(LANES);
                a[..n].copy_from_slice(&s[..n]);
                Self::from_array(a)
            }
        }
    }

    /// Stores into the first 8 elements of `d` (or as many as it holds).
    #[inline(always)]
    fn store(self, d: &mut [f32]) {
        match d.first_chunk_mut::<LANES>() {
            // SAFETY: the chunk holds 8 writable floats.
            Some(a) => unsafe { self.store_ptr(a.as_mut_ptr()) },
            None => {
                let n = d.len().min(LANES);
                d[..n].copy_from_slice(&self.to_array()[..n]);
            }
        }
    }
}

impl Arith for f32x8 {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        f32x8::splat(x)
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        f32x8::mul_add(self, b, c)
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        self + b
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        self * b
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        self - b
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        self / b
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32x8::abs(self)
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        f32x8::copysign(self, sign)
    }
    #[inline(always)]
    fn round(self) -> Self {
        f32x8::round(self)
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        let n: wide::i32x8 = self.round_int();
        f32x8::from_bits(((n + wide::i32x8::splat(127)) << 23_i32).cast_unsigned())
    }
    #[inline(always)]
    fn min(self, b: Self) -> Self {
        self.simd_gt(b).select(b, self)
    }
    #[inline(always)]
    fn pow2_shifted(self) -> Self {
        f32x8::from_bits((self.to_bits() << 23_u32) + wide::u32x8::splat(0x3f80_0000))
    }
    #[inline(always)]
    fn select_lt(self, b: Self, t: Self, f: Self) -> Self {
        self.simd_lt(b).select(t, f)
    }
    #[inline(always)]
    fn select_gt(self, b: Self, t: Self, f: Self) -> Self {
        self.simd_gt(b).select(t, f)
    }
}

/// One lane: what a non-SIMD target (the Cortex-M4F) runs, element by element, where
/// `f32x8` would be eight scalars unrolled (eight times the code for the same work). Each
/// operation is what `wide` does for a lane of `f32x8` on the same target (a multiply-add
/// in two roundings where there is no FMA instruction, in one where there is), so the
/// results are the same bits;
/// the test `scalar_lanes_match_f32x8` in `activation` checks it.
impl Arith for f32 {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // `wide` fuses where the target has the instruction (x86 built with `fma`, as
        // under `-C target-cpu=native`; aarch64): the same bits need the same here.
        if cfg!(any(
            target_feature = "fma",
            all(target_feature = "neon", target_arch = "aarch64")
        )) {
            libm::fmaf(self, b, c)
        } else {
            self * b + c
        }
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        self + b
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        self * b
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        self - b
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        self / b
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::from_bits(self.to_bits() & 0x7fff_ffff)
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        f32::from_bits((self.to_bits() & 0x7fff_ffff) | (sign.to_bits() & 0x8000_0000))
    }
    #[inline(always)]
    fn round(self) -> Self {
        libm::roundf(self)
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        let n = libm::roundf(self) as i32;
        f32::from_bits((n.wrapping_add(127) << 23).cast_unsigned())
    }
    #[inline(always)]
    fn min(self, b: Self) -> Self {
        if self > b { b } else { self }
    }
    #[inline(always)]
    fn pow2_shifted(self) -> Self {
        f32::from_bits((self.to_bits() << 23).wrapping_add(0x3f80_0000))
    }
    #[inline(always)]
    fn select_lt(self, b: Self, t: Self, f: Self) -> Self {
        if self < b { t } else { f }
    }
    #[inline(always)]
    fn select_gt(self, b: Self, t: Self, f: Self) -> Self {
        if self > b { t } else { f }
    }
}

impl Vf32 for f32x8 {
    #[inline(always)]
    unsafe fn load_ptr(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable floats; read_unaligned has no
        // alignment requirement.
        f32x8::new(unsafe { p.cast::<[f32; LANES]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store_ptr(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable floats.
        unsafe {
            p.cast::<[f32; LANES]>()
                .write_unaligned(f32x8::to_array(self))
        }
    }
    #[inline(always)]
    fn from_array(a: [f32; LANES]) -> Self {
        f32x8::new(a)
    }
    #[inline(always)]
    fn to_array(self) -> [f32; LANES] {
        f32x8::to_array(self)
    }
    #[inline(always)]
    fn clamp(self, lo: Self, hi: Self) -> Self {
        crate::simd::clamp(self, lo, hi)
    }
    #[inline(always)]
    fn deinterleave(self, hi: Self) -> (Self, Self) {
        let (a, b) = (f32x8::to_array(self), f32x8::to_array(hi));
        let lane = |l: usize, odd: usize| {
            if l < 4 {
                a[2 * l + odd]
            } else {
                b[2 * (l - 4) + odd]
            }
        };
        (
            f32x8::new(build(0.0, |l| lane(l, 0))),
            f32x8::new(build(0.0, |l| lane(l, 1))),
        )
    }
    #[inline(always)]
    fn pick<const MIN: bool>(a: Self, ta: Self, b: Self, tb: Self) -> (Self, Self) {
        let better = if MIN { b.simd_lt(a) } else { b.simd_gt(a) };
        let take = better | (b.is_nan() & !a.is_nan());
        (take.select(b, a), take.select(tb, ta))
    }
}
