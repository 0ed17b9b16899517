//! Depthwise convolution backward passes (one input and one output channel per group),
//! where GEMM would run with a single row per group. Both work a row at a time through a
//! zero-padded stack buffer, vectorised along the output row, and need no scratch.
//!
//! One generic source, compiled for each variant (see `crate::arch`).

use crate::arch::{self, Isa};
use crate::params::{Conv2dDims, Conv2dParams};
use crate::simd::{LANES, f32x8};
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

/// Whether the depthwise kernels handle `p`.
pub(super) fn applies(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    d.in_per_group == 1
        && d.out_per_group == 1
        && row_len(p, d) <= SEG
        && p.kernel_h * p.kernel_w <= MAX_TAPS
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
    match arch::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(p: &Conv2dParams, d: &Conv2dDims, w: &[f32], gy: &[f32], gx: &mut [f32]) {
                bwd_input::<crate::arch::x86::Avx2>(p, d, w, gy, gx);
            }
            // SAFETY: `active` only returns Avx2Fma when the CPU supports AVX2 and FMA.
            unsafe { avx2(p, d, weight, grad_output, grad_input) }
        }
        _ => bwd_input::<f32x8>(p, d, weight, grad_output, grad_input),
    }
}

#[inline(always)]
fn bwd_input<V: Vf32>(
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
    match arch::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(p: &Conv2dParams, d: &Conv2dDims, x: &[f32], gy: &[f32], gw: &mut [f32]) {
                bwd_weight::<crate::arch::x86::Avx2>(p, d, x, gy, gw);
            }
            // SAFETY: `active` only returns Avx2Fma when the CPU supports AVX2 and FMA.
            unsafe { avx2(p, d, input, grad_output, grad_weight) }
        }
        _ => bwd_weight::<f32x8>(p, d, input, grad_output, grad_weight),
    }
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
    let lo = p.pad_left.min(len);
    let hi = (p.pad_left + w).clamp(lo, len);
    let mut buf = [0.0_f32; SEG];
    grad_weight.fill(0.0);
    let planes = input
        .chunks_exact(h * w)
        .zip(grad_output.chunks_exact(d.col_cols));
    for (i, (x, gy)) in planes.enumerate() {
        let c = i % p.out_channels;
        let mut acc = [V::splat(0.0); MAX_TAPS];
        buf[..len].fill(0.0);
        for oh in 0..d.out_h {
            let gyr = &gy[oh * d.out_w..][..d.out_w];
            for kh in 0..kh_n {
                // padding rows are explicit zeros: they still multiply (0 * inf = NaN)
                let ihp = oh * p.stride_h + kh * p.dilation_h;
                if ihp < p.pad_top || ihp >= p.pad_top + h {
                    buf[lo..hi].fill(0.0);
                } else {
                    let src = &x[(ihp - p.pad_top) * w..][..hi - lo];
                    copy_row::<V>(&mut buf[lo..hi], src);
                }
                for kw in 0..kw_n {
                    let off = kw * p.dilation_w;
                    let a = &mut acc[kh * kw_n + kw];
                    let mut ow = 0;
                    while ow < d.out_w {
                        let width = (d.out_w - ow).min(LANES);
                        let g = V::load(&gyr[ow..ow + width]);
                        let xv = if p.stride_w == 1 {
                            V::load(&buf[off + ow..off + ow + width])
                        } else {
                            let mut t = [0.0; LANES];
                            for (l, v) in t.iter_mut().enumerate().take(width) {
                                *v = buf[off + (ow + l) * p.stride_w];
                            }
                            V::from_array(t)
                        };
                        *a = g.mul_add(xv, *a);
                        ow += LANES;
                    }
                }
            }
        }
        for (gw, a) in grad_weight[c * taps..][..taps].iter_mut().zip(&acc) {
            *gw += a.to_array().iter().sum::<f32>();
        }
    }
}
