//! Input gradient of a stride-1, undilated layer as a forward convolution of the output
//! gradient: `dX = conv(dY, W')` with the kernel flipped and input and output channels
//! swapped within each group, padding `k - 1 - pad` on each side. This runs the forward
//! pass's GEMM (deep: taps x output channels) where `W^T * dY` has a shallow one and a
//! col2im scatter: ResNet's 128-channel 3x3 layer (8 images) measured 28.2-33.9 -> 26.5-27.5
//! ms, three interleaved pairs; layers wide enough for Winograd's algorithm get it here
//! too, with its rounding and its handling of infinities in `dY`.

use super::depthwise;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams};

/// The input gradient of a stride-1, undilated layer as a forward convolution:
/// `dX = conv(dY, W')` with `W'[g][c, o, a, b] = W[g][o, c, kh - 1 - a, kw - 1 - b]` (the
/// kernel flipped, input and output channels swapped within each group) and padding
/// `k - 1 - pad` on each side (so `pad < k`). This runs the forward pass's GEMM (`k` =
/// taps x output channels, deep) where `W^T * dY` has a shallow one (`k` = output
/// channels) and a col2im scatter: ResNet's 128-channel 3x3 layer (8 images) measured
/// 28.2-33.9 -> 26.5-27.5 ms here, three interleaved pairs; a 3x3 layer wide enough for
/// Winograd's algorithm (see `Conv2dAlgo::Winograd`) gets it here too, with its rounding
/// and its handling of infinities in `dY`. For depthwise layers (the forward pass's flat
/// planes) and layers with 8 or more input channels per group (the forward pass's
/// implicit GEMM or im2col, not its direct kernel for few outputs); only for finite
/// weights, as `flat`
/// (the forward pass multiplies them by the explicit zeros of its padding, terms the
/// exact sum does not have).
pub(super) fn as_forward(p: &Conv2dParams, d: &Conv2dDims) -> Option<Conv2dParams> {
    let fits = super::unit_stride_not_pointwise(p)
        && (depthwise::applies(p, d) || d.in_per_group >= 8)
        && p.pad_top < p.kernel_h
        && p.pad_bottom < p.kernel_h
        && p.pad_left < p.kernel_w
        && p.pad_right < p.kernel_w;
    fits.then(|| {
        Conv2dParams::new(
            p.batch,
            p.out_channels,
            d.out_h,
            d.out_w,
            p.in_channels,
            p.kernel_h,
            p.kernel_w,
        )
        .with_padding(
            p.kernel_h - 1 - p.pad_top,
            p.kernel_h - 1 - p.pad_bottom,
            p.kernel_w - 1 - p.pad_left,
            p.kernel_w - 1 - p.pad_right,
        )
        .with_groups(p.groups)
    })
}

/// [`as_forward`]'s weights `W'` from `W` (`[out_channels, in_per_group, kh, kw]`) into
/// `dst` (`[in_channels, out_per_group, kh, kw]`).
fn flip_weights(p: &Conv2dParams, d: &Conv2dDims, weight: &[f32], dst: &mut [f32]) {
    let (m, c_in, taps) = (d.out_per_group, d.in_per_group, p.kernel_h * p.kernel_w);
    for g in 0..p.groups {
        let w_g = &weight[g * m * c_in * taps..][..m * c_in * taps];
        let dst_g = &mut dst[g * m * c_in * taps..][..m * c_in * taps];
        for c in 0..c_in {
            for o in 0..m {
                let src = &w_g[(o * c_in + c) * taps..][..taps];
                let out = &mut dst_g[(c * m + o) * taps..][..taps];
                for (t, v) in out.iter_mut().enumerate() {
                    *v = src[taps - 1 - t];
                }
            }
        }
    }
}

/// The input gradient through [`as_forward`]'s convolution, whose plan is `fwd`: the
/// weights flipped into the front of `scratch`, the forward pass behind them (Winograd's
/// reads them flipped as they are).
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn as_forward_input(
    p: &Conv2dParams,
    d: &Conv2dDims,
    fwd: &super::Conv2dPlan,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let (p, d) = (&{ *p }, &{ *d });
    fwd.run_flipped(grad_output, weight, grad_input, scratch, |w, dst| {
        flip_weights(p, d, w, dst)
    })
}
