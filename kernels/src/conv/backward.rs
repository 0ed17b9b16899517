//! Convolution backward passes: the input gradient with eight images in the vector lanes
//! for stride-1 layers with small gradient planes, 4 or more input channels per group, 8
//! or more images and finite weights (`lanes`), over flat planes for other such layers
//! (`flat`, depthwise layers too; those it
//! does not take go row by row in `depthwise`), otherwise as `W_g^T * dY_g`
//! followed by col2im (straight into the input gradient for 1x1 stride-1 unpadded
//! kernels); the weight gradient as `sum_n dY_g * col_g^T` (by the implicit GEMM, over flat
//! planes or row by row for few input channels, or im2col + GEMM for tiny output planes);
//! and the bias gradient as a sum.

use super::im2col::{
    ColBlock, Plan, block_cols, col2im_batched, col2im_block, for_image_runs, im2col_batched,
    im2col_block, im2col_packed_t, unpadded,
};
use super::{
    Conv2dInputGradPlan, Conv2dWeightGradPlan, check_backward_bias, depthwise, is_pointwise,
};
use crate::arch;
use crate::error::KernelError;
use crate::gemm::{
    AOp, BOp, Epilogue, MatRef, NR_MAX, gemm, gemm_ops, gemm_packed, nr_of, pack_a_all,
    packed_a_len, sgemm_scratch_len,
};
use crate::params::{Conv2dDims, Conv2dParams, add, mul};
use crate::simd::sum_all;

/// Scratch elements [`conv2d_backward_input`] needs.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_backward_input_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    Ok(Conv2dInputGradPlan::new(p)?.scratch_len())
}

/// The input gradient of a stride-1, undilated layer as a forward convolution:
/// `dX = conv(dY, W')` with `W'[g][c, o, a, b] = W[g][o, c, kh - 1 - a, kw - 1 - b]` (the
/// kernel flipped, input and output channels swapped within each group) and padding
/// `k - 1 - pad` on each side (so `pad < k`). This runs the forward pass's GEMM (`k` =
/// taps x output channels, deep) where `W^T * dY` has a shallow one (`k` = output
/// channels) and a col2im scatter: ResNet's 128-channel 3x3 layer (8 images) measured
/// 28.2-33.9 -> 26.5-27.5 ms here, three interleaved pairs; a 3x3 layer wide enough for
/// Winograd's algorithm (see `Conv2dAlgo::Winograd`) gets it here too, with its rounding
/// and its handling of infinities in `dY`. For layers the flat planes do
/// not take, with 8 or more input channels per group (the forward pass's implicit GEMM or
/// im2col, not its direct kernel for few outputs); only for finite weights, as `flat`
/// (the forward pass multiplies them by the explicit zeros of its padding, terms the
/// exact sum does not have).
pub(super) fn as_forward(p: &Conv2dParams, d: &Conv2dDims) -> Option<Conv2dParams> {
    let fits = super::unit_stride_not_pointwise(p)
        && !depthwise::applies(p, d)
        && d.in_per_group >= 8
        && p.pad_top < p.kernel_h
        && p.pad_bottom < p.kernel_h
        && p.pad_left < p.kernel_w
        && p.pad_right < p.kernel_w;
    fits.then(|| {
        Conv2dParams::new(
            p.batch,
            p.out_channels,
            d.out_h,
            d.out_w,
            p.in_channels,
            p.kernel_h,
            p.kernel_w,
        )
        .with_padding(
            p.kernel_h - 1 - p.pad_top,
            p.kernel_h - 1 - p.pad_bottom,
            p.kernel_w - 1 - p.pad_left,
            p.kernel_w - 1 - p.pad_right,
        )
        .with_groups(p.groups)
    })
}

/// [`as_forward`]'s weights `W'` from `W` (`[out_channels, in_per_group, kh, kw]`) into
/// `dst` (`[in_channels, out_per_group, kh, kw]`).
fn flip_weights(p: &Conv2dParams, d: &Conv2dDims, weight: &[f32], dst: &mut [f32]) {
    let (m, c_in, taps) = (d.out_per_group, d.in_per_group, p.kernel_h * p.kernel_w);
    for g in 0..p.groups {
        let w_g = &weight[g * m * c_in * taps..][..m * c_in * taps];
        let dst_g = &mut dst[g * m * c_in * taps..][..m * c_in * taps];
        for c in 0..c_in {
            for o in 0..m {
                let src = &w_g[(o * c_in + c) * taps..][..taps];
                let out = &mut dst_g[(c * m + o) * taps..][..taps];
                for (t, v) in out.iter_mut().enumerate() {
                    *v = src[taps - 1 - t];
                }
            }
        }
    }
}

/// Scratch for the input gradient by `W^T * dY` and col2im.
pub(super) fn gemm_input_scratch_len(
    p: &Conv2dParams,
    d: &Conv2dDims,
) -> Result<usize, KernelError> {
    let plan = Plan::new(p, d)?;
    if plan.batched {
        let nb = plan.nb;
        let bufs = add(mul(d.col_rows, nb)?, mul(d.out_per_group, nb)?)?;
        let packed_wt = mul(d.col_rows + 16, d.out_per_group)?;
        return add(
            add(bufs, packed_wt)?,
            sgemm_scratch_len(d.col_rows, nb, d.out_per_group),
        );
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
    Conv2dInputGradPlan::new(p)?.run(weight, grad_output, grad_input, scratch)
}

/// The input gradient through [`as_forward`]'s convolution, whose plan is `fwd`: the
/// weights flipped into the front of `scratch`, the forward pass behind them.
pub(super) fn as_forward_input(
    p: &Conv2dParams,
    d: &Conv2dDims,
    fwd: &super::Conv2dPlan,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (flipped, rest) = scratch.split_at_mut(d.weight_len);
    flip_weights(p, d, weight, flipped);
    fwd.run_unchecked(
        grad_output,
        flipped,
        None,
        (f32::NEG_INFINITY, f32::INFINITY),
        grad_input,
        rest,
    )
}

/// The input gradient as `W_g^T * dY_g` and col2im (straight into the input gradient for
/// 1x1 stride-1 unpadded kernels), batch-wide blocks for small planes; arguments
/// validated by the caller, `scratch` holds [`gemm_input_scratch_len`] floats (the
/// plain GEMM's for pointwise kernels).
pub(super) fn gemm_input(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let d = *d;
    let plan = Plan::new(p, &d)?;
    if plan.batched {
        backward_input_batched(p, &d, plan.nb, weight, grad_output, grad_input, scratch);
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
                let blk = ColBlock::group(&d, g, j0, nb, nb);
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
    Ok(Conv2dWeightGradPlan::new(p)?.scratch_len())
}

/// Scratch of [`gemm_weight`].
pub(super) fn gemm_weight_scratch_len(
    p: &Conv2dParams,
    d: &Conv2dDims,
) -> Result<usize, KernelError> {
    if is_pointwise(p) {
        return Ok(sgemm_scratch_len(d.out_per_group, d.col_rows, d.col_cols));
    }
    let plan = Plan::new(p, d)?;
    if plan.batched {
        let nb = plan.nb;
        // (the block is packed for the GEMM: whole slivers of up to NR_MAX taps)
        let bufs = add(mul(d.col_rows + NR_MAX, nb)?, mul(d.out_per_group, nb)?)?;
        return add(bufs, sgemm_scratch_len(d.out_per_group, d.col_rows, nb));
    }
    let nb = block_cols(d.col_rows, d.col_cols);
    add(
        mul(d.col_rows, nb)?,
        sgemm_scratch_len(d.out_per_group, d.col_rows, nb),
    )
}

/// Whether the weight gradient goes by the implicit GEMM (`implicit::backward_weight`):
/// not for 1x1 stride-1 unpadded kernels (a plain GEMM on the input), nor for output
/// planes under 16 pixels, where the per-image pass over the transposed gradient would
/// outweigh the work (the batched GEMM spans images there).
pub(super) fn implicit_weight(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    !is_pointwise(p) && d.col_cols >= 16
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
    Conv2dWeightGradPlan::new(p)?.run(input, grad_output, grad_weight, scratch)
}

/// The weight gradient as `sum_n dY_g * col_g^T` by im2col + GEMM (the input planes
/// themselves for 1x1 stride-1 unpadded kernels), batch-wide blocks for small planes;
/// arguments validated by the caller, `scratch` holds [`gemm_weight_scratch_len`] floats.
pub(super) fn gemm_weight(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let d = *d;
    let plan = Plan::new(p, &d)?;
    if plan.batched {
        backward_weight_batched(p, &d, plan.nb, input, grad_output, grad_weight, scratch);
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
                    let blk = ColBlock::group(&d, g, j0, nb, nb);
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
    let n = d.col_cols;
    for (c, gb) in grad_bias.iter_mut().enumerate() {
        let planes = grad_output.chunks_exact(d.out_image_len);
        *gb = sum_all(planes.map(|gy| &gy[c * n..(c + 1) * n]));
    }
    Ok(())
}

/// Copies the columns `jb..jb + nb` of the batch-wide output gradient of group `g`
/// (image `j / n`, pixel `j % n`) into `gyb` (`m` rows of `nb`).
fn gather_grad_output(
    d: &Conv2dDims,
    g: usize,
    grad_output: &[f32],
    jb: usize,
    nb: usize,
    gyb: &mut [f32],
) {
    let (m, n) = (d.out_per_group, d.col_cols);
    for_image_runs(jb, nb, n, |img, j0, len, at| {
        let gy_g = &grad_output[img * d.out_image_len + g * m * n..][..m * n];
        for r in 0..m {
            gyb[r * nb + at..][..len].copy_from_slice(&gy_g[r * n + j0..][..len]);
        }
    });
}

/// [`conv2d_backward_input`] for small images: column blocks span several images, so one
/// GEMM `W_g^T * dY_block` serves them all.
fn backward_input_batched(
    p: &Conv2dParams,
    d: &Conv2dDims,
    nb_max: usize,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) {
    let (m, n, k) = (d.out_per_group, d.col_cols, d.col_rows);
    let (col, rest) = scratch.split_at_mut(k * nb_max);
    let (gyb, rest) = rest.split_at_mut(m * nb_max);
    let (packed_wt, gemm_scratch) = rest.split_at_mut(packed_a_len(k, m));
    let isa = arch::active();
    let total = p.batch * n;
    grad_input.fill(0.0);
    for g in 0..p.groups {
        pack_a_all(
            isa,
            k,
            m,
            MatRef::transposed(&weight[g * m * k..][..m * k], k),
            packed_wt,
        );
        let mut jb = 0;
        while jb < total {
            let nb = nb_max.min(total - jb);
            gather_grad_output(d, g, grad_output, jb, nb, gyb);
            let cb = &mut col[..k * nb];
            let b = MatRef::rows(&gyb[..m * nb], nb);
            gemm_packed(
                isa,
                k,
                nb,
                m,
                packed_wt,
                b,
                cb,
                nb,
                &Epilogue::plain(),
                gemm_scratch,
            );
            if unpadded(p) {
                // no padding: every tap is inside, so the scatter-add needs no checks
                col2im_batched(p, d, cb, nb, g, jb, nb, grad_input);
            } else {
                for_image_runs(jb, nb, n, |img, j0, len, at| {
                    let gx = &mut grad_input[img * d.image_len..][..d.image_len];
                    let blk = ColBlock::group(d, g, j0, len, nb);
                    col2im_block(p, d, &cb[at..], blk, gx);
                });
            }
            jb += nb;
        }
    }
}

/// [`conv2d_backward_weight`] for small images: one GEMM `dY_block * col_block^T` per
/// block of columns spanning several images, accumulating into the weight gradient.
fn backward_weight_batched(
    p: &Conv2dParams,
    d: &Conv2dDims,
    nb_max: usize,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) {
    let (m, n, k) = (d.out_per_group, d.col_cols, d.col_rows);
    let (col, rest) = scratch.split_at_mut((k + NR_MAX) * nb_max);
    let (gyb, gemm_scratch) = rest.split_at_mut(m * nb_max);
    let total = p.batch * n;
    let isa = arch::active();
    for g in 0..p.groups {
        let gw = &mut grad_weight[g * m * k..][..m * k];
        let mut jb = 0;
        while jb < total {
            let nb = nb_max.min(total - jb);
            let b = if unpadded(p) {
                // col_block^T straight in the GEMM's packed-B layout (with padding, the
                // taps' checks cost more than the GEMM's own packing pass saves)
                im2col_packed_t(p, d, input, g, jb, nb, nr_of(isa), col);
                BOp::Packed(col)
            } else {
                im2col_batched(p, d, input, g, jb, nb, col);
                BOp::Mat(MatRef::transposed(&col[..k * nb], nb))
            };
            gather_grad_output(d, g, grad_output, jb, nb, gyb);
            // the first block overwrites, the rest accumulate
            let ep = Epilogue {
                beta: if jb == 0 { 0.0 } else { 1.0 },
                ..Epilogue::plain()
            };
            let a = AOp::Mat(MatRef::rows(&gyb[..m * nb], nb));
            gemm_ops(isa, m, k, nb, a, b, gw, k, &ep, gemm_scratch);
            jb += nb;
        }
    }
}
