//! Forward pass by im2col + SGEMM: per group `Y_g = W_g [M x K] * col_g [K x N]` with
//! `M = out_per_group`, `K = in_per_group * kh * kw`, `N = out_h * out_w`, the bias and the
//! clamp in the GEMM's store. 1x1 stride-1 unpadded kernels need no im2col: the input
//! planes are the GEMM's B, and each group's weights are packed once for the batch. On
//! small planes the column blocks span several images and im2col writes them straight in
//! the GEMM's packed layout (`im2col::Plan`).

use super::im2col::{ColBlock, Plan, for_image_runs, im2col_block, im2col_packed};
use crate::arch;
use crate::error::KernelError;
use crate::gemm::{
    Bias, Epilogue, MatRef, NR_MAX, gemm_packed, gemm_prepacked, nr_of, pack_a_all, packed_a_len,
    sgemm_scratch_len,
};
use crate::params::{Activation, Conv2dDims, Conv2dParams, add, mul};

/// The GEMM epilogue of group `g` (`m` output channels): its biases, the clamp.
fn group_epilogue<'a>(
    bias: Option<&'a [f32]>,
    g: usize,
    m: usize,
    lo: f32,
    hi: f32,
) -> Epilogue<'a> {
    Epilogue {
        bias: bias.map_or(Bias::None, |b| Bias::Row(&b[g * m..][..m])),
        lo,
        hi,
        ..Epilogue::plain()
    }
}

/// Scratch elements [`conv2d_im2col`] needs: one block of one group's im2col matrix
/// (about 512 KiB whatever the image size; none for 1x1 stride-1 unpadded kernels), one
/// group's packed weights, and the SGEMM packing buffers.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_im2col_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    Ok(super::Conv2dPlan::for_algo(p, super::Conv2dAlgo::Im2col)?.scratch_len())
}

/// Scratch of [`forward`].
pub(super) fn forward_scratch_len(p: &Conv2dParams, d: &Conv2dDims) -> Result<usize, KernelError> {
    let d = *d;
    let plan = Plan::new(p, &d)?;
    if plan.pointwise {
        // one group's packed weights (packed once for every image) and the B packing
        return add(
            packed_a_len(d.out_per_group, d.col_rows),
            sgemm_scratch_len(d.out_per_group, d.col_cols, d.col_rows),
        );
    }
    // (batched blocks are packed for the GEMM: whole slivers of up to NR_MAX columns)
    let col = mul(d.col_rows, plan.nb + if plan.batched { NR_MAX } else { 0 })?;
    let packed_w = mul(d.out_per_group + 16, d.col_rows)?;
    let c_block = if plan.batched {
        mul(d.out_per_group, plan.nb)?
    } else {
        0
    };
    let gemm = sgemm_scratch_len(d.out_per_group, plan.nb, d.col_rows);
    add(add(add(col, packed_w)?, c_block)?, gemm)
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
    super::Conv2dPlan::for_algo(p, super::Conv2dAlgo::Im2col)?
        .run(input, weight, bias, act, output, scratch)
}

/// The forward pass by im2col + GEMM (1x1 stride-1 unpadded kernels straight by GEMM);
/// arguments validated by the caller (the plan), `scratch` holds
/// [`conv2d_im2col_scratch_len`] floats.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    (lo, hi): (f32, f32),
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (p, d) = (&{ *p }, *d);
    let (m, n, k) = (d.out_per_group, d.col_cols, d.col_rows);
    let plan = Plan::new(p, &d)?;
    let pointwise = plan.pointwise;
    let nb_max = plan.nb;
    let col_len = match () {
        _ if pointwise => 0,
        _ if plan.batched => k * (nb_max + NR_MAX),
        _ => k * nb_max,
    };
    let (col, rest) = scratch.split_at_mut(col_len);
    let (packed_w, rest) = rest.split_at_mut(packed_a_len(m, k));
    let isa = arch::active();
    if pointwise {
        // groups outside, images inside: each group's weights are packed once for the
        // whole batch (the plain `gemm` would pack them again for every image: 256 x 256
        // weights against 196-pixel planes measured 3-7% of the layer)
        for g in 0..p.groups {
            let w_g = MatRef::rows(&weight[g * m * k..][..m * k], k);
            pack_a_all(isa, m, k, w_g, packed_w);
            let ep = group_epilogue(bias, g, m, lo, hi);
            for (img, out_img) in input
                .chunks_exact(d.image_len)
                .zip(output.chunks_exact_mut(d.out_image_len))
            {
                let b = MatRef::rows(&img[g * k * n..][..k * n], n);
                let out_g = &mut out_img[g * m * n..][..m * n];
                gemm_packed(isa, m, n, k, packed_w, b, out_g, n, &ep, rest);
            }
        }
        return Ok(());
    }
    if plan.batched {
        let c_block = &mut rest[..m * nb_max];
        let total = p.batch * n;
        for g in 0..p.groups {
            let w_g = MatRef::rows(&weight[g * m * k..][..m * k], k);
            pack_a_all(isa, m, k, w_g, packed_w);
            let ep = group_epilogue(bias, g, m, lo, hi);
            let mut jb = 0;
            while jb < total {
                let nb = nb_max.min(total - jb);
                im2col_packed(p, &d, input, g, jb, nb, nr_of(isa), col);
                gemm_prepacked(isa, m, nb, k, packed_w, col, c_block, nb, &ep);
                // copy each image's columns out to its output planes
                for_image_runs(jb, nb, n, |img_i, j0, len, at| {
                    let out_g = &mut output[img_i * d.out_image_len + g * m * n..][..m * n];
                    for r in 0..m {
                        out_g[r * n + j0..][..len].copy_from_slice(&c_block[r * nb + at..][..len]);
                    }
                });
                jb += nb;
            }
        }
        return Ok(());
    }
    let gemm_scratch = rest;
    for (img, out_img) in input
        .chunks_exact(d.image_len)
        .zip(output.chunks_exact_mut(d.out_image_len))
    {
        for g in 0..p.groups {
            let w_g = MatRef::rows(&weight[g * m * k..][..m * k], k);
            let out_g = &mut out_img[g * m * n..][..m * n];
            let ep = group_epilogue(bias, g, m, lo, hi);
            // the group's weights are packed once and serve every column block
            pack_a_all(isa, m, k, w_g, packed_w);
            let mut j0 = 0;
            while j0 < n {
                let nb = nb_max.min(n - j0);
                let blk = ColBlock::group(&d, g, j0, nb, nb);
                im2col_block(p, &d, img, blk, col);
                // C: the block's columns of every output channel of the group (ldc = n)
                let b = MatRef::rows(&col[..k * nb], nb);
                let c = &mut out_g[j0..];
                gemm_packed(isa, m, nb, k, packed_w, b, c, n, &ep, gemm_scratch);
                j0 += nb;
            }
        }
    }
    Ok(())
}
