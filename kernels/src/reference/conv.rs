//! Reference convolution: one loop nest per formula.

use crate::error::KernelError;
use crate::params::{Activation, Conv2dParams};
use crate::params::{
    check_backward_bias, check_backward_input, check_backward_weight, check_forward, check_im2col,
};

/// Input coordinate of a tap, or `None` in the padding: `o * stride + k * dil - pad`.
fn tap(o: usize, k: usize, stride: usize, dil: usize, pad: usize, len: usize) -> Option<usize> {
    let pos = o * stride + k * dil;
    if pos < pad || pos - pad >= len {
        None
    } else {
        Some(pos - pad)
    }
}

/// The input value under tap `(kh, kw)` of output pixel `(oh, ow)` of a plane: the zero
/// padding is an explicit 0.0 (so a non-finite weight on a padded tap gives NaN, as with
/// an explicitly padded input, and as the GEMM variants compute it).
fn tap_value(p: &Conv2dParams, plane: &[f32], oh: usize, ow: usize, kh: usize, kw: usize) -> f32 {
    let ih = tap(oh, kh, p.stride_h, p.dilation_h, p.pad_top, p.in_h);
    let iw = tap(ow, kw, p.stride_w, p.dilation_w, p.pad_left, p.in_w);
    match (ih, iw) {
        (Some(ih), Some(iw)) => plane[ih * p.in_w + iw],
        _ => 0.0,
    }
}

/// Reference for [`crate::conv2d`].
///
/// # Errors
/// As [`crate::conv2d`] (no scratch).
pub fn conv2d(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    let (d, lo, hi) = check_forward(p, input, weight, bias, act, output)?;
    let (h, w, kh_n, kw_n) = (p.in_h, p.in_w, p.kernel_h, p.kernel_w);
    let cin_g = d.in_per_group;
    for n in 0..p.batch {
        for co in 0..p.out_channels {
            let g = co / d.out_per_group;
            for oh in 0..d.out_h {
                for ow in 0..d.out_w {
                    let mut acc = 0.0_f64;
                    for cig in 0..cin_g {
                        let ci = g * cin_g + cig;
                        let plane = &input[(n * p.in_channels + ci) * h * w..][..h * w];
                        for kh in 0..kh_n {
                            for kw in 0..kw_n {
                                let x = tap_value(p, plane, oh, ow, kh, kw);
                                let wt = weight[((co * cin_g + cig) * kh_n + kh) * kw_n + kw];
                                acc += f64::from(x) * f64::from(wt);
                            }
                        }
                    }
                    if let Some(b) = bias {
                        acc += f64::from(b[co]);
                    }
                    output[((n * p.out_channels + co) * d.out_h + oh) * d.out_w + ow] =
                        super::clamp(acc as f32, lo, hi);
                }
            }
        }
    }
    Ok(())
}

/// The scale of [`crate::conv2d_winograd`]'s rounding error for each output (it has no
/// reference of its own: [`conv2d`] is its oracle): the sum it computes with every
/// transform coefficient and every value replaced by its absolute value,
/// `|A|^T [sum_c (|G| |g_c| |G|^T) . (|B|^T |d_c| |B|)] |A|` plus `|bias|`, in f64, where
/// `d_c` is the output's 4x4 input tile of channel `c` and `g_c` its filter.
///
/// Each transformed weight (two levels of sums of three, halved), transformed input (two
/// levels of one addition), product, the sum over the `C = in_per_group` channels and the
/// output transform (two levels of sums of three) round with an error bounded relative to
/// these magnitudes, so the computed output lies within `(C + 14) * f32::EPSILON` times
/// this of the exact sum (to first order; the clamp only shrinks the difference). It is
/// at least the direct sum's `sum |w| |x|`. An output is `+inf` where the absolute sum of
/// a filter or of an input tile it depends on comes within rounding of `f32::MAX`, so that
/// a transform may overflow (they add before they scale: a filter of values near
/// `f32::MAX` can transform to infinity, which meets a zero input tile as NaN where the
/// direct sum is finite), and NaN where a value it depends on is NaN.
///
/// # Errors
/// As [`crate::conv2d_winograd`] (no scratch; `magnitude` is the output's length).
pub fn conv2d_winograd_magnitude(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    magnitude: &mut [f32],
) -> Result<(), KernelError> {
    let (d, _, _) = check_forward(p, input, weight, bias, Activation::None, magnitude)?;
    if !crate::params::winograd_applies(p) {
        return Err(crate::params::WINOGRAD_NOT_3X3);
    }
    // |G| and |B|^T (|A|^T has ones where A^T is nonzero: see the output loop)
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, 0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    const BT: [[f64; 4]; 4] = [
        [1.0, 0.0, 1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, 0.0, 1.0],
    ];
    const AT: [[bool; 4]; 2] = [[true, true, true, false], [false, true, true, true]];
    // every partial sum of a transform is a signed sum of its inputs with coefficients of
    // at most 1: where their absolute sum (with a margin for rounding) passes f32::MAX,
    // the transform may overflow, and the transformed values count as infinite
    let may_overflow =
        |sum: f64| sum * (1.0 + 16.0 * f64::from(f32::EPSILON)) > f64::from(f32::MAX);
    // L M R^T for 4 x n, n x n, 4 x n matrices (the two-sided abs transforms)
    fn sandwich<const N: usize>(l: &[[f64; N]; 4], m: &[[f64; N]; N]) -> [[f64; 4]; 4] {
        let mut lm = [[0.0; N]; 4];
        for (i, row) in lm.iter_mut().enumerate() {
            for (b, v) in row.iter_mut().enumerate() {
                *v = (0..N).map(|a| l[i][a] * m[a][b]).sum();
            }
        }
        let mut out = [[0.0; 4]; 4];
        for (i, row) in out.iter_mut().enumerate() {
            for (k, v) in row.iter_mut().enumerate() {
                *v = (0..N).map(|b| lm[i][b] * l[k][b]).sum();
            }
        }
        out
    }
    let (h, w, cin_g) = (p.in_h, p.in_w, d.in_per_group);
    let (th, tw) = (d.out_h.div_ceil(2), d.out_w.div_ceil(2));
    for n in 0..p.batch {
        for co in 0..p.out_channels {
            let g = co / d.out_per_group;
            for ty in 0..th {
                for tx in 0..tw {
                    // the tile's 4 x 4 input starts at padded input (2 ty, 2 tx)
                    let mut m = [[0.0_f64; 4]; 4];
                    for cig in 0..cin_g {
                        let ci = g * cin_g + cig;
                        let f = &weight[(co * cin_g + cig) * 9..][..9];
                        let mut fa = [[0.0; 3]; 3];
                        for (i, v) in f.iter().enumerate() {
                            fa[i / 3][i % 3] = f64::from(v.abs());
                        }
                        let mut da = [[0.0; 4]; 4];
                        for (a, row) in da.iter_mut().enumerate() {
                            for (b, v) in row.iter_mut().enumerate() {
                                let (r, c) = (2 * ty + a, 2 * tx + b);
                                if let (Some(r), Some(c)) =
                                    (r.checked_sub(p.pad_top), c.checked_sub(p.pad_left))
                                    && r < h
                                    && c < w
                                {
                                    *v = f64::from(
                                        input[((n * p.in_channels + ci) * h + r) * w + c].abs(),
                                    );
                                }
                            }
                        }
                        let big = may_overflow(fa.iter().flatten().sum())
                            || may_overflow(da.iter().flatten().sum());
                        let (u, v) = (sandwich(&G, &fa), sandwich(&BT, &da));
                        for i in 0..4 {
                            for k in 0..4 {
                                let (u, v) = (u[i][k], v[i][k]);
                                m[i][k] += if (big || u.is_infinite() || v.is_infinite())
                                    && !u.is_nan()
                                    && !v.is_nan()
                                {
                                    f64::INFINITY // (even against a zero)
                                } else {
                                    u * v
                                };
                            }
                        }
                    }
                    let b = bias.map_or(0.0, |b| f64::from(b[co].abs()));
                    for (yi, ati) in AT.iter().enumerate() {
                        for (xi, atk) in AT.iter().enumerate() {
                            let (oh, ow) = (2 * ty + yi, 2 * tx + xi);
                            if oh >= d.out_h || ow >= d.out_w {
                                continue;
                            }
                            let mut acc = b;
                            for i in (0..4).filter(|&i| ati[i]) {
                                for k in (0..4).filter(|&k| atk[k]) {
                                    acc += m[i][k];
                                }
                            }
                            magnitude[((n * p.out_channels + co) * d.out_h + oh) * d.out_w + ow] =
                                acc as f32;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reference for [`crate::conv2d_backward_input`].
///
/// # Errors
/// As [`crate::conv2d_backward_input`] (no scratch).
pub fn conv2d_backward_input(
    p: &Conv2dParams,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward_input(p, weight, grad_output, grad_input)?;
    let (h, w, kh_n, kw_n) = (p.in_h, p.in_w, p.kernel_h, p.kernel_w);
    let cin_g = d.in_per_group;
    // Accumulate in f64 per input element, then round once.
    // (Gather formulation: for each input pixel, sum over the taps that reach it.)
    for n in 0..p.batch {
        for ci in 0..p.in_channels {
            let g = ci / cin_g;
            let cig = ci % cin_g;
            for ih in 0..h {
                for iw in 0..w {
                    let mut acc = 0.0_f64;
                    for col in g * d.out_per_group..(g + 1) * d.out_per_group {
                        for kh in 0..kh_n {
                            let pos_h = ih + p.pad_top;
                            let kh_off = kh * p.dilation_h;
                            if pos_h < kh_off || !(pos_h - kh_off).is_multiple_of(p.stride_h) {
                                continue;
                            }
                            let oh = (pos_h - kh_off) / p.stride_h;
                            if oh >= d.out_h {
                                continue;
                            }
                            for kw in 0..kw_n {
                                let pos_w = iw + p.pad_left;
                                let kw_off = kw * p.dilation_w;
                                if pos_w < kw_off || !(pos_w - kw_off).is_multiple_of(p.stride_w) {
                                    continue;
                                }
                                let ow = (pos_w - kw_off) / p.stride_w;
                                if ow >= d.out_w {
                                    continue;
                                }
                                let gy = grad_output
                                    [((n * p.out_channels + col) * d.out_h + oh) * d.out_w + ow];
                                let wt = weight[((col * cin_g + cig) * kh_n + kh) * kw_n + kw];
                                acc += f64::from(gy) * f64::from(wt);
                            }
                        }
                    }
                    grad_input[((n * p.in_channels + ci) * h + ih) * w + iw] = acc as f32;
                }
            }
        }
    }
    Ok(())
}

/// Reference for [`crate::conv2d_backward_weight`].
///
/// # Errors
/// As [`crate::conv2d_backward_weight`] (no scratch).
pub fn conv2d_backward_weight(
    p: &Conv2dParams,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward_weight(p, input, grad_output, grad_weight)?;
    let (h, w, kh_n, kw_n) = (p.in_h, p.in_w, p.kernel_h, p.kernel_w);
    let cin_g = d.in_per_group;
    for co in 0..p.out_channels {
        let g = co / d.out_per_group;
        for cig in 0..cin_g {
            let ci = g * cin_g + cig;
            for kh in 0..kh_n {
                for kw in 0..kw_n {
                    let mut acc = 0.0_f64;
                    for n in 0..p.batch {
                        let plane = &input[(n * p.in_channels + ci) * h * w..][..h * w];
                        for oh in 0..d.out_h {
                            for ow in 0..d.out_w {
                                let x = tap_value(p, plane, oh, ow, kh, kw);
                                let gy = grad_output
                                    [((n * p.out_channels + co) * d.out_h + oh) * d.out_w + ow];
                                acc += f64::from(x) * f64::from(gy);
                            }
                        }
                    }
                    grad_weight[((co * cin_g + cig) * kh_n + kh) * kw_n + kw] = acc as f32;
                }
            }
        }
    }
    Ok(())
}

/// Reference for [`crate::conv2d_backward_bias`].
///
/// # Errors
/// As [`crate::conv2d_backward_bias`].
pub fn conv2d_backward_bias(
    p: &Conv2dParams,
    grad_output: &[f32],
    grad_bias: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward_bias(p, grad_output, grad_bias)?;
    for (co, gb) in grad_bias.iter_mut().enumerate() {
        let mut acc = 0.0_f64;
        for n in 0..p.batch {
            let plane = &grad_output[(n * p.out_channels + co) * d.col_cols..][..d.col_cols];
            acc += plane.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
        *gb = acc as f32;
    }
    Ok(())
}

/// Reference for [`crate::im2col`].
///
/// # Errors
/// As [`crate::im2col`].
pub fn im2col(p: &Conv2dParams, image: &[f32], col: &mut [f32]) -> Result<(), KernelError> {
    let d = check_im2col(p, image, col)?;
    for ci in 0..p.in_channels {
        for kh in 0..p.kernel_h {
            for kw in 0..p.kernel_w {
                let r = (ci * p.kernel_h + kh) * p.kernel_w + kw;
                let plane = &image[ci * p.in_h * p.in_w..][..p.in_h * p.in_w];
                for oh in 0..d.out_h {
                    for ow in 0..d.out_w {
                        col[r * d.col_cols + oh * d.out_w + ow] =
                            tap_value(p, plane, oh, ow, kh, kw);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reference for [`crate::col2im`].
///
/// # Errors
/// As [`crate::col2im`].
pub fn col2im(p: &Conv2dParams, col: &[f32], image: &mut [f32]) -> Result<(), KernelError> {
    let d = check_im2col(p, image, col)?;
    image.fill(0.0);
    for ci in 0..p.in_channels {
        for kh in 0..p.kernel_h {
            for kw in 0..p.kernel_w {
                let r = (ci * p.kernel_h + kh) * p.kernel_w + kw;
                for oh in 0..d.out_h {
                    for ow in 0..d.out_w {
                        let ih = tap(oh, kh, p.stride_h, p.dilation_h, p.pad_top, p.in_h);
                        let iw = tap(ow, kw, p.stride_w, p.dilation_w, p.pad_left, p.in_w);
                        if let (Some(ih), Some(iw)) = (ih, iw) {
                            image[(ci * p.in_h + ih) * p.in_w + iw] +=
                                col[r * d.col_cols + oh * d.out_w + ow];
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
