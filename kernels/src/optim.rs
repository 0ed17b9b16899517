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
    for (((w, &d), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
        let d = if decoupled {
            *w *= 1.0 - lr * wd;
            d
        } else {
            d + wd * *w
        };
        *m = beta1 * *m + (1.0 - beta1) * d;
        *v = beta2 * *v + (1.0 - beta2) * d * d;
        *w -= step_size * *m / (libm::sqrtf(*v) / bc2_sqrt + eps);
    }
    Ok(())
}
