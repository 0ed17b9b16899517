//! Weight gradient of depthwise layers row by row (any stride and dilation): for each
//! tap, the dot product of the output gradient with the zero-padded input it read. No
//! scratch; at stride 1 with finite inputs the flat planes (`weight_flat`) take the layer
//! instead.

use super::depthwise::{MAX_TAPS, SEG, copy_row, is_pad_row, padded_row, row_len};
use super::fwd_depthwise::{fetch_s2, tap_s2};
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
    // stride 3 x 3 (and any taps within 16 columns) at stride 2: the phases made in
    // registers from the input row (`fwd_depthwise::s2_row`'s way; through `buf` and
    // `phases` every load straddled two fresh stores)
    // (not where `wide` emulates its lanes, a Cortex-M4F: no registers to gain, only flash)
    let s2 = crate::arch::HAS_VECTORS && p.stride_w == 2 && (kw_n - 1) * p.dilation_w < 2 * LANES;
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
        if !s2 {
            // (the stride-2 rows read the input in place, never `buf`)
            buf[..len].fill(0.0);
        }
        for oh in 0..d.out_h {
            copy_row::<V>(&mut grow[..d.out_w], &gy[oh * d.out_w..][..d.out_w]);
            for kh in 0..kh_n {
                // padding rows are explicit zeros: they still multiply (0 * inf = NaN)
                let ihp = oh * p.stride_h + kh * p.dilation_h;
                if s2 {
                    let src = (!is_pad_row(p, ihp)).then(|| &x[(ihp - p.pad_top) * w..][..w]);
                    let taps = &mut acc[kh * kw_n..][..kw_n];
                    s2_row::<V>(
                        p.pad_left,
                        src,
                        &grow[..tiles * LANES],
                        d.out_w,
                        p.dilation_w,
                        taps,
                    );
                    continue;
                }
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

/// One kernel row's taps at stride 2 (columns `dilation` apart, `< 16` apart in all): each
/// tap's sum `taps[k]` gains the output-gradient row `g` (whole vectors, zeros past
/// `out_w`) times the input it read, input row `src` (`None`: a padding row, zeros) with
/// `pad_left` zeros before it. The inputs past `out_w` are zeroed (0 times an infinity
/// there would be NaN in the sum).
#[inline(always)]
fn s2_row<V: Vf32>(
    pad_left: usize,
    src: Option<&[f32]>,
    g: &[f32],
    out_w: usize,
    dilation: usize,
    taps: &mut [V],
) {
    let (mut e, mut o) =
        fetch_s2::<V>(src, pad_left, 0).deinterleave(fetch_s2::<V>(src, pad_left, LANES));
    let unrolled = taps.len() == 3 && dilation == 1;
    let (mut a0, mut a1, mut a2) = if unrolled {
        (taps[0], taps[1], taps[2])
    } else {
        (V::splat(0.0), V::splat(0.0), V::splat(0.0))
    };
    for (t, gv) in g.chunks_exact(LANES).enumerate() {
        let q = 2 * LANES * (t + 1);
        let (e1, o1) =
            fetch_s2::<V>(src, pad_left, q).deinterleave(fetch_s2::<V>(src, pad_left, q + LANES));
        let gv = V::load(gv);
        let keep = out_w - t * LANES;
        if unrolled {
            a0 = gv.mul_add(cut::<V>(keep, e), a0);
            a1 = gv.mul_add(cut::<V>(keep, o), a1);
            a2 = gv.mul_add(cut::<V>(keep, e.shift_down_in(e1, 1)), a2);
        } else {
            for (k, a) in taps.iter_mut().enumerate() {
                let v = tap_s2([e, o, e1, o1], k * dilation);
                *a = gv.mul_add(cut::<V>(keep, v), *a);
            }
        }
        (e, o) = (e1, o1);
    }
    if unrolled {
        (taps[0], taps[1], taps[2]) = (a0, a1, a2);
    }
}

/// `v` with its lanes from `keep` on zeroed (all kept for `keep >= 8`), by a select on
/// the lane numbers. (A function, not a closure: closures do not take the variant's
/// target features.)
#[inline(always)]
fn cut<V: Vf32>(keep: usize, v: V) -> V {
    if keep >= LANES {
        v
    } else {
        let lane = V::from_array(core::array::from_fn(|l| l as f32));
        lane.select_lt(V::splat(keep as f32), v, V::splat(0.0))
    }
}
