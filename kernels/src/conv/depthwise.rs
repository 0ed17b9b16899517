//! Depthwise layers (one input and one output channel per group), the parts shared by the
//! row-by-row kernels of the three passes (`fwd_depthwise`, `input_depthwise`,
//! `weight_depthwise`): where GEMM would run with a single row per group, they work a row
//! at a time through a zero-padded stack buffer, vectorised along the output row, and
//! need no scratch. At stride 1 the calls that have scratch take the flat planes instead
//! (2-3x faster on 256 channels of 28 x 28), except for non-finite weights (input
//! gradient) or inputs (weight gradient), whose products with the flat planes' zero
//! borders these kernels never form.

use crate::params::{Conv2dDims, Conv2dParams};
use crate::simd::LANES;
use crate::vector::Vf32;

/// Floats in the stack row buffer (1 KiB).
pub(super) const SEG: usize = 256;
/// Most kernel taps the weight-gradient accumulators hold.
pub(super) const MAX_TAPS: usize = 64;

/// Padded-row positions one output row reads, rounded up to whole vectors.
pub(super) fn row_len(p: &Conv2dParams, d: &Conv2dDims) -> usize {
    let tiles = d.out_w.div_ceil(LANES);
    (tiles * LANES - 1)
        .saturating_mul(p.stride_w)
        .saturating_add((p.kernel_w - 1).saturating_mul(p.dilation_w))
        .saturating_add(1)
}

/// `dst.copy_from_slice(src)` for rows of a few dozen floats: vector moves inline, where
/// `memcpy` would cost a library call per row.
#[inline(always)]
pub(super) fn copy_row<V: Vf32>(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let full = n / LANES * LANES;
    let mut i = 0;
    while i < full {
        V::load(&src[i..i + LANES]).store(&mut dst[i..i + LANES]);
        i += LANES;
    }
    // (a loop, not copy_from_slice: the tail is under 8 floats and a memcpy call costs
    // more than it moves)
    #[allow(clippy::manual_memcpy)]
    for j in full..n {
        dst[j] = src[j];
    }
}

/// Whether padded row `ihp` lies in the zero padding above or below the image.
#[inline(always)]
pub(super) fn is_pad_row(p: &Conv2dParams, ihp: usize) -> bool {
    ihp < p.pad_top || ihp >= p.pad_top + p.in_h
}

/// Fills `dst` (the in-image columns of a zero-padded row buffer) with padded row `ihp`
/// of the plane `x`: its input row, or zeros for a padding row.
#[inline(always)]
pub(super) fn padded_row<V: Vf32>(p: &Conv2dParams, x: &[f32], ihp: usize, dst: &mut [f32]) {
    if is_pad_row(p, ihp) {
        dst.fill(0.0);
    } else {
        copy_row::<V>(dst, &x[(ihp - p.pad_top) * p.in_w..][..dst.len()]);
    }
}

/// Whether the depthwise kernels handle `p`.
pub(super) fn applies(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    d.in_per_group == 1
        && d.out_per_group == 1
        && row_len(p, d) <= SEG
        && p.kernel_h * p.kernel_w <= MAX_TAPS
}
