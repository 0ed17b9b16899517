//! The implicit GEMM's shared parts: the per-variant tiles ([`ImplicitKernel`]), the
//! checked arguments, the tap loop, and the zero-bordered copy of a padded image. The
//! passes are `fwd_implicit` (the forward pass: pixels x output channels) and
//! `weight_implicit` (the weight gradient: taps x output channels).

use crate::arch::Tile;
use crate::error::KernelError;
use crate::gemm::kernel::{PORTABLE_MR, PORTABLE_NV};
use crate::params::{Conv2dDims, Conv2dParams, add};
use crate::simd::{LANES, f32x8};
use crate::vector::{Vf32, build};

/// Taps per K block of the forward pass (rounded down to whole input channels, at least
/// one): a block's tile runs one loop over a table of its tap offsets. 64-bit targets take
/// up to 1152 (ResNet's 128-channel 3x3 layer in one block, its weights streaming from L2:
/// 10% faster than blocks that fit L1; docs/log.md, "Measurements behind constants";
/// re-measure: `cnnkit bench --filter res3x3`); 32-bit targets (microcontrollers) 256, a
/// 1 KiB table.
pub(super) const KB: usize = if cfg!(target_pointer_width = "64") {
    1152
} else {
    256
};

/// The input's height and width with the padding added.
pub(super) fn padded_dims(p: &Conv2dParams) -> Result<(usize, usize), KernelError> {
    Ok((
        add(add(p.in_h, p.pad_top)?, p.pad_bottom)?,
        add(add(p.in_w, p.pad_left)?, p.pad_right)?,
    ))
}

/// Which of a variant's two forward tiles of `main` and `alt` rows a plane of `px` output
/// pixels takes: the other one only where it computes at least 5% fewer pixels (its tiles
/// run within one image, so a plane is rounded up to whole tiles: 49 pixels to 56 in
/// tiles of 8, 49 in tiles of 7).
pub(crate) const fn takes_alt(main: usize, alt: usize, px: usize) -> bool {
    let (m, a) = (px.div_ceil(main) * main, px.div_ceil(alt) * alt);
    a * 20 < m * 19
}

/// Output pixels per forward tile of `isa`'s implicit GEMM for a layer of
/// `out_per_group` output channels per group (the narrow tiles up to 16) and `px` output
/// pixels per plane: the tile [`takes_alt`] picks.
pub(crate) fn forward_tile_rows(isa: crate::arch::Isa, out_per_group: usize, px: usize) -> usize {
    use crate::gemm::kernel::GemmTile;
    crate::arch::with_isa!(isa, V => {
        let (main, alt) = if out_per_group <= 16 {
            (
                <<V as ImplicitKernel>::ForwardNarrow as GemmTile>::MR,
                <<V as ImplicitKernel>::ForwardNarrowAlt as GemmTile>::MR,
            )
        } else {
            (
                <<V as ImplicitKernel>::Forward as GemmTile>::MR,
                <<V as ImplicitKernel>::ForwardAlt as GemmTile>::MR,
            )
        };
        if takes_alt(main, alt, px) { alt } else { main }
    })
}

/// The implicit GEMM as a variant provides it, implemented by the variant's lane type:
/// the forward pass's tile (`Tile<MR, NV>`: `MR` output pixels by `NV` vectors of 8
/// output channels), the weight gradient's (`MR` taps by `NV` vectors), and the tap loop
/// (the portable [`taps_tile`] unless the variant has its own).
pub(crate) trait ImplicitKernel: Vf32 {
    /// The forward pass's tile.
    type Forward;
    /// The forward pass's tile for 16 output channels per group or fewer (16 wide).
    type ForwardNarrow;
    /// [`ImplicitKernel::Forward`]'s width with other rows, for planes that tile fills
    /// badly ([`takes_alt`]).
    type ForwardAlt;
    /// [`ImplicitKernel::ForwardNarrow`]'s width with other rows, likewise.
    type ForwardNarrowAlt;
    /// The weight gradient's tile.
    type Weight;
    /// The weight gradient's tile for 16 output channels per group or fewer (where a wider
    /// tile would compute zero lanes).
    type WeightNarrow;

    /// [`taps_tile`] for this variant.
    ///
    /// # Safety
    /// As [`taps_tile`].
    #[inline(always)]
    unsafe fn taps<const MR: usize, const NV: usize>(
        ptrs: &[*const f32; MR],
        w: *const f32,
        offs: &[u32],
    ) -> [[Self; NV]; MR] {
        // SAFETY: the caller's contract is the tile's.
        unsafe { taps_tile::<Self, MR, NV>(ptrs, w, offs) }
    }

    /// [`weight_tile_at`] for this variant.
    ///
    /// # Safety
    /// As [`weight_tile_at`].
    #[inline(always)]
    unsafe fn weight_tile<const MR: usize, const NV: usize>(
        tile: &mut [f32],
        src: *const f32,
        toff: &[usize; MR],
        dyt: *const f32,
        px: Pixels,
    ) {
        // SAFETY: the caller's contract is the tile's.
        unsafe { weight_tile_at::<Self, MR, NV>(tile, src, toff, dyt, px) }
    }
}

/// The portable variant: the GEMM microkernel's tile.
impl ImplicitKernel for f32x8 {
    type Forward = Tile<PORTABLE_MR, PORTABLE_NV>;
    type ForwardNarrow = Tile<PORTABLE_MR, PORTABLE_NV>;
    type ForwardAlt = Tile<PORTABLE_MR, PORTABLE_NV>;
    type ForwardNarrowAlt = Tile<PORTABLE_MR, PORTABLE_NV>;
    type Weight = Tile<PORTABLE_MR, PORTABLE_NV>;
    type WeightNarrow = Tile<PORTABLE_MR, PORTABLE_NV>;
}

/// The checked arguments of one call.
pub(crate) struct Args<'a> {
    pub(super) p: &'a Conv2dParams,
    pub(super) d: &'a Conv2dDims,
    pub(super) input: &'a [f32],
    pub(super) weight: &'a [f32],
    pub(super) bias: Option<&'a [f32]>,
    pub(super) lo: f32,
    pub(super) hi: f32,
    /// Height and width of the (padded) image the taps are read from.
    pub(super) ph: usize,
    pub(super) pw: usize,
}

/// The tap geometry within one (padded) image of the group's channels.
#[derive(Clone, Copy)]
pub(super) struct Taps {
    pub(super) channels: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    /// Distance between channels, between tap rows and between tap columns.
    pub(super) plane: usize,
    pub(super) row: usize,
    pub(super) col: usize,
}

/// The output pixels' geometry in the (padded) input: `out_h` rows of `out_w` pixels,
/// `row` and `col` apart.
#[derive(Clone, Copy)]
pub(crate) struct Pixels {
    pub(super) out_h: usize,
    pub(super) out_w: usize,
    pub(super) row: usize,
    pub(super) col: usize,
}

/// Adds to `acc` one `MR x (NV * 8)` tile of the weight gradient over one image: tap `r`
/// of pixel `(oh, ow)` is read at `src + toff[r] + oh * row + ow * col`, that pixel's
/// output gradients for the block's channels are the `NV * 8` floats at
/// `dyt + (oh * out_w + ow) * NV * 8`.
///
/// # Safety
/// Every such tap must be readable, and `dyt` must hold `NV * 8` floats per pixel.
#[inline(always)]
pub(super) unsafe fn weight_tile<V: Vf32, const MR: usize, const NV: usize>(
    src: *const f32,
    toff: &[usize; MR],
    dyt: *const f32,
    px: Pixels,
    acc: &mut [[V; NV]; MR],
) {
    let mut a = *acc;
    let ptrs: [*const f32; MR] = build(core::ptr::null(), |r| src.wrapping_add(toff[r]));
    let mut bp = dyt;
    for oh in 0..px.out_h {
        let ro = oh * px.row;
        for ow in 0..px.out_w {
            // SAFETY: the caller guarantees every tap of every pixel is readable and
            // NV * 8 gradients for this pixel at bp.
            unsafe { step(&mut a, &ptrs, ro + ow * px.col, bp) };
            // SAFETY: stays within (or one past) the caller's gradients.
            bp = unsafe { bp.add(NV * LANES) };
        }
    }
    *acc = a;
}

/// Adds to the `rows <= MR` rows of `NV * 8` floats of `tile` one `MR x (NV * 8)` tile of
/// the weight gradient over one image ([`weight_tile`] between a load and a store).
///
/// # Safety
/// As [`weight_tile`]; `tile` holds at most `MR` rows of `NV * 8` floats.
#[inline(always)]
pub(super) unsafe fn weight_tile_at<V: Vf32, const MR: usize, const NV: usize>(
    tile: &mut [f32],
    src: *const f32,
    toff: &[usize; MR],
    dyt: *const f32,
    px: Pixels,
) {
    let nr = NV * LANES;
    let mut acc = [[V::splat(0.0); NV]; MR];
    for (ar, row) in acc.iter_mut().zip(tile.chunks_exact(nr)) {
        for (v, x) in ar.iter_mut().enumerate() {
            *x = V::load(&row[v * LANES..]);
        }
    }
    // SAFETY: the caller's contract is the tile's.
    unsafe { weight_tile::<V, MR, NV>(src, toff, dyt, px, &mut acc) };
    for (ar, row) in acc.iter().zip(tile.chunks_exact_mut(nr)) {
        for (v, x) in ar.iter().enumerate() {
            x.store(&mut row[v * LANES..]);
        }
    }
}

/// One step of a tile: `acc[r] += ptrs[r][o] * b[..NV * 8]` for every row `r`.
///
/// # Safety
/// Every `ptrs[r] + o` must be readable, and `b` must hold `NV * 8` floats.
#[inline(always)]
pub(super) unsafe fn step<V: Vf32, const MR: usize, const NV: usize>(
    acc: &mut [[V; NV]; MR],
    ptrs: &[*const f32; MR],
    o: usize,
    b: *const f32,
) {
    let mut bv = [V::splat(0.0); NV];
    for (v, x) in bv.iter_mut().enumerate() {
        // SAFETY: b holds NV * 8 floats (the caller's guarantee).
        *x = unsafe { V::load_ptr(b.add(v * LANES)) };
    }
    for (row, &ptr) in acc.iter_mut().zip(ptrs.iter()) {
        // SAFETY: ptr + o is readable (the caller's guarantee).
        let av = V::splat(unsafe { *ptr.add(o) });
        for (x, &bb) in row.iter_mut().zip(bv.iter()) {
            *x = av.mul_add(bb, *x);
        }
    }
}

/// Copies one image's channels of a group, `x_g` (`[channels, in_h, in_w]`), into the
/// interior of the zero-bordered planes of `pad_buf` (rows `pw` floats wide); the borders
/// are left as they are. Rows are moved in vectors of the variant's lane type (a
/// `copy_from_slice` per row of 14 or 28 floats was a memmove call each: 2% of the
/// `fmnist` preset's training step).
#[inline(always)]
pub(super) fn copy_padded<V: Vf32>(p: &Conv2dParams, x_g: &[f32], pw: usize, pad_buf: &mut [f32]) {
    let ph = p.in_h + p.pad_top + p.pad_bottom;
    for (ci, plane) in x_g.chunks_exact(p.in_h * p.in_w).enumerate() {
        for (ih, row) in plane.chunks_exact(p.in_w).enumerate() {
            let at = ci * ph * pw + (ih + p.pad_top) * pw + p.pad_left;
            let dst = &mut pad_buf[at..at + p.in_w];
            // (a short last chunk: V::load reads missing lanes as 0, V::store writes only
            // the chunk's floats)
            for (d, s) in dst.chunks_mut(LANES).zip(row.chunks(LANES)) {
                V::load(s).store(d);
            }
        }
    }
}

/// `acc[r] = sum over i of ptrs[r][offs[i]] * w[i * NV * 8..][..NV * 8]`: the portable
/// and AVX2 tile of [`tile_offs`] (see [`ImplicitKernel::taps`]).
///
/// # Safety
/// Every `ptrs[r] + offs[i]` must be readable, and `w` must hold `NV * 8` floats per
/// offset.
#[inline(always)]
pub(crate) unsafe fn taps_tile<V: Vf32, const MR: usize, const NV: usize>(
    ptrs: &[*const f32; MR],
    w: *const f32,
    offs: &[u32],
) -> [[V; NV]; MR] {
    let mut acc = [[V::splat(0.0); NV]; MR];
    for (i, &o) in offs.iter().enumerate() {
        // SAFETY: the caller guarantees every tap of every pixel is readable and NV * 8
        // weights per tap at w.
        unsafe { step(&mut acc, ptrs, o as usize, w.add(i * NV * LANES)) };
    }
    acc
}

/// The x86 variants: AVX2 + FMA on the GEMM's 6 x 16 tile; AVX-512 on 8 x 32 (zmm) for the
/// forward pass and the weight gradient, each with its own loop, and for 16 output channels
/// or fewer 20 x 16 (one zmm vector per row) for the forward pass (LeNet's second layer:
/// 12 x 16 measured 0.41 -> 0.32 ms against 6 x 16 on ymm on a Xeon family 6 model 207;
/// 20 x 16 against 12 x 16 on an AMD Zen 5, 0.201-0.209 -> 0.180-0.186 ms, and 2-9%
/// faster on 16-channel layers of 14 x 14 to 56 x 56, 25 rows slower, 0.22 ms; not
/// measured on the Xeon) and 6 x 16 on ymm for the weight gradient (12 x 16 on zmm
/// measured 0.44 -> 0.54 ms there); 7 x 32 and 12 x 16 for the forward pass of planes whose
/// pixels they cover with 5% fewer than 8 and 20 rows.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };

    use super::{ImplicitKernel, Pixels, taps_tile, weight_tile_at};
    use crate::arch::Tile;
    use crate::arch::x86::{Avx2, Avx512, halves};
    use crate::simd::LANES;

    impl ImplicitKernel for Avx2 {
        type Forward = Tile<6, 2>;
        type ForwardNarrow = Tile<6, 2>;
        // (7 rows of 2 ymm accumulators would not leave registers for the loads)
        type ForwardAlt = Tile<6, 2>;
        type ForwardNarrowAlt = Tile<6, 2>;
        type Weight = Tile<6, 2>;
        type WeightNarrow = Tile<6, 2>;
    }

    impl ImplicitKernel for Avx512 {
        type Forward = Tile<8, 4>;
        type ForwardNarrow = Tile<20, 2>;
        // 7 rows: a 7 x 7 plane in 7 tiles, where 8 rows compute 56 pixels (the `fmnist`
        // preset's 64 -> 128 channels on 7 x 7, 64 images, AMD Zen 5: 2.24 -> 1.94 ms)
        type ForwardAlt = Tile<7, 4>;
        // 12 rows where they cover a plane with 5% fewer pixels than 20 (a 10-row tile,
        // which covers LeNet's 10 x 10 planes exactly, measured slower than 12 rows there:
        // 0.197 -> 0.226 ms; 20 rows, 5 tiles an image, 0.201-0.209 -> 0.180-0.186)
        type ForwardNarrowAlt = Tile<12, 2>;
        type Weight = Tile<8, 4>;
        type WeightNarrow = Tile<6, 2>;

        #[inline(always)]
        unsafe fn weight_tile<const MR: usize, const NV: usize>(
            tile: &mut [f32],
            src: *const f32,
            toff: &[usize; MR],
            dyt: *const f32,
            px: Pixels,
        ) {
            if NV.is_multiple_of(2) && NV >= 4 {
                // SAFETY: this lane type is only used in code compiled for, and run on,
                // AVX-512 F; the caller's contract is the tile's.
                unsafe { zmm_weight::<MR, NV>(tile, src, toff, dyt, px) }
            } else {
                // SAFETY: the caller's contract is the tile's.
                unsafe { weight_tile_at::<Self, MR, NV>(tile, src, toff, dyt, px) }
            }
        }

        #[inline(always)]
        unsafe fn taps<const MR: usize, const NV: usize>(
            ptrs: &[*const f32; MR],
            w: *const f32,
            offs: &[u32],
        ) -> [[Self; NV]; MR] {
            if NV.is_multiple_of(2) {
                // SAFETY: this lane type is only used in code compiled for, and run on,
                // AVX-512 F; the caller's contract is the tile's.
                unsafe { zmm_taps::<MR, NV>(ptrs, w, offs) }
            } else {
                // SAFETY: the caller's contract is the tile's.
                unsafe { taps_tile::<Self, MR, NV>(ptrs, w, offs) }
            }
        }
    }

    /// The weight gradient's tile ([`weight_tile_at`]) on 16-lane registers: `MR` taps by
    /// `NV / 2` zmm vectors of output channels (`NV` even), per pixel one load per vector
    /// of output gradients and one broadcast per tap.
    ///
    /// # Safety
    /// AVX-512 F must be available, and the pointers as for [`weight_tile_at`].
    #[inline(always)]
    unsafe fn zmm_weight<const MR: usize, const NV: usize>(
        tile: &mut [f32],
        src: *const f32,
        toff: &[usize; MR],
        dyt: *const f32,
        px: Pixels,
    ) {
        let (nz, nr) = (NV / 2, NV * LANES);
        // SAFETY: AVX-512 F is available (the caller's contract); `tile` holds whole rows
        // of nr floats; every tap of every pixel is readable and `dyt` holds nr floats per
        // pixel (likewise).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            for (ar, row) in acc.iter_mut().zip(tile.chunks_exact(nr)) {
                for (v, x) in ar.iter_mut().enumerate().take(nz) {
                    *x = _mm512_loadu_ps(row.as_ptr().add(v * 2 * LANES));
                }
            }
            let mut ptrs = [src; MR];
            for (p, &o) in ptrs.iter_mut().zip(toff.iter()) {
                *p = src.wrapping_add(o);
            }
            let mut bp = dyt;
            for oh in 0..px.out_h {
                let ro = oh * px.row;
                for ow in 0..px.out_w {
                    let o = ro + ow * px.col;
                    let mut bz = [_mm512_setzero_ps(); NV];
                    for (v, x) in bz.iter_mut().enumerate().take(nz) {
                        *x = _mm512_loadu_ps(bp.add(v * 2 * LANES));
                    }
                    for (row, &ptr) in acc.iter_mut().zip(ptrs.iter()) {
                        let av = _mm512_set1_ps(*ptr.add(o));
                        for (x, &bb) in row.iter_mut().zip(bz.iter()).take(nz) {
                            *x = _mm512_fmadd_ps(av, bb, *x);
                        }
                    }
                    bp = bp.add(nr);
                }
            }
            for (ar, row) in acc.iter().zip(tile.chunks_exact_mut(nr)) {
                for (v, x) in ar.iter().enumerate().take(nz) {
                    _mm512_storeu_ps(row.as_mut_ptr().add(v * 2 * LANES), *x);
                }
            }
        }
    }

    /// The implicit GEMM's tile ([`taps_tile`]) on 16-lane registers:
    /// `MR` pixels by `NV / 2` zmm vectors of output channels (`NV` even), per tap one
    /// load per vector of weights and one broadcast per pixel.
    ///
    /// # Safety
    /// AVX-512 F must be available, and the pointers as for
    /// [`taps_tile`].
    #[inline(always)]
    unsafe fn zmm_taps<const MR: usize, const NV: usize>(
        ptrs: &[*const f32; MR],
        w: *const f32,
        offs: &[u32],
    ) -> [[Avx512; NV]; MR] {
        // SAFETY: AVX-512 F is available (the caller's contract); every tap of every pixel is
        // readable and `w` holds NV * 8 floats per tap (likewise).
        unsafe {
            let nz = NV / 2;
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            for (i, &o) in offs.iter().enumerate() {
                let wp = w.add(i * NV * LANES);
                let mut bz = [_mm512_setzero_ps(); NV];
                for (v, x) in bz.iter_mut().enumerate().take(nz) {
                    *x = _mm512_loadu_ps(wp.add(v * 2 * LANES));
                }
                for (row, &ptr) in acc.iter_mut().zip(ptrs.iter()) {
                    let av = _mm512_set1_ps(*ptr.add(o as usize));
                    for (x, &bb) in row.iter_mut().zip(bz.iter()).take(nz) {
                        *x = _mm512_fmadd_ps(av, bb, *x);
                    }
                }
            }
            halves(&acc)
        }
    }
}
