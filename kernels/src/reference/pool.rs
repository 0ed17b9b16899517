//! Reference pooling: one window at a time, in row-major tap order.

use crate::error::KernelError;
use crate::params::Pool2dParams;
use crate::pool::{
    NO_INDEX, check_backward, check_forward, check_global, check_index_values, check_indices,
};

/// The in-image taps `(ih, iw)` of window `(oh, ow)`, in row-major order.
fn window(p: &Pool2dParams, oh: usize, ow: usize, mut f: impl FnMut(usize, usize)) {
    let (kh_lo, kh_hi) =
        crate::params::valid_range(p.kernel_h, p.dilation_h, oh * p.stride_h, p.pad_top, p.in_h);
    let (kw_lo, kw_hi) = crate::params::valid_range(
        p.kernel_w,
        p.dilation_w,
        ow * p.stride_w,
        p.pad_left,
        p.in_w,
    );
    for kh in kh_lo..kh_hi {
        for kw in kw_lo..kw_hi {
            f(
                oh * p.stride_h + kh * p.dilation_h - p.pad_top,
                ow * p.stride_w + kw * p.dilation_w - p.pad_left,
            );
        }
    }
}

fn extreme(
    p: &Pool2dParams,
    input: &[f32],
    output: &mut [f32],
    mut indices: Option<&mut [u32]>,
    min: bool,
) -> Result<(), KernelError> {
    let d = check_forward(p, input, output)?;
    if let Some(idx) = indices.as_deref() {
        check_indices(p, &d, idx)?;
    }
    let plane = p.in_h * p.in_w;
    for pl in 0..d.planes {
        let x = &input[pl * plane..][..plane];
        for oh in 0..d.out_h {
            for ow in 0..d.out_w {
                let mut best = if min {
                    f32::INFINITY
                } else {
                    f32::NEG_INFINITY
                };
                let mut best_i = NO_INDEX;
                window(p, oh, ow, |ih, iw| {
                    let i = ih * p.in_w + iw;
                    let v = x[i];
                    let better = if min { v < best } else { v > best };
                    if best_i == NO_INDEX || better || (v.is_nan() && !best.is_nan()) {
                        best = v;
                        best_i = i as u32;
                    }
                });
                let o = (pl * d.out_h + oh) * d.out_w + ow;
                output[o] = best;
                if let Some(idx) = indices.as_deref_mut() {
                    idx[o] = best_i;
                }
            }
        }
    }
    Ok(())
}

/// Reference for [`crate::max_pool2d`].
///
/// # Errors
/// As [`crate::max_pool2d`].
pub fn max_pool2d(
    p: &Pool2dParams,
    input: &[f32],
    output: &mut [f32],
    indices: Option<&mut [u32]>,
) -> Result<(), KernelError> {
    extreme(p, input, output, indices, false)
}

/// Reference for [`crate::min_pool2d`].
///
/// # Errors
/// As [`crate::min_pool2d`].
pub fn min_pool2d(
    p: &Pool2dParams,
    input: &[f32],
    output: &mut [f32],
    indices: Option<&mut [u32]>,
) -> Result<(), KernelError> {
    extreme(p, input, output, indices, true)
}

/// Reference for [`crate::max_pool2d_backward`].
///
/// # Errors
/// As [`crate::max_pool2d_backward`].
pub fn max_pool2d_backward(
    p: &Pool2dParams,
    indices: &[u32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward(p, grad_output, grad_input)?;
    check_index_values(p, &d, indices)?;
    let plane = p.in_h * p.in_w;
    grad_input.fill(0.0);
    let out_plane = d.out_h * d.out_w;
    for (o, (&g, &i)) in grad_output.iter().zip(indices).enumerate() {
        if i != NO_INDEX {
            grad_input[(o / out_plane) * plane + i as usize] += g;
        }
    }
    Ok(())
}

/// Reference for [`crate::min_pool2d_backward`].
///
/// # Errors
/// As [`crate::min_pool2d_backward`].
pub fn min_pool2d_backward(
    p: &Pool2dParams,
    indices: &[u32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    max_pool2d_backward(p, indices, grad_output, grad_input)
}

fn divisor(p: &Pool2dParams, count_include_pad: bool, count: usize) -> f64 {
    if count_include_pad {
        p.kernel_h as f64 * p.kernel_w as f64
    } else {
        count as f64
    }
}

/// Reference for [`crate::avg_pool2d`].
///
/// # Errors
/// As [`crate::avg_pool2d`].
pub fn avg_pool2d(
    p: &Pool2dParams,
    count_include_pad: bool,
    input: &[f32],
    output: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_forward(p, input, output)?;
    let plane = p.in_h * p.in_w;
    for pl in 0..d.planes {
        let x = &input[pl * plane..][..plane];
        for oh in 0..d.out_h {
            for ow in 0..d.out_w {
                let (mut acc, mut count) = (0.0_f64, 0_usize);
                window(p, oh, ow, |ih, iw| {
                    acc += f64::from(x[ih * p.in_w + iw]);
                    count += 1;
                });
                output[(pl * d.out_h + oh) * d.out_w + ow] = if count == 0 {
                    0.0
                } else {
                    (acc / divisor(p, count_include_pad, count)) as f32
                };
            }
        }
    }
    Ok(())
}

/// Reference for [`crate::avg_pool2d_backward`].
///
/// # Errors
/// As [`crate::avg_pool2d_backward`].
pub fn avg_pool2d_backward(
    p: &Pool2dParams,
    count_include_pad: bool,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward(p, grad_output, grad_input)?;
    let plane = p.in_h * p.in_w;
    grad_input.fill(0.0);
    for pl in 0..d.planes {
        let gx = &mut grad_input[pl * plane..][..plane];
        for oh in 0..d.out_h {
            for ow in 0..d.out_w {
                let mut count = 0;
                window(p, oh, ow, |_, _| count += 1);
                if count == 0 {
                    continue;
                }
                let g = f64::from(grad_output[(pl * d.out_h + oh) * d.out_w + ow])
                    / divisor(p, count_include_pad, count);
                window(p, oh, ow, |ih, iw| gx[ih * p.in_w + iw] += g as f32);
            }
        }
    }
    Ok(())
}

/// Reference for [`crate::global_avg_pool2d`].
///
/// # Errors
/// As [`crate::global_avg_pool2d`].
pub fn global_avg_pool2d(
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    input: &[f32],
    output: &mut [f32],
) -> Result<(), KernelError> {
    check_global((batch, channels, h, w), ("input", "output"), input, output)?;
    for (y, x) in output.iter_mut().zip(input.chunks_exact(h * w)) {
        *y = (x.iter().map(|&v| f64::from(v)).sum::<f64>() / (h * w) as f64) as f32;
    }
    Ok(())
}

/// Reference for [`crate::global_avg_pool2d_backward`].
///
/// # Errors
/// As [`crate::global_avg_pool2d_backward`].
pub fn global_avg_pool2d_backward(
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    check_global(
        (batch, channels, h, w),
        ("grad_input", "grad_output"),
        grad_input,
        grad_output,
    )?;
    for (g, x) in grad_output.iter().zip(grad_input.chunks_exact_mut(h * w)) {
        x.fill((f64::from(*g) / (h * w) as f64) as f32);
    }
    Ok(())
}
