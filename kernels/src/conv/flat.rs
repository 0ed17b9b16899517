//! Flat planes, the machinery shared by the forward pass (`fwd_flat`) and the input
//! gradient (`input_flat`) of stride-1, undilated layers, and by the weight gradients that
//! read input rows (`weight_flat`, `weight_sparse`): planes copied with their rows a fixed
//! distance `r` apart and zero columns and rows around them, so that every tap is one
//! constant offset from the output position and a strip of consecutive positions is a
//! plain vector load, whatever rows it crosses.
//!
//! The register tile is `CB` channels by `NV` vectors of consecutive positions: per tap
//! and channel of the other side, `NV` loads and `CB` broadcasts feed `CB * NV` FMAs. Each
//! variant's lane type names its tile ([`FlatKernel`]).

use crate::arch::Tile;
use crate::simd::{LANES, f32x8};
use crate::vector::{Vf32, build};

/// Positions per strip (the x86 tile's `NV` vectors of 8). The scratch length rounds to
/// it for every variant.
pub(super) const STRIP: usize = 4 * LANES;

/// Most floats of one group's flat gradient planes [`backward_input`] takes. Every strip
/// reads all of them; measured here, 4.5k (LeNet's conv2) and 11k (16 <- 32 channels,
/// 16x16, 3x3) ran 1.2-3.4x faster than `W^T * dY` + col2im, 115k (ResNet's 128-channel
/// 28x28) and 211k (VGG's 64-channel 56x56) 1.3-1.7x slower.
pub(super) const MAX_PLANES: usize = 16 * 1024;

/// The flat-plane kernels as a variant runs them, implemented by its lane type: the
/// tile, `Tile<CB, NV>`, `CB` channels by `NV` vectors of a strip (x86: 2 x 4, 8
/// accumulators, 4 loads, 2 broadcasts; portable: 1 x 4, as SSE2 holds an 8-lane vector
/// in two of its 16 registers).
pub(crate) trait FlatKernel: Vf32 {
    /// The tile of the forward pass and the input gradient.
    /// The tile of the forward pass and the input gradient (`Tile<CB, NV>`).
    type Tile;
}

impl FlatKernel for f32x8 {
    type Tile = Tile<1, 4>;
}

#[cfg(target_arch = "x86_64")]
impl FlatKernel for crate::arch::x86::Avx2 {
    type Tile = Tile<2, 4>;
}

#[cfg(target_arch = "x86_64")]
impl FlatKernel for crate::arch::x86::Avx512 {
    type Tile = Tile<2, 4>;
}

/// Copies the `w`-float rows of `src` into `dst`, row `y` at `at + y * r`; rows that
/// would pass the end of `dst` are cut. (`memcpy` per row: moves inline by `copy_row`
/// measured slower here, 28-float rows of a depthwise layer.)
#[inline(always)]
pub(super) fn rows_into(src: &[f32], w: usize, dst: &mut [f32], at: usize, r: usize) {
    for (y, row) in src.chunks_exact(w).enumerate() {
        let start = at + y * r;
        let room = dst.len().saturating_sub(start).min(w);
        if room == 0 {
            break;
        }
        dst[start..start + room].copy_from_slice(&row[..room]);
    }
}

/// Fills the `w`-float rows of `dst` from `src`, row `y` from `y * r`.
#[inline(always)]
pub(super) fn rows_from(src: &[f32], r: usize, dst: &mut [f32], w: usize) {
    for (y, row) in dst.chunks_exact_mut(w).enumerate() {
        row.copy_from_slice(&src[y * r..][..w]);
    }
}

/// One flat correlation: every destination plane `d` (whole strips of positions `q`) is
/// `sum over source planes s and taps (a, b) of W[d, s, a, b] * src[s][at(q, a, b)]`,
/// plus a bias, clamped. Forward (`FLIP = false`): `at = start + q + a * r + b`. Input
/// gradient (`FLIP = true`, the kernel flipped): `at = start + q + (kh - 1) * r + kw - 1 -
/// (a * r + b)`. The source planes hold `plane` floats, every position read.
#[derive(Clone, Copy)]
pub(super) struct Corr<'a> {
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) r: usize,
    /// Positions per destination plane (whole strips).
    pub(super) q: usize,
    pub(super) start: usize,
    pub(super) plane: usize,
    /// The group's weights, `w_dst` and `w_src` apart between destination and source
    /// channels (taps contiguous).
    pub(super) w: &'a [f32],
    pub(super) w_dst: usize,
    pub(super) w_src: usize,
    pub(super) lo: f32,
    pub(super) hi: f32,
    /// Where the source planes' nonzero data can lie, `lo..hi` (plane offsets), when tap
    /// rows reading outside it may be skipped (see [`Corr::tap_rows`]).
    pub(super) data: Option<(usize, usize)>,
}

impl Corr<'_> {
    /// Floats of a source plane one strip reads, from `start + q` on.
    const fn span(&self, width: usize) -> usize {
        (self.kh - 1) * self.r + self.kw - 1 + width
    }

    /// The tap rows `a` whose reads for the strip of `width` positions from `s` touch the
    /// source planes' data, `data.0..data.1`: the others read only zero borders and add
    /// nothing (input gradient only, `FLIP`: its weights are finite, `flat::finite`, so
    /// `w * 0` is 0; the forward pass keeps the explicit `w * 0` of the padding, which is
    /// NaN for an infinite weight, as in the reference). Tap row `a` reads
    /// `start + s + last - a * r - b + (0..width)` for `b < kw`, decreasing with `a`.
    fn tap_rows(&self, s: usize, width: usize) -> core::ops::Range<usize> {
        let Some((lo, hi)) = self.data else {
            return 0..self.kh;
        };
        let base = self.start + s + self.span(width) - width;
        // tap row a reads [base - a * r - (kw - 1), base - a * r + width)
        let reads = |a: usize| {
            let top = base - a * self.r;
            top + width > lo && top - (self.kw - 1) < hi
        };
        let first = (0..self.kh).find(|&a| reads(a)).unwrap_or(self.kh);
        let end = (first..self.kh).find(|&a| !reads(a)).unwrap_or(self.kh);
        first..end
    }
}

/// Every destination plane of `c` (`dsts` of them), `CB` at a time, the rest one by one.
#[inline(always)]
pub(super) fn all_strips<V: Vf32, const CB: usize, const NV: usize, const FLIP: bool>(
    c: &Corr<'_>,
    dsts: usize,
    bias: Option<&[f32]>,
    src: &[f32],
    dst: &mut [f32],
) {
    let mut d0 = 0;
    while d0 + CB <= dsts {
        strips::<V, CB, NV, FLIP>(c, d0, bias, src, dst);
        d0 += CB;
    }
    while d0 < dsts {
        strips::<V, 1, NV, FLIP>(c, d0, bias, src, dst);
        d0 += 1;
    }
}

/// Destination planes `d0..d0 + CB` of `c` over every strip of `NV * 8` positions.
#[inline(always)]
fn strips<V: Vf32, const CB: usize, const NV: usize, const FLIP: bool>(
    c: &Corr<'_>,
    d0: usize,
    bias: Option<&[f32]>,
    src: &[f32],
    dst: &mut [f32],
) {
    let (kw, r) = (c.kw, c.r);
    let width = NV * LANES;
    let span = c.span(width);
    // the largest tap offset within a strip's window
    let last = span - width;
    debug_assert_eq!(c.q % width, 0, "strips tile the computed positions");
    let init: [V; CB] = build(V::splat(0.0), |j| V::splat(bias.map_or(0.0, |b| b[d0 + j])));
    let (lo, hi) = (V::splat(c.lo), V::splat(c.hi));
    let mut s = 0;
    while s < c.q {
        let mut acc: [[V; NV]; CB] = build([V::splat(0.0); NV], |j| [init[j]; NV]);
        let taps = c.tap_rows(s, width);
        for (sc, plane) in src.chunks_exact(c.plane).enumerate() {
            let w_s = &c.w[d0 * c.w_dst + sc * c.w_src..];
            // every tap of this strip reads within `window` (`span` floats)
            let window = &plane[c.start + s..][..span];
            for a in taps.clone() {
                for b in 0..kw {
                    let off = if FLIP { last - (a * r + b) } else { a * r + b };
                    // SAFETY: off <= last = span - width (a < kh, b < kw), so the
                    // `width` floats from `off` lie within `window`.
                    let at = unsafe { window.as_ptr().add(off) };
                    let x: [V; NV] = build(V::splat(0.0), |v| {
                        // SAFETY: v * 8 + 8 <= width (see above).
                        unsafe { V::load_ptr(at.add(v * LANES)) }
                    });
                    for (j, accs) in acc.iter_mut().enumerate() {
                        let wv = V::splat(w_s[j * c.w_dst + a * kw + b]);
                        for (y, &xv) in accs.iter_mut().zip(x.iter()) {
                            *y = wv.mul_add(xv, *y);
                        }
                    }
                }
            }
        }
        for (j, accs) in acc.iter().enumerate() {
            let out = &mut dst[(d0 + j) * c.q + s..][..width];
            for (v, y) in accs.iter().enumerate() {
                y.clamp(lo, hi).store(&mut out[v * LANES..(v + 1) * LANES]);
            }
        }
        s += width;
    }
}
