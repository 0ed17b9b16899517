//! Weight and bias gradients of a convolution whose output gradient is zero except at
//! listed positions: per output plane, `per_plane` (position, value) pairs. A max pool's
//! backward pass leaves exactly that (its indices and the pooled gradient,
//! [`crate::max_pool2d`]), so a convolution followed by a max pool (and a ReLU, masked
//! first) gets its parameter gradients from the pooled gradient directly: a quarter of the
//! dense work behind a 2x2 pool, and the full-size output gradient is never written or
//! read.
//!
//! Each listed value multiplies the taps of its one output position, read from a
//! zero-padded copy of the image's input planes: with unit horizontal dilation and
//! kernels up to 8 x 8, one vector load per tap row (`kh` loads and fused multiply-adds
//! per value, the accumulators held across the plane); otherwise one tap at a time.

use super::flat::rows_into;
use crate::arch::dispatch;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, add, check_len, check_scratch, mul, nonzero};
use crate::pool::{NO_INDEX, check_in_plane};
use crate::simd::LANES;
use crate::vector::Vf32;

/// Scratch elements [`conv2d_backward_weight_sparse`] needs: one image's group of
/// zero-padded input planes and a vector of slack.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_backward_weight_sparse_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    let d = p.dims()?;
    add(mul(mul(d.in_per_group, d.padded_h)?, d.padded_w)?, LANES)
}

/// Weight gradient (and with `grad_bias`, the bias gradient), summed over the batch, of
/// a convolution whose output gradient is zero except at `per_plane` listed positions in
/// each output plane: for the plane of image `n` and output channel `o`, entries
/// `(n * out_channels + o) * per_plane ..` of `positions` (each `oy * out_w + ox`, or
/// [`crate::NO_INDEX`] for none) and `values`. The result is that of
/// [`crate::conv2d_backward_weight`] and [`crate::conv2d_backward_bias`] on the dense
/// gradient the entries add up to (a position listed twice counts twice), up to the
/// summation order, except that positions not listed contribute nothing rather than
/// `0 * x`: a non-finite input where the gradient is zero does not make the result NaN.
///
/// The case it is for: a max pool after the convolution (after a ReLU, apply
/// [`crate::relu_backward_inplace`] with the pooled output to the pooled gradient first).
/// The pool's indices are positions in the convolution's output planes and its gradient
/// the values, so this computes the convolution's parameter gradients without the pool's
/// backward pass.
///
/// `grad_weight` (`[out_channels, in_channels / groups, kh, kw]`) and `grad_bias`
/// (`[out_channels]`) are overwritten.
///
/// # Errors
/// As [`Conv2dParams::dims`]; [`KernelError::ZeroSize`] for `per_plane == 0`;
/// [`KernelError::LengthMismatch`]; [`KernelError::InvalidIndex`] for a position outside
/// the output plane; [`KernelError::ScratchTooSmall`] below
/// [`conv2d_backward_weight_sparse_scratch_len`].
///
/// ```
/// use cnnkit_kernels::{Conv2dParams, conv2d_backward_weight_sparse};
/// // one 3x3 image, a 2x2 kernel: a 2x2 output plane with one gradient, at (1, 0)
/// let p = Conv2dParams::new(1, 1, 3, 3, 1, 2, 2);
/// let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
/// let (mut gw, mut gb) = ([0.0; 4], [0.0; 1]);
/// let mut scratch = [0.0; 9 + 8];
/// conv2d_backward_weight_sparse(&p, &x, 1, &[2], &[0.5], &mut gw, Some(&mut gb), &mut scratch)
///     .unwrap();
/// assert_eq!(gw, [2.0, 2.5, 3.5, 4.0]); // 0.5 times the taps of output (1, 0)
/// assert_eq!(gb, [0.5]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_weight_sparse(
    p: &Conv2dParams,
    input: &[f32],
    per_plane: usize,
    positions: &[u32],
    values: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let d = p.dims()?;
    check_len("input", d.input_len, input.len())?;
    nonzero(per_plane, "per_plane")?;
    let entries = mul(mul(p.batch, p.out_channels)?, per_plane)?;
    check_len("positions", entries, positions.len())?;
    check_len("values", entries, values.len())?;
    check_len("grad_weight", d.weight_len, grad_weight.len())?;
    if let Some(gb) = &grad_bias {
        check_len("grad_bias", d.bias_len, gb.len())?;
    }
    check_scratch(conv2d_backward_weight_sparse_scratch_len(p)?, scratch.len())?;
    check_in_plane(positions, d.out_h * d.out_w)?;
    grad_weight.fill(0.0);
    let mut grad_bias = grad_bias;
    if let Some(gb) = grad_bias.as_deref_mut() {
        gb.fill(0.0);
    }
    let s = Sparse {
        p,
        d: &d,
        per_plane,
        positions,
        values,
    };
    // (offsets and positions as i32 there, the row from a float estimate)
    let small = d.out_h * d.out_w <= 1 << 22
        && d.in_per_group * d.padded_h * d.padded_w + LANES <= i32::MAX as usize;
    if small && p.dilation_w == 1 && p.kernel_w <= LANES && p.kernel_h <= 8 {
        dispatch!(by_rows(
            s: Sparse<'_>,
            input: &[f32],
            grad_weight: &mut [f32],
            grad_bias: Option<&mut [f32]>,
            scratch: &mut [f32],
        ));
    } else {
        by_taps(s, input, grad_weight, grad_bias);
    }
    Ok(())
}

/// The validated call.
#[derive(Clone, Copy)]
struct Sparse<'a> {
    p: &'a Conv2dParams,
    d: &'a Conv2dDims,
    per_plane: usize,
    positions: &'a [u32],
    values: &'a [f32],
}

impl Sparse<'_> {
    /// The positions and values of the plane of image `n`, output channel `o`.
    fn entries(&self, n: usize, o: usize) -> (&[u32], &[f32]) {
        let e = (n * self.p.out_channels + o) * self.per_plane;
        (
            &self.positions[e..e + self.per_plane],
            &self.values[e..e + self.per_plane],
        )
    }
}

/// Every layout: each listed value times each of its taps (padding reads as 0.0).
fn by_taps(s: Sparse<'_>, input: &[f32], gw: &mut [f32], mut gb: Option<&mut [f32]>) {
    let (p, d) = (s.p, s.d);
    let (kh, kw, cin) = (p.kernel_h, p.kernel_w, d.in_per_group);
    let in_plane = p.in_h * p.in_w;
    for n in 0..p.batch {
        for o in 0..p.out_channels {
            let g = o / d.out_per_group;
            let (pos, vals) = s.entries(n, o);
            for (&q, &v) in pos.iter().zip(vals).filter(|&(&q, _)| q != NO_INDEX) {
                if let Some(gb) = gb.as_deref_mut() {
                    gb[o] += v;
                }
                let (oy, ox) = (q as usize / d.out_w, q as usize % d.out_w);
                for c in 0..cin {
                    let x = &input[(n * p.in_channels + g * cin + c) * in_plane..][..in_plane];
                    let w = &mut gw[(o * cin + c) * kh * kw..][..kh * kw];
                    for a in 0..kh {
                        // padded row and column; inside the input when at or past the padding
                        let iy = (oy * p.stride_h + a * p.dilation_h).wrapping_sub(p.pad_top);
                        for b in 0..kw {
                            let ix = (ox * p.stride_w + b * p.dilation_w).wrapping_sub(p.pad_left);
                            let xv = if iy < p.in_h && ix < p.in_w {
                                x[iy * p.in_w + ix]
                            } else {
                                0.0
                            };
                            w[a * kw + b] += v * xv;
                        }
                    }
                }
            }
        }
    }
}

/// Values per block: their offsets are worked out once per block (and serve every input
/// channel), then the multiply-adds run over the block.
const BLOCK: usize = 256;

/// Unit horizontal dilation, `kw <= 8`, `kh <= 8`: a padded copy of each image's group
/// of input planes, and per (plane, input channel) `kh` vector accumulators, one per tap
/// row, each value adding its row of `kw` taps (lanes past `kw` are discarded).
#[inline(always)]
fn by_rows<V: Vf32>(
    s: Sparse<'_>,
    input: &[f32],
    gw: &mut [f32],
    mut gb: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    let (p, d) = (s.p, s.d);
    let (kh, kw, cin) = (p.kernel_h, p.kernel_w, d.in_per_group);
    let (hp, wp) = (d.padded_h, d.padded_w);
    let in_plane = p.in_h * p.in_w;
    let (sh, sw, r) = (p.stride_h * wp, p.stride_w, p.dilation_h * wp);
    let span = (kh - 1) * r + LANES;
    let padded = &mut scratch[..cin * hp * wp + LANES];
    // the borders and the slack stay zero; the inside is rewritten per image and group
    padded.fill(0.0);
    let groups = p.out_channels / d.out_per_group;
    // the furthest output position's window ends within the padded plane and its slack
    // (the output extent is what fits the padded input); one tap at a time otherwise
    let max_at = (d.out_h - 1) * sh + (d.out_w - 1) * sw;
    if max_at + span > hp * wp + LANES {
        return by_taps(s, input, gw, gb);
    }
    let (w, h) = (d.out_w as i32, d.out_h as i32);
    let inv_w = 1.0 / d.out_w as f32;
    let (sh32, sw32) = (sh as i32, sw as i32);
    let (mut off, mut val) = ([0u32; BLOCK], [0.0f32; BLOCK]);
    for n in 0..p.batch {
        for g in 0..groups {
            for c in 0..cin {
                let x = &input[(n * p.in_channels + g * cin + c) * in_plane..][..in_plane];
                let at = c * hp * wp + p.pad_top * wp + p.pad_left;
                rows_into(x, p.in_w, padded, at, wp);
            }
            for o in g * d.out_per_group..(g + 1) * d.out_per_group {
                let (pos, vals) = s.entries(n, o);
                let mut total = 0.0;
                for (pb, vb) in pos.chunks(BLOCK).zip(vals.chunks(BLOCK)) {
                    // each value and the offset of its first tap
                    let mut all = true;
                    for ((o, v), (&q, &x)) in off.iter_mut().zip(&mut val).zip(pb.iter().zip(vb)) {
                        // the row from a float estimate, off by at most one for planes
                        // under 2^22 positions (the caller's condition) and then set right;
                        // clamped, so that no offset leaves the plane whatever `q` was
                        // (NO_INDEX reads as -1)
                        let qi = q as i32;
                        // SAFETY: the positions were checked to be in the plane or NO_INDEX,
                        // so `qi` is in -1..2^22 and the estimate a finite float in
                        // (-1, 2^22], which an i32 holds.
                        let mut oy: i32 = unsafe { ((qi as f32 + 0.5) * inv_w).to_int_unchecked() };
                        let mut ox = qi - oy * w;
                        if ox < 0 {
                            (oy, ox) = (oy - 1, ox + w);
                        }
                        if ox >= w {
                            (oy, ox) = (oy + 1, ox - w);
                        }
                        let (oy, ox) = (oy.max(0).min(h - 1), ox.max(0).min(w - 1));
                        *o = (oy * sh32 + ox * sw32) as u32;
                        *v = x;
                        all &= q != NO_INDEX;
                    }
                    let mut m = pb.len();
                    if !all {
                        // (rare: a pool window entirely in the padding) unlisted values out
                        m = 0;
                        for (j, &q) in pb.iter().enumerate() {
                            if q != NO_INDEX {
                                (off[m], val[m]) = (off[j], val[j]);
                                m += 1;
                            }
                        }
                    }
                    if gb.is_some() {
                        let mut t = V::splat(0.0);
                        for v in val[..m].chunks(LANES) {
                            t = t.add(V::load(v));
                        }
                        total += t.to_array().iter().sum::<f32>();
                    }
                    for c in 0..cin {
                        let xc = &padded[c * hp * wp..];
                        // every window in bounds (true by the check above: xc holds at
                        // least a plane and the slack; stated here for the loads' sake)
                        if max_at + span > xc.len() {
                            continue;
                        }
                        let (o_, v_) = (&off[..m], &val[..m]);
                        let acc = match kh {
                            1 => tap_rows::<V, 1>(xc, o_, v_, r),
                            2 => tap_rows::<V, 2>(xc, o_, v_, r),
                            3 => tap_rows::<V, 3>(xc, o_, v_, r),
                            4 => tap_rows::<V, 4>(xc, o_, v_, r),
                            5 => tap_rows::<V, 5>(xc, o_, v_, r),
                            6 => tap_rows::<V, 6>(xc, o_, v_, r),
                            7 => tap_rows::<V, 7>(xc, o_, v_, r),
                            _ => tap_rows::<V, 8>(xc, o_, v_, r),
                        };
                        let w = &mut gw[(o * cin + c) * kh * kw..][..kh * kw];
                        for (wr, ar) in w.chunks_exact_mut(kw).zip(&acc) {
                            wr.iter_mut().zip(ar).for_each(|(w, a)| *w += a);
                        }
                    }
                }
                if let Some(gb) = gb.as_deref_mut() {
                    gb[o] += total;
                }
            }
        }
    }
}

/// `acc[a] += v * xc[at + a * r..][..8]` for each tap row `a < KH`; the caller has
/// checked `at + (KH - 1) * r + 8 <= xc.len()`.
#[inline(always)]
fn add_rows<V: Vf32, const KH: usize>(xc: &[f32], at: u32, v: f32, r: usize, acc: &mut [V; KH]) {
    let (at, g) = (at as usize, V::splat(v));
    for (a, acc) in acc.iter_mut().enumerate() {
        // SAFETY: at + a * r + 8 <= at + (KH - 1) * r + 8 <= xc.len() (the caller's
        // check).
        let x = unsafe { V::load_ptr(xc.as_ptr().add(at + a * r)) };
        *acc = x.mul_add(g, *acc);
    }
}

/// `sum_j val[j] * xc[off[j] + a * r ..][..8]` for each tap row `a < KH`. The caller
/// has checked `off[j] + (KH - 1) * r + 8 <= xc.len()` for every `j`.
#[inline(always)]
fn tap_rows<V: Vf32, const KH: usize>(
    xc: &[f32],
    off: &[u32],
    val: &[f32],
    r: usize,
) -> [[f32; LANES]; 8] {
    // two sets of accumulators, taking alternate values: one set would make each value
    // wait for the previous one's multiply-adds
    let mut acc = [[V::splat(0.0); KH]; 2];
    let (o2, v2) = (off.chunks_exact(2), val.chunks_exact(2));
    if let (Some(&[o]), Some(&[v])) = (o2.remainder().first_chunk(), v2.remainder().first_chunk()) {
        add_rows(xc, o, v, r, &mut acc[0]);
    }
    for (o, v) in o2.zip(v2) {
        add_rows(xc, o[0], v[0], r, &mut acc[0]);
        add_rows(xc, o[1], v[1], r, &mut acc[1]);
    }
    let mut out = [[0.0; LANES]; 8];
    for (o, (a, b)) in out.iter_mut().zip(acc[0].iter().zip(&acc[1])) {
        *o = a.add(*b).to_array();
    }
    out
}
