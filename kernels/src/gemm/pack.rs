//! Packing of A blocks and B panels into microkernel order, zero-padded to whole tiles.

use super::MatRef;
use crate::simd::{LANES, load, store};
use crate::vector::build;

/// Writes `kc` steps of `width` values, step `p` holding `src[0][p], src[1][p], ...`: the
/// streams of a whole sliver along k (A's rows, or B's columns when B is used transposed)
/// interleaved in one pass over the sliver.
#[inline(always)]
fn interleave(src: &[&[f32]], width: usize, kc: usize, dst: &mut [f32]) {
    for (p, out) in dst.chunks_exact_mut(width).take(kc).enumerate() {
        for (o, s) in out.iter_mut().zip(src) {
            *o = s[p];
        }
    }
}

/// Packs rows `i0..i0 + mc`, columns `p0..p0 + kc` of `a` into `ceil(mc / MR)` slivers of
/// `kc x MR` (for each `p`, the `MR` values of one column), padding missing rows with 0.
#[inline(always)]
pub(super) fn pack_a<const MR: usize>(
    a: &MatRef<'_>,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    let panels = mc.div_ceil(MR);
    for (ip, sliver) in dst.chunks_exact_mut(kc * MR).take(panels).enumerate() {
        let r0 = ip * MR;
        let rows = (mc - r0).min(MR);
        if rows < MR {
            sliver.fill(0.0);
        }
        if a.cs == 1 && rows == MR {
            // rows are contiguous: MR streams along k, each step's MR values written
            // together (one pass over the sliver, no bounds checks in the loop)
            let src: [&[f32]; MR] = build(&[][..], |r| &a.data[(i0 + r0 + r) * a.rs + p0..][..kc]);
            interleave(&src, MR, kc, sliver);
        } else if a.cs == 1 {
            // rows are contiguous: read along k, write with stride MR
            for r in 0..rows {
                let src = &a.data[(i0 + r0 + r) * a.rs + p0..][..kc];
                for (p, &v) in src.iter().enumerate() {
                    sliver[p * MR + r] = v;
                }
            }
        } else {
            // columns are contiguous (A used transposed): read along m
            if a.rs == 1 && rows == MR {
                // (constant-length copies: inline moves, not a memcpy call per step)
                for (p, out) in sliver.chunks_exact_mut(MR).take(kc).enumerate() {
                    let base = (p0 + p) * a.cs + i0 + r0;
                    out.copy_from_slice(&a.data[base..][..MR]);
                }
                continue;
            }
            for p in 0..kc {
                let base = (p0 + p) * a.cs + (i0 + r0) * a.rs;
                let out = &mut sliver[p * MR..][..rows];
                if a.rs == 1 {
                    out.copy_from_slice(&a.data[base..][..rows]);
                } else {
                    for (r, o) in out.iter_mut().enumerate() {
                        *o = a.data[base + r * a.rs];
                    }
                }
            }
        }
    }
}

/// Packs rows `p0..p0 + kc`, columns `j0..j0 + nc` of `b` into `ceil(nc / NR)` slivers of
/// `kc x NR` (for each `p`, `NR` consecutive values of one row), padding with 0.
#[inline(always)]
pub(super) fn pack_b<const NV: usize>(
    b: &MatRef<'_>,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
) {
    let nr = NV * LANES;
    let panels = nc.div_ceil(nr);
    for (jp, sliver) in dst.chunks_exact_mut(kc * nr).take(panels).enumerate() {
        let c0 = jp * nr;
        let cols = (nc - c0).min(nr);
        if cols < nr {
            sliver.fill(0.0);
        }
        if b.cs == 1 && cols == nr {
            // whole slivers: NV vector moves per row, inline (a memcpy call per 64-byte
            // row would cost more than the microkernel spends on it)
            for p in 0..kc {
                let src = &b.data[(p0 + p) * b.rs + j0 + c0..][..nr];
                let dst = &mut sliver[p * nr..][..nr];
                for v in 0..NV {
                    store(&mut dst[v * LANES..], load(&src[v * LANES..]));
                }
            }
        } else if b.cs == 1 {
            for p in 0..kc {
                let src = &b.data[(p0 + p) * b.rs + j0 + c0..][..cols];
                for (d, &v) in sliver[p * nr..][..cols].iter_mut().zip(src) {
                    *d = v;
                }
            }
        } else if b.rs == 1 && cols == nr {
            // B used transposed, whole sliver: its nr columns are streams along k, each
            // step's nr values written together (one pass over the sliver)
            let src: [&[f32]; super::NR_MAX] = build(&[][..], |c| {
                if c < nr {
                    &b.data[(j0 + c0 + c) * b.cs + p0..][..kc]
                } else {
                    &[]
                }
            });
            interleave(&src[..nr], nr, kc, sliver);
        } else {
            // B used transposed: columns of op(B) are contiguous along k
            for c in 0..cols {
                let base = (j0 + c0 + c) * b.cs + p0 * b.rs;
                if b.rs == 1 {
                    let src = &b.data[base..][..kc];
                    for (p, &v) in src.iter().enumerate() {
                        sliver[p * nr + c] = v;
                    }
                } else {
                    for p in 0..kc {
                        sliver[p * nr + c] = b.data[base + p * b.rs];
                    }
                }
            }
        }
    }
}

/// [`pack_a`] in a function of its own, compiled with the build's own features (see
/// `Vf32::PACK_APART`; `#[inline(never)]` on a `#[target_feature]` function measured
/// inlined all the same, the attribute not emitted).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub(super) fn pack_a_apart<const MR: usize>(
    a: &MatRef<'_>,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    pack_a::<MR>(a, i0, mc, p0, kc, dst);
}

/// [`pack_b`] in a function of its own, compiled with the build's own features (see
/// `Vf32::PACK_APART`; `#[inline(never)]` on a `#[target_feature]` function measured
/// inlined all the same, the attribute not emitted).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub(super) fn pack_b_apart<const NV: usize>(
    b: &MatRef<'_>,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
) {
    pack_b::<NV>(b, p0, kc, j0, nc, dst);
}
