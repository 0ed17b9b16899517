//! Forward pass over flat planes (stride 1, undilated, fewer than 8 output channels per
//! group, depthwise layers): the input planes copied zero-padded, rows `r = padded
//! width` apart, and output pixel `(y, x)` computed at flat position `q = y * r + x` as
//! the sum over input channels and taps `(a, b)` of `W[o, c, a, b] * Xp[c][q + a * r + b]`:
//! one constant offset per tap (the columns `x >= out_w` are computed and dropped). This
//! puts the pixels in the vector lanes, where the implicit GEMM puts the output channels:
//! for LeNet's first layer (6 outputs) the channel tile would be mostly empty. The
//! shared machinery (tiles, strips) is in `flat.rs`.

use super::depthwise;
use super::flat::{Corr, FlatKernel, MAX_PLANES, STRIP, all_strips, rows_from, rows_into};
use crate::arch::Tile;
use crate::arch::dispatch;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, add, mul};
use crate::vector::Vf32;

/// Whether [`forward`] handles `p`: stride 1, no dilation, not 1x1 without padding, 4 to
/// 7 output channels per group (more fill the implicit GEMM's channel lanes; with 2, 8
/// input channels 7x7, it measured 1.6x slower than the direct kernel) or a depthwise
/// layer (one channel in and out per group: 2-3x the row-by-row depthwise kernel), padded
/// rows no wider than twice the input row, and the group's padded input planes within
/// [`MAX_PLANES`].
pub(super) fn forward_applies(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    super::unit_stride_not_pointwise(p)
        && ((4..8).contains(&d.out_per_group) || depthwise::applies(p, d))
        && d.padded_w <= 2 * p.in_w
        && FwdGeometry::new(p, d)
            .is_ok_and(|g| g.plane.saturating_mul(d.in_per_group) <= MAX_PLANES)
}

/// The forward pass's flat layout of one group.
#[derive(Clone, Copy)]
pub(crate) struct FwdGeometry {
    /// Positions computed per output plane: `out_h * r` rounded up to whole strips.
    q: usize,
    /// Floats per padded input plane: `padded_h * r`, plus what the last strip's last tap
    /// reads past it (`q - out_h * r + kw - 1 < STRIP + kw`).
    plane: usize,
}

impl FwdGeometry {
    fn new(p: &Conv2dParams, d: &Conv2dDims) -> Result<Self, KernelError> {
        let q = mul(d.out_h, d.padded_w)?.div_ceil(STRIP) * STRIP;
        let plane = add(mul(d.padded_h, d.padded_w)?, p.kernel_w + STRIP)?;
        Ok(Self { q, plane })
    }
}

/// Scratch elements [`forward`] needs: one group's padded input planes and its computed
/// output planes.
pub(super) fn forward_scratch_len(p: &Conv2dParams, d: &Conv2dDims) -> Result<usize, KernelError> {
    let g = FwdGeometry::new(p, d)?;
    add(mul(d.in_per_group, g.plane)?, mul(d.out_per_group, g.q)?)
}

/// The forward pass `output = clamp(conv(input, weight) + bias, lo, hi)` (overwritten);
/// arguments validated by the caller, [`forward_applies`] holds and `scratch` holds
/// [`forward_scratch_len`] floats.
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
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let (p, d) = (&{ *p }, &{ *d });
    let geo = &FwdGeometry::new(p, d)?;
    let clamp = &(lo, hi);
    dispatch!(fwd_on(
        p: &Conv2dParams,
        d: &Conv2dDims,
        geo: &FwdGeometry,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        clamp: &(f32, f32),
        output: &mut [f32],
        scratch: &mut [f32],
    ));
    Ok(())
}

/// A flat-plane tile shape back into const generics, for the forward pass.
#[allow(clippy::too_many_arguments)]
pub(super) trait ForwardTile {
    /// [`fwd_run`] on the tile.
    fn forward<V: Vf32>(
        p: &Conv2dParams,
        d: &Conv2dDims,
        geo: &FwdGeometry,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        clamp: &(f32, f32),
        output: &mut [f32],
        scratch: &mut [f32],
    );
}

#[allow(clippy::too_many_arguments)]
impl<const CB: usize, const NV: usize> ForwardTile for Tile<CB, NV> {
    #[inline(always)]
    fn forward<V: Vf32>(
        p: &Conv2dParams,
        d: &Conv2dDims,
        geo: &FwdGeometry,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        clamp: &(f32, f32),
        output: &mut [f32],
        scratch: &mut [f32],
    ) {
        fwd_run::<V, CB, NV>(p, d, geo, input, weight, bias, clamp, output, scratch);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fwd_on<V: FlatKernel<Tile: ForwardTile>>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    geo: &FwdGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    clamp: &(f32, f32),
    output: &mut [f32],
    scratch: &mut [f32],
) {
    <V::Tile as ForwardTile>::forward::<V>(p, d, geo, input, weight, bias, clamp, output, scratch);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn fwd_run<V: Vf32, const CB: usize, const NV: usize>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    geo: &FwdGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    clamp: &(f32, f32),
    output: &mut [f32],
    scratch: &mut [f32],
) {
    let (m, c_in) = (d.out_per_group, d.in_per_group);
    let r = d.padded_w;
    let (x_buf, y_buf) = scratch.split_at_mut(c_in * geo.plane);
    let y_buf = &mut y_buf[..m * geo.q];
    // the padding and the tails are never written after this
    x_buf.fill(0.0);
    let (out_plane, in_plane) = (d.out_h * d.out_w, p.in_h * p.in_w);
    let taps = p.kernel_h * p.kernel_w;
    for (x, y) in input
        .chunks_exact(d.image_len)
        .zip(output.chunks_exact_mut(d.out_image_len))
    {
        for g in 0..p.groups {
            for (c, plane) in x_buf.chunks_exact_mut(geo.plane).enumerate() {
                let src = &x[(g * c_in + c) * in_plane..][..in_plane];
                rows_into(src, p.in_w, plane, p.pad_top * r + p.pad_left, r);
            }
            let corr = Corr {
                kh: p.kernel_h,
                kw: p.kernel_w,
                r,
                q: geo.q,
                start: 0,
                plane: geo.plane,
                w: &weight[g * m * c_in * taps..][..m * c_in * taps],
                w_dst: c_in * taps,
                w_src: taps,
                lo: clamp.0,
                hi: clamp.1,
                data: None,
            };
            let bias_g = bias.map(|b| &b[g * m..][..m]);
            all_strips::<V, CB, NV, false>(&corr, m, bias_g, x_buf, y_buf);
            for (o, src) in y_buf.chunks_exact(geo.q).enumerate() {
                let dst = &mut y[(g * m + o) * out_plane..][..out_plane];
                rows_from(src, r, dst, d.out_w);
            }
        }
    }
}
