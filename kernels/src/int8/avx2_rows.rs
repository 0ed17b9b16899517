//! int8 convolution of first layers (few values per kernel row) with AVX2, as
//! `x86_rows.rs` runs them on VNNI: the lanes are 8 output pixels of a row. Each input row
//! is expanded once into `G = ceil(kw * in / 2)` arrays of 16-bit pairs (lane `ox` of
//! array `g` holds taps `2g, 2g + 1` of output pixel `ox`'s kernel row, the input's zero
//! point subtracted, the padding 0), and one `vpmaddwd` adds 2 taps of 8 pixels against
//! one channel's 2 weights broadcast. A segment is 16 pixels (two registers) by up to 6
//! channels (12 accumulators).

#[cfg(not(miri))]
use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_set1_epi32,
    _mm256_setzero_si256,
};

#[cfg(not(miri))]
use super::avx2::{low_bytes, requant8};
#[cfg(not(miri))]
use super::conv::Args;
#[cfg(not(miri))]
use super::x86::{Params, prepare};
#[cfg(not(miri))]
use super::x86_rows::MAX_ROW;
#[cfg(not(miri))]
use super::x86_rows::Ring;
use super::x86_rows::{cheaper, fits, scratch};
use crate::params::Conv2dParams;

/// Output channels per pass over a segment.
const CB: usize = 6;
/// Output pixels per segment (two registers of 8).
const SEG: usize = 16;

/// Whether [`conv`] takes the layer: as `x86_rows::eligible`, with `vpmaddwd`'s pairs
/// and 8 lanes against the AVX2 kernel's 2 taps by 8 channels a step.
pub(crate) const fn eligible(p: &Conv2dParams, out_w: usize) -> bool {
    let (_, owp) = geometry(p, out_w);
    fits(p, out_w) && cheaper(p, out_w, 2, owp, 8)
}

/// 16-bit pairs per kernel row, and the row's length in pixels (whole segments).
const fn geometry(p: &Conv2dParams, out_w: usize) -> (usize, usize) {
    (
        (p.kernel_w * p.in_channels).div_ceil(2),
        out_w.div_ceil(SEG) * SEG,
    )
}

/// Bytes of scratch [`conv`] needs for an [`eligible`] layer (`None` on overflow): as
/// the VNNI kernel's, the padded row 16-bit.
pub(crate) const fn scratch_bytes(p: &Conv2dParams, out_w: usize) -> Option<usize> {
    let (g, owp) = geometry(p, out_w);
    scratch(p, g, owp, p.out_channels.div_ceil(CB) * CB, 2)
}

/// The convolution of a validated, [`eligible`] call with AVX2.
///
/// # Safety
/// The CPU must support AVX2; `scratch` must hold [`scratch_bytes`].
#[cfg(not(miri))]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn conv(a: &Args<'_>, output: &mut [i8], scratch: &mut [u8]) {
    let (p, d) = (a.p, a.d);
    let (g_n, owp) = geometry(p, d.out_w);
    let (kh, kw, cin, cout) = (p.kernel_h, p.kernel_w, p.in_channels, p.out_channels);
    let row_taps = kw * cin;
    let ocp = cout.div_ceil(CB) * CB;
    let slot_len = g_n * owp * 4;
    let (ring, rest) = scratch.split_at_mut(kh * slot_len);
    let (wq, rest) = rest.split_at_mut(ocp * kh * g_n * 4);
    let (params, padded) = rest.split_at_mut(16 * ocp);
    // weights: channel c, kernel row ky, pair g -> two i16 (taps past the row 0)
    wq.fill(0);
    let k = d.col_rows;
    for c in 0..cout {
        for ky in 0..kh {
            for t in 0..row_taps {
                let v = i16::from(a.weight[c * k + ky * row_taps + t]).to_le_bytes();
                let at = ((c * kh + ky) * g_n) * 4 + 2 * t;
                wq[at..at + 2].copy_from_slice(&v);
            }
        }
    }
    // the offset is the bias alone: padding taps are 0 after the zero point's removal
    prepare(a, 0, cout, 0, |_| 0, params);
    let lane = |arr: &[u8], c: usize| {
        i32::from_le_bytes([arr[4 * c], arr[4 * c + 1], arr[4 * c + 2], arr[4 * c + 3]])
    };
    let Params {
        mult,
        left,
        right,
        offset,
    } = Params::split(params);
    let zp = a.q.input_zero_point as i16;
    let (zp_out, lo, hi) = (
        _mm256_set1_epi32(a.q.output_zero_point),
        _mm256_set1_epi32(i32::from(a.q.min)),
        _mm256_set1_epi32(i32::from(a.q.max)),
    );
    for n in 0..p.batch {
        let x = &a.input[n * d.image_len..][..d.image_len];
        let y = &mut output[n * d.out_image_len..][..d.out_image_len];
        let mut ring_rows = Ring::new();
        for oy in 0..d.out_h {
            let row_of =
                |ky: usize| (oy * p.stride_h + ky * p.dilation_h) as isize - p.pad_top as isize;
            let slot_of = ring_rows.update(kh, row_of, |s, iy| {
                let slot = &mut ring[s * slot_len..][..slot_len];
                expand(a, x, iy, zp, g_n, owp, padded, slot);
            });
            let y_row = &mut y[oy * d.out_w * cout..][..d.out_w * cout];
            let mut ox0 = 0;
            while ox0 < d.out_w {
                let np = SEG.min(d.out_w - ox0);
                let mut cb = 0;
                while cb < cout {
                    let nc = CB.min(cout - cb);
                    let mut acc = [[_mm256_setzero_si256(); 2]; CB];
                    for (ky, &s) in slot_of.iter().enumerate().take(kh) {
                        let e = &ring[s * slot_len..][..slot_len];
                        for g in 0..g_n {
                            let seg = &e[(g * owp + ox0) * 4..][..4 * SEG];
                            // SAFETY: AVX2 is enabled on this function; 32 bytes each,
                            // within `seg`.
                            let ev: [__m256i; 2] = unsafe {
                                [
                                    _mm256_loadu_si256(seg.as_ptr().cast()),
                                    _mm256_loadu_si256(seg[32..].as_ptr().cast()),
                                ]
                            };
                            for (c, acc_c) in acc.iter_mut().enumerate().take(nc) {
                                let w = &wq[(((cb + c) * kh + ky) * g_n + g) * 4..][..4];
                                let wv =
                                    _mm256_set1_epi32(i32::from_le_bytes([w[0], w[1], w[2], w[3]]));
                                for (acc_h, &v) in acc_c.iter_mut().zip(&ev) {
                                    *acc_h = _mm256_add_epi32(*acc_h, _mm256_madd_epi16(v, wv));
                                }
                            }
                        }
                    }
                    // requantise channel by channel, then write the NHWC bytes
                    let mut bytes = [[0i8; SEG]; CB];
                    for (c, (acc_c, out)) in acc.iter().zip(bytes.iter_mut()).enumerate().take(nc) {
                        let oc = cb + c;
                        let prm = [
                            _mm256_set1_epi32(lane(mult, oc)),
                            _mm256_set1_epi32(lane(left, oc)),
                            _mm256_set1_epi32(lane(right, oc)),
                            _mm256_set1_epi32(lane(offset, oc)),
                        ];
                        for (h, &reg) in acc_c.iter().enumerate() {
                            // SAFETY: AVX2 is enabled on this function.
                            let b = unsafe { low_bytes(requant8(reg, prm, zp_out, lo, hi)) };
                            out[8 * h..8 * h + 8].copy_from_slice(&b);
                        }
                    }
                    for px in 0..np {
                        let at = (ox0 + px) * cout + cb;
                        for (o, b) in y_row[at..at + nc].iter_mut().zip(&bytes) {
                            *o = b[px];
                        }
                    }
                    cb += CB;
                }
                ox0 += SEG;
            }
        }
    }
}

/// Input row `iy` (maybe in the padding) expanded into `slot`: `g_n` arrays of `owp`
/// lanes of two 16-bit values, lane `ox` of array `g` holding taps `2g, 2g + 1` of output
/// pixel `ox`'s kernel row minus the zero point (the padding 0; taps past the kernel row
/// hold whatever follows it, against weights of 0; lanes past the output row are left
/// as they are and never stored). `padded` takes the padded input row first.
#[cfg(not(miri))]
#[inline(always)]
#[allow(clippy::too_many_arguments)] // (the geometry the caller worked out once)
fn expand(
    a: &Args<'_>,
    x: &[i8],
    iy: isize,
    zp: i16,
    g_n: usize,
    owp: usize,
    padded: &mut [u8],
    slot: &mut [u8],
) {
    let (p, d) = (a.p, a.d);
    let cin = p.in_channels;
    let width = (p.pad_left + p.in_w + p.pad_right) * cin;
    let r = &mut padded[..2 * (width + 4 * MAX_ROW)];
    r.fill(0);
    if iy >= 0 && (iy as usize) < p.in_h {
        let src = &x[iy as usize * p.in_w * cin..][..p.in_w * cin];
        for (o, &v) in r[2 * p.pad_left * cin..].chunks_exact_mut(2).zip(src) {
            o.copy_from_slice(&(i16::from(v) - zp).to_le_bytes());
        }
    }
    let step = 2 * p.stride_w * cin;
    for g in 0..g_n {
        let dst = &mut slot[g * owp * 4..][..d.out_w * 4];
        let mut at = 4 * g;
        for o in dst.chunks_exact_mut(4) {
            o.copy_from_slice(&r[at..at + 4]);
            at += step;
        }
    }
}
