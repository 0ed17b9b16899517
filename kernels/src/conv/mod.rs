//! 2-D convolution: the forward pass, the input and weight gradients, the bias gradient,
//! and the public `im2col` / `col2im` kernels.
//!
//! Every choice of algorithm is made in [`plan`](self::plan): one planner per pass
//! ([`Conv2dPlan`], [`Conv2dInputGradPlan`], [`Conv2dWeightGradPlan`]), whose plans the
//! entry points below run. A file's name says its pass and its technique:
//!
//! | pass | files |
//! |---|---|
//! | forward | `fwd_direct` (vector rows), `fwd_direct_scalar`, `fwd_depthwise`, `fwd_flat`, `fwd_implicit`, `fwd_im2col`, `fwd_winograd` |
//! | input gradient | `input_lanes` (images in the lanes), `input_flat`, `input_depthwise`, `input_as_forward` (a forward convolution of `dY`), `input_gemm` (`W^T dY` + col2im) |
//! | weight gradient | `weight_flat`, `weight_rows`, `weight_depthwise`, `weight_implicit`, `weight_gemm`, `weight_sparse` (from max-pool indices) |
//! | bias gradient | `bias` |
//! | shared by a technique's passes | `flat` (flat planes, tiles), `implicit` (tiles, tap loop), `depthwise` (row buffers), `im2col` (columns, blocks) |
//!
//! Zero padding is an explicit 0.0 input in every variant: it multiplies its weight, so a
//! non-finite weight on a padded tap gives NaN, exactly as convolving an explicitly padded
//! input would (and as PyTorch's im2col path does).

mod bias;
mod depthwise;
mod flat;
mod fwd_depthwise;
mod fwd_direct;
mod fwd_direct_scalar;
mod fwd_flat;
mod fwd_im2col;
mod fwd_implicit;
mod fwd_winograd;
mod im2col;
pub(crate) mod implicit;
mod input_as_forward;
mod input_depthwise;
mod input_flat;
mod input_gemm;
mod input_lanes;
mod plan;
mod weight_depthwise;
mod weight_flat;
mod weight_gemm;
mod weight_implicit;
mod weight_rows;
mod weight_sparse;

pub use bias::conv2d_backward_bias;
pub use fwd_direct_scalar::conv2d_direct_scalar;
pub use fwd_im2col::{conv2d_im2col, conv2d_im2col_scratch_len};
pub use fwd_implicit::{conv2d_implicit, conv2d_implicit_scratch_len};
pub use fwd_winograd::{conv2d_winograd, conv2d_winograd_scratch_len};
pub use im2col::{col2im, im2col};
pub use plan::{Conv2dAlgo, Conv2dInputGradPlan, Conv2dPlan, Conv2dWeightGradPlan, ConvKernel};
pub use weight_sparse::{conv2d_backward_weight_sparse, conv2d_backward_weight_sparse_scratch_len};

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

/// Scratch elements [`conv2d_backward_input`] needs.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_backward_input_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    Ok(Conv2dInputGradPlan::new(p)?.scratch_len())
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

/// Scratch elements [`conv2d_backward_weight`] needs.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_backward_weight_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    Ok(Conv2dWeightGradPlan::new(p)?.scratch_len())
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

/// What every tile of one call shares.
pub(crate) struct Ctx<'a> {
    pub p: &'a Conv2dParams,
    pub d: &'a Conv2dDims,
    /// Clamp bounds of the epilogue.
    pub lo: f32,
    pub hi: f32,
}

/// Convolution forward pass by the direct algorithm (no scratch). Arguments as
/// [`crate::conv2d`].
///
/// # Errors
/// As [`crate::conv2d`] (there is no scratch to check).
pub fn conv2d_direct(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    let (d, lo, hi) = check_forward(p, input, weight, bias, act, output)?;
    let ctx = Ctx { p, d: &d, lo, hi };
    // (not through `Conv2dPlan::run`, which would link every algorithm into a firmware
    // that needs only this one)
    plan::run_direct(
        plan::direct_kernel(p, &d),
        &ctx,
        input,
        weight,
        bias,
        output,
    );
    Ok(())
}
