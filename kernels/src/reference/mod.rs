//! Plain scalar oracles for every operator: obviously-correct loops with sums accumulated
//! in `f64` and rounded once, always compiled, so tests, fuzz targets and benches can all
//! compare the optimized kernels against them.
//!
//! Each function validates its arguments exactly as the optimized kernel of the same name
//! does (they share the checks) and returns the same errors; none needs scratch.

mod conv;
mod elementwise;
mod gemm;
mod int8;
mod norm;
mod pool;

pub use conv::{
    col2im, conv2d, conv2d_backward_bias, conv2d_backward_input, conv2d_backward_weight,
    conv2d_winograd_magnitude, im2col,
};
pub use elementwise::{
    activation_backward, cross_entropy, elementwise_backward, elementwise_forward, gelu,
    gelu_backward, leaky_relu, leaky_relu_backward, linear, linear_backward_bias,
    linear_backward_input, linear_backward_weight, log_softmax, log_softmax_backward, mse_loss,
    mse_loss_backward, relu, relu_backward, relu6, relu6_backward, sigmoid, sigmoid_backward,
    softmax, softmax_backward, softmax_cross_entropy, tanh, tanh_backward,
};
pub use gemm::sgemm;
pub use int8::{
    add_s8, avg_pool2d_s8, conv2d_s8, dequantize_s8, divide_by_pot, doubling_high_mul,
    fully_connected_s8, max_pool2d_s8, quantize_s8, requantize, requantize_s8, softmax_s8,
};
pub use norm::{
    adam_step, batch_norm_backward, batch_norm_fold, batch_norm_forward,
    batch_norm_forward_inference, sgd_step,
};
pub use pool::{
    avg_pool2d, avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward, max_pool2d,
    max_pool2d_backward, min_pool2d, min_pool2d_backward,
};

/// Clamp with NaN passing through.
pub(crate) fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    crate::simd::clamp1(v, lo, hi)
}
