//! Weight gradient by im2col and GEMM: `dW_g = sum over the batch of dY_g * col_g^T`
//! (the input planes themselves for 1x1 stride-1 unpadded kernels); for small planes the
//! column blocks span several images (`im2col::Plan`).

use super::im2col::gather_grad_output;
use super::im2col::{
    ColBlock, Plan, block_cols, im2col_batched, im2col_block, im2col_packed_t, unpadded,
};
use super::is_pointwise;
use crate::arch;
use crate::error::KernelError;
use crate::gemm::{AOp, BOp, Epilogue, MatRef, NR_MAX, gemm, gemm_ops, nr_of, sgemm_scratch_len};
use crate::params::{Conv2dDims, Conv2dParams, add, mul};

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

/// The weight gradient as `sum_n dY_g * col_g^T` by im2col + GEMM (the input planes
/// themselves for 1x1 stride-1 unpadded kernels), batch-wide blocks for small planes;
/// arguments validated by the caller, `scratch` holds [`gemm_weight_scratch_len`] floats.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn gemm_weight(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (p, d) = (&{ *p }, *d);
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
