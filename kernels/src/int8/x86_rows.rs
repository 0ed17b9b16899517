//! int8 convolution of layers with few values per kernel row (first layers: one or three
//! input channels) on AVX-512 VNNI: the lanes are 16 output pixels of a row, not 16
//! output channels.
//!
//! The general kernel gathers each output pixel's receptive field, which for LeNet's
//! first layer (one channel, 5 x 5) is five runs of five bytes a pixel, and requantises 16
//! channel lanes of which 6 are used. Here each input row is expanded once into `G`
//! arrays of 4-byte lanes (`G = ceil(kw * in / 4)`): lane `ox` of array `g` holds the
//! values `4g..4g + 4` of the kernel row's taps for output pixel `ox` (as unsigned bytes
//! `x + 128`, the padding `zp + 128`, as the general kernel). One `vpdpbusd` then adds 4
//! taps of 16 pixels against one channel's 4 weights broadcast; the sums of a channel
//! requantise with that channel's parameters broadcast, and the bytes go to the NHWC
//! output a pixel at a time. The expanded rows live in a ring of `kh` slots, so each input
//! row is expanded once per image when the stride is 1.

#[cfg(not(miri))]
use core::arch::x86_64::{
    __m512i, __mmask64, _mm_storeu_si128, _mm512_adds_epi16, _mm512_cvtepi32_epi8,
    _mm512_dpbusd_epi32, _mm512_loadu_si512, _mm512_mask_storeu_epi8, _mm512_max_epi8,
    _mm512_min_epi8, _mm512_packs_epi16, _mm512_packs_epi32, _mm512_permutex2var_epi8,
    _mm512_permutexvar_epi8, _mm512_set1_epi8, _mm512_set1_epi16, _mm512_set1_epi32,
    _mm512_setzero_si512, _mm512_storeu_si512,
};

#[cfg(not(miri))]
use super::conv::Args;
#[cfg(not(miri))]
use super::x86::{Params, prepare, requant_lanes, rounded_lanes, row_sums};
use crate::params::Conv2dParams;

/// Output channels per pass over a segment (16 accumulators).
const CB: usize = 8;
/// Most kernel rows (the ring's slots are tracked in fixed arrays).
pub(super) const MAX_KH: usize = 16;
/// Most values per kernel row: beyond, the general kernel's runs are long enough.
pub(super) const MAX_ROW: usize = 32;

/// Whether [`conv`] takes the layer: one group, dense columns, at most 32 values per
/// kernel row and 16 kernel rows, and fewer `vpdpbusd` per output than the general
/// kernel's by an estimate ([`cheaper`]).
pub(crate) const fn eligible(p: &Conv2dParams, out_w: usize) -> bool {
    let (_, owp) = geometry(p, out_w);
    fits(p, out_w) && cheaper(p, out_w, 4, owp, 16)
}

/// Whether a layer has the shape a pixels-in-lanes kernel takes: one group, dense
/// columns, at most [`MAX_ROW`] values per kernel row and [`MAX_KH`] kernel rows.
pub(super) const fn fits(p: &Conv2dParams, out_w: usize) -> bool {
    p.groups == 1
        && p.dilation_w == 1
        && p.kernel_h <= MAX_KH
        && p.kernel_w * p.in_channels <= MAX_ROW
        && out_w > 0
        && p.out_channels > 0
}

/// Whether pixels in the lanes (`t` taps a lane, rows padded to `owp` pixels) cost fewer
/// dot-product steps per output than the general kernel (`t` taps a step, `lanes`
/// channels a register, two registers past `lanes` channels), with a margin of 1.5 for
/// the general kernel's gathering of short runs: its lanes idle past the last output
/// channel, these past the output row's end.
pub(super) const fn cheaper(
    p: &Conv2dParams,
    out_w: usize,
    t: usize,
    owp: usize,
    lanes: usize,
) -> bool {
    let g = (p.kernel_w * p.in_channels).div_ceil(t);
    let steps = (p.kernel_h * p.kernel_w * p.in_channels).div_ceil(t);
    let general_lanes = if p.out_channels <= lanes {
        lanes
    } else {
        p.out_channels.div_ceil(2 * lanes) * 2 * lanes
    };
    let rows = (2 * p.kernel_h * g)
        .saturating_mul(owp)
        .saturating_mul(p.out_channels);
    let general = (3 * steps)
        .saturating_mul(general_lanes)
        .saturating_mul(out_w);
    rows <= general
}

/// 4-byte lanes per expanded row, and the row's length in pixels: whole segments of 16
/// (rows of up to 16 pixels) or 32.
const fn geometry(p: &Conv2dParams, out_w: usize) -> (usize, usize) {
    let seg = if out_w <= 16 { 16 } else { 32 };
    (
        (p.kernel_w * p.in_channels).div_ceil(4),
        out_w.div_ceil(seg) * seg,
    )
}

/// Bytes of scratch [`conv`] needs for an [`eligible`] layer (`None` on overflow).
pub(crate) const fn scratch_bytes(p: &Conv2dParams, out_w: usize) -> Option<usize> {
    let (g, owp) = geometry(p, out_w);
    scratch(p, g, owp, p.out_channels.div_ceil(CB) * CB, 1)
}

/// Bytes of scratch of a pixels-in-lanes kernel: the ring of `kh` expanded rows (`g`
/// arrays of `owp` 4-byte lanes), the weights (`ocp` channels by `kh` by `g` 4-byte
/// groups), one padded input row of `value_bytes` a value, four int32 parameters per
/// output channel; `None` on overflow.
pub(super) const fn scratch(
    p: &Conv2dParams,
    g: usize,
    owp: usize,
    ocp: usize,
    value_bytes: usize,
) -> Option<usize> {
    let ring = match p.kernel_h.checked_mul(g) {
        Some(v) => match v.checked_mul(owp) {
            Some(v) => v.checked_mul(4),
            None => None,
        },
        None => None,
    };
    let weights = match ocp.checked_mul(p.kernel_h * g) {
        Some(v) => v.checked_mul(4),
        None => None,
    };
    let row = match (p.in_w + p.pad_left + p.pad_right).checked_mul(p.in_channels) {
        Some(v) => match v.checked_add(4 * MAX_ROW) {
            Some(v) => v.checked_mul(value_bytes),
            None => None,
        },
        None => None,
    };
    match (ring, weights, row) {
        (Some(r), Some(w), Some(x)) => match r.checked_add(w) {
            Some(v) => match v.checked_add(x) {
                Some(v) => v.checked_add(16 * ocp),
                None => None,
            },
            None => None,
        },
        _ => None,
    }
}

/// The convolution of a validated, [`eligible`] call on this CPU's VNNI.
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI; `scratch` must hold
/// [`scratch_bytes`].
#[cfg(not(miri))]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn conv(a: &Args<'_>, output: &mut [i8], scratch: &mut [u8]) {
    if crate::arch::avx512_vbmi() {
        // SAFETY: the CPU has VBMI (checked above) and what this function's caller
        // checked.
        unsafe { conv_vbmi(a, output, scratch) }
    } else {
        // SAFETY: as this function's.
        unsafe { body::<false>(a, output, scratch) }
    }
}

/// [`conv`] where the CPU has VBMI besides: input rows expanded by `vpermb`, a block of
/// up to 8 channels written to the NHWC row by `vpermt2b`.
///
/// # Safety
/// As [`conv`]'s, and the CPU must support AVX-512 VBMI.
#[cfg(not(miri))]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
unsafe fn conv_vbmi(a: &Args<'_>, output: &mut [i8], scratch: &mut [u8]) {
    // SAFETY: as this function's.
    unsafe { body::<true>(a, output, scratch) }
}

/// The convolution, inlined into [`conv`] and [`conv_vbmi`] (`VBMI`: whether the CPU
/// has it).
///
/// # Safety
/// As [`conv`]'s; with `VBMI`, as [`conv_vbmi`]'s.
#[cfg(not(miri))]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn body<const VBMI: bool>(a: &Args<'_>, output: &mut [i8], scratch: &mut [u8]) {
    let (p, d) = (a.p, a.d);
    let (g_n, owp) = geometry(p, d.out_w);
    let (kh, kw, cin, cout) = (p.kernel_h, p.kernel_w, p.in_channels, p.out_channels);
    let row_taps = kw * cin;
    let ocp = cout.div_ceil(CB) * CB;
    let slot_len = g_n * owp * 4;
    let (ring, rest) = scratch.split_at_mut(kh * slot_len);
    let (wq, rest) = rest.split_at_mut(ocp * kh * g_n * 4);
    let (params, padded) = rest.split_at_mut(16 * ocp);
    // weights: block of CB channels, kernel row ky, group g, channel -> 4 bytes (taps
    // past the row 0), so a step's CB channels are 4 bytes apart
    wq.fill(0);
    let k = d.col_rows;
    for c in 0..cout {
        let (blk, cc) = (c / CB, c % CB);
        for ky in 0..kh {
            for t in 0..row_taps {
                let at = (((blk * kh + ky) * g_n + t / 4) * CB + cc) * 4 + t % 4;
                wq[at] = a.weight[c * k + ky * row_taps + t] as u8;
            }
        }
    }
    let corr = a.q.input_zero_point + 128;
    prepare(a, 0, cout, corr, row_sums(a.weight, k), params);
    let Params {
        mult,
        left,
        right,
        offset,
    } = Params::split(params);
    let pad = (a.q.input_zero_point + 128) as u8;
    let (zp_out, lo, hi) = (
        _mm512_set1_epi32(a.q.output_zero_point),
        _mm512_set1_epi32(i32::from(a.q.min)),
        _mm512_set1_epi32(i32::from(a.q.max)),
    );
    let lane = |arr: &[u8], c: usize| {
        i32::from_le_bytes([arr[4 * c], arr[4 * c + 1], arr[4 * c + 2], arr[4 * c + 3]])
    };
    let prm = Prm {
        mult,
        left,
        right,
        offset,
        clamp: [zp_out, lo, hi],
        zp16: a.q.output_zero_point as i16,
        lo8: a.q.min,
        hi8: a.q.max,
        scatter: scatter_index(cout),
        // the first block's parameters broadcast, for store_block
        lanes: core::array::from_fn(|c| {
            if c < cout {
                [mult, left, right, offset].map(|arr| _mm512_set1_epi32(lane(arr, c)))
            } else {
                [_mm512_setzero_si512(); 4]
            }
        }),
    };
    for n in 0..p.batch {
        let x = &a.input[n * d.image_len..][..d.image_len];
        let y = &mut output[n * d.out_image_len..][..d.out_image_len];
        let mut ring_rows = Ring::new();
        for oy in 0..d.out_h {
            let row_of =
                |ky: usize| (oy * p.stride_h + ky * p.dilation_h) as isize - p.pad_top as isize;
            let slot_of = ring_rows.update(kh, row_of, |s, iy| {
                let slot = &mut ring[s * slot_len..][..slot_len];
                if VBMI && p.stride_w * p.in_channels <= 4 {
                    // SAFETY: the CPU has VBMI (the caller's contract) and F and BW.
                    unsafe { expand_vbmi(a, x, iy, pad, g_n, owp, padded, slot) };
                } else {
                    expand(a, x, iy, pad, g_n, owp, padded, slot);
                }
            });
            let rows: [&[u8]; MAX_KH] = core::array::from_fn(|ky| {
                if ky < kh {
                    &ring[slot_of[ky] * slot_len..][..slot_len]
                } else {
                    &[][..]
                }
            });
            let row = Row {
                e: &rows[..kh],
                wq,
                g_n,
                owp,
                cout,
                kh,
            };
            let y_row = &mut y[oy * d.out_w * cout..][..d.out_w * cout];
            // SAFETY: F, BW and VNNI are enabled on this function; the expanded rows hold
            // `g_n` arrays of `owp` lanes, a multiple of the segment.
            // (with VBMI, the CPU has it: the caller's contract)
            unsafe {
                if owp % 32 == 0 {
                    segments::<2, VBMI>(&row, &prm, d.out_w, y_row);
                } else {
                    segments::<1, VBMI>(&row, &prm, d.out_w, y_row);
                }
            }
        }
    }
}

/// Which input row each of `kh` slots of expanded rows holds, for kernels that expand
/// each input row once per image (this one and AVX2's).
#[cfg(not(miri))]
pub(super) struct Ring {
    tag: [isize; MAX_KH],
    slot_of: [usize; MAX_KH],
}

#[cfg(not(miri))]
impl Ring {
    /// No rows held yet.
    pub(super) fn new() -> Self {
        Self {
            tag: [isize::MIN; MAX_KH],
            slot_of: [0; MAX_KH],
        }
    }

    /// The slots of an output row's kernel rows `row_of(0..kh)` (distinct input rows,
    /// `kh <= MAX_KH`): the slots that hold one of them keep it, the others are filled by
    /// `fill(slot, input row)`. Returns each kernel row's slot.
    pub(super) fn update(
        &mut self,
        kh: usize,
        row_of: impl Fn(usize) -> isize,
        mut fill: impl FnMut(usize, isize),
    ) -> [usize; MAX_KH] {
        // input row iy in slot iy mod kh where the rows fall in distinct slots (every
        // stride with undilated rows): one comparison a row
        let kh = kh.clamp(1, MAX_KH);
        let mut used = 0u32;
        for ky in 0..kh {
            used |= 1 << row_of(ky).rem_euclid(kh as isize);
        }
        if used.count_ones() as usize == kh {
            for ky in 0..kh {
                let iy = row_of(ky);
                let s = iy.rem_euclid(kh as isize) as usize;
                if self.tag[s] != iy {
                    self.tag[s] = iy;
                    fill(s, iy);
                }
                self.slot_of[ky] = s;
            }
            return self.slot_of;
        }
        let mut taken = [false; MAX_KH];
        let mut missing = [false; MAX_KH];
        for (ky, miss) in missing.iter_mut().enumerate().take(kh) {
            let iy = row_of(ky);
            match (0..kh).find(|&s| self.tag[s] == iy && !taken[s]) {
                Some(s) => {
                    taken[s] = true;
                    self.slot_of[ky] = s;
                }
                None => *miss = true,
            }
        }
        for (ky, &miss) in missing.iter().enumerate().take(kh) {
            if !miss {
                continue;
            }
            let s = (0..kh).find(|&s| !taken[s]).unwrap_or(0);
            taken[s] = true;
            self.slot_of[ky] = s;
            let iy = row_of(ky);
            self.tag[s] = iy;
            fill(s, iy);
        }
        self.slot_of
    }
}

/// One output row's inputs: the expanded input rows of its kernel rows, the weights.
#[cfg(not(miri))]
struct Row<'a> {
    e: &'a [&'a [u8]],
    wq: &'a [u8],
    g_n: usize,
    owp: usize,
    cout: usize,
    kh: usize,
}

/// Per output channel, the requantisation's arrays (int32 lanes as bytes); the zero point
/// and the clamp's ends.
#[cfg(not(miri))]
struct Prm<'a> {
    mult: &'a [u8],
    left: &'a [u8],
    right: &'a [u8],
    offset: &'a [u8],
    clamp: [__m512i; 3],
    /// The zero point, the clamp's ends, as scalars.
    zp16: i16,
    lo8: i8,
    hi8: i8,
    /// [`store_block`]'s `vpermt2b` indices ([`scatter_index`]).
    scatter: Aligned<[[u8; 64]; 2]>,
    /// The first [`CB`] channels' parameters, each broadcast (zero past the last).
    lanes: [[__m512i; 4]; CB],
}

/// Where output byte `j` of a segment's 16 NHWC pixels of `cout <= 8` channels (pixel
/// `j / cout`, channel `j % cout`) is in [`store_block`]'s packed pair of registers:
/// `64 (c / 4) + 16 (px / 4) + 4 (c % 4) + px % 4`.
#[cfg(not(miri))]
pub(super) fn scatter_index(cout: usize) -> Aligned<[[u8; 64]; 2]> {
    let pos = |j: usize| {
        let (px, c) = (j / cout.max(1), j % cout.max(1));
        if px >= 16 {
            0
        } else {
            (64 * (c / 4) + 16 * (px / 4) + 4 * (c % 4) + px % 4) as u8
        }
    };
    Aligned(core::array::from_fn(|h| {
        core::array::from_fn(|j| pos(64 * h + j))
    }))
}

/// A value on a 64-byte boundary: vector indices kept in a struct on the stack, read
/// whole from one cache line. (Read across two, as three stack positions in four had
/// them, LeNet's first layer took 0.074 ms on a Zen 5, not 0.062.)
#[cfg(not(miri))]
#[repr(align(64))]
pub(super) struct Aligned<T>(pub T);

/// Every segment of `16 * S` pixels of one output row, [`CB`] channels at a time: the
/// sums, requantised per channel, written to the row's NHWC bytes `y`.
///
/// # Safety
/// AVX-512 F, BW and VNNI must be available, and VBMI with `VBMI`; each expanded row
/// holds `g_n` arrays of `owp` lanes, `owp` a multiple of `16 * S`.
#[cfg(not(miri))]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn segments<const S: usize, const VBMI: bool>(
    r: &Row<'_>,
    prm: &Prm<'_>,
    out_w: usize,
    y: &mut [i8],
) {
    let lane = |arr: &[u8], c: usize| {
        i32::from_le_bytes([arr[4 * c], arr[4 * c + 1], arr[4 * c + 2], arr[4 * c + 3]])
    };
    let [zp_out, lo, hi] = prm.clamp;
    let (g_n, owp, cout, kh) = (r.g_n, r.owp, r.cout, r.kh);
    let mut ox0 = 0;
    while ox0 < out_w {
        let np = (16 * S).min(out_w - ox0);
        let mut cb = 0;
        while cb < cout {
            let nc = CB.min(cout - cb);
            let mut acc = [[_mm512_setzero_si512(); S]; CB];
            for (ky, e) in r.e.iter().enumerate() {
                for g in 0..g_n {
                    let seg = &e[(g * owp + ox0) * 4..][..64 * S];
                    let ev: [__m512i; S] = core::array::from_fn(|h| {
                        // SAFETY: 64 bytes within `seg`.
                        unsafe { _mm512_loadu_si512(seg[64 * h..].as_ptr().cast()) }
                    });
                    // (every channel of the block, the ones past the last against zero
                    // weights: a fixed count keeps the sums in registers)
                    let w = &r.wq[(((cb / CB) * kh + ky) * g_n + g) * CB * 4..][..CB * 4];
                    for (c, acc_c) in acc.iter_mut().enumerate() {
                        // SAFETY: 4 bytes of the CB * 4 of `w`.
                        let wv = unsafe { w.as_ptr().add(4 * c).cast::<i32>().read_unaligned() };
                        let wv = _mm512_set1_epi32(wv);
                        for (a, &v) in acc_c.iter_mut().zip(&ev) {
                            *a = _mm512_dpbusd_epi32(*a, v, wv);
                        }
                    }
                }
            }
            if VBMI && cout <= CB {
                // SAFETY: F, BW and VBMI are available (the caller's contract); `y`
                // holds the segment's np pixels of cout bytes.
                unsafe { store_block(&acc, prm, cout, np, &mut y[ox0 * cout..]) };
                cb += CB;
                continue;
            }
            // requantise channel by channel, then write the NHWC bytes
            let mut bytes = [[0i8; 32]; CB];
            for (c, (acc_c, out)) in acc.iter().zip(bytes.iter_mut()).enumerate().take(nc) {
                let oc = cb + c;
                let lanes = [
                    _mm512_set1_epi32(lane(prm.mult, oc)),
                    _mm512_set1_epi32(lane(prm.left, oc)),
                    _mm512_set1_epi32(lane(prm.right, oc)),
                    _mm512_set1_epi32(lane(prm.offset, oc)),
                ];
                for (h, &reg) in acc_c.iter().enumerate() {
                    // SAFETY: F is enabled on this function; 16 bytes stored into the 16
                    // of this part of `out`.
                    unsafe {
                        let v = requant_lanes(reg, lanes, zp_out, lo, hi);
                        _mm_storeu_si128(
                            out[16 * h..].as_mut_ptr().cast(),
                            _mm512_cvtepi32_epi8(v),
                        );
                    }
                }
            }
            for px in 0..np {
                let at = (ox0 + px) * cout + cb;
                for (o, b) in y[at..at + nc].iter_mut().zip(&bytes) {
                    *o = b[px];
                }
            }
            cb += CB;
        }
        ox0 += 16 * S;
    }
}

/// Input row `iy` (maybe in the padding) into `padded` as unsigned bytes `x + 128`, the
/// padding `pad` (the padded row's `width` bytes, then `4 * MAX_ROW` of `pad`).
#[cfg(not(miri))]
#[inline(always)]
fn pad_row<'r>(a: &Args<'_>, x: &[i8], iy: isize, pad: u8, padded: &'r mut [u8]) -> &'r [u8] {
    let p = a.p;
    let cin = p.in_channels;
    let width = (p.pad_left + p.in_w + p.pad_right) * cin;
    let r = &mut padded[..width + 4 * MAX_ROW];
    r.fill(pad);
    if iy >= 0 && (iy as usize) < p.in_h {
        let src = &x[iy as usize * p.in_w * cin..][..p.in_w * cin];
        for (o, &v) in r[p.pad_left * cin..].iter_mut().zip(src) {
            *o = (v as u8) ^ 0x80;
        }
    }
    r
}

/// Input row `iy` (maybe in the padding) expanded into `slot`: `g_n` arrays of `owp`
/// 4-byte lanes, lane `ox` of array `g` holding taps `4g..4g + 4` of output pixel `ox`'s
/// kernel row as `x + 128` (the padding `pad`; taps past the kernel row hold whatever
/// follows it, against weights of 0; lanes past the output row are left as they are and
/// never stored). `padded` takes the padded input row first.
#[cfg(not(miri))]
#[inline(always)]
#[allow(clippy::too_many_arguments)] // (the geometry the caller worked out once)
fn expand(
    a: &Args<'_>,
    x: &[i8],
    iy: isize,
    pad: u8,
    g_n: usize,
    owp: usize,
    padded: &mut [u8],
    slot: &mut [u8],
) {
    let r = pad_row(a, x, iy, pad, padded);
    let step = a.p.stride_w * a.p.in_channels;
    for g in 0..g_n {
        let dst = &mut slot[g * owp * 4..][..a.d.out_w * 4];
        let mut at = 4 * g;
        for o in dst.chunks_exact_mut(4) {
            o.copy_from_slice(&r[at..at + 4]);
            at += step;
        }
    }
}

/// [`expand`] for at most 4 bytes from a pixel to the next, 16 lanes a `vpermb` of 64
/// bytes of the padded row (the lanes past the output row hold whatever).
///
/// # Safety
/// AVX-512 F, BW and VBMI must be available; `stride_w * in_channels <= 4`.
#[cfg(not(miri))]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[allow(clippy::too_many_arguments)] // (the geometry the caller worked out once)
unsafe fn expand_vbmi(
    a: &Args<'_>,
    x: &[i8],
    iy: isize,
    pad: u8,
    g_n: usize,
    owp: usize,
    padded: &mut [u8],
    slot: &mut [u8],
) {
    let r = pad_row(a, x, iy, pad, padded);
    let step = a.p.stride_w * a.p.in_channels;
    // lane i of 16, byte b: byte i step + b of the 64 loaded
    let idx: [u8; 64] = core::array::from_fn(|j| ((j / 4) * step + j % 4) as u8);
    // SAFETY: 64 bytes.
    let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
    for g in 0..g_n {
        for ox0 in (0..owp).step_by(16) {
            // (a segment's 16 pixels span 15 steps + 4 bytes <= 64, starting at most
            // the row's width in: the 4 MAX_ROW bytes of slack cover it)
            let src = &r[ox0 * step + 4 * g..][..64];
            let dst = &mut slot[(g * owp + ox0) * 4..][..64];
            // SAFETY: 64 bytes read and written.
            unsafe {
                let v = _mm512_loadu_si512(src.as_ptr().cast());
                _mm512_storeu_si512(dst.as_mut_ptr().cast(), _mm512_permutexvar_epi8(idx, v));
            }
        }
    }
}

/// A segment's sums of up to [`CB`] channels (`cout <= CB`, every channel of the layer)
/// requantised and written as `np` whole NHWC pixels of `cout` bytes ([`to_pixels`],
/// [`store_prefix`]).
///
/// # Safety
/// AVX-512 F, BW and VBMI must be available; `y` must hold `np * cout` bytes, `np <= 16 S`.
#[cfg(not(miri))]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn store_block<const S: usize>(
    acc: &[[__m512i; S]; CB],
    prm: &Prm<'_>,
    cout: usize,
    np: usize,
    y: &mut [i8],
) {
    // SAFETY: 64 bytes each.
    let idx = prm
        .scatter
        .0
        .map(|i| unsafe { _mm512_loadu_si512(i.as_ptr().cast()) });
    let lanes = &prm.lanes;
    for h in 0..S {
        let n = np.saturating_sub(16 * h).min(16);
        if n == 0 {
            break;
        }
        let q: [__m512i; CB] = core::array::from_fn(|c| {
            if c < cout {
                // SAFETY: F is available.
                unsafe { rounded_lanes(acc[c][h], lanes[c]) }
            } else {
                _mm512_setzero_si512()
            }
        });
        // SAFETY: F, BW and VBMI are available; `y` holds the n pixels' bytes.
        unsafe {
            let px = to_pixels(&q, prm.zp16, prm.lo8, prm.hi8, &idx);
            store_prefix(&px, &mut y[16 * h * cout..][..n * cout]);
        }
    }
}

/// Sixteen pixels' requantised sums of 8 channels (`q[c]`, before the zero point) as
/// int8 NHWC bytes: channels packed four to a register within 128-bit lanes
/// (`vpackssdw`, `vpacksswb`: the zero point `zp` added saturating in 16 bits between,
/// as TFLite's saturating add and clamp give the same bytes), clamped to `lo..=hi`, then
/// `vpermt2b` by `scatter` (from [`scatter_index`]) puts each pixel's channels together:
/// 128 bytes.
///
/// # Safety
/// AVX-512 F, BW and VBMI must be available.
#[cfg(not(miri))]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[inline]
pub(super) unsafe fn to_pixels(
    q: &[__m512i; CB],
    zp: i16,
    lo: i8,
    hi: i8,
    scatter: &[__m512i; 2],
) -> [__m512i; 2] {
    let zp = _mm512_set1_epi16(zp);
    let (lo, hi) = (_mm512_set1_epi8(lo), _mm512_set1_epi8(hi));
    let a = _mm512_packs_epi16(
        _mm512_adds_epi16(_mm512_packs_epi32(q[0], q[1]), zp),
        _mm512_adds_epi16(_mm512_packs_epi32(q[2], q[3]), zp),
    );
    let b = _mm512_packs_epi16(
        _mm512_adds_epi16(_mm512_packs_epi32(q[4], q[5]), zp),
        _mm512_adds_epi16(_mm512_packs_epi32(q[6], q[7]), zp),
    );
    let a = _mm512_min_epi8(_mm512_max_epi8(a, lo), hi);
    let b = _mm512_min_epi8(_mm512_max_epi8(b, lo), hi);
    scatter.map(|ix| _mm512_permutex2var_epi8(a, ix, b))
}

/// The first `dst.len() <= 128` bytes of `v` into `dst` (masked stores).
///
/// # Safety
/// AVX-512 F and BW must be available.
#[cfg(not(miri))]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(super) unsafe fn store_prefix(v: &[__m512i; 2], dst: &mut [i8]) {
    let bytes = dst.len().min(128);
    for (part, &x) in v.iter().enumerate() {
        let m = bytes.saturating_sub(64 * part).min(64);
        if m == 0 {
            break;
        }
        let mask: __mmask64 = if m == 64 { !0 } else { (1u64 << m) - 1 };
        // SAFETY: BW is available; the mask writes bytes 64 part .. + m of `dst`.
        unsafe { _mm512_mask_storeu_epi8(dst[64 * part..].as_mut_ptr().cast(), mask, x) };
    }
}
