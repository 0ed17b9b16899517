//! The input gradient of small stride-1 convolutions with the batch in the vector lanes:
//! eight images per vector, so every lane is useful whatever the plane's width, and each
//! input pixel sums exactly the taps that reach it.
//!
//! `dX[n, c, y, x] = sum over (o, a, b) of W[o, c, a, b] * dY[n, o, y + pad_top - a,
//! x + pad_left - b]` over the `(a, b)` whose gradient position lies inside the plane.
//! Eight images' gradient planes of one group are interleaved into a buffer
//! `[o][i][1 + j][lane]` with one zero column each side, and the weights are packed
//! `[a][b][o][c]`. A register tile holds `CB` input channels by two adjacent pixels of
//! one input row: per output channel and tap, two vector loads and `CB` broadcasts feed
//! `2 * CB` FMAs (the innermost loop runs over the output channels, with the gradient
//! and weight spans it reads bounds-checked once per tap). The tap rows are exact per input row, the tap columns the union of the
//! two pixels' ranges (the one extra column a pixel may read is the zero column): LeNet's
//! second layer (5x5, 10 x 10 gradient planes, 14 x 14 input) does 1.08x the useful
//! multiply-adds, where the flat kernel (`flat`) computes 1.7x on its zero borders and
//! rounds 14-wide rows to whole vectors.
//!
//! Like `flat`, the one extra column multiplies a weight by an explicit zero, so only
//! finite weights come here (`input_flat::finite`). Lanes past the batch's end in the last
//! group of eight repeat its last image and are dropped. Images go into and out of the
//! lanes eight positions at a time by an 8 x 8 transpose (AVX2: 24 shuffles; LeNet's
//! conv2, 16 images, 0.110 -> 0.104 ms against moving one float at a time; the portable
//! variant transposes through arrays, 3% slower there than the single floats).

use crate::arch::Tile;
use crate::arch::dispatch;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, add, mul};
use crate::simd::{LANES, f32x8};
use crate::vector::{Vf32, build};

/// Most floats of one group's interleaved gradient planes (the eight images' `dY`, one
/// zero column each side): every input row reads `kh` rows of each plane, and this keeps
/// one group within L2.
const MAX_BUF: usize = 32 * 1024;

/// Whether [`backward_input`] handles `p`: stride 1, no dilation, not 1x1 without
/// padding (a plain GEMM), at least 4 input channels per group (with 3, 8 x 12 x 12
/// gradient planes, it measured 0.8-1.0x the flat kernel's speed; depthwise layers keep
/// theirs), at least 8 images (a group of eight fills the lanes), and the
/// group's interleaved gradient planes within [`MAX_BUF`].
pub(super) fn applies(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    super::unit_stride_not_pointwise(p)
        && d.in_per_group >= 4
        && p.batch >= LANES
        && buf_len(d).is_ok_and(|n| n <= MAX_BUF)
}

/// Floats of one group's interleaved gradient planes.
fn buf_len(d: &Conv2dDims) -> Result<usize, KernelError> {
    mul(
        mul(d.out_per_group, d.out_h)?,
        mul(add(d.out_w, 2)?, LANES)?,
    )
}

/// Scratch elements [`backward_input`] needs: one group's packed weights, its
/// interleaved gradient planes and its interleaved input-gradient planes.
pub(super) fn scratch_len(p: &Conv2dParams, d: &Conv2dDims) -> Result<usize, KernelError> {
    let dx = mul(mul(d.in_per_group, mul(p.in_h, p.in_w)?)?, LANES)?;
    add(add(d.weight_len / p.groups, buf_len(d)?)?, dx)
}

/// The input gradient (overwritten); arguments validated by the caller, [`applies`]
/// holds, the weights are finite and `scratch` holds [`scratch_len`] floats.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn backward_input(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) {
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let (p, d) = (&{ *p }, &{ *d });
    // (6 channels x 2 pixels: 12 accumulators, 2 loads and 6 broadcasts per tap; the
    // portable variant takes 2 channels, as SSE2 holds a vector in two registers)
    dispatch!(run_on(
        p: &Conv2dParams,
        d: &Conv2dDims,
        weight: &[f32],
        grad_output: &[f32],
        grad_input: &mut [f32],
        scratch: &mut [f32],
    ));
}

/// The geometry one tile needs.
#[derive(Clone, Copy)]
struct Group<'a> {
    /// Input channels per group.
    c_in: usize,
    /// Output channels per group.
    m: usize,
    /// Floats per interleaved gradient plane: `out_h * row`.
    plane: usize,
    /// Floats per interleaved gradient row: `(out_w + 2) * LANES`.
    row: usize,
    kw: usize,
    /// The group's weights packed `[a][b][o][c]`.
    w: &'a [f32],
    /// The interleaved gradient planes `[o][i][1 + j][lane]`.
    buf: &'a [f32],
}

/// The lanes kernel as a variant runs it, implemented by its lane type: `Tile<CB, 1>`,
/// `CB` input channels per pass (x86: 6; portable: 2, for SSE2's 16 registers).
pub(crate) trait LanesKernel: Vf32 {
    /// The tile.
    type Tile: LanesTile;
}

impl LanesKernel for f32x8 {
    type Tile = Tile<2, 1>;
}

#[cfg(target_arch = "x86_64")]
impl LanesKernel for crate::arch::x86::Avx2 {
    type Tile = Tile<6, 1>;
}

#[cfg(target_arch = "x86_64")]
impl LanesKernel for crate::arch::x86::Avx512 {
    type Tile = Tile<6, 1>;
}

/// A tile shape back into const generics.
pub(crate) trait LanesTile {
    /// The input gradient ([`run`]).
    fn run<V: Vf32>(
        p: &Conv2dParams,
        d: &Conv2dDims,
        weight: &[f32],
        grad_output: &[f32],
        grad_input: &mut [f32],
        scratch: &mut [f32],
    );
}

impl<const CB: usize> LanesTile for Tile<CB, 1> {
    #[inline(always)]
    fn run<V: Vf32>(
        p: &Conv2dParams,
        d: &Conv2dDims,
        weight: &[f32],
        grad_output: &[f32],
        grad_input: &mut [f32],
        scratch: &mut [f32],
    ) {
        run::<V, CB>(p, d, weight, grad_output, grad_input, scratch);
    }
}

#[inline(always)]
fn run_on<V: LanesKernel>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) {
    V::Tile::run::<V>(p, d, weight, grad_output, grad_input, scratch);
}

#[inline(always)]
fn run<V: Vf32, const CB: usize>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    scratch: &mut [f32],
) {
    let (m, c_in) = (d.out_per_group, d.in_per_group);
    let taps = p.kernel_h * p.kernel_w;
    let (w_buf, rest) = scratch.split_at_mut(m * c_in * taps);
    let (buf, dx) = rest.split_at_mut(buf_len(d).unwrap_or(0));
    let (out_plane, in_plane) = (d.out_h * d.out_w, p.in_h * p.in_w);
    let dx = &mut dx[..c_in * in_plane * LANES];
    // the zero columns are never written after this
    buf.fill(0.0);
    let row = (d.out_w + 2) * LANES;
    let mut n0 = 0;
    while n0 < p.batch {
        let nb = LANES.min(p.batch - n0);
        for g in 0..p.groups {
            // weights `[o][c][a][b]` -> `[a][b][o][c]` (packed again per group of images:
            // a few thousand floats against the group's work)
            let w_g = &weight[g * m * c_in * taps..][..m * c_in * taps];
            for (o, w_o) in w_g.chunks_exact(c_in * taps).enumerate() {
                for (c, w_oc) in w_o.chunks_exact(taps).enumerate() {
                    for (t, &w) in w_oc.iter().enumerate() {
                        w_buf[(t * m + o) * c_in + c] = w;
                    }
                }
            }
            // the eight images' gradient planes of this group, interleaved: eight
            // positions of the eight images at a time, transposed (position p of the
            // planes goes to row p / out_w, column 1 + p % out_w of the buffer)
            let src = |l: usize| {
                // (missing images of a last partial group repeat the last one: their
                // lanes are dropped)
                let n = n0 + l.min(nb - 1);
                &grad_output[n * d.out_image_len + g * m * out_plane..][..m * out_plane]
            };
            let srcs: [&[f32]; LANES] = build(&[][..], src);
            let at = |q: usize| ((q / d.out_w) * (d.out_w + 2) + 1 + q % d.out_w) * LANES;
            let total = m * out_plane;
            let mut q0 = 0;
            while q0 + LANES <= total {
                let t = V::transpose8(build(V::splat(0.0), |k| V::load(&srcs[k][q0..])));
                for (k, v) in t.iter().enumerate() {
                    v.store(&mut buf[at(q0 + k)..]);
                }
                q0 += LANES;
            }
            for q in q0..total {
                for (l, s) in srcs.iter().enumerate() {
                    buf[at(q) + l] = s[q];
                }
            }
            let tile = Group {
                c_in,
                m,
                plane: d.out_h * row,
                row,
                kw: p.kernel_w,
                w: w_buf,
                buf,
            };
            for y in 0..p.in_h {
                // tap rows a with 0 <= y + pad_top - a < out_h
                let yp = y + p.pad_top;
                let rows = yp.saturating_sub(d.out_h - 1)..p.kernel_h.min(yp + 1);
                let mut x = 0;
                while x < p.in_w {
                    let two = x + 1 < p.in_w;
                    let xp = x + p.pad_left;
                    // tap columns b with 0 <= x' + pad_left - b < out_w for x' = x and
                    // x + 1 (the union: each pixel reads at most the zero column beyond)
                    let cols = xp.saturating_sub(d.out_w - 1)
                        ..p.kernel_w.min(xp + if two { 2 } else { 1 });
                    // dx is `[c][y][x][lane]`
                    let at = (y * p.in_w + x) * LANES;
                    let mut c0 = 0;
                    macro_rules! tiles {
                        ($cb:tt) => {
                            // (for `tiles!(1)` clippy would write `c0 < c_in`)
                            #[allow(clippy::int_plus_one)]
                            while c0 + $cb <= c_in {
                                if two {
                                    let acc = pixels::<V, $cb, 2>(&tile, c0, yp, xp, &rows, &cols);
                                    for (j, v) in acc.iter().enumerate() {
                                        let o = &mut dx[(c0 + j) * in_plane * LANES + at..];
                                        v[0].store(&mut o[..LANES]);
                                        v[1].store(&mut o[LANES..2 * LANES]);
                                    }
                                } else {
                                    let acc = pixels::<V, $cb, 1>(&tile, c0, yp, xp, &rows, &cols);
                                    for (j, v) in acc.iter().enumerate() {
                                        let o = &mut dx[(c0 + j) * in_plane * LANES + at..];
                                        v[0].store(&mut o[..LANES]);
                                    }
                                }
                                c0 += $cb;
                            }
                        };
                    }
                    tiles!(CB);
                    tiles!(4);
                    tiles!(2);
                    tiles!(1);
                    x += 2;
                }
            }
            // out of the lanes: image n0 + l's channels of this group, eight positions
            // at a time, transposed
            let total = c_in * in_plane;
            let base = g * c_in * in_plane;
            let mut q0 = 0;
            while q0 + LANES <= total {
                let rows: [V; LANES] = build(V::splat(0.0), |k| V::load(&dx[(q0 + k) * LANES..]));
                for (l, v) in V::transpose8(rows).iter().enumerate().take(nb) {
                    v.store(&mut grad_input[(n0 + l) * d.image_len + base + q0..]);
                }
                q0 += LANES;
            }
            for q in q0..total {
                for l in 0..nb {
                    grad_input[(n0 + l) * d.image_len + base + q] = dx[q * LANES + l];
                }
            }
        }
        n0 += LANES;
    }
}

/// The `CB x T` tile of input channels `c0..c0 + CB` at the `T` pixels from
/// `xp - pad_left` of input row `yp - pad_top`: the sum over tap rows `a` in `rows`
/// (gradient row `yp - a`), tap columns `b` in `cols` (gradient column `xp + t - b`,
/// stored at `1 + xp + t - b`) and output channels.
#[inline(always)]
fn pixels<V: Vf32, const CB: usize, const T: usize>(
    t: &Group<'_>,
    c0: usize,
    yp: usize,
    xp: usize,
    rows: &core::ops::Range<usize>,
    cols: &core::ops::Range<usize>,
) -> [[V; T]; CB] {
    let mut acc = [[V::splat(0.0); T]; CB];
    for a in rows.clone() {
        for b in cols.clone() {
            // output channel o reads `o * plane` on from `g`, and weights `o * c_in` on
            // from `w`: both spans checked here, once
            let g = &t.buf[(yp - a) * t.row + (1 + xp - b) * LANES..]
                [..(t.m - 1) * t.plane + T * LANES];
            let w = &t.w[(a * t.kw + b) * t.m * t.c_in + c0..][..(t.m - 1) * t.c_in + CB];
            let (mut gp, mut wp) = (g.as_ptr(), w.as_ptr());
            for _ in 0..t.m {
                let v: [V; T] = build(V::splat(0.0), |k| {
                    // SAFETY: `gp` is `o * plane` floats into `g` (o < m), and `g` holds
                    // `(m - 1) * plane + T * 8` floats from there.
                    unsafe { V::load_ptr(gp.add(k * LANES)) }
                });
                for (j, acc_j) in acc.iter_mut().enumerate() {
                    // SAFETY: `wp` is `o * c_in` floats into `w` (o < m), which holds
                    // `(m - 1) * c_in + CB` floats from there, and j < CB.
                    let wv = V::splat(unsafe { *wp.add(j) });
                    for (y, &x) in acc_j.iter_mut().zip(v.iter()) {
                        *y = wv.mul_add(x, *y);
                    }
                }
                // (one past the last plane or weight row after the last channel: only
                // computed, never read; `wrapping_add` keeps that defined)
                gp = gp.wrapping_add(t.plane);
                wp = wp.wrapping_add(t.c_in);
            }
        }
    }
    acc
}
