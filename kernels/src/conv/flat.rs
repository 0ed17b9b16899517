//! Stride-1, undilated convolutions over flat planes: the forward pass for few output
//! channels, and the input gradient, computed directly over flat, zero-bordered copies of
//! the output-gradient planes with no col2im scatter.
//!
//! Forward: the input planes are copied zero-padded, rows `r = padded width` apart, and
//! output pixel `(y, x)` is computed at flat position `q = y * r + x` as the sum over
//! input channels and taps `(a, b)` of `W[o, c, a, b] * Xp[c][q + a * r + b]`: again one
//! constant offset per tap (the columns `x >= out_w` are computed and dropped). This puts
//! the pixels in the vector lanes, where the implicit GEMM puts the output channels: for
//! LeNet's first layer (6 outputs) the channel tile would be mostly empty.
//!
//! Input gradient:
//! `dX[c, y, x] = sum over (o, a, b) of W[o, c, a, b] * dY[o, y + pad_top - a,
//! x + pad_left - b]`, where `dY` is zero outside its plane. Each output-gradient plane is
//! copied into a flat buffer with rows `r` floats apart (`r >= out_w`; the columns past
//! `out_w` stay zero) and zero rows around it. Input pixel `(y, x)` is computed at flat
//! position `q = y * r + x`, and tap `(a, b)` reads the buffer at `q + shift - (a * r + b)`
//! for every `q`: one constant offset per tap, so a strip of consecutive positions is a
//! plain vector load, whatever row or column it crosses. `r` is chosen so that a column
//! outside the gradient plane (left of it or right of it) always lands on a zero column
//! (see [`Geometry::new`]). Positions `x >= in_w` of each row, and the strip's rounding,
//! are computed and dropped.
//!
//! The register tile is `CB` input channels by `NV` vectors of consecutive positions:
//! per tap and output channel, `NV` loads and `CB` broadcasts feed `CB * NV` FMAs.
//! Against `W^T * dY` followed by col2im this does `in_h * r / (out_h * out_w)` times the
//! multiply-adds (the zero borders), but it reads the gradient from L1 and never writes or
//! scatters a column matrix: LeNet's conv2 (6 x 14 x 14 <- 16 x 10 x 10, 5x5, 64 images)
//! measured 0.93 ms here against 1.54-1.61 ms (`conv2d_backward_input`, alternating runs).
//! (With 8 or more images and 4 or more input channels, `lanes` now takes that layer:
//! 0.11 ms for 16 images where this kernel takes 0.17.)
//! A strip skips the tap rows that read only zero rows of the gradient planes
//! ([`Corr::tap_rows`]): for that layer 27 of its 7 strips x 5 tap rows remain, and 16
//! images took 0.171-0.179 ms against 0.211 without the skip.

use super::depthwise;
use crate::arch::Tile;
use crate::arch::dispatch;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, add, mul};
use crate::simd::{LANES, f32x8};
use crate::vector::{Vf32, build};

/// Positions per strip (the x86 tile's `NV` vectors of 8). The scratch length rounds to
/// it for every variant.
const STRIP: usize = 4 * LANES;

/// Most floats of one group's flat gradient planes [`backward_input`] takes. Every strip
/// reads all of them; measured here, 4.5k (LeNet's conv2) and 11k (16 <- 32 channels,
/// 16x16, 3x3) ran 1.2-3.4x faster than `W^T * dY` + col2im, 115k (ResNet's 128-channel
/// 28x28) and 211k (VGG's 64-channel 56x56) 1.3-1.7x slower.
const MAX_PLANES: usize = 16 * 1024;

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

/// The flat-plane kernels as a variant runs them, implemented by its lane type: the
/// tile, `Tile<CB, NV>`, `CB` channels by `NV` vectors of a strip (x86: 2 x 4, 8
/// accumulators, 4 loads, 2 broadcasts; portable: 1 x 4, as SSE2 holds an 8-lane vector
/// in two of its 16 registers).
pub(crate) trait FlatKernel: Vf32 {
    /// The tile of the forward pass and the input gradient.
    type Tile: FlatTile;
}

impl FlatKernel for f32x8 {
    type Tile = Tile<1, 4>;
}

#[cfg(target_arch = "x86_64")]
impl FlatKernel for crate::arch::x86::Avx2 {
    type Tile = Tile<2, 4>;
}

#[cfg(target_arch = "x86_64")]
impl FlatKernel for crate::arch::x86::Avx512 {
    type Tile = Tile<2, 4>;
}

/// A tile shape back into const generics, for the passes that run on it.
#[allow(clippy::too_many_arguments)]
pub(crate) trait FlatTile {
    /// The forward pass ([`fwd_run`]).
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
    /// The input gradient ([`run`]).
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

#[allow(clippy::too_many_arguments)]
impl<const CB: usize, const NV: usize> FlatTile for Tile<CB, NV> {
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

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fwd_on<V: FlatKernel>(
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
    V::Tile::forward::<V>(p, d, geo, input, weight, bias, clamp, output, scratch);
}

#[inline(always)]
fn input_on<V: FlatKernel>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    geo: &Geometry,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) {
    V::Tile::input::<V>(p, d, geo, weight, grad_output, grad_input, scratch);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fwd_run<V: Vf32, const CB: usize, const NV: usize>(
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
pub(super) fn backward_input(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
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
fn run<V: Vf32, const CB: usize, const NV: usize>(
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

/// Copies the `w`-float rows of `src` into `dst`, row `y` at `at + y * r`; rows that
/// would pass the end of `dst` are cut. (`memcpy` per row: moves inline by `copy_row`
/// measured slower here, 28-float rows of a depthwise layer.)
#[inline(always)]
pub(super) fn rows_into(src: &[f32], w: usize, dst: &mut [f32], at: usize, r: usize) {
    for (y, row) in src.chunks_exact(w).enumerate() {
        let start = at + y * r;
        let room = dst.len().saturating_sub(start).min(w);
        if room == 0 {
            break;
        }
        dst[start..start + room].copy_from_slice(&row[..room]);
    }
}

/// Fills the `w`-float rows of `dst` from `src`, row `y` from `y * r`.
#[inline(always)]
pub(super) fn rows_from(src: &[f32], r: usize, dst: &mut [f32], w: usize) {
    for (y, row) in dst.chunks_exact_mut(w).enumerate() {
        row.copy_from_slice(&src[y * r..][..w]);
    }
}

/// One flat correlation: every destination plane `d` (whole strips of positions `q`) is
/// `sum over source planes s and taps (a, b) of W[d, s, a, b] * src[s][at(q, a, b)]`,
/// plus a bias, clamped. Forward (`FLIP = false`): `at = start + q + a * r + b`. Input
/// gradient (`FLIP = true`, the kernel flipped): `at = start + q + (kh - 1) * r + kw - 1 -
/// (a * r + b)`. The source planes hold `plane` floats, every position read.
#[derive(Clone, Copy)]
struct Corr<'a> {
    kh: usize,
    kw: usize,
    r: usize,
    /// Positions per destination plane (whole strips).
    q: usize,
    start: usize,
    plane: usize,
    /// The group's weights, `w_dst` and `w_src` apart between destination and source
    /// channels (taps contiguous).
    w: &'a [f32],
    w_dst: usize,
    w_src: usize,
    lo: f32,
    hi: f32,
    /// Where the source planes' nonzero data can lie, `lo..hi` (plane offsets), when tap
    /// rows reading outside it may be skipped (see [`Corr::tap_rows`]).
    data: Option<(usize, usize)>,
}

impl Corr<'_> {
    /// Floats of a source plane one strip reads, from `start + q` on.
    const fn span(&self, width: usize) -> usize {
        (self.kh - 1) * self.r + self.kw - 1 + width
    }

    /// The tap rows `a` whose reads for the strip of `width` positions from `s` touch the
    /// source planes' data, `data.0..data.1`: the others read only zero borders and add
    /// nothing (input gradient only, `FLIP`: its weights are finite, `flat::finite`, so
    /// `w * 0` is 0; the forward pass keeps the explicit `w * 0` of the padding, which is
    /// NaN for an infinite weight, as in the reference). Tap row `a` reads
    /// `start + s + last - a * r - b + (0..width)` for `b < kw`, decreasing with `a`.
    fn tap_rows(&self, s: usize, width: usize) -> core::ops::Range<usize> {
        let Some((lo, hi)) = self.data else {
            return 0..self.kh;
        };
        let base = self.start + s + self.span(width) - width;
        // tap row a reads [base - a * r - (kw - 1), base - a * r + width)
        let reads = |a: usize| {
            let top = base - a * self.r;
            top + width > lo && top - (self.kw - 1) < hi
        };
        let first = (0..self.kh).find(|&a| reads(a)).unwrap_or(self.kh);
        let end = (first..self.kh).find(|&a| !reads(a)).unwrap_or(self.kh);
        first..end
    }
}

/// Every destination plane of `c` (`dsts` of them), `CB` at a time, the rest one by one.
#[inline(always)]
fn all_strips<V: Vf32, const CB: usize, const NV: usize, const FLIP: bool>(
    c: &Corr<'_>,
    dsts: usize,
    bias: Option<&[f32]>,
    src: &[f32],
    dst: &mut [f32],
) {
    let mut d0 = 0;
    while d0 + CB <= dsts {
        strips::<V, CB, NV, FLIP>(c, d0, bias, src, dst);
        d0 += CB;
    }
    while d0 < dsts {
        strips::<V, 1, NV, FLIP>(c, d0, bias, src, dst);
        d0 += 1;
    }
}

/// Destination planes `d0..d0 + CB` of `c` over every strip of `NV * 8` positions.
#[inline(always)]
fn strips<V: Vf32, const CB: usize, const NV: usize, const FLIP: bool>(
    c: &Corr<'_>,
    d0: usize,
    bias: Option<&[f32]>,
    src: &[f32],
    dst: &mut [f32],
) {
    let (kw, r) = (c.kw, c.r);
    let width = NV * LANES;
    let span = c.span(width);
    // the largest tap offset within a strip's window
    let last = span - width;
    debug_assert_eq!(c.q % width, 0, "strips tile the computed positions");
    let init: [V; CB] = build(V::splat(0.0), |j| V::splat(bias.map_or(0.0, |b| b[d0 + j])));
    let (lo, hi) = (V::splat(c.lo), V::splat(c.hi));
    let mut s = 0;
    while s < c.q {
        let mut acc: [[V; NV]; CB] = build([V::splat(0.0); NV], |j| [init[j]; NV]);
        let taps = c.tap_rows(s, width);
        for (sc, plane) in src.chunks_exact(c.plane).enumerate() {
            let w_s = &c.w[d0 * c.w_dst + sc * c.w_src..];
            // every tap of this strip reads within `window` (`span` floats)
            let window = &plane[c.start + s..][..span];
            for a in taps.clone() {
                for b in 0..kw {
                    let off = if FLIP { last - (a * r + b) } else { a * r + b };
                    // SAFETY: off <= last = span - width (a < kh, b < kw), so the
                    // `width` floats from `off` lie within `window`.
                    let at = unsafe { window.as_ptr().add(off) };
                    let x: [V; NV] = build(V::splat(0.0), |v| {
                        // SAFETY: v * 8 + 8 <= width (see above).
                        unsafe { V::load_ptr(at.add(v * LANES)) }
                    });
                    for (j, accs) in acc.iter_mut().enumerate() {
                        let wv = V::splat(w_s[j * c.w_dst + a * kw + b]);
                        for (y, &xv) in accs.iter_mut().zip(x.iter()) {
                            *y = wv.mul_add(xv, *y);
                        }
                    }
                }
            }
        }
        for (j, accs) in acc.iter().enumerate() {
            let out = &mut dst[(d0 + j) * c.q + s..][..width];
            for (v, y) in accs.iter().enumerate() {
                y.clamp(lo, hi).store(&mut out[v * LANES..(v + 1) * LANES]);
            }
        }
        s += width;
    }
}
