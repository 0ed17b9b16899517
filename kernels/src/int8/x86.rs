//! int8 convolution with AVX-512 VNNI: `vpdpbusd` multiplies four unsigned bytes by four
//! signed ones and adds them to a 32-bit lane, 64 multiply-adds an instruction.
//!
//! The input goes unsigned by flipping its sign bit (`u = x + 128`), so
//! `sum (x - zp) w = sum u w - (zp + 128) sum w`: the weights' sums per output channel are
//! computed once per call, and taps in the padding hold `zp + 128` (they cancel). The
//! weights are packed 16 output channels by 4 taps per register; a tile is 12 output pixels
//! by 32 output channels (24 accumulators), each step broadcasting 4 taps of a pixel's
//! receptive field against two weight registers. Wrapping int32 sums equal the
//! reference's (the identity holds modulo 2^32).

use core::arch::x86_64::{
    __m512i, __mmask64, _mm_mask_storeu_epi8, _mm512_add_epi32, _mm512_add_epi64, _mm512_and_si512,
    _mm512_cmpgt_epi32_mask, _mm512_cvtepi32_epi8, _mm512_dpbusd_epi32, _mm512_loadu_si512,
    _mm512_mask_add_epi32, _mm512_mask_blend_epi32, _mm512_mask_storeu_epi8,
    _mm512_maskz_loadu_epi8, _mm512_max_epi32, _mm512_min_epi32, _mm512_mul_epi32,
    _mm512_set1_epi8, _mm512_set1_epi32, _mm512_set1_epi64, _mm512_setzero_si512,
    _mm512_shuffle_i32x4, _mm512_slli_epi64, _mm512_sllv_epi32, _mm512_srai_epi32,
    _mm512_srai_epi64, _mm512_srav_epi32, _mm512_srli_epi32, _mm512_srli_epi64,
    _mm512_storeu_si512, _mm512_sub_epi32, _mm512_unpackhi_epi32, _mm512_unpackhi_epi64,
    _mm512_unpacklo_epi32, _mm512_unpacklo_epi64, _mm512_xor_si512,
};

use super::conv::{Args, gather};

/// Output pixels per tile of 32 channels (24 accumulators: each 128-byte weight step
/// read from L2 serves 24 `vpdpbusd`; 8 pixels served 16: 7-8% slower on ResNet's deep 3x3).
const P: usize = 12;
/// Most output pixels gathered at once: their receptive fields stay in L2 while every
/// block of 32 channels' weights passes over them (so the weights of a wide layer are
/// read once per chunk, not once per tile). A multiple of both tiles' pixels (12, 16).
const CHUNK_MAX: usize = 240;
/// Output channels per tile (two registers of 16).
const OC: usize = 32;

/// Bytes of scratch [`conv`] needs: packed weights of one group, four int32 parameters
/// per output channel (the requantisation's and the sum's offset) and the sum of its
/// weights, and the receptive fields of one chunk.
pub(crate) const fn scratch_bytes(k: usize, cog: usize) -> usize {
    let k4 = k.div_ceil(4) * 4;
    let ocp = cog.div_ceil(OC) * OC;
    ocp * k4 + 20 * ocp + CHUNK_MAX * k4
}

/// The header of [`pack_layer`]'s bytes: a tag, where the groups start (from the start of
/// the bytes: on a 64-byte boundary when packed, wherever the bytes move after), the
/// taps, channels per group and groups they were packed for (u32 each).
const HEADER: usize = 24;
const TAG: [u8; 4] = *b"ck8v";

/// One group's packed weights (`ocp * k4`) and their sums (`4 * ocp`).
const fn group_bytes(k: usize, cog: usize) -> Option<usize> {
    let k4 = k.div_ceil(4) * 4;
    let ocp = cog.div_ceil(OC) * OC;
    ocp.checked_mul(k4 + 4)
}

/// Bytes of [`pack_layer`]'s output: the header, room to reach a 64-byte boundary, every
/// group's [`group_bytes`].
pub(crate) const fn packed_bytes(k: usize, cog: usize, groups: usize) -> Option<usize> {
    let Some(g) = group_bytes(k, cog) else {
        return None;
    };
    match g.checked_mul(groups) {
        Some(v) => v.checked_add(HEADER + 64),
        None => None,
    }
}

/// Every group's weights packed as [`conv`] packs them on each call, with their sums,
/// after a header that says where they start and what they were packed for.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI; `out` must hold [`packed_bytes`], `w`
/// `groups * cog * k` weights.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn pack_layer(w: &[i8], k: usize, cog: usize, groups: usize, out: &mut [u8]) {
    let gb = group_bytes(k, cog).unwrap_or(0);
    let k4 = k.div_ceil(4) * 4;
    let ocp = cog.div_ceil(OC) * OC;
    let at = HEADER + out[HEADER..].as_ptr().align_offset(64).min(63);
    out.fill(0);
    let fields = [at, k, cog, groups].map(|v| u32::try_from(v).unwrap_or(u32::MAX));
    out[..4].copy_from_slice(&TAG);
    for (i, v) in fields.into_iter().enumerate() {
        out[4 + 4 * i..][..4].copy_from_slice(&v.to_le_bytes());
    }
    for (g, dst) in out[at..].chunks_exact_mut(gb).take(groups).enumerate() {
        let (pk, sums) = dst.split_at_mut(ocp * k4);
        // SAFETY: F, BW and VNNI are enabled on this function; `pk` holds ocp / 16
        // blocks, `sums` ocp lanes.
        unsafe { pack(&w[g * cog * k..][..cog * k], k, k4, pk, sums) };
    }
}

/// The groups' bytes of [`pack_layer`]'s output `v` (checked against the header: packed
/// for `k`, `cog` and `groups`, the groups within `v`), `None` when they do not match.
pub(crate) fn unpacked(v: &[u8], k: usize, cog: usize, groups: usize) -> Option<&[u8]> {
    let field = |i: usize| {
        let b = v.get(4 + 4 * i..8 + 4 * i)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let total = group_bytes(k, cog)?.checked_mul(groups)?;
    let at = field(0)?;
    let ok = v.get(..4) == Some(&TAG[..])
        && [field(1)?, field(2)?, field(3)?] == [k, cog, groups]
        && at >= HEADER;
    if !ok {
        return None;
    }
    v.get(at..)?.get(..total)
}

/// Pixels per chunk: their fields (`row_bytes` each) in a quarter of this core's L2 (read
/// once per process), a multiple of `tile`, from one tile to `max`.
pub(super) fn chunk_pixels(row_bytes: usize, tile: usize, max: usize) -> usize {
    use core::sync::atomic::{AtomicUsize, Ordering};
    static L2: AtomicUsize = AtomicUsize::new(0);
    let mut l2 = L2.load(Ordering::Relaxed);
    if l2 == 0 {
        // (unknown: 1 MiB)
        l2 = match crate::arch::caches().l2 {
            0 => 1 << 20,
            v => v,
        };
        L2.store(l2, Ordering::Relaxed);
    }
    (l2 / 4 / row_bytes.max(1) / tile * tile).clamp(tile, max)
}

/// Per output channel of a group, as int32 lanes: the multiplier, the left and right
/// shifts, and `bias - (zp + 128) * sum w`; padded channels 0.
pub(super) struct Params<'a> {
    pub mult: &'a [u8],
    pub left: &'a [u8],
    pub right: &'a [u8],
    pub offset: &'a [u8],
}

impl<'a> Params<'a> {
    /// The four arrays of what [`prepare`] wrote (a quarter of `params` each).
    pub(super) fn split(params: &'a [u8]) -> Self {
        let q = params.len() / 4;
        let (mult, rest) = params.split_at(q);
        let (left, rest) = rest.split_at(q);
        let (right, offset) = rest.split_at(q);
        Params {
            mult,
            left,
            right,
            offset: &offset[..q],
        }
    }
}

/// The convolution of a validated call on this CPU's VNNI (checked by the caller), the
/// weights packed here or taken from `pre` ([`unpacked`]: every group's).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI; `scratch` must hold [`scratch_bytes`],
/// `pre` every group's [`group_bytes`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn conv(a: &Args<'_>, output: &mut [i8], scratch: &mut [u8], pre: Option<&[u8]>) {
    let (p, d) = (a.p, a.d);
    let k = d.col_rows;
    let k4 = k.div_ceil(4) * 4;
    let cog = d.out_per_group;
    let ocp = cog.div_ceil(OC) * OC;
    let (packed, rest) = scratch.split_at_mut(ocp * k4);
    let (params, rest) = rest.split_at_mut(16 * ocp);
    let (sums, rest) = rest.split_at_mut(4 * ocp);
    let col = &mut rest[..CHUNK_MAX * k4];
    let chunk = chunk_pixels(k4, 48, CHUNK_MAX);
    let pixels = d.out_h * d.out_w;
    let pad = (a.q.input_zero_point + 128) as u8;
    let corr = a.q.input_zero_point + 128;
    let (zp_out, lo, hi) = (
        _mm512_set1_epi32(a.q.output_zero_point),
        _mm512_set1_epi32(i32::from(a.q.min)),
        _mm512_set1_epi32(i32::from(a.q.max)),
    );
    let gb = group_bytes(k, cog).unwrap_or(0);
    for g in 0..p.groups {
        let (packed, sums): (&[u8], &[u8]) = match pre {
            Some(pre) => pre[g * gb..][..gb].split_at(ocp * k4),
            None => {
                let w_g = &a.weight[g * cog * k..][..cog * k];
                // SAFETY: F, BW and VNNI are enabled on this function; `packed` holds
                // ocp / 16 blocks, `sums` ocp lanes.
                unsafe { pack(w_g, k, k4, packed, sums) };
                (packed, sums)
            }
        };
        let sum =
            |oc: usize| i32::from_le_bytes(sums[4 * oc..][..4].try_into().unwrap_or_default());
        prepare(a, g, cog, corr, sum, params);
        let prm = Params::split(params);
        // the pixels of every image in one sequence, `q = n * pixels + pixel` (the output
        // of pixel q at `q * out_channels`): chunks and tiles run across images, so a
        // small image (ResNet's 7 x 7) fills whole tiles and the weights pass once per
        // chunk, not once per image
        let total = p.batch * pixels;
        let y = &mut *output;
        let mut q0 = 0;
        while q0 < total {
            let nc = chunk.min(total - q0);
            for i in 0..nc {
                let (n, pix) = ((q0 + i) / pixels, (q0 + i) % pixels);
                let x = &a.input[n * d.image_len..][..d.image_len];
                // the field as unsigned bytes `x + 128`, the padding `zp + 128`, the
                // bytes past `k` 0
                let dst = &mut col[i * k4..][..k4];
                let f = |v: i8| (v as u8) ^ 0x80;
                // SAFETY: F and BW are enabled on this function.
                let run = |d: &mut [u8], s: &[i8]| unsafe { flip(d, s) };
                let m = gather(a, x, g, pix, pad, f, run, dst);
                dst[m..].fill(0);
            }
            let out = Out {
                y: &mut *y,
                first: q0,
                stride: p.out_channels,
                base: g * cog,
                cog,
                prm: &prm,
                clamp: [zp_out, lo, hi],
            };
            let chunk_cols = &col[..nc.div_ceil(48) * 48 * k4];
            // SAFETY: VNNI, F, BW and VL are enabled on this function; the rows past
            // the chunk's last pixel up to a whole tile are in `col` (CHUNK_MAX is a
            // multiple of 48), stale and never stored; `packed` holds ocp / 16 blocks.
            unsafe {
                if cog <= 16 {
                    // one register of channels: twice the pixels, no idle block
                    tiles::<16, 1>(k4, nc, chunk_cols, packed, out);
                } else {
                    tiles::<P, 2>(k4, nc, chunk_cols, packed, out);
                }
            }
            q0 += nc;
        }
    }
}

/// Packs one group's weights (rows of `k`) into blocks of 16 channels by 4 taps, as
/// `conv::pack16x4` does (64 bytes a step, zero-padded to whole blocks and to `k4` taps),
/// sixteen steps at a time: 64 bytes of each of 16 rows loaded, a 16 x 16 transpose of
/// their 4-byte groups (a wide layer's weights are megabytes; packing them byte by byte
/// took a seventh of ResNet's 512-channel layer). Each row's sum into `sums` (int32
/// lanes as bytes, 0 for the padding rows), one `vpdpbusd` against ones a packed step
/// (summed in a pass of its own, the weights of ResNet's 512-channel layer took 1.2% of
/// it more).
///
/// # Safety
/// AVX-512 F, BW and VNNI must be available; `packed` must hold `w.len() / k` rows
/// rounded up to whole blocks of 16, `k4` bytes each, and `sums` 4 bytes for each.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn pack(w: &[i8], k: usize, k4: usize, packed: &mut [u8], sums: &mut [u8]) {
    let rows = w.len() / k;
    let steps = k4 / 4;
    let ones = _mm512_set1_epi8(1);
    for (blk, dst) in packed.chunks_exact_mut(16 * k4).enumerate() {
        let mut sum = _mm512_setzero_si512();
        let mut s0 = 0;
        while s0 < steps {
            let bytes = (k - 4 * s0).min(64);
            let mask: __mmask64 = if bytes == 64 { !0 } else { (1u64 << bytes) - 1 };
            let r: [__m512i; 16] = core::array::from_fn(|lane| {
                let row = blk * 16 + lane;
                if row < rows {
                    let src = &w[row * k + 4 * s0..][..bytes];
                    // SAFETY: the mask reads the `bytes` bytes of `src`.
                    unsafe { _mm512_maskz_loadu_epi8(mask, src.as_ptr().cast()) }
                } else {
                    _mm512_setzero_si512()
                }
            });
            let t: [__m512i; 16] = core::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_epi32(a, b)
                } else {
                    _mm512_unpackhi_epi32(a, b)
                }
            });
            // u[4 i + j], lane L: column 4 L + j of rows 4 i .. 4 i + 4
            let u: [__m512i; 16] = core::array::from_fn(|n| {
                let (i, j) = (n / 4, n % 4);
                let (a, b) = (t[4 * i + j / 2], t[4 * i + 2 + j / 2]);
                if j % 2 == 0 {
                    _mm512_unpacklo_epi64(a, b)
                } else {
                    _mm512_unpackhi_epi64(a, b)
                }
            });
            for j in 0..4 {
                let v0 = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
                let v1 = _mm512_shuffle_i32x4::<0xEE>(u[j], u[4 + j]);
                let w0 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
                let w1 = _mm512_shuffle_i32x4::<0xEE>(u[8 + j], u[12 + j]);
                let cols = [
                    _mm512_shuffle_i32x4::<0x88>(v0, w0),
                    _mm512_shuffle_i32x4::<0xDD>(v0, w0),
                    _mm512_shuffle_i32x4::<0x88>(v1, w1),
                    _mm512_shuffle_i32x4::<0xDD>(v1, w1),
                ];
                for (l, v) in cols.into_iter().enumerate() {
                    let s = s0 + 4 * l + j;
                    if s < steps {
                        let out = &mut dst[64 * s..][..64];
                        // SAFETY: 64 bytes.
                        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) };
                        sum = _mm512_dpbusd_epi32(sum, ones, v);
                    }
                }
            }
            s0 += 16;
        }
        let out = &mut sums[64 * blk..][..64];
        // SAFETY: 64 bytes.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), sum) };
    }
}

/// `d[i] = s[i] ^ 0x80` (the unsigned `s[i] + 128`) for the shorter length, 64 bytes an
/// instruction, the tail under a mask (a kernel row's run of taps is often 15 or 30
/// bytes, which a scalar tail loop made the convolution's hottest code).
///
/// # Safety
/// AVX-512 F and BW must be available.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn flip(d: &mut [u8], s: &[i8]) {
    let n = d.len().min(s.len());
    let sign = _mm512_set1_epi8(-128);
    let mut i = 0;
    while i < n {
        let m = (n - i).min(64);
        let mask: __mmask64 = if m == 64 { !0 } else { (1u64 << m) - 1 };
        // SAFETY: the mask touches bytes i..i + m, within both slices.
        unsafe {
            let v = _mm512_maskz_loadu_epi8(mask, s.as_ptr().add(i));
            _mm512_mask_storeu_epi8(
                d.as_mut_ptr().add(i).cast(),
                mask,
                _mm512_xor_si512(v, sign),
            );
        }
        i += m;
    }
}

/// Where a chunk's outputs go: pixel `first + i`, channel `c` of the group, at
/// `y[(first + i) * stride + base + c]`.
struct Out<'y, 'p> {
    y: &'y mut [i8],
    first: usize,
    stride: usize,
    base: usize,
    cog: usize,
    prm: &'p Params<'p>,
    /// The zero point, the clamp's ends (as lanes).
    clamp: [__m512i; 3],
}

/// Every tile of `PP` pixels by `16 * NJ` channels over a chunk of `nc` pixels' fields.
///
/// # Safety
/// VNNI, F, BW and VL must be available; `col` holds whole tiles of `PP` rows of `k4`
/// bytes covering `nc`; `packed` holds the group's 16-channel blocks up to `cog` rounded
/// up to `16 * NJ`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn tiles<const PP: usize, const NJ: usize>(
    k4: usize,
    nc: usize,
    col: &[u8],
    packed: &[u8],
    mut out: Out<'_, '_>,
) {
    let mut ob = 0;
    while ob < out.cog {
        let w: [&[u8]; NJ] = core::array::from_fn(|j| &packed[(ob + 16 * j) * k4..][..16 * k4]);
        let mut t0 = 0;
        while t0 < nc {
            let np = PP.min(nc - t0);
            let rows = &col[t0 * k4..][..PP * k4];
            // SAFETY: VNNI, F, BW and VL are enabled; `rows` holds PP rows of k4 bytes, each
            // `w[j]` k4 / 4 steps of 64 bytes; the tile's pixels t0..t0 + np are the
            // chunk's.
            unsafe {
                let w = w.map(<[u8]>::as_ptr);
                if PP > 8 && np <= 8 {
                    // the last pixels of a chunk, 8 or fewer: a tile of 8 (ResNet's 7 x 7
                    // layers at batch 8: 392 pixels, 32 tiles of 12 and one of 8)
                    store(&mut out, &tile::<8, NJ>(k4, rows.as_ptr(), w), t0, np, ob);
                } else {
                    store(&mut out, &tile::<PP, NJ>(k4, rows.as_ptr(), w), t0, np, ob);
                }
            }
            t0 += PP;
        }
        ob += 16 * NJ;
    }
}

/// A tile's sums (`acc[i][j]`: pixel `t0 + i` of the chunk, channels `ob + 16 j..`) to
/// int8, the first `np` pixels' stored.
///
/// # Safety
/// AVX-512 F, BW and VL must be available; pixels `t0..t0 + np` and channels up to `ob`
/// plus the tile's must be within `out` (channels past `cog` are not stored).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn store<const NJ: usize>(
    out: &mut Out<'_, '_>,
    acc: &[[__m512i; NJ]],
    t0: usize,
    np: usize,
    ob: usize,
) {
    let [zp_out, lo, hi] = out.clamp;
    for (i, acc_p) in acc.iter().enumerate().take(np) {
        let at = (out.first + t0 + i) * out.stride + out.base;
        for (j, &reg) in acc_p.iter().enumerate() {
            let c0 = ob + 16 * j;
            if c0 >= out.cog {
                break;
            }
            let n = (out.cog - c0).min(16);
            let dst = &mut out.y[at + c0..][..n];
            // SAFETY: F, BW and VL are enabled; `prm` holds lanes c0..c0 + 16; `dst`
            // holds the n written.
            unsafe { epilogue(reg, out.prm, c0, zp_out, lo, hi, dst) };
        }
    }
}

/// The [`Params`] of group `g` into `params` (four arrays of `params.len() / 16` int32),
/// `sum(oc)` the sum of channel `oc`'s weights (wrapping; [`row_sums`]).
#[inline(always)]
pub(super) fn prepare(
    a: &Args<'_>,
    g: usize,
    cog: usize,
    corr: i32,
    sum: impl Fn(usize) -> i32,
    params: &mut [u8],
) {
    params.fill(0);
    let ocp = params.len() / 16;
    for oc in 0..cog {
        let goc = g * cog + oc;
        let r = a.q.requant_of(goc);
        let offset = a
            .bias
            .map_or(0, |b| b[goc])
            .wrapping_sub(corr.wrapping_mul(sum(oc)));
        let fields = [r.multiplier, r.shift.max(0), (-r.shift).max(0), offset];
        for (f, v) in fields.into_iter().enumerate() {
            params[4 * (f * ocp + oc)..][..4].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// [`prepare`]'s `sum` for weights in rows of `k`: each row's sum.
#[inline(always)]
pub(super) fn row_sums(w: &[i8], k: usize) -> impl Fn(usize) -> i32 + '_ {
    move |oc| w[oc * k..][..k].iter().map(|&v| i32::from(v)).sum()
}

/// Sixteen sums of channels `c0..c0 + 16` of one pixel to int8 ([`requant_lanes`] with
/// each channel's parameters), the first `dst.len()` stored.
///
/// # Safety
/// AVX-512 F, BW and VL must be available; every array of `prm` must hold lanes
/// `c0..c0 + 16`; `dst.len() <= 16`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
pub(super) unsafe fn epilogue(
    acc: __m512i,
    prm: &Params<'_>,
    c0: usize,
    zp_out: __m512i,
    lo: __m512i,
    hi: __m512i,
    dst: &mut [i8],
) {
    let load = |v: &[u8]| {
        let v = &v[4 * c0..][..64];
        // SAFETY: 64 bytes.
        unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
    };
    let (m, l, r, off) = (
        load(prm.mult),
        load(prm.left),
        load(prm.right),
        load(prm.offset),
    );
    // SAFETY: F is enabled on this function.
    let v = unsafe { requant_lanes(acc, [m, l, r, off], zp_out, lo, hi) };
    let bytes = _mm512_cvtepi32_epi8(v);
    let keep = (1u32 << dst.len()) - 1;
    // SAFETY: the mask writes only the first dst.len() bytes.
    unsafe { _mm_mask_storeu_epi8(dst.as_mut_ptr(), keep as u16, bytes) };
}

/// TFLite's requantisation of sixteen int32 sums lane by lane, each lane with its own
/// parameters (`[multiplier, left shift, right shift, offset]`): [`rounded_lanes`], the
/// zero point added (saturating), clamped to `lo..=hi`.
///
/// # Safety
/// AVX-512 F must be available.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn requant_lanes(
    acc: __m512i,
    prm: [__m512i; 4],
    zp_out: __m512i,
    lo: __m512i,
    hi: __m512i,
) -> __m512i {
    // SAFETY: F is enabled on this function.
    let q = unsafe { rounded_lanes(acc, prm) };
    // the zero point added as TFLite adds it (saturating): q held within +-2^16 first,
    // which the clamp to int8 after cannot tell from saturation
    let big = _mm512_set1_epi32(1 << 16);
    let q = _mm512_min_epi32(
        _mm512_max_epi32(q, _mm512_sub_epi32(_mm512_setzero_si512(), big)),
        big,
    );
    _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(q, zp_out), lo), hi)
}

/// The scaled sums before the output's zero point: the offset added, the left shift, the
/// doubling high multiply as `floor((x m + 2^30) / 2^31)` in 64 bits, the rounding right
/// shift (TFLite's remainder against threshold).
///
/// # Safety
/// AVX-512 F must be available.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn rounded_lanes(acc: __m512i, [m, l, r, off]: [__m512i; 4]) -> __m512i {
    let x = _mm512_sllv_epi32(_mm512_add_epi32(acc, off), l);
    // the doubling high multiply: even lanes, then odd ones moved down; m >= 0 is never
    // i32::MIN, so nothing saturates
    let half = _mm512_set1_epi64(1 << 30);
    let even = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, m), half), 31);
    let odd_p = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(m, 32));
    let odd = _mm512_slli_epi64(_mm512_srai_epi64(_mm512_add_epi64(odd_p, half), 31), 32);
    let h = _mm512_mask_blend_epi32(0xAAAA, even, odd);
    // the rounding right shift: TFLite's remainder against threshold
    let one = _mm512_set1_epi32(1);
    let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, r), one);
    let rem = _mm512_and_si512(h, mask);
    let thr = _mm512_sub_epi32(_mm512_srli_epi32(mask, 1), _mm512_srai_epi32(h, 31));
    let q = _mm512_srav_epi32(h, r);
    _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(rem, thr), q, one)
}

/// `PP` pixels by `16 * NJ` channels: `acc[p][j] = sum_s col[p][4s..4s+4] . w[j][s]`.
///
/// # Safety
/// VNNI must be available; `col` must cover `PP * k4` bytes, each `w[j]` `16 * k4`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn tile<const PP: usize, const NJ: usize>(
    k4: usize,
    col: *const u8,
    w: [*const u8; NJ],
) -> [[__m512i; NJ]; PP] {
    let mut acc = [[_mm512_setzero_si512(); NJ]; PP];
    for s in 0..k4 / 4 {
        let mut b = [_mm512_setzero_si512(); NJ];
        for (bj, wj) in b.iter_mut().zip(w) {
            // SAFETY: step s < k4 / 4 reads bytes 64 s .. 64 s + 64 of the weight block.
            *bj = unsafe { _mm512_loadu_si512(wj.add(64 * s).cast()) };
        }
        for (p, acc_p) in acc.iter_mut().enumerate() {
            // SAFETY: row p < PP of `col` holds k4 bytes, 4 s + 4 <= k4 of them read.
            let v = unsafe { col.add(p * k4 + 4 * s).cast::<i32>().read_unaligned() };
            let x = _mm512_set1_epi32(v);
            for (a, &bj) in acc_p.iter_mut().zip(&b) {
                *a = _mm512_dpbusd_epi32(*a, x, bj);
            }
        }
    }
    acc
}

/// `PP` pixels by `16 * NJ` channels over `rows` runs of `steps` steps: run `r` of pixel `p`
/// at `x[p] + r * row_step`, the weights' steps in sequence (`acc[p][j] = sum_r sum_s
/// x[p][r row_step + 4s..][..4] . w[j][r steps + s]`): fields read in place, kernel row by
/// kernel row, with the sums held in registers across the rows.
///
/// # Safety
/// VNNI must be available; each `x[p] + r * row_step` must cover `4 * steps` bytes for
/// `r < rows`, each `w[j]` `64 * rows * steps`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
pub(super) unsafe fn tile_rows<const PP: usize, const NJ: usize>(
    rows: usize,
    row_step: usize,
    steps: usize,
    x: [*const u8; PP],
    w: [*const u8; NJ],
) -> [[__m512i; NJ]; PP] {
    let mut acc = [[_mm512_setzero_si512(); NJ]; PP];
    let mut wo = 0;
    for r in 0..rows {
        let o0 = r * row_step;
        for s in 0..steps {
            let mut b = [_mm512_setzero_si512(); NJ];
            for (bj, wj) in b.iter_mut().zip(w) {
                // SAFETY: step r steps + s of the weight block, within its rows * steps.
                *bj = unsafe { _mm512_loadu_si512(wj.add(wo).cast()) };
            }
            wo += 64;
            for (p, acc_p) in acc.iter_mut().enumerate() {
                // SAFETY: run r of pixel p covers 4 steps bytes, 4 s + 4 of them read.
                let v = unsafe { x[p].add(o0 + 4 * s).cast::<i32>().read_unaligned() };
                let x = _mm512_set1_epi32(v);
                for (a, &bj) in acc_p.iter_mut().zip(&b) {
                    *a = _mm512_dpbusd_epi32(*a, x, bj);
                }
            }
        }
    }
    acc
}

/// Image `x` into `img` padded and unsigned (`x + 128`): `img` holds the `hp` padded rows
/// of `wp * in_channels` bytes, the padding and whatever follows them `pad`.
///
/// # Safety
/// AVX-512 F and BW must be available.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn pad_image(p: &crate::params::Conv2dParams, x: &[i8], pad: u8, img: &mut [u8]) {
    let c = p.in_channels;
    let wp = p.in_w + p.pad_left + p.pad_right;
    img.fill(pad);
    let row_in = p.in_w * c;
    let flip = _mm512_set1_epi8(-128);
    for iy in 0..p.in_h {
        let src = &x[iy * row_in..][..row_in];
        let dst = &mut img[((iy + p.pad_top) * wp + p.pad_left) * c..][..row_in];
        for (d, s) in dst.chunks_mut(64).zip(src.chunks(64)) {
            let n = d.len().min(s.len());
            let m: __mmask64 = if n == 64 { !0 } else { (1u64 << n) - 1 };
            // SAFETY: BW is enabled; the mask reads and writes the n bytes of `s` and `d`.
            unsafe {
                let v = _mm512_maskz_loadu_epi8(m, s.as_ptr().cast());
                _mm512_mask_storeu_epi8(d.as_mut_ptr().cast(), m, _mm512_xor_si512(v, flip));
            }
        }
    }
}
