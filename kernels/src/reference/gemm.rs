//! Reference SGEMM.

use crate::error::KernelError;
use crate::params::GemmParams;

/// Reference for [`crate::sgemm`]: the triple loop, accumulated in f64, with BLAS's rules
/// for `alpha == 0` (A and B unread) and `beta == 0` (C unread).
///
/// # Errors
/// As [`crate::sgemm`] (no scratch).
pub fn sgemm(p: &GemmParams, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<(), KernelError> {
    let (la, lb, lc) = p.min_lens()?;
    for (arg, need, have) in [("a", la, a.len()), ("b", lb, b.len()), ("c", lc, c.len())] {
        if have < need {
            return Err(KernelError::LengthMismatch {
                arg,
                expected: need,
                actual: have,
            });
        }
    }
    let at = |i: usize, l: usize| {
        if p.trans_a {
            a[l * p.lda + i]
        } else {
            a[i * p.lda + l]
        }
    };
    let bt = |l: usize, j: usize| {
        if p.trans_b {
            b[j * p.ldb + l]
        } else {
            b[l * p.ldb + j]
        }
    };
    for i in 0..p.m {
        for j in 0..p.n {
            let mut acc = 0.0_f64;
            if p.alpha != 0.0 {
                for l in 0..p.k {
                    acc += f64::from(at(i, l)) * f64::from(bt(l, j));
                }
                acc *= f64::from(p.alpha);
            }
            let cij = &mut c[i * p.ldc + j];
            if p.beta != 0.0 {
                acc += f64::from(p.beta) * f64::from(*cij);
            }
            *cij = acc as f32;
        }
    }
    Ok(())
}
