//! int8 depthwise convolution (one filter per channel, `groups == in == out channels`),
//! NHWC: each output pixel's channels are one contiguous row, so the taps are summed a
//! row of channels at a time against the weights transposed to `[tap][channel]`, and the
//! row requantised lane by lane (every step branch-free, so the compiler vectorises it).

use super::conv::Args;

/// Channels summed at once (their sums live on the stack).
const CHUNK: usize = 64;

/// The depthwise convolution of a validated call (`groups == in_channels ==
/// out_channels`); `scratch` holds `(kh * kw + 6) * channels` elements (the weights
/// transposed and six halves of the per-channel parameters: `conv2d_s8_scratch_len`).
#[inline(always)]
pub(crate) fn run(a: &Args<'_>, output: &mut [i8], scratch: &mut [i16]) {
    let (p, d) = (a.p, a.d);
    let c = p.in_channels;
    let taps = p.kernel_h * p.kernel_w;
    let (wt, prm) = scratch.split_at_mut(taps * c);
    for (ch, w) in a.weight.chunks_exact(taps).enumerate() {
        for (t, &v) in w.iter().enumerate() {
            wt[t * c + ch] = i16::from(v);
        }
    }
    // per channel, one array each (so the requantisation below loads them as vectors):
    // the multiplier's and the bias's low and high halves, the left and right shifts
    let (m_lo, prm) = prm.split_at_mut(c);
    let (m_hi, prm) = prm.split_at_mut(c);
    let (b_lo, prm) = prm.split_at_mut(c);
    let (b_hi, prm) = prm.split_at_mut(c);
    let (sh_l, prm) = prm.split_at_mut(c);
    let sh_r = &mut prm[..c];
    for ch in 0..c {
        let r = a.q.requant_of(ch);
        let b = a.bias.map_or(0, |b| b[ch]);
        (m_lo[ch], m_hi[ch]) = (r.multiplier as i16, (r.multiplier >> 16) as i16);
        (b_lo[ch], b_hi[ch]) = (b as i16, (b >> 16) as i16);
        (sh_l[ch], sh_r[ch]) = (r.shift.max(0) as i16, (-r.shift).max(0) as i16);
    }
    let join = |lo: i16, hi: i16| i32::from(hi) << 16 | i32::from(lo as u16);
    let zp = a.q.input_zero_point;
    let zp16 = zp as i16;
    let (zp_out, lo, hi) = (
        a.q.output_zero_point,
        i32::from(a.q.min),
        i32::from(a.q.max),
    );
    for n in 0..p.batch {
        let x = &a.input[n * d.image_len..][..d.image_len];
        let y = &mut output[n * d.out_image_len..][..d.out_image_len];
        for oy in 0..d.out_h {
            for ox in 0..d.out_w {
                let out = &mut y[(oy * d.out_w + ox) * c..][..c];
                let mut c0 = 0;
                while c0 < c {
                    let len = CHUNK.min(c - c0);
                    let mut acc = [0i32; CHUNK];
                    let (bl, bh) = (&b_lo[c0..c0 + len], &b_hi[c0..c0 + len]);
                    for ((s, &l), &h) in acc.iter_mut().zip(bl).zip(bh) {
                        *s = join(l, h);
                    }
                    if crate::arch::HAS_VECTORS && len == CHUNK {
                        // a whole chunk: fixed length, the sums kept in registers (where
                        // there are vector registers: on a Cortex-M4 it costs 1.1 KB of
                        // flash for nothing)
                        acc = field(p, x, wt, c0, oy, ox, zp16, acc);
                    } else {
                        for ky in 0..p.kernel_h {
                            let iy = (oy * p.stride_h + ky * p.dilation_h).wrapping_sub(p.pad_top);
                            if iy >= p.in_h {
                                continue;
                            }
                            for kx in 0..p.kernel_w {
                                let ix =
                                    (ox * p.stride_w + kx * p.dilation_w).wrapping_sub(p.pad_left);
                                if ix >= p.in_w {
                                    continue;
                                }
                                let src = &x[(iy * p.in_w + ix) * c + c0..][..len];
                                let w = &wt[(ky * p.kernel_w + kx) * c + c0..][..len];
                                for ((s, &v), &wv) in acc.iter_mut().zip(src).zip(w) {
                                    let t = (i32::from(v) - zp) * i32::from(wv);
                                    *s = s.wrapping_add(t);
                                }
                            }
                        }
                    }
                    let r = c0..c0 + len;
                    let (ml, mh) = (&m_lo[r.clone()], &m_hi[r.clone()]);
                    let (sl, sr) = (&sh_l[r.clone()], &sh_r[r.clone()]);
                    // (zipped, not indexed: no bounds checks, so the loop vectorises)
                    let lanes = out[r].iter_mut().zip(&acc).zip(ml.iter().zip(mh));
                    for (((o, &s), (&m_l, &m_h)), (&l, &rt)) in lanes.zip(sl.iter().zip(sr)) {
                        let v = requant(s, join(m_l, m_h), l as u32, rt as u32);
                        // the zero point added as TFLite adds it (saturating): v held
                        // within +-2^16 first, which the clamp to int8 cannot tell apart
                        let v = v.clamp(-(1 << 16), 1 << 16) + zp_out;
                        *o = v.max(lo).min(hi) as i8;
                    }
                    c0 += len;
                }
            }
        }
    }
}

/// The sums of channels `c0..c0 + CHUNK` of output pixel `(oy, ox)` over its taps inside
/// the image, added to `acc`.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // (the pixel's geometry)
fn field(
    p: &crate::params::Conv2dParams,
    x: &[i8],
    wt: &[i16],
    c0: usize,
    oy: usize,
    ox: usize,
    zp: i16,
    mut acc: [i32; CHUNK],
) -> [i32; CHUNK] {
    let c = p.in_channels;
    for ky in 0..p.kernel_h {
        let iy = (oy * p.stride_h + ky * p.dilation_h).wrapping_sub(p.pad_top);
        if iy >= p.in_h {
            continue;
        }
        for kx in 0..p.kernel_w {
            let ix = (ox * p.stride_w + kx * p.dilation_w).wrapping_sub(p.pad_left);
            if ix >= p.in_w {
                continue;
            }
            let src = &x[(iy * p.in_w + ix) * c + c0..][..CHUNK];
            let w = &wt[(ky * p.kernel_w + kx) * c + c0..][..CHUNK];
            if let (Ok(src), Ok(w)) = (<&[i8; CHUNK]>::try_from(src), <&[i16; CHUNK]>::try_from(w))
            {
                tap(&mut acc, src, w, zp);
            }
        }
    }
    acc
}

/// `acc[c] += (x[c] - zp) * w[c]` over a whole chunk: the product in 16 bits (`|x - zp|
/// <= 255`, `|w| <= 128`: at most 32,640, exact), widened as it is added.
#[inline(always)]
fn tap(acc: &mut [i32; CHUNK], x: &[i8; CHUNK], w: &[i16; CHUNK], zp: i16) {
    for ((s, &v), &wv) in acc.iter_mut().zip(x).zip(w) {
        let t = (i16::from(v) - zp).wrapping_mul(wv);
        *s = s.wrapping_add(i32::from(t));
    }
}

/// TFLite's `MultiplyByQuantizedMultiplier` without branches: the doubling high multiply
/// as `floor((x m + 2^30) / 2^31)` (the same value as TFLite's for a multiplier that is
/// never `i32::MIN`), the rounding right shift by TFLite's remainder and threshold.
#[inline(always)]
fn requant(x: i32, multiplier: i32, left: u32, right: u32) -> i32 {
    let x = x.wrapping_shl(left);
    let h = ((i64::from(x) * i64::from(multiplier) + (1 << 30)) >> 31) as i32;
    let mask = ((1i64 << right) - 1) as i32;
    let threshold = (mask >> 1) + (h >> 31 & 1);
    (h >> right) + i32::from((h & mask) > threshold)
}
