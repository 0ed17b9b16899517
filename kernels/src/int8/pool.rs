//! int8 pooling, NHWC: each window's pixels combined a whole channel row at a time
//! (contiguous in NHWC), so the loops run along channels.

use super::Int8Kernel;
use crate::arch;
use crate::error::KernelError;
use crate::params::{Pool2dDims, Pool2dParams};
use crate::qparams::check_pool2d_s8;

/// Channels summed at once by [`avg_pool2d_s8`] (its sums live on the stack).
const CHUNK: usize = 64;

/// The window of output `(oy, ox)` clipped to the input: `(y0, y1, x0, x1)`.
#[inline(always)]
fn window(p: &Pool2dParams, oy: usize, ox: usize) -> (usize, usize, usize, usize) {
    let y = oy * p.stride_h;
    let x = ox * p.stride_w;
    let y0 = y.saturating_sub(p.pad_top);
    let x0 = x.saturating_sub(p.pad_left);
    let y1 = (y + p.kernel_h - p.pad_top).min(p.in_h);
    let x1 = (x + p.kernel_w - p.pad_left).min(p.in_w);
    (y0, y1, x0, x1)
}

/// int8 max pooling, NHWC: the largest value of each window's part inside the input,
/// clamped to `[min, max]`. Equals `reference::max_pool2d_s8` bit for bit.
///
/// # Errors
/// As `reference::max_pool2d_s8`.
///
/// ```
/// use cnnkit_kernels::{max_pool2d_s8, Pool2dParams};
/// let p = Pool2dParams::new(1, 1, 2, 2, 2, 2);
/// let mut y = [0i8; 1];
/// max_pool2d_s8(&p, -128, 127, &[3, -7, 9, 1], &mut y).unwrap();
/// assert_eq!(y, [9]);
/// ```
pub fn max_pool2d_s8(
    p: &Pool2dParams,
    min: i8,
    max: i8,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    let d = &check_pool2d_s8(p, min, max, input.len(), output.len())?;
    arch::dispatch!(max_run(
        p: &Pool2dParams,
        d: &Pool2dDims,
        min: i8,
        max: i8,
        input: &[i8],
        output: &mut [i8]
    ));
    Ok(())
}

#[inline(always)]
fn max_run<V: Int8Kernel>(
    p: &Pool2dParams,
    d: &Pool2dDims,
    min: i8,
    max: i8,
    input: &[i8],
    output: &mut [i8],
) {
    let c = p.channels;
    let image = p.in_h * p.in_w * c;
    for (x, y) in input
        .chunks_exact(image)
        .zip(output.chunks_exact_mut(d.out_h * d.out_w * c))
    {
        for oy in 0..d.out_h {
            for ox in 0..d.out_w {
                let (y0, y1, x0, x1) = window(p, oy, ox);
                let out = &mut y[(oy * d.out_w + ox) * c..][..c];
                if y1 - y0 == 2 && x1 - x0 == 2 && p.dilation_w == 1 && p.dilation_h == 1 {
                    // 2 x 2 (LeNet's, VGG's): the four taps of a channel at once
                    let row = p.in_w * c;
                    let top = &x[(y0 * p.in_w + x0) * c..][..row + 2 * c];
                    let (a, b) = (&top[..2 * c], &top[row..row + 2 * c]);
                    let (a0, a1) = a.split_at(c);
                    let (b0, b1) = b.split_at(c);
                    let taps = out.iter_mut().zip(a0).zip(a1).zip(b0).zip(b1);
                    if (min, max) == (i8::MIN, i8::MAX) {
                        // (no clamp: the common case, one comparison fewer per value)
                        for ((((o, &v0), &v1), &v2), &v3) in taps {
                            *o = v0.max(v1).max(v2.max(v3));
                        }
                    } else {
                        for ((((o, &v0), &v1), &v2), &v3) in taps {
                            *o = v0.max(v1).max(v2.max(v3)).max(min).min(max);
                        }
                    }
                    continue;
                }
                out.fill(i8::MIN);
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        let src = &x[(iy * p.in_w + ix) * c..][..c];
                        for (o, &v) in out.iter_mut().zip(src) {
                            *o = (*o).max(v);
                        }
                    }
                }
                for o in out.iter_mut() {
                    *o = (*o).max(min).min(max);
                }
            }
        }
    }
}

/// int8 average pooling, NHWC: each window's sum over its part inside the input divided
/// by that part's size, rounded half away from zero, clamped to `[min, max]` (padding is
/// not counted, as in TFLite). Equals `reference::avg_pool2d_s8` bit for bit.
///
/// # Errors
/// As `reference::avg_pool2d_s8`.
///
/// ```
/// use cnnkit_kernels::{avg_pool2d_s8, Pool2dParams};
/// let p = Pool2dParams::new(1, 1, 2, 2, 2, 2);
/// let mut y = [0i8; 1];
/// avg_pool2d_s8(&p, -128, 127, &[3, -7, 9, 1], &mut y).unwrap();
/// assert_eq!(y, [2]); // 6 / 4 = 1.5, away from zero
/// ```
pub fn avg_pool2d_s8(
    p: &Pool2dParams,
    min: i8,
    max: i8,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    let d = &check_pool2d_s8(p, min, max, input.len(), output.len())?;
    arch::dispatch!(avg_run(
        p: &Pool2dParams,
        d: &Pool2dDims,
        min: i8,
        max: i8,
        input: &[i8],
        output: &mut [i8]
    ));
    Ok(())
}

#[inline(always)]
fn avg_run<V: Int8Kernel>(
    p: &Pool2dParams,
    d: &Pool2dDims,
    min: i8,
    max: i8,
    input: &[i8],
    output: &mut [i8],
) {
    let c = p.channels;
    let image = p.in_h * p.in_w * c;
    let (lo, hi) = (i32::from(min), i32::from(max));
    for (x, y) in input
        .chunks_exact(image)
        .zip(output.chunks_exact_mut(d.out_h * d.out_w * c))
    {
        for oy in 0..d.out_h {
            for ox in 0..d.out_w {
                let (y0, y1, x0, x1) = window(p, oy, ox);
                // at least one pixel: the padding is smaller than the window (checked)
                let count = ((y1 - y0) * (x1 - x0)) as i32;
                let out = &mut y[(oy * d.out_w + ox) * c..][..c];
                let mut c0 = 0;
                while c0 < c {
                    let n = CHUNK.min(c - c0);
                    let mut sum = [0i32; CHUNK];
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            let src = &x[(iy * p.in_w + ix) * c + c0..][..n];
                            for (s, &v) in sum.iter_mut().zip(src) {
                                *s += i32::from(v);
                            }
                        }
                    }
                    for (o, &s) in out[c0..c0 + n].iter_mut().zip(&sum) {
                        // half away from zero (TFLite's: (s +- count / 2) / count)
                        let avg = if s > 0 {
                            (s + count / 2) / count
                        } else {
                            (s - count / 2) / count
                        };
                        *o = avg.max(lo).min(hi) as i8;
                    }
                    c0 += n;
                }
            }
        }
    }
}
