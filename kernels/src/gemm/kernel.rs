//! The register-tiled microkernel and the fused store, generic over the vector type so
//! that one source serves every variant. A tile is `MR` rows by `NV` vectors of 8.
//!
//! Tile shapes: AVX2 + FMA uses 6x16 (12 ymm accumulators, 2 for B, 1 broadcast: 15 of
//! 16 registers). The portable variant uses 6x16 where the compiled instruction set has
//! 16 wide registers (AVX) or 32 (NEON), and 4x8 otherwise (SSE2 keeps an f32x8 in two
//! xmm registers and has only 16; scalar targets such as the Cortex-M4F have 32
//! single-precision registers).

use super::{Bias, Epilogue};
use crate::simd::LANES;
use crate::vector::Vf32;

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

/// Rows of the portable variant's tile.
pub(crate) const PORTABLE_MR: usize = shape::MR;
/// Vectors per row of the portable variant's tile.
pub(crate) const PORTABLE_NV: usize = shape::NV;

/// Where a tile lands in C and how much of it is real.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub i0: usize,
    pub j0: usize,
    pub mr: usize,
    pub nr: usize,
}

/// `acc = sum_p a[p] (MR values) x b[p] (NV * 8 values)` over `kc` packed steps.
///
/// # Safety
/// `a` must be valid for reading `kc * MR` floats and `b` for `kc * NV * 8`.
#[inline(always)]
pub(super) unsafe fn kernel<V: Vf32, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
) -> [[V; NV]; MR] {
    let mut acc = [[V::splat(0.0); NV]; MR];
    for p in 0..kc {
        let mut bv = [V::splat(0.0); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: p < kc and v < NV, so the 8 floats lie within the kc * NV * 8 of b.
            *x = unsafe { V::load_ptr(b.add((p * NV + v) * LANES)) };
        }
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: p * MR + r < kc * MR.
            let av = V::splat(unsafe { *a.add(p * MR + r) });
            for (x, &bb) in row.iter_mut().zip(bv.iter()) {
                *x = av.mul_add(bb, *x);
            }
        }
    }
    acc
}

/// Stores one tile: on the first K block `alpha * acc + beta * C + bias` (C unread when
/// `beta == 0`), on later blocks `C + alpha * acc`; on the last K block, then clamps.
/// Full tiles go through vectors; edge tiles through an array, element by element (a row
/// of a tile, `NV * 8` floats, must fit the 64-float array).
#[inline(always)]
pub(super) fn store<V: Vf32, const MR: usize, const NV: usize>(
    acc: &[[V; NV]; MR],
    c: &mut [f32],
    ldc: usize,
    t: Tile,
    ep: &Epilogue<'_>,
    first: bool,
    last: bool,
) {
    let nr_full = NV * LANES;
    if t.mr == MR && t.nr == nr_full {
        let alpha = V::splat(ep.alpha);
        let beta = V::splat(ep.beta);
        let (lo, hi) = (V::splat(ep.lo), V::splat(ep.hi));
        for (r, accr) in acc.iter().enumerate() {
            let i = t.i0 + r;
            let row = &mut c[i * ldc + t.j0..][..nr_full];
            for (v, &a) in accr.iter().enumerate() {
                let dst = &mut row[v * LANES..];
                let mut x = a.mul(alpha);
                if first {
                    if ep.beta != 0.0 {
                        x = beta.mul_add(V::load(dst), x);
                    }
                    match ep.bias {
                        Bias::None => {}
                        Bias::Row(b) => x = x.add(V::splat(b[i])),
                        Bias::Col(b) => x = x.add(V::load(&b[t.j0 + v * LANES..])),
                    }
                } else {
                    x = x.add(V::load(dst));
                }
                if last {
                    x = x.clamp(lo, hi);
                }
                x.store(dst);
            }
        }
    } else {
        for (r, accr) in acc.iter().enumerate().take(t.mr) {
            let i = t.i0 + r;
            let row = &mut c[i * ldc + t.j0..][..t.nr];
            let mut vals = [0.0_f32; 64];
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
                    x = crate::simd::clamp1(x, ep.lo, ep.hi);
                }
                *dst = x;
            }
        }
    }
}
