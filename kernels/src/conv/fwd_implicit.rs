//! Forward pass by implicit GEMM: the convolution as `Y^T [pixels x channels] = col^T
//! [pixels x K] * W^T [K x channels]` without building im2col's matrix. A register tile
//! holds `MR` output pixels by `NV * 8` output channels (the tile of the variant's
//! [`ImplicitKernel`]); each tap `(c_in, kh, kw)` broadcasts one input value per pixel
//! straight from the image and loads one row of the transposed, packed weights. The only
//! packing is of the weights (`K x 16` per block of output channels, once per call) and,
//! for a padded convolution, a zero-bordered copy of one image's channels of the group at
//! a time, so the taps never need a bounds check. The tile is stored transposed.
//!
//! It wins where im2col would write far more than the GEMM computes on it: few output
//! channels (LeNet's second layer: K = 150, 16 channels), and any plane that fills its
//! tiles well (`plan::implicit_pays`, a cost model). A tile runs one loop over a table of its K
//! block's tap offsets: the nested loops over channels, rows and columns measured 9-10%
//! slower (ResNet's 128-channel 28 x 28: 25.0 -> 22.6 ms for 8 images, min of 15).

use super::im2col::unpadded;
use super::implicit::{Args, ImplicitKernel, KB, Taps, copy_padded, padded_dims, step, takes_alt};
use crate::arch;
use crate::arch::Tile;
use crate::error::KernelError;
use crate::gemm::kernel::GemmTile;
use crate::params::{Activation, Conv2dDims, Conv2dParams, add, mul};
use crate::simd::LANES;
use crate::vector::{Vf32, build};

/// Output channels per weight block in the forward pass's scratch layout (the widest
/// tile of any variant; layers of at most 16 channels take a 16-wide tile, see [`run`]).
const NR_MAX: usize = 32;

/// Output channels rounded up to whole weight blocks of the forward pass's widest tile.
const fn padded_out(m: usize) -> usize {
    if m <= 16 {
        16
    } else {
        m.div_ceil(NR_MAX) * NR_MAX
    }
}

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
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
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
    // (local copies: the kernel reads them in its inner loops, and a copy on this stack
    // is one the compiler knows no store to `output` changes; through the caller's
    // references it reloaded them: 5% more instructions in the portable variant)
    let (p, d) = (&{ *p }, &{ *d });
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

/// An implicit-GEMM tile shape back into const generics, for the forward pass.
pub(super) trait ForwardTile {
    /// [`run`] on the tile.
    fn forward<V: ImplicitKernel>(a: &Args<'_>, output: &mut [f32], scratch: &mut [f32]);
}

impl<const MR: usize, const NV: usize> ForwardTile for Tile<MR, NV> {
    #[inline(always)]
    fn forward<V: ImplicitKernel>(a: &Args<'_>, output: &mut [f32], scratch: &mut [f32]) {
        run_tile::<V, MR, NV>(a, output, scratch);
    }
}

/// The forward pass on the variant's tile or, for 16 output channels per group or fewer,
/// its 16-wide one (AVX-512's 8 x 32 on LeNet's 16-channel layer: 0.585 ms against 0.346
/// for 6 x 16, its upper half computing zeros).
#[inline(always)]
pub(super) fn forward_on<
    V: ImplicitKernel<
            Forward: ForwardTile + GemmTile,
            ForwardNarrow: ForwardTile + GemmTile,
            ForwardAlt: ForwardTile + GemmTile,
            ForwardNarrowAlt: ForwardTile + GemmTile,
        >,
>(
    a: &Args<'_>,
    output: &mut [f32],
    scratch: &mut [f32],
) {
    let px = a.d.col_cols;
    if a.d.out_per_group <= 16 {
        if takes_alt(V::ForwardNarrow::MR, V::ForwardNarrowAlt::MR, px) {
            <V::ForwardNarrowAlt as ForwardTile>::forward::<V>(a, output, scratch);
        } else {
            <V::ForwardNarrow as ForwardTile>::forward::<V>(a, output, scratch);
        }
    } else if takes_alt(V::Forward::MR, V::ForwardAlt::MR, px) {
        <V::ForwardAlt as ForwardTile>::forward::<V>(a, output, scratch);
    } else {
        <V::Forward as ForwardTile>::forward::<V>(a, output, scratch);
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
                copy_padded::<V>(p, x_g, pw, pad_buf);
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
