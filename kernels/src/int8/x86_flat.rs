//! int8 convolution of first layers (one or three input channels, short kernel rows) on
//! AVX-512 VNNI with VBMI: 16 output pixels of a row in the lanes, each pixel's receptive
//! field flattened (kernel row after kernel row) and cut into groups of 4 bytes.
//!
//! `x86_rows.rs` pads each kernel row to a multiple of 4 taps (LeNet's first layer: 5 x 5
//! taps in 5 x 8 bytes, 10 `vpdpbusd` per 16 pixels and channel). Here a group may span two
//! kernel rows (25 taps in 7 groups), and one permute makes a group's 16 lanes from the
//! input rows it reads in the padded, unsigned image (`x + 128`, the padding `zp + 128`;
//! the sum's correction as the general kernel's): `vpermb` of 64 bytes where both rows'
//! bytes are in them (LeNet's 32-byte padded rows), else `vpermt2b` of two rows' 64. A
//! channel's 4 weights of the group are broadcast against the lanes. The sums requantise
//! with the channel's parameters broadcast, the rounding right shift folded into the
//! doubling high multiply's 64-bit products ([`requant_high`]: 11 instructions a
//! register, [`requant_folded`] 13, where the two steps took 17), and up to 8 channels'
//! bytes go to the NHWC output as whole pixels (packs, then `vpermt2b`).
//!
//! LeNet-5's first layer, 64 images (Xeon, family 6 model 207): 0.31 ms by `x86_rows.rs`,
//! 0.12 here; on an AMD Zen 5 (family 26), 0.07, where the requantisation takes 40% of
//! the time (0.039 ms without it).

use core::arch::x86_64::{
    __m512i, _mm512_add_epi32, _mm512_add_epi64, _mm512_cmplt_epi64_mask, _mm512_dpbusd_epi32,
    _mm512_loadu_si512, _mm512_mask_sub_epi64, _mm512_mul_epi32, _mm512_permutex2var_epi8,
    _mm512_permutex2var_epi32, _mm512_permutexvar_epi8, _mm512_set1_epi32, _mm512_set1_epi64,
    _mm512_setzero_si512, _mm512_sllv_epi32, _mm512_srav_epi32, _mm512_srav_epi64,
    _mm512_srli_epi64, _mm512_storeu_si512,
};

use core::ptr::addr_of;

use super::conv::Args;
use super::x86::{Params, pad_image, prepare, row_sums};
use super::x86_rows::{Aligned, scatter_index, store_prefix, to_pixels};
use crate::params::Conv2dParams;

/// Output channels a pass (`CB * S` sums in registers).
const CB: usize = 8;
/// Most 4-byte groups of a flattened field (their rows' offsets live in fixed arrays).
const MAX_G: usize = 64;
/// Bytes of each output channel's folded parameters ([`Folded`]).
const FOLDED: usize = 192;

/// Whether [`conv`] takes the layer: one group, dense columns, kernel rows of 3 bytes or
/// more (a group of 4 then spans at most two), 16 pixels' kernel rows within 64 bytes
/// (`15 * stride * in + kw * in`, one `vpermt2b` source), at most [`MAX_G`] groups, and
/// fewer `vpdpbusd` than the general kernel's by the estimate of the other first-layer
/// kernels (lanes past the row's end against lanes past the last channel, with a margin of
/// 1.5 for the general kernel's gathering).
pub(crate) const fn eligible(p: &Conv2dParams, out_w: usize) -> bool {
    let rt = p.kernel_w.saturating_mul(p.in_channels);
    let step = p.stride_w.saturating_mul(p.in_channels);
    let groups = p.kernel_h.saturating_mul(rt).div_ceil(4);
    if p.groups != 1
        || p.dilation_w != 1
        || rt < 3
        || step.saturating_mul(15).saturating_add(rt) > 64
        || groups > MAX_G
        || out_w == 0
        || p.out_channels == 0
    {
        return false;
    }
    let owp = out_w.div_ceil(16) * 16;
    let general_lanes = if p.out_channels <= 16 {
        16
    } else {
        p.out_channels.div_ceil(32) * 32
    };
    // (the channels a block computes: whole blocks of 8, the last one's rounded up to 4,
    // 6 or 8)
    let computed = p.out_channels / CB * CB
        + match p.out_channels % CB {
            0 => 0,
            1..=4 => 4,
            5..=6 => 6,
            _ => 8,
        };
    owp.saturating_mul(computed).saturating_mul(2)
        <= general_lanes.saturating_mul(out_w).saturating_mul(3)
}

/// Bytes of the padded image with the 64 past it a window of the last row reads.
const fn image_bytes(p: &Conv2dParams) -> Option<usize> {
    let wp = p.in_w + p.pad_left + p.pad_right;
    let hp = p.in_h + p.pad_top + p.pad_bottom;
    match hp.checked_mul(wp) {
        Some(v) => match v.checked_mul(p.in_channels) {
            Some(v) => v.checked_add(64),
            None => None,
        },
        None => None,
    }
}

/// Bytes of scratch [`conv`] needs for an [`eligible`] layer (`None` on overflow): the
/// weights (blocks of [`CB`] channels by groups, 4 bytes each), each group's `vpermt2b`
/// indices, the requantisation's parameters (four int32 arrays, then [`FOLDED`] bytes a
/// channel), the padded image.
pub(crate) const fn scratch_bytes(p: &Conv2dParams) -> Option<usize> {
    // (groups <= MAX_G for an eligible layer)
    let groups = (p.kernel_h * p.kernel_w * p.in_channels).div_ceil(4);
    let Some(ocp) = p.out_channels.checked_next_multiple_of(CB) else {
        return None;
    };
    let Some(per_channel) = ocp.checked_mul(groups * 4 + 16 + FOLDED) else {
        return None;
    };
    match image_bytes(p) {
        Some(v) => match v.checked_add(per_channel) {
            Some(v) => v.checked_add(groups * 64),
            None => None,
        },
        None => None,
    }
}

/// One output channel's requantisation for [`requant_folded`]: the offset added and the
/// left shift (int32), the multiplier; what is added to the 64-bit product, the product
/// below which what is added loses `below`, the right shift of the 64-bit result
/// (int64).
#[derive(Clone, Copy)]
#[repr(C)]
struct Folded {
    offset: i32,
    left: i32,
    mult: i32,
    _pad: i32,
    round: i64,
    edge: i64,
    below: i64,
    _pad2: [i64; 3],
    /// [`requant_high`]'s right shift, `r - 1`, in every lane (a vector the compiler does
    /// not turn into a shift by a scalar count: two instructions more, and a slower one).
    high_shift: [i32; 16],
    /// [`requant_folded`]'s, `31 + r`, likewise.
    shift: [i64; 8],
}

impl Folded {
    /// TFLite's `x * 2^left`, `floor((x m + 2^30) / 2^31)`, then the right shift by `r`
    /// rounding halves away from zero, as one rounding of the 64-bit product:
    /// `floor((floor(A / 2^31) + N) / 2^r) = floor((A + N 2^31) / 2^(31 + r))` for
    /// `A = x m + 2^30` and any integer `N`; halves away from zero is `N = 2^(r-1)`, less 1
    /// where `A < 0` (and `r > 0`). With `fold`, the offset goes into the 64-bit sum
    /// (`(acc + off) m = acc m + off m`: the caller knows `acc + off` cannot wrap) and
    /// there is no left shift.
    fn new(mult: i32, left: i32, right: i32, offset: i32, fold: bool) -> Self {
        let r = right.clamp(0, 31);
        let half = (1i64 << r) >> 1;
        let folded = if fold {
            i64::from(offset) * i64::from(mult)
        } else {
            0
        };
        Folded {
            offset: if fold { 0 } else { offset },
            left,
            mult,
            _pad: 0,
            round: folded + (1i64 << 30) + (half << 31),
            edge: -folded - (1i64 << 30),
            below: if r > 0 { 1i64 << 31 } else { 0 },
            _pad2: [0; 3],
            high_shift: [(r - 1).max(0); 16],
            shift: [31 + i64::from(r); 8],
        }
    }
}

/// The rounded 64-bit results of sixteen sums' even and odd lanes before the last shift
/// (in the even lanes' and the odd lanes' 64 bits): [`Folded::new`]'s `A + N 2^31`.
///
/// # Safety
/// AVX-512 F must be available; `f` must point at a `Folded` (maybe unaligned).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn products<const FOLD: bool>(acc: __m512i, f: *const Folded) -> [__m512i; 2] {
    // SAFETY: `f` points at a Folded (the caller's contract), read in place.
    let (offset, left, mult, round, edge, below) = unsafe {
        (
            addr_of!((*f).offset).read_unaligned(),
            addr_of!((*f).left).read_unaligned(),
            addr_of!((*f).mult).read_unaligned(),
            addr_of!((*f).round).read_unaligned(),
            addr_of!((*f).edge).read_unaligned(),
            addr_of!((*f).below).read_unaligned(),
        )
    };
    let x = if FOLD {
        acc
    } else {
        _mm512_sllv_epi32(
            _mm512_add_epi32(acc, _mm512_set1_epi32(offset)),
            _mm512_set1_epi32(left),
        )
    };
    let m = _mm512_set1_epi32(mult);
    let (round, edge, below) = (
        _mm512_set1_epi64(round),
        _mm512_set1_epi64(edge),
        _mm512_set1_epi64(below),
    );
    let one = |p: __m512i| {
        let t = _mm512_add_epi64(p, round);
        _mm512_mask_sub_epi64(t, _mm512_cmplt_epi64_mask(p, edge), t, below)
    };
    [
        one(_mm512_mul_epi32(x, m)),
        one(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), m)),
    ]
}

/// Sixteen sums of one channel requantised by its [`Folded`] parameters (before the
/// output's zero point), any right shift: each 64-bit result shifted by `31 + r`, the
/// lanes put back in order (`merge`: lane 2i from even's dword 2i, lane 2i + 1 from
/// odd's).
///
/// # Safety
/// AVX-512 F must be available; `f` must point at a `Folded` (maybe unaligned).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn requant_folded(acc: __m512i, f: *const Folded, merge: __m512i) -> __m512i {
    // SAFETY: F is enabled on this function; `f` points at a Folded (the caller's
    // contract).
    let ([even, odd], shift) = unsafe {
        (
            products::<false>(acc, f),
            _mm512_loadu_si512(addr_of!((*f).shift).cast()),
        )
    };
    _mm512_permutex2var_epi32(
        _mm512_srav_epi64(even, shift),
        merge,
        _mm512_srav_epi64(odd, shift),
    )
}

/// [`requant_folded`] for right shifts of 1 or more, no left shift and the offset in the
/// 64-bit sum (made by `Folded::new` with `fold`): the high dwords taken (`floor(T / 2^32)`, `merge` picking dwords 2i + 1),
/// then shifted by `r - 1` in 32 bits (`floor(floor(T / 2^32) / 2^(r-1)) = floor(T /
/// 2^(31 + r))`).
///
/// # Safety
/// AVX-512 F must be available; `f` must point at a `Folded` (maybe unaligned).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn requant_high(acc: __m512i, f: *const Folded, merge: __m512i) -> __m512i {
    // SAFETY: F is enabled on this function; `f` points at a Folded (the caller's
    // contract).
    let ([even, odd], shift) = unsafe {
        (
            products::<true>(acc, f),
            _mm512_loadu_si512(addr_of!((*f).high_shift).cast()),
        )
    };
    _mm512_srav_epi32(_mm512_permutex2var_epi32(even, merge, odd), shift)
}

/// The convolution of a validated, [`eligible`] call on this CPU's VNNI and VBMI
/// (checked by the caller).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL, VNNI and VBMI; `scratch` must hold
/// [`scratch_bytes`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
pub(crate) unsafe fn conv(a: &Args<'_>, output: &mut [i8], scratch: &mut [u8]) {
    let (p, d) = (a.p, a.d);
    let (cin, cout) = (p.in_channels, p.out_channels);
    let rt = p.kernel_w * cin;
    let k = d.col_rows;
    let groups = k.div_ceil(4);
    let ocp = cout.div_ceil(CB) * CB;
    let step = p.stride_w * cin;
    let wrow = (p.in_w + p.pad_left + p.pad_right) * cin;
    let (wq, rest) = scratch.split_at_mut(ocp * groups * 4);
    let (idx, rest) = rest.split_at_mut(groups * 64);
    let (params, rest) = rest.split_at_mut(16 * ocp);
    let (folded, rest) = rest.split_at_mut(FOLDED * ocp);
    let img = &mut rest[..image_bytes(p).unwrap_or(0)];

    // weights: block of CB channels, group, channel -> 4 bytes (past the field 0)
    wq.fill(0);
    for c in 0..cout {
        for t in 0..k {
            wq[((c / CB * groups + t / 4) * CB + c % CB) * 4 + t % 4] = a.weight[c * k + t] as u8;
        }
    }
    // each group's kernel rows (the one its first tap is in, and the next) as offsets
    // in the padded image, and where lane i's byte b comes from: row A's window at byte
    // i step + tap, or row B's (64 + ...; or within A's window where B's bytes are in
    // it: one `vpermb`); taps past the field read byte 0 against zero weights
    let mut grp = [Group::default(); MAX_G];
    for (g, (ix, gr)) in idx.chunks_exact_mut(64).zip(grp.iter_mut()).enumerate() {
        let ka = 4 * g / rt;
        let two = (4 * g + 3).min(k - 1) / rt != ka;
        let kb = if two { ka + 1 } else { ka };
        let (oa, ob) = (ka * p.dilation_h * wrow, kb * p.dilation_h * wrow);
        let near = ob - oa + 15 * step + rt <= 64;
        *gr = Group {
            a: oa,
            b: ob,
            two: two && !near,
        };
        for (j, v) in ix.iter_mut().enumerate() {
            let (lane, t) = (j / 4, 4 * g + j % 4);
            let at = lane * step + t % rt;
            *v = if t >= k {
                0
            } else if t / rt == ka {
                at as u8
            } else if near {
                (ob - oa + at) as u8
            } else {
                (64 + at) as u8
            };
        }
    }
    let grp = &grp[..groups];
    // every window within the image: a row's windows start at most (out_w - 1) steps in
    // (a pass takes its second 16 pixels only where they begin before out_w), the image
    // has 64 bytes past its last row
    let last_row = grp.iter().map(|g| g.a.max(g.b)).max().unwrap_or(0);
    let reach = d.out_h.saturating_sub(1) * p.stride_h * wrow
        + last_row
        + d.out_w.saturating_sub(1) * step
        + 64;
    if reach > img.len() {
        return;
    }
    let corr = a.q.input_zero_point + 128;
    prepare(a, 0, cout, corr, row_sums(a.weight, k), params);
    let prm = Params::split(params);
    let lane = |arr: &[u8], c: usize| {
        i32::from_le_bytes([arr[4 * c], arr[4 * c + 1], arr[4 * c + 2], arr[4 * c + 3]])
    };
    // the sums are of unsigned bytes by signed ones: |acc| <= k 255 128
    let bound = (k as i64) * 255 * 128;
    let (mut fold, mut high) = (true, true);
    for c in 0..cout {
        let off = i64::from(lane(prm.offset, c));
        fold &= lane(prm.left, c) == 0 && bound + off.abs() < 1i64 << 31;
        high &= lane(prm.right, c) >= 1;
    }
    // (every block's channels, those past the last as zeros: a block requantises all of
    // its C with no bound known only at run time, its sums stay in registers)
    for (c, f) in folded.chunks_exact_mut(FOLDED).enumerate() {
        let v = if c < cout {
            Folded::new(
                lane(prm.mult, c),
                lane(prm.left, c),
                lane(prm.right, c),
                lane(prm.offset, c),
                fold && high,
            )
        } else {
            Folded::new(0, 0, 1, 0, fold && high)
        };
        // SAFETY: `f` holds FOLDED >= size_of::<Folded>() bytes.
        unsafe { f.as_mut_ptr().cast::<Folded>().write_unaligned(v) };
    }
    let pad = (a.q.input_zero_point + 128) as u8;
    let geo = Geo {
        step,
        out_w: d.out_w,
        cout,
        grp,
        idx,
        wq,
        folded,
        fast: fold && high,
        zp16: a.q.output_zero_point as i16,
        lo8: a.q.min,
        hi8: a.q.max,
        scatter: scatter_index(cout.min(CB)),
    };
    let row_step = p.stride_h * wrow;
    for n in 0..p.batch {
        let x = &a.input[n * d.image_len..][..d.image_len];
        // SAFETY: F and BW are available (this function's contract).
        unsafe { pad_image(p, x, pad, img) };
        let y = &mut output[n * d.out_image_len..][..d.out_image_len];
        // SAFETY: F, BW, VNNI and VBMI are available (this function's contract); the
        // image holds every window of the out_h rows `row_step` apart (`reach`, checked
        // above).
        unsafe {
            if geo.fast {
                image::<true>(&geo, img.as_ptr(), row_step, y);
            } else {
                image::<false>(&geo, img.as_ptr(), row_step, y);
            }
        }
    }
}

/// A 4-byte group of the flattened field: its two kernel rows' offsets in the padded
/// image (the same row where the group is in one), and whether its lanes need both
/// rows' windows (`vpermt2b`) or one (`vpermb`: in one row, or row B's bytes within row
/// A's window).
#[derive(Clone, Copy, Default)]
struct Group {
    a: usize,
    b: usize,
    two: bool,
}

/// What every output row shares.
struct Geo<'a> {
    /// Bytes from a pixel's field to the next one's.
    step: usize,
    out_w: usize,
    cout: usize,
    grp: &'a [Group],
    /// Each group's 64 `vpermb`/`vpermt2b` indices.
    idx: &'a [u8],
    wq: &'a [u8],
    /// [`FOLDED`] bytes a channel, a [`Folded`] at the start of each.
    folded: &'a [u8],
    /// Whether the sums requantise by [`requant_high`] with the offset folded (every
    /// right shift 1 or more, no left shift, no sum and offset that wrap), else by
    /// [`requant_folded`].
    fast: bool,
    zp16: i16,
    lo8: i8,
    hi8: i8,
    /// `vpermt2b` indices from the packed bytes to NHWC pixels of `min(cout, CB)` bytes.
    scatter: Aligned<[[u8; 64]; 2]>,
}

/// One image's output rows (`y`: NHWC, `out_w * cout` bytes a row), each in passes of
/// 32 pixels (16 for the last when no more remain) by blocks of [`CB`] channels; `FAST`:
/// whether they requantise by [`requant_high`]. (The loops over rows are in here so
/// that what the blocks share is worked out once an image.)
///
/// # Safety
/// F, BW, VNNI and VBMI must be available; `img` points at the padded image, which holds
/// every window of the rows, row `oy`'s fields from `oy * row_step` on.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
unsafe fn image<const FAST: bool>(g: &Geo<'_>, img: *const u8, row_step: usize, y: &mut [i8]) {
    for (oy, y) in y.chunks_exact_mut(g.out_w * g.cout).enumerate() {
        // SAFETY: within the image (the caller's contract).
        let img = unsafe { img.add(oy * row_step) };
        let mut ox0 = 0;
        while ox0 < g.out_w {
            let mut cb = 0;
            while cb < g.cout {
                let nc = (g.cout - cb).min(CB);
                // SAFETY: as this function's.
                unsafe {
                    match (g.out_w - ox0 > 16, nc) {
                        (true, 1..=4) => block::<2, 4, FAST>(g, img, ox0, cb, y),
                        (true, 5..=6) => block::<2, 6, FAST>(g, img, ox0, cb, y),
                        (true, _) => block::<2, 8, FAST>(g, img, ox0, cb, y),
                        (false, 1..=4) => block::<1, 4, FAST>(g, img, ox0, cb, y),
                        (false, 5..=6) => block::<1, 6, FAST>(g, img, ox0, cb, y),
                        (false, _) => block::<1, 8, FAST>(g, img, ox0, cb, y),
                    }
                }
                cb += CB;
            }
            ox0 += 32;
        }
    }
}

/// `16 * S` pixels from `ox0` by channels `cb..cb + C` (those past the last against zero
/// weights, not stored).
///
/// # Safety
/// As [`image`]'s for one row (`img` at its first field row, `y` its bytes); `16 (S -
/// 1)` pixels past `ox0` are before `out_w`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
#[inline(never)]
unsafe fn block<const S: usize, const C: usize, const FAST: bool>(
    g: &Geo<'_>,
    img: *const u8,
    ox0: usize,
    cb: usize,
    y: &mut [i8],
) {
    let mut acc = [[_mm512_setzero_si512(); S]; C];
    let base = ox0 * g.step;
    let wblk = &g.wq[cb / CB * g.grp.len() * CB * 4..][..g.grp.len() * CB * 4];
    let idx = &g.idx[..64 * g.grp.len()];
    for (gi, gr) in g.grp.iter().enumerate() {
        // SAFETY: 64 bytes of indices; each window's 64 bytes within the image (the
        // caller's contract); 4 bytes of the group's CB * 4 weights.
        unsafe {
            let ix = _mm512_loadu_si512(idx.as_ptr().add(64 * gi).cast());
            let e: [__m512i; S] = core::array::from_fn(|s| {
                let at = base + 16 * s * g.step;
                let wa = _mm512_loadu_si512(img.add(gr.a + at).cast());
                if gr.two {
                    let wb = _mm512_loadu_si512(img.add(gr.b + at).cast());
                    _mm512_permutex2var_epi8(wa, ix, wb)
                } else {
                    _mm512_permutexvar_epi8(ix, wa)
                }
            });
            let wg = wblk.as_ptr().add(gi * CB * 4);
            for (c, acc_c) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_epi32(wg.add(4 * c).cast::<i32>().read_unaligned());
                for (a, &v) in acc_c.iter_mut().zip(&e) {
                    *a = _mm512_dpbusd_epi32(*a, v, wv);
                }
            }
        }
    }
    let nc = (g.cout - cb).min(C);
    let merge: [i32; 16] = core::array::from_fn(|j| {
        // lane 2i from even's dword 2i (+ 1 for the high dwords), lane 2i + 1 from odd's
        (if j % 2 == 0 { j } else { 15 + j } + usize::from(FAST)) as i32
    });
    // SAFETY: 64 bytes.
    let merge = unsafe { _mm512_loadu_si512(merge.as_ptr().cast()) };
    // SAFETY: 64 bytes each.
    let sc = g
        .scatter
        .0
        .map(|i| unsafe { _mm512_loadu_si512(i.as_ptr().cast()) });
    let width = g.cout.min(CB);
    // every segment's sums requantised channel by channel, each channel's parameters
    // broadcast once for its S registers, every sum indexed at compile time
    let mut qs = [[_mm512_setzero_si512(); CB]; S];
    // (spelled out per channel: as a loop over `0..C.min(nc)`, LLVM kept it rolled and
    // read every sum back from the stack; LeNet's first layer 0.078 -> 0.067-0.073 ms
    // on a Zen 5)
    macro_rules! channel {
        ($($c:literal)*) => {$(
            if $c < C {
                let f = g.folded[FOLDED * (cb + $c)..][..FOLDED]
                    .as_ptr()
                    .cast::<Folded>();
                for (q, &a) in qs.iter_mut().zip(&acc[$c]) {
                    // SAFETY: F is available; the FOLDED bytes of channel cb + c < ocp
                    // hold a Folded (made for FAST's way).
                    q[$c] = unsafe {
                        if FAST {
                            requant_high(a, f, merge)
                        } else {
                            requant_folded(a, f, merge)
                        }
                    };
                }
            }
        )*};
    }
    channel!(0 1 2 3 4 5 6 7);
    for (s, q) in qs.iter().enumerate() {
        let np = (g.out_w - ox0 - 16 * s).min(16);
        // SAFETY: F, BW and VBMI are available.
        let px = unsafe { to_pixels(q, g.zp16, g.lo8, g.hi8, &sc) };
        let first = (ox0 + 16 * s) * g.cout + cb;
        if g.cout <= CB {
            // whole pixels: `np * cout` bytes in a row
            // SAFETY: F and BW are available.
            unsafe { store_prefix(&px, &mut y[first..][..np * g.cout]) };
        } else {
            // a block of 8 of a wider pixel: 8 bytes a pixel, `cout` apart
            let mut buf = [0u8; 128];
            for (part, &v) in px.iter().enumerate() {
                // SAFETY: 64 bytes into the 128 of `buf`.
                unsafe { _mm512_storeu_si512(buf[64 * part..].as_mut_ptr().cast(), v) };
            }
            for i in 0..np {
                let at = first + i * g.cout;
                for (o, &b) in y[at..at + nc].iter_mut().zip(&buf[width * i..]) {
                    *o = b as i8;
                }
            }
        }
    }
}
