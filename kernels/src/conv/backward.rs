//! Convolution backward passes by GEMM: the input gradient as `W_g^T * dY_g` followed by
//! col2im (straight into the input gradient for 1x1 stride-1 unpadded kernels), the
//! weight gradient as `sum_n dY_g * col_g^T`, and the bias gradient as a sum.

use super::depthwise;
use super::im2col::{ColBlock, block_cols, col2im_block, im2col_block};
use super::{check_backward_bias, check_backward_input, check_backward_weight, is_pointwise};
use crate::arch;
use crate::error::KernelError;
use crate::gemm::{
    Epilogue, MatRef, gemm, gemm_packed, pack_a_all, packed_a_len, sgemm_scratch_len,
};
use crate::params::{Conv2dParams, add, check_scratch, mul};
use crate::simd::sum;

/// Scratch elements [`conv2d_backward_input`] needs.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_backward_input_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    let d = p.dims()?;
    if depthwise::applies(p, &d) {
        return Ok(0);
    }
    if is_pointwise(p) {
        return Ok(sgemm_scratch_len(d.col_rows, d.col_cols, d.out_per_group));
    }
    let nb = block_cols(d.col_rows, d.col_cols);
    let col = mul(d.col_rows, nb)?;
    let packed_wt = mul(d.col_rows + 16, d.out_per_group)?;
    add(
        add(col, packed_wt)?,
        sgemm_scratch_len(d.col_rows, nb, d.out_per_group),
    )
}

/// Gradient of the loss with respect to the convolution's input, from the gradient with
/// respect to its output (before the epilogue clamp: apply
/// [`crate::activation_backward`] first if the forward pass clamped).
///
/// `weight` is `[out_channels, in_channels / groups, kh, kw]`, `grad_output` is
/// `[batch, out_channels, out_h, out_w]`, `grad_input` (`[batch, in_channels, in_h, in_w]`)
/// is overwritten.
///
/// # Errors
/// As [`Conv2dParams::dims`]; [`KernelError::LengthMismatch`];
/// [`KernelError::ScratchTooSmall`] below [`conv2d_backward_input_scratch_len`].
pub fn conv2d_backward_input(
    p: &Conv2dParams,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward_input(p, weight, grad_output, grad_input)?;
    check_scratch(conv2d_backward_input_scratch_len(p)?, scratch.len())?;
    if depthwise::applies(p, &d) {
        depthwise::backward_input(p, &d, weight, grad_output, grad_input);
        return Ok(());
    }
    let (m, n, k) = (d.out_per_group, d.col_cols, d.col_rows);
    let pointwise = is_pointwise(p);
    let nb_max = if pointwise { n } else { block_cols(k, n) };
    let (col, rest) = scratch.split_at_mut(if pointwise { 0 } else { k * nb_max });
    let (packed_wt, gemm_scratch) =
        rest.split_at_mut(if pointwise { 0 } else { packed_a_len(k, m) });
    let isa = arch::active();
    for (gy, gx) in grad_output
        .chunks_exact(d.out_image_len)
        .zip(grad_input.chunks_exact_mut(d.image_len))
    {
        if !pointwise {
            gx.fill(0.0);
        }
        for g in 0..p.groups {
            let w_g = MatRef::transposed(&weight[g * m * k..][..m * k], k);
            let gy_g = &gy[g * m * n..][..m * n];
            let c0 = g * d.in_per_group;
            if pointwise {
                let dst = &mut gx[c0 * n..][..k * n];
                gemm(
                    k,
                    n,
                    m,
                    w_g,
                    MatRef::rows(gy_g, n),
                    dst,
                    n,
                    &Epilogue::plain(),
                    gemm_scratch,
                );
                continue;
            }
            // W_g^T is packed once and serves every column block
            pack_a_all(isa, k, m, w_g, packed_wt);
            let mut j0 = 0;
            while j0 < n {
                let nb = nb_max.min(n - j0);
                let blk = ColBlock {
                    c0,
                    channels: d.in_per_group,
                    j0,
                    nb,
                    ld: nb,
                };
                let cb = &mut col[..k * nb];
                let b = MatRef::rows(&gy_g[j0..], n);
                let ep = Epilogue::plain();
                gemm_packed(isa, k, nb, m, packed_wt, b, cb, nb, &ep, gemm_scratch);
                col2im_block(p, &d, cb, blk, gx);
                j0 += nb;
            }
        }
    }
    Ok(())
}

/// Scratch elements [`conv2d_backward_weight`] needs.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_backward_weight_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    let d = p.dims()?;
    if depthwise::applies(p, &d) {
        return Ok(0);
    }
    if is_pointwise(p) {
        return Ok(sgemm_scratch_len(d.out_per_group, d.col_rows, d.col_cols));
    }
    let nb = block_cols(d.col_rows, d.col_cols);
    add(
        mul(d.col_rows, nb)?,
        sgemm_scratch_len(d.out_per_group, d.col_rows, nb),
    )
}

/// Gradient of the loss with respect to the weights, summed over the batch; `grad_weight`
/// (`[out_channels, in_channels / groups, kh, kw]`) is overwritten.
///
/// # Errors
/// As [`Conv2dParams::dims`]; [`KernelError::LengthMismatch`];
/// [`KernelError::ScratchTooSmall`] below [`conv2d_backward_weight_scratch_len`].
pub fn conv2d_backward_weight(
    p: &Conv2dParams,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward_weight(p, input, grad_output, grad_weight)?;
    check_scratch(conv2d_backward_weight_scratch_len(p)?, scratch.len())?;
    if depthwise::applies(p, &d) {
        depthwise::backward_weight(p, &d, input, grad_output, grad_weight);
        return Ok(());
    }
    let (m, n, k) = (d.out_per_group, d.col_cols, d.col_rows);
    let pointwise = is_pointwise(p);
    let nb_max = if pointwise { n } else { block_cols(k, n) };
    let (col, gemm_scratch) = scratch.split_at_mut(if pointwise { 0 } else { k * nb_max });
    for (i, (x, gy)) in input
        .chunks_exact(d.image_len)
        .zip(grad_output.chunks_exact(d.out_image_len))
        .enumerate()
    {
        for g in 0..p.groups {
            let gy_g = &gy[g * m * n..][..m * n];
            let c0 = g * d.in_per_group;
            let gw = &mut grad_weight[g * m * k..][..m * k];
            let mut j0 = 0;
            while j0 < n {
                let nb = nb_max.min(n - j0);
                let colt = if pointwise {
                    MatRef::transposed(&x[c0 * n..][..k * n], n)
                } else {
                    let blk = ColBlock {
                        c0,
                        channels: d.in_per_group,
                        j0,
                        nb,
                        ld: nb,
                    };
                    im2col_block(p, &d, x, blk, col);
                    MatRef::transposed(&col[..k * nb], nb)
                };
                // the first block of the first image overwrites, the rest accumulate
                let ep = Epilogue {
                    beta: if i == 0 && j0 == 0 { 0.0 } else { 1.0 },
                    ..Epilogue::plain()
                };
                let gy_blk = MatRef::rows(&gy_g[j0..], n);
                gemm(m, k, nb, gy_blk, colt, gw, k, &ep, gemm_scratch);
                j0 += nb;
            }
        }
    }
    Ok(())
}

/// Gradient of the loss with respect to the bias: `grad_output` summed over the batch and
/// the output pixels of each channel; `grad_bias` (`[out_channels]`) is overwritten.
///
/// # Errors
/// As [`Conv2dParams::dims`]; [`KernelError::LengthMismatch`].
pub fn conv2d_backward_bias(
    p: &Conv2dParams,
    grad_output: &[f32],
    grad_bias: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward_bias(p, grad_output, grad_bias)?;
    grad_bias.fill(0.0);
    for gy in grad_output.chunks_exact(d.out_image_len) {
        for (gb, plane) in grad_bias.iter_mut().zip(gy.chunks_exact(d.col_cols)) {
            *gb += sum(plane);
        }
    }
    Ok(())
}
