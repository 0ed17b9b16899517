//! The weight gradient of stride-1, undilated convolutions with few input channels, over
//! flat planes: whole images at a time instead of row by row.
//!
//! `dW[o, c, a, b] = sum over (n, oy, ox) of dY[n, o, oy, ox] * Xp[n, c, oy + a, ox + b]`
//! with `Xp` the zero-padded input. Both planes are laid out flat with rows `r` floats apart
//! (`r` = the padded input width): the padded input as it is, the output gradient with
//! zeros in the columns past `out_w`. Then for every tap `(a, b)` the sum is one dot
//! product along the flat planes, `sum_t dY[t] * Xp[t + a * r + b]`, a plain vector loop
//! over the whole image (LeNet's first layer: 28 rows of 32 floats, 112 vectors, where the
//! row-by-row kernel of `weight_direct` runs 4 vectors per row with a partial last one).
//! The register tile is two output channels by one kernel row (`KW` taps): per 8
//! positions, 2 gradient loads and `KW` input loads feed `2 * KW` FMAs. Sums stay in 8
//! lanes per weight until the end of the batch.
//!
//! The zero columns of the gradient meet input values that the exact sum never reads
//! (`0 * x`); that is exact for finite `x`, but would turn an infinite or NaN input there
//! into a NaN the reference does not have. The caller therefore checks that the input is
//! finite and otherwise uses `weight_direct`, whose lanes past the row read 0 from the
//! input side.

use super::flat::rows_into;
use crate::arch::dispatch;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, add, mul};
use crate::simd::LANES;
use crate::vector::{Vf32, build};

/// Widest kernel taken (each width has its own loop, with its sums in registers).
const MAX_KW: usize = 7;

/// Whether [`backward_weight`] can handle `p` (given that `weight_direct` does, so few
/// input channels per group): stride 1 and no dilation in both directions. It does when
/// the input is also [`finite`].
pub(super) const fn applies(p: &Conv2dParams) -> bool {
    p.stride_h == 1
        && p.stride_w == 1
        && p.dilation_h == 1
        && p.dilation_w == 1
        && p.kernel_w <= MAX_KW
}

/// Whether `input` holds no infinity or NaN (see the module documentation).
pub(super) fn finite(input: &[f32]) -> bool {
    crate::simd::all_finite(input)
}

/// The flat layout of one image.
#[derive(Clone, Copy)]
struct Geometry {
    /// Distance between rows: the padded input width.
    r: usize,
    /// Positions summed over: `out_h * r` rounded up to whole vectors.
    t: usize,
    /// Floats per padded input plane, with room for the last vector of the last tap.
    x_plane: usize,
}

impl Geometry {
    const fn new(p: &Conv2dParams, d: &Conv2dDims) -> Self {
        let r = d.padded_w;
        let t = (d.out_h * r).div_ceil(LANES) * LANES;
        // row a's reads end before (kh - 1) * r + t + kw - 1 + 8 <= padded_h * r + kw + 14
        // (t <= out_h * r + 7, out_h + kh - 1 = padded_h)
        let x_plane = d.padded_h * r + p.kernel_w + 2 * LANES;
        Self { r, t, x_plane }
    }
}

/// Scratch elements [`backward_weight`] needs: 8 lanes per weight of one group, the
/// group's padded input planes and its flat gradient planes.
///
/// # Errors
/// [`KernelError::Overflow`] if that does not fit a `usize`.
pub(super) fn scratch_len(p: &Conv2dParams, d: &Conv2dDims) -> Result<usize, KernelError> {
    let plane = add(mul(d.padded_h, d.padded_w)?, p.kernel_w + 2 * LANES)?;
    let t = mul(d.out_h, d.padded_w)?.div_ceil(LANES) * LANES;
    // (depthwise 3x3: the sums of every group, see `depthwise_3x3`)
    let groups = if depthwise_3x3(p, d) { p.groups } else { 1 };
    add(
        add(
            mul(mul(mul(d.out_per_group, d.col_rows)?, LANES)?, groups)?,
            mul(d.in_per_group, plane)?,
        )?,
        mul(d.out_per_group, t)?,
    )
}

/// Whether [`run`] takes a depthwise 3x3 layer image by image (all groups' sums kept, the
/// planes read in memory order; group by group, each image's plane of a group lies a
/// whole image after the last, and the prefetchers start over on every one), all nine
/// dot products in one pass ([`rows_3x3`]). `dw3x3_256` (8 images of 256 channels of 28 x
/// 28) on an AMD Zen 5: 1.07 -> 0.77-0.83 ms (one pass alone: 0.97-1.02).
const fn depthwise_3x3(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    d.out_per_group == 1 && d.in_per_group == 1 && p.kernel_h == 3 && p.kernel_w == 3
}

/// The weight gradient (overwritten); arguments validated by the caller, [`applies`]
/// holds and `scratch` holds [`scratch_len`] floats.
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
        1 => run::<V, 1>(args),
        2 => run::<V, 2>(args),
        3 => run::<V, 3>(args),
        4 => run::<V, 4>(args),
        5 => run::<V, 5>(args),
        6 => run::<V, 6>(args),
        _ => run::<V, 7>(args),
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
fn run<V: Vf32, const KW: usize>(args: Args<'_>) {
    let (p, d, input, grad_output, grad_weight, scratch) = args;
    let geo = Geometry::new(p, d);
    let (m, cpg, k) = (d.out_per_group, d.in_per_group, d.col_rows);
    let (in_plane, out_plane) = (p.in_h * p.in_w, d.out_h * d.out_w);
    let groups = if depthwise_3x3(p, d) { p.groups } else { 1 };
    let (acc, rest) = scratch.split_at_mut(groups * m * k * LANES);
    let (xs, rest) = rest.split_at_mut(cpg * geo.x_plane);
    let gs = &mut rest[..m * geo.t];
    // the padding, the gradient's zero columns and both tails are never written after this
    xs.fill(0.0);
    gs.fill(0.0);
    if KW == 3 && depthwise_3x3(p, d) {
        // (acc holds 9 taps x 8 lanes per group here: see `scratch_len`)
        acc.fill(0.0);
        let at = p.pad_top * geo.r + p.pad_left;
        for n in 0..p.batch {
            for (g, sums) in acc.chunks_exact_mut(k * LANES).enumerate() {
                let src = &input[(n * p.in_channels + g) * in_plane..][..in_plane];
                rows_into(src, p.in_w, xs, at, geo.r);
                let src = &grad_output[(n * p.out_channels + g) * out_plane..][..out_plane];
                rows_into(src, d.out_w, gs, 0, geo.r);
                rows_3x3::<V>(&geo, xs, gs, sums);
            }
        }
        for (dst, lanes) in grad_weight.iter_mut().zip(acc.chunks_exact(LANES)) {
            *dst = lanes.iter().sum();
        }
        return;
    }
    for g in 0..p.groups {
        acc.fill(0.0);
        for n in 0..p.batch {
            for (c, xp) in xs.chunks_exact_mut(geo.x_plane).enumerate() {
                let src = &input[(n * p.in_channels + g * cpg + c) * in_plane..][..in_plane];
                let at = p.pad_top * geo.r + p.pad_left;
                rows_into(src, p.in_w, xp, at, geo.r);
            }
            for (o, gp) in gs.chunks_exact_mut(geo.t).enumerate() {
                let src = &grad_output[(n * p.out_channels + g * m + o) * out_plane..][..out_plane];
                rows_into(src, d.out_w, gp, 0, geo.r);
            }
            for (c, xp) in xs.chunks_exact(geo.x_plane).enumerate() {
                let mut o = 0;
                while o + 2 <= m {
                    rows::<V, KW, 2>(p, &geo, cpg, o, c, xp, gs, acc);
                    o += 2;
                }
                if o < m {
                    rows::<V, KW, 1>(p, &geo, cpg, o, c, xp, gs, acc);
                }
            }
        }
        let gw = &mut grad_weight[g * m * k..][..m * k];
        for (dst, lanes) in gw.iter_mut().zip(acc.chunks_exact(LANES)) {
            *dst = lanes.iter().sum();
        }
    }
}

/// [`rows`] for one output and one input channel of a 3x3 kernel (a depthwise layer's
/// group): all nine dot products in one pass over the planes, each gradient vector loaded
/// once (by kernel row, three passes of 1 gradient and 3 input loads per 3 FMAs; here 1
/// and 9 per 9).
#[inline(always)]
fn rows_3x3<V: Vf32>(geo: &Geometry, xp: &[f32], gp: &[f32], acc: &mut [f32]) {
    let zero = V::splat(0.0);
    let gp = &gp[..geo.t];
    // reads end at 2 * r + 2 + t + 8 <= x_plane (see Geometry::new)
    let xa = &xp[..2 * geo.r + geo.t + 2 + LANES];
    let mut part = [[zero; 3]; 3];
    let mut t = 0;
    while t < geo.t {
        let gv = V::load(&gp[t..t + LANES]);
        for (a, row) in part.iter_mut().enumerate() {
            for (b, s) in row.iter_mut().enumerate() {
                // SAFETY: a * r + b + t + 8 <= 2 * r + 2 + geo.t + 8 = xa.len() (t + 8 <=
                // geo.t, a whole number of vectors).
                let xv = unsafe { V::load_ptr(xa.as_ptr().add(a * geo.r + b + t)) };
                *s = gv.mul_add(xv, *s);
            }
        }
        t += LANES;
    }
    for (a, row) in part.iter().enumerate() {
        for (b, v) in row.iter().enumerate() {
            let at = &mut acc[(a * 3 + b) * LANES..][..LANES];
            V::load(at).add(*v).store(at);
        }
    }
}

/// Adds, for output channels `o..o + OC` and input channel `c` of the group, every
/// kernel row's `KW` dot products over the image into the 8-lane sums `acc`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rows<V: Vf32, const KW: usize, const OC: usize>(
    p: &Conv2dParams,
    geo: &Geometry,
    cpg: usize,
    o: usize,
    c: usize,
    xp: &[f32],
    gs: &[f32],
    acc: &mut [f32],
) {
    let zero = V::splat(0.0);
    let gp: [&[f32]; OC] = build(&[][..], |j| &gs[(o + j) * geo.t..][..geo.t]);
    for a in 0..p.kernel_h {
        // the input from row a on: t + b + 8 <= geo.t + KW - 1 + 8 floats of it are read
        let xa = &xp[a * geo.r..][..geo.t + KW - 1 + LANES];
        let mut part = [[zero; KW]; OC];
        let mut t = 0;
        while t < geo.t {
            let gv: [V; OC] = build(V::splat(0.0), |j| V::load(&gp[j][t..t + LANES]));
            for b in 0..KW {
                // SAFETY: t + b + 8 <= geo.t - 8 + KW - 1 + 8 < xa.len().
                let xv = unsafe { V::load_ptr(xa.as_ptr().add(t + b)) };
                for (pj, g) in part.iter_mut().zip(gv.iter()) {
                    pj[b] = g.mul_add(xv, pj[b]);
                }
            }
            t += LANES;
        }
        for (j, pj) in part.iter().enumerate() {
            let base = (((o + j) * cpg + c) * p.kernel_h + a) * KW;
            for (b, v) in pj.iter().enumerate() {
                let at = &mut acc[(base + b) * LANES..][..LANES];
                V::load(at).add(*v).store(at);
            }
        }
    }
}
