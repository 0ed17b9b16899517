//! Optimizer updates with PyTorch's rules (`torch.optim.SGD` with momentum and Nesterov,
//! `Adam`, `AdamW`), one parameter tensor (or a range of one) at a time. Plain `f32`
//! arithmetic in PyTorch's order, no fused multiply-adds, so that an update is the same
//! bits on every target and for any split of a tensor into ranges.
//!
//! ```
//! use cnnkit_kernels::{SgdParams, sgd_step};
//! let p = SgdParams { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.0, first: true };
//! let mut w = [1.0, 2.0];
//! sgd_step(&p, &mut w, &[10.0, -10.0], None).unwrap();
//! assert_eq!(w, [0.0, 3.0]);
//! ```

use crate::error::KernelError;
use crate::params::{AdamParams, SgdParams, check_len, nonzero};
use crate::simd::f32x8;

/// One SGD update of `w` from its gradient `g` (and its momentum buffer, which momentum
/// needs and updates): `d = g + wd * w`; `m = d` on the first step, else `momentum * m +
/// d`; `w -= lr * (d + momentum * m)` with Nesterov, else `lr * m` (`lr * d` without
/// momentum).
///
/// # Errors
/// [`KernelError::ZeroSize`]; [`KernelError::LengthMismatch`];
/// [`KernelError::InvalidParameter`] for momentum without a buffer.
pub fn sgd_step(
    p: &SgdParams,
    w: &mut [f32],
    g: &[f32],
    momentum_buf: Option<&mut [f32]>,
) -> Result<(), KernelError> {
    nonzero(w.len(), "w")?;
    check_len("g", w.len(), g.len())?;
    let (lr, wd) = (p.lr, p.weight_decay);
    match momentum_buf {
        None if p.momentum != 0.0 => Err(KernelError::InvalidParameter(
            "SGD with momentum needs its buffer",
        )),
        None => {
            for (w, &d) in w.iter_mut().zip(g) {
                *w -= lr * (d + wd * *w);
            }
            Ok(())
        }
        Some(m) => {
            check_len("momentum_buf", w.len(), m.len())?;
            let (mu, first, nesterov) = (p.momentum, p.first, p.nesterov);
            for ((w, &d), m) in w.iter_mut().zip(g).zip(m) {
                let d = d + wd * *w;
                *m = if first { d } else { mu * *m + d };
                let u = if nesterov { d + mu * *m } else { *m };
                *w -= lr * u;
            }
            Ok(())
        }
    }
}

/// One Adam (AdamW) update of `w` from its gradient `g` and its moments `m`, `v` (updated):
/// `d = g + wd * w` (AdamW: `w *= 1 - lr * wd`, `d = g`); `m = beta1 * m + (1 - beta1) *
/// d`; `v = beta2 * v + (1 - beta2) * d^2`; `w -= step_size * m / (sqrt(v) / bc2_sqrt +
/// eps)`.
///
/// # Errors
/// [`KernelError::ZeroSize`]; [`KernelError::LengthMismatch`].
pub fn adam_step(
    p: &AdamParams,
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<(), KernelError> {
    nonzero(w.len(), "w")?;
    check_len("g", w.len(), g.len())?;
    check_len("m", w.len(), m.len())?;
    check_len("v", w.len(), v.len())?;
    let AdamParams {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay: wd,
        decoupled,
        step_size,
        bc2_sqrt,
    } = *p;
    // Eight lanes at a time (`f32x8::sqrt` is the instruction where there is one; the
    // lane-wise operations round as the scalar ones: the same bits), the rest one by one.
    let s = Adam {
        lr,
        beta1,
        beta2,
        eps,
        wd,
        decoupled,
        step_size,
        bc2_sqrt,
    };
    let mut wc = w.chunks_exact_mut(8);
    let mut gc = g.chunks_exact(8);
    let mut mc = m.chunks_exact_mut(8);
    let mut vc = v.chunks_exact_mut(8);
    for (((w8, g8), m8), v8) in (&mut wc).zip(&mut gc).zip(&mut mc).zip(&mut vc) {
        let load = |x: &[f32]| f32x8::new(x.try_into().unwrap_or([0.0; 8]));
        let (nw, nm, nv) = s.update(load(w8), load(g8), load(m8), load(v8), f32x8::sqrt);
        w8.copy_from_slice(&nw.to_array());
        m8.copy_from_slice(&nm.to_array());
        v8.copy_from_slice(&nv.to_array());
    }
    let tails = wc
        .into_remainder()
        .iter_mut()
        .zip(gc.remainder())
        .zip(mc.into_remainder())
        .zip(vc.into_remainder());
    for (((w, &g), m), v) in tails {
        (*w, *m, *v) = s.update(*w, g, *m, *v, libm::sqrtf);
    }
    Ok(())
}

/// Adam's constants, for [`Adam::update`] on lanes or on scalars.
struct Adam {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    wd: f32,
    decoupled: bool,
    step_size: f32,
    bc2_sqrt: f32,
}

impl Adam {
    /// `(w, m, v)` after one step, from the gradient `g`.
    #[inline(always)]
    fn update<T>(&self, w: T, g: T, m: T, v: T, sqrt: impl Fn(T) -> T) -> (T, T, T)
    where
        T: Copy
            + From<f32>
            + core::ops::Add<Output = T>
            + core::ops::Sub<Output = T>
            + core::ops::Mul<Output = T>
            + core::ops::Div<Output = T>,
    {
        let k = T::from;
        let (w, d) = if self.decoupled {
            (w * k(1.0 - self.lr * self.wd), g)
        } else {
            (w, g + k(self.wd) * w)
        };
        let m = k(self.beta1) * m + k(1.0 - self.beta1) * d;
        let v = k(self.beta2) * v + k(1.0 - self.beta2) * d * d;
        let w = w - k(self.step_size) * m / (sqrt(v) / k(self.bc2_sqrt) + k(self.eps));
        (w, m, v)
    }
}
