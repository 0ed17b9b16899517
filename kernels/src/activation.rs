//! Element-wise activations and their backward passes.
//!
//! Forward kernels come out of place (`x -> y`, equal lengths) and in place (`*_inplace`).
//! Backward kernels write `grad_in` from `grad_out` and what the forward pass saw or
//! produced, as each one's documentation says. NaN propagates as in PyTorch.

use crate::arch;
use crate::error::KernelError;
use crate::params::{Activation, check_len, nonzero};
use crate::simd::{LANES, f32x8, map, map_inplace, map2, map2_inplace};
use crate::vector::{Vf32, build};
use crate::{math, params::ctry};

/// `y = f(x)` eight lanes at a time over any vector type, `N` vectors per step (`fn_`
/// interleaves their dependency chains); the tail goes through the same code
/// zero-padded, so every element gets bit-identical treatment.
#[inline(always)]
fn vmap<V: Vf32, const N: usize>(
    x: &[f32],
    y: &mut [f32],
    fn_: impl Fn([V; N]) -> [V; N],
    f: impl Fn(V) -> V,
) {
    let mut xn = x.chunks_exact(N * LANES);
    let mut yn = y.chunks_exact_mut(N * LANES);
    for (xs, ys) in (&mut xn).zip(&mut yn) {
        let v = fn_(build(V::splat(0.0), |i| {
            V::load(&xs[i * LANES..(i + 1) * LANES])
        }));
        for (i, r) in v.iter().enumerate() {
            r.store(&mut ys[i * LANES..(i + 1) * LANES]);
        }
    }
    let (x, y) = (xn.remainder(), yn.into_remainder());
    let mut xc = x.chunks_exact(LANES);
    let mut yc = y.chunks_exact_mut(LANES);
    for (xs, ys) in (&mut xc).zip(&mut yc) {
        f(V::load(xs)).store(ys);
    }
    let (xr, yr) = (xc.remainder(), yc.into_remainder());
    if !xr.is_empty() {
        f(V::load(xr)).store(yr);
    }
}

/// In-place [`vmap`].
#[inline(always)]
fn vmap_inplace<V: Vf32, const N: usize>(
    x: &mut [f32],
    fn_: impl Fn([V; N]) -> [V; N],
    f: impl Fn(V) -> V,
) {
    let mut xn = x.chunks_exact_mut(N * LANES);
    for xs in &mut xn {
        let v = fn_(build(V::splat(0.0), |i| V::load(&xs[i * LANES..])));
        for (i, r) in v.iter().enumerate() {
            r.store(&mut xs[i * LANES..]);
        }
    }
    for xs in xn.into_remainder().chunks_mut(LANES) {
        let v = f(V::load(xs));
        v.store(xs);
    }
}

/// Whether the portable variant interleaves four vectors in `tanh`/`sigmoid` (see
/// [`vmap`]): only where `f32x8` lives in vector registers. Without them (Cortex-M4F: eight
/// scalars, an in-order core) it buys nothing and cost 6.8 KiB of firmware `.text`
/// (39,864 -> 46,640 bytes); one vector at a time there, the same arithmetic per lane.
const INTERLEAVE: bool = cfg!(any(
    target_feature = "sse2",
    target_feature = "neon",
    target_feature = "simd128"
));

/// Runs an element-wise activation (`math::relu`, `math::sigmoid`, `math::tanh`) on the
/// active variant:
/// from `src` into `dst` (`Some(src)`), or in place in `dst` (`None`).
// (the closures below are not redundant: calling the generic function through a fn item
// would not inline it into the `#[target_feature]` function)
#[allow(clippy::redundant_closure)]
macro_rules! transcendental {
    ($f:ident, $src:expr, $dst:expr) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn avx2(src: Option<&[f32]>, dst: &mut [f32]) {
            use crate::arch::x86::Avx2;
            match src {
                Some(x) => vmap::<Avx2, 4>(
                    x,
                    dst,
                    |v| math::$f::<Avx2, 4>(v),
                    |v| math::$f::<Avx2, 1>([v])[0],
                ),
                None => vmap_inplace::<Avx2, 4>(
                    dst,
                    |v| math::$f::<Avx2, 4>(v),
                    |v| math::$f::<Avx2, 1>([v])[0],
                ),
            }
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        fn avx512(src: Option<&[f32]>, dst: &mut [f32]) {
            use crate::arch::x86::{Zmm, zmap};
            // SAFETY: this function is compiled with, and only called on, AVX-512 F;
            // `src` is as long as `dst` (checked by the public function).
            unsafe {
                zmap::<8>(
                    src,
                    dst,
                    |v| math::$f::<Zmm, 8>(v),
                    |v| math::$f::<Zmm, 1>([v])[0],
                )
            }
        }
        fn portable(src: Option<&[f32]>, dst: &mut [f32]) {
            match src {
                Some(x) if INTERLEAVE => vmap::<f32x8, 4>(
                    x,
                    dst,
                    |v| math::$f::<f32x8, 4>(v),
                    |v| math::$f::<f32x8, 1>([v])[0],
                ),
                None if INTERLEAVE => vmap_inplace::<f32x8, 4>(
                    dst,
                    |v| math::$f::<f32x8, 4>(v),
                    |v| math::$f::<f32x8, 1>([v])[0],
                ),
                Some(x) => map(x, dst, |v| math::$f::<f32x8, 1>([v])[0]),
                None => map_inplace(dst, |v| math::$f::<f32x8, 1>([v])[0]),
            }
        }
        match arch::active() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `active` only returns Avx2Fma when the CPU supports AVX2 and FMA.
            crate::arch::Isa::Avx2Fma => unsafe { avx2($src, $dst) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `active` only returns Avx512 when the CPU supports AVX-512 F, BW and
            // VL, AVX2 and FMA.
            crate::arch::Isa::Avx512 => unsafe { avx512($src, $dst) },
            _ => portable($src, $dst),
        }
    }};
}

const fn check_unary(x: &[f32], y: &[f32]) -> Result<(), KernelError> {
    ctry!(nonzero(x.len(), "input"));
    check_len("output", x.len(), y.len())
}

const fn check_binary(a: &[f32], go: &[f32], gi: &[f32]) -> Result<(), KernelError> {
    ctry!(nonzero(a.len(), "input"));
    ctry!(check_len("grad_output", a.len(), go.len()));
    check_len("grad_input", a.len(), gi.len())
}

const fn check_slope(slope: f32) -> Result<(), KernelError> {
    if slope.is_finite() {
        Ok(())
    } else {
        Err(KernelError::InvalidParameter(
            "leaky_relu slope is not finite",
        ))
    }
}

#[inline(always)]
fn leaky_v(x: f32x8, s: f32x8) -> f32x8 {
    x.simd_gt(f32x8::ZERO).select(x, x * s)
}

/// `y = max(x, 0)`; NaN stays NaN.
///
/// # Errors
/// [`KernelError::ZeroSize`] for an empty `x`, [`KernelError::LengthMismatch`] if
/// `y.len() != x.len()`.
///
/// ```
/// let mut y = [0.0; 3];
/// cnnkit_kernels::relu(&[-1.0, 0.5, 2.0], &mut y).unwrap();
/// assert_eq!(y, [0.0, 0.5, 2.0]);
/// ```
pub fn relu(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_unary(x, y)?;
    transcendental!(relu, Some(x), y);
    Ok(())
}

/// In-place [`relu`].
///
/// # Errors
/// [`KernelError::ZeroSize`] for an empty `x`.
pub fn relu_inplace(x: &mut [f32]) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    transcendental!(relu, None, x);
    Ok(())
}

/// `grad_in = grad_out` where `x > 0`, else 0 (PyTorch's `threshold_backward`: NaN in `x`
/// lets the gradient through). `x` may be the forward input or output.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::LengthMismatch`].
pub fn relu_backward(x: &[f32], grad_out: &[f32], grad_in: &mut [f32]) -> Result<(), KernelError> {
    check_binary(x, grad_out, grad_in)?;
    map2(x, grad_out, grad_in, |x, g| {
        x.simd_le(f32x8::ZERO).select(f32x8::ZERO, g)
    });
    Ok(())
}

/// In-place [`relu_backward`]: `grad = 0` where `x <= 0` (NaN in `x` lets the gradient
/// through). `x` may be the forward input or output.
///
/// # Errors
/// [`KernelError::ZeroSize`] for an empty `x`, [`KernelError::LengthMismatch`] if
/// `grad.len() != x.len()`.
///
/// ```
/// let mut g = [1.0, 2.0, 3.0];
/// cnnkit_kernels::relu_backward_inplace(&[-1.0, 0.0, 0.5], &mut g).unwrap();
/// assert_eq!(g, [0.0, 0.0, 3.0]);
/// ```
pub fn relu_backward_inplace(x: &[f32], grad: &mut [f32]) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    check_len("grad", x.len(), grad.len())?;
    map2_inplace(x, grad, |x, g| {
        x.simd_le(f32x8::ZERO).select(f32x8::ZERO, g)
    });
    Ok(())
}

/// `y = x` where `x > 0`, else `slope * x`.
///
/// # Errors
/// [`KernelError::InvalidParameter`] for a non-finite slope, [`KernelError::ZeroSize`],
/// [`KernelError::LengthMismatch`].
pub fn leaky_relu(slope: f32, x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_slope(slope)?;
    check_unary(x, y)?;
    let s = f32x8::splat(slope);
    map(x, y, |x| leaky_v(x, s));
    Ok(())
}

/// In-place [`leaky_relu`].
///
/// # Errors
/// As [`leaky_relu`].
pub fn leaky_relu_inplace(slope: f32, x: &mut [f32]) -> Result<(), KernelError> {
    check_slope(slope)?;
    nonzero(x.len(), "input")?;
    let s = f32x8::splat(slope);
    map_inplace(x, |x| leaky_v(x, s));
    Ok(())
}

/// `grad_in = grad_out` where `x > 0`, else `slope * grad_out`; `x` is the forward input.
///
/// # Errors
/// As [`leaky_relu`].
pub fn leaky_relu_backward(
    slope: f32,
    x: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    check_slope(slope)?;
    check_binary(x, grad_out, grad_in)?;
    let s = f32x8::splat(slope);
    map2(x, grad_out, grad_in, |x, g| {
        x.simd_gt(f32x8::ZERO).select(g, g * s)
    });
    Ok(())
}

/// `y = 1 / (1 + e^-x)`, within a few ULP of the exact value over the whole f32 range.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::LengthMismatch`].
pub fn sigmoid(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_unary(x, y)?;
    transcendental!(sigmoid, Some(x), y);
    Ok(())
}

/// In-place [`sigmoid`].
///
/// # Errors
/// [`KernelError::ZeroSize`].
pub fn sigmoid_inplace(x: &mut [f32]) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    transcendental!(sigmoid, None, x);
    Ok(())
}

/// `grad_in = grad_out * y * (1 - y)` where `y` is the forward output.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::LengthMismatch`].
pub fn sigmoid_backward(
    y: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    check_binary(y, grad_out, grad_in)?;
    map2(y, grad_out, grad_in, |y, g| g * y * (f32x8::ONE - y));
    Ok(())
}

/// `y = tanh(x)`, within a few ULP over the whole f32 range, exactly ±1 in saturation.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::LengthMismatch`].
///
/// ```
/// let mut y = [0.0; 3];
/// cnnkit_kernels::tanh(&[-100.0, 0.0, 100.0], &mut y).unwrap();
/// assert_eq!(y, [-1.0, 0.0, 1.0]);
/// ```
pub fn tanh(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_unary(x, y)?;
    transcendental!(tanh, Some(x), y);
    Ok(())
}

/// In-place [`tanh`].
///
/// # Errors
/// [`KernelError::ZeroSize`].
pub fn tanh_inplace(x: &mut [f32]) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    transcendental!(tanh, None, x);
    Ok(())
}

/// `grad_in = grad_out * (1 - y^2)` where `y` is the forward output, computed as
/// `(1 - y)(1 + y)`, which keeps its accuracy where `y` nears ±1.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::LengthMismatch`].
pub fn tanh_backward(y: &[f32], grad_out: &[f32], grad_in: &mut [f32]) -> Result<(), KernelError> {
    check_binary(y, grad_out, grad_in)?;
    map2(y, grad_out, grad_in, |y, g| {
        g * ((f32x8::ONE - y) * (f32x8::ONE + y))
    });
    Ok(())
}

/// Backward pass of a fused epilogue clamp, from the layer's output `y`:
/// `grad_in = 0` where the clamp was active (`y <= min` for a finite `min`, `y >= max`
/// for a finite `max`; for ReLU, `y <= 0`), else `grad_out`.
///
/// # Errors
/// [`KernelError::InvalidParameter`] for a bad clamp, [`KernelError::ZeroSize`],
/// [`KernelError::LengthMismatch`].
pub fn activation_backward(
    act: Activation,
    y: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) -> Result<(), KernelError> {
    let (lo, hi) = act.bounds()?;
    check_binary(y, grad_out, grad_in)?;
    // An infinite bound never clips: compare against NaN, which is always false.
    let lo = f32x8::splat(if lo == f32::NEG_INFINITY {
        f32::NAN
    } else {
        lo
    });
    let hi = f32x8::splat(if hi == f32::INFINITY { f32::NAN } else { hi });
    map2(y, grad_out, grad_in, |y, g| {
        (y.simd_le(lo) | y.simd_ge(hi)).select(f32x8::ZERO, g)
    });
    Ok(())
}
