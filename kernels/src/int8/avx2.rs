//! int8 convolution with AVX2: `vpmaddwd` multiplies sixteen pairs of 16-bit values and
//! adds each pair into a 32-bit lane, 16 multiply-adds an instruction, exactly (the
//! products of an offset input, `-255..=255`, and an int8 weight sum to at most 65,280 a
//! pair).
//!
//! The receptive fields are gathered as the portable kernel gathers them (16-bit, the
//! input's zero point subtracted, padding 0), a chunk of pixels at a time; the weights are
//! packed 8 output channels by 2 taps per register. A tile is `PP` output pixels by
//! `8 * NJ` output channels, each step broadcasting a pixel's 2 taps against `NJ` weight
//! registers. (`vpmaddubsw`, twice the multiply-adds, saturates its 16-bit pair sums on
//! int8 data, which TFLite's int32 sums never do: it cannot be bit-exact.)

use core::arch::x86_64::{
    __m256i, _mm_storel_epi64, _mm_unpacklo_epi32, _mm256_add_epi32, _mm256_add_epi64,
    _mm256_and_si256, _mm256_blend_epi32, _mm256_castsi256_si128, _mm256_cmpgt_epi32,
    _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_max_epi32,
    _mm256_min_epi32, _mm256_mul_epi32, _mm256_set1_epi32, _mm256_set1_epi64x, _mm256_setr_epi8,
    _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_slli_epi64, _mm256_sllv_epi32,
    _mm256_srai_epi32, _mm256_srav_epi32, _mm256_srli_epi32, _mm256_srli_epi64, _mm256_sub_epi32,
};

use super::conv::{Args, gather};
use super::x86::{Params, chunk_pixels, prepare};

/// Most output pixels gathered at once (as in the VNNI kernel: the weights of a wide
/// layer are read once per chunk, not once per tile).
const CHUNK_MAX: usize = 128;
/// Output channels per register.
const L: usize = 8;
/// Output channels are packed in blocks of this many (the widest tile's).
const OC: usize = 2 * L;

/// Bytes of scratch [`conv`] needs: one group's packed weights (16-bit), four int32
/// parameters per output channel, the receptive fields of one chunk (16-bit).
pub(crate) const fn scratch_bytes(k: usize, cog: usize) -> usize {
    let k2 = k.div_ceil(2) * 2;
    let ocp = cog.div_ceil(OC) * OC;
    2 * ocp * k2 + 16 * ocp + 2 * CHUNK_MAX * k2
}

/// The convolution of a validated call with AVX2 (checked by the caller).
///
/// # Safety
/// The CPU must support AVX2; `scratch` must hold [`scratch_bytes`] and be 2-byte aligned
/// (the caller's `i16` scratch).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn conv(a: &Args<'_>, output: &mut [i8], scratch: &mut [i16]) {
    let (p, d) = (a.p, a.d);
    let k = d.col_rows;
    let k2 = k.div_ceil(2) * 2;
    let cog = d.out_per_group;
    let ocp = cog.div_ceil(OC) * OC;
    let (packed, rest) = scratch.split_at_mut(ocp * k2);
    let (params16, rest) = rest.split_at_mut(8 * ocp);
    let col = &mut rest[..CHUNK_MAX * k2];
    // SAFETY: the bytes of the i16 parameters (any bit pattern is a valid u8, alignment
    // 1), the only view of them while this borrow lives.
    let params =
        unsafe { core::slice::from_raw_parts_mut(params16.as_mut_ptr().cast::<u8>(), 16 * ocp) };
    // one register of channels for a narrow layer: 12 pixels a tile, else 6 by two
    let (tile_pixels, one) = if cog <= L { (12, true) } else { (6, false) };
    let chunk = chunk_pixels(2 * k2, tile_pixels, CHUNK_MAX / 12 * 12);
    let pixels = d.out_h * d.out_w;
    let zp = a.q.input_zero_point as i16;
    let clamp = [
        _mm256_set1_epi32(a.q.output_zero_point),
        _mm256_set1_epi32(i32::from(a.q.min)),
        _mm256_set1_epi32(i32::from(a.q.max)),
    ];
    for g in 0..p.groups {
        let w_g = &a.weight[g * cog * k..][..cog * k];
        pack(w_g, k, k2, packed);
        // the offset is the bias alone: padding taps are 0 after the zero point's removal
        prepare(a, g, cog, 0, |_| 0, params);
        let prm = Params::split(params);
        // the pixels of every image in one sequence, as the VNNI kernel runs them
        let total = p.batch * pixels;
        let y = &mut *output;
        let mut q0 = 0;
        while q0 < total {
            let nc = chunk.min(total - q0);
            for i in 0..nc {
                let (n, pix) = ((q0 + i) / pixels, (q0 + i) % pixels);
                let x = &a.input[n * d.image_len..][..d.image_len];
                let dst = &mut col[i * k2..][..k2];
                let f = |v: i8| i16::from(v) - zp;
                let run = |d: &mut [i16], s: &[i8]| {
                    for (o, &v) in d.iter_mut().zip(s) {
                        *o = i16::from(v) - zp;
                    }
                };
                let m = gather(a, x, g, pix, 0, f, run, dst);
                dst[m..].fill(0);
            }
            let out = Out {
                y: &mut *y,
                first: q0,
                stride: p.out_channels,
                base: g * cog,
                cog,
                prm: &prm,
                clamp,
            };
            // SAFETY: AVX2 is enabled on this function; `col` holds CHUNK_MAX rows (a
            // multiple of both tiles) of k2 values, the rows past the chunk's last
            // pixel stale and never stored; `packed` holds ocp / 8 blocks.
            unsafe {
                if one {
                    tiles::<12, 1>(k2, nc, col, packed, out);
                } else {
                    tiles::<6, 2>(k2, nc, col, packed, out);
                }
            }
            q0 += nc;
        }
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
    clamp: [__m256i; 3],
}

/// Every tile of `PP` pixels by `8 * NJ` channels over a chunk of `nc` pixels' fields.
///
/// # Safety
/// AVX2 must be available; `col` holds whole tiles of `PP` rows of `k2` values covering
/// `nc`; `packed` holds the group's 8-channel blocks up to `cog` rounded up to `8 * NJ`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tiles<const PP: usize, const NJ: usize>(
    k2: usize,
    nc: usize,
    col: &[i16],
    packed: &[i16],
    out: Out<'_, '_>,
) {
    let mut ob = 0;
    while ob < out.cog {
        let w: [&[i16]; NJ] = core::array::from_fn(|j| &packed[(ob + L * j) * k2..][..L * k2]);
        let mut t0 = 0;
        while t0 < nc {
            let np = PP.min(nc - t0);
            let rows = &col[t0 * k2..][..PP * k2];
            // SAFETY: AVX2 is enabled; `rows` holds PP rows of k2 values, each `w[j]` k2 / 2
            // steps of 16 values.
            let acc = unsafe { tile::<PP, NJ>(k2, rows.as_ptr(), w.map(<[i16]>::as_ptr)) };
            for (i, acc_p) in acc.iter().enumerate().take(np) {
                let at = (out.first + t0 + i) * out.stride + out.base;
                for (j, &reg) in acc_p.iter().enumerate() {
                    let c0 = ob + L * j;
                    if c0 >= out.cog {
                        break;
                    }
                    let n = (out.cog - c0).min(L);
                    // SAFETY: AVX2 is enabled; `prm` holds lanes c0..c0 + 8.
                    let bytes = unsafe { epilogue(reg, out.prm, c0, out.clamp) };
                    out.y[at + c0..][..n].copy_from_slice(&bytes[..n]);
                }
            }
            t0 += PP;
        }
        ob += L * NJ;
    }
}

/// Packs one group's weights (rows of `k`) into blocks of 8 channels by 2 taps, 16-bit (16
/// values a step), zero-padded to whole blocks of [`OC`] channels and to `k2` taps.
#[inline(always)]
fn pack(w: &[i8], k: usize, k2: usize, packed: &mut [i16]) {
    let rows = w.len() / k;
    for (blk, dst) in packed.chunks_exact_mut(L * k2).enumerate() {
        for (s, step) in dst.chunks_exact_mut(2 * L).enumerate() {
            for (lane, pair) in step.chunks_exact_mut(2).enumerate() {
                let r = blk * L + lane;
                for (j, o) in pair.iter_mut().enumerate() {
                    let t = 2 * s + j;
                    *o = if r < rows && t < k {
                        i16::from(w[r * k + t])
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// Eight sums of channels `c0..c0 + 8` of one pixel to int8 ([`requant8`] with each
/// channel's parameters).
///
/// # Safety
/// AVX2 must be available; every array of `prm` must hold lanes `c0..c0 + 8`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn epilogue(acc: __m256i, prm: &Params<'_>, c0: usize, clamp: [__m256i; 3]) -> [i8; 8] {
    let [zp_out, lo, hi] = clamp;
    let load = |v: &[u8]| {
        let v = &v[4 * c0..][..32];
        // SAFETY: 32 bytes.
        unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
    };
    let (m, l, r, off) = (
        load(prm.mult),
        load(prm.left),
        load(prm.right),
        load(prm.offset),
    );
    // SAFETY: AVX2 is enabled on this function.
    let v = unsafe { requant8(acc, [m, l, r, off], zp_out, lo, hi) };
    // SAFETY: AVX2 is enabled on this function.
    unsafe { low_bytes(v) }
}

/// TFLite's requantisation of eight int32 sums lane by lane, each lane with its own
/// parameters (`[multiplier, left shift, right shift, offset]`), as the VNNI kernel's
/// `requant_lanes`: the offset added, the left shift, the doubling high multiply
/// (`floor((x m + 2^30) / 2^31)`: bits 31..62 of the 64-bit sum, which a logical shift
/// gives as well as an arithmetic one), TFLite's rounding right shift, the zero point
/// added (saturating), clamped to `lo..=hi`.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn requant8(
    acc: __m256i,
    [m, l, r, off]: [__m256i; 4],
    zp_out: __m256i,
    lo: __m256i,
    hi: __m256i,
) -> __m256i {
    let x = _mm256_sllv_epi32(_mm256_add_epi32(acc, off), l);
    let half = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, m), half), 31);
    let odd_p = _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m, 32));
    // bits 31..62 of the odd lanes' sums moved to bits 32..63
    let odd = _mm256_slli_epi64(_mm256_add_epi64(odd_p, half), 1);
    let h = _mm256_blend_epi32(even, odd, 0b1010_1010);
    let one = _mm256_set1_epi32(1);
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, r), one);
    let rem = _mm256_and_si256(h, mask);
    let thr = _mm256_sub_epi32(_mm256_srli_epi32(mask, 1), _mm256_srai_epi32(h, 31));
    // `q + 1` where rem > thr: subtracting the comparison's all-ones
    let q = _mm256_sub_epi32(_mm256_srav_epi32(h, r), _mm256_cmpgt_epi32(rem, thr));
    let big = _mm256_set1_epi32(1 << 16);
    let q = _mm256_min_epi32(
        _mm256_max_epi32(q, _mm256_sub_epi32(_mm256_setzero_si256(), big)),
        big,
    );
    _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(q, zp_out), lo), hi)
}

/// The low bytes of eight int32 lanes (already within int8).
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn low_bytes(v: __m256i) -> [i8; 8] {
    let pick = _mm256_setr_epi8(
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1,
    );
    let b = _mm256_shuffle_epi8(v, pick);
    let both = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    let mut bytes = [0i8; 8];
    // SAFETY: 8 bytes stored into an 8-byte array.
    unsafe { _mm_storel_epi64(bytes.as_mut_ptr().cast(), both) };
    bytes
}

/// `PP` pixels by `8 * NJ` channels: `acc[p][j] = sum_s col[p][2s..2s+2] . w[j][s]`.
///
/// # Safety
/// AVX2 must be available; `col` must cover `PP * k2` values, each `w[j]` `8 * k2`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile<const PP: usize, const NJ: usize>(
    k2: usize,
    col: *const i16,
    w: [*const i16; NJ],
) -> [[__m256i; NJ]; PP] {
    let mut acc = [[_mm256_setzero_si256(); NJ]; PP];
    for s in 0..k2 / 2 {
        let mut b = [_mm256_setzero_si256(); NJ];
        for (bj, wj) in b.iter_mut().zip(w) {
            // SAFETY: step s < k2 / 2 reads values 16 s .. 16 s + 16 of the weight block.
            *bj = unsafe { _mm256_loadu_si256(wj.add(2 * L * s).cast()) };
        }
        for (p, acc_p) in acc.iter_mut().enumerate() {
            // SAFETY: row p < PP of `col` holds k2 values, 2 s + 2 <= k2 of them read.
            let v = unsafe { col.add(p * k2 + 2 * s).cast::<i32>().read_unaligned() };
            let x = _mm256_set1_epi32(v);
            for (a, &bj) in acc_p.iter_mut().zip(&b) {
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(x, bj));
            }
        }
    }
    acc
}
