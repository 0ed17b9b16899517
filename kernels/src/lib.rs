//! # cnnkit-kernels
//!
//! `#![no_std]`, allocation-free, hand-vectorized kernels for convolutional networks over
//! flat `f32` slices: convolution (direct and im2col + GEMM, forward and backward),
//! im2col/col2im, SGEMM, pooling, activations, softmax, losses and fully connected layers.
//!
//! Conventions (the workspace README has the table of operators):
//! - NCHW activations, conv weights `[c_out, c_in / groups, kh, kw]`, linear weights
//!   `[out, in]`: PyTorch's layouts.
//! - Geometry lives in small `Copy` structs ([`Conv2dParams`], [`Pool2dParams`],
//!   [`GemmParams`], [`LinearParams`]) whose sizes are computed with checked arithmetic.
//! - Every kernel validates every parameter and slice length before touching memory and
//!   returns [`KernelError`]; no input makes a kernel panic.
//! - Scratch memory is the caller's: a `*_scratch_len` function sits beside each kernel
//!   that needs it.
//! - Outputs are overwritten, never read (except `C` in [`sgemm`] with `beta != 0`).
//! - [`reference`](mod@reference) holds plain scalar loops for every operator: the oracle for tests,
//!   fuzzing and benches.
//! - [`net`] runs a fixed sequence of layers through one caller-provided arena, with sizes
//!   from `const fn`s, for firmware without a heap; [`net::Blob`] reads weights from flash.
//!
//! ```
//! use cnnkit_kernels::{conv2d, conv2d_scratch_len, Activation, Conv2dParams};
//! let p = Conv2dParams::new(1, 1, 4, 4, 1, 3, 3).with_padding(1, 1, 1, 1);
//! let input = [1.0_f32; 16];
//! let weight = [1.0_f32; 9];
//! let mut out = [0.0_f32; 16];
//! let mut scratch = vec![0.0; conv2d_scratch_len(&p).unwrap()];
//! conv2d(&p, &input, &weight, Some(&[0.5]), Activation::Relu, &mut out, &mut scratch).unwrap();
//! assert_eq!(out[0], 4.5); // a corner sees 2x2 ones, plus the bias
//! assert_eq!(out[5], 9.5); // an inner pixel sees all nine
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod error;
pub mod params;
pub mod reference;

mod activation;
pub mod arch;
// (the lane types live in `arch`; kernels name them from the crate root)
use arch::{simd, vector};
mod conv;
mod copy;
mod gemm;
mod int8;
mod linear;
mod loss;
mod math;
pub mod net;
mod norm;
mod optim;
mod pool;
pub mod qnet;
mod qparams;
mod softmax;

pub use activation::{
    activation_backward, gelu, gelu_backward, gelu_inplace, leaky_relu, leaky_relu_backward,
    leaky_relu_inplace, relu, relu_backward, relu_backward_inplace, relu_inplace, relu6,
    relu6_backward, relu6_inplace, sigmoid, sigmoid_backward, sigmoid_inplace, tanh, tanh_backward,
    tanh_inplace,
};
pub use conv::{
    Conv2dAlgo, Conv2dInputGradPlan, Conv2dPlan, Conv2dWeightGradPlan, ConvKernel, col2im, conv2d,
    conv2d_algo, conv2d_backward_bias, conv2d_backward_input, conv2d_backward_input_scratch_len,
    conv2d_backward_weight, conv2d_backward_weight_scratch_len, conv2d_backward_weight_sparse,
    conv2d_backward_weight_sparse_scratch_len, conv2d_direct, conv2d_direct_scalar, conv2d_im2col,
    conv2d_im2col_scratch_len, conv2d_implicit, conv2d_implicit_scratch_len, conv2d_scratch_len,
    conv2d_winograd, conv2d_winograd_scratch_len, im2col,
};
pub use copy::stream_copy;
pub use error::KernelError;
pub use gemm::{SgemmBlocking, force_sgemm_blocking, sgemm, sgemm_blocking, sgemm_scratch_len};
pub use int8::{
    add_s8, avg_pool2d_s8, conv2d_s8, conv2d_s8_pack, conv2d_s8_packed_len, conv2d_s8_prepacked,
    conv2d_s8_scratch_len, dequantize_s8, fully_connected_s8, fully_connected_s8_scratch_len,
    max_pool2d_s8, quantize_s8, requantize_s8, softmax_s8, softmax_s8_f32,
};
pub use linear::{
    linear, linear_backward_bias, linear_backward_input, linear_backward_input_scratch_len,
    linear_backward_weight, linear_backward_weight_scratch_len, linear_dot, linear_scratch_len,
};
pub use loss::{cross_entropy, mse_loss, mse_loss_backward, softmax_cross_entropy};
pub use norm::{
    batch_norm_backward, batch_norm_fold, batch_norm_forward, batch_norm_forward_inference,
};
pub use optim::{adam_step, sgd_step};
pub use params::{
    Activation, AdamParams, BatchNormParams, Conv2dDims, Conv2dParams, Elementwise, GemmParams,
    LinearParams, Pool2dDims, Pool2dParams, SgdParams,
};
pub use pool::{
    NO_INDEX, avg_pool2d, avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward,
    max_pool2d, max_pool2d_backward, min_pool2d, min_pool2d_backward,
};
pub use qparams::{AddParams, QuantOutput, Requant, RequantizeParams, SoftmaxParams};
pub use softmax::{log_softmax, log_softmax_backward, softmax, softmax_backward};
