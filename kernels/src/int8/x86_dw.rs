//! int8 depthwise convolution with AVX-512 VNNI: the four bytes `vpdpbusd` sums per lane
//! are four *rows* of one channel (a column of the kernel), not four input channels.
//!
//! For an output row, the input rows it reads (up to four, the kernel's height) are
//! interleaved once per input column and block of 64 channels: four 64-byte rows become
//! four registers of 16 channels by 4 rows (two levels of `vpunpck`, so a register holds
//! channels `16 L + 4 k .. 16 L + 4 k + 4` in its 128-bit lane `L`). An output pixel is then
//! `kw` steps of `vpdpbusd` against the kernel's columns packed the same way. When the
//! next output row's rows fall in the same four (stride 1 with a kernel of up to 3 rows:
//! MobileNet's 3x3), the interleaved columns serve it too, against the kernel shifted
//! down a row. The sums leave in the interleaved order and `vpackssdw`/`vpacksswb`, which
//! work within 128-bit lanes, put the bytes back in channel order.
//!
//! As in `x86.rs`, the input goes unsigned (`u = x + 128`), padding holds `zp + 128`,
//! and `bias - (zp + 128) sum w` is added before the requantisation.

use core::arch::x86_64::{
    __m512i, __mmask64, _mm512_adds_epi16, _mm512_dpbusd_epi32, _mm512_loadu_si512,
    _mm512_mask_storeu_epi8, _mm512_maskz_loadu_epi8, _mm512_max_epi8, _mm512_min_epi8,
    _mm512_packs_epi16, _mm512_packs_epi32, _mm512_set1_epi8, _mm512_set1_epi16,
    _mm512_setzero_si512, _mm512_storeu_si512, _mm512_unpackhi_epi8, _mm512_unpackhi_epi16,
    _mm512_unpacklo_epi8, _mm512_unpacklo_epi16, _mm512_xor_si512,
};

use super::conv::Args;
use super::x86::{Params, rounded_lanes};
use crate::params::Conv2dParams;

/// Channels a block: four registers of 16 after interleaving.
const BLOCK: usize = 64;

/// Whether [`conv`] runs `p` (a depthwise layer, checked by the caller): a kernel of at
/// most four rows, any width, stride and dilation.
pub(crate) const fn eligible(p: &Conv2dParams) -> bool {
    p.kernel_h <= 4
}

/// Input columns an output row reads, from the first padded one to the last tap.
const fn span(p: &Conv2dParams, out_w: usize) -> usize {
    (out_w - 1) * p.stride_w + (p.kernel_w - 1) * p.dilation_w + 1
}

/// Bytes of scratch [`conv`] needs (`None` on overflow): four int32 parameters per
/// channel, the kernel's columns packed twice (as is and a row down), the interleaved
/// columns of an output row.
pub(crate) const fn scratch_bytes(p: &Conv2dParams, out_w: usize) -> Option<usize> {
    let Some(cp) = p.in_channels.checked_next_multiple_of(BLOCK) else {
        return None;
    };
    let Some(prm) = cp.checked_mul(16) else {
        return None;
    };
    let Some(w) = cp.checked_mul(p.kernel_w) else {
        return None;
    };
    let Some(w) = w.checked_mul(8) else {
        return None;
    };
    let Some(q) = span(p, out_w).checked_mul(4 * cp) else {
        return None;
    };
    match prm.checked_add(w) {
        Some(v) => v.checked_add(q),
        None => None,
    }
}

/// Channel of lane `j` (0..16) of register `k` (0..4) of a block, from its first.
const fn lane_channel(k: usize, j: usize) -> usize {
    (j / 4) * 16 + 4 * k + j % 4
}

/// The depthwise convolution of a validated call (`groups == in == out channels`,
/// [`eligible`]) on this CPU's VNNI (checked by the caller).
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI; `scratch` must hold [`scratch_bytes`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn conv(a: &Args<'_>, output: &mut [i8], scratch: &mut [u8]) {
    let (p, d) = (a.p, a.d);
    let c = p.in_channels;
    let cp = c.div_ceil(BLOCK) * BLOCK;
    let (kh, kw) = (p.kernel_h, p.kernel_w);
    let taps = kh * kw;
    // the next output row's input rows are rows `j..j + kh` of these four when the
    // stride is a whole number `j` of dilated rows and they fit
    let pair = p.stride_h % p.dilation_h == 0 && p.stride_h / p.dilation_h + kh <= 4;
    let shift = p.stride_h / p.dilation_h;
    let (params, rest) = scratch.split_at_mut(16 * cp);
    let (packed, rest) = rest.split_at_mut(8 * cp * kw);
    let wq = span(p, d.out_w);
    let cols = &mut rest[..cp / BLOCK * wq * 4 * BLOCK];

    // parameters and packed columns, in the lanes' channel order
    let corr = a.q.input_zero_point + 128;
    params.fill(0);
    packed.fill(0);
    for b in 0..cp / BLOCK {
        for k in 0..4 {
            for j in 0..16 {
                let ch = b * BLOCK + lane_channel(k, j);
                if ch >= c {
                    continue;
                }
                let w = &a.weight[ch * taps..][..taps];
                let r = a.q.requant_of(ch);
                let sum: i32 = w.iter().map(|&v| i32::from(v)).sum();
                let offset = a
                    .bias
                    .map_or(0, |b| b[ch])
                    .wrapping_sub(corr.wrapping_mul(sum));
                let fields = [r.multiplier, r.shift.max(0), (-r.shift).max(0), offset];
                let lane = b * BLOCK + 16 * k + j;
                for (f, v) in fields.into_iter().enumerate() {
                    params[4 * (f * cp + lane)..][..4].copy_from_slice(&v.to_le_bytes());
                }
                // [block][as is, a row down][kx][k]: 64 bytes, 4 a lane (rows 0..4)
                for (v, down) in [0, shift].into_iter().enumerate() {
                    for kx in 0..kw {
                        let at = (((b * 2 + v) * kw + kx) * 4 + k) * 64 + 4 * j;
                        for r in 0..4 {
                            if r >= down && r - down < kh {
                                packed[at + r] = w[(r - down) * kw + kx] as u8;
                            }
                        }
                    }
                }
            }
        }
    }
    let Params {
        mult,
        left,
        right,
        offset,
    } = Params::split(params);
    let ld = |s: &[u8], at: usize| {
        let v = &s[at..][..64];
        // SAFETY: 64 bytes; F is enabled on this function.
        unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
    };
    let sign = _mm512_set1_epi8(-128);
    let pad = _mm512_set1_epi8((a.q.input_zero_point + 128) as i8);
    let row_len = p.in_w * c;
    for n in 0..p.batch {
        let x = &a.input[n * d.image_len..][..d.image_len];
        let y = &mut output[n * d.out_image_len..][..d.out_image_len];
        let mut oy = 0;
        while oy < d.out_h {
            let two = pair && oy + 1 < d.out_h;
            // the four input rows (None: padding)
            let rows: [Option<&[i8]>; 4] = core::array::from_fn(|r| {
                let iy = (oy * p.stride_h + r * p.dilation_h).wrapping_sub(p.pad_top);
                (iy < p.in_h).then(|| &x[iy * row_len..][..row_len])
            });
            // interleave every block's columns, reading the input rows in order
            for u in 0..wq {
                let ix = u.wrapping_sub(p.pad_left);
                for b in 0..cp / BLOCK {
                    let c0 = b * BLOCK;
                    let len = BLOCK.min(c - c0);
                    let mask: __mmask64 = if len == BLOCK { !0 } else { (1u64 << len) - 1 };
                    let r: [__m512i; 4] = core::array::from_fn(|i| match rows[i] {
                        Some(row) if ix < p.in_w => {
                            let s = &row[ix * c + c0..][..len];
                            // SAFETY: the mask reads the block's len bytes of `s`.
                            let v = unsafe { _mm512_maskz_loadu_epi8(mask, s.as_ptr().cast()) };
                            _mm512_xor_si512(v, sign)
                        }
                        _ => pad,
                    });
                    let lo01 = _mm512_unpacklo_epi8(r[0], r[1]);
                    let hi01 = _mm512_unpackhi_epi8(r[0], r[1]);
                    let lo23 = _mm512_unpacklo_epi8(r[2], r[3]);
                    let hi23 = _mm512_unpackhi_epi8(r[2], r[3]);
                    let v = [
                        _mm512_unpacklo_epi16(lo01, lo23),
                        _mm512_unpackhi_epi16(lo01, lo23),
                        _mm512_unpacklo_epi16(hi01, hi23),
                        _mm512_unpackhi_epi16(hi01, hi23),
                    ];
                    let q = &mut cols[(b * wq + u) * 4 * BLOCK..][..4 * BLOCK];
                    for (dst, v) in q.chunks_exact_mut(64).zip(v) {
                        // SAFETY: 64 bytes.
                        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), v) };
                    }
                }
            }
            for b in 0..cp / BLOCK {
                let c0 = b * BLOCK;
                let len = BLOCK.min(c - c0);
                let mask: __mmask64 = if len == BLOCK { !0 } else { (1u64 << len) - 1 };
                let cols = &cols[b * wq * 4 * BLOCK..][..wq * 4 * BLOCK];
                let w = &packed[b * 2 * kw * 256..][..2 * kw * 256];
                let prm: [[__m512i; 4]; 4] = core::array::from_fn(|k| {
                    let at = 4 * (c0 + 16 * k);
                    [ld(mult, at), ld(left, at), ld(right, at), ld(offset, at)]
                });
                let ends = Ends {
                    zp: _mm512_set1_epi16(a.q.output_zero_point as i16),
                    lo: _mm512_set1_epi8(a.q.min),
                    hi: _mm512_set1_epi8(a.q.max),
                };
                let at = oy * d.out_w * c + c0;
                let rows_out = if two { 2 } else { 1 };
                let y_rows = &mut y[at..][..(rows_out - 1) * d.out_w * c + (d.out_w - 1) * c + len];
                let geo = Row {
                    kw,
                    stride: p.stride_w,
                    dilation: p.dilation_w,
                    out_w: d.out_w,
                    c,
                    mask,
                };
                // SAFETY: VNNI, F and BW are enabled on this function; `cols` holds
                // `span` interleaved columns (the last tap of the last pixel is column
                // span - 1), `w` both packings of kw columns; `y_rows` covers every
                // pixel's block in the row (or two), the last one's len bytes.
                unsafe {
                    if two {
                        row::<2>(&geo, cols, w, &prm, &ends, y_rows);
                    } else {
                        row::<1>(&geo, cols, w, &prm, &ends, y_rows);
                    }
                }
            }
            oy += 1 + usize::from(two);
        }
    }
}

/// One output row's geometry and a block's mask.
struct Row {
    kw: usize,
    stride: usize,
    dilation: usize,
    out_w: usize,
    c: usize,
    mask: __mmask64,
}

/// The output's zero point (16-bit lanes) and the clamp's ends (bytes).
struct Ends {
    zp: __m512i,
    lo: __m512i,
    hi: __m512i,
}

/// A block of channels of every pixel of `R` output rows (one, or two: the second
/// against the kernel a row down) from the interleaved columns `cols`: `kw` steps of
/// `vpdpbusd` a register, then requantised and stored.
///
/// # Safety
/// VNNI, F and BW must be available; `cols` must hold the columns the row's taps read
/// (256 bytes each), `w` `R * kw` packed columns of 256 bytes, `y` from the block of
/// the first pixel of the first row to the last's `mask`ed bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn row<const R: usize>(
    g: &Row,
    cols: &[u8],
    w: &[u8],
    prm: &[[__m512i; 4]; 4],
    e: &Ends,
    y: &mut [i8],
) {
    let (cp, wp, yp) = (cols.as_ptr(), w.as_ptr(), y.as_mut_ptr());
    for ox in 0..g.out_w {
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        for kx in 0..g.kw {
            let u = ox * g.stride + kx * g.dilation;
            for k in 0..4 {
                // SAFETY: column u is one the row's taps read; packed column kx of
                // either kernel is within `w`.
                unsafe {
                    let v = _mm512_loadu_si512(cp.add((u * 4 + k) * 64).cast());
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let wv = _mm512_loadu_si512(wp.add(((i * g.kw + kx) * 4 + k) * 64).cast());
                        acc[k] = _mm512_dpbusd_epi32(acc[k], v, wv);
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            // SAFETY: F is enabled on this function.
            let v: [__m512i; 4] =
                core::array::from_fn(|k| unsafe { rounded_lanes(acc[k], prm[k]) });
            // back in channel order (the packs work within 128-bit lanes, as the
            // interleaving did), saturating to 16 bits, the zero point added saturating,
            // to bytes saturating: TFLite's saturating add and clamp, as any value past
            // 16 bits is past the clamp's ends
            let lo = _mm512_adds_epi16(_mm512_packs_epi32(v[0], v[1]), e.zp);
            let hi = _mm512_adds_epi16(_mm512_packs_epi32(v[2], v[3]), e.zp);
            let bytes = _mm512_packs_epi16(lo, hi);
            let bytes = _mm512_min_epi8(_mm512_max_epi8(bytes, e.lo), e.hi);
            // SAFETY: pixel ox of row i is within `y`, its block's mask bytes.
            unsafe {
                let at = (i * g.out_w + ox) * g.c;
                _mm512_mask_storeu_epi8(yp.add(at).cast(), g.mask, bytes);
            }
        }
    }
}
