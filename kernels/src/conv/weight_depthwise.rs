//! Weight gradient of depthwise layers row by row (any stride and dilation): for each
//! tap, the dot product of the output gradient with the zero-padded input it read. No
//! scratch; at stride 1 with finite inputs the flat planes (`weight_flat`) take the layer
//! instead.

use super::depthwise::{MAX_TAPS, SEG, copy_row, padded_row, row_len};
use crate::arch::dispatch;
use crate::params::{Conv2dDims, Conv2dParams};
use crate::simd::LANES;
use crate::vector::Vf32;

/// Weight gradient, summed over the batch: for each tap, the dot product of the output
/// gradient with the (zero-padded) input it read. Arguments validated by the caller;
/// `grad_weight` is overwritten.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn backward_weight(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) {
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let (p, d) = (&{ *p }, &{ *d });
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
    // stride 2: each input row split into its even and odd columns, as the forward pass
    // does (`fwd_depthwise`), so that every whole tile's tap loads one vector; the row is
    // read past `len` up to a whole pair of vectors, where `buf` holds zeros
    let half = len.next_multiple_of(2 * LANES) / 2;
    let two = p.stride_w == 2 && 2 * half <= SEG;
    let mut phases = [0.0_f32; SEG];
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
                if two {
                    // even columns to [0, half), odd ones to [half, 2 half)
                    for j in (0..len).step_by(2 * LANES) {
                        let (e, o) = V::load(&buf[j..j + LANES])
                            .deinterleave(V::load(&buf[j + LANES..][..LANES]));
                        e.store(&mut phases[j / 2..j / 2 + LANES]);
                        o.store(&mut phases[half + j / 2..][..LANES]);
                    }
                }
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
                        } else if two {
                            // lane l reads column (t * 8 + l) * 2 + off
                            V::load(&phases[(off & 1) * half + t * LANES + off / 2..][..LANES])
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
