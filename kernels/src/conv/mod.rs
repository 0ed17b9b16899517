//! 2-D convolution: direct (vectorised along the output row), implicit GEMM (output
//! channels in the vector lanes, taps read in place) and im2col + SGEMM (with 1x1 stride-1
//! unpadded convolutions going straight to GEMM), the backward passes, and the public
//! `im2col` / `col2im` kernels.
//!
//! Zero padding is an explicit 0.0 input in every variant: it multiplies its weight, so a
//! non-finite weight on a padded tap gives NaN, exactly as convolving an explicitly padded
//! input would (and as PyTorch's im2col path does).

mod backward;
mod depthwise;
mod direct;
mod flat;
mod im2col;
pub(crate) mod implicit;
mod lanes;
mod plan;
mod scalar;
mod sparse;
mod weight_direct;
mod weight_flat;
pub(crate) mod winograd;

pub use backward::{
    conv2d_backward_bias, conv2d_backward_input, conv2d_backward_input_scratch_len,
    conv2d_backward_weight, conv2d_backward_weight_scratch_len,
};
pub use direct::{conv2d_direct, conv2d_direct_scalar};
pub use im2col::{col2im, conv2d_im2col, conv2d_im2col_scratch_len, im2col};
pub use implicit::{conv2d_implicit, conv2d_implicit_scratch_len};
pub use plan::{Conv2dAlgo, Conv2dInputGradPlan, Conv2dPlan, Conv2dWeightGradPlan, ConvKernel};
pub use sparse::{conv2d_backward_weight_sparse, conv2d_backward_weight_sparse_scratch_len};
pub use winograd::{conv2d_winograd, conv2d_winograd_scratch_len};

use crate::error::KernelError;
use crate::params::{Activation, Conv2dDims, Conv2dParams, check_len};
pub(crate) use crate::params::{check_backward_bias, check_forward, check_im2col};

/// A 1x1 kernel with stride 1 and no padding: the input planes are already the GEMM's B.
pub(crate) const fn is_pointwise(p: &Conv2dParams) -> bool {
    p.kernel_h == 1
        && p.kernel_w == 1
        && p.stride_h == 1
        && p.stride_w == 1
        && p.pad_top == 0
        && p.pad_bottom == 0
        && p.pad_left == 0
        && p.pad_right == 0
}

/// Stride 1 and no dilation, the shape every flat-plane and batch-in-lanes kernel needs
/// (each tap one constant offset from the output position), and not a 1x1 stride-1
/// unpadded kernel, which is a plain GEMM.
pub(crate) const fn unit_stride_not_pointwise(p: &Conv2dParams) -> bool {
    p.stride_h == 1 && p.stride_w == 1 && p.dilation_h == 1 && p.dilation_w == 1 && !is_pointwise(p)
}

/// The algorithm [`conv2d`] uses for `p` ([`Conv2dPlan::algo`]).
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_algo(p: &Conv2dParams) -> Result<Conv2dAlgo, KernelError> {
    Ok(Conv2dPlan::new(p)?.algo())
}

/// Scratch elements [`conv2d`] needs for `p` ([`Conv2dPlan::scratch_len`]; 0 when it
/// picks the direct algorithm).
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    Ok(Conv2dPlan::new(p)?.scratch_len())
}

/// Convolution forward pass with the algorithm that suits the shape ([`Conv2dPlan::new`]):
/// `output = clamp(conv(input, weight) + bias)`.
///
/// `input` is `[batch, in_channels, in_h, in_w]`, `weight` is
/// `[out_channels, in_channels / groups, kernel_h, kernel_w]`, `bias` (optional) is
/// `[out_channels]`, `output` is `[batch, out_channels, out_h, out_w]` and is overwritten.
///
/// # Errors
/// Any error of [`Conv2dParams::dims`]; [`KernelError::InvalidParameter`] for a bad clamp;
/// [`KernelError::LengthMismatch`] for a slice of the wrong length;
/// [`KernelError::ScratchTooSmall`] below [`conv2d_scratch_len`].
pub fn conv2d(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    Conv2dPlan::new(p)?.run(input, weight, bias, act, output, scratch)
}

/// Validates the slices of a backward-input call.
pub(crate) fn check_input_grad_slices(
    d: &Conv2dDims,
    weight: &[f32],
    grad_out: &[f32],
    grad_in: &[f32],
) -> Result<(), KernelError> {
    check_len("weight", d.weight_len, weight.len())?;
    check_len("grad_output", d.output_len, grad_out.len())?;
    check_len("grad_input", d.input_len, grad_in.len())
}

/// Validates the slices of a backward-weight call.
pub(crate) fn check_weight_grad_slices(
    d: &Conv2dDims,
    input: &[f32],
    grad_out: &[f32],
    grad_weight: &[f32],
) -> Result<(), KernelError> {
    check_len("input", d.input_len, input.len())?;
    check_len("grad_output", d.output_len, grad_out.len())?;
    check_len("grad_weight", d.weight_len, grad_weight.len())
}
