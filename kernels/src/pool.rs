//! Pooling over NCHW planes: max and min (with optional argmax/argmin indices and their
//! backward passes), average (with PyTorch's `count_include_pad` choice) and global
//! average. Any window, stride, padding and dilation.
//!
//! Windows and padding: padding is never a candidate for max or min, and counts toward
//! the average divisor only with `count_include_pad`. A window that lies entirely in the
//! padding (possible when the padding is as large as the window) yields `-inf` for max,
//! `+inf` for min (with index [`NO_INDEX`]) and 0 for an average.
//!
//! Indices are positions within the input plane, `ih * in_w + iw`, as PyTorch stores
//! them. Ties keep the first position in the window (row-major order); NaN wins over any
//! number and the first NaN is kept, so NaN propagates.

use crate::arch::dispatch;
use crate::error::KernelError;
use crate::params::{Pool2dDims, Pool2dParams, check_len, mul, valid_range};
use crate::simd::{LANES, f32x8, load, store_partial, sum};
use crate::vector::Vf32;
use wide::u32x8;

/// Index stored for a window that has no input element (only possible when the padding is
/// at least as large as the window).
pub const NO_INDEX: u32 = u32::MAX;

/// Validates a forward call (shared with the reference).
pub(crate) fn check_forward(
    p: &Pool2dParams,
    input: &[f32],
    output: &[f32],
) -> Result<Pool2dDims, KernelError> {
    let d = p.dims()?;
    check_len("input", d.input_len, input.len())?;
    check_len("output", d.output_len, output.len())?;
    Ok(d)
}

/// Validates a backward call (shared with the reference).
pub(crate) fn check_backward(
    p: &Pool2dParams,
    grad_output: &[f32],
    grad_input: &[f32],
) -> Result<Pool2dDims, KernelError> {
    let d = p.dims()?;
    check_len("grad_output", d.output_len, grad_output.len())?;
    check_len("grad_input", d.input_len, grad_input.len())?;
    Ok(d)
}

/// Validates the index slice of a forward call: its length, and that every plane index
/// fits below [`NO_INDEX`].
pub(crate) fn check_indices(
    p: &Pool2dParams,
    d: &Pool2dDims,
    indices: &[u32],
) -> Result<(), KernelError> {
    if mul(p.in_h, p.in_w)? >= NO_INDEX as usize {
        return Err(KernelError::Overflow);
    }
    check_len("indices", d.output_len, indices.len())
}

/// Validates the stored indices of a backward call: length and range.
pub(crate) fn check_index_values(
    p: &Pool2dParams,
    d: &Pool2dDims,
    indices: &[u32],
) -> Result<(), KernelError> {
    check_len("indices", d.output_len, indices.len())?;
    check_in_plane(indices, p.in_h * p.in_w)
}

/// [`KernelError::InvalidIndex`] for the first of `indices` that is neither below `plane`
/// nor [`NO_INDEX`].
pub(crate) fn check_in_plane(indices: &[u32], plane: usize) -> Result<(), KernelError> {
    // one pass without an early exit (it vectorises); the position only on failure
    let bad = indices.iter().fold(false, |bad, &i| {
        bad | (i != NO_INDEX && i as usize >= plane)
    });
    if !bad {
        return Ok(());
    }
    match indices
        .iter()
        .enumerate()
        .find(|&(_, &i)| i != NO_INDEX && i as usize >= plane)
    {
        Some((index, &value)) => Err(KernelError::InvalidIndex { index, value }),
        None => Ok(()),
    }
}

/// Max pooling; with `indices`, also the argmax of every window (see the module notes).
///
/// `input` is `[batch, channels, in_h, in_w]`; `output` and `indices` are
/// `[batch, channels, out_h, out_w]` and are overwritten.
///
/// # Errors
/// As [`Pool2dParams::dims`]; [`KernelError::LengthMismatch`];
/// [`KernelError::Overflow`] when indices are asked for and a plane has `2^32 - 1`
/// elements or more.
///
/// ```
/// use cnnkit_kernels::{max_pool2d, Pool2dParams};
/// let p = Pool2dParams::new(1, 1, 2, 4, 2, 2);
/// let x = [1.0, 5.0, 2.0, 2.0,
///          3.0, 4.0, 0.0, 2.0];
/// let (mut y, mut idx) = ([0.0; 2], [0; 2]);
/// max_pool2d(&p, &x, &mut y, Some(&mut idx)).unwrap();
/// assert_eq!((y, idx), ([5.0, 2.0], [1, 2])); // tie: the first position wins
/// ```
pub fn max_pool2d(
    p: &Pool2dParams,
    input: &[f32],
    output: &mut [f32],
    indices: Option<&mut [u32]>,
) -> Result<(), KernelError> {
    extreme_pool::<false>(p, input, output, indices)
}

/// Min pooling; with `indices`, also the argmin of every window. As [`max_pool2d`]
/// with the order reversed.
///
/// # Errors
/// As [`max_pool2d`].
pub fn min_pool2d(
    p: &Pool2dParams,
    input: &[f32],
    output: &mut [f32],
    indices: Option<&mut [u32]>,
) -> Result<(), KernelError> {
    extreme_pool::<true>(p, input, output, indices)
}

fn extreme_pool<const MIN: bool>(
    p: &Pool2dParams,
    input: &[f32],
    output: &mut [f32],
    mut indices: Option<&mut [u32]>,
) -> Result<(), KernelError> {
    let d = check_forward(p, input, output)?;
    if let Some(idx) = indices.as_deref() {
        check_indices(p, &d, idx)?;
    }
    if is_2x2_s2(p) && (indices.is_none() || p.in_h * p.in_w <= FAST_INDEX_PLANE) {
        pool_2x2::<MIN>(p, &d, input, output, indices);
        return Ok(());
    }
    let (h, w) = (p.in_h, p.in_w);
    let out_plane = d.out_h * d.out_w;
    let empty = f32x8::splat(if MIN {
        f32::INFINITY
    } else {
        f32::NEG_INFINITY
    });
    let want_idx = indices.is_some();
    let span_w = (p.kernel_w - 1) * p.dilation_w;
    for (pl, (x, y)) in input
        .chunks_exact(h * w)
        .zip(output.chunks_exact_mut(out_plane))
        .enumerate()
    {
        for oh in 0..d.out_h {
            let mut ow0 = 0;
            while ow0 < d.out_w {
                let width = (d.out_w - ow0).min(LANES);
                let first = ow0 * p.stride_w;
                let interior = width == LANES
                    && first >= p.pad_left
                    && (ow0 + LANES - 1) * p.stride_w + span_w < p.pad_left + w;
                let mut best = empty;
                let mut best_i = u32x8::splat(NO_INDEX);
                let (kh_lo, kh_hi) = taps(oh, p.stride_h, p.dilation_h, p.kernel_h, p.pad_top, h);
                let (kw_lo, kw_hi) = tile_taps(p, ow0, width);
                for kh in kh_lo..kh_hi {
                    let ih = oh * p.stride_h + kh * p.dilation_h - p.pad_top;
                    let row = &x[ih * w..][..w];
                    for kw in kw_lo..kw_hi {
                        let off = kw * p.dilation_w;
                        let mut a = [0.0_f32; LANES];
                        let mut valid = [0_u32; LANES];
                        let mut pos = [0_u32; LANES];
                        if interior {
                            let s = first + off - p.pad_left;
                            if p.stride_w == 1 {
                                a.copy_from_slice(&row[s..s + LANES]);
                            } else {
                                for (l, v) in a.iter_mut().enumerate() {
                                    *v = row[s + l * p.stride_w];
                                }
                            }
                            valid = [u32::MAX; LANES];
                            if want_idx {
                                // fits in u32: the plane was checked against NO_INDEX
                                for (l, q) in pos.iter_mut().enumerate() {
                                    *q = (ih * w + s + l * p.stride_w) as u32;
                                }
                            }
                        } else {
                            for l in 0..width {
                                let iwp = (ow0 + l) * p.stride_w + off;
                                if iwp >= p.pad_left && iwp < p.pad_left + w {
                                    let iw = iwp - p.pad_left;
                                    a[l] = row[iw];
                                    valid[l] = u32::MAX;
                                    pos[l] = (ih * w + iw) as u32;
                                }
                            }
                        }
                        let xv = f32x8::new(a);
                        let better = if MIN {
                            xv.simd_lt(best)
                        } else {
                            xv.simd_gt(best)
                        };
                        let nan_wins = xv.is_nan() & !best.is_nan();
                        let unset = f32x8::from_bits(best_i.simd_eq(u32x8::splat(NO_INDEX)));
                        let take =
                            (better | nan_wins | unset) & f32x8::from_bits(u32x8::new(valid));
                        best = take.select(xv, best);
                        best_i = take.select(u32x8::new(pos), best_i);
                    }
                }
                let o = pl * out_plane + oh * d.out_w + ow0;
                store_partial(&mut y[oh * d.out_w + ow0..][..width], best);
                if let Some(idx) = indices.as_deref_mut() {
                    idx[o..o + width].copy_from_slice(&best_i.to_array()[..width]);
                }
                ow0 += LANES;
            }
        }
    }
    Ok(())
}

/// The common 2x2 window with stride 2, no padding, no dilation.
fn is_2x2_s2(p: &Pool2dParams) -> bool {
    p.kernel_h == 2
        && p.kernel_w == 2
        && p.stride_h == 2
        && p.stride_w == 2
        && p.dilation_h == 1
        && p.dilation_w == 1
        && p.pad_top == 0
        && p.pad_bottom == 0
        && p.pad_left == 0
        && p.pad_right == 0
}

/// Largest plane the 2x2 path tracks indices for: it carries them in `f32` lanes, exact
/// up to 2^24 (larger planes take the general path).
const FAST_INDEX_PLANE: usize = 1 << 24;

/// Max (or min) over 2x2 windows with stride 2 on the variant [`arch::active`] names.
fn pool_2x2<const MIN: bool>(
    p: &Pool2dParams,
    d: &Pool2dDims,
    input: &[f32],
    output: &mut [f32],
    indices: Option<&mut [u32]>,
) {
    // one entry point per (max/min, with/without indices): the loops carry no branches
    match (MIN, indices) {
        (false, None) => {
            dispatch!(max_2x2(p: &Pool2dParams, d: &Pool2dDims, input: &[f32], output: &mut [f32]))
        }
        (true, None) => {
            dispatch!(min_2x2(p: &Pool2dParams, d: &Pool2dDims, input: &[f32], output: &mut [f32]))
        }
        (false, Some(idx)) => {
            dispatch!(max_2x2_idx(p: &Pool2dParams, d: &Pool2dDims, input: &[f32], output: &mut [f32], idx: &mut [u32]))
        }
        (true, Some(idx)) => {
            dispatch!(min_2x2_idx(p: &Pool2dParams, d: &Pool2dDims, input: &[f32], output: &mut [f32], idx: &mut [u32]))
        }
    }
}

#[inline(always)]
fn max_2x2<V: Vf32>(p: &Pool2dParams, d: &Pool2dDims, input: &[f32], output: &mut [f32]) {
    windows_2x2::<V, false, false>(p, d, input, output, &mut []);
}

#[inline(always)]
fn min_2x2<V: Vf32>(p: &Pool2dParams, d: &Pool2dDims, input: &[f32], output: &mut [f32]) {
    windows_2x2::<V, true, false>(p, d, input, output, &mut []);
}

#[inline(always)]
fn max_2x2_idx<V: Vf32>(
    p: &Pool2dParams,
    d: &Pool2dDims,
    input: &[f32],
    output: &mut [f32],
    idx: &mut [u32],
) {
    windows_2x2::<V, false, true>(p, d, input, output, idx);
}

#[inline(always)]
fn min_2x2_idx<V: Vf32>(
    p: &Pool2dParams,
    d: &Pool2dDims,
    input: &[f32],
    output: &mut [f32],
    idx: &mut [u32],
) {
    windows_2x2::<V, true, true>(p, d, input, output, idx);
}

/// Eight 2x2 windows at a time: each input row's 16 floats split into even and odd
/// columns, then a tournament in window order, `pick(pick(top-left, top-right),
/// pick(bottom-left, bottom-right))`, which keeps the first of ties and the first NaN as
/// the general path does. Indices ride along as `f32` tags (exact: the plane is below
/// [`FAST_INDEX_PLANE`]). Rows of fewer than 8 windows (LeNet's second pool: 5) read on
/// into the rows after them and store whole vectors into the output rows after theirs,
/// which are computed later and overwrite those lanes; only at the end of the tensor do
/// lanes read 0 and go unstored.
#[inline(always)]
fn windows_2x2<V: Vf32, const MIN: bool, const IDX: bool>(
    p: &Pool2dParams,
    d: &Pool2dDims,
    input: &[f32],
    output: &mut [f32],
    indices: &mut [u32],
) {
    let (h, w) = (p.in_h, p.in_w);
    let (oh_n, ow_n) = (d.out_h, d.out_w);
    let out_plane = oh_n * ow_n;
    let lane2 = V::from_array([0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]);
    let (one, wv) = (V::splat(1.0), V::splat(w as f32));
    fn rest(r: &[f32]) -> &[f32] {
        r.get(LANES..).unwrap_or(&[])
    }
    let planes = output.len() / out_plane.max(1);
    // rows shorter than a vector run on into the next rows (see above)
    let short = ow_n < LANES;
    for pl in 0..planes {
        for oh in 0..oh_n {
            let at = pl * h * w + 2 * oh * w;
            let o = pl * out_plane + oh * ow_n;
            let (r0, r1, yrow) = if short {
                (&input[at..], &input[at + w..], &mut output[o..])
            } else {
                (
                    &input[at..][..2 * ow_n],
                    &input[at + w..][..2 * ow_n],
                    &mut output[o..][..ow_n],
                )
            };
            // whole vectors (fewer lanes only when the row is shorter than 8): the last
            // tile overlaps the one before instead of running past the row (its windows
            // are computed twice, with equal results)
            let last = ow_n.saturating_sub(LANES);
            let mut next = 0;
            loop {
                let ow0 = next.min(last);
                let (s, t) = (&r0[2 * ow0..], &r1[2 * ow0..]);
                let (e0, o0) = V::load(s).deinterleave(V::load(rest(s)));
                let (e1, o1) = V::load(t).deinterleave(V::load(rest(t)));
                let i00 = V::splat((2 * oh * w + 2 * ow0) as f32).add(lane2);
                let i10 = i00.add(wv);
                let (v0, t0) = V::pick::<MIN>(e0, i00, o0, i00.add(one));
                let (v1, t1) = V::pick::<MIN>(e1, i10, o1, i10.add(one));
                let (v, tag) = V::pick::<MIN>(v0, t0, v1, t1);
                v.store(&mut yrow[ow0..]);
                if IDX {
                    let end = if short { indices.len() } else { o + ow_n };
                    tag.store_index(&mut indices[o + ow0..end]);
                }
                if ow0 == last {
                    break;
                }
                next += LANES;
            }
        }
    }
}

/// Backward pass of [`max_pool2d`] from its indices: each output gradient is added to the
/// input position its window chose (windows with [`NO_INDEX`] contribute nothing);
/// `grad_input` is overwritten.
///
/// # Errors
/// As [`Pool2dParams::dims`]; [`KernelError::LengthMismatch`]; [`KernelError::InvalidIndex`]
/// for an index outside the plane (checked before anything is written).
pub fn max_pool2d_backward(
    p: &Pool2dParams,
    indices: &[u32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    index_backward(p, indices, grad_output, grad_input)
}

/// Backward pass of [`min_pool2d`]; as [`max_pool2d_backward`].
///
/// # Errors
/// As [`max_pool2d_backward`].
pub fn min_pool2d_backward(
    p: &Pool2dParams,
    indices: &[u32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    index_backward(p, indices, grad_output, grad_input)
}

fn index_backward(
    p: &Pool2dParams,
    indices: &[u32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward(p, grad_output, grad_input)?;
    check_index_values(p, &d, indices)?;
    let plane = p.in_h * p.in_w;
    grad_input.fill(0.0);
    let out_plane = d.out_h * d.out_w;
    for ((gx, gy), idx) in grad_input
        .chunks_exact_mut(plane)
        .zip(grad_output.chunks_exact(out_plane))
        .zip(indices.chunks_exact(out_plane))
    {
        for (&g, &i) in gy.iter().zip(idx) {
            if let Some(v) = gx.get_mut(i as usize) {
                *v += g;
            }
        }
    }
    Ok(())
}

/// Average pooling. With `count_include_pad`, every window divides by
/// `kernel_h * kernel_w`; without, by the number of input elements it covers (and a
/// window with none yields 0).
///
/// # Errors
/// As [`Pool2dParams::dims`]; [`KernelError::LengthMismatch`].
///
/// ```
/// use cnnkit_kernels::{avg_pool2d, Pool2dParams};
/// let p = Pool2dParams::new(1, 1, 2, 2, 2, 2).with_stride(1, 1).with_padding(0, 0, 1, 0);
/// let mut y = [0.0; 2];
/// avg_pool2d(&p, false, &[1.0, 2.0, 3.0, 4.0], &mut y).unwrap();
/// assert_eq!(y, [2.0, 2.5]); // the first window covers 1 and 3 only
/// avg_pool2d(&p, true, &[1.0, 2.0, 3.0, 4.0], &mut y).unwrap();
/// assert_eq!(y, [1.0, 2.5]);
/// ```
pub fn avg_pool2d(
    p: &Pool2dParams,
    count_include_pad: bool,
    input: &[f32],
    output: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_forward(p, input, output)?;
    let (h, w) = (p.in_h, p.in_w);
    let out_plane = d.out_h * d.out_w;
    // (as f32 first: a window may be far larger than memory when padding is huge)
    let full = p.kernel_h as f32 * p.kernel_w as f32;
    for (x, y) in input
        .chunks_exact(h * w)
        .zip(output.chunks_exact_mut(out_plane))
    {
        for oh in 0..d.out_h {
            let (kh_lo, kh_hi) = taps(oh, p.stride_h, p.dilation_h, p.kernel_h, p.pad_top, h);
            let mut ow0 = 0;
            while ow0 < d.out_w {
                let width = (d.out_w - ow0).min(LANES);
                let mut acc = f32x8::ZERO;
                let mut cnt = [0_u32; LANES];
                let (kw_lo, kw_hi) = tile_taps(p, ow0, width);
                for kh in kh_lo..kh_hi {
                    let ih = oh * p.stride_h + kh * p.dilation_h - p.pad_top;
                    let row = &x[ih * w..][..w];
                    for kw in kw_lo..kw_hi {
                        let off = kw * p.dilation_w;
                        let mut a = [0.0_f32; LANES];
                        for l in 0..width {
                            let iwp = (ow0 + l) * p.stride_w + off;
                            if iwp >= p.pad_left && iwp < p.pad_left + w {
                                a[l] = row[iwp - p.pad_left];
                                cnt[l] += 1;
                            }
                        }
                        acc += load(&a);
                    }
                }
                let div = if count_include_pad {
                    f32x8::splat(full)
                } else {
                    f32x8::new(cnt.map(|c| c as f32))
                };
                let v = div.simd_eq(f32x8::ZERO).select(f32x8::ZERO, acc / div);
                store_partial(&mut y[oh * d.out_w + ow0..][..width], v);
                ow0 += LANES;
            }
        }
    }
    Ok(())
}

/// The taps `k` in `lo..hi` of a window at output position `o` that land in the input.
#[inline]
fn taps(
    o: usize,
    stride: usize,
    dil: usize,
    kernel: usize,
    pad: usize,
    len: usize,
) -> (usize, usize) {
    // tap position o * stride + k * dil must lie in [pad, pad + len)
    valid_range(kernel, dil, o * stride, pad, len)
}

/// The `kw` taps that land in the input for at least one of the `width` output columns
/// starting at `ow0` (the first column has the highest bound, the last the lowest).
#[inline]
fn tile_taps(p: &Pool2dParams, ow0: usize, width: usize) -> (usize, usize) {
    let lo = taps(
        ow0 + width - 1,
        p.stride_w,
        p.dilation_w,
        p.kernel_w,
        p.pad_left,
        p.in_w,
    )
    .0;
    let hi = taps(
        ow0,
        p.stride_w,
        p.dilation_w,
        p.kernel_w,
        p.pad_left,
        p.in_w,
    )
    .1;
    (lo, hi.max(lo))
}

/// Backward pass of [`avg_pool2d`]: each output gradient, divided as in the forward pass,
/// is added to every input element of its window; `grad_input` is overwritten.
///
/// # Errors
/// As [`avg_pool2d`].
pub fn avg_pool2d_backward(
    p: &Pool2dParams,
    count_include_pad: bool,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    let d = check_backward(p, grad_output, grad_input)?;
    let (h, w) = (p.in_h, p.in_w);
    let out_plane = d.out_h * d.out_w;
    grad_input.fill(0.0);
    for (gx, gy) in grad_input
        .chunks_exact_mut(h * w)
        .zip(grad_output.chunks_exact(out_plane))
    {
        for oh in 0..d.out_h {
            let (kh_lo, kh_hi) = taps(oh, p.stride_h, p.dilation_h, p.kernel_h, p.pad_top, h);
            for ow in 0..d.out_w {
                let (kw_lo, kw_hi) = taps(ow, p.stride_w, p.dilation_w, p.kernel_w, p.pad_left, w);
                let count = (kh_hi - kh_lo) * (kw_hi - kw_lo);
                if count == 0 {
                    continue;
                }
                let div = if count_include_pad {
                    p.kernel_h as f32 * p.kernel_w as f32
                } else {
                    count as f32
                };
                let g = gy[oh * d.out_w + ow] / div;
                for kh in kh_lo..kh_hi {
                    let ih = oh * p.stride_h + kh * p.dilation_h - p.pad_top;
                    for kw in kw_lo..kw_hi {
                        let iw = ow * p.stride_w + kw * p.dilation_w - p.pad_left;
                        gx[ih * w + iw] += g;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Validates a global pooling call: `planes = batch * channels` and `plane = h * w`;
/// `names` are the names of the `(plane-sized, per-plane)` slices.
pub(crate) fn check_global(
    (batch, channels, h, w): (usize, usize, usize, usize),
    names: (&'static str, &'static str),
    full: &[f32],
    per_plane: &[f32],
) -> Result<(usize, usize), KernelError> {
    let p = Pool2dParams::new(batch, channels, h, w, h, w);
    let d = p.dims()?;
    check_len(names.0, d.input_len, full.len())?;
    check_len(names.1, d.planes, per_plane.len())?;
    Ok((d.planes, h * w))
}

/// Global average pooling: `output[n, c] = mean(input[n, c, :, :])`.
///
/// # Errors
/// [`KernelError::ZeroSize`], [`KernelError::Overflow`], [`KernelError::LengthMismatch`]
/// (`input` is `batch * channels * h * w`, `output` is `batch * channels`).
pub fn global_avg_pool2d(
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    input: &[f32],
    output: &mut [f32],
) -> Result<(), KernelError> {
    let (_, plane) = check_global((batch, channels, h, w), ("input", "output"), input, output)?;
    let inv = 1.0 / plane as f32;
    for (y, x) in output.iter_mut().zip(input.chunks_exact(plane)) {
        *y = sum(x) * inv;
    }
    Ok(())
}

/// Backward pass of [`global_avg_pool2d`]: every element of a plane receives
/// `grad_output[n, c] / (h * w)`; `grad_input` is overwritten.
///
/// # Errors
/// As [`global_avg_pool2d`], with `grad_input` in the place of `input`.
pub fn global_avg_pool2d_backward(
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), KernelError> {
    let (_, plane) = check_global(
        (batch, channels, h, w),
        ("grad_input", "grad_output"),
        grad_input,
        grad_output,
    )?;
    let inv = 1.0 / plane as f32;
    for (g, x) in grad_output.iter().zip(grad_input.chunks_exact_mut(plane)) {
        x.fill(g * inv);
    }
    Ok(())
}
