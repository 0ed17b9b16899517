//! Implicit GEMM: the convolution as `Y^T [pixels x channels] = col^T [pixels x K] *
//! W^T [K x channels]` without building im2col's matrix. A register tile holds `MR`
//! output pixels by `NV * 8` output channels (the GEMM microkernel's 6 x 16 on AVX2); each
//! tap `(c_in, kh, kw)` broadcasts one input value per pixel straight from the image and
//! loads one row of the transposed, packed weights, then does `MR * NV` FMAs, as the
//! GEMM's microkernel does with packed operands. The only packing is of the weights
//! (`K x 16` per block of output channels, once per call) and, for a padded convolution,
//! a zero-bordered copy of one image's channels of the group at a time, so the taps never
//! need a bounds check. The tile is stored transposed (16 output planes, `MR` pixels each).
//!
//! It wins where im2col would write far more than the GEMM computes on it: small images
//! with many taps per output channel block (LeNet's second layer: K = 150, 16 channels),
//! and any plane of 128 pixels or more (VGG's and ResNet's 3x3 layers, K = 576 and 1152).
//! A tile runs one loop over a table of its K block's tap offsets: the nested loops over
//! channels, rows and columns (3 steps for a 3x3 kernel) measured 9-10% slower on those
//! layers (ResNet's 128-channel 28 x 28: 25.0 -> 22.6 ms for 8 images, min of 15).
//!
//! One generic source, compiled for each variant (see `crate::arch`).

use super::im2col::unpadded;
use crate::arch;
use crate::arch::Tile;
use crate::error::KernelError;
use crate::gemm::kernel::{PORTABLE_MR, PORTABLE_NV};
use crate::params::{Activation, Conv2dDims, Conv2dParams, add, mul};
use crate::simd::{LANES, f32x8};
use crate::vector::{Vf32, build};

/// Output channels per weight block in the forward pass's scratch layout (the widest
/// tile of any variant; layers of at most 16 channels take a 16-wide tile, see [`run`]).
const NR_MAX: usize = 32;
/// The same for the weight gradient, whose tile is at most 16 wide in every variant.
const WEIGHT_NR_MAX: usize = 16;

/// Output channels rounded up to whole weight blocks of the forward pass's widest tile.
const fn padded_out(m: usize) -> usize {
    if m <= 16 {
        16
    } else {
        m.div_ceil(NR_MAX) * NR_MAX
    }
}
/// Taps per output up to which [`crate::conv2d`] takes the implicit GEMM on any plane
/// (see `Conv2dAlgo::Implicit`).
pub(super) const KC: usize = 256;

/// Taps per K block of the forward pass (rounded down to whole input channels, at least
/// one): a block's tile runs one loop over a table of its tap offsets. 64-bit targets take
/// up to 1152 (ResNet's 128-channel 3x3 layer in one block: its weights, 72 KiB, stream
/// from L2; 256-tap blocks that keep them in L1 measured 10% slower, ResNet's layer 22.6-24.1
/// against 20.4 ms for 8 images, and VGG's 23.4-23.7 against 21.4-21.6, min of 15); the
/// table, 4.5 KiB of stack, is 1 KiB on 32-bit targets (microcontrollers), with 256.
const KB: usize = if cfg!(target_pointer_width = "64") {
    1152
} else {
    256
};

/// Scratch elements [`conv2d_implicit`] needs: the group's weights transposed and packed
/// (output channels rounded up to 16, times `in_per_group * kernel_h * kernel_w`), plus,
/// when `p` pads, one zero-bordered copy of a group's input channels of one image.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_implicit_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    Ok(super::Conv2dPlan::for_algo(p, super::Conv2dAlgo::Implicit)?.scratch_len())
}

/// Scratch of [`forward`] (the implicit GEMM itself, not the flat planes).
pub(super) fn forward_scratch_len(p: &Conv2dParams, d: &Conv2dDims) -> Result<usize, KernelError> {
    let weights = mul(padded_out(d.out_per_group), d.col_rows)?;
    if unpadded(p) {
        return Ok(weights);
    }
    let (ph, pw) = padded_dims(p)?;
    add(weights, mul(d.in_per_group, mul(ph, pw)?)?)
}

/// The input's height and width with the padding added.
fn padded_dims(p: &Conv2dParams) -> Result<(usize, usize), KernelError> {
    Ok((
        add(add(p.in_h, p.pad_top)?, p.pad_bottom)?,
        add(add(p.in_w, p.pad_left)?, p.pad_right)?,
    ))
}

/// Convolution forward pass by implicit GEMM (see the module docs): output channels in
/// the vector lanes, each pixel's taps read in place; for 4 to 7 output channels per group
/// at stride 1 without dilation, pixels in the lanes over flat zero-padded input planes
/// (the scratch length covers whichever applies). Arguments and result as
/// [`crate::conv2d`]; `scratch` holds at least [`conv2d_implicit_scratch_len`] floats.
///
/// # Errors
/// As [`crate::conv2d`], with [`conv2d_implicit_scratch_len`] as the scratch requirement.
///
/// ```
/// use cnnkit_kernels::{conv2d_implicit, conv2d_implicit_scratch_len, Activation, Conv2dParams};
/// // one 3x3 image, two 2x2 filters: a 2x2 output per filter
/// let p = Conv2dParams::new(1, 1, 3, 3, 2, 2, 2);
/// let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
/// let w = [1.0, 0.0, 0.0, 0.0, /* */ 0.0, 0.0, 0.0, 1.0];
/// let mut y = [0.0; 8];
/// let mut s = vec![0.0; conv2d_implicit_scratch_len(&p).unwrap()];
/// conv2d_implicit(&p, &x, &w, None, Activation::None, &mut y, &mut s).unwrap();
/// assert_eq!(y, [1.0, 2.0, 4.0, 5.0, /* */ 5.0, 6.0, 8.0, 9.0]);
/// ```
pub fn conv2d_implicit(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    super::Conv2dPlan::for_algo(p, super::Conv2dAlgo::Implicit)?
        .run(input, weight, bias, act, output, scratch)
}

/// The implicit GEMM's forward pass; arguments validated by the caller (the plan),
/// `scratch` holds [`conv2d_implicit_scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    (lo, hi): (f32, f32),
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (ph, pw) = padded_dims(p)?;
    let a = Args {
        p,
        d,
        input,
        weight,
        bias,
        lo,
        hi,
        ph,
        pw,
    };
    let a = &a;
    arch::dispatch!(forward_on(a: &Args<'_>, output: &mut [f32], scratch: &mut [f32]));
    Ok(())
}

/// The implicit GEMM as a variant provides it, implemented by the variant's lane type:
/// the forward pass's tile (`Tile<MR, NV>`: `MR` output pixels by `NV` vectors of 8
/// output channels), the weight gradient's (`MR` taps by `NV` vectors), and the tap loop
/// (the portable [`taps_tile`] unless the variant has its own).
pub(crate) trait ImplicitKernel: Vf32 {
    /// The forward pass's tile.
    type Forward: ImplicitTile;
    /// The weight gradient's tile.
    type Weight: ImplicitTile;

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
}

/// A tile shape back into const generics, for the passes that run on it.
pub(crate) trait ImplicitTile {
    /// The forward pass ([`run`]).
    fn forward<V: ImplicitKernel>(a: &Args<'_>, output: &mut [f32], scratch: &mut [f32]);
    /// The weight gradient ([`weight_run`]).
    fn weight<V: ImplicitKernel>(a: &Args<'_>, grad_weight: &mut [f32], scratch: &mut [f32]);
}

impl<const MR: usize, const NV: usize> ImplicitTile for Tile<MR, NV> {
    #[inline(always)]
    fn forward<V: ImplicitKernel>(a: &Args<'_>, output: &mut [f32], scratch: &mut [f32]) {
        run::<V, MR, NV>(a, output, scratch);
    }
    #[inline(always)]
    fn weight<V: ImplicitKernel>(a: &Args<'_>, grad_weight: &mut [f32], scratch: &mut [f32]) {
        weight_run::<V, MR, NV>(a, grad_weight, scratch);
    }
}

/// The portable variant: the GEMM microkernel's tile.
impl ImplicitKernel for f32x8 {
    type Forward = Tile<PORTABLE_MR, PORTABLE_NV>;
    type Weight = Tile<PORTABLE_MR, PORTABLE_NV>;
}

#[inline(always)]
fn forward_on<V: ImplicitKernel>(a: &Args<'_>, output: &mut [f32], scratch: &mut [f32]) {
    V::Forward::forward::<V>(a, output, scratch);
}

#[inline(always)]
fn weight_on<V: ImplicitKernel>(a: &Args<'_>, grad_weight: &mut [f32], scratch: &mut [f32]) {
    V::Weight::weight::<V>(a, grad_weight, scratch);
}

/// The checked arguments of one call.
pub(crate) struct Args<'a> {
    p: &'a Conv2dParams,
    d: &'a Conv2dDims,
    input: &'a [f32],
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    lo: f32,
    hi: f32,
    /// Height and width of the (padded) image the taps are read from.
    ph: usize,
    pw: usize,
}

/// The tap geometry within one (padded) image of the group's channels.
#[derive(Clone, Copy)]
struct Taps {
    channels: usize,
    kh: usize,
    kw: usize,
    /// Distance between channels, between tap rows and between tap columns.
    plane: usize,
    row: usize,
    col: usize,
}

/// [`run_tile`] on the tile `MR x NV` or, for at most half as many output channels as it
/// is wide, on the 6 x 16 tile (AVX-512's 8 x 32 on LeNet's 16-channel layer: 0.585 ms
/// against 0.346, its upper half computing zeros).
#[inline(always)]
fn run<V: ImplicitKernel, const MR: usize, const NV: usize>(
    a: &Args<'_>,
    output: &mut [f32],
    scratch: &mut [f32],
) {
    if NV > 2 && a.d.out_per_group <= NV * LANES / 2 {
        run_tile::<V, 6, 2>(a, output, scratch);
    } else {
        run_tile::<V, MR, NV>(a, output, scratch);
    }
}

/// The forward pass on an `MR x (NV * 8)` register tile.
#[inline(always)]
fn run_tile<V: ImplicitKernel, const MR: usize, const NV: usize>(
    a: &Args<'_>,
    output: &mut [f32],
    scratch: &mut [f32],
) {
    let (p, d) = (a.p, a.d);
    let nr = NV * LANES;
    let (m, n, k) = (d.out_per_group, d.col_cols, d.col_rows);
    let (ph, pw) = (a.ph, a.pw);
    let padded = !unpadded(p);
    let blocks = m.div_ceil(nr);
    let (packed_w, pad_buf) = scratch.split_at_mut(blocks * nr * k);
    let src_len = d.in_per_group * ph * pw;
    let pad_buf = &mut pad_buf[..if padded { src_len } else { 0 }];
    // the borders stay zero: only the interior is rewritten, image by image
    pad_buf.fill(0.0);
    let taps = Taps {
        channels: d.in_per_group,
        kh: p.kernel_h,
        kw: p.kernel_w,
        plane: ph * pw,
        row: p.dilation_h * pw,
        col: p.dilation_w,
    };
    if n == 0 || k == 0 {
        return;
    }
    // every tap of every output pixel lies inside the (padded) image: the last pixel's
    // last tap is the largest offset any tile reads
    let last_tap = (d.out_h - 1) * p.stride_h * pw
        + (d.out_w - 1) * p.stride_w
        + (taps.channels - 1) * taps.plane
        + (taps.kh - 1) * taps.row
        + (taps.kw - 1) * taps.col;
    assert!(last_tap < src_len, "implicit GEMM: a tap outside the image");
    let hw = p.in_h * p.in_w;
    let (lo, hi) = (V::splat(a.lo), V::splat(a.hi));
    for g in 0..p.groups {
        // W_g^T packed per block of nr output channels: k rows of nr (missing channels 0)
        let w_g = &a.weight[g * m * k..][..m * k];
        for (b, blk) in packed_w.chunks_exact_mut(k * nr).enumerate() {
            for (t, row) in blk.chunks_exact_mut(nr).enumerate() {
                for (c, x) in row.iter_mut().enumerate() {
                    let oc = b * nr + c;
                    *x = if oc < m { w_g[oc * k + t] } else { 0.0 };
                }
            }
        }
        let bias_g = a.bias.map(|b| &b[g * m..][..m]);
        for img in 0..p.batch {
            let x_g =
                &a.input[img * d.image_len + g * d.in_per_group * hw..][..d.in_per_group * hw];
            let src: &[f32] = if padded {
                copy_padded(p, x_g, pw, pad_buf);
                pad_buf
            } else {
                x_g
            };
            let out_g = &mut output[img * d.out_image_len + g * m * n..][..m * n];
            // K in blocks of whole channels, up to KB taps each; later blocks add into the
            // output
            let per_ch = p.kernel_h * p.kernel_w;
            let cb = (KB / per_ch).max(1);
            let mut c0 = 0;
            while c0 < d.in_per_group {
                let cn = cb.min(d.in_per_group - c0);
                let (first, last) = (c0 == 0, c0 + cn == d.in_per_group);
                let t = Taps {
                    channels: cn,
                    ..taps
                };
                let src_c = &src[c0 * taps.plane..];
                // the block's tap offsets in one table, so that the tile runs one long
                // loop over them (nested loops of kw = 3 steps measured slower)
                // (u32 offsets: every one is at most `last_tap`)
                let mut offs = [0_u32; KB];
                let flat = cn * per_ch <= KB && u32::try_from(last_tap).is_ok();
                if flat {
                    let mut i = 0;
                    for ci in 0..cn {
                        for kh in 0..taps.kh {
                            for kw in 0..taps.kw {
                                let o = ci * taps.plane + kh * taps.row + kw * taps.col;
                                offs[i] = o as u32;
                                i += 1;
                            }
                        }
                    }
                }
                let offs = &offs[..if flat { cn * per_ch } else { 0 }];
                for (b, wb) in packed_w.chunks_exact(k * nr).enumerate() {
                    let wb = &wb[c0 * per_ch * nr..][..cn * per_ch * nr];
                    let chans = (m - b * nr).min(nr);
                    // the block's biases in the lanes of its channels (missing ones 0)
                    let mut bias_b = [V::splat(0.0); NV];
                    if let (Some(bg), true) = (bias_g, first) {
                        let mut lanes = [0.0_f32; 32];
                        lanes[..chans].copy_from_slice(&bg[b * nr..][..chans]);
                        for (v, x) in bias_b.iter_mut().enumerate() {
                            *x = V::load(&lanes[v * LANES..]);
                        }
                    }
                    let mut j0 = 0;
                    while j0 < n {
                        let rows = (n - j0).min(MR);
                        let mut base = [0_usize; MR];
                        for (r, at) in base.iter_mut().enumerate() {
                            // (missing pixels repeat the last real one: in range, never stored)
                            let j = j0 + r.min(rows - 1);
                            let (oh, ow) = (j / d.out_w, j % d.out_w);
                            *at = oh * p.stride_h * pw + ow * p.stride_w;
                        }
                        let acc = if flat {
                            // SAFETY: every base + tap offset of channels c0.. (the table
                            // holds exactly those of the block) is at most `last_tap` <
                            // src.len() (checked above), so within src_c; wb holds nr
                            // floats per tap of the block.
                            unsafe {
                                tile_offs::<V, MR, NV>(src_c.as_ptr(), &base, wb.as_ptr(), offs)
                            }
                        } else {
                            // SAFETY: as above, for the taps of channels c0..c0 + cn.
                            unsafe { tile::<V, MR, NV>(src_c.as_ptr(), &base, wb.as_ptr(), t) }
                        };
                        // bias (and clamp, when one block holds all of K) with the
                        // channels in the lanes, then 8 x 8 transposes: a vector of 8
                        // pixels per channel, stored along the channel's plane (scalar
                        // stores here compiled to slow gathers on AVX-512)
                        let mut r0 = 0;
                        while r0 < rows {
                            let nrow = (rows - r0).min(LANES);
                            for (v, &bb) in bias_b.iter().enumerate() {
                                let c0 = v * LANES;
                                if c0 >= chans {
                                    break;
                                }
                                let mut block = [V::splat(0.0); LANES];
                                for (i, x) in block.iter_mut().enumerate().take(nrow) {
                                    let y = acc[r0 + i][v].add(bb);
                                    *x = if first && last { y.clamp(lo, hi) } else { y };
                                }
                                let cols = V::transpose8(block);
                                for (c, &t) in cols.iter().enumerate().take(chans - c0) {
                                    let at = (b * nr + c0 + c) * n + j0 + r0;
                                    let dst = &mut out_g[at..][..nrow];
                                    let y = match (first, last) {
                                        (true, _) => t,
                                        (false, false) => V::load(dst).add(t),
                                        (false, true) => V::load(dst).add(t).clamp(lo, hi),
                                    };
                                    y.store(dst);
                                }
                            }
                            r0 += LANES;
                        }
                        j0 += MR;
                    }
                }
                c0 += cn;
            }
        }
    }
}

/// One step of a tile: `acc[r] += ptrs[r][o] * b[..NV * 8]` for every row `r`.
///
/// # Safety
/// Every `ptrs[r] + o` must be readable, and `b` must hold `NV * 8` floats.
#[inline(always)]
unsafe fn step<V: Vf32, const MR: usize, const NV: usize>(
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
/// are left as they are.
fn copy_padded(p: &Conv2dParams, x_g: &[f32], pw: usize, pad_buf: &mut [f32]) {
    let ph = p.in_h + p.pad_top + p.pad_bottom;
    for (ci, plane) in x_g.chunks_exact(p.in_h * p.in_w).enumerate() {
        for (ih, row) in plane.chunks_exact(p.in_w).enumerate() {
            let at = ci * ph * pw + (ih + p.pad_top) * pw + p.pad_left;
            pad_buf[at..at + p.in_w].copy_from_slice(row);
        }
    }
}

/// One `MR x (NV * 8)` tile: pixel `r`'s taps start at `src + base[r]`, tap `t`'s weights
/// for the block's channels are the `NV * 8` floats at `w + t * NV * 8`.
///
/// # Safety
/// Every `src + base[r] + offset of a tap` must be readable, and `w` must hold
/// `NV * 8` floats per tap.
#[inline(always)]
unsafe fn tile<V: Vf32, const MR: usize, const NV: usize>(
    src: *const f32,
    base: &[usize; MR],
    w: *const f32,
    t: Taps,
) -> [[V; NV]; MR] {
    let mut acc = [[V::splat(0.0); NV]; MR];
    let ptrs: [*const f32; MR] = build(core::ptr::null(), |r| src.wrapping_add(base[r]));
    let mut wp = w;
    for ci in 0..t.channels {
        for kh in 0..t.kh {
            let ro = ci * t.plane + kh * t.row;
            for kw in 0..t.kw {
                // SAFETY: the caller guarantees every tap of every pixel is readable and
                // NV * 8 weights for this tap at wp.
                unsafe { step(&mut acc, &ptrs, ro + kw * t.col, wp) };
                // SAFETY: stays within (or one past) the caller's weights.
                wp = unsafe { wp.add(NV * LANES) };
            }
        }
    }
    acc
}

/// [`tile`] over the taps at `offs` (offsets from a pixel's first tap), in order.
///
/// # Safety
/// As [`tile`], for every offset in `offs`; `w` holds `NV * 8` floats per offset.
#[inline(always)]
unsafe fn tile_offs<V: ImplicitKernel, const MR: usize, const NV: usize>(
    src: *const f32,
    base: &[usize; MR],
    w: *const f32,
    offs: &[u32],
) -> [[V; NV]; MR] {
    let ptrs: [*const f32; MR] = build(core::ptr::null(), |r| src.wrapping_add(base[r]));
    // SAFETY: the caller's contract.
    unsafe { V::taps::<MR, NV>(&ptrs, w, offs) }
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

/// Scratch elements [`backward_weight`] needs for `p`: the weight gradient transposed
/// (`K x 16`-channel blocks), one block of one image's output gradient transposed
/// (`pixels x 16`), and for a padded `p` one zero-bordered copy of a group's input
/// channels.
pub(crate) fn backward_weight_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    let d = p.dims()?;
    let mpad = d.out_per_group.div_ceil(WEIGHT_NR_MAX) * WEIGHT_NR_MAX;
    let bufs = add(mul(mpad, d.col_rows)?, mul(WEIGHT_NR_MAX, d.col_cols)?)?;
    if unpadded(p) {
        return Ok(bufs);
    }
    let (ph, pw) = padded_dims(p)?;
    add(bufs, mul(d.in_per_group, mul(ph, pw)?)?)
}

/// The weight gradient by the implicit GEMM: `dW_g^T [K x channels] = sum over the batch
/// of col_g [K x pixels] * dY_g^T [pixels x channels]`. A register tile holds `MR` taps by
/// `NV * 8` output channels; per output pixel it broadcasts each tap's input value from the
/// image in place and loads that pixel's output gradients (transposed per image, one
/// block of channels at a time). Arguments checked by the caller; `scratch` holds
/// [`backward_weight_scratch_len`] floats.
pub(crate) fn backward_weight(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (ph, pw) = padded_dims(p)?;
    let a = Args {
        p,
        d,
        input,
        weight: grad_output,
        bias: None,
        lo: 0.0,
        hi: 0.0,
        ph,
        pw,
    };
    let a = &a;
    arch::dispatch!(weight_on(a: &Args<'_>, grad_weight: &mut [f32], scratch: &mut [f32]));
    Ok(())
}

/// The output pixels' geometry in the (padded) input: `out_h` rows of `out_w` pixels,
/// `row` and `col` apart.
#[derive(Clone, Copy)]
struct Pixels {
    out_h: usize,
    out_w: usize,
    row: usize,
    col: usize,
}

/// [`backward_weight`] for one variant (`a.weight` is the output gradient).
#[inline(always)]
fn weight_run<V: ImplicitKernel, const MR: usize, const NV: usize>(
    a: &Args<'_>,
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) {
    let (p, d, grad_output) = (a.p, a.d, a.weight);
    let nr = NV * LANES;
    let (m, n, k) = (d.out_per_group, d.col_cols, d.col_rows);
    let mpad = m.div_ceil(nr) * nr;
    let (ph, pw) = (a.ph, a.pw);
    let padded = !unpadded(p);
    let (gwt, rest) = scratch.split_at_mut(k * mpad);
    let (dyt, pad_buf) = rest.split_at_mut(n * WEIGHT_NR_MAX);
    let src_len = d.in_per_group * ph * pw;
    let pad_buf = &mut pad_buf[..if padded { src_len } else { 0 }];
    pad_buf.fill(0.0);
    if n == 0 || k == 0 || m == 0 {
        grad_weight.fill(0.0);
        return;
    }
    let pix = Pixels {
        out_h: d.out_h,
        out_w: d.out_w,
        row: p.stride_h * pw,
        col: p.stride_w,
    };
    // each tap's offset from a pixel's tap (0, 0), tap t = (c_in, kh, kw)
    let taps_n = p.kernel_h * p.kernel_w;
    let tap_off = |t: usize| {
        let (ci, tt) = (t / taps_n, t % taps_n);
        ci * ph * pw + (tt / p.kernel_w) * p.dilation_h * pw + (tt % p.kernel_w) * p.dilation_w
    };
    // every tap of every output pixel lies inside the (padded) image: the last tap of the
    // last pixel is the largest offset any tile reads
    let last = tap_off(k - 1) + (pix.out_h - 1) * pix.row + (pix.out_w - 1) * pix.col;
    assert!(last < src_len, "implicit GEMM: a tap outside the image");
    let hw = p.in_h * p.in_w;
    for g in 0..p.groups {
        gwt.fill(0.0);
        for img in 0..p.batch {
            let x_g =
                &a.input[img * d.image_len + g * d.in_per_group * hw..][..d.in_per_group * hw];
            let src: &[f32] = if padded {
                copy_padded(p, x_g, pw, pad_buf);
                pad_buf
            } else {
                x_g
            };
            let gy = &grad_output[img * d.out_image_len + g * m * n..][..m * n];
            for (b, gb) in gwt.chunks_exact_mut(k * nr).enumerate() {
                // the block's dY^T: n rows of nr (missing channels 0)
                let chans = (m - b * nr).min(nr);
                // (8 x 8 transposes: the scalar loop compiled to slow gathers on AVX-512)
                let yb = &mut dyt[..n * nr];
                let mut j = 0;
                while j < n {
                    let nj = (n - j).min(LANES);
                    for c0 in (0..nr).step_by(LANES) {
                        let mut rows = [V::splat(0.0); LANES];
                        for (i, x) in rows.iter_mut().enumerate() {
                            if c0 + i < chans {
                                *x = V::load(&gy[(b * nr + c0 + i) * n + j..][..nj]);
                            }
                        }
                        for (i, &t) in V::transpose8(rows).iter().enumerate().take(nj) {
                            t.store(&mut yb[(j + i) * nr + c0..][..LANES]);
                        }
                    }
                    j += LANES;
                }
                let yb = &*yb;
                let mut t0 = 0;
                while t0 < k {
                    let rows = (k - t0).min(MR);
                    // (missing taps repeat the last real one: in range, never stored)
                    let toff: [usize; MR] = build(0, |r| tap_off(t0 + r.min(rows - 1)));
                    let tile = &mut gb[t0 * nr..][..rows * nr];
                    let mut acc = [[V::splat(0.0); NV]; MR];
                    for (ar, row) in acc.iter_mut().zip(tile.chunks_exact(nr)) {
                        for (v, x) in ar.iter_mut().enumerate() {
                            *x = V::load(&row[v * LANES..]);
                        }
                    }
                    // SAFETY: every tap offset plus pixel offset is at most `last` <
                    // src.len() (checked above); yb holds nr floats per pixel.
                    unsafe {
                        weight_tile::<V, MR, NV>(src.as_ptr(), &toff, yb.as_ptr(), pix, &mut acc)
                    };
                    for (ar, row) in acc.iter().zip(tile.chunks_exact_mut(nr)) {
                        for (v, x) in ar.iter().enumerate() {
                            x.store(&mut row[v * LANES..]);
                        }
                    }
                    t0 += MR;
                }
            }
        }
        // dW_g = (dW_g^T)^T
        let gw = &mut grad_weight[g * m * k..][..m * k];
        for (co, row) in gw.chunks_exact_mut(k).enumerate() {
            let (b, c) = (co / nr, co % nr);
            for (t, x) in row.iter_mut().enumerate() {
                *x = gwt[b * k * nr + t * nr + c];
            }
        }
    }
}

/// Adds to `acc` one `MR x (NV * 8)` tile of the weight gradient over one image: tap `r`
/// of pixel `(oh, ow)` is read at `src + toff[r] + oh * row + ow * col`, that pixel's
/// output gradients for the block's channels are the `NV * 8` floats at
/// `dyt + (oh * out_w + ow) * NV * 8`.
///
/// # Safety
/// Every such tap must be readable, and `dyt` must hold `NV * 8` floats per pixel.
#[inline(always)]
unsafe fn weight_tile<V: Vf32, const MR: usize, const NV: usize>(
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

/// The x86 variants: AVX2 + FMA on the GEMM's 6 x 16 tile; AVX-512 on 8 x 32 (zmm) for the
/// forward pass, with its own tap loop, and 6 x 16 for the weight gradient.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps};

    use super::{ImplicitKernel, taps_tile};
    use crate::arch::Tile;
    use crate::arch::x86::{Avx2, Avx512, halves};
    use crate::simd::LANES;

    impl ImplicitKernel for Avx2 {
        type Forward = Tile<6, 2>;
        type Weight = Tile<6, 2>;
    }

    impl ImplicitKernel for Avx512 {
        type Forward = Tile<8, 4>;
        type Weight = Tile<6, 2>;
        #[inline(always)]
        unsafe fn taps<const MR: usize, const NV: usize>(
            ptrs: &[*const f32; MR],
            w: *const f32,
            offs: &[u32],
        ) -> [[Self; NV]; MR] {
            if NV.is_multiple_of(2) && NV >= 4 {
                // SAFETY: this lane type is only used in code compiled for, and run on,
                // AVX-512 F; the caller's contract is the tile's.
                unsafe { zmm_taps::<MR, NV>(ptrs, w, offs) }
            } else {
                // SAFETY: the caller's contract is the tile's.
                unsafe { taps_tile::<Self, MR, NV>(ptrs, w, offs) }
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
