//! The register-tiled microkernel and the fused store, generic over the vector type so
//! that one source serves every variant. A tile is `MR` rows by `NV` vectors of 8.
//!
//! Each variant's lane type implements [`GemmKernel`]: its tile and its in-place bounds
//! (the x86 ones in `gemm::x86`). Tile shapes: AVX2 + FMA uses 6x16 (12 ymm accumulators,
//! 2 for B, 1 broadcast: 15 of 16 registers); AVX-512 8x32 on zmm registers (16
//! accumulators), or 12x32 (24) on an A read in place where zmm registers do twice the
//! work of ymm ones, a last sliver of at most 16 columns on the half tile. The portable variant uses 6x16 where the compiled instruction set has
//! 16 wide registers (AVX) or 32 (NEON), and 4x8 otherwise (SSE2 keeps an f32x8 in two
//! xmm registers and has only 16; scalar targets such as the Cortex-M4F have 32
//! single-precision registers).

use super::{Args, Bias, Epilogue};
use crate::arch::Tile;
use crate::simd::{LANES, f32x8};
use crate::vector::Vf32;

#[cfg(any(target_feature = "avx", target_arch = "aarch64"))]
mod shape {
    pub const MR: usize = 6;
    pub const NV: usize = 2;
}
#[cfg(not(any(target_feature = "avx", target_arch = "aarch64")))]
mod shape {
    pub const MR: usize = 4;
    pub const NV: usize = 1;
}

/// Rows of the portable variant's tile.
pub(crate) const PORTABLE_MR: usize = shape::MR;
/// Vectors per row of the portable variant's tile.
pub(crate) const PORTABLE_NV: usize = shape::NV;

/// A GEMM microkernel as a variant provides it, implemented by the variant's lane type:
/// the tile it runs, the bounds under which operands are read in place, and the tile
/// product itself (the portable loop [`kernel`] unless the variant has its own).
pub(crate) trait GemmKernel: Vf32 {
    /// The register tile: `Tile<MR, NV>`, `MR` rows of A by `NV` vectors of 8 columns.
    type Tile: GemmTile;
    /// The tile run instead on an A read in place where [`GemmKernel::wide`] says so: the
    /// same columns (a B packed for one serves the other), more rows.
    type WideTile: GemmTile;
    /// Widest product (`n`) whose A is read in place rather than packed: packing an A
    /// sliver pays off over the `n / NR` B slivers that reuse it, and below this it
    /// does not.
    const A_IN_PLACE_MAX_N: usize;
    /// Largest `n` and row distance `ldb` (and half the largest `k`) of a row-major B read
    /// in place rather than packed.
    const B_IN_PLACE_MAX: usize;

    /// Whether this CPU runs [`GemmKernel::WideTile`] on an A read in place.
    #[inline(always)]
    fn wide() -> bool {
        false
    }

    /// `acc = sum_p a(r, p) x b(p)` over one `MR x NV` tile (see [`kernel`]).
    ///
    /// # Safety
    /// As [`kernel`].
    #[inline(always)]
    unsafe fn tile<const MR: usize, const NV: usize>(
        kc: usize,
        a: *const f32,
        rs: usize,
        cs: usize,
        b: *const f32,
        bs: usize,
    ) -> [[Self; NV]; MR] {
        // SAFETY: the caller's contract is the kernel's.
        unsafe { kernel::<Self, MR, NV>(kc, a, rs, cs, b, bs) }
    }
}

/// What the GEMM does with a tile shape: [`GemmKernel::Tile`] back into const generics.
pub(crate) trait GemmTile {
    /// Rows of the tile: the sliver height of a packed A.
    const MR: usize;
    /// Columns of the tile (`NV * 8`).
    const NR: usize;
    /// The BLIS loops on this tile (`super::blocked`).
    fn blocked<V: GemmKernel, const A_IN_PLACE: bool>(
        blk: super::SgemmBlocking,
        args: &Args<'_>,
        c: &mut [f32],
        ep: &Epilogue<'_>,
        scratch: &mut [f32],
    );
    /// Packs all of A for this tile (`super::pack_a_all`).
    fn pack_a_all(m: usize, k: usize, a: super::MatRef<'_>, dst: &mut [f32]);
}

impl<const MR: usize, const NV: usize> GemmTile for Tile<MR, NV> {
    const MR: usize = MR;
    const NR: usize = NV * LANES;
    #[inline(always)]
    fn blocked<V: GemmKernel, const A_IN_PLACE: bool>(
        blk: super::SgemmBlocking,
        args: &Args<'_>,
        c: &mut [f32],
        ep: &Epilogue<'_>,
        scratch: &mut [f32],
    ) {
        super::blocked::<V, MR, NV, A_IN_PLACE>(blk, args, c, ep, scratch);
    }
    fn pack_a_all(m: usize, k: usize, a: super::MatRef<'_>, dst: &mut [f32]) {
        super::pack_a_all_tiles::<MR>(m, k, a, dst);
    }
}

/// The portable variant: 6 x 16 where `f32x8` has 16 wide registers (AVX) or 32 (NEON),
/// 4 x 8 otherwise.
impl GemmKernel for f32x8 {
    type Tile = Tile<PORTABLE_MR, PORTABLE_NV>;
    type WideTile = Tile<PORTABLE_MR, PORTABLE_NV>;
    const A_IN_PLACE_MAX_N: usize = A_IN_PLACE_MAX_N;
    const B_IN_PLACE_MAX: usize = B_IN_PLACE_MAX;
}

/// [`GemmKernel::A_IN_PLACE_MAX_N`] of the 8-lane tiles. (128^3: 0.79-0.83 of the `gemm`
/// crate's speed packed, 0.84-0.90 in place; 256 and above measured slower in place.
/// Re-measure: `cargo bench --bench kernels -- sgemm`.)
pub(crate) const A_IN_PLACE_MAX_N: usize = 128;
/// [`GemmKernel::B_IN_PLACE_MAX`] of the 8-lane tiles: a sliver's `k` rows, `ldb` floats
/// apart, spread over `64 / (ldb * 4 / 64)` L1 sets; up to 64 floats apart and 128 rows
/// it still fits L1's ways (at 64^3 packing B took about 6% of the time).
pub(crate) const B_IN_PLACE_MAX: usize = 64;

/// Where a tile lands in C and how much of it is real.
#[derive(Clone, Copy)]
pub(super) struct TileAt {
    pub i0: usize,
    pub j0: usize,
    pub mr: usize,
    pub nr: usize,
}

/// `acc = sum_p a(r, p) x b(p) (NV * 8 values)` over `kc` steps, where `a(r, p)` is
/// `a[r * rs + p * cs]` and `b(p)` starts at `b[p * bs]`: a packed sliver has `rs = 1,
/// cs = MR` (A) or `bs = NV * 8` (B); operands read in place (small products, see
/// `A_IN_PLACE_MAX_N` and `B_IN_PLACE_MAX`) have their own strides. Called with constant
/// strides for packed slivers, so that loop compiles to fixed offsets.
///
/// # Safety
/// `a` must be valid for reading at `r * rs + p * cs` for every `r < MR`, `p < kc`, and
/// `b` for the `NV * 8` floats from `p * bs` for every `p < kc`.
#[inline(always)]
pub(crate) unsafe fn kernel<V: Vf32, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    rs: usize,
    cs: usize,
    b: *const f32,
    bs: usize,
) -> [[V; NV]; MR] {
    let mut acc = [[V::splat(0.0); NV]; MR];
    for p in 0..kc {
        let mut bv = [V::splat(0.0); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: p < kc and v < NV: the caller's contract.
            *x = unsafe { V::load_ptr(b.add(p * bs + v * LANES)) };
        }
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: r < MR and p < kc (the caller's contract).
            let av = V::splat(unsafe { *a.add(r * rs + p * cs) });
            for (x, &bb) in row.iter_mut().zip(bv.iter()) {
                *x = av.mul_add(bb, *x);
            }
        }
    }
    acc
}

/// Stores one tile: on the first K block `alpha * acc + beta * C + bias` (C unread when
/// `beta == 0`), on later blocks `C + alpha * acc`; on the last K block, then clamps.
/// Only the tile's real `mr` rows and `nr` columns are touched: whole vectors where 8
/// columns remain, a partial load and store (through an array) for a row's last few.
#[inline(always)]
pub(super) fn store<V: Vf32, const MR: usize, const NV: usize>(
    acc: &[[V; NV]; MR],
    c: &mut [f32],
    ldc: usize,
    t: TileAt,
    ep: &Epilogue<'_>,
    first: bool,
    last: bool,
) {
    let full = TileAt {
        mr: MR,
        nr: NV * LANES,
        ..t
    };
    if t.mr == MR && t.nr == NV * LANES {
        let plain = first
            && ep.alpha == 1.0
            && ep.beta == 0.0
            && matches!(ep.bias, Bias::None)
            && (!last || (ep.lo == f32::NEG_INFINITY && ep.hi == f32::INFINITY));
        if plain {
            // `C = acc` exactly (times 1, C unread, the clamp to infinity a no-op): the
            // accumulators go straight to C
            for (r, accr) in acc.iter().enumerate() {
                let row = &mut c[(t.i0 + r) * ldc + t.j0..][..NV * LANES];
                for (v, &a) in accr.iter().enumerate() {
                    a.store(&mut row[v * LANES..][..LANES]);
                }
            }
            return;
        }
        let accumulate = !first
            && ep.alpha == 1.0
            && (!last || (ep.lo == f32::NEG_INFINITY && ep.hi == f32::INFINITY));
        if accumulate {
            // a later K block of a plain product: `C += acc`, no scaling and no clamp
            for (r, accr) in acc.iter().enumerate() {
                let row = &mut c[(t.i0 + r) * ldc + t.j0..][..NV * LANES];
                for (v, &a) in accr.iter().enumerate() {
                    let dst = &mut row[v * LANES..][..LANES];
                    a.add(V::load(dst)).store(dst);
                }
            }
            return;
        }
        // (constant sizes: unrolled, accumulators stay in registers)
        store_rows::<V, MR, NV>(acc, c, ldc, full, ep, first, last);
    } else {
        store_rows::<V, MR, NV>(acc, c, ldc, t, ep, first, last);
    }
}

/// [`store`] for `t.mr` rows of `t.nr` columns.
#[inline(always)]
fn store_rows<V: Vf32, const MR: usize, const NV: usize>(
    acc: &[[V; NV]; MR],
    c: &mut [f32],
    ldc: usize,
    t: TileAt,
    ep: &Epilogue<'_>,
    first: bool,
    last: bool,
) {
    let alpha = V::splat(ep.alpha);
    let beta = V::splat(ep.beta);
    let (lo, hi) = (V::splat(ep.lo), V::splat(ep.hi));
    for (r, accr) in acc.iter().enumerate().take(t.mr) {
        let i = t.i0 + r;
        let row = &mut c[i * ldc + t.j0..][..t.nr];
        for (v, &a) in accr.iter().enumerate().take(t.nr.div_ceil(LANES)) {
            // (a short slice: V::load reads missing lanes as 0, V::store writes only these)
            let dst = &mut row[v * LANES..];
            let mut x = a.mul(alpha);
            if first {
                if ep.beta != 0.0 {
                    x = beta.mul_add(V::load(dst), x);
                }
                match ep.bias {
                    Bias::None => {}
                    Bias::Row(b) => x = x.add(V::splat(b[i])),
                    Bias::Col(b) => x = x.add(V::load(&b[t.j0 + v * LANES..])),
                }
            } else {
                x = x.add(V::load(dst));
            }
            if last {
                x = x.clamp(lo, hi);
            }
            x.store(dst);
        }
    }
}
