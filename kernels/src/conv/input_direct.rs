//! The input gradient of stride-1, undilated convolutions, computed directly over flat,
//! zero-bordered copies of the output-gradient planes, with no col2im scatter.
//!
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
//! measured 0.74-0.92 ms here against 1.42-2.25 ms.

use super::depthwise;
use crate::arch::dispatch;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, add, mul};
use crate::simd::LANES;
use crate::vector::Vf32;

/// Positions per strip (the x86 tile's `NV` vectors of 8). The scratch length rounds to
/// it for every variant.
const STRIP: usize = 4 * LANES;

/// Most floats of one group's flat gradient planes [`backward_input`] takes. Every strip
/// reads all of them; measured here, 4.5k (LeNet's conv2) and 11k (16 <- 32 channels,
/// 16x16, 3x3) ran 1.2-3.4x faster than `W^T * dY` + col2im, 115k (ResNet's 128-channel
/// 28x28) and 211k (VGG's 64-channel 56x56) 1.3-1.7x slower.
const MAX_PLANES: usize = 16 * 1024;

/// Whether [`backward_input`] handles `p`: stride 1, no dilation, not 1x1 without
/// padding (a plain GEMM), not depthwise, at least 16 output pixels per plane, a flat
/// row no wider than twice the input row (large one-sided padding would make most of the
/// work zeros), and the group's gradient planes within [`MAX_PLANES`].
pub(super) fn applies(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    p.stride_h == 1
        && p.stride_w == 1
        && p.dilation_h == 1
        && p.dilation_w == 1
        && !super::is_pointwise(p)
        && !depthwise::applies(p, d)
        && d.col_cols >= 16
        && Geometry::row(p, d) <= 2 * p.in_w
        && Geometry::new(p, d).is_ok_and(|g| g.plane.saturating_mul(d.out_per_group) <= MAX_PLANES)
}

/// The flat layout of one group's planes.
#[derive(Clone, Copy)]
struct Geometry {
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
    // (2 channels x 4 vectors: 8 accumulators, 4 loads, 2 broadcasts; the portable
    // variant keeps one channel, as SSE2 holds an 8-lane vector in two of its 16 registers)
    dispatch!(run[2, 4][1, 4](
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
                for (oy, row) in src.chunks_exact(d.out_w).enumerate() {
                    let at = geo.pre + oy * geo.r;
                    let room = geo.plane.saturating_sub(at).min(d.out_w);
                    if room == 0 {
                        break;
                    }
                    plane[at..at + room].copy_from_slice(&row[..room]);
                }
            }
            let w_g = &weight[g * m * c_in * taps..][..m * c_in * taps];
            let mut c0 = 0;
            while c0 + CB <= c_in {
                strips::<V, CB, NV>(p, geo, w_g, c_in, c0, gy_buf, dx_buf);
                c0 += CB;
            }
            while c0 < c_in {
                strips::<V, 1, NV>(p, geo, w_g, c_in, c0, gy_buf, dx_buf);
                c0 += 1;
            }
            for (c, src) in dx_buf.chunks_exact(geo.q).enumerate() {
                let dst = &mut gx[(g * c_in + c) * in_plane..][..in_plane];
                for (y, row) in dst.chunks_exact_mut(p.in_w).enumerate() {
                    row.copy_from_slice(&src[y * geo.r..][..p.in_w]);
                }
            }
        }
    }
}

/// Input channels `c0..c0 + CB` of one group over every strip of `NV * 8` positions.
#[inline(always)]
fn strips<V: Vf32, const CB: usize, const NV: usize>(
    p: &Conv2dParams,
    geo: &Geometry,
    w_g: &[f32],
    c_in: usize,
    c0: usize,
    gy_buf: &[f32],
    dx_buf: &mut [f32],
) {
    let (kh, kw) = (p.kernel_h, p.kernel_w);
    let taps = kh * kw;
    let width = NV * LANES;
    debug_assert_eq!(geo.q % width, 0, "strips tile the computed positions");
    let mut s = 0;
    while s < geo.q {
        let mut acc = [[V::splat(0.0); NV]; CB];
        // tap (a, b) reads `width` floats from `base - (a * r + b)`, which lies in
        // `pre - (a * r + b) >= 0` .. `pre + shift + q - width`, inside the plane
        let base = geo.pre + geo.shift + s;
        for (o, plane) in gy_buf.chunks_exact(geo.plane).enumerate() {
            let w_o = &w_g[(o * c_in + c0) * taps..][..CB * taps];
            let plane = &plane[..base + width];
            for a in 0..kh {
                // SAFETY: a < kh, so a * r <= (kh - 1) * r <= pre <= base.
                let row = unsafe { plane.as_ptr().add(base - a * geo.r) };
                let w_a = &w_o[a * kw..];
                for b in 0..kw {
                    // SAFETY: base - a * r - b >= pre - a * r - b >= (kw - 1) - b >= 0
                    // (pre = (kh - 1) * r + kw - 1 and a < kh), so `row - b` is at or
                    // after the plane's start, and the `width` floats from it end at or
                    // before `base + width`, the length of `plane`.
                    let src = unsafe { row.sub(b) };
                    let x: [V; NV] = core::array::from_fn(|v| {
                        // SAFETY: v * 8 + 8 <= width (see above).
                        unsafe { V::load_ptr(src.add(v * LANES)) }
                    });
                    for (c, accs) in acc.iter_mut().enumerate() {
                        // SAFETY: c * taps + a * kw + b < CB * taps, the length of `w_o`,
                        // and w_a starts at a * kw within it.
                        let wv = V::splat(unsafe { *w_a.as_ptr().add(c * taps + b) });
                        for (y, &xv) in accs.iter_mut().zip(x.iter()) {
                            *y = wv.mul_add(xv, *y);
                        }
                    }
                }
            }
        }
        for (c, row) in acc.iter().enumerate() {
            let dst = &mut dx_buf[(c0 + c) * geo.q + s..][..width];
            for (v, y) in row.iter().enumerate() {
                y.store(&mut dst[v * LANES..(v + 1) * LANES]);
            }
        }
        s += width;
    }
}
