//! Direct convolution, vectorised along the output row. A register tile holds `PV * 8`
//! consecutive output pixels of up to `CB = 6` output channels (12 accumulators, which
//! covers the 4-cycle FMA latency on two ports); each `(c_in, kh, kw)` step loads `PV`
//! input vectors (contiguous for stride 1 inside the image, gathered at the edges and for
//! larger strides), broadcasts `CB` weights and does `CB * PV` FMAs. No scratch, so it is
//! the algorithm for microcontrollers, and it wins where a group has too few output
//! channels to fill a GEMM tile (LeNet's first layer, depthwise convolutions).
//!
//! One generic source, compiled for each variant (see `crate::arch`).

use super::Ctx;
use crate::arch::dispatch;
use crate::simd::LANES;
use crate::vector::{Vf32, build};

/// Output channels per register tile: 6 where `wide` has vector registers (12 vector
/// accumulators), 1 where it falls back to scalar lanes (a Cortex-M4: the tile's 16 scalar
/// accumulators already fill the FPU's 32 registers, and one instance of the tile code
/// instead of six keeps the firmware small).
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "wasm32",
    target_feature = "neon"
))]
const CB: usize = 6;
/// Output channels per register tile (see above).
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "wasm32",
    target_feature = "neon"
)))]
const CB: usize = 1;
/// Pixel vectors per register tile.
const PV: usize = 2;
/// Floats in the stack segment that edge tiles read from (1 KiB).
const SEG: usize = 256;

/// Whether the vector kernel has vector registers to run on (else the scalar one runs,
/// see [`conv2d_direct_scalar`]).
pub(super) const HAS_VECTORS: bool = CB > 1;

/// The vector kernel; arguments validated by the caller.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn forward(
    ctx: &Ctx<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let ctx = &Ctx {
        p: &{ *ctx.p },
        d: &{ *ctx.d },
        ..*ctx
    };
    dispatch!(direct(
        ctx: &Ctx<'_>,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
    ));
}

#[inline(always)]
fn direct<V: Vf32>(
    ctx: &Ctx<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let (p, d) = (ctx.p, ctx.d);
    let m = d.out_per_group;
    let k = d.col_rows;
    let group_in = d.in_per_group * p.in_h * p.in_w;
    for (img, out_img) in input
        .chunks_exact(d.image_len)
        .zip(output.chunks_exact_mut(d.out_image_len))
    {
        for g in 0..p.groups {
            let x = &img[g * group_in..][..group_in];
            let mut co = g * m;
            let end = co + m;
            while co < end {
                let cb = (end - co).min(CB);
                let w = &weight[co * k..][..cb * k];
                let b = bias.map(|b| &b[co..co + cb]);
                let out = &mut out_img[co * d.col_cols..][..cb * d.col_cols];
                match cb {
                    _ if CB == 1 => block::<V, 1>(ctx, x, w, b, out),
                    6 => block::<V, 6>(ctx, x, w, b, out),
                    5 => block::<V, 5>(ctx, x, w, b, out),
                    4 => block::<V, 4>(ctx, x, w, b, out),
                    3 => block::<V, 3>(ctx, x, w, b, out),
                    2 => block::<V, 2>(ctx, x, w, b, out),
                    _ => block::<V, 1>(ctx, x, w, b, out),
                }
                co += cb;
            }
        }
    }
}

/// All output rows of `N` output channels of one group of one image.
/// `x`: the group's input channels; `w`: `N` filters; `out`: `N` output planes.
#[inline(always)]
fn block<V: Vf32, const N: usize>(
    ctx: &Ctx<'_>,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let (p, d) = (ctx.p, ctx.d);
    let k = d.col_rows;
    let (h, wd) = (p.in_h, p.in_w);
    let plane = d.col_cols;
    let tile = PV * LANES;
    // Padding is an explicit 0.0 that multiplies its weight: padded rows may be skipped
    // only when that product is 0, i.e. when every weight of the block is finite.
    let skip_pad_rows = w.iter().all(|v| v.is_finite());
    let mut init = [V::splat(0.0); N];
    if let Some(b) = bias {
        for (i, v) in init.iter_mut().enumerate() {
            *v = V::splat(b[i]);
        }
    }
    let (lo, hi) = (V::splat(ctx.lo), V::splat(ctx.hi));
    let span_w = (p.kernel_w - 1) * p.dilation_w;
    // Stack segment for edge tiles: a full tile reads `(tile - 1) * stride + span + 1`
    // positions of the padded row. Larger reaches fall back to per-lane gathers.
    let mut seg = [0.0_f32; SEG];
    let seg_len = (tile - 1)
        .saturating_mul(p.stride_w)
        .saturating_add(span_w)
        .saturating_add(1);
    for oh in 0..d.out_h {
        let mut ow0 = 0;
        while ow0 < d.out_w {
            let width = (d.out_w - ow0).min(tile);
            let first = ow0 * p.stride_w;
            // every tap of a full tile inside the row (computed only for full tiles, whose
            // last tap lies inside the padded row, so nothing overflows)
            let interior = width == tile
                && first >= p.pad_left
                && (ow0 + tile - 1) * p.stride_w + span_w < p.pad_left + wd;
            // a partial last tile (stride 1) whose real pixels' taps all lie inside the
            // row: its other lanes may read on into the next row (never stored), so it
            // loads straight from the plane where that stays inside it
            let overhang = !interior
                && width < tile
                && p.stride_w == 1
                && first >= p.pad_left
                && ow0 + width - 1 + span_w < p.pad_left + wd;
            // the input columns the segment of this tile covers: [seg_lo, seg_hi)
            let (seg_lo, seg_hi) = if !interior && seg_len <= SEG {
                let lo = p.pad_left.saturating_sub(first).min(seg_len);
                let hi = (p.pad_left + wd).saturating_sub(first).clamp(lo, seg_len);
                seg[..seg_len].fill(0.0);
                (lo, hi)
            } else {
                (0, 0)
            };
            let mut acc = [[V::splat(0.0); PV]; N];
            for (a, i) in acc.iter_mut().zip(init) {
                *a = [i; PV];
            }
            for ci in 0..d.in_per_group {
                let xp = &x[ci * h * wd..][..h * wd];
                for kh in 0..p.kernel_h {
                    let ihp = oh * p.stride_h + kh * p.dilation_h;
                    let pad_row = ihp < p.pad_top || ihp >= p.pad_top + h;
                    if pad_row && skip_pad_rows {
                        continue;
                    }
                    let row = if pad_row {
                        &[][..]
                    } else {
                        &xp[(ihp - p.pad_top) * wd..][..wd]
                    };
                    // (overhang: the tile's reach from this row stays inside the plane)
                    let from_plane = !pad_row
                        && overhang
                        && (ihp - p.pad_top) * wd + first - p.pad_left + tile + span_w <= xp.len();
                    let wbase = (ci * p.kernel_h + kh) * p.kernel_w;
                    // Edge tiles: copy the part of the row the tile reads into a zero-padded
                    // stack segment once per row, so each kw below is a plain load.
                    let use_seg = !pad_row && !interior && !from_plane && seg_len <= SEG;
                    if use_seg && seg_hi > seg_lo {
                        // segment position j holds padded-row position first + j; the
                        // zeros around [seg_lo, seg_hi) were written once per tile (a
                        // tile wholly in the side padding copies nothing: its first
                        // column may lie past the row's end)
                        let n = seg_hi - seg_lo;
                        seg[seg_lo..seg_hi]
                            .copy_from_slice(&row[first + seg_lo - p.pad_left..][..n]);
                    }
                    // stride 1 from a contiguous source (the row, the plane or the segment):
                    // the source is sliced once and each kw is two plain loads
                    let contiguous: Option<&[f32]> = if pad_row || p.stride_w != 1 {
                        None
                    } else if from_plane {
                        let s = (ihp - p.pad_top) * wd + first - p.pad_left;
                        Some(&xp[s..s + span_w + tile])
                    } else if use_seg {
                        Some(&seg[..span_w + tile])
                    } else if interior {
                        let s = first - p.pad_left;
                        Some(&row[s..s + span_w + tile])
                    } else {
                        None
                    };
                    if let Some(src) = contiguous {
                        // each output channel's weights of this (ci, kh) row, sliced once
                        let wrow: [&[f32]; N] =
                            build(&[][..], |c| &w[c * k + wbase..][..p.kernel_w]);
                        for kw in 0..p.kernel_w {
                            let off = kw * p.dilation_w;
                            let mut xv = [V::splat(0.0); PV];
                            for (v, xx) in xv.iter_mut().enumerate() {
                                // (a bounded slice: the load has no partial-vector path,
                                // whose memcpy call would spill the accumulators)
                                let o = off + v * LANES;
                                *xx = V::load(&src[o..o + LANES]);
                            }
                            for (accc, wr) in acc.iter_mut().zip(wrow.iter()) {
                                // SAFETY: kw < kernel_w == wr.len().
                                let wv = V::splat(unsafe { *wr.get_unchecked(kw) });
                                for (a, &xx) in accc.iter_mut().zip(xv.iter()) {
                                    *a = wv.mul_add(xx, *a);
                                }
                            }
                        }
                        continue;
                    }
                    for kw in 0..p.kernel_w {
                        let off = kw * p.dilation_w;
                        let mut xv = [V::splat(0.0); PV];
                        if pad_row {
                            // zeros
                        } else if from_plane {
                            let s = (ihp - p.pad_top) * wd + first + off - p.pad_left;
                            for (v, xx) in xv.iter_mut().enumerate() {
                                *xx = V::load(&xp[s + v * LANES..s + v * LANES + LANES]);
                            }
                        } else if (interior || use_seg) && p.stride_w == 1 {
                            let src = if use_seg {
                                &seg[off..off + tile]
                            } else {
                                let s = first + off - p.pad_left;
                                &row[s..s + tile]
                            };
                            for (v, xx) in xv.iter_mut().enumerate() {
                                *xx = V::load(&src[v * LANES..]);
                            }
                        } else if use_seg {
                            for (v, xx) in xv.iter_mut().enumerate() {
                                let mut a = [0.0; LANES];
                                for (l, val) in a.iter_mut().enumerate() {
                                    *val = seg[(v * LANES + l) * p.stride_w + off];
                                }
                                *xx = V::from_array(a);
                            }
                        } else if interior {
                            let s = first + off - p.pad_left;
                            for (v, xx) in xv.iter_mut().enumerate() {
                                let mut a = [0.0; LANES];
                                for (l, val) in a.iter_mut().enumerate() {
                                    *val = row[s + (v * LANES + l) * p.stride_w];
                                }
                                *xx = V::from_array(a);
                            }
                        } else {
                            for (v, xx) in xv.iter_mut().enumerate() {
                                let mut a = [0.0; LANES];
                                for (l, val) in a.iter_mut().enumerate() {
                                    let o = v * LANES + l;
                                    if o >= width {
                                        break;
                                    }
                                    let iwp = (ow0 + o) * p.stride_w + off;
                                    if iwp >= p.pad_left && iwp < p.pad_left + wd {
                                        *val = row[iwp - p.pad_left];
                                    }
                                }
                                *xx = V::from_array(a);
                            }
                        }
                        for (c, accc) in acc.iter_mut().enumerate() {
                            let wv = V::splat(w[c * k + wbase + kw]);
                            for (a, &xx) in accc.iter_mut().zip(xv.iter()) {
                                *a = wv.mul_add(xx, *a);
                            }
                        }
                    }
                }
            }
            for (c, accc) in acc.iter().enumerate() {
                let dst = &mut out[c * plane + oh * d.out_w + ow0..][..width];
                for (v, a) in accc.iter().enumerate() {
                    if v * LANES >= width {
                        break;
                    }
                    a.clamp(lo, hi).store(&mut dst[v * LANES..]);
                }
            }
            ow0 += tile;
        }
    }
}
