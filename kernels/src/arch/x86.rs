//! x86_64: feature detection through `cpuid`/`xgetbv` (no `std` needed) and the lane
//! types of the AVX2 + FMA and AVX-512 variants: `Ymm` (8 lanes, [`Vf32`]) and `Zmm`
//! (16 lanes, [`Arith`]). The kernels that run on them are their operators' (each
//! operator's trait implemented for `Avx2` and `Avx512`); nothing here knows an operator.

use core::arch::x86_64::{
    __cpuid, __cpuid_count, __m256, __m256i, __m512, _CMP_GT_OQ, _CMP_LT_OQ, _CMP_UNORD_Q,
    _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEAREST_INT, _MM_HINT_T0, _mm_prefetch, _mm256_add_epi32,
    _mm256_add_ps, _mm256_and_ps, _mm256_andnot_ps, _mm256_blendv_ps, _mm256_castpd_ps,
    _mm256_castps_pd, _mm256_castps_si256, _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_cmpgt_epi32,
    _mm256_cvtps_epi32, _mm256_cvttps_epi32, _mm256_div_ps, _mm256_fmadd_ps, _mm256_fmsub_ps,
    _mm256_loadu_ps, _mm256_mask_storeu_ps, _mm256_maskload_ps, _mm256_maskz_loadu_ps,
    _mm256_min_ps, _mm256_mul_ps, _mm256_or_ps, _mm256_permute2f128_ps, _mm256_permute4x64_pd,
    _mm256_permutevar8x32_ps, _mm256_permutex2var_ps, _mm256_round_ps, _mm256_set1_epi32,
    _mm256_set1_ps, _mm256_setr_epi32, _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_slli_epi32,
    _mm256_storeu_ps, _mm256_storeu_si256, _mm256_sub_epi32, _mm256_sub_ps, _mm256_unpackhi_ps,
    _mm256_unpacklo_ps, _mm512_castps_pd, _mm512_castps512_ps256, _mm512_extractf64x4_pd,
    _mm512_fmadd_ps, _mm512_set1_ps, _rdtsc, _xgetbv,
};

use core::arch::x86_64::{
    _mm512_abs_ps, _mm512_add_epi32, _mm512_add_ps, _mm512_and_si512, _mm512_andnot_si512,
    _mm512_castps_si512, _mm512_castsi512_ps, _mm512_cmp_ps_mask, _mm512_cvtps_epi32,
    _mm512_div_ps, _mm512_fmsub_ps, _mm512_mask_blend_ps, _mm512_min_ps, _mm512_mul_ps,
    _mm512_or_si512, _mm512_roundscale_ps, _mm512_set1_epi32, _mm512_slli_epi32, _mm512_sub_ps,
};

use crate::simd::LANES;
use crate::vector::{Arith, Vf32, build};

/// Whether the CPU and the OS support AVX2 and FMA (ymm state saved by the OS).
#[cfg_attr(miri, allow(dead_code))]
pub(crate) fn has_avx2_fma() -> bool {
    let l1 = __cpuid(1);
    let fma = l1.ecx & (1 << 12) != 0;
    let osxsave = l1.ecx & (1 << 27) != 0;
    let avx = l1.ecx & (1 << 28) != 0;
    if !(fma && osxsave && avx) {
        return false;
    }
    // SAFETY: OSXSAVE is set, so the OS has enabled XGETBV.
    let xcr0 = unsafe { _xgetbv(0) };
    if xcr0 & 0b110 != 0b110 {
        return false; // the OS does not save xmm/ymm state
    }
    if __cpuid(0).eax < 7 {
        return false;
    }
    __cpuid_count(7, 0).ebx & (1 << 5) != 0
}

/// Whether the CPU and the OS support AVX-512 F, BW and VL (and AVX2 + FMA): opmask and
/// all 32 zmm registers saved by the OS.
#[cfg_attr(miri, allow(dead_code))]
pub(crate) fn has_avx512() -> bool {
    if !has_avx2_fma() {
        return false;
    }
    // SAFETY: has_avx2_fma checked OSXSAVE, so the OS has enabled XGETBV.
    let xcr0 = unsafe { _xgetbv(0) };
    // xmm, ymm, opmask, the upper halves of zmm0-15, zmm16-31
    if xcr0 & 0b1110_0110 != 0b1110_0110 {
        return false;
    }
    let ebx = __cpuid_count(7, 0).ebx;
    let (f, bw, vl) = (1 << 16, 1 << 30, 1 << 31);
    ebx & (f | bw | vl) == f | bw | vl
}

/// Whether the CPU supports AVX-512 VNNI (`vpdpbusd`) besides AVX-512 F, BW and VL.
#[cfg_attr(miri, allow(dead_code))]
pub(crate) fn has_avx512_vnni() -> bool {
    has_avx512() && __cpuid_count(7, 0).ecx & (1 << 11) != 0
}

/// Whether this CPU has AVX-512 VBMI (`vpermb`, `vpermt2b`: bytes permuted across the
/// whole register), besides AVX-512 F, BW and VL.
pub(crate) fn has_avx512_vbmi() -> bool {
    has_avx512() && __cpuid_count(7, 0).ecx & (1 << 1) != 0
}

/// The time-stamp counter.
#[cfg_attr(miri, allow(dead_code))]
#[inline(always)]
fn tsc() -> u64 {
    // SAFETY: `rdtsc` exists on every x86_64 CPU and reads a counter, nothing else.
    unsafe { _rdtsc() }
}

/// Time-stamp-counter ticks of `rounds` rounds of 12 independent FMA chains on zmm
/// registers.
///
/// # Safety
/// AVX-512 F must be available.
#[cfg_attr(miri, allow(dead_code))]
#[target_feature(enable = "avx512f")]
unsafe fn zmm_fma_ticks(rounds: u32) -> u64 {
    let (b, c) = (_mm512_set1_ps(0.999), _mm512_set1_ps(1e-3));
    let mut acc = core::hint::black_box([_mm512_set1_ps(1.0); 12]);
    let t0 = tsc();
    for _ in 0..rounds {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, b, c);
        }
    }
    let t = tsc().wrapping_sub(t0);
    core::hint::black_box(acc);
    t
}

/// [`zmm_fma_ticks`] on ymm registers (the same instruction count).
///
/// # Safety
/// AVX2 and FMA must be available.
#[cfg_attr(miri, allow(dead_code))]
#[target_feature(enable = "avx2,fma")]
unsafe fn ymm_fma_ticks(rounds: u32) -> u64 {
    let (b, c) = (_mm256_set1_ps(0.999), _mm256_set1_ps(1e-3));
    let mut acc = core::hint::black_box([_mm256_set1_ps(1.0); 12]);
    let t0 = tsc();
    for _ in 0..rounds {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, b, c);
        }
    }
    let t = tsc().wrapping_sub(t0);
    core::hint::black_box(acc);
    t
}

/// Whether 512-bit FMAs issue at about the rate of 256-bit ones (two 512-bit FMA units, as
/// on Intel's server cores: twice the work per cycle) rather than half of it (one unit, or
/// a 512-bit FMA split in two halves, as on AMD's Zen 4). Times the same count of
/// independent FMAs on each width with the time-stamp counter, after a warm-up that powers
/// the 512-bit units up (they run at a reduced rate for some microseconds after idling);
/// the least of 7 interleaved tries of each. About 0.3 ms.
#[cfg_attr(miri, allow(dead_code))]
pub(crate) fn zmm_fma_doubles() -> bool {
    if !has_avx512() {
        return false;
    }
    const ROUNDS: u32 = 2000;
    // SAFETY: AVX-512 F (and with it AVX2 and FMA) is available: checked above.
    unsafe {
        for _ in 0..20 {
            zmm_fma_ticks(ROUNDS);
        }
        let (mut z, mut y) = (u64::MAX, u64::MAX);
        for _ in 0..7 {
            z = z.min(zmm_fma_ticks(ROUNDS));
            y = y.min(ymm_fma_ticks(ROUNDS));
        }
        // two units: z ~ y; one: z ~ 2 y
        2 * z < 3 * y
    }
}

/// Data and unified cache sizes in bytes by level (1 to 3; 0 where the CPU reports none),
/// from `cpuid`'s deterministic cache parameters: leaf 4 (Intel), else leaf 0x8000_001D
/// (AMD, with topology extensions). Each subleaf describes one cache: type in EAX[4:0]
/// (0 ends the list, 2 is an instruction cache), level in EAX[7:5], and its size is ways x
/// partitions x line size x sets (EBX[31:22], EBX[21:12], EBX[11:0], ECX, each plus one).
#[cfg_attr(miri, allow(dead_code))]
pub(crate) fn cache_sizes() -> [usize; 3] {
    let mut out = [0; 3];
    let max = __cpuid(0).eax;
    let max_ext = __cpuid(0x8000_0000).eax;
    let topoext = max_ext >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 22) != 0;
    let leaf = if max >= 4 && __cpuid_count(4, 0).eax & 0x1f != 0 {
        4
    } else if topoext && max_ext >= 0x8000_001d {
        0x8000_001d
    } else {
        return out;
    };
    for sub in 0..16 {
        let r = __cpuid_count(leaf, sub);
        let kind = r.eax & 0x1f;
        if kind == 0 {
            break;
        }
        let level = ((r.eax >> 5) & 0x7) as usize;
        if kind == 2 || !(1..=3).contains(&level) {
            continue;
        }
        let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
        let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
        let line = (r.ebx & 0xfff) as usize + 1;
        let sets = r.ecx as usize + 1;
        out[level - 1] = ways * parts * line * sets;
    }
    out
}

/// `__m256` under AVX2 + FMA (`EVEX = false`, [`Avx2`]) or under AVX-512 F/BW/VL
/// (`EVEX = true`, [`Avx512`]): the same 8 lanes, but the AVX-512 variant has 32 vector
/// registers (so larger register tiles), masked loads and stores for a row's last few
/// elements, and its own GEMM microkernel on 16-lane `zmm` registers.
///
/// Every method is `#[inline(always)]` and is only ever reached from functions compiled
/// with `#[target_feature(enable = "avx2,fma")]` (and, for `EVEX`, the AVX-512 features),
/// which are only called after [`has_avx2_fma`] (or [`has_avx512`]) returned true (see
/// `crate::arch`): that is the safety argument of every `unsafe` block below.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct Ymm<const EVEX: bool>(pub(crate) __m256);

/// The AVX2 + FMA variant's vector.
pub(crate) type Avx2 = Ymm<false>;
/// The AVX-512 variant's vector.
pub(crate) type Avx512 = Ymm<true>;

impl<const EVEX: bool> Arith for Ymm<EVEX> {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        // SAFETY: AVX is available (see the type's documentation).
        Self(unsafe { _mm256_set1_ps(x) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: FMA is available (see the type's documentation).
        Self(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn mul_error(self, b: Self, p: Self) -> Self {
        // SAFETY: FMA is available.
        Self(unsafe { _mm256_fmsub_ps(self.0, b.0, p.0) })
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        // SAFETY: AVX is available.
        Self(unsafe { _mm256_add_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        // SAFETY: AVX is available.
        Self(unsafe { _mm256_mul_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        // SAFETY: AVX is available.
        Self(unsafe { _mm256_sub_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        // SAFETY: AVX is available.
        Self(unsafe { _mm256_div_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: AVX is available; clearing the sign bit.
        Self(unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0) })
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        // SAFETY: AVX is available; magnitude bits of self, sign bit of `sign`.
        unsafe {
            let m = _mm256_set1_ps(-0.0);
            Self(_mm256_or_ps(
                _mm256_andnot_ps(m, self.0),
                _mm256_and_ps(m, sign.0),
            ))
        }
    }
    #[inline(always)]
    fn round(self) -> Self {
        // SAFETY: AVX is available.
        Self(unsafe {
            _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0)
        })
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        // SAFETY: AVX2 is available; (n + 127) << 23 are the bits of 2^n.
        unsafe {
            let n = _mm256_cvtps_epi32(self.0);
            let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(n, _mm256_set1_epi32(127)));
            Self(_mm256_castsi256_ps(e))
        }
    }
    #[inline(always)]
    fn min(self, b: Self) -> Self {
        // SAFETY: AVX is available. MINPS returns its second operand when either is NaN.
        Self(unsafe { _mm256_min_ps(b.0, self.0) })
    }
    #[inline(always)]
    fn pow2_shifted(self) -> Self {
        // SAFETY: AVX2 is available; the low bits of `self` hold n (see the trait), and
        // shifted left by 23 they are n << 23 (the rest is shifted out).
        unsafe {
            let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(self.0));
            Self(_mm256_castsi256_ps(_mm256_add_epi32(
                e,
                _mm256_set1_epi32(0x3f80_0000),
            )))
        }
    }
    #[inline(always)]
    fn select_lt(self, b: Self, t: Self, f: Self) -> Self {
        // SAFETY: AVX is available; ordered compare is false for NaN.
        Self(unsafe { _mm256_blendv_ps(f.0, t.0, _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, b.0)) })
    }
    #[inline(always)]
    fn select_gt(self, b: Self, t: Self, f: Self) -> Self {
        // SAFETY: AVX is available; ordered compare is false for NaN.
        Self(unsafe { _mm256_blendv_ps(f.0, t.0, _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, b.0)) })
    }
}

impl<const EVEX: bool> Vf32 for Ymm<EVEX> {
    const PACK_APART: bool = EVEX;
    #[inline(always)]
    unsafe fn load_ptr(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable floats; AVX is available.
        Self(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store_ptr(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable floats; AVX is available.
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    fn from_array(a: [f32; LANES]) -> Self {
        // SAFETY: the array holds 8 floats.
        unsafe { Self::load_ptr(a.as_ptr()) }
    }
    #[inline(always)]
    fn to_array(self) -> [f32; LANES] {
        let mut a = [0.0; LANES];
        // SAFETY: the array holds 8 floats.
        unsafe { self.store_ptr(a.as_mut_ptr()) };
        a
    }
    #[inline(always)]
    fn shift_up(self, k: usize) -> Self {
        // SAFETY: AVX2 is available. Lane l takes lane (l - k) mod 8, then the lanes below
        // k (where l - k wrapped) are cleared.
        unsafe {
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let k = _mm256_set1_epi32(k as i32);
            let v = _mm256_permutevar8x32_ps(self.0, _mm256_sub_epi32(lane, k));
            let below = _mm256_cmpgt_epi32(k, lane);
            Self(_mm256_andnot_ps(_mm256_castsi256_ps(below), v))
        }
    }
    #[inline(always)]
    fn shift_down_in(self, next: Self, k: usize) -> Self {
        // SAFETY: AVX2 (and for EVEX, AVX-512 F and VL) is available. Lane l takes lane
        // l + k of the 16: one two-source permute under AVX-512 (index bit 3 picks
        // `next`), else both permuted by the index's low bits and blended where l + k >= 8.
        unsafe {
            let idx = _mm256_add_epi32(
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                _mm256_set1_epi32(k as i32),
            );
            if EVEX {
                Self(_mm256_permutex2var_ps(self.0, idx, next.0))
            } else {
                let a = _mm256_permutevar8x32_ps(self.0, idx);
                let b = _mm256_permutevar8x32_ps(next.0, idx);
                let from_next = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7));
                Self(_mm256_blendv_ps(a, b, _mm256_castsi256_ps(from_next)))
            }
        }
    }
    #[inline(always)]
    fn interleave(self, odd: Self) -> (Self, Self) {
        // SAFETY: AVX is available. The unpacks give [s0 o0 s1 o1 | s4 o4 s5 o5] and
        // [s2 o2 s3 o3 | s6 o6 s7 o7]; the 128-bit permutes put the halves in order.
        unsafe {
            let lo = _mm256_unpacklo_ps(self.0, odd.0);
            let hi = _mm256_unpackhi_ps(self.0, odd.0);
            (
                Self(_mm256_permute2f128_ps::<0x20>(lo, hi)),
                Self(_mm256_permute2f128_ps::<0x31>(lo, hi)),
            )
        }
    }
    #[inline(always)]
    fn deinterleave(self, hi: Self) -> (Self, Self) {
        // SAFETY: AVX2 is available. The shuffles give [a0 a2 b0 b2 | a4 a6 b4 b6] (and
        // the odd lanes likewise); the 64-bit permute orders the pairs a, a, b, b.
        unsafe {
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(self.0, hi.0);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(self.0, hi.0);
            let fix = |v: __m256| {
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
            };
            (Self(fix(e)), Self(fix(o)))
        }
    }
    #[inline(always)]
    fn transpose8(r: [Self; LANES]) -> [Self; LANES] {
        // SAFETY: AVX is available. Pairs of rows interleaved (unpack), pairs of pairs
        // (shuffle), then the 128-bit halves exchanged: the usual 24-shuffle transpose.
        unsafe {
            let t: [__m256; 8] = build(r[0].0, |k| {
                let (a, b) = (r[k & !1].0, r[k | 1].0);
                if k % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            // u[4h + q]: rows 4h..4h + 4, columns {q, q + 4} of each half
            let u: [__m256; 8] = build(r[0].0, |k| {
                let (h, q) = (k / 4, k % 4);
                let (a, b) = (t[4 * h + q % 2], t[4 * h + 2 + q % 2]);
                if q < 2 {
                    _mm256_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm256_shuffle_ps::<0xEE>(a, b)
                }
            });
            // column j < 4: the low halves of u[j'] and u[4 + j'], j >= 4: the high ones,
            // with j' = 0, 2, 1, 3 for columns 0..4 (unpack lo/hi, then shuffle lo/hi)
            const ORDER: [usize; 4] = [0, 2, 1, 3];
            build(r[0], |j| {
                let q = ORDER[j % 4];
                Self(if j < 4 {
                    _mm256_permute2f128_ps::<0x20>(u[q], u[4 + q])
                } else {
                    _mm256_permute2f128_ps::<0x31>(u[q], u[4 + q])
                })
            })
        }
    }
    #[inline(always)]
    fn pick<const MIN: bool>(a: Self, ta: Self, b: Self, tb: Self) -> (Self, Self) {
        // SAFETY: AVX is available. Ordered compares are false for NaN; the unordered
        // self-compares are true exactly for NaN lanes.
        unsafe {
            let better = if MIN {
                _mm256_cmp_ps::<_CMP_LT_OQ>(b.0, a.0)
            } else {
                _mm256_cmp_ps::<_CMP_GT_OQ>(b.0, a.0)
            };
            let nan = _mm256_andnot_ps(
                _mm256_cmp_ps::<_CMP_UNORD_Q>(a.0, a.0),
                _mm256_cmp_ps::<_CMP_UNORD_Q>(b.0, b.0),
            );
            let take = _mm256_or_ps(better, nan);
            (
                Self(_mm256_blendv_ps(a.0, b.0, take)),
                Self(_mm256_blendv_ps(ta.0, tb.0, take)),
            )
        }
    }
    #[inline(always)]
    fn store_index(self, d: &mut [u32]) {
        match d.first_chunk_mut::<LANES>() {
            // SAFETY: AVX is available; the chunk holds 8 writable u32 (any alignment);
            // the lanes are whole numbers below 2^24, so the i32 conversion is exact.
            Some(a) => unsafe {
                _mm256_storeu_si256(
                    a.as_mut_ptr().cast::<__m256i>(),
                    _mm256_cvttps_epi32(self.0),
                )
            },
            None => {
                for (o, v) in d.iter_mut().zip(self.to_array()) {
                    *o = v as u32;
                }
            }
        }
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        match s.first_chunk::<LANES>() {
            // SAFETY: the chunk holds 8 readable floats; AVX is available.
            Some(a) => unsafe { Self::load_ptr(a.as_ptr()) },
            // SAFETY: AVX-512 F and VL are available (EVEX). The mask selects the
            // `s.len() < 8` readable floats; masked-off lanes are neither read nor fault.
            None if EVEX => Self(unsafe { _mm256_maskz_loadu_ps(mask(s.len()), s.as_ptr()) }),
            // SAFETY: AVX2 is available. The mask selects the `s.len() < 8` readable
            // floats; masked-off lanes are neither read nor fault (and read as 0).
            None => Self(unsafe {
                let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let len = _mm256_set1_epi32(s.len() as i32);
                _mm256_maskload_ps(s.as_ptr(), _mm256_cmpgt_epi32(len, lane))
            }),
        }
    }
    #[inline(always)]
    fn store(self, d: &mut [f32]) {
        match d.first_chunk_mut::<LANES>() {
            // SAFETY: the chunk holds 8 writable floats; AVX is available.
            Some(a) => unsafe { self.store_ptr(a.as_mut_ptr()) },
            // SAFETY: AVX-512 F and VL are available (EVEX). The mask selects the
            // `d.len() < 8` writable floats; masked-off lanes are not written.
            None if EVEX => unsafe { _mm256_mask_storeu_ps(d.as_mut_ptr(), mask(d.len()), self.0) },
            None => {
                let n = d.len();
                d.copy_from_slice(&self.to_array()[..n]);
            }
        }
    }
    #[inline(always)]
    fn prefetch(p: *const f32) {
        // SAFETY: SSE is baseline on x86_64, and a prefetch never faults, whatever `p` is.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
    #[inline(always)]
    fn clamp(self, lo: Self, hi: Self) -> Self {
        // SAFETY: AVX is available. Ordered compares are false for NaN, so NaN passes.
        unsafe {
            let v = _mm256_blendv_ps(self.0, lo.0, _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, lo.0));
            Self(_mm256_blendv_ps(
                v,
                hi.0,
                _mm256_cmp_ps::<_CMP_GT_OQ>(v, hi.0),
            ))
        }
    }
}

/// The low `n < 8` lanes.
#[inline(always)]
fn mask(n: usize) -> u8 {
    ((1_u32 << n) - 1) as u8
}

/// Splits 16-lane accumulators into halves of 8: `out[r][2v]`, `out[r][2v + 1]` are the
/// low and high halves of `acc[r][v]`, for `v < NV / 2`.
///
/// # Safety
/// AVX-512 F must be available.
#[inline(always)]
pub(crate) unsafe fn halves<const MR: usize, const NV: usize, const EVEX: bool>(
    acc: &[[__m512; NV]; MR],
) -> [[Ymm<EVEX>; NV]; MR] {
    // SAFETY: AVX-512 F is available (the caller's contract).
    unsafe {
        // (plain loops: `array::from_fn` is not inlined here, and its closure would be
        // compiled without AVX-512)
        let mut out = [[Ymm(_mm256_setzero_ps()); NV]; MR];
        for (o, z) in out.iter_mut().zip(acc.iter()) {
            for v in 0..NV / 2 {
                o[2 * v] = Ymm(_mm512_castps512_ps256(z[v]));
                o[2 * v + 1] = Ymm(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(z[v]),
                )));
            }
        }
        out
    }
}

/// `__m512` under AVX-512 F: 16 lanes, the lane-wise arithmetic only ([`Arith`]), for the
/// transcendental functions (the element-wise maps of `activation`). Reached only from functions compiled with
/// the AVX-512 features, called after [`has_avx512`] returned true: the safety argument of
/// every `unsafe` block of its implementation.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct Zmm(pub(crate) __m512);

impl Arith for Zmm {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        // SAFETY: AVX-512 F is available (see the type's documentation).
        Self(unsafe { _mm512_set1_ps(x) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: AVX-512 F is available.
        Self(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn mul_error(self, b: Self, p: Self) -> Self {
        // SAFETY: AVX-512 F is available.
        Self(unsafe { _mm512_fmsub_ps(self.0, b.0, p.0) })
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        // SAFETY: AVX-512 F is available.
        Self(unsafe { _mm512_add_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        // SAFETY: AVX-512 F is available.
        Self(unsafe { _mm512_mul_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        // SAFETY: AVX-512 F is available.
        Self(unsafe { _mm512_sub_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        // SAFETY: AVX-512 F is available.
        Self(unsafe { _mm512_div_ps(self.0, b.0) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: AVX-512 F is available; clears the sign bit.
        Self(unsafe { _mm512_abs_ps(self.0) })
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        // SAFETY: AVX-512 F is available; magnitude bits of self, sign bit of `sign`
        // (integer logic: the float forms need AVX-512 DQ).
        unsafe {
            let m = _mm512_set1_epi32(i32::MIN);
            let (a, s) = (_mm512_castps_si512(self.0), _mm512_castps_si512(sign.0));
            Self(_mm512_castsi512_ps(_mm512_or_si512(
                _mm512_andnot_si512(m, a),
                _mm512_and_si512(m, s),
            )))
        }
    }
    #[inline(always)]
    fn round(self) -> Self {
        // SAFETY: AVX-512 F is available.
        Self(unsafe {
            _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0)
        })
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        // SAFETY: AVX-512 F is available; (n + 127) << 23 are the bits of 2^n.
        unsafe {
            let n = _mm512_cvtps_epi32(self.0);
            let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(n, _mm512_set1_epi32(127)));
            Self(_mm512_castsi512_ps(e))
        }
    }
    #[inline(always)]
    fn min(self, b: Self) -> Self {
        // SAFETY: AVX-512 F is available. VMINPS returns its second operand when either
        // is NaN.
        Self(unsafe { _mm512_min_ps(b.0, self.0) })
    }
    #[inline(always)]
    fn pow2_shifted(self) -> Self {
        // SAFETY: AVX-512 F is available; as for `Ymm`.
        unsafe {
            let e = _mm512_slli_epi32::<23>(_mm512_castps_si512(self.0));
            Self(_mm512_castsi512_ps(_mm512_add_epi32(
                e,
                _mm512_set1_epi32(0x3f80_0000),
            )))
        }
    }
    #[inline(always)]
    fn select_lt(self, b: Self, t: Self, f: Self) -> Self {
        // SAFETY: AVX-512 F is available; the ordered compare is false for NaN.
        Self(unsafe {
            _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, b.0), f.0, t.0)
        })
    }
    #[inline(always)]
    fn select_gt(self, b: Self, t: Self, f: Self) -> Self {
        // SAFETY: AVX-512 F is available; the ordered compare is false for NaN.
        Self(unsafe {
            _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, b.0), f.0, t.0)
        })
    }
}
