//! im2col / col2im (public, one image) and the column machinery the GEMM-based passes
//! share (`fwd_im2col`, `input_gemm`, `weight_gemm`): blocks of columns, batch-wide blocks
//! in the GEMM's packed layout, and the plan of block sizes.
//!
//! The im2col matrix of one image has a row per `(channel, kh, kw)` (in that order, so a
//! group's rows are contiguous) and a column per output pixel `(oh, ow)`; the convolution
//! of group `g` is then `W_g [M x K] * col_g [K x N]` with `M = out_per_group`,
//! `K = in_per_group * kh * kw` and `N = out_h * out_w`.

use super::{check_im2col, is_pointwise};
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, mul, valid_range};
use crate::simd::{LANES, load, store};

/// A block of im2col columns: channels `c0..c0 + channels` of one image, output pixels
/// `j0..j0 + nb` (row-major over `(oh, ow)`); the block is stored as
/// `channels * kh * kw` rows of `nb` columns, `ld` apart.
#[derive(Clone, Copy)]
pub(crate) struct ColBlock {
    pub c0: usize,
    pub channels: usize,
    pub j0: usize,
    pub nb: usize,
    /// Row stride of the destination (`nb` for a dense block; more when several images'
    /// columns share one block).
    pub ld: usize,
}

impl ColBlock {
    /// The block of group `g`'s channels, output pixels `j0..j0 + nb`, rows `ld` apart.
    pub(crate) fn group(d: &Conv2dDims, g: usize, j0: usize, nb: usize, ld: usize) -> Self {
        ColBlock {
            c0: g * d.in_per_group,
            channels: d.in_per_group,
            j0,
            nb,
            ld,
        }
    }
}

/// The part of one output row that a block row holds: `n` entries from block position
/// `at` on; of these, `[lo, hi)` are read from input positions `src + i * stride_w` and the
/// rest are padding.
struct Span {
    at: usize,
    n: usize,
    lo: usize,
    hi: usize,
    src: usize,
}

/// Calls `f` once for every (im2col row `(c, kh, kw)`, output row) stretch of the block
/// `b`. (One call site, so that `f` is inlined.)
#[inline(always)]
fn for_spans(p: &Conv2dParams, d: &Conv2dDims, b: ColBlock, mut f: impl FnMut(Span)) {
    let (h, w) = (p.in_h, p.in_w);
    let ow_n = d.out_w;
    let j1 = b.j0 + b.nb;
    let mut r = 0;
    for ci in b.c0..b.c0 + b.channels {
        for kh in 0..p.kernel_h {
            let (oh_lo, oh_hi) = valid_range(d.out_h, p.stride_h, kh * p.dilation_h, p.pad_top, h);
            for kw in 0..p.kernel_w {
                let off = kw * p.dilation_w;
                let (ow_lo, ow_hi) = valid_range(ow_n, p.stride_w, off, p.pad_left, w);
                let mut oh = b.j0 / ow_n;
                while oh * ow_n < j1 {
                    // the block's columns on this output row: ow in [a, z)
                    let a = b.j0.saturating_sub(oh * ow_n);
                    let z = (j1 - oh * ow_n).min(ow_n);
                    let at = r * b.ld + oh * ow_n + a - b.j0; // block position of ow = a
                    let (lo, hi, src) = if oh < oh_lo || oh >= oh_hi || ow_lo >= ow_hi {
                        (0, 0, 0)
                    } else {
                        let lo = ow_lo.clamp(a, z);
                        let hi = ow_hi.clamp(lo, z);
                        let ih = oh * p.stride_h + kh * p.dilation_h - p.pad_top;
                        // (only meaningful when hi > lo, where it is in range)
                        let iw = (lo * p.stride_w + off).wrapping_sub(p.pad_left);
                        (lo - a, hi - a, ((ci * h + ih) * w).wrapping_add(iw))
                    };
                    f(Span {
                        at,
                        n: z - a,
                        lo,
                        hi,
                        src,
                    });
                    oh += 1;
                }
                r += 1;
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for im2col's runs, which are often a few pixels long (one
/// output row): whole vectors, the last one overlapping the previous instead of a scalar
/// tail, so a run of 8 to 16 floats is two moves and no `memcpy` call.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    if n >= LANES {
        let mut i = 0;
        while i + LANES < n {
            store(&mut dst[i..i + LANES], load(&src[i..i + LANES]));
            i += LANES;
        }
        store(&mut dst[n - LANES..], load(&src[n - LANES..]));
    } else if n >= 4 {
        let lo = wide::f32x4::new([src[0], src[1], src[2], src[3]]);
        let hi = wide::f32x4::new([src[n - 4], src[n - 3], src[n - 2], src[n - 1]]);
        dst[n - 4..].copy_from_slice(&hi.to_array());
        dst[..4].copy_from_slice(&lo.to_array());
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// Writes the im2col block `b` of `image` into `col` (`b.channels * kh * kw` rows of `b.nb`).
pub(crate) fn im2col_block(
    p: &Conv2dParams,
    d: &Conv2dDims,
    image: &[f32],
    b: ColBlock,
    col: &mut [f32],
) {
    let sw = p.stride_w;
    for_spans(p, d, b, |s| {
        let row = &mut col[s.at..s.at + s.n];
        // (guarded: an empty fill would still cost a memset call)
        if s.lo > 0 {
            row[..s.lo].fill(0.0);
        }
        if s.hi < s.n {
            row[s.hi..].fill(0.0);
        }
        if s.hi > s.lo {
            let dst = &mut row[s.lo..s.hi];
            if sw == 1 {
                copy_run(dst, &image[s.src..s.src + dst.len()]);
            } else {
                for (i, v) in dst.iter_mut().enumerate() {
                    *v = image[s.src + i * sw];
                }
            }
        }
    });
}

/// Adds the im2col block `col` into the pixels of `image` it came from (the adjoint of
/// [`im2col_block`]); the caller zeroes `image` first.
pub(crate) fn col2im_block(
    p: &Conv2dParams,
    d: &Conv2dDims,
    col: &[f32],
    b: ColBlock,
    image: &mut [f32],
) {
    let sw = p.stride_w;
    for_spans(p, d, b, |s| {
        if s.hi > s.lo {
            let seg = &col[s.at + s.lo..s.at + s.hi];
            if sw == 1 {
                for (dst, v) in image[s.src..s.src + seg.len()].iter_mut().zip(seg) {
                    *dst += v;
                }
            } else {
                for (i, &v) in seg.iter().enumerate() {
                    image[s.src + i * sw] += v;
                }
            }
        }
    });
}

/// Columns per im2col block: a block of `k` rows of about 512 KiB, a multiple of 16, at
/// least 128 columns (so the GEMM's tiles stay full) and not more than `n`.
pub(crate) fn block_cols(k: usize, n: usize) -> usize {
    const FLOATS: usize = 128 * 1024;
    ((FLOATS / k.max(1)) / 16 * 16).max(128).min(n)
}

/// Unfolds one image `[in_channels, in_h, in_w]` into its im2col matrix `col`
/// `[in_channels * kernel_h * kernel_w, out_h * out_w]` (row `(c, kh, kw)`, column
/// `(oh, ow)`; taps in the padding are 0). `p.batch` is checked but not used.
///
/// # Errors
/// As [`Conv2dParams::dims`]; [`KernelError::LengthMismatch`] unless
/// `image.len() == dims.image_len` and `col.len() == dims.col_len`.
///
/// ```
/// use cnnkit_kernels::{im2col, Conv2dParams};
/// let p = Conv2dParams::new(1, 1, 2, 2, 1, 2, 2).with_padding(0, 1, 0, 0);
/// let mut col = [0.0; 8]; // 4 taps x 2 output pixels
/// im2col(&p, &[1.0, 2.0, 3.0, 4.0], &mut col).unwrap();
/// assert_eq!(col, [1.0, 3.0, 2.0, 4.0, 3.0, 0.0, 4.0, 0.0]);
/// ```
pub fn im2col(p: &Conv2dParams, image: &[f32], col: &mut [f32]) -> Result<(), KernelError> {
    let d = check_im2col(p, image, col)?;
    let b = ColBlock {
        c0: 0,
        channels: p.in_channels,
        j0: 0,
        nb: d.col_cols,
        ld: d.col_cols,
    };
    im2col_block(p, &d, image, b, col);
    Ok(())
}

/// Folds an im2col matrix back into one image, summing the entries that map to the same
/// pixel (the adjoint of [`im2col`]); `image` is overwritten.
///
/// # Errors
/// As [`im2col`].
pub fn col2im(p: &Conv2dParams, col: &[f32], image: &mut [f32]) -> Result<(), KernelError> {
    let d = check_im2col(p, image, col)?;
    image.fill(0.0);
    let b = ColBlock {
        c0: 0,
        channels: p.in_channels,
        j0: 0,
        nb: d.col_cols,
        ld: d.col_cols,
    };
    col2im_block(p, &d, col, b, image);
    Ok(())
}

/// Splits the batch-wide columns `jb..jb + nb` (image `j / n`, pixel `j % n`) into runs
/// within one image: `f(image, first pixel, length, offset in the block)`.
pub(crate) fn for_image_runs(
    jb: usize,
    nb: usize,
    n: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let mut j = jb;
    while j < jb + nb {
        let (img, j0) = (j / n, j % n);
        let len = (n - j0).min(jb + nb - j);
        f(img, j0, len, j - jb);
        j += len;
    }
}

/// The im2col block of group `g` over the batch-wide columns `jb..jb + nb` (image
/// `j / n`, pixel `j % n`), written straight in the GEMM's packed-B layout for a
/// microkernel `nr` columns wide (see `gemm_prepacked`): `ceil(nb / nr)` slivers of
/// `col_rows` rows of `nr` floats; the last sliver's missing columns repeat its last real
/// column (the GEMM computes their lanes but never stores them). This skips the
/// plain im2col matrix and the GEMM's own packing pass over it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col_packed(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    g: usize,
    jb: usize,
    nb: usize,
    nr: usize,
    dst: &mut [f32],
) {
    match nr {
        32 => packed_slivers::<32>(p, d, input, g, jb, nb, dst),
        16 => packed_slivers::<16>(p, d, input, g, jb, nb, dst),
        8 => packed_slivers::<8>(p, d, input, g, jb, nb, dst),
        _ => unreachable!("microkernels are 8, 16 or 32 columns wide"),
    }
}

/// [`im2col_packed`] for slivers of `NR` columns. Per sliver, each column's input position
/// is computed once; a row `(c, kh, kw)` then adds one offset to all of them. Where every
/// column's tap of that row lies inside the image (no padding involved) the row is a
/// plain gather of `NR` floats; elsewhere each tap is checked.
#[inline(always)]
fn packed_slivers<const NR: usize>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    g: usize,
    jb: usize,
    nb: usize,
    dst: &mut [f32],
) {
    let (h, w) = (p.in_h as isize, p.in_w as isize);
    let hw = p.in_h * p.in_w;
    let k = d.col_rows;
    for (s, sliver) in dst
        .chunks_exact_mut(k * NR)
        .take(nb.div_ceil(NR))
        .enumerate()
    {
        let cols = (nb - s * NR).min(NR);
        // (missing columns repeat the last real one: always in range, never stored)
        let (mut pos, mut ih0, mut iw0) = ([0_isize; NR], [0_isize; NR], [0_isize; NR]);
        let [ih_lo, ih_hi, iw_lo, iw_hi] =
            sliver_columns(p, d, g, jb + s * NR, cols, &mut pos, &mut ih0, &mut iw0);
        // runs of columns whose taps are consecutive in memory (stride 1 along the row):
        // where they are few, a row is a few short copies instead of NR loads
        let mut runs = [(0_usize, 0_usize); NR];
        let mut n_runs = 0;
        for c in 0..cols {
            if c > 0 && pos[c] == pos[c - 1] + 1 {
                runs[n_runs - 1].1 += 1;
            } else {
                runs[n_runs] = (c, 1);
                n_runs += 1;
            }
        }
        let by_runs = p.stride_w == 1 && n_runs * 4 <= NR;
        let runs = &runs[..n_runs];
        let mut rows = sliver.chunks_exact_mut(NR);
        for ci in 0..d.in_per_group {
            for kh in 0..p.kernel_h {
                let dh = (kh * p.dilation_h) as isize;
                let rows_in = ih_lo + dh >= 0 && ih_hi + dh < h;
                for kw in 0..p.kernel_w {
                    let dw = (kw * p.dilation_w) as isize;
                    let roff = (ci * hw) as isize + dh * w + dw;
                    let Some(row) = rows.next() else { return };
                    if rows_in && iw_lo + dw >= 0 && iw_hi + dw < w {
                        if by_runs {
                            // (columns past `cols` are left as they are: never stored)
                            for &(c0, len) in runs {
                                let at = (pos[c0] + roff) as usize;
                                copy_run(&mut row[c0..c0 + len], &input[at..at + len]);
                            }
                        } else {
                            for (o, &q) in row.iter_mut().zip(pos.iter()) {
                                *o = input[(q + roff) as usize];
                            }
                        }
                    } else {
                        for c in 0..NR {
                            let inside = inside(ih0[c] + dh, iw0[c] + dw, h, w);
                            row[c] = checked_tap(input, inside, pos[c] + roff);
                        }
                    }
                }
            }
        }
    }
}

/// The transpose of [`im2col_packed`]'s block, packed as B for `dY_block * col_block^T`
/// (the weight gradient): `ceil(col_rows / nr)` slivers of `nr` im2col rows (taps
/// `(c, kh, kw)`; the last sliver's missing rows repeat its last real one), each holding
/// `nb` rows of `nr` floats, one per column `jb..jb + nb`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col_packed_t(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    g: usize,
    jb: usize,
    nb: usize,
    nr: usize,
    dst: &mut [f32],
) {
    match nr {
        32 => packed_t_slivers::<32>(p, d, input, g, jb, nb, dst),
        16 => packed_t_slivers::<16>(p, d, input, g, jb, nb, dst),
        8 => packed_t_slivers::<8>(p, d, input, g, jb, nb, dst),
        _ => unreachable!("microkernels are 8, 16 or 32 columns wide"),
    }
}

/// [`im2col_packed_t`] for slivers of `NR` taps: per sliver, each tap's offset from a
/// column's tap (0, 0) is computed once; per column (output pixel, walked in order), the
/// `NR` floats are a plain gather where all the sliver's taps lie inside the image, else
/// each tap is checked.
#[inline(always)]
fn packed_t_slivers<const NR: usize>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    g: usize,
    jb: usize,
    nb: usize,
    dst: &mut [f32],
) {
    let (h, w) = (p.in_h as isize, p.in_w as isize);
    let hw = p.in_h * p.in_w;
    let (n, k) = (d.col_cols, d.col_rows);
    let taps = p.kernel_h * p.kernel_w;
    for (s, sliver) in dst
        .chunks_exact_mut(nb * NR)
        .take(k.div_ceil(NR))
        .enumerate()
    {
        let real = (k - s * NR).min(NR);
        let (mut koff, mut dh, mut dw) = ([0_isize; NR], [0_isize; NR], [0_isize; NR]);
        for c in 0..NR {
            let r = s * NR + c.min(real - 1);
            let (ci, t) = (r / taps, r % taps);
            dh[c] = ((t / p.kernel_w) * p.dilation_h) as isize;
            dw[c] = ((t % p.kernel_w) * p.dilation_w) as isize;
            koff[c] = (ci * hw) as isize + dh[c] * w + dw[c];
        }
        let (dh_lo, dh_hi) = (dh.iter().copied().min(), dh.iter().copied().max());
        let (dw_lo, dw_hi) = (dw.iter().copied().min(), dw.iter().copied().max());
        let (dh_lo, dh_hi) = (dh_lo.unwrap_or(0), dh_hi.unwrap_or(0));
        let (dw_lo, dw_hi) = (dw_lo.unwrap_or(0), dw_hi.unwrap_or(0));
        let (mut img, pix) = (jb / n, jb % n);
        let (mut oh, mut ow) = (pix / d.out_w, pix % d.out_w);
        for row in sliver.chunks_exact_mut(NR) {
            let ih0 = (oh * p.stride_h) as isize - p.pad_top as isize;
            let iw0 = (ow * p.stride_w) as isize - p.pad_left as isize;
            let plane = img * d.image_len + g * d.in_per_group * hw;
            let pos = plane as isize + ih0 * w + iw0;
            if ih0 + dh_lo >= 0 && ih0 + dh_hi < h && iw0 + dw_lo >= 0 && iw0 + dw_hi < w {
                for (o, &q) in row.iter_mut().zip(koff.iter()) {
                    *o = input[(pos + q) as usize];
                }
            } else {
                for c in 0..NR {
                    let inside = inside(ih0 + dh[c], iw0 + dw[c], h, w);
                    row[c] = checked_tap(input, inside, pos + koff[c]);
                }
            }
            ow += 1;
            if ow == d.out_w {
                ow = 0;
                oh += 1;
                if oh == d.out_h {
                    oh = 0;
                    img += 1;
                }
            }
        }
    }
}

/// Adds the im2col block `col` (`col_rows` rows `ld` apart; batch-wide columns
/// `jb..jb + nb` of group `g`) into the input positions it came from, over the whole
/// batch (the adjoint of [`im2col_block`] over those columns); the caller zeroes `grad_input` first. Per
/// 16 columns, each column's input position is computed once and a row adds one offset;
/// within a row the columns' positions are distinct, so the adds never collide.
#[allow(clippy::too_many_arguments)]
pub(crate) fn col2im_batched(
    p: &Conv2dParams,
    d: &Conv2dDims,
    col: &[f32],
    ld: usize,
    g: usize,
    jb: usize,
    nb: usize,
    grad_input: &mut [f32],
) {
    const NR: usize = 16;
    let (h, w) = (p.in_h as isize, p.in_w as isize);
    let hw = p.in_h * p.in_w;
    let mut j0 = 0;
    while j0 < nb {
        let cols = (nb - j0).min(NR);
        let (mut pos, mut ih0, mut iw0) = ([0_isize; NR], [0_isize; NR], [0_isize; NR]);
        let [ih_lo, ih_hi, iw_lo, iw_hi] =
            sliver_columns(p, d, g, jb + j0, cols, &mut pos, &mut ih0, &mut iw0);
        // channels innermost: consecutive rows add into different planes, so an add
        // never waits on the store just before it (rows (kh, kw) and (kh, kw + 1) of one
        // channel hit overlapping pixels)
        for kh in 0..p.kernel_h {
            let dh = (kh * p.dilation_h) as isize;
            let rows_in = ih_lo + dh >= 0 && ih_hi + dh < h;
            for kw in 0..p.kernel_w {
                let dw = (kw * p.dilation_w) as isize;
                for ci in 0..d.in_per_group {
                    let r = (ci * p.kernel_h + kh) * p.kernel_w + kw;
                    let roff = (ci * hw) as isize + dh * w + dw;
                    let src = &col[r * ld + j0..][..cols];
                    if rows_in && iw_lo + dw >= 0 && iw_hi + dw < w {
                        for (&q, &v) in pos.iter().zip(src) {
                            grad_input[(q + roff) as usize] += v;
                        }
                    } else {
                        for (c, &v) in src.iter().enumerate() {
                            let inside = inside(ih0[c] + dh, iw0[c] + dw, h, w);
                            // branch-free: a tap in the padding adds -0.0 (which changes
                            // nothing, not even a -0.0) to element 0
                            let at = if inside { (pos[c] + roff) as usize } else { 0 };
                            grad_input[at] += if inside { v } else { -0.0 };
                        }
                    }
                }
            }
        }
        j0 += NR;
    }
}

/// The batch-wide columns `j0..j0 + cols` of group `g` (image `j / col_cols`, pixel
/// `j % col_cols`) seen from the input: each column's tap (0, 0), possibly in the padding,
/// as a flat index into the batch (`pos`) and as (row, column) within its image (`ih0`,
/// `iw0`); entries past `cols` repeat the last column. Returns the range the columns span,
/// `[ih0 min, ih0 max, iw0 min, iw0 max]`, so that one tap offset is checked for all of
/// them at once.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn sliver_columns<const NR: usize>(
    p: &Conv2dParams,
    d: &Conv2dDims,
    g: usize,
    j0: usize,
    cols: usize,
    pos: &mut [isize; NR],
    ih0: &mut [isize; NR],
    iw0: &mut [isize; NR],
) -> [isize; 4] {
    let (n, w, hw) = (d.col_cols, p.in_w as isize, p.in_h * p.in_w);
    for c in 0..NR {
        let j = j0 + c.min(cols - 1);
        let (img, pix) = (j / n, j % n);
        let (oh, ow) = (pix / d.out_w, pix % d.out_w);
        ih0[c] = (oh * p.stride_h) as isize - p.pad_top as isize;
        iw0[c] = (ow * p.stride_w) as isize - p.pad_left as isize;
        let plane = img * d.image_len + g * d.in_per_group * hw;
        pos[c] = plane as isize + ih0[c] * w + iw0[c];
    }
    let lo = |v: &[isize; NR]| v.iter().copied().min().unwrap_or(0);
    let hi = |v: &[isize; NR]| v.iter().copied().max().unwrap_or(0);
    [lo(ih0), hi(ih0), lo(iw0), hi(iw0)]
}

/// Whether input position `(ih, iw)` lies inside an `h x w` image.
#[inline(always)]
fn inside(ih: isize, iw: isize, h: isize, w: isize) -> bool {
    // (negative values wrap to huge ones)
    (ih as usize) < h as usize && (iw as usize) < w as usize
}

/// `input[at]` if `inside`, else 0, without a branch (element 0 is read instead).
#[inline(always)]
fn checked_tap(input: &[f32], inside: bool, at: isize) -> f32 {
    let v = input[if inside { at as usize } else { 0 }];
    if inside { v } else { 0.0 }
}

/// The im2col block of group `g` over the batch-wide columns `jb..jb + nb` (image
/// `j / n`, pixel `j % n`) of the whole `input` batch, into `col` (rows of `nb`).
pub(crate) fn im2col_batched(
    p: &Conv2dParams,
    d: &Conv2dDims,
    input: &[f32],
    g: usize,
    jb: usize,
    nb: usize,
    col: &mut [f32],
) {
    for_image_runs(jb, nb, d.col_cols, |img, j0, len, at| {
        let blk = ColBlock::group(d, g, j0, len, nb);
        im2col_block(
            p,
            d,
            &input[img * d.image_len..][..d.image_len],
            blk,
            &mut col[at..],
        );
    });
}

/// Whether `p` has no padding (every tap of every window lies inside the image).
pub(crate) fn unpadded(p: &Conv2dParams) -> bool {
    p.pad_top == 0 && p.pad_bottom == 0 && p.pad_left == 0 && p.pad_right == 0
}

/// How [`conv2d_im2col`] walks the columns (output pixels).
pub(crate) struct Plan {
    /// 1x1 stride-1 unpadded: the input planes are B, no im2col.
    pub pointwise: bool,
    /// Columns of several images share a block (small images): the block's product goes
    /// to a scratch C and is copied out image by image.
    pub batched: bool,
    /// Columns per block.
    pub nb: usize,
}

/// Whether [`im2col_packed`] and [`im2col_packed_t`] (the batch-wide path) take `p`: they
/// compute input positions in `isize` (`ih * in_w + iw`, with `ih` and `iw` possibly in
/// the padding), which every dimension, padding, stride and dilation below 2^20 keeps
/// far from overflow; a layer of absurd geometry goes image by image through
/// [`im2col_block`] instead (a batch of 3 with padding `usize::MAX / 2` panicked here).
fn packable(p: &Conv2dParams) -> bool {
    const LIMIT: usize = 1 << 20;
    [
        p.in_h,
        p.in_w,
        p.kernel_h,
        p.kernel_w,
        p.pad_top,
        p.pad_bottom,
        p.pad_left,
        p.pad_right,
        p.stride_h,
        p.stride_w,
        p.dilation_h,
        p.dilation_w,
    ]
    .iter()
    .all(|&v| v < LIMIT)
}

impl Plan {
    pub(crate) fn new(p: &Conv2dParams, d: &Conv2dDims) -> Result<Self, KernelError> {
        let pointwise = is_pointwise(p);
        let per_image = block_cols(d.col_rows, d.col_cols);
        let total = mul(p.batch, d.col_cols)?;
        let across = block_cols(d.col_rows, total);
        let batched = !pointwise && p.batch > 1 && d.col_cols < across && packable(p);
        let nb = if pointwise {
            d.col_cols
        } else if batched {
            across
        } else {
            per_image
        };
        Ok(Self {
            pointwise,
            batched,
            nb,
        })
    }
}

/// Copies the columns `jb..jb + nb` of the batch-wide output gradient of group `g`
/// (image `j / n`, pixel `j % n`) into `gyb` (`m` rows of `nb`).
pub(super) fn gather_grad_output(
    d: &Conv2dDims,
    g: usize,
    grad_output: &[f32],
    jb: usize,
    nb: usize,
    gyb: &mut [f32],
) {
    let (m, n) = (d.out_per_group, d.col_cols);
    for_image_runs(jb, nb, n, |img, j0, len, at| {
        let gy_g = &grad_output[img * d.out_image_len + g * m * n..][..m * n];
        for r in 0..m {
            gyb[r * nb + at..][..len].copy_from_slice(&gy_g[r * n + j0..][..len]);
        }
    });
}
