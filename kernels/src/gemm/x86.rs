//! The x86 variants' GEMM microkernels: AVX2 + FMA runs the portable loop on 8-lane
//! `ymm` vectors, AVX-512 its own loop on 16-lane `zmm` registers.

use core::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps};

use super::kernel::{A_IN_PLACE_MAX_N, B_IN_PLACE_MAX, GemmKernel, kernel};
use crate::arch::x86::{Avx2, Avx512, halves};
use crate::arch::{self, Tile};
use crate::simd::LANES;

/// AVX2 + FMA: the 6 x 16 tile (12 ymm accumulators).
impl GemmKernel for Avx2 {
    type Tile = Tile<6, 2>;
    type WideTile = Tile<6, 2>;
    const A_IN_PLACE_MAX_N: usize = A_IN_PLACE_MAX_N;
    const B_IN_PLACE_MAX: usize = B_IN_PLACE_MAX;
}

/// AVX-512: the 8 x 32 tile on zmm registers (16 accumulators; measured against 12 x 32
/// on zmm and 6 x 16, 12 x 16 on ymm on an AMD Zen 4, one 512-bit FMA per cycle: 8 x 32
/// was fastest at 256^3 and 1024^3), or 12 x 32 (24 accumulators) on an A read in place
/// (products up to 512 wide) where zmm registers do twice the work of ymm ones
/// ([`arch::zmm_fma_doubles`]: two 512-bit FMA units). Xeon family 6 model 207, median
/// GFLOPS of 41 calls, 8 x 32 against 12 x 32 on every path, three interleaved runs:
/// 256^3 (A and B in place) 141.5-141.9 against 154.9-155.6, 512^3 114-125 against
/// 128-136; packed A: 256 x 1024 x 256 146 against 142, 128 x 2048 x 128 135-137
/// against 131, 64 x 2048 x 64 121 against 110, and the convolutions' shapes alike or
/// worse, hence packed A keeps 8 x 32. A last sliver of at most 16 columns runs on the
/// half tile.
impl GemmKernel for Avx512 {
    type Tile = Tile<8, 4>;
    type WideTile = Tile<12, 4>;
    #[inline(always)]
    fn wide() -> bool {
        arch::zmm_fma_doubles()
    }
    /// Reading A in place (8 rows of broadcasts) rather than packing it measured 0.310 ->
    /// 0.301 ms at 256^3 and 107.4 -> 111.3 GFLOPS at 512^3; slower at 1024^3.
    const A_IN_PLACE_MAX_N: usize = 512;
    /// Reading B in place measured faster up to 512 (128^3 38.8 -> 37.5 us, 256^3 301.9
    /// -> 295.0, 512^3 2416 -> 2373), where the 6 x 16 tile measured slower from 256.
    /// Re-measure: `cargo run --release --example sgemm_probe`.
    const B_IN_PLACE_MAX: usize = 512;
    #[inline(always)]
    unsafe fn tile<const MR: usize, const NV: usize>(
        kc: usize,
        a: *const f32,
        rs: usize,
        cs: usize,
        b: *const f32,
        bs: usize,
    ) -> [[Self; NV]; MR] {
        if NV.is_multiple_of(2) {
            // SAFETY: this lane type is only used in code compiled for, and run on,
            // AVX-512 F; the caller's contract is the kernel's.
            unsafe { zmm_kernel::<MR, NV>(kc, a, rs, cs, b, bs) }
        } else {
            // SAFETY: the caller's contract is the kernel's.
            unsafe { kernel::<Self, MR, NV>(kc, a, rs, cs, b, bs) }
        }
    }
}

/// The GEMM microkernel on 16-lane registers: `MR` rows by `NV / 2` zmm vectors (`NV`
/// even), each step one load per vector of B and one broadcast per row of A,
/// `MR * NV / 2` FMAs; the accumulators come back as `NV` halves of 8.
/// Half the instructions of the 8-lane loop for the same FLOPs, and 32 registers. The
/// GEMM runs 8 x 32 (16 accumulators; measured against 12 x 32 on zmm and 6 x 16, 12 x 16
/// on ymm: 8 x 32 was fastest at 256^3 and 1024^3).
///
/// # Safety
/// AVX-512 F must be available, and the pointers as for [`kernel`].
#[inline(always)]
unsafe fn zmm_kernel<const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    rs: usize,
    cs: usize,
    b: *const f32,
    bs: usize,
) -> [[Avx512; NV]; MR] {
    // SAFETY: AVX-512 F is available (the caller's contract); every load is within the
    // caller's A (r < MR, p < kc) and B (NV * 8 floats from p * bs).
    unsafe {
        let nz = NV / 2;
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for p in 0..kc {
            let mut bz = [_mm512_setzero_ps(); NV];
            for (v, x) in bz.iter_mut().enumerate().take(nz) {
                *x = _mm512_loadu_ps(b.add(p * bs + v * 2 * LANES));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r * rs + p * cs));
                for (x, &bb) in row.iter_mut().zip(bz.iter()).take(nz) {
                    *x = _mm512_fmadd_ps(av, bb, *x);
                }
            }
        }
        halves(&acc)
    }
}
