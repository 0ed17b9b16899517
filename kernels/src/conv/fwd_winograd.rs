//! Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2015) for 3x3 kernels at stride 1 without dilation:
//! each 2x2 block of outputs (a tile) is `A^T [sum_c (G g_c G^T) . (B^T d_c B)] A`, where
//! `d_c` is the tile's 4x4 input patch of channel `c` and `g_c` the 3x3 filter. The sum over
//! channels is, for each of the 16 positions `xi` of the 4x4 transformed tile, one GEMM
//! `M_xi [out x tiles] = U_xi [out x in] * V_xi [in x tiles]`: 16 multiplications per tile
//! and channel pair where direct convolution does 36, so the GEMMs run 2.25x fewer FLOPs.
//!
//! - The weights are transformed once per call, eight filters at a time in the lanes,
//!   straight into the GEMM microkernel's packed layout (`U`).
//! - The tiles run in blocks of [`TB`] over the whole batch: a block holds the tiles of as
//!   many images as fit, each image's run from a vector's first column, so that small
//!   planes (7 x 7: 16 tiles) still make GEMMs [`TB`] columns wide and each `U` is read
//!   once a block (one image a block read 16 MB of `U` for 16 tiles on 512 channels).
//!   For each input channel a run's
//!   input rows are transformed along the row first (`d B`), read from one zero-padded row
//!   at a time with its even and odd columns split apart, into planes of even and of odd
//!   rows; the column step (`B^T (d B)`) then reads each tile's four rows at constant
//!   offsets from the tile's index, whatever row of tiles it is in, and writes `V` straight
//!   in the GEMM's packed-B layout (slivers of the microkernel's width; no packing pass).
//! - The output transform adds the bias, clamps and stores each tile's 2x2 outputs.
//!
//! Rounding: every transform has coefficients 1, 1/2 or 1/4, so the result is as accurate
//! as the direct sum to within a small constant factor (the transformed terms are larger
//! than the direct products, see the tests' error bound). Non-finite values reach every
//! output that depends on them, as in every algorithm, but an infinity can come out as
//! NaN where the direct sum gives an infinity (the transforms add and subtract it).
//!
//! One generic source, compiled for each variant (see `crate::arch`).

use crate::arch::{self, Isa};
use crate::error::KernelError;
use crate::gemm::{AOp, BOp, Epilogue, gemm_ops, mr_of, nr_of, packed_a_len};
use crate::params::{Activation, Conv2dDims, Conv2dParams, add, mul};
use crate::simd::LANES;
use crate::vector::{Vf32, build};

/// Tiles per block: a multiple of every microkernel's width (8, 16, 32). A block's
/// transformed input and its 16 products take `16 * TB * (in + out)` floats (2 MiB for
/// 128 channels in and out); 32 to 256 measured within 4% (docs/log.md, "Measurements
/// behind constants"; re-measure: `cnnkit bench --filter 3x3`).
const TB: usize = 128;

/// Planes in the input transform's scratch: two sets (see `input_block`) of eight (four
/// transformed columns by two row parities).
const PLANE_SETS: usize = 16;

/// Positions of a transformed 4x4 tile.
const XI: usize = 16;

/// Whether [`conv2d_winograd`] applies to `p`: a 3x3 kernel at stride 1 without dilation
/// (any padding, groups and sizes).
pub(crate) const fn applies(p: &Conv2dParams) -> bool {
    crate::params::winograd_applies(p)
}

/// The tile grid and the sizes of the per-block buffers.
#[derive(Clone, Copy)]
struct Geometry {
    /// Rows and columns of 2x2 tiles over one output plane.
    th: usize,
    tw: usize,
    /// Floats per plane of row-transformed values (one per `k` and row parity).
    plane: usize,
}

fn geometry(d: &Conv2dDims) -> Result<Geometry, KernelError> {
    let (th, tw) = (d.out_h.div_ceil(2), d.out_w.div_ceil(2));
    // a block of TB tiles touches at most (TB - 1) / tw + 2 rows of tiles, and their four
    // input rows each: one more row per parity plane; plus a vector of slack
    let rows = add((TB - 1) / tw.max(1), 3)?;
    Ok(Geometry {
        th,
        tw,
        plane: add(mul(rows, tw)?, 2 * LANES)?,
    })
}

/// Scratch elements [`conv2d_winograd`] needs: the transformed weights packed for the
/// GEMM (`16 * (out_per_group + 16) * in_per_group`), then one block's buffers
/// (`16 * 128 * (in_per_group + out_per_group)` plus sixteen planes of about
/// `128 + 3 * out_w / 2` floats).
///
/// # Errors
/// As [`Conv2dParams::dims`]; [`KernelError::InvalidParameter`] where the algorithm does
/// not apply (see [`conv2d_winograd`]).
pub fn conv2d_winograd_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    Ok(super::Conv2dPlan::for_algo(p, super::Conv2dAlgo::Winograd)?.scratch_len())
}

/// Scratch of [`forward`] (for a geometry it [`applies`] to).
pub(super) fn forward_scratch_len(p: &Conv2dParams, d: &Conv2dDims) -> Result<usize, KernelError> {
    let _ = p;
    let (m, c) = (d.out_per_group, d.in_per_group);
    let g = geometry(d)?;
    let packed = mul(XI, packed_a_len(m, c))?;
    let block = add(mul(XI * TB, add(m, c)?)?, mul(16, g.plane)?)?;
    add(packed, block)
}

pub(crate) const NOT_3X3: KernelError = crate::params::WINOGRAD_NOT_3X3;

/// The checked arguments of one call.
struct Args<'a> {
    p: &'a Conv2dParams,
    d: &'a Conv2dDims,
    g: Geometry,
    input: &'a [f32],
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    lo: f32,
    hi: f32,
    isa: Isa,
    /// `weight` holds the layer's whose input gradient this pass is (see [`Weights`]).
    flipped: bool,
}

/// How [`forward`] reads its weights.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Weights {
    /// `[out][in][3][3]`, as every forward pass.
    Plain,
    /// Those of the layer whose input gradient this forward pass computes
    /// (`input_as_forward`): `[in][out][3][3]` with each kernel rotated by 180 degrees;
    /// the transform reads them so, and no flipped copy is made.
    Flipped,
}

/// Convolution forward pass by Winograd's F(2x2, 3x3) (see the module docs), for a 3x3
/// kernel at stride 1 without dilation. Arguments and result as [`crate::conv2d`];
/// `scratch` holds at least [`conv2d_winograd_scratch_len`] floats.
///
/// It does 2.25x fewer multiplications than the other algorithms, at a slightly larger
/// rounding error, and an infinity in the input or weights may reach the output as NaN
/// where they give an infinity.
///
/// # Errors
/// As [`crate::conv2d`], with [`conv2d_winograd_scratch_len`] as the scratch requirement;
/// [`KernelError::InvalidParameter`] for any other kernel size, stride or dilation.
///
/// ```
/// use cnnkit_kernels::{conv2d_winograd, conv2d_winograd_scratch_len, Activation, Conv2dParams};
/// // one 4x4 image of ones, one 3x3 filter of ones, padding 1: each output counts its taps
/// let p = Conv2dParams::new(1, 1, 4, 4, 1, 3, 3).with_padding(1, 1, 1, 1);
/// let mut y = [0.0; 16];
/// let mut s = vec![0.0; conv2d_winograd_scratch_len(&p).unwrap()];
/// conv2d_winograd(&p, &[1.0; 16], &[1.0; 9], None, Activation::None, &mut y, &mut s).unwrap();
/// assert_eq!(y[..4], [4.0, 6.0, 6.0, 4.0]);
/// assert_eq!(y[4..8], [6.0, 9.0, 9.0, 6.0]);
/// ```
pub fn conv2d_winograd(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    // the call's own arguments first, then whether Winograd takes the geometry
    super::check_forward(p, input, weight, bias, act, output)?;
    super::Conv2dPlan::for_algo(p, super::Conv2dAlgo::Winograd)?
        .run(input, weight, bias, act, output, scratch)
}

/// Winograd's forward pass; arguments validated by the caller (the plan), which
/// [`applies`], `scratch` holds [`conv2d_winograd_scratch_len`] floats.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    (lo, hi): (f32, f32),
    output: &mut [f32],
    scratch: &mut [f32],
    weights: Weights,
) -> Result<(), KernelError> {
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let (p, d) = (&{ *p }, &{ *d });
    if d.output_len == 0 {
        return Ok(());
    }
    let a = &Args {
        p,
        d,
        g: geometry(d)?,
        input,
        weight,
        bias,
        lo,
        hi,
        isa: arch::active(),
        flipped: weights == Weights::Flipped,
    };
    arch::dispatch!(run(a: &Args<'_>, output: &mut [f32], scratch: &mut [f32]));
    Ok(())
}

/// The whole pass on one variant.
#[inline(always)]
fn run<V: Vf32>(a: &Args<'_>, output: &mut [f32], scratch: &mut [f32]) {
    let (p, d, geo) = (a.p, a.d, a.g);
    let (m, c) = (d.out_per_group, d.in_per_group);
    let pa = packed_a_len(m, c);
    let nr = nr_of(a.isa);
    let (packed_u, rest) = scratch.split_at_mut(XI * pa);
    let tiles = geo.th * geo.tw;
    let (in_plane, out_plane) = (p.in_h * p.in_w, d.out_h * d.out_w);
    for g in 0..p.groups {
        let w = &a.weight[g * m * c * 9..][..m * c * 9];
        transform_weights::<V>(w, (m, c), a.flipped, mr_of(a.isa), packed_u, pa);
        let (v, rest) = rest.split_at_mut(XI * TB * c);
        let (mm, rest) = rest.split_at_mut(XI * TB * m);
        let planes = &mut rest[..PLANE_SETS * geo.plane];
        let bias = a.bias.map(|b| &b[g * m..][..m]);
        let x_of = |img: usize| &a.input[img * d.image_len + g * c * in_plane..][..c * in_plane];
        let y_at = |img: usize| img * d.out_image_len + g * m * out_plane;
        // Blocks of up to TB tiles over the whole batch: a block takes the tiles of as
        // many images as it holds (each image's run of tiles from a vector's first
        // column), so that small planes (7 x 7: 16 tiles) still make GEMMs of TB
        // columns, each U read once a block rather than once an image.
        let (mut img, mut t) = (0, 0);
        while img < p.batch {
            let mut runs = [Run::EMPTY; TB / LANES];
            let (mut n_runs, mut cols) = (0, 0);
            while img < p.batch && cols < TB {
                let count = (TB - cols).min(tiles - t);
                runs[n_runs] = Run {
                    img,
                    t0: t,
                    count,
                    j0: cols,
                };
                n_runs += 1;
                // (TB - cols is a multiple of LANES: the rounded run still fits)
                cols += count.next_multiple_of(LANES);
                t += count;
                if t == tiles {
                    (img, t) = (img + 1, 0);
                }
            }
            let tbp = cols.div_ceil(nr) * nr;
            for r in &runs[..n_runs] {
                input_block::<V>(a, r.block(tbp, nr), x_of(r.img), v, planes);
            }
            zero_columns::<V>(v, c, cols, tbp, nr);
            for xi in 0..XI {
                let u = AOp::Packed(&packed_u[xi * pa..][..pa]);
                let b = BOp::Packed(&v[xi * c * tbp..][..c * tbp]);
                let out = &mut mm[xi * m * tbp..][..m * tbp];
                let ep = Epilogue::plain();
                gemm_ops(a.isa, m, cols, c, u, b, out, tbp, &ep, &mut []);
            }
            for r in &runs[..n_runs] {
                let y = &mut output[y_at(r.img)..][..m * out_plane];
                output_block::<V>(a, r.block(tbp, nr), mm, bias, y);
            }
        }
    }
}

/// One image's tiles in a block: `count` tiles of image `img` from its tile `t0`, in the
/// block's columns from `j0` (a multiple of [`LANES`]).
#[derive(Clone, Copy)]
struct Run {
    img: usize,
    t0: usize,
    count: usize,
    j0: usize,
}

impl Run {
    const EMPTY: Run = Run {
        img: 0,
        t0: 0,
        count: 0,
        j0: 0,
    };

    fn block(self, tbp: usize, nr: usize) -> Block {
        Block {
            t0: self.t0,
            count: self.count,
            j0: self.j0,
            tbp,
            nr,
        }
    }
}

/// Zeroes columns `from..tbp` (`from` a multiple of [`LANES`]) of the 16 packed-B
/// matrices `[c x tbp]` in `v`: the block's last sliver past its tiles.
#[inline(always)]
fn zero_columns<V: Vf32>(v: &mut [f32], c: usize, from: usize, tbp: usize, nr: usize) {
    for xi in 0..XI {
        let vx = &mut v[xi * c * tbp..][..c * tbp];
        for j in (from..tbp).step_by(LANES) {
            for ch in 0..c {
                let at = (j / nr) * c * nr + ch * nr + j % nr;
                V::splat(0.0).store(&mut vx[at..][..LANES]);
            }
        }
    }
}

/// One image's run of tiles within a block: `count` tiles from `t0` (row-major over the
/// tile grid) in the block's columns from `j0`, the block laid out `tbp` columns wide
/// (whole slivers of `nr`).
#[derive(Clone, Copy)]
struct Block {
    t0: usize,
    count: usize,
    j0: usize,
    tbp: usize,
    nr: usize,
}

/// `U = G g G^T` for every filter (`w` is `[m][c][3][3]`), straight into the 16 matrices
/// `U_xi [m x c]` packed for the GEMM (`mr <= 8` rows a sliver, see `gemm::mr_of`),
/// matrix `xi` at `xi * pa` of `packed` (`flipped`: `w` is `[c][m][3][3]` with each kernel
/// rotated by 180 degrees, see [`Weights::Flipped`]). A sliver's filters of one input channel are
/// transformed together, one filter a lane (their taps transposed into the lanes); those
/// of [`WCH`] input channels (contiguous in each packed matrix) go to a buffer first,
/// then to the 16 matrices a run each: stored to the matrices one sliver at a time, the
/// 16 streams (a multiple of 4 KiB apart on large layers) evicted each other from L1.
#[inline(always)]
fn transform_weights<V: Vf32>(
    w: &[f32],
    (m, c): (usize, usize),
    flipped: bool,
    mr: usize,
    packed: &mut [f32],
    pa: usize,
) {
    let slivers = m.div_ceil(mr);
    assert!(
        mr <= LANES && pa >= slivers * mr * c && packed.len() >= XI * pa && w.len() >= m * c * 9
    );
    let mut buf = [[0.0f32; WCH * LANES]; XI];
    for s in 0..slivers {
        let rows = mr.min(m - s * mr);
        for c0 in (0..c).step_by(WCH) {
            let chs = WCH.min(c - c0);
            for (i, ch) in (c0..c0 + chs).enumerate() {
                // tap t of the sliver's filter r in lane r of g[t] (rows past m zero)
                let o = |r: usize| s * mr + r;
                let at = |r: usize| {
                    9 * if flipped {
                        ch * m + o(r)
                    } else {
                        o(r) * c + ch
                    }
                };
                let taps: [V; LANES] = build(V::splat(0.0), |r| {
                    if r < rows {
                        V::load(&w[at(r)..][..8])
                    } else {
                        V::splat(0.0)
                    }
                });
                let t = V::transpose8(taps);
                let g8 = V::from_array(build(0.0, |r| if r < rows { w[at(r) + 8] } else { 0.0 }));
                let g = if flipped {
                    [g8, t[7], t[6], t[5], t[4], t[3], t[2], t[1], t[0]]
                } else {
                    [t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], g8]
                };
                let u = transform_filter(g);
                for (b, val) in buf.iter_mut().zip(u) {
                    val.store(&mut b[i * mr..][..mr]);
                }
            }
            let (at, len) = (s * mr * c + c0 * mr, chs * mr);
            for (xi, b) in buf.iter().enumerate() {
                packed[xi * pa + at..][..len].copy_from_slice(&b[..len]);
            }
        }
    }
}

/// Input channels a step of [`transform_weights`] transforms before it copies them out.
const WCH: usize = 16;

/// `G g G^T` of 3x3 filters (`g` row-major), row-major 4x4, one filter a lane;
/// `G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]`.
#[inline(always)]
fn transform_filter<V: Vf32>(g: [V; 9]) -> [V; XI] {
    let half = V::splat(0.5);
    // G g (4 x 3), column by column, then (G g) G^T (4 x 4)
    let col = |b: usize| {
        let (g0, g1, g2) = (g[b], g[3 + b], g[6 + b]);
        let (e, o) = (g0.add(g2), g1);
        [g0, e.add(o).mul(half), e.sub(o).mul(half), g2]
    };
    let gg = [col(0), col(1), col(2)];
    let mut u = [V::splat(0.0); XI];
    for i in 0..4 {
        let (a0, a1, a2) = (gg[0][i], gg[1][i], gg[2][i]);
        let e = a0.add(a2);
        u[i * 4] = a0;
        u[i * 4 + 1] = e.add(a1).mul(half);
        u[i * 4 + 2] = e.sub(a1).mul(half);
        u[i * 4 + 3] = a2;
    }
    u
}

/// `V = B^T d B` for every tile of `blk` and input channel, into columns `j0..` of `v`'s
/// 16 packed-B matrices `[c x tbp]` (up to the next multiple of [`LANES`], the columns
/// past the run's tiles zero). `x` holds the group's input channels of one image.
#[inline(always)]
fn input_block<V: Vf32>(a: &Args<'_>, blk: Block, x: &[f32], v: &mut [f32], planes: &mut [f32]) {
    let p = a.p;
    let c = a.d.in_per_group;
    let Geometry { tw, plane, .. } = a.g;
    let Block {
        t0,
        count,
        j0,
        tbp,
        nr,
    } = blk;
    let ty0 = t0 / tw;
    let rows = (t0 + count - 1) / tw - ty0 + 2;
    let u0 = t0 - ty0 * tw;
    let (h, w) = (p.in_h, p.in_w);
    let chunks = tw.div_ceil(LANES);
    // every access below stays inside these (see `geometry`): the row pass writes plane
    // (k, parity) up to row `rows - 1` plus one vector; the column pass reads a plane up
    // to u0 + count + tw + 7 and writes sliver columns j % nr + 8 <= nr (j0 + j < tbp) of
    // the 16 c x tbp matrices
    assert!(
        planes.len() >= PLANE_SETS * plane
            && plane >= rows * tw + 2 * LANES
            && plane >= u0 + count + tw + LANES
            && v.len() >= XI * c * tbp
            && tbp % nr == 0
            && nr % LANES == 0
            && j0 % LANES == 0
            && j0 + count <= tbp
            && x.len() >= c * h * w,
        "Winograd: block buffers too small"
    );
    let (wp, vp) = (planes.as_mut_ptr(), v.as_mut_ptr());
    let pl = p.pad_left;
    // Two plane sets (see `row_pass`): channel ch + 1's rows are stored before channel ch's are read back, so
    // the column pass's loads, which straddle the row pass's stores, find them written
    // to the cache rather than waiting for the store buffer (1.3x faster here).
    let rp = RowPass {
        x,
        h,
        w,
        pl,
        pt: p.pad_top,
        ty0,
        rows,
        tw,
        plane,
        chunks,
    };
    row_pass::<V>(&rp, 0, wp);
    for ch in 0..c {
        if ch + 1 < c {
            row_pass::<V>(&rp, ch + 1, wp);
        }
        let wp = wp.wrapping_add((ch % 2) * 8 * plane);
        // B^T (d B) down each tile's four rows: even and odd planes at u and u + tw
        for j in (0..count).step_by(LANES) {
            let jb = j0 + j;
            let base = (jb / nr) * c * nr + ch * nr + jb % nr;
            // SAFETY: (all pointers) within v and the planes by the assertion above.
            let dst = |xi: usize| unsafe { vp.add(xi * c * tbp + base) };
            let u = u0 + j;
            let valid = count - j;
            for k in 0..4 {
                // SAFETY: see `dst`.
                let bt = unsafe {
                    let ev = wp.add(2 * k * plane + u);
                    let od = ev.add(plane);
                    let (a0, a1) = (V::load_ptr(ev), V::load_ptr(od));
                    let (a2, a3) = (V::load_ptr(ev.add(tw)), V::load_ptr(od.add(tw)));
                    [a0.sub(a2), a1.add(a2), a2.sub(a1), a1.sub(a3)]
                };
                for (i, mut val) in bt.into_iter().enumerate() {
                    if valid < LANES {
                        // tiles past the run's end read stale rows: their columns are 0
                        let mut l = val.to_array();
                        l[valid..].fill(0.0);
                        val = V::from_array(l);
                    }
                    // SAFETY: see `dst`.
                    unsafe { val.store_ptr(dst(i * 4 + k)) };
                }
            }
        }
    }
}

/// What [`row_pass`] needs of one block.
struct RowPass<'a> {
    x: &'a [f32],
    h: usize,
    w: usize,
    pl: usize,
    pt: usize,
    ty0: usize,
    rows: usize,
    tw: usize,
    plane: usize,
    chunks: usize,
}

/// `d B` along each padded input row `2 * ty0 + r` of channel `ch`, into plane
/// `(k, r % 2)`, row `r / 2` of plane set `ch % 2` at `wp`, read straight from the image
/// row (zero outside it).
#[inline(always)]
fn row_pass<V: Vf32>(rp: &RowPass<'_>, ch: usize, wp: *mut f32) {
    let RowPass {
        x,
        h,
        w,
        pl,
        pt,
        ty0,
        rows,
        tw,
        plane,
        chunks,
    } = *rp;
    let xc = &x[ch * h * w..][..h * w];
    let set = (ch % 2) * 8 * plane;
    for r in 0..2 * rows {
        let ir = (2 * ty0 + r).checked_sub(pt).filter(|&i| i < h);
        let xr = ir.map_or(&[][..], |ir| &xc[ir * w..][..w]);
        let at = set + (r % 2) * plane + (r / 2) * tw;
        for q in 0..chunks {
            let s = 2 * LANES * q;
            let (e0, o0) =
                padded_load::<V>(xr, s, pl).deinterleave(padded_load::<V>(xr, s + LANES, pl));
            let (e1, o1) = padded_load::<V>(xr, s + 2, pl).deinterleave(padded_load::<V>(
                xr,
                s + 2 + LANES,
                pl,
            ));
            // SAFETY: the caller's planes hold two sets of eight planes of at least
            // rows * tw + 8 floats (asserted in `input_block`).
            unsafe {
                let d = wp.add(at + LANES * q);
                e0.sub(e1).store_ptr(d);
                o0.add(e1).store_ptr(d.add(2 * plane));
                e1.sub(o0).store_ptr(d.add(4 * plane));
                o0.sub(o1).store_ptr(d.add(6 * plane));
            }
        }
    }
}

/// Floats `at..at + 8` of `row` padded with `pad` zeros on the left and zeros on the right.
#[inline(always)]
fn padded_load<V: Vf32>(row: &[f32], at: usize, pad: usize) -> V {
    match at.checked_sub(pad) {
        // (a partial load past the row's end: masked; none at all past it, where a masked
        // load from a dangling pointer costs a fault assist)
        Some(i) if i < row.len() => V::load(&row[i..]),
        Some(_) => V::splat(0.0),
        // the row's first floats moved up past the padding's zeros
        None if pad - at < LANES && !row.is_empty() => V::load(row).shift_up(pad - at),
        None => V::splat(0.0),
    }
}

/// `Y = A^T M A` for every tile of `blk` and output channel, plus bias, clamped, into the
/// group's output planes `y` of one image. `mm` holds the 16 products `[m x tbp]`, the
/// run's tiles in columns `j0..j0 + count`.
#[inline(always)]
fn output_block<V: Vf32>(
    a: &Args<'_>,
    blk: Block,
    mm: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let m = a.d.out_per_group;
    let (oh, ow) = (a.d.out_h, a.d.out_w);
    let tw = a.g.tw;
    let Block {
        t0, count, j0, tbp, ..
    } = blk;
    let (lo, hi) = (V::splat(a.lo), V::splat(a.hi));
    // the loads below read columns j0 + j..j0 + j + 8 <= tbp of each product's rows
    assert!(mm.len() >= XI * m * tbp && tbp % LANES == 0 && j0 % LANES == 0 && j0 + count <= tbp);
    let mp = mm.as_ptr();
    for (oc, yc) in y.chunks_exact_mut(oh * ow).enumerate().take(m) {
        let b = V::splat(bias.map_or(0.0, |b| b[oc]));
        let (mut ty, mut tx) = (t0 / tw, t0 % tw);
        for j in (0..count).step_by(LANES) {
            let mut mv = [V::splat(0.0); XI];
            for (xi, v) in mv.iter_mut().enumerate() {
                // SAFETY: within mm by the assertion above.
                *v = unsafe { V::load_ptr(mp.add((xi * m + oc) * tbp + j0 + j)) };
            }
            // A^T = [1 1 1 0; 0 1 -1 -1] down the columns, then along the rows
            let (mut s0, mut s1) = ([V::splat(0.0); 4], [V::splat(0.0); 4]);
            for k in 0..4 {
                s0[k] = mv[k].add(mv[4 + k]).add(mv[8 + k]);
                s1[k] = mv[4 + k].sub(mv[8 + k]).sub(mv[12 + k]);
            }
            let y00 = s0[0].add(s0[1]).add(s0[2]).add(b).clamp(lo, hi);
            let y01 = s0[1].sub(s0[2]).sub(s0[3]).add(b).clamp(lo, hi);
            let y10 = s1[0].add(s1[1]).add(s1[2]).add(b).clamp(lo, hi);
            let y11 = s1[1].sub(s1[2]).sub(s1[3]).add(b).clamp(lo, hi);
            let (oy, ox) = (2 * ty, 2 * tx);
            if count - j >= LANES && tx + LANES <= tw && ox + 2 * LANES <= ow && oy + 1 < oh {
                // eight whole tiles along one row of tiles: two rows of 16 outputs
                let (r0, r1) = yc[oy * ow + ox..].split_at_mut(ow);
                let (a0, a1) = y00.interleave(y01);
                let (b0, b1) = y10.interleave(y11);
                a0.store(r0);
                a1.store(&mut r0[LANES..]);
                b0.store(r1);
                b1.store(&mut r1[LANES..]);
            } else {
                let (y00, y01) = (y00.to_array(), y01.to_array());
                let (y10, y11) = (y10.to_array(), y11.to_array());
                let (mut ty, mut tx) = (ty, tx);
                for l in 0..LANES.min(count - j) {
                    let (oy, ox) = (2 * ty, 2 * tx);
                    yc[oy * ow + ox] = y00[l];
                    if ox + 1 < ow {
                        yc[oy * ow + ox + 1] = y01[l];
                    }
                    if oy + 1 < oh {
                        yc[(oy + 1) * ow + ox] = y10[l];
                        if ox + 1 < ow {
                            yc[(oy + 1) * ow + ox + 1] = y11[l];
                        }
                    }
                    tx += 1;
                    if tx == tw {
                        (ty, tx) = (ty + 1, 0);
                    }
                }
            }
            tx += LANES;
            while tx >= tw {
                (ty, tx) = (ty + 1, tx - tw);
            }
        }
    }
}
