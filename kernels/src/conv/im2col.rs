//! im2col / col2im and the im2col + SGEMM convolution.
//!
//! The im2col matrix of one image has a row per `(channel, kh, kw)` (in that order, so a
//! group's rows are contiguous) and a column per output pixel `(oh, ow)`; the convolution
//! of group `g` is then `W_g [M x K] * col_g [K x N]` with `M = out_per_group`,
//! `K = in_per_group * kh * kw` and `N = out_h * out_w`.

use super::{check_forward, check_im2col, is_pointwise};
use crate::error::KernelError;
use crate::gemm::{Bias, Epilogue, MatRef, gemm, sgemm_scratch_len};
use crate::params::{Activation, Conv2dDims, Conv2dParams, add, check_scratch, mul, valid_range};

/// Writes the im2col rows of channels `c0..c0 + channels` of `image` into `col`
/// (`channels * kh * kw` rows of `out_h * out_w`).
pub(crate) fn im2col_channels(
    p: &Conv2dParams,
    d: &Conv2dDims,
    image: &[f32],
    c0: usize,
    channels: usize,
    col: &mut [f32],
) {
    let (h, w) = (p.in_h, p.in_w);
    let (oh_n, ow_n) = (d.out_h, d.out_w);
    let n = d.col_cols;
    let mut rows = col.chunks_exact_mut(n);
    for ci in c0..c0 + channels {
        let plane = &image[ci * h * w..][..h * w];
        for kh in 0..p.kernel_h {
            let (oh_lo, oh_hi) = valid_range(oh_n, p.stride_h, kh * p.dilation_h, p.pad_top, h);
            for kw in 0..p.kernel_w {
                let Some(row) = rows.next() else { return };
                let off = kw * p.dilation_w;
                let (ow_lo, ow_hi) = valid_range(ow_n, p.stride_w, off, p.pad_left, w);
                for (oh, seg) in row.chunks_exact_mut(ow_n).enumerate() {
                    if oh < oh_lo || oh >= oh_hi || ow_lo == ow_hi {
                        seg.fill(0.0);
                        continue;
                    }
                    let ih = oh * p.stride_h + kh * p.dilation_h - p.pad_top;
                    let src = &plane[ih * w..][..w];
                    seg[..ow_lo].fill(0.0);
                    seg[ow_hi..].fill(0.0);
                    let start = ow_lo * p.stride_w + off - p.pad_left;
                    if p.stride_w == 1 {
                        seg[ow_lo..ow_hi].copy_from_slice(&src[start..][..ow_hi - ow_lo]);
                    } else {
                        for (o, v) in seg[ow_lo..ow_hi].iter_mut().enumerate() {
                            *v = src[start + o * p.stride_w];
                        }
                    }
                }
            }
        }
    }
}

/// Overwrites channels `c0..c0 + channels` of `image` with the sum of the im2col entries
/// of `col` that map to each pixel (the adjoint of [`im2col_channels`]).
pub(crate) fn col2im_channels(
    p: &Conv2dParams,
    d: &Conv2dDims,
    col: &[f32],
    c0: usize,
    channels: usize,
    image: &mut [f32],
) {
    let (h, w) = (p.in_h, p.in_w);
    let (oh_n, ow_n) = (d.out_h, d.out_w);
    let n = d.col_cols;
    image[c0 * h * w..][..channels * h * w].fill(0.0);
    let mut rows = col.chunks_exact(n);
    for ci in c0..c0 + channels {
        let plane = &mut image[ci * h * w..][..h * w];
        for kh in 0..p.kernel_h {
            let (oh_lo, oh_hi) = valid_range(oh_n, p.stride_h, kh * p.dilation_h, p.pad_top, h);
            for kw in 0..p.kernel_w {
                let Some(row) = rows.next() else { return };
                let off = kw * p.dilation_w;
                let (ow_lo, ow_hi) = valid_range(ow_n, p.stride_w, off, p.pad_left, w);
                if ow_lo == ow_hi {
                    continue;
                }
                for oh in oh_lo..oh_hi {
                    let seg = &row[oh * ow_n..][..ow_n];
                    let ih = oh * p.stride_h + kh * p.dilation_h - p.pad_top;
                    let dst = &mut plane[ih * w..][..w];
                    let start = ow_lo * p.stride_w + off - p.pad_left;
                    if p.stride_w == 1 {
                        for (d, s) in dst[start..][..ow_hi - ow_lo]
                            .iter_mut()
                            .zip(&seg[ow_lo..ow_hi])
                        {
                            *d += s;
                        }
                    } else {
                        for (o, &s) in seg[ow_lo..ow_hi].iter().enumerate() {
                            dst[start + o * p.stride_w] += s;
                        }
                    }
                }
            }
        }
    }
}

/// Unfolds one image `[in_channels, in_h, in_w]` into its im2col matrix `col`
/// `[in_channels * kernel_h * kernel_w, out_h * out_w]` (row `(c, kh, kw)`, column
/// `(oh, ow)`; taps in the padding are 0). `p.batch` is checked but not used.
///
/// # Errors
/// As [`Conv2dParams::dims`]; [`KernelError::LengthMismatch`] unless
/// `image.len() == dims.image_len` and `col.len() == dims.col_len`.
///
/// ```
/// use cnnkit_kernels::{im2col, Conv2dParams};
/// let p = Conv2dParams::new(1, 1, 2, 2, 1, 2, 2).with_padding(0, 1, 0, 0);
/// let mut col = [0.0; 8]; // 4 taps x 2 output pixels
/// im2col(&p, &[1.0, 2.0, 3.0, 4.0], &mut col).unwrap();
/// assert_eq!(col, [1.0, 3.0, 2.0, 4.0, 3.0, 0.0, 4.0, 0.0]);
/// ```
pub fn im2col(p: &Conv2dParams, image: &[f32], col: &mut [f32]) -> Result<(), KernelError> {
    let d = check_im2col(p, image, col)?;
    im2col_channels(p, &d, image, 0, p.in_channels, col);
    Ok(())
}

/// Folds an im2col matrix back into one image, summing the entries that map to the same
/// pixel (the adjoint of [`im2col`]); `image` is overwritten.
///
/// # Errors
/// As [`im2col`].
pub fn col2im(p: &Conv2dParams, col: &[f32], image: &mut [f32]) -> Result<(), KernelError> {
    let d = check_im2col(p, image, col)?;
    col2im_channels(p, &d, col, 0, p.in_channels, image);
    Ok(())
}

/// Scratch elements [`conv2d_im2col`] needs: one group's im2col matrix of one image
/// (none for 1x1 stride-1 unpadded kernels) plus the SGEMM packing buffers.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_im2col_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    let d = p.dims()?;
    let gemm = sgemm_scratch_len(d.out_per_group, d.col_cols, d.col_rows);
    if is_pointwise(p) {
        Ok(gemm)
    } else {
        add(mul(d.col_rows, d.col_cols)?, gemm)
    }
}

/// Convolution forward pass by im2col + SGEMM, bias and clamp fused into the GEMM's store.
/// Arguments as [`crate::conv2d`].
///
/// # Errors
/// As [`crate::conv2d`], with [`conv2d_im2col_scratch_len`] as the scratch requirement.
pub fn conv2d_im2col(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (d, lo, hi) = check_forward(p, input, weight, bias, act, output)?;
    check_scratch(conv2d_im2col_scratch_len(p)?, scratch.len())?;
    let (m, n, k) = (d.out_per_group, d.col_cols, d.col_rows);
    let pointwise = is_pointwise(p);
    let (col, gemm_scratch) = scratch.split_at_mut(if pointwise { 0 } else { k * n });
    for (img, out_img) in input
        .chunks_exact(d.image_len)
        .zip(output.chunks_exact_mut(d.out_image_len))
    {
        for g in 0..p.groups {
            let w_g = &weight[g * m * k..][..m * k];
            let out_g = &mut out_img[g * m * n..][..m * n];
            let b = if pointwise {
                &img[g * k * n..][..k * n]
            } else {
                im2col_channels(p, &d, img, g * d.in_per_group, d.in_per_group, col);
                &col[..]
            };
            let ep = Epilogue {
                bias: bias.map_or(Bias::None, |b| Bias::Row(&b[g * m..][..m])),
                lo,
                hi,
                ..Epilogue::plain()
            };
            gemm(
                m,
                n,
                k,
                MatRef::rows(w_g, k),
                MatRef::rows(b, n),
                out_g,
                n,
                &ep,
                gemm_scratch,
            );
        }
    }
    Ok(())
}
