//! Fully connected layers as GEMM: `output = clamp(input * weight^T + bias)` with the
//! bias and clamp fused into the store, and the three backward products.

use crate::error::KernelError;
use crate::gemm::{Bias, Epilogue, MatRef, gemm, sgemm_scratch_len};
use crate::params::{Activation, LinearParams, check_len, check_scratch};
use crate::simd::{LANES, load_partial, store_partial};

/// Scratch elements [`linear`] needs.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`].
pub fn linear_scratch_len(p: &LinearParams) -> Result<usize, KernelError> {
    p.lens()?;
    Ok(sgemm_scratch_len(p.batch, p.out_features, p.in_features))
}

/// Fully connected forward pass: `output[b, o] = clamp(sum_i input[b, i] * weight[o, i] + bias[o])`.
///
/// `input` is `[batch, in]`, `weight` `[out, in]` (PyTorch's layout), `bias` `[out]`,
/// `output` `[batch, out]` (overwritten).
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`], [`KernelError::InvalidParameter`]
/// for a bad clamp, [`KernelError::LengthMismatch`], [`KernelError::ScratchTooSmall`].
///
/// ```
/// use cnnkit_kernels::{linear, linear_scratch_len, Activation, LinearParams};
/// let p = LinearParams::new(1, 2, 2);
/// let mut y = [0.0; 2];
/// let mut s = vec![0.0; linear_scratch_len(&p).unwrap()];
/// linear(&p, &[1.0, 2.0], &[1.0, 1.0, 1.0, -1.0], Some(&[0.0, 0.5]), Activation::Relu, &mut y, &mut s)
///     .unwrap();
/// assert_eq!(y, [3.0, 0.0]);
/// ```
pub fn linear(
    p: &LinearParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (li, lw, lo_len) = p.lens()?;
    let (lo, hi) = act.bounds()?;
    check_len("input", li, input.len())?;
    check_len("weight", lw, weight.len())?;
    if let Some(b) = bias {
        check_len("bias", p.out_features, b.len())?;
    }
    check_len("output", lo_len, output.len())?;
    check_scratch(linear_scratch_len(p)?, scratch.len())?;
    let ep = Epilogue {
        bias: bias.map_or(Bias::None, Bias::Col),
        lo,
        hi,
        ..Epilogue::plain()
    };
    gemm(
        p.batch,
        p.out_features,
        p.in_features,
        MatRef::rows(input, p.in_features),
        MatRef::transposed(weight, p.in_features),
        output,
        p.out_features,
        &ep,
        scratch,
    );
    Ok(())
}

/// Scratch elements [`linear_backward_input`] needs.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`].
pub fn linear_backward_input_scratch_len(p: &LinearParams) -> Result<usize, KernelError> {
    p.lens()?;
    Ok(sgemm_scratch_len(p.batch, p.in_features, p.out_features))
}

/// `grad_input [batch, in] = grad_output [batch, out] * weight [out, in]` (overwritten).
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`], [`KernelError::LengthMismatch`],
/// [`KernelError::ScratchTooSmall`].
pub fn linear_backward_input(
    p: &LinearParams,
    grad_output: &[f32],
    weight: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (li, lw, lo) = p.lens()?;
    check_len("grad_output", lo, grad_output.len())?;
    check_len("weight", lw, weight.len())?;
    check_len("grad_input", li, grad_input.len())?;
    check_scratch(linear_backward_input_scratch_len(p)?, scratch.len())?;
    gemm(
        p.batch,
        p.in_features,
        p.out_features,
        MatRef::rows(grad_output, p.out_features),
        MatRef::rows(weight, p.in_features),
        grad_input,
        p.in_features,
        &Epilogue::plain(),
        scratch,
    );
    Ok(())
}

/// Scratch elements [`linear_backward_weight`] needs.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`].
pub fn linear_backward_weight_scratch_len(p: &LinearParams) -> Result<usize, KernelError> {
    p.lens()?;
    Ok(sgemm_scratch_len(p.out_features, p.in_features, p.batch))
}

/// `grad_weight [out, in] = grad_output^T [out, batch] * input [batch, in]` (overwritten).
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`], [`KernelError::LengthMismatch`],
/// [`KernelError::ScratchTooSmall`].
pub fn linear_backward_weight(
    p: &LinearParams,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let (li, lw, lo) = p.lens()?;
    check_len("input", li, input.len())?;
    check_len("grad_output", lo, grad_output.len())?;
    check_len("grad_weight", lw, grad_weight.len())?;
    check_scratch(linear_backward_weight_scratch_len(p)?, scratch.len())?;
    gemm(
        p.out_features,
        p.in_features,
        p.batch,
        MatRef::transposed(grad_output, p.out_features),
        MatRef::rows(input, p.in_features),
        grad_weight,
        p.in_features,
        &Epilogue::plain(),
        scratch,
    );
    Ok(())
}

/// `grad_bias [out] = sum over the batch of grad_output [batch, out]` (overwritten).
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`], [`KernelError::LengthMismatch`].
pub fn linear_backward_bias(
    p: &LinearParams,
    grad_output: &[f32],
    grad_bias: &mut [f32],
) -> Result<(), KernelError> {
    let (_, _, lo) = p.lens()?;
    check_len("grad_output", lo, grad_output.len())?;
    check_len("grad_bias", p.out_features, grad_bias.len())?;
    grad_bias.fill(0.0);
    for row in grad_output.chunks_exact(p.out_features) {
        for (b, g) in grad_bias.chunks_mut(LANES).zip(row.chunks(LANES)) {
            let v = load_partial(b) + load_partial(g);
            store_partial(b, v);
        }
    }
    Ok(())
}
