//! The weight gradient for few input channels per group, computed directly along the
//! output rows (stride 1 and no dilation along them).
//!
//! `dW[o, c, kh, kw] = sum over (n, oh, ow) of dY[n, o, oh, ow] * X[n, c, oh + kh - pad_top,
//! ow + kw - pad_left]`, with padding an explicit 0 as in every variant. With one to four
//! input channels the im2col + GEMM path spends most of its time packing (the GEMM's depth
//! is the whole batch's pixels, its width only `c * kh * kw`); here each input row is
//! copied once into a zero-padded buffer, and every (output channel, kernel row) that reads
//! it accumulates `kw` vector products along the row, 8 output pixels per lane group. The
//! sums stay in 8 lanes per weight until the end.

use super::depthwise;
use crate::arch::dispatch;
use crate::params::{Conv2dDims, Conv2dParams};
use crate::simd::LANES;
use crate::vector::Vf32;

/// Widest output row (in floats) the direct weight gradient takes.
const MAX_OUT_W: usize = 512;
/// Widest kernel it takes (each width up to this has its own loop, with its sums in
/// registers).
const MAX_KW: usize = 7;
/// Most input channels per group it takes (LeNet's conv2, 6 channels of 10-pixel rows,
/// measured 1.6x slower here than through the GEMM).
const MAX_CHANNELS: usize = 4;
/// Narrowest output row it takes (shorter rows waste most of their last vector).
const MIN_OUT_W: usize = 16;

/// Whether [`backward_weight`] handles `p`.
pub(super) fn applies(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    p.stride_w == 1
        && p.stride_h == 1
        && p.dilation_w == 1
        && d.in_per_group <= MAX_CHANNELS
        && d.out_w <= MAX_OUT_W
        && d.out_w >= MIN_OUT_W
        && p.kernel_w <= MAX_KW
        && !depthwise::applies(p, d)
}

/// Vectors per output row.
const fn row_vectors(d: &Conv2dDims) -> usize {
    d.out_w.div_ceil(LANES)
}

/// The padded input row: `row_vectors * 8 + kernel_w` floats.
const fn row_len(p: &Conv2dParams, d: &Conv2dDims) -> usize {
    row_vectors(d) * LANES + p.kernel_w
}

/// Scratch elements [`backward_weight`] needs (when [`applies`]): 8 lanes per weight of
/// one group, and one padded input row.
pub(super) const fn scratch_len(p: &Conv2dParams, d: &Conv2dDims) -> usize {
    d.out_per_group * d.col_rows * LANES + row_len(p, d)
}

/// The weight gradient (overwritten); arguments validated by the caller, `scratch` holds
/// [`scratch_len`] floats.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn backward_weight(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    scratch: &mut [f32],
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
        scratch: &mut [f32],
    ));
}

#[inline(always)]
fn bwd_weight<V: Vf32>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) {
    let args = (p, d, input, grad_output, grad_weight, scratch);
    match p.kernel_w {
        1 => bwd_weight_kw::<V, 1>(args),
        2 => bwd_weight_kw::<V, 2>(args),
        3 => bwd_weight_kw::<V, 3>(args),
        4 => bwd_weight_kw::<V, 4>(args),
        5 => bwd_weight_kw::<V, 5>(args),
        6 => bwd_weight_kw::<V, 6>(args),
        7 => bwd_weight_kw::<V, 7>(args),
        _ => unreachable!("applies() limits the kernel width to MAX_KW"),
    }
}

type Args<'a> = (
    &'a Conv2dParams,
    &'a Conv2dDims,
    &'a [f32],
    &'a [f32],
    &'a mut [f32],
    &'a mut [f32],
);

#[inline(always)]
fn bwd_weight_kw<V: Vf32, const KW: usize>(args: Args<'_>) {
    let (p, d, input, grad_output, grad_weight, scratch) = args;
    let (h, w) = (p.in_h, p.in_w);
    let (kh_n, kw_n) = (p.kernel_h, KW);
    let (m, cpg, k) = (d.out_per_group, d.in_per_group, d.col_rows);
    let (out_h, out_w) = (d.out_h, d.out_w);
    let nv = row_vectors(d);
    let (acc, rest) = scratch.split_at_mut(m * k * LANES);
    let xr = &mut rest[..row_len(p, d)];
    let mut gbuf = [[0.0_f32; MAX_OUT_W]; 2];
    // (applies() keeps out_w <= MAX_OUT_W, a multiple of 8, so nv * 8 fits; nv >= 1)
    assert!(nv >= 1 && nv * LANES <= MAX_OUT_W && xr.len() == nv * LANES + KW);
    // lanes of the last vector that lie past the row read 0 from the input side, so that
    // a non-finite input there never meets the 0 of the output gradient's missing lanes
    let tail = out_w - (nv - 1) * LANES;
    let lane = V::from_array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    let tail_v = V::splat(tail as f32);
    let zero = V::splat(0.0);
    // input rows in padded coordinates: ihp = ih + pad_top
    let rows_p = out_h + (kh_n - 1) * p.dilation_h;
    for g in 0..p.groups {
        acc.fill(0.0);
        for n in 0..p.batch {
            let gy =
                &grad_output[(n * p.out_channels + g * m) * out_h * out_w..][..m * out_h * out_w];
            for c in 0..cpg {
                let plane = &input[(n * p.in_channels + g * cpg + c) * h * w..][..h * w];
                for ihp in 0..rows_p {
                    // the padded row: xr[t] = X[ih, t - pad_left], 0 outside the image
                    xr.fill(0.0);
                    let ih = ihp.wrapping_sub(p.pad_top);
                    if ih < h {
                        let lo = p.pad_left.min(xr.len());
                        let n_in = w.min(xr.len() - lo);
                        xr[lo..lo + n_in].copy_from_slice(&plane[ih * w..][..n_in]);
                    }
                    for kh in 0..kh_n {
                        let dh = kh * p.dilation_h;
                        // output row oh reads padded row oh + dh
                        let Some(oh) = ihp.checked_sub(dh) else {
                            continue;
                        };
                        if oh >= out_h {
                            continue;
                        }
                        // two output channels at a time share each input vector
                        let mut o = 0;
                        while o < m {
                            let oc = (m - o).min(2);
                            for (j, gb) in gbuf.iter_mut().enumerate().take(oc) {
                                // the output gradient's row, 0 past its end
                                let row = &gy[((o + j) * out_h + oh) * out_w..][..out_w];
                                gb[..out_w].copy_from_slice(row);
                            }
                            let gp = [gbuf[0].as_ptr(), gbuf[1].as_ptr()];
                            let xp = xr.as_ptr();
                            let mut parts = [[zero; KW]; 2];
                            if oc == 2 {
                                // SAFETY: see row_products; both rows hold nv * 8 floats
                                parts =
                                    unsafe { row_products::<V, KW, 2>(gp, xp, nv, lane, tail_v) };
                            } else {
                                // SAFETY: as above, one row
                                parts[0] = unsafe {
                                    row_products::<V, KW, 1>([gp[0]], xp, nv, lane, tail_v)[0]
                                };
                            }
                            for (j, part) in parts.iter().enumerate().take(oc) {
                                let base = (((o + j) * cpg + c) * kh_n + kh) * kw_n;
                                for (kw, part_kw) in part.iter().enumerate() {
                                    let at = &mut acc[(base + kw) * LANES..][..LANES];
                                    V::load(at).add(*part_kw).store(at);
                                }
                            }
                            o += oc;
                        }
                    }
                }
            }
        }
        let gw = &mut grad_weight[g * m * k..][..m * k];
        for (dst, lanes) in gw.iter_mut().zip(acc.chunks_exact(LANES)) {
            *dst = lanes.iter().sum();
        }
    }
}

/// `part[j][kw]` = the 8-lane sums, along one output row, of output-gradient row `j`
/// (`gp[j]`) times the padded input row `xp` shifted by `kw`; lanes past the row
/// (`lane >= tail` in the last vector) take 0 from the input side.
///
/// # Safety
/// Each `gp[j]` must be valid for reading `nv * 8` floats and `xp` for `nv * 8 + KW`.
#[inline(always)]
unsafe fn row_products<V: Vf32, const KW: usize, const OC: usize>(
    gp: [*const f32; OC],
    xp: *const f32,
    nv: usize,
    lane: V,
    tail: V,
) -> [[V; KW]; OC] {
    let zero = V::splat(0.0);
    let mut part = [[zero; KW]; OC];
    for v in 0..nv {
        let last = v + 1 == nv;
        let mut gv = [zero; OC];
        for (g, p) in gv.iter_mut().zip(gp) {
            // SAFETY: v * 8 + 8 <= nv * 8.
            *g = unsafe { V::load_ptr(p.add(v * LANES)) };
        }
        for kw in 0..KW {
            // SAFETY: v * 8 + kw + 8 <= (nv - 1) * 8 + KW - 1 + 8 < nv * 8 + KW.
            let mut xv = unsafe { V::load_ptr(xp.add(v * LANES + kw)) };
            if last {
                xv = lane.select_lt(tail, xv, zero);
            }
            for (pj, g) in part.iter_mut().zip(gv.iter()) {
                pj[kw] = g.mul_add(xv, pj[kw]);
            }
        }
    }
    part
}
