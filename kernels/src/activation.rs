//! Element-wise activations and their backward passes.
//!
//! Forward kernels come out of place (`x -> y`, equal lengths) and in place (`*_inplace`).
//! Backward kernels write `grad_in` from `grad_out` and what the forward pass saw or
//! produced, as each one's documentation says. NaN propagates as in PyTorch.

use crate::arch;
use crate::error::KernelError;
use crate::params::{Activation, Elementwise, check_len, nonzero};
use crate::simd::{LANES, f32x8, map, map_inplace, map2, map2_inplace};
use crate::vector::{Arith, Vf32, build};
use crate::{math, params::ctry};

/// `y = F(x)` eight lanes at a time over any vector type, `N` vectors per step (their
/// dependency chains interleaved); the tail goes through the same code zero-padded, so
/// every element gets bit-identical treatment. (Generic over `F`, not closures: a closure
/// is compiled with the target features of the function that defines it, and this one
/// is inlined into a `#[target_feature]` trampoline.)
#[inline(always)]
fn vmap<V: Vf32, F: Unary, const N: usize>(x: &[f32], y: &mut [f32]) {
    let mut xn = x.chunks_exact(N * LANES);
    let mut yn = y.chunks_exact_mut(N * LANES);
    for (xs, ys) in (&mut xn).zip(&mut yn) {
        let v = F::apply::<V, N>(build(V::splat(0.0), |i| {
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
        F::apply::<V, 1>([V::load(xs)])[0].store(ys);
    }
    let (xr, yr) = (xc.remainder(), yc.into_remainder());
    if !xr.is_empty() {
        F::apply::<V, 1>([V::load(xr)])[0].store(yr);
    }
}

/// In-place [`vmap`].
#[inline(always)]
fn vmap_inplace<V: Vf32, F: Unary, const N: usize>(x: &mut [f32]) {
    let mut xn = x.chunks_exact_mut(N * LANES);
    for xs in &mut xn {
        let v = F::apply::<V, N>(build(V::splat(0.0), |i| V::load(&xs[i * LANES..])));
        for (i, r) in v.iter().enumerate() {
            r.store(&mut xs[i * LANES..]);
        }
    }
    for xs in xn.into_remainder().chunks_mut(LANES) {
        let v = F::apply::<V, 1>([V::load(xs)])[0];
        v.store(xs);
    }
}

/// Whether the portable variant runs its maps on `f32x8` vectors, interleaved (see
/// [`vmap`]): only where `f32x8` lives in vector registers. Without them (Cortex-M4F: eight
/// scalars, an in-order core) vectors buy nothing and cost code: one element at a time
/// there, the same arithmetic per lane (`arm-none-eabi-size` on `lenet5-firmware`
/// re-measures).
const INTERLEAVE: bool = cfg!(any(
    target_feature = "sse2",
    target_feature = "neon",
    target_feature = "simd128"
));

/// An element-wise function over vectors of any width (`crate::math`'s), as a type, so
/// that the kernels below are generic over it.
pub(crate) trait Unary {
    /// Whether its body keeps many values live (GELU: two branches and an `exp`): the
    /// portable and AVX-512 maps then interleave half as many chains, which stay in
    /// registers (GELU on Zen 5: 17% and 11% faster; AVX2 keeps 4, 8% faster than 2;
    /// re-measure: `cnnkit bench --filter gelu --variant V`).
    const LONG: bool = false;
    /// `f` on `N` vectors, their dependency chains interleaved.
    fn apply<A: Arith, const N: usize>(v: [A; N]) -> [A; N];
}

/// `max(x, 0)` ([`math::relu`]).
pub(crate) struct ReluFn;
/// [`math::sigmoid`].
pub(crate) struct SigmoidFn;
/// [`math::tanh`].
pub(crate) struct TanhFn;
/// [`math::gelu`].
pub(crate) struct GeluFn;
/// `min(max(x, 0), 6)` ([`math::relu6`]).
pub(crate) struct Relu6Fn;

impl Unary for ReluFn {
    #[inline(always)]
    fn apply<A: Arith, const N: usize>(v: [A; N]) -> [A; N] {
        math::relu::<A, N>(v)
    }
}
impl Unary for Relu6Fn {
    #[inline(always)]
    fn apply<A: Arith, const N: usize>(v: [A; N]) -> [A; N] {
        math::relu6::<A, N>(v)
    }
}
impl Unary for SigmoidFn {
    #[inline(always)]
    fn apply<A: Arith, const N: usize>(v: [A; N]) -> [A; N] {
        math::sigmoid::<A, N>(v)
    }
}
impl Unary for TanhFn {
    #[inline(always)]
    fn apply<A: Arith, const N: usize>(v: [A; N]) -> [A; N] {
        math::tanh::<A, N>(v)
    }
}
impl Unary for GeluFn {
    const LONG: bool = true;
    #[inline(always)]
    fn apply<A: Arith, const N: usize>(v: [A; N]) -> [A; N] {
        math::gelu::<A, N>(v)
    }
}

/// The element-wise map as a variant runs it, implemented by its lane type: how many
/// vectors it interleaves, on which registers. From `src` into `dst` (`Some(src)`, as
/// long as `dst`), or in place in `dst` (`None`).
pub(crate) trait MapKernel: Vf32 {
    /// `dst = F(src)` (or in place).
    fn map<F: Unary>(src: Option<&[f32]>, dst: &mut [f32]);
}

/// Four vectors interleaved (two for a [`Unary::LONG`] function) where `f32x8` lives in
/// vector registers ([`INTERLEAVE`]); elsewhere (Cortex-M4F: eight scalars, an in-order
/// core) one element at a time, the same arithmetic per lane in an eighth of the code.
impl MapKernel for f32x8 {
    #[inline(always)]
    fn map<F: Unary>(src: Option<&[f32]>, dst: &mut [f32]) {
        match src {
            Some(x) if INTERLEAVE && F::LONG => vmap::<f32x8, F, 2>(x, dst),
            None if INTERLEAVE && F::LONG => vmap_inplace::<f32x8, F, 2>(dst),
            Some(x) if INTERLEAVE => vmap::<f32x8, F, 4>(x, dst),
            None if INTERLEAVE => vmap_inplace::<f32x8, F, 4>(dst),
            Some(x) => {
                for (o, &v) in dst.iter_mut().zip(x) {
                    *o = apply_one::<F>(v);
                }
            }
            None => {
                for o in dst.iter_mut() {
                    *o = apply_one::<F>(*o);
                }
            }
        }
    }
}

/// `F` on one element, out of line: one copy serves in place and out of place (on the
/// firmware, `arm-none-eabi-size` on `lenet5-firmware` re-measures).
#[inline(never)]
fn apply_one<F: Unary>(v: f32) -> f32 {
    F::apply::<f32, 1>([v])[0]
}

/// AVX2 + FMA: four ymm vectors interleaved.
#[cfg(target_arch = "x86_64")]
impl MapKernel for crate::arch::x86::Avx2 {
    #[inline(always)]
    fn map<F: Unary>(src: Option<&[f32]>, dst: &mut [f32]) {
        match src {
            Some(x) => vmap::<Self, F, 4>(x, dst),
            None => vmap_inplace::<Self, F, 4>(dst),
        }
    }
}

/// AVX-512: eight 16-lane zmm vectors interleaved (32 registers; four for a
/// [`Unary::LONG`] function), a masked tail.
#[cfg(target_arch = "x86_64")]
impl MapKernel for crate::arch::x86::Avx512 {
    #[inline(always)]
    fn map<F: Unary>(src: Option<&[f32]>, dst: &mut [f32]) {
        // SAFETY: this lane type is only used in code compiled for, and run on, AVX-512 F;
        // `src` is as long as `dst` (checked by the public functions).
        unsafe {
            if F::LONG {
                x86::zmap::<F, 4>(src, dst)
            } else {
                x86::zmap::<F, 8>(src, dst)
            }
        }
    }
}

/// The AVX-512 loop over 16-lane registers.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };

    use super::Unary;
    use crate::arch::x86::Zmm;
    use crate::simd::LANES;
    use crate::vector::build;

    /// `dst = F(src)` (or in place, with `src` `None`) 16 lanes at a time: `N` vectors per
    /// step (their dependency chains interleaved), then single vectors, the last one masked,
    /// so that every element gets the same operations. (Generic over `F`, not closures: a
    /// closure is compiled with the target features of the function that defines it, and
    /// this one is inlined into the AVX-512 trampoline.)
    ///
    /// # Safety
    /// AVX-512 F must be available. `src`, when given, must be as long as `dst`.
    #[inline(always)]
    pub(super) unsafe fn zmap<F: Unary, const N: usize>(src: Option<&[f32]>, dst: &mut [f32]) {
        const Z: usize = 2 * LANES;
        let len = dst.len();
        let yp = dst.as_mut_ptr();
        let xp: *const f32 = match src {
            Some(s) => {
                debug_assert_eq!(s.len(), len);
                s.as_ptr()
            }
            None => yp,
        };
        let mut i = 0;
        // SAFETY: AVX-512 F is available (the caller's contract). Every access is within the
        // first `len` floats of `src` and `dst` (`i + N * 16 <= len`, `i + 16 <= len`, the
        // last one masked to the `len - i` remaining); in place, each vector is read before
        // it is written.
        unsafe {
            while i + N * Z <= len {
                let v = F::apply::<Zmm, N>(build(Zmm(_mm512_setzero_ps()), |k| {
                    Zmm(_mm512_loadu_ps(xp.add(i + k * Z)))
                }));
                for (k, r) in v.iter().enumerate() {
                    _mm512_storeu_ps(yp.add(i + k * Z), r.0);
                }
                i += N * Z;
            }
            while i + Z <= len {
                _mm512_storeu_ps(
                    yp.add(i),
                    F::apply::<Zmm, 1>([Zmm(_mm512_loadu_ps(xp.add(i)))])[0].0,
                );
                i += Z;
            }
            if i < len {
                let m: u16 = ((1_u32 << (len - i)) - 1) as u16;
                let v = F::apply::<Zmm, 1>([Zmm(_mm512_maskz_loadu_ps(m, xp.add(i)))])[0];
                _mm512_mask_storeu_ps(yp.add(i), m, v.0);
            }
        }
    }
}

/// [`MapKernel::map`] on the variant of `V` (what [`arch::dispatch!`] calls).
#[inline(always)]
fn map_on<V: MapKernel, F: Unary>(src: Option<&[f32]>, dst: &mut [f32]) {
    V::map::<F>(src, dst);
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
    let src = Some(x);
    let dst = y;
    arch::dispatch!(map_on[ReluFn](src: Option<&[f32]>, dst: &mut [f32]));
    Ok(())
}

/// In-place [`relu`].
///
/// # Errors
/// [`KernelError::ZeroSize`] for an empty `x`.
pub fn relu_inplace(x: &mut [f32]) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    let src: Option<&[f32]> = None;
    let dst = x;
    arch::dispatch!(map_on[ReluFn](src: Option<&[f32]>, dst: &mut [f32]));
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
    let src = Some(x);
    let dst = y;
    arch::dispatch!(map_on[SigmoidFn](src: Option<&[f32]>, dst: &mut [f32]));
    Ok(())
}

/// In-place [`sigmoid`].
///
/// # Errors
/// [`KernelError::ZeroSize`].
pub fn sigmoid_inplace(x: &mut [f32]) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    let src: Option<&[f32]> = None;
    let dst = x;
    arch::dispatch!(map_on[SigmoidFn](src: Option<&[f32]>, dst: &mut [f32]));
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
    let src = Some(x);
    let dst = y;
    arch::dispatch!(map_on[TanhFn](src: Option<&[f32]>, dst: &mut [f32]));
    Ok(())
}

/// In-place [`tanh`].
///
/// # Errors
/// [`KernelError::ZeroSize`].
pub fn tanh_inplace(x: &mut [f32]) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    let src: Option<&[f32]> = None;
    let dst = x;
    arch::dispatch!(map_on[TanhFn](src: Option<&[f32]>, dst: &mut [f32]));
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

/// `y = x Phi(x)` (GELU with the exact normal distribution function, PyTorch's
/// `nn.GELU()`), within [`Elementwise::max_ulps`] of the exact value over the whole f32
/// range, the negative tail included (where PyTorch's f32 kernel cancels); `+inf -> +inf`,
/// `-inf -> -0`.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::LengthMismatch`].
///
/// ```
/// let mut y = [0.0; 3];
/// cnnkit_kernels::gelu(&[-5.0, 0.0, 30.0], &mut y).unwrap();
/// assert!((y[0] / -1.433_257_9e-6 - 1.0).abs() < 1e-6);
/// assert_eq!(&y[1..], &[0.0, 30.0]);
/// ```
pub fn gelu(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_unary(x, y)?;
    let src = Some(x);
    let dst = y;
    arch::dispatch!(map_on[GeluFn](src: Option<&[f32]>, dst: &mut [f32]));
    Ok(())
}

/// In-place [`gelu`].
///
/// # Errors
/// [`KernelError::ZeroSize`].
pub fn gelu_inplace(x: &mut [f32]) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    let src: Option<&[f32]> = None;
    let dst = x;
    arch::dispatch!(map_on[GeluFn](src: Option<&[f32]>, dst: &mut [f32]));
    Ok(())
}

/// `grad_in = grad_out * (Phi(x) + x phi(x))` where `x` is the forward input.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::LengthMismatch`].
pub fn gelu_backward(x: &[f32], grad_out: &[f32], grad_in: &mut [f32]) -> Result<(), KernelError> {
    check_binary(x, grad_out, grad_in)?;
    map2(x, grad_out, grad_in, |x, g| {
        g * math::gelu_derivative::<f32x8, 1>([x])[0]
    });
    Ok(())
}

/// `y = min(max(x, 0), 6)` (PyTorch's `nn.ReLU6`; NaN and -0 pass through).
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::LengthMismatch`].
///
/// ```
/// let mut y = [0.0; 4];
/// cnnkit_kernels::relu6(&[-1.0, 0.5, 6.0, 7.5], &mut y).unwrap();
/// assert_eq!(y, [0.0, 0.5, 6.0, 6.0]);
/// ```
pub fn relu6(x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_unary(x, y)?;
    let src = Some(x);
    let dst = y;
    arch::dispatch!(map_on[Relu6Fn](src: Option<&[f32]>, dst: &mut [f32]));
    Ok(())
}

/// In-place [`relu6`].
///
/// # Errors
/// [`KernelError::ZeroSize`] for an empty `x`.
pub fn relu6_inplace(x: &mut [f32]) -> Result<(), KernelError> {
    nonzero(x.len(), "input")?;
    let src: Option<&[f32]> = None;
    let dst = x;
    arch::dispatch!(map_on[Relu6Fn](src: Option<&[f32]>, dst: &mut [f32]));
    Ok(())
}

/// `grad_in = grad_out` where the forward output `y` is strictly between 0 and 6, else 0
/// (PyTorch's `hardtanh_backward`; NaN passes the gradient, as there).
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::LengthMismatch`].
pub fn relu6_backward(y: &[f32], grad_out: &[f32], grad_in: &mut [f32]) -> Result<(), KernelError> {
    activation_backward(
        Activation::Clamp { min: 0.0, max: 6.0 },
        y,
        grad_out,
        grad_in,
    )
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

impl Elementwise {
    /// `y = f(x)` on the active variant ([`relu`], [`leaky_relu`], [`tanh`], [`sigmoid`],
    /// [`gelu`], [`relu6`]).
    ///
    /// # Errors
    /// As the function's own kernel.
    pub fn forward(self, x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
        match self {
            Elementwise::Relu => relu(x, y),
            Elementwise::LeakyRelu(s) => leaky_relu(s, x, y),
            Elementwise::Tanh => tanh(x, y),
            Elementwise::Sigmoid => sigmoid(x, y),
            Elementwise::Gelu => gelu(x, y),
            Elementwise::Relu6 => relu6(x, y),
        }
    }

    /// `x = f(x)` in place.
    ///
    /// # Errors
    /// As [`Elementwise::forward`].
    pub fn forward_inplace(self, x: &mut [f32]) -> Result<(), KernelError> {
        match self {
            Elementwise::Relu => relu_inplace(x),
            Elementwise::LeakyRelu(s) => leaky_relu_inplace(s, x),
            Elementwise::Tanh => tanh_inplace(x),
            Elementwise::Sigmoid => sigmoid_inplace(x),
            Elementwise::Gelu => gelu_inplace(x),
            Elementwise::Relu6 => relu6_inplace(x),
        }
    }

    /// `grad_in = f'(x) * grad_out` from the forward pass's input `x` and output `y`
    /// (each function reads the one its gradient needs; see the variants).
    ///
    /// # Errors
    /// As the function's own backward kernel.
    pub fn backward(
        self,
        x: &[f32],
        y: &[f32],
        grad_out: &[f32],
        grad_in: &mut [f32],
    ) -> Result<(), KernelError> {
        match self {
            // (`y <= 0` exactly where `x <= 0`, NaN passing in both)
            Elementwise::Relu => relu_backward(y, grad_out, grad_in),
            Elementwise::LeakyRelu(s) => leaky_relu_backward(s, x, grad_out, grad_in),
            Elementwise::Tanh => tanh_backward(y, grad_out, grad_in),
            Elementwise::Sigmoid => sigmoid_backward(y, grad_out, grad_in),
            Elementwise::Gelu => gelu_backward(x, grad_out, grad_in),
            Elementwise::Relu6 => relu6_backward(y, grad_out, grad_in),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{GeluFn, Relu6Fn, ReluFn, SigmoidFn, TanhFn, Unary, f32x8};

    /// The element-by-element path of targets without vector registers (`Arith for f32`)
    /// gives the bits of the portable `f32x8` path, for every function, over a sweep of
    /// the whole f32 range (every 4099th bit pattern, and a grid over [-40, 40]).
    #[test]
    fn scalar_lanes_match_f32x8() {
        fn check<F: Unary>(name: &str) {
            let xs = (0..=u32::MAX / 4099)
                .map(|i| f32::from_bits(i.wrapping_mul(4099)))
                .chain((-40_000..=40_000).map(|i| i as f32 / 1000.0));
            for x in xs {
                let v = F::apply::<f32x8, 1>([f32x8::splat(x)])[0].to_array()[0];
                let s = F::apply::<f32, 1>([x])[0];
                assert!(
                    v.to_bits() == s.to_bits() || (v.is_nan() && s.is_nan()),
                    "{name}({x:e}): f32x8 {v:e}, scalar {s:e}"
                );
            }
        }
        check::<ReluFn>("relu");
        check::<TanhFn>("tanh");
        check::<SigmoidFn>("sigmoid");
        check::<GeluFn>("gelu");
        check::<Relu6Fn>("relu6");
    }
}
