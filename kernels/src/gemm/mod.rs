//! SGEMM: `C = alpha * op(A) * op(B) + beta * C`, packed and cache-blocked in the BLIS
//! loop order, with a register-tiled microkernel and a fused epilogue (bias, clamp) in
//! the store.
//!
//! Loops, outermost first (BLIS names): `jc` over N in steps of `nc`; `pc` over K in
//! steps of `kc`, packing a `kc x nc` panel of B into `NR`-wide slivers; `ic` over M in
//! steps of `mc`, packing an `mc x kc` block of A into `MR`-tall slivers; then `jr`, `ir`
//! over the slivers, one `MR x NR` microkernel call each. The block sizes come from this
//! CPU's caches and FMA rate ([`SgemmBlocking::model`]), read once per product. Packed slivers are zero-padded to
//! whole tiles, so the microkernel never branches on edges; only the store does.
//!
//! Each variant's lane type carries its tile and thresholds ([`kernel::GemmKernel`]); the
//! loops here are generic over it, and [`arch::dispatch!`] picks the variant.
//!
//! Narrow products (`n <= GemmKernel::A_IN_PLACE_MAX_N`, e.g. 64^3 or a linear layer's batch) read
//! A's whole slivers in place, through its strides, and pack only a last partial one:
//! with few B slivers to reuse it, packing A cost more than it saved (sgemm 64^3:
//! 0.63-0.70 -> 0.81-0.83 of the `gemm` crate's speed, same runs).

mod blocking;
pub(crate) mod kernel;
mod pack;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::arch::{self, Isa};
use crate::error::KernelError;
use crate::params::{GemmParams, check_scratch};
use crate::simd::{LANES, clamp1};
use crate::vector::Vf32;
use blocking::{KC_MAX, MC_MAX, NC_MAX};
pub use blocking::{SgemmBlocking, force_sgemm_blocking, sgemm_blocking};
use kernel::{GemmKernel, GemmTile};

/// Upper bound on MR over every microkernel variant; scratch sizes use it so they never
/// depend on the variant chosen at run time.
const MR_MAX: usize = 16;
/// Upper bound on NR over every microkernel variant.
pub(crate) const NR_MAX: usize = 32;

/// A read-only strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with row stride `ld`.
    pub const fn rows(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with row stride `ld`.
    pub const fn transposed(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: ld,
        }
    }
}

/// Bias added in the epilogue.
#[derive(Clone, Copy)]
pub(crate) enum Bias<'a> {
    None,
    /// `bias[i]` added to row `i` of C (conv: one bias per output channel).
    Row(&'a [f32]),
    /// `bias[j]` added to column `j` of C (linear: one bias per output feature).
    Col(&'a [f32]),
}

/// What happens when a tile of the product is stored:
/// `C = clamp(alpha * AB + beta * C + bias, lo, hi)`.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub alpha: f32,
    pub beta: f32,
    pub bias: Bias<'a>,
    pub lo: f32,
    pub hi: f32,
}

impl Epilogue<'_> {
    /// Plain `C = AB`.
    pub const fn plain() -> Self {
        Self {
            alpha: 1.0,
            beta: 0.0,
            bias: Bias::None,
            lo: f32::NEG_INFINITY,
            hi: f32::INFINITY,
        }
    }
}

const fn min(a: usize, b: usize) -> usize {
    if a < b { a } else { b }
}

/// Scratch elements [`sgemm`] needs for an `m x n x k` product: one packed block of A
/// and one packed panel of B, at most `(384 + 16) * 512 + (1024 + 32) * 512` floats
/// (about 2.9 MB) however large the matrices, whatever [`SgemmBlocking`] this CPU takes.
///
/// ```
/// assert!(cnnkit_kernels::sgemm_scratch_len(4, 4, 4) < 256);
/// ```
pub const fn sgemm_scratch_len(m: usize, n: usize, k: usize) -> usize {
    let kc = min(k, KC_MAX);
    (min(m, MC_MAX) + MR_MAX) * kc + (min(n, NC_MAX) + NR_MAX) * kc
}

/// `C = alpha * op(A) * op(B) + beta * C` over row-major matrices (see [`GemmParams`]).
///
/// Operands may be longer than the minimum `(rows - 1) * ld + cols` (views into larger
/// buffers); C elements between rows (beyond column `n`) are never touched. With
/// `beta == 0`, C is not read; with `alpha == 0`, A and B are not read.
///
/// # Errors
/// [`KernelError::ZeroSize`] for `m`, `n` or `k` of 0, [`KernelError::InvalidLeadingDimension`],
/// [`KernelError::LengthMismatch`] for a slice shorter than its minimum,
/// [`KernelError::ScratchTooSmall`] below [`sgemm_scratch_len`], [`KernelError::Overflow`].
///
/// ```
/// use cnnkit_kernels::{sgemm, sgemm_scratch_len, GemmParams};
/// let a = [1.0, 2.0, 3.0, 4.0]; // 2x2
/// let b = [5.0, 6.0, 7.0, 8.0]; // 2x2
/// let mut c = [0.0; 4];
/// let mut scratch = vec![0.0; sgemm_scratch_len(2, 2, 2)];
/// sgemm(&GemmParams::new(2, 2, 2), &a, &b, &mut c, &mut scratch).unwrap();
/// assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
/// ```
pub fn sgemm(
    p: &GemmParams,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (la, lb, lc) = p.min_lens()?;
    for (arg, need, have) in [("a", la, a.len()), ("b", lb, b.len()), ("c", lc, c.len())] {
        if have < need {
            return Err(KernelError::LengthMismatch {
                arg,
                expected: need,
                actual: have,
            });
        }
    }
    check_scratch(sgemm_scratch_len(p.m, p.n, p.k), scratch.len())?;
    let am = if p.trans_a {
        MatRef::transposed(a, p.lda)
    } else {
        MatRef::rows(a, p.lda)
    };
    let bm = if p.trans_b {
        MatRef::transposed(b, p.ldb)
    } else {
        MatRef::rows(b, p.ldb)
    };
    let ep = Epilogue {
        alpha: p.alpha,
        beta: p.beta,
        ..Epilogue::plain()
    };
    gemm(p.m, p.n, p.k, am, bm, c, p.ldc, &ep, scratch);
    Ok(())
}

/// The blocked product, on the variant [`arch::active`] names. Callers have validated
/// every size: `a` covers `m x k`, `b` covers `k x n`, `c` covers `m` rows of `ldc >= n`,
/// the bias covers its axis, and `scratch` holds [`sgemm_scratch_len`]`(m, n, k)`
/// elements. `m`, `n`, `k` are all nonzero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue<'_>,
    scratch: &mut [f32],
) {
    let (a, b) = (AOp::Mat(a), BOp::Mat(b));
    gemm_on(arch::active(), &Args { m, n, k, a, b, ldc }, c, ep, scratch);
}

/// Scratch for [`pack_a_all`]: A packed whole, for any variant.
pub(crate) const fn packed_a_len(m: usize, k: usize) -> usize {
    (m + MR_MAX) * k
}

/// The tile width (columns) of `isa`'s microkernel: the sliver width of a packed B.
pub(crate) fn nr_of(isa: Isa) -> usize {
    arch::with_isa!(isa, V => <<V as GemmKernel>::Tile as GemmTile>::NR)
}

/// The tile height (rows) of `isa`'s microkernel: the sliver height of A packed by
/// [`pack_a_all`] (a producer may write that layout itself: sliver `s` of rows
/// `s * MR..`, at `s * MR * k`, holds for each `p < k` the `MR` values `A[s * MR + r][p]`,
/// rows past `m` zero).
pub(crate) fn mr_of(isa: Isa) -> usize {
    arch::with_isa!(isa, V => <<V as GemmKernel>::Tile as GemmTile>::MR)
}

/// Packs all of `a` (`m x k`) for `isa`'s microkernel, block by block in the order
/// [`gemm_packed`] reads it, so that one A (conv weights) serves many products.
/// `dst` holds at least [`packed_a_len`]`(m, k)` floats.
pub(crate) fn pack_a_all(isa: Isa, m: usize, k: usize, a: MatRef<'_>, dst: &mut [f32]) {
    arch::with_isa!(isa, V => <<V as GemmKernel>::Tile as GemmTile>::pack_a_all(m, k, a, dst))
}

/// [`pack_a_all`] for tiles of `MR` rows: `ceil(m / MR)` slivers of `k x MR`, each holding
/// all of `k` (sliver `s` starts at `s * MR * k`), so that the layout does not depend on
/// the blocking (a K block of sliver `s` starts at `s * MR * k + pc * MR`).
fn pack_a_all_tiles<const MR: usize>(m: usize, k: usize, a: MatRef<'_>, dst: &mut [f32]) {
    pack::pack_a::<MR>(&a, 0, m, 0, k, dst);
}

/// [`gemm`] with A packed beforehand by [`pack_a_all`] for the same `isa`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    packed_a: &[f32],
    b: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue<'_>,
    scratch: &mut [f32],
) {
    let (a, b) = (AOp::Packed(packed_a), BOp::Mat(b));
    gemm_on(isa, &Args { m, n, k, a, b, ldc }, c, ep, scratch);
}

/// [`gemm`] with A packed by [`pack_a_all`] and B packed by its producer for the same
/// `isa`: `ceil(n / nr)` slivers of [`nr_of`]`(isa)` columns (the last zero-padded), each
/// holding all `k` rows, `nr` floats per row (sliver `s` starts at `s * k * nr`). Needs
/// no scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_prepacked(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    packed_a: &[f32],
    packed_b: &[f32],
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue<'_>,
) {
    let (a, b) = (AOp::Packed(packed_a), BOp::Packed(packed_b));
    gemm_on(isa, &Args { m, n, k, a, b, ldc }, c, ep, &mut []);
}

/// Runs one product on `isa`'s variant (`alpha == 0` only scales C: A and B unread).
fn gemm_on(isa: Isa, args: &Args<'_>, c: &mut [f32], ep: &Epilogue<'_>, scratch: &mut [f32]) {
    if ep.alpha == 0.0 {
        scale_only(args.m, args.n, c, args.ldc, ep);
        return;
    }
    let blk = sgemm_blocking(isa);
    arch::dispatch!(@on isa; run(
        blk: SgemmBlocking,
        args: &Args<'_>,
        c: &mut [f32],
        ep: &Epilogue<'_>,
        scratch: &mut [f32]
    ));
}

/// One product on the variant of `V`: A read in place for narrow products (see
/// [`GemmKernel::A_IN_PLACE_MAX_N`]), on [`GemmKernel::WideTile`] where the variant says
/// so, else packed, on [`GemmKernel::Tile`] (the layout [`pack_a_all`] packs for).
#[inline(always)]
fn run<V: GemmKernel>(
    blk: SgemmBlocking,
    args: &Args<'_>,
    c: &mut [f32],
    ep: &Epilogue<'_>,
    scratch: &mut [f32],
) {
    if matches!(args.a, AOp::Mat(_)) && args.n <= V::A_IN_PLACE_MAX_N {
        if V::wide() {
            V::WideTile::blocked::<V, true>(blk, args, c, ep, scratch);
        } else {
            V::Tile::blocked::<V, true>(blk, args, c, ep, scratch);
        }
    } else {
        V::Tile::blocked::<V, false>(blk, args, c, ep, scratch);
    }
}

/// [`gemm`] with either operand as given or packed beforehand (A by [`pack_a_all`], B as
/// [`gemm_prepacked`] describes), for the same `isa`. `scratch` as for [`gemm`]; none is
/// needed when both are packed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_ops(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: AOp<'_>,
    b: BOp<'_>,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue<'_>,
    scratch: &mut [f32],
) {
    gemm_on(isa, &Args { m, n, k, a, b, ldc }, c, ep, scratch);
}

/// A as given, or packed beforehand.
#[derive(Clone, Copy)]
pub(crate) enum AOp<'a> {
    Mat(MatRef<'a>),
    Packed(&'a [f32]),
}

/// B as given, or packed beforehand (see [`gemm_prepacked`]).
#[derive(Clone, Copy)]
pub(crate) enum BOp<'a> {
    Mat(MatRef<'a>),
    Packed(&'a [f32]),
}

/// The operands of one product.
pub(crate) struct Args<'a> {
    m: usize,
    n: usize,
    k: usize,
    a: AOp<'a>,
    b: BOp<'a>,
    ldc: usize,
}

/// The BLIS loops over one variant's microkernel (`MR` rows, `NV` vectors of 8).
#[inline(always)]
fn blocked<V: GemmKernel, const MR: usize, const NV: usize, const A_IN_PLACE: bool>(
    blk: SgemmBlocking,
    args: &Args<'_>,
    c: &mut [f32],
    ep: &Epilogue<'_>,
    scratch: &mut [f32],
) {
    let Args { m, n, k, a, b, ldc } = *args;
    let nr = NV * LANES;
    // block sizes within the limits scratch assumes, mc whole tiles of rows and nc whole
    // slivers (both are multiples of every tile's already)
    let kc_blk = blk.kc.clamp(1, KC_MAX);
    let mc_blk = (blk.mc.min(MC_MAX) / MR * MR).max(MR);
    let nc_blk = (blk.nc.min(NC_MAX) / nr * nr).max(nr);
    let kc_max = min(k, KC_MAX);
    // (operands packed beforehand need no scratch, and may come with none)
    let (pa, pb) = scratch.split_at_mut(((min(m, MC_MAX) + MR_MAX) * kc_max).min(scratch.len()));
    // B read in place (whole slivers; a last partial one is packed)
    let cap = V::B_IN_PLACE_MAX;
    let b_in_place = match b {
        BOp::Mat(bm) if bm.cs == 1 && n <= cap && bm.rs <= cap && k <= 2 * cap => Some(bm),
        _ => None,
    };
    let mut jc = 0;
    while jc < n {
        let nc = min(nc_blk, n - jc);
        let mut pc = 0;
        while pc < k {
            let kc = min(kc_blk, k - pc);
            let full_n = nc / nr * nr;
            match b {
                BOp::Mat(bm) if b_in_place.is_some() => {
                    if full_n < nc {
                        pack_b::<V, NV>(&bm, pc, kc, jc + full_n, nc - full_n, pb);
                    }
                }
                BOp::Mat(bm) => pack_b::<V, NV>(&bm, pc, kc, jc, nc, pb),
                BOp::Packed(_) => {}
            }
            let first = pc == 0;
            let last = pc + kc == k;
            let mut ic = 0;
            while ic < m {
                let mc = min(mc_blk, m - ic);
                // A read in place: every sliver from `am` (the last rows by `edge_rows`)
                let in_place = match a {
                    AOp::Mat(am) if A_IN_PLACE => Some(am),
                    _ => None,
                };
                if let (AOp::Mat(am), None) = (a, in_place) {
                    pack_a::<V, MR>(&am, ic, mc, pc, kc, pa);
                }
                let mut jr = 0;
                while jr < nc {
                    // B's sliver and its row stride
                    let (bp, bs) = match (b, b_in_place) {
                        (_, Some(bm)) if jr < full_n => (
                            &bm.data[pc * bm.rs + jc + jr..][..(kc - 1) * bm.rs + nr],
                            bm.rs,
                        ),
                        (BOp::Mat(_), Some(_)) => (&pb[..kc * nr], nr),
                        (BOp::Mat(_), None) => (&pb[(jr / nr) * kc * nr..][..kc * nr], nr),
                        // (jc is a multiple of nc_blk, itself a multiple of nr)
                        (BOp::Packed(buf), _) => {
                            (&buf[((jc + jr) / nr) * k * nr + pc * nr..][..kc * nr], nr)
                        }
                    };
                    let mut ir = 0;
                    while ir < mc {
                        // warm up the C tile while the FMAs run (rows of C are far apart)
                        let rows = min(MR, mc - ir);
                        for r in 0..rows {
                            let at = (ic + ir + r) * ldc + jc + jr;
                            V::prefetch(c[at..].as_ptr());
                            V::prefetch(c[at..].as_ptr().wrapping_add(nr - 1));
                        }
                        if let Some(am) = in_place.filter(|_| rows < MR) {
                            // the last rows of A read in place: 4-, 2- and 1-row tiles
                            // computed exactly, instead of packing them for a whole tile
                            // (small products, where that tile is a good part of the work;
                            // packed A keeps the whole tile, which measured faster at 256^3)
                            let (ap, rs, cs) =
                                (&am.data[(ic + ir) * am.rs + pc * am.cs..], am.rs, am.cs);
                            let tile = kernel::TileAt {
                                i0: ic + ir,
                                j0: jc + jr,
                                mr: rows,
                                nr: min(nr, nc - jr),
                            };
                            edge_rows::<V, NV>(
                                kc, ap, rs, cs, bp, bs, c, ldc, tile, ep, first, last,
                            );
                            ir += MR;
                            continue;
                        }
                        // A's sliver and its strides
                        let (ap, rs, cs) = match (in_place, a) {
                            (Some(am), _) => {
                                let (rs, cs) = (am.rs, am.cs);
                                let span = (MR - 1) * rs + (kc - 1) * cs + 1;
                                (&am.data[(ic + ir) * rs + pc * cs..][..span], rs, cs)
                            }
                            // packed whole beforehand: slivers of all k ([`pack_a_all`])
                            (None, AOp::Packed(buf)) => {
                                let at = (ic + ir) / MR * MR * k + pc * MR;
                                (&buf[at..][..kc * MR], 1, MR)
                            }
                            (None, AOp::Mat(_)) => (&pa[(ir / MR) * kc * MR..][..kc * MR], 1, MR),
                        };
                        let tile = kernel::TileAt {
                            i0: ic + ir,
                            j0: jc + jr,
                            mr: min(MR, mc - ir),
                            nr: min(nr, nc - jr),
                        };
                        if NV > 2 && tile.nr <= 2 * LANES {
                            // a last sliver at most 16 columns wide: a tile of half the
                            // width or less on its first 16 (a 196-pixel plane in slivers
                            // of 32 would otherwise compute 224 columns)
                            // SAFETY: ap covers r * rs + p * cs for r < MR, p < kc (its
                            // length is the last one plus 1, or kc * MR packed); bp covers
                            // the NV * 8 >= 16 floats from p * bs for p < kc.
                            let acc = unsafe {
                                V::tile::<MR, 2>(kc, ap.as_ptr(), rs, cs, bp.as_ptr(), bs)
                            };
                            kernel::store::<V, MR, 2>(&acc, c, ldc, tile, ep, first, last);
                        } else {
                            // SAFETY: as above, for the NV * 8 floats from p * bs.
                            let acc = unsafe {
                                V::tile::<MR, NV>(kc, ap.as_ptr(), rs, cs, bp.as_ptr(), bs)
                            };
                            kernel::store::<V, MR, NV>(&acc, c, ldc, tile, ep, first, last);
                        }
                        ir += MR;
                    }
                    jr += nr;
                }
                ic += mc_blk;
            }
            pc += kc_blk;
        }
        jc += nc_blk;
    }
}

/// `pack::pack_a` for the variant of `V` (see `Vf32::PACK_APART`).
#[inline(always)]
fn pack_a<V: Vf32, const MR: usize>(
    a: &MatRef<'_>,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if V::PACK_APART {
        return pack::pack_a_apart::<MR>(a, i0, mc, p0, kc, dst);
    }
    pack::pack_a::<MR>(a, i0, mc, p0, kc, dst);
}

/// `pack::pack_b` for the variant of `V` (see `Vf32::PACK_APART`).
#[inline(always)]
fn pack_b<V: Vf32, const NV: usize>(
    b: &MatRef<'_>,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if V::PACK_APART {
        return pack::pack_b_apart::<NV>(b, p0, kc, j0, nc, dst);
    }
    pack::pack_b::<NV>(b, p0, kc, j0, nc, dst);
}

/// The last `t.mr < MR` rows of an M block as tiles of 4, 2 and 1 rows, reading A at
/// `a[r * rs + p * cs]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn edge_rows<V: GemmKernel, const NV: usize>(
    kc: usize,
    a: &[f32],
    rs: usize,
    cs: usize,
    b: &[f32],
    bs: usize,
    c: &mut [f32],
    ldc: usize,
    t: kernel::TileAt,
    ep: &Epilogue<'_>,
    first: bool,
    last: bool,
) {
    let mut r = 0;
    while r < t.mr {
        let left = t.mr - r;
        let tile = kernel::TileAt {
            i0: t.i0 + r,
            mr: if left >= 4 {
                4
            } else if left >= 2 {
                2
            } else {
                1
            },
            ..t
        };
        // ap covers i * rs + p * cs for i < tile.mr, p < kc (its length is the last one
        // plus 1), and b the NV * 8 floats from p * bs for p < kc (likewise, checked)
        let span = (tile.mr - 1) * rs + (kc - 1) * cs + 1;
        let bspan = (kc - 1) * bs + NV * LANES;
        let (ap, bp) = (a[r * rs..][..span].as_ptr(), b[..bspan].as_ptr());
        // SAFETY: see above (each call reads tile.mr rows).
        unsafe {
            match tile.mr {
                4 => edge_tile::<V, 4, NV>(kc, ap, rs, cs, bp, bs, c, ldc, tile, ep, first, last),
                2 => edge_tile::<V, 2, NV>(kc, ap, rs, cs, bp, bs, c, ldc, tile, ep, first, last),
                _ => edge_tile::<V, 1, NV>(kc, ap, rs, cs, bp, bs, c, ldc, tile, ep, first, last),
            }
        }
        r += tile.mr;
    }
}

/// One `MR`-row tile of [`edge_rows`]: the microkernel, then the store.
///
/// # Safety
/// As `kernel::kernel`: `ap` valid for `i * rs + p * cs` (`i < MR`, `p < kc`), `bp` for
/// the `NV * 8` floats from `p * bs` (`p < kc`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn edge_tile<V: GemmKernel, const MR: usize, const NV: usize>(
    kc: usize,
    ap: *const f32,
    rs: usize,
    cs: usize,
    bp: *const f32,
    bs: usize,
    c: &mut [f32],
    ldc: usize,
    tile: kernel::TileAt,
    ep: &Epilogue<'_>,
    first: bool,
    last: bool,
) {
    // SAFETY: the caller's contract is the kernel's.
    let acc = unsafe { V::tile::<MR, NV>(kc, ap, rs, cs, bp, bs) };
    kernel::store::<V, MR, NV>(&acc, c, ldc, tile, ep, first, last);
}

/// `C = clamp(beta * C + bias)` when `alpha == 0` (A and B are not read).
fn scale_only(m: usize, n: usize, c: &mut [f32], ldc: usize, ep: &Epilogue<'_>) {
    for i in 0..m {
        let row = &mut c[i * ldc..][..n];
        for (j, x) in row.iter_mut().enumerate() {
            let mut v = if ep.beta == 0.0 { 0.0 } else { ep.beta * *x };
            match ep.bias {
                Bias::None => {}
                Bias::Row(bias) => v += bias[i],
                Bias::Col(bias) => v += bias[j],
            }
            *x = clamp1(v, ep.lo, ep.hi);
        }
    }
}

/// Both AVX-512 tiles on an A read in place, whichever this CPU runs
/// ([`GemmKernel::wide`]), against products summed in f64.
#[cfg(all(test, target_arch = "x86_64", not(miri)))]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::{AOp, Args, BOp, Epilogue, MatRef, SgemmBlocking, blocked, sgemm_scratch_len};
    use crate::arch::{self, Isa, x86::Avx512};

    /// `blocked` on the `MR x 32` zmm tile, A and B read in place.
    ///
    /// # Safety
    /// AVX-512 F, BW, VL, AVX2 and FMA must be available.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn tile<const MR: usize>(
        blk: SgemmBlocking,
        args: &Args<'_>,
        c: &mut [f32],
        scratch: &mut [f32],
    ) {
        blocked::<Avx512, MR, 4, true>(blk, args, c, &Epilogue::plain(), scratch);
    }

    #[test]
    fn both_avx512_tiles_match_f64() {
        if arch::detected() != Isa::Avx512 {
            return;
        }
        for (m, n, k) in [
            (1, 1, 1),
            (13, 37, 5),
            (25, 512, 300),
            (100, 96, 700),
            (64, 256, 64),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0)
                .collect();
            let args = Args {
                m,
                n,
                k,
                a: AOp::Mat(MatRef::rows(&a, k)),
                b: BOp::Mat(MatRef::rows(&b, n)),
                ldc: n,
            };
            let mut scratch = vec![0.0; sgemm_scratch_len(m, n, k)];
            // the default blocking, and one cutting every size into several blocks
            let small = SgemmBlocking {
                mc: 48,
                kc: 64,
                nc: 64,
            };
            for (wide, blk) in [false, true]
                .into_iter()
                .flat_map(|w| [(w, SgemmBlocking::DEFAULT), (w, small)])
            {
                let mut c = vec![f32::NAN; m * n];
                // SAFETY: the CPU runs AVX-512 (checked above).
                unsafe {
                    if wide {
                        tile::<12>(blk, &args, &mut c, &mut scratch);
                    } else {
                        tile::<8>(blk, &args, &mut c, &mut scratch);
                    }
                }
                for i in 0..m {
                    for j in 0..n {
                        let (mut want, mut mag) = (0.0f64, 0.0f64);
                        for p in 0..k {
                            let t = f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
                            want += t;
                            mag += t.abs();
                        }
                        let got = f64::from(c[i * n + j]);
                        let tol = (k as f64 + 2.0) * f64::from(f32::EPSILON) * mag + 1e-30;
                        assert!(
                            (got - want).abs() <= tol,
                            "wide {wide} {m}x{n}x{k} ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
