//! Input gradient of depthwise layers row by row (any stride and dilation): every output
//! gradient, times each tap's weight, lands on the input pixel the tap read. No scratch;
//! at stride 1 with finite weights the flat planes (`input_flat`) take the layer instead.

use super::depthwise::{SEG, copy_row, row_len};
use crate::arch::dispatch;
use crate::params::{Conv2dDims, Conv2dParams};
use crate::simd::LANES;
use crate::vector::Vf32;

/// Input gradient: every output gradient, times each tap's weight, lands on the input
/// pixel the tap read (taps in the padding are dropped). Arguments validated by the
/// caller; `grad_input` is overwritten.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn backward_input(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let (p, d) = (&{ *p }, &{ *d });
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
    // stride 2 (as in `fwd_depthwise`): the row accumulated as its even and odd columns,
    // then interleaved back; up to a whole pair of vectors past `len`
    let half = len.next_multiple_of(2 * LANES) / 2;
    let two = p.stride_w == 2 && 2 * half <= SEG;
    let mut phases = [0.0_f32; SEG];
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
                if two {
                    // stride 2: the row's even columns in [0, half), its odd ones in
                    // [half, 2 half); each tap adds whole vectors at a constant offset
                    phases[..2 * half].fill(0.0);
                    for (kw, &wv) in wc[kh * kw_n..][..kw_n].iter().enumerate() {
                        let off = kw * p.dilation_w;
                        // column off + 2 ow: phase off % 2, position ow + off / 2
                        let base = (off & 1) * half + off / 2;
                        let wv = V::splat(wv);
                        let mut ow = 0;
                        while ow < d.out_w {
                            let width = (d.out_w - ow).min(LANES);
                            let dst = &mut phases[base + ow..base + ow + width];
                            let v = wv.mul_add(V::load(&gyr[ow..ow + width]), V::load(dst));
                            v.store(dst);
                            ow += LANES;
                        }
                    }
                    for j in (0..len).step_by(2 * LANES) {
                        let (a, b) = V::load(&phases[j / 2..j / 2 + LANES])
                            .interleave(V::load(&phases[half + j / 2..][..LANES]));
                        a.store(&mut buf[j..j + LANES]);
                        b.store(&mut buf[j + LANES..][..LANES]);
                    }
                    let row = &mut gx[(ihp - p.pad_top) * w..][..hi - lo];
                    for (x, &b) in row.iter_mut().zip(&buf[lo..hi]) {
                        *x += b;
                    }
                    continue;
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
