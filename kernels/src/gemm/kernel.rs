//! The portable register-tiled microkernel, written with `wide::f32x8`, and the fused
//! store. Tile shape per target: 6x16 (12 vector accumulators) where the compiled
//! instruction set has 16 wide registers (AVX) or 32 (NEON); 4x8 otherwise (SSE2 keeps
//! an f32x8 in two xmm registers and has only 16 of them, and scalar targets
//! such as the Cortex-M4F have 32 single-precision registers).

use super::{Bias, Epilogue};
use crate::simd::{self, LANES, clamp, clamp1, f32x8, load};

#[cfg(any(target_feature = "avx", target_arch = "aarch64"))]
mod shape {
    pub const MR: usize = 6;
    pub const NV: usize = 2;
}
#[cfg(not(any(target_feature = "avx", target_arch = "aarch64")))]
mod shape {
    pub const MR: usize = 4;
    pub const NV: usize = 1;
}

/// Rows of a register tile.
pub(crate) const MR: usize = shape::MR;
/// Vectors per tile row.
const NV: usize = shape::NV;
/// Columns of a register tile.
pub(crate) const NR: usize = NV * LANES;

/// The accumulators of one tile.
pub(super) type Acc = [[f32x8; NV]; MR];

/// Where a tile lands in C and how much of it is real.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub i0: usize,
    pub j0: usize,
    pub mr: usize,
    pub nr: usize,
}

/// `acc = sum_p a[p] (MR values) x b[p] (NR values)` over `kc` packed steps.
#[inline(always)]
pub(super) fn kernel(kc: usize, a: &[f32], b: &[f32]) -> Acc {
    let mut acc = [[f32x8::ZERO; NV]; MR];
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        let mut bv = [f32x8::ZERO; NV];
        for (v, bvv) in bv.iter_mut().enumerate() {
            *bvv = load(&bk[v * LANES..]);
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let av = f32x8::splat(ak[r]);
            for (x, &bb) in row.iter_mut().zip(bv.iter()) {
                *x = av.mul_add(bb, *x);
            }
        }
    }
    acc
}

/// Stores one tile: on the first K block `alpha * acc + beta * C + bias` (C unread when
/// `beta == 0`), on later blocks `C + alpha * acc`; on the last K block, then clamps.
#[inline(always)]
pub(super) fn store(
    acc: &Acc,
    c: &mut [f32],
    ldc: usize,
    t: Tile,
    ep: &Epilogue<'_>,
    first: bool,
    last: bool,
) {
    let alpha = f32x8::splat(ep.alpha);
    let beta = f32x8::splat(ep.beta);
    let (lo, hi) = (f32x8::splat(ep.lo), f32x8::splat(ep.hi));
    if t.mr == MR && t.nr == NR {
        for (r, accr) in acc.iter().enumerate() {
            let i = t.i0 + r;
            let row = &mut c[i * ldc + t.j0..][..NR];
            for (v, &a) in accr.iter().enumerate() {
                let dst = &mut row[v * LANES..];
                let mut x = a * alpha;
                if first {
                    if ep.beta != 0.0 {
                        x = beta.mul_add(load(dst), x);
                    }
                    match ep.bias {
                        Bias::None => {}
                        Bias::Row(b) => x += f32x8::splat(b[i]),
                        Bias::Col(b) => x += load(&b[t.j0 + v * LANES..]),
                    }
                } else {
                    x += load(dst);
                }
                if last {
                    x = clamp(x, lo, hi);
                }
                simd::store(dst, x);
            }
        }
    } else {
        for (r, accr) in acc.iter().enumerate().take(t.mr) {
            let i = t.i0 + r;
            let row = &mut c[i * ldc + t.j0..][..t.nr];
            let mut vals = [0.0_f32; NR];
            for (v, a) in accr.iter().enumerate() {
                vals[v * LANES..][..LANES].copy_from_slice(&a.to_array());
            }
            for (jj, (dst, &a)) in row.iter_mut().zip(vals.iter()).enumerate() {
                let mut x = a * ep.alpha;
                if first {
                    if ep.beta != 0.0 {
                        x += ep.beta * *dst;
                    }
                    match ep.bias {
                        Bias::None => {}
                        Bias::Row(b) => x += b[i],
                        Bias::Col(b) => x += b[t.j0 + jj],
                    }
                } else {
                    x += *dst;
                }
                if last {
                    x = clamp1(x, ep.lo, ep.hi);
                }
                *dst = x;
            }
        }
    }
}
