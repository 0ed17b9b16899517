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
pub use sparse::{conv2d_backward_weight_sparse, conv2d_backward_weight_sparse_scratch_len};
pub use winograd::{conv2d_winograd, conv2d_winograd_scratch_len};

use crate::error::KernelError;
use crate::params::{Activation, Conv2dDims, Conv2dParams, check_len};

/// The forward algorithms [`conv2d`] chooses between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conv2dAlgo {
    /// [`conv2d_direct`]: no scratch; for groups of fewer than 8 output channels
    /// (strided or dilated ones, 1 to 3 outputs, strided depthwise convolutions), where
    /// GEMM tiles would be mostly empty.
    Direct,
    /// [`conv2d_im2col`]: im2col + SGEMM (no im2col for 1x1 stride-1 unpadded kernels,
    /// where the input planes are the GEMM's operand); wins for many taps per output
    /// (`in_per_group * kh * kw` above 256) on small planes (under 128 pixels), where the
    /// batch-wide GEMM fills its tiles across images: 512 channels of 7 x 7, 3x3, measured
    /// 0.89x the implicit GEMM's time here.
    Im2col,
    /// [`conv2d_implicit`]: the GEMM's register tile over (pixels x output channels), each
    /// pixel's taps broadcast from the image in place; no im2col matrix. Wins for up to
    /// 256 taps per output (LeNet's second layer, a ResNet stem), where im2col's matrix
    /// costs more to write than the GEMM spends on it, and on planes of 128 pixels or more
    /// whatever the taps (VGG's 64-channel 56 x 56 and ResNet's 128-channel 28 x 28 3x3
    /// layers: 1.07-1.22x im2col's speed here, 256 channels of 14 x 14: 1.02-1.06x; these
    /// now take [`Conv2dAlgo::Winograd`], faster still, as do other wide 3x3 layers). For
    /// 4 to 7 output channels per
    /// group at stride 1 (LeNet's first layer) it puts the pixels in the vector lanes
    /// instead, over flat zero-padded planes: 1.7-3x the direct kernel measured here; so
    /// does a depthwise convolution at stride 1 (2-3x the row-by-row depthwise kernel).
    Implicit,
    /// [`conv2d_winograd`]: Winograd's F(2x2, 3x3), 2.25x fewer multiplications, for 3x3
    /// kernels at stride 1 without dilation with 64 or more channels per group in and out
    /// on planes large enough to pay for the transforms (VGG's and ResNet's 3x3 layers:
    /// 1.25x and 1.40x the implicit GEMM's speed here; the rule and its measurements are
    /// in the source, `winograd_pays`).
    Winograd,
}

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

/// Output pixels per plane from which [`conv2d`] takes the implicit GEMM over im2col
/// whatever the taps per output (see [`Conv2dAlgo::Implicit`]).
const IMPLICIT_MIN_PIXELS: usize = 128;

/// Whether [`conv2d`] takes Winograd's algorithm for a 3x3 stride-1 kernel: where its
/// transforms (linear in the channels) and its partly empty last block of tiles per image
/// cost less than the 2.25x it saves on the GEMM (quadratic in the channels). Measured on
/// this machine against the implicit GEMM (`examples/winograd_ab.rs`; 8 images unless
/// said, AVX-512; AVX2 alike):
/// 64 channels in and out on 56 x 56 1.25x, 28 x 28 1.01x, 20 x 20 0.99x, 14 x 14 0.85x;
/// 128 on 28 x 28 1.40x, 14 x 14 1.08x; 96 on 28 x 28 1.29x; 256 on 14 x 14 1.31x, one
/// image 0.98x (the weights' transform, once per call, dominates); 32 on 56 x 56 0.84x;
/// 512 on 7 x 7 1.05x, where im2col does better still. Hence at least 64 channels each
/// way, `in * out * pixels >= 128 * 128 * 196`, planes of 64 pixels or more and 1024
/// pixels or more over the batch.
const fn winograd_pays(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    let (c, m, px) = (
        d.in_per_group as u128,
        d.out_per_group as u128,
        d.col_cols as u128,
    );
    winograd::applies(p)
        && c >= 64
        && m >= 64
        && c * m * px >= 128 * 128 * 196
        && px >= 64
        && (p.batch as u128) * px >= 1024
}

/// The algorithm [`conv2d`] uses for `p`.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_algo(p: &Conv2dParams) -> Result<Conv2dAlgo, KernelError> {
    let d = p.dims()?;
    Ok(if is_pointwise(p) {
        Conv2dAlgo::Im2col
    } else if winograd_pays(p, &d) {
        Conv2dAlgo::Winograd
    } else if d.out_per_group < 8 {
        if flat::forward_applies(p, &d) {
            Conv2dAlgo::Implicit
        } else {
            Conv2dAlgo::Direct
        }
    } else if d.col_rows <= implicit::KC || d.col_cols >= IMPLICIT_MIN_PIXELS {
        Conv2dAlgo::Implicit
    } else {
        Conv2dAlgo::Im2col
    })
}

/// Scratch elements [`conv2d`] needs for `p` (0 when it picks the direct algorithm).
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    match conv2d_algo(p)? {
        Conv2dAlgo::Direct => Ok(0),
        Conv2dAlgo::Im2col => conv2d_im2col_scratch_len(p),
        Conv2dAlgo::Implicit => conv2d_implicit_scratch_len(p),
        Conv2dAlgo::Winograd => conv2d_winograd_scratch_len(p),
    }
}

/// Convolution forward pass with the algorithm that suits the shape ([`conv2d_algo`]):
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
    match conv2d_algo(p)? {
        Conv2dAlgo::Direct => conv2d_direct(p, input, weight, bias, act, output),
        Conv2dAlgo::Im2col => conv2d_im2col(p, input, weight, bias, act, output, scratch),
        Conv2dAlgo::Implicit => conv2d_implicit(p, input, weight, bias, act, output, scratch),
        Conv2dAlgo::Winograd => conv2d_winograd(p, input, weight, bias, act, output, scratch),
    }
}

/// Validates a forward call; returns the dims and the clamp bounds.
pub(crate) fn check_forward(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &[f32],
) -> Result<(Conv2dDims, f32, f32), KernelError> {
    let d = p.dims()?;
    let (lo, hi) = act.bounds()?;
    check_len("input", d.input_len, input.len())?;
    check_len("weight", d.weight_len, weight.len())?;
    if let Some(b) = bias {
        check_len("bias", d.bias_len, b.len())?;
    }
    check_len("output", d.output_len, output.len())?;
    Ok((d, lo, hi))
}

/// Validates a backward-input call.
pub(crate) fn check_backward_input(
    p: &Conv2dParams,
    weight: &[f32],
    grad_out: &[f32],
    grad_in: &[f32],
) -> Result<Conv2dDims, KernelError> {
    let d = p.dims()?;
    check_len("weight", d.weight_len, weight.len())?;
    check_len("grad_output", d.output_len, grad_out.len())?;
    check_len("grad_input", d.input_len, grad_in.len())?;
    Ok(d)
}

/// Validates a backward-weight call.
pub(crate) fn check_backward_weight(
    p: &Conv2dParams,
    input: &[f32],
    grad_out: &[f32],
    grad_weight: &[f32],
) -> Result<Conv2dDims, KernelError> {
    let d = p.dims()?;
    check_len("input", d.input_len, input.len())?;
    check_len("grad_output", d.output_len, grad_out.len())?;
    check_len("grad_weight", d.weight_len, grad_weight.len())?;
    Ok(d)
}

/// Validates a backward-bias call.
pub(crate) fn check_backward_bias(
    p: &Conv2dParams,
    grad_out: &[f32],
    grad_bias: &[f32],
) -> Result<Conv2dDims, KernelError> {
    let d = p.dims()?;
    check_len("grad_output", d.output_len, grad_out.len())?;
    check_len("grad_bias", d.bias_len, grad_bias.len())?;
    Ok(d)
}

/// Validates an im2col / col2im call (one image).
pub(crate) fn check_im2col(
    p: &Conv2dParams,
    image: &[f32],
    col: &[f32],
) -> Result<Conv2dDims, KernelError> {
    let d = p.dims()?;
    check_len("image", d.image_len, image.len())?;
    check_len("col", d.col_len, col.len())?;
    Ok(d)
}
