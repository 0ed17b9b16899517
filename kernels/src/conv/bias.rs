//! Bias gradient: the output gradient summed over the batch and each channel's pixels.

use super::check_backward_bias;
use crate::error::KernelError;
use crate::params::Conv2dParams;
use crate::simd::sum_all;

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
