//! Input gradient by GEMM and col2im: `col_g = W_g^T * dY_g`, scattered back onto the
//! input planes (straight into the input gradient for 1x1 stride-1 unpadded kernels);
//! for small planes the column blocks span several images (`im2col::Plan`). What takes
//! the layers this does not serve well is in `plan.rs`.

use super::im2col::gather_grad_output;
use super::im2col::{
    ColBlock, Plan, block_cols, col2im_batched, col2im_block, for_image_runs, unpadded,
};
use super::is_pointwise;
use crate::arch;
use crate::error::KernelError;
use crate::gemm::{
    Epilogue, MatRef, gemm, gemm_packed, pack_a_all, packed_a_len, sgemm_scratch_len,
};
use crate::params::{Conv2dDims, Conv2dParams, add, mul};

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

/// The input gradient as `W_g^T * dY_g` and col2im (straight into the input gradient for
/// 1x1 stride-1 unpadded kernels), batch-wide blocks for small planes; arguments
/// validated by the caller, `scratch` holds [`gemm_input_scratch_len`] floats (the
/// plain GEMM's for pointwise kernels).
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn gemm_input(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (p, d) = (&{ *p }, *d);
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
