//! Weight gradient by implicit GEMM: `dW_g^T [K x channels] = sum over the batch of
//! col_g [K x pixels] * dY_g^T [pixels x channels]`. A register tile holds `MR` taps by
//! `NV * 8` output channels; per output pixel it broadcasts each tap's input value from the
//! image in place and loads that pixel's output gradients (transposed per image, one block
//! of channels at a time).

use super::im2col::unpadded;
use super::implicit::{Args, ImplicitKernel, Pixels, copy_padded, padded_dims};
use crate::arch;
use crate::arch::Tile;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, add, mul};
use crate::simd::LANES;
use crate::vector::build;

/// The weight gradient's tile is at most 32 channels wide in every variant (two zmm
/// vectors with AVX-512).
const WEIGHT_NR_MAX: usize = 32;

/// An implicit-GEMM tile shape back into const generics, for the weight gradient.
pub(super) trait WeightTile {
    /// [`weight_run`] on the tile.
    fn weight<V: ImplicitKernel>(a: &Args<'_>, grad_weight: &mut [f32], scratch: &mut [f32]);
}

impl<const MR: usize, const NV: usize> WeightTile for Tile<MR, NV> {
    #[inline(always)]
    fn weight<V: ImplicitKernel>(a: &Args<'_>, grad_weight: &mut [f32], scratch: &mut [f32]) {
        weight_run::<V, MR, NV>(a, grad_weight, scratch);
    }
}

#[inline(always)]
pub(super) fn weight_on<V: ImplicitKernel<Weight: WeightTile, WeightNarrow: WeightTile>>(
    a: &Args<'_>,
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) {
    if a.d.out_per_group <= 16 {
        <V::WeightNarrow as WeightTile>::weight::<V>(a, grad_weight, scratch);
    } else {
        <V::Weight as WeightTile>::weight::<V>(a, grad_weight, scratch);
    }
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
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(crate) fn backward_weight(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let (p, d) = (&{ *p }, &{ *d });
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

/// [`backward_weight`] for one variant (`a.weight` is the output gradient).
#[inline(always)]
pub(super) fn weight_run<V: ImplicitKernel, const MR: usize, const NV: usize>(
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
                copy_padded::<V>(p, x_g, pw, pad_buf);
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
                    // SAFETY: every tap offset plus pixel offset is at most `last` <
                    // src.len() (checked above); yb holds nr floats per pixel; the tile
                    // `rows <= MR` rows of nr floats.
                    unsafe {
                        V::weight_tile::<MR, NV>(tile, src.as_ptr(), &toff, yb.as_ptr(), pix)
                    };
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
