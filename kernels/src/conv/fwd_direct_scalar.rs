//! Direct convolution in plain scalar code, for targets without vector registers (a
//! Cortex-M4F), where `wide`'s 8-lane vectors are emulated lane by lane: there the tiled
//! vector kernel spends most of its instructions copying and clearing arrays.
//!
//! Each output row goes four pixels at a time where every tap of the four lies inside the
//! input row (four accumulators in registers, one weight load per four multiply-adds; a
//! run of such pixels that is not a multiple of four ends with a tile that overlaps the
//! one before), and one pixel at a time where taps fall in the padding. Every output sums bias, then `(c_in, kh, kw)` in order,
//! padding as an explicit 0.0 times its weight: the order and the values of the vector
//! kernel with unfused multiply-adds.

use super::{Ctx, check_forward};
use crate::error::KernelError;
use crate::params::{Activation, Conv2dParams, valid_range};
use crate::simd::clamp1;

/// Pixels per register tile.
const T: usize = 4;

/// The forward pass (validated by the caller).
pub(super) fn forward(
    ctx: &Ctx<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let (p, d) = (ctx.p, ctx.d);
    let k = d.col_rows;
    let (h, wd) = (p.in_h, p.in_w);
    let group_in = d.in_per_group * h * wd;
    let span_w = (p.kernel_w - 1) * p.dilation_w;
    // output columns whose every tap lies inside the row: ow * stride_w in
    // [pad_left, pad_left + wd - span_w)
    let (ilo, ihi) = if span_w < wd {
        valid_range(d.out_w, p.stride_w, 0, p.pad_left, wd - span_w)
    } else {
        (0, 0)
    };
    for (img, out_img) in input
        .chunks_exact(d.image_len)
        .zip(output.chunks_exact_mut(d.out_image_len))
    {
        for (co, out) in out_img.chunks_exact_mut(d.col_cols).enumerate() {
            let g = co / d.out_per_group;
            let x = &img[g * group_in..][..group_in];
            let w = &weight[co * k..][..k];
            let b = bias.map_or(0.0, |b| b[co]);
            // a padded row adds weight * 0.0: nothing, unless a weight is not finite
            let skip_pad_rows = w.iter().all(|v| v.is_finite());
            for (oh, row_out) in out.chunks_exact_mut(d.out_w).enumerate() {
                let mut ow = 0;
                while ow < d.out_w {
                    if ow >= ilo && ow + T <= ihi {
                        let acc = tile(ctx, x, w, b, skip_pad_rows, oh, ow);
                        for (o, a) in row_out[ow..ow + T].iter_mut().zip(acc) {
                            *o = clamp1(a, ctx.lo, ctx.hi);
                        }
                        ow += T;
                    } else if ow >= ilo && ow < ihi && ihi - ilo >= T {
                        // the interior's last few pixels: the tile ending with them, which
                        // recomputes some already written (each pixel sums the same way in
                        // a tile or alone, so the values do not change)
                        let start = ihi - T;
                        let acc = tile(ctx, x, w, b, skip_pad_rows, oh, start);
                        for (o, a) in row_out[ow..ihi].iter_mut().zip(&acc[ow - start..]) {
                            *o = clamp1(*a, ctx.lo, ctx.hi);
                        }
                        ow = ihi;
                    } else {
                        let a = pixel(ctx, x, w, b, skip_pad_rows, oh, ow);
                        row_out[ow] = clamp1(a, ctx.lo, ctx.hi);
                        ow += 1;
                    }
                }
            }
        }
    }
}

/// Four pixels `ow..ow + 4` of row `oh`, every tap inside the input row.
#[inline(always)]
fn tile(
    ctx: &Ctx<'_>,
    x: &[f32],
    w: &[f32],
    b: f32,
    skip_pad_rows: bool,
    oh: usize,
    ow: usize,
) -> [f32; T] {
    let (p, d) = (ctx.p, ctx.d);
    let (h, wd) = (p.in_h, p.in_w);
    // dense rows of 3 or 5 taps (LeNet's, VGG's, ResNet's): the tile's inputs of a row
    // loaded once into registers, every weight of the row applied from there, the four
    // sums in registers throughout
    let dense = match (p.stride_w, p.dilation_w, p.kernel_w) {
        (1, 1, 5) => tile_dense5(ctx, x, w, b, skip_pad_rows, oh, ow),
        (1, 1, 3) => tile_dense3(ctx, x, w, b, skip_pad_rows, oh, ow),
        _ => None,
    };
    if let Some(acc) = dense {
        return acc;
    }
    let mut acc = [b; T];
    for ci in 0..d.in_per_group {
        let plane = &x[ci * h * wd..][..h * wd];
        for kh in 0..p.kernel_h {
            let ihp = oh * p.stride_h + kh * p.dilation_h;
            let wrow = &w[(ci * p.kernel_h + kh) * p.kernel_w..][..p.kernel_w];
            if ihp < p.pad_top || ihp >= p.pad_top + h {
                if !skip_pad_rows {
                    for &wv in wrow {
                        for a in &mut acc {
                            *a += wv * 0.0;
                        }
                    }
                }
                continue;
            }
            let row = &plane[(ihp - p.pad_top) * wd..][..wd];
            // the tile's first tap, in the row (ow >= ilo: not in the left padding)
            let first = ow * p.stride_w - p.pad_left;
            let sw = p.stride_w;

            // (written out for four accumulators: at opt-level "s" a loop over them is
            // not unrolled, and they would live in memory)
            for (kw, &wv) in wrow.iter().enumerate() {
                let s = first + kw * p.dilation_w;
                let [x0, x1, x2, x3] = if sw == 1 {
                    match row[s..].first_chunk::<T>() {
                        Some(&c) => c,
                        None => [0.0; T], // unreachable: the tile lies inside the row
                    }
                } else {
                    [row[s], row[s + sw], row[s + 2 * sw], row[s + 3 * sw]]
                };
                acc[0] += wv * x0;
                acc[1] += wv * x1;
                acc[2] += wv * x2;
                acc[3] += wv * x3;
            }
        }
    }
    acc
}

/// [`tile`] for rows of `$kw` dense taps at stride 1 (`$n = $kw + 3` inputs per row):
/// the same sums in the same order (bias, then `(c_in, kh, kw)`), the four sums and a
/// row's inputs and weights in registers (each tap written out: at opt-level "s" loops
/// over arrays are not unrolled); `None` (nothing done) if a slice is short (it never is
/// for a tile).
macro_rules! tile_dense {
    ($name:ident, $kw:literal, $n:literal, [$($k:literal),*]) => {
        #[inline(never)]
        fn $name(
            ctx: &Ctx<'_>,
            x: &[f32],
            w: &[f32],
            b: f32,
            skip_pad_rows: bool,
            oh: usize,
            ow: usize,
        ) -> Option<[f32; T]> {
            let (p, d) = (ctx.p, ctx.d);
            let (h, wd) = (p.in_h, p.in_w);
            let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
            let first = ow - p.pad_left;
            for ci in 0..d.in_per_group {
                let plane = x.get(ci * h * wd..)?;
                for kh in 0..p.kernel_h {
                    let ihp = oh * p.stride_h + kh * p.dilation_h;
                    let wrow: &[f32; $kw] =
                        w.get((ci * p.kernel_h + kh) * $kw..)?.first_chunk()?;
                    if ihp < p.pad_top || ihp >= p.pad_top + h {
                        if !skip_pad_rows {
                            for &wv in wrow {
                                a0 += wv * 0.0;
                                a1 += wv * 0.0;
                                a2 += wv * 0.0;
                                a3 += wv * 0.0;
                            }
                        }
                        continue;
                    }
                    let xs: &[f32; $n] =
                        plane.get((ihp - p.pad_top) * wd + first..)?.first_chunk()?;
                    $(
                        let wv = wrow[$k];
                        a0 += wv * xs[$k];
                        a1 += wv * xs[$k + 1];
                        a2 += wv * xs[$k + 2];
                        a3 += wv * xs[$k + 3];
                    )*
                }
            }
            Some([a0, a1, a2, a3])
        }
    };
}

tile_dense!(tile_dense5, 5, 8, [0, 1, 2, 3, 4]);
tile_dense!(tile_dense3, 3, 6, [0, 1, 2]);

/// One pixel, taps in the padding read as 0.0.
#[inline(never)]
fn pixel(
    ctx: &Ctx<'_>,
    x: &[f32],
    w: &[f32],
    b: f32,
    skip_pad_rows: bool,
    oh: usize,
    ow: usize,
) -> f32 {
    let (p, d) = (ctx.p, ctx.d);
    let (h, wd) = (p.in_h, p.in_w);
    let mut acc = b;
    for ci in 0..d.in_per_group {
        let plane = &x[ci * h * wd..][..h * wd];
        for kh in 0..p.kernel_h {
            let ihp = oh * p.stride_h + kh * p.dilation_h;
            let wrow = &w[(ci * p.kernel_h + kh) * p.kernel_w..][..p.kernel_w];
            let pad_row = ihp < p.pad_top || ihp >= p.pad_top + h;
            if pad_row && skip_pad_rows {
                continue;
            }
            if skip_pad_rows {
                // finite weights: padded taps add weight * 0.0 = 0, so only the taps
                // inside the row are summed
                let row = &plane[(ihp - p.pad_top) * wd..][..wd];
                let base = ow * p.stride_w;
                let (k0, k1) = valid_range(p.kernel_w, p.dilation_w, base, p.pad_left, wd);
                for kw in k0..k1 {
                    acc += wrow[kw] * row[base + kw * p.dilation_w - p.pad_left];
                }
                continue;
            }
            for (kw, &wv) in wrow.iter().enumerate() {
                let iwp = ow * p.stride_w + kw * p.dilation_w;
                let v = if !pad_row && iwp >= p.pad_left && iwp < p.pad_left + wd {
                    plane[(ihp - p.pad_top) * wd + iwp - p.pad_left]
                } else {
                    0.0
                };
                acc += wv * v;
            }
        }
    }
    acc
}

/// The direct convolution in plain scalar code: what [`conv2d_direct`](crate::conv2d_direct) runs on targets
/// whose `wide` has no vector registers (a Cortex-M4F; depthwise convolutions aside).
/// Compiled everywhere, so that it is tested and fuzzed against the reference on any host.
/// Four output pixels share each weight load; no scratch.
///
/// # Errors
/// As [`conv2d_direct`](crate::conv2d_direct).
pub fn conv2d_direct_scalar(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    let (d, lo, hi) = check_forward(p, input, weight, bias, act, output)?;
    let ctx = Ctx { p, d: &d, lo, hi };
    forward(&ctx, input, weight, bias, output);
    Ok(())
}
