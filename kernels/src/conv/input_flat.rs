//! Input gradient over flat planes (stride 1, undilated), computed directly over flat,
//! zero-bordered copies of the output-gradient planes with no col2im scatter:
//! `dX[c, y, x] = sum over (o, a, b) of W[o, c, a, b] * dY[o, y + pad_top - a,
//! x + pad_left - b]`, where `dY` is zero outside its plane. Each output-gradient plane is
//! copied into a flat buffer with rows `r` floats apart (`r >= out_w`; the columns past
//! `out_w` stay zero) and zero rows around it. Input pixel `(y, x)` is computed at flat
//! position `q = y * r + x`, and tap `(a, b)` reads the buffer at `q + shift - (a * r + b)`
//! for every `q`: one constant offset per tap. `r` is chosen so that a column outside the
//! gradient plane always lands on a zero column (see [`Geometry::new`]).
//!
//! Against `W^T * dY` followed by col2im this does `in_h * r / (out_h * out_w)` times the
//! multiply-adds (the zero borders), but it reads the gradient from L1 and never writes or
//! scatters a column matrix: LeNet's conv2 (6 x 14 x 14 <- 16 x 10 x 10, 5x5, 64 images)
//! measured 0.93 ms against 1.54-1.61 ms for `W^T * dY` + col2im. (With 8 or more images
//! and 4 or more input channels, `input_lanes` takes that layer.) A strip skips the tap
//! rows that read only zero rows of the gradient planes (`flat::Corr::tap_rows`).

use super::flat::{Corr, FlatKernel, MAX_PLANES, STRIP, all_strips, rows_from, rows_into};
use crate::arch::Tile;
use crate::arch::dispatch;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, add, mul};
use crate::vector::Vf32;

/// A flat-plane tile shape back into const generics, for the input gradient.
pub(super) trait InputTile {
    /// [`run`] on the tile.
    fn input<V: Vf32>(
        p: &Conv2dParams,
        d: &Conv2dDims,
        geo: &Geometry,
        weight: &[f32],
        grad_output: &[f32],
        grad_input: &mut [f32],
        scratch: &mut [f32],
    );
}

impl<const CB: usize, const NV: usize> InputTile for Tile<CB, NV> {
    #[inline(always)]
    fn input<V: Vf32>(
        p: &Conv2dParams,
        d: &Conv2dDims,
        geo: &Geometry,
        weight: &[f32],
        grad_output: &[f32],
        grad_input: &mut [f32],
        scratch: &mut [f32],
    ) {
        run::<V, CB, NV>(p, d, geo, weight, grad_output, grad_input, scratch);
    }
}

#[inline(always)]
fn input_on<V: FlatKernel<Tile: InputTile>>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    geo: &Geometry,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) {
    <V::Tile as InputTile>::input::<V>(p, d, geo, weight, grad_output, grad_input, scratch);
}

/// Whether [`backward_input`] handles `p`: stride 1, no dilation, not 1x1 without
/// padding (a plain GEMM), at least 16 output pixels per plane, a flat
/// row no wider than twice the input row (large one-sided padding would make most of the
/// work zeros), and the group's gradient planes within [`MAX_PLANES`].
pub(super) fn applies(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    super::unit_stride_not_pointwise(p)
        && d.col_cols >= 16
        && Geometry::row(p, d) <= 2 * p.in_w
        && Geometry::new(p, d).is_ok_and(|g| g.plane.saturating_mul(d.out_per_group) <= MAX_PLANES)
}

/// The flat layout of one group's planes.
#[derive(Clone, Copy)]
pub(crate) struct Geometry {
    /// Distance between rows in the flat planes.
    r: usize,
    /// Zero floats before row 0 of each gradient plane: `(kh - 1) * r + (kw - 1)`.
    pre: usize,
    /// Offset of tap (0, 0) from an input position: `pad_top * r + pad_left`.
    shift: usize,
    /// Positions computed per input plane: `in_h * r` rounded up to whole strips.
    q: usize,
    /// Floats per gradient plane: every position a tap reads, `pre + q + shift`.
    plane: usize,
}

impl Geometry {
    /// The row distance: at least `out_w` (the data fits), at least `in_w + pad_right`
    /// (a column left of the plane, `x + pad_left - b < 0` with `b < kw`, lands on the
    /// previous row's zero columns, which start at `out_w = in_w + pad_left + pad_right -
    /// kw + 1`), and at least `in_w + pad_left` (a column right of it,
    /// `x + pad_left - b <= in_w - 1 + pad_left`, stays in its own row's zero columns).
    fn row(p: &Conv2dParams, d: &Conv2dDims) -> usize {
        (p.in_w + p.pad_left.max(p.pad_right)).max(d.out_w)
    }

    fn new(p: &Conv2dParams, d: &Conv2dDims) -> Result<Self, KernelError> {
        let r = Self::row(p, d);
        let pre = add(mul(p.kernel_h - 1, r)?, p.kernel_w - 1)?;
        let shift = add(mul(p.pad_top, r)?, p.pad_left)?;
        let q = mul(p.in_h, r)?.div_ceil(STRIP) * STRIP;
        let plane = add(add(pre, q)?, shift)?;
        Ok(Self {
            r,
            pre,
            shift,
            q,
            plane,
        })
    }
}

/// Whether `weight` holds no infinity or NaN. The input gradient multiplies the weights by
/// the zero borders of the gradient planes, terms the exact sum does not have: for a
/// finite weight they add 0, but an infinite or NaN one would make a NaN there, so such
/// weights go to `W^T * dY` + col2im instead. (The forward pass needs no such check: the
/// padding is an explicit 0 in every variant and in the reference, and the columns and
/// strip rounding it computes past the output are dropped.)
pub(super) fn finite(weight: &[f32]) -> bool {
    crate::simd::all_finite(weight)
}

/// Scratch elements [`backward_input`] needs: one group's gradient planes and its
/// computed input planes.
pub(super) fn scratch_len(p: &Conv2dParams, d: &Conv2dDims) -> Result<usize, KernelError> {
    let g = Geometry::new(p, d)?;
    add(mul(d.out_per_group, g.plane)?, mul(d.in_per_group, g.q)?)
}

/// The input gradient (overwritten); arguments validated by the caller, [`applies`] holds
/// and `scratch` holds [`scratch_len`] floats.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn backward_input(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let (p, d) = (&{ *p }, &{ *d });
    let geo = &Geometry::new(p, d)?;
    dispatch!(input_on(
        p: &Conv2dParams,
        d: &Conv2dDims,
        geo: &Geometry,
        weight: &[f32],
        grad_output: &[f32],
        grad_input: &mut [f32],
        scratch: &mut [f32],
    ));
    Ok(())
}

#[inline(always)]
pub(super) fn run<V: Vf32, const CB: usize, const NV: usize>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    geo: &Geometry,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) {
    let (m, c_in) = (d.out_per_group, d.in_per_group);
    let (gy_buf, dx_buf) = scratch.split_at_mut(m * geo.plane);
    let dx_buf = &mut dx_buf[..c_in * geo.q];
    // the zero rows and columns are never written after this
    gy_buf.fill(0.0);
    let (out_plane, in_plane) = (d.out_h * d.out_w, p.in_h * p.in_w);
    let taps = p.kernel_h * p.kernel_w;
    for (gy, gx) in grad_output
        .chunks_exact(d.out_image_len)
        .zip(grad_input.chunks_exact_mut(d.image_len))
    {
        for g in 0..p.groups {
            // this group's gradient planes, row by row (rows past the computed positions
            // are never read, and are cut)
            for (o, plane) in gy_buf.chunks_exact_mut(geo.plane).enumerate() {
                let src = &gy[(g * m + o) * out_plane..][..out_plane];
                rows_into(src, d.out_w, plane, geo.pre, geo.r);
            }
            // destination: the group's input channels; source: its output channels; tap
            // (a, b) of W[o, c] read at `pre + shift + q - (a * r + b)`
            let corr = Corr {
                kh: p.kernel_h,
                kw: p.kernel_w,
                r: geo.r,
                q: geo.q,
                start: geo.shift,
                plane: geo.plane,
                w: &weight[g * m * c_in * taps..][..m * c_in * taps],
                w_dst: taps,
                w_src: c_in * taps,
                lo: f32::NEG_INFINITY,
                hi: f32::INFINITY,
                data: Some((geo.pre, geo.pre + (d.out_h - 1) * geo.r + d.out_w)),
            };
            all_strips::<V, CB, NV, true>(&corr, c_in, None, gy_buf, dx_buf);
            for (c, src) in dx_buf.chunks_exact(geo.q).enumerate() {
                let dst = &mut gx[(g * c_in + c) * in_plane..][..in_plane];
                rows_from(src, geo.r, dst, p.in_w);
            }
        }
    }
}
