//! Depthwise convolution (one input and one output channel per group), forward and
//! backward, where GEMM would run with a single row per group. All three work a row at a
//! time through a zero-padded stack buffer, vectorised along the output row, and need no
//! scratch: `conv2d_direct`'s depthwise path, and the one for strided or dilated layers.
//! At stride 1 the calls that have scratch (`conv2d`, the backward passes) take the flat
//! kernels instead (`flat`, `weight_flat`: 2-3x faster on 256 channels of 28 x 28), except
//! for non-finite weights (input gradient) or inputs (weight gradient), whose products
//! with the flat planes' zero borders these kernels never form.
//!
//! One generic source, compiled for each variant (see `crate::arch`).

use super::direct::Ctx;
use crate::arch::dispatch;
use crate::params::{Conv2dDims, Conv2dParams};
use crate::simd::LANES;
use crate::vector::Vf32;

/// Floats in the stack row buffer (1 KiB).
pub(super) const SEG: usize = 256;
/// Most kernel taps the weight-gradient accumulators hold.
const MAX_TAPS: usize = 64;

/// Padded-row positions one output row reads, rounded up to whole vectors.
pub(super) fn row_len(p: &Conv2dParams, d: &Conv2dDims) -> usize {
    let tiles = d.out_w.div_ceil(LANES);
    (tiles * LANES - 1)
        .saturating_mul(p.stride_w)
        .saturating_add((p.kernel_w - 1).saturating_mul(p.dilation_w))
        .saturating_add(1)
}

/// `dst.copy_from_slice(src)` for rows of a few dozen floats: vector moves inline, where
/// `memcpy` would cost a library call per row.
#[inline(always)]
pub(super) fn copy_row<V: Vf32>(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let full = n / LANES * LANES;
    let mut i = 0;
    while i < full {
        V::load(&src[i..i + LANES]).store(&mut dst[i..i + LANES]);
        i += LANES;
    }
    // (a loop, not copy_from_slice: the tail is under 8 floats and a memcpy call costs
    // more than it moves)
    #[allow(clippy::manual_memcpy)]
    for j in full..n {
        dst[j] = src[j];
    }
}

/// Whether padded row `ihp` lies in the zero padding above or below the image.
#[inline(always)]
fn is_pad_row(p: &Conv2dParams, ihp: usize) -> bool {
    ihp < p.pad_top || ihp >= p.pad_top + p.in_h
}

/// Fills `dst` (the in-image columns of a zero-padded row buffer) with padded row `ihp`
/// of the plane `x`: its input row, or zeros for a padding row.
#[inline(always)]
fn padded_row<V: Vf32>(p: &Conv2dParams, x: &[f32], ihp: usize, dst: &mut [f32]) {
    if is_pad_row(p, ihp) {
        dst.fill(0.0);
    } else {
        copy_row::<V>(dst, &x[(ihp - p.pad_top) * p.in_w..][..dst.len()]);
    }
}

/// Whether the depthwise kernels handle `p`.
pub(super) fn applies(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    d.in_per_group == 1
        && d.out_per_group == 1
        && row_len(p, d) <= SEG
        && p.kernel_h * p.kernel_w <= MAX_TAPS
}

/// Forward pass (see [`fwd`]); arguments validated by the caller, `output` overwritten.
pub(super) fn forward(
    ctx: &Ctx<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    // its own entry points, so that its loops get registers of their own
    dispatch!(fwd(
        ctx: &Ctx<'_>,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
    ));
}

/// Depthwise convolution (one input and one output channel per group): per output row,
/// each kernel row's input row is copied once into a zero-padded stack buffer, and the
/// output row, initialised to the bias, accumulates `kernel_w` FMAs per vector from it;
/// the clamp follows while the row is still in L1. The vectors of a row are independent
/// chains, which hides the FMA latency that one channel at a time would expose.
#[inline(always)]
fn fwd<V: Vf32>(
    ctx: &Ctx<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let (p, d) = (ctx.p, ctx.d);
    let (h, w) = (p.in_h, p.in_w);
    let (kh_n, kw_n) = (p.kernel_h, p.kernel_w);
    let row_len = row_len(p, d);
    let mut buf = [0.0_f32; SEG];
    // the output row, accumulated in whole vectors (row_len >= tiles * 8)
    let mut acc_row = [0.0_f32; SEG];
    let tiles = d.out_w.div_ceil(LANES);
    let (lo, hi) = (V::splat(ctx.lo), V::splat(ctx.hi));
    let planes = input
        .chunks_exact(h * w)
        .zip(output.chunks_exact_mut(d.col_cols));
    for (i, (x, y)) in planes.enumerate() {
        let c = i % p.out_channels;
        let wc = &weight[c * kh_n * kw_n..][..kh_n * kw_n];
        let b = V::splat(bias.map_or(0.0, |b| b[c]));
        let skip_pad_rows = wc.iter().all(|v| v.is_finite());
        // columns of the padded row that hold input: [pad_left, pad_left + w) clipped
        let lo_col = p.pad_left.min(row_len);
        let hi_col = (p.pad_left + w).clamp(lo_col, row_len);
        buf[..row_len].fill(0.0);
        for oh in 0..d.out_h {
            for t in 0..tiles {
                b.store(&mut acc_row[t * LANES..t * LANES + LANES]);
            }
            for kh in 0..kh_n {
                let ihp = oh * p.stride_h + kh * p.dilation_h;
                if skip_pad_rows && is_pad_row(p, ihp) {
                    continue;
                }
                padded_row::<V>(p, x, ihp, &mut buf[lo_col..hi_col]);
                let wr = &wc[kh * kw_n..][..kw_n];
                for t in 0..tiles {
                    let dst = &mut acc_row[t * LANES..t * LANES + LANES];
                    let mut acc = V::load(dst);
                    let base = t * LANES * p.stride_w;
                    for (kw, &wv) in wr.iter().enumerate() {
                        let at = base + kw * p.dilation_w;
                        let xv = if p.stride_w == 1 {
                            V::load(&buf[at..at + LANES])
                        } else {
                            let mut a = [0.0; LANES];
                            for (l, v) in a.iter_mut().enumerate() {
                                *v = buf[at + l * p.stride_w];
                            }
                            V::from_array(a)
                        };
                        acc = V::splat(wv).mul_add(xv, acc);
                    }
                    acc.store(dst);
                }
            }
            let yrow = &mut y[oh * d.out_w..][..d.out_w];
            let full = d.out_w / LANES;
            for t in 0..full {
                let v = V::load(&acc_row[t * LANES..t * LANES + LANES]).clamp(lo, hi);
                v.store(&mut yrow[t * LANES..t * LANES + LANES]);
            }
            if full < tiles {
                let v = V::load(&acc_row[full * LANES..full * LANES + LANES]).clamp(lo, hi);
                let a = v.to_array();
                for (j, o) in yrow[full * LANES..].iter_mut().enumerate() {
                    *o = a[j];
                }
            }
        }
    }
}

/// Input gradient: every output gradient, times each tap's weight, lands on the input
/// pixel the tap read (taps in the padding are dropped). Arguments validated by the
/// caller; `grad_input` is overwritten.
pub(super) fn backward_input(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    dispatch!(bwd_input(
        p: &Conv2dParams,
        d: &Conv2dDims,
        weight: &[f32],
        grad_output: &[f32],
        grad_input: &mut [f32],
    ));
}

#[inline(always)]
fn bwd_input<V: Vf32>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    // The gather form multiplies weights by the zeros around the output gradient: exact
    // only while every weight is finite (else 0 * inf would invent a NaN).
    if p.stride_h == 1
        && p.stride_w == 1
        && gather_fits(p, d)
        && weight.iter().all(|v| v.is_finite())
    {
        bwd_input_gather::<V>(p, d, weight, grad_output, grad_input);
    } else {
        bwd_input_scatter::<V>(p, d, weight, grad_output, grad_input);
    }
}

/// Stride 1: the input gradient is a correlation of the output gradient with the flipped
/// kernel, `gx[ih][iw] = sum w[kh][kw] * gy[ih + pt - kh*dh][iw + pl - kw*dw]`. Each needed
/// output-gradient row is copied into a zero-padded buffer at offset `s = span_w - pl`,
/// so every tap is a plain load and every input-gradient vector is written once.
fn gather_fits(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    let span = (p.kernel_w - 1) * p.dilation_w;
    // buffer: s + out_w (+ room for whole vectors over the input row)
    p.pad_left <= span
        && (span - p.pad_left)
            .saturating_add(p.in_w.div_ceil(LANES) * LANES)
            .saturating_add(span)
            < SEG
        && d.out_w <= SEG
}

#[inline(always)]
fn bwd_input_gather<V: Vf32>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    let (h, w) = (p.in_h, p.in_w);
    let (kh_n, kw_n) = (p.kernel_h, p.kernel_w);
    let span = (kw_n - 1) * p.dilation_w;
    let shift = span - p.pad_left; // buffer position of gy[oh][0]
    let tiles = w.div_ceil(LANES);
    let len = tiles * LANES + span;
    let mut buf = [0.0_f32; SEG];
    let mut acc_row = [0.0_f32; SEG];
    // the columns of the buffer that hold gradient values: [shift, shift + out_w) clipped
    let g_hi = (shift + d.out_w).min(len);
    let planes = grad_output
        .chunks_exact(d.col_cols)
        .zip(grad_input.chunks_exact_mut(h * w));
    for (i, (gy, gx)) in planes.enumerate() {
        let c = i % p.out_channels;
        let wc = &weight[c * kh_n * kw_n..][..kh_n * kw_n];
        buf[..len].fill(0.0);
        for ih in 0..h {
            acc_row[..tiles * LANES].fill(0.0);
            for kh in 0..kh_n {
                // oh = ih + pt - kh*dh must be an output row
                let Some(oh) = (ih + p.pad_top).checked_sub(kh * p.dilation_h) else {
                    continue;
                };
                if oh >= d.out_h {
                    continue;
                }
                let src = &gy[oh * d.out_w..][..g_hi - shift];
                copy_row::<V>(&mut buf[shift..g_hi], src);
                for t in 0..tiles {
                    let dst = &mut acc_row[t * LANES..t * LANES + LANES];
                    let mut acc = V::load(dst);
                    for kw in 0..kw_n {
                        // gy column iw + pl - kw*dw sits at buffer iw + span - kw*dw
                        let at = t * LANES + span - kw * p.dilation_w;
                        let xv = V::load(&buf[at..at + LANES]);
                        acc = V::splat(wc[kh * kw_n + kw]).mul_add(xv, acc);
                    }
                    acc.store(dst);
                }
            }
            copy_row::<V>(&mut gx[ih * w..(ih + 1) * w], &acc_row[..w]);
        }
    }
}

/// Any stride: every output gradient, times each tap's weight, is added to the input
/// pixel the tap read, through a zero-padded row buffer (taps in the padding are dropped).
#[inline(always)]
fn bwd_input_scatter<V: Vf32>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    let (h, w) = (p.in_h, p.in_w);
    let (kh_n, kw_n) = (p.kernel_h, p.kernel_w);
    let len = row_len(p, d);
    // the padded columns that are input: [lo, hi) of the buffer
    let lo = p.pad_left.min(len);
    let hi = (p.pad_left + w).clamp(lo, len);
    let mut buf = [0.0_f32; SEG];
    let planes = grad_output
        .chunks_exact(d.col_cols)
        .zip(grad_input.chunks_exact_mut(h * w));
    for (i, (gy, gx)) in planes.enumerate() {
        let c = i % p.out_channels;
        let wc = &weight[c * kh_n * kw_n..][..kh_n * kw_n];
        gx.fill(0.0);
        for oh in 0..d.out_h {
            let gyr = &gy[oh * d.out_w..][..d.out_w];
            for kh in 0..kh_n {
                let ihp = oh * p.stride_h + kh * p.dilation_h;
                if ihp < p.pad_top || ihp >= p.pad_top + h {
                    continue; // gradients for padding rows are dropped
                }
                buf[..len].fill(0.0);
                for (kw, &wv) in wc[kh * kw_n..][..kw_n].iter().enumerate() {
                    let off = kw * p.dilation_w;
                    if p.stride_w == 1 {
                        let wv = V::splat(wv);
                        let mut ow = 0;
                        while ow < d.out_w {
                            let width = (d.out_w - ow).min(LANES);
                            let dst = &mut buf[off + ow..off + ow + width];
                            let v = wv.mul_add(V::load(&gyr[ow..ow + width]), V::load(dst));
                            v.store(dst);
                            ow += LANES;
                        }
                    } else {
                        for (ow, &g) in gyr.iter().enumerate() {
                            buf[off + ow * p.stride_w] += wv * g;
                        }
                    }
                }
                let row = &mut gx[(ihp - p.pad_top) * w..][..hi - lo];
                for (x, &b) in row.iter_mut().zip(&buf[lo..hi]) {
                    *x += b;
                }
            }
        }
    }
}

/// Weight gradient, summed over the batch: for each tap, the dot product of the output
/// gradient with the (zero-padded) input it read. Arguments validated by the caller;
/// `grad_weight` is overwritten.
pub(super) fn backward_weight(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) {
    dispatch!(bwd_weight(
        p: &Conv2dParams,
        d: &Conv2dDims,
        input: &[f32],
        grad_output: &[f32],
        grad_weight: &mut [f32],
    ));
}

#[inline(always)]
fn bwd_weight<V: Vf32>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) {
    let (h, w) = (p.in_h, p.in_w);
    let (kh_n, kw_n) = (p.kernel_h, p.kernel_w);
    let taps = kh_n * kw_n;
    let len = row_len(p, d);
    let tiles = d.out_w.div_ceil(LANES);
    let full = d.out_w / LANES; // the partial tile, if any, has this index
    let lo = p.pad_left.min(len);
    let hi = (p.pad_left + w).clamp(lo, len);
    let mut buf = [0.0_f32; SEG];
    // the output-gradient row, zero past out_w so that every load is a whole vector
    let mut grow = [0.0_f32; SEG];
    grad_weight.fill(0.0);
    let planes = input
        .chunks_exact(h * w)
        .zip(grad_output.chunks_exact(d.col_cols));
    for (i, (x, gy)) in planes.enumerate() {
        let c = i % p.out_channels;
        let mut acc = [V::splat(0.0); MAX_TAPS];
        buf[..len].fill(0.0);
        for oh in 0..d.out_h {
            copy_row::<V>(&mut grow[..d.out_w], &gy[oh * d.out_w..][..d.out_w]);
            for kh in 0..kh_n {
                // padding rows are explicit zeros: they still multiply (0 * inf = NaN)
                let ihp = oh * p.stride_h + kh * p.dilation_h;
                padded_row::<V>(p, x, ihp, &mut buf[lo..hi]);
                for kw in 0..kw_n {
                    let off = kw * p.dilation_w;
                    let mut a = acc[kh * kw_n + kw];
                    for t in 0..tiles {
                        let g = V::load(&grow[t * LANES..t * LANES + LANES]);
                        let xv = if t == full {
                            // lanes past the row read real inputs: zero them, since the
                            // lanes are summed and 0 * inf would give NaN
                            let mut v = [0.0; LANES];
                            for (l, e) in v.iter_mut().enumerate() {
                                let at = off + (t * LANES + l) * p.stride_w;
                                *e = if l < d.out_w - t * LANES {
                                    buf[at]
                                } else {
                                    0.0
                                };
                            }
                            V::from_array(v)
                        } else if p.stride_w == 1 {
                            V::load(&buf[off + t * LANES..off + t * LANES + LANES])
                        } else {
                            let mut v = [0.0; LANES];
                            for (l, e) in v.iter_mut().enumerate() {
                                *e = buf[off + (t * LANES + l) * p.stride_w];
                            }
                            V::from_array(v)
                        };
                        a = g.mul_add(xv, a);
                    }
                    acc[kh * kw_n + kw] = a;
                }
            }
        }
        for (gw, a) in grad_weight[c * taps..][..taps].iter_mut().zip(&acc) {
            *gw += a.to_array().iter().sum::<f32>();
        }
    }
}
