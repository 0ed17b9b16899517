//! Direct convolution, vectorised along the output row: a register tile holds 8
//! consecutive output pixels of up to 4 output channels; each `(c_in, kh, kw)` step loads
//! one input vector (contiguous for stride 1 inside the image, gathered at edges and for
//! larger strides) and does one FMA per output channel. No scratch, so it is the
//! algorithm for microcontrollers, and it wins where a group has too few output channels
//! to fill a GEMM tile.

use super::check_forward;
use crate::error::KernelError;
use crate::params::{Activation, Conv2dDims, Conv2dParams};
use crate::simd::{LANES, clamp, f32x8, load};

/// What every tile of one call shares.
struct Ctx<'a> {
    p: &'a Conv2dParams,
    d: &'a Conv2dDims,
    lo: f32x8,
    hi: f32x8,
}

/// Convolution forward pass by the direct algorithm (no scratch). Arguments as
/// [`crate::conv2d`].
///
/// # Errors
/// As [`crate::conv2d`] (there is no scratch to check).
pub fn conv2d_direct(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    let (d, lo, hi) = check_forward(p, input, weight, bias, act, output)?;
    let ctx = Ctx {
        p,
        d: &d,
        lo: f32x8::splat(lo),
        hi: f32x8::splat(hi),
    };
    let m = d.out_per_group;
    let k = d.col_rows;
    for (img, out_img) in input
        .chunks_exact(d.image_len)
        .zip(output.chunks_exact_mut(d.out_image_len))
    {
        for g in 0..p.groups {
            let x =
                &img[g * d.in_per_group * p.in_h * p.in_w..][..d.in_per_group * p.in_h * p.in_w];
            let mut co = g * m;
            let end = co + m;
            while co < end {
                let cb = (end - co).min(4);
                let w = &weight[co * k..][..cb * k];
                let b = bias.map(|b| &b[co..co + cb]);
                let out = &mut out_img[co * d.col_cols..][..cb * d.col_cols];
                match cb {
                    4 => block::<4>(&ctx, x, w, b, out),
                    3 => block::<3>(&ctx, x, w, b, out),
                    2 => block::<2>(&ctx, x, w, b, out),
                    _ => block::<1>(&ctx, x, w, b, out),
                }
                co += cb;
            }
        }
    }
    Ok(())
}

/// All output rows of `CB` output channels of one group of one image.
/// `x`: the group's input channels; `w`: `CB` filters; `out`: `CB` output planes.
#[inline(always)]
fn block<const CB: usize>(
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
    // Padding is an explicit 0.0 that multiplies its weight: padded rows may be skipped
    // only when that product is 0, i.e. when every weight of the block is finite.
    let skip_pad_rows = w.iter().all(|v| v.is_finite());
    let mut init = [f32x8::ZERO; CB];
    if let Some(b) = bias {
        for (i, v) in init.iter_mut().enumerate() {
            *v = f32x8::splat(b[i]);
        }
    }
    // Tiles whose every tap (any kw) lies inside the input columns.
    let span_w = (p.kernel_w - 1) * p.dilation_w;
    for oh in 0..d.out_h {
        let mut ow0 = 0;
        while ow0 < d.out_w {
            let width = (d.out_w - ow0).min(LANES);
            let first = ow0 * p.stride_w;
            // (only computed for full tiles, whose last tap is inside the padded row)
            let interior = width == LANES
                && first >= p.pad_left
                && (ow0 + LANES - 1) * p.stride_w + span_w < p.pad_left + wd;
            let mut acc = init;
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
                    let wbase = (ci * p.kernel_h + kh) * p.kernel_w;
                    for kw in 0..p.kernel_w {
                        let off = kw * p.dilation_w;
                        let xv = if pad_row {
                            f32x8::ZERO
                        } else if interior {
                            let s = first + off - p.pad_left;
                            if p.stride_w == 1 {
                                load(&row[s..s + LANES])
                            } else {
                                let mut a = [0.0; LANES];
                                for (l, v) in a.iter_mut().enumerate() {
                                    *v = row[s + l * p.stride_w];
                                }
                                f32x8::new(a)
                            }
                        } else {
                            let mut a = [0.0; LANES];
                            for (l, v) in a.iter_mut().enumerate().take(width) {
                                let iwp = (ow0 + l) * p.stride_w + off;
                                if iwp >= p.pad_left && iwp < p.pad_left + wd {
                                    *v = row[iwp - p.pad_left];
                                }
                            }
                            f32x8::new(a)
                        };
                        for (c, a) in acc.iter_mut().enumerate() {
                            *a = f32x8::splat(w[c * k + wbase + kw]).mul_add(xv, *a);
                        }
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                let v = clamp(*a, ctx.lo, ctx.hi).to_array();
                out[c * plane + oh * d.out_w + ow0..][..width].copy_from_slice(&v[..width]);
            }
            ow0 += LANES;
        }
    }
}
