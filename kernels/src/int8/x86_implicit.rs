//! int8 convolution of layers with short kernel rows and few output channels on AVX-512
//! VNNI, without gathering receptive fields: the input image is copied once, padded and
//! unsigned, and the dot products read the kernel rows' runs from it in place.
//!
//! The general kernel (`x86.rs`) gathers each output pixel's field into a row of its own:
//! for LeNet's second layer (6 channels, 5 x 5, 16 outputs) that is five runs of 30
//! bytes a pixel, and the gathering costs more than the 38 dot-product steps that follow.
//! Here output pixel `(oy, ox)`'s kernel row `ky` starts at byte `(oy sh + ky dh) Wp C +
//! ox sw C` of the padded image (`Wp` its padded width, `C` the channels), and a tile's
//! pixels (of any rows) are so many such addresses: 10 pixels by 16 channels, or 8 by
//! 32 (more pixels spill their addresses from the registers: 12 and 16 ran 5% and 13%
//! slower on LeNet's second layer). Each kernel row's run is padded to a
//! multiple of 4 bytes against zero weights.

use core::arch::x86_64::{__m512i, _mm512_set1_epi32};

use super::conv::Args;
use super::x86::{Params, epilogue, pad_image, prepare, row_sums, tile_rows};
use crate::params::Conv2dParams;

/// Longest kernel row (`kw * in` bytes) taken: past it the general kernel's runs are long
/// enough that gathering costs little.
const MAX_ROW: usize = 64;
/// Most output channels taken (the gathering is shared by all of them).
const MAX_OUT: usize = 64;

/// Whether [`conv`] takes the layer: one group, dense columns, kernel rows of at most
/// [`MAX_ROW`] bytes that lose at most a quarter to padding to 4, at most [`MAX_OUT`]
/// output channels.
pub(crate) const fn eligible(p: &Conv2dParams) -> bool {
    let row = p.kernel_w * p.in_channels;
    p.groups == 1
        && p.dilation_w == 1
        && row <= MAX_ROW
        && 3 * row.div_ceil(4) * 4 <= 4 * row
        && p.out_channels <= MAX_OUT
}

/// Bytes of the padded image, with the 3 past it the last run's padding to 4 reads.
const fn image_bytes(p: &Conv2dParams) -> Option<usize> {
    let wp = p.in_w + p.pad_left + p.pad_right;
    let hp = p.in_h + p.pad_top + p.pad_bottom;
    let Some(image) = hp.checked_mul(wp) else {
        return None;
    };
    let Some(image) = image.checked_mul(p.in_channels) else {
        return None;
    };
    image.checked_add(4)
}

/// Bytes of scratch [`conv`] needs for an [`eligible`] layer (`None` on overflow): the
/// packed weights, four int32 parameters per output channel, the padded image.
pub(crate) const fn scratch_bytes(p: &Conv2dParams) -> Option<usize> {
    let k4 = p.kernel_h * (p.kernel_w * p.in_channels).div_ceil(4) * 4;
    let ocp = p.out_channels.div_ceil(32) * 32;
    let Some(image) = image_bytes(p) else {
        return None;
    };
    let Some(v) = (ocp * k4 + 16 * ocp).checked_add(image) else {
        return None;
    };
    Some(v)
}

/// The convolution of a validated, [`eligible`] call on this CPU's VNNI (checked by the
/// caller).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI; `scratch` must hold
/// [`scratch_bytes`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn conv(a: &Args<'_>, output: &mut [i8], scratch: &mut [u8]) {
    let (p, d) = (a.p, a.d);
    let c = p.in_channels;
    let wp = p.in_w + p.pad_left + p.pad_right;
    let row = p.kernel_w * c;
    let k4r = row.div_ceil(4) * 4;
    let k4 = p.kernel_h * k4r;
    let k = d.col_rows;
    let cog = p.out_channels;
    let ocp = cog.div_ceil(32) * 32;
    let (packed, rest) = scratch.split_at_mut(ocp * k4);
    let (params, rest) = rest.split_at_mut(16 * ocp);
    let img_len = image_bytes(p).unwrap_or(0);
    let img = &mut rest[..img_len];

    // blocks of 16 channels by 4 taps, each kernel row's run padded to k4r with zeros
    for (blk, dst) in packed.chunks_exact_mut(16 * k4).enumerate() {
        for (s, step) in dst.chunks_exact_mut(64).enumerate() {
            for (lane, out) in step.chunks_exact_mut(4).enumerate() {
                let oc = blk * 16 + lane;
                for (b, o) in out.iter_mut().enumerate() {
                    let (ky, r) = ((4 * s + b) / k4r, (4 * s + b) % k4r);
                    *o = if oc < cog && r < row {
                        a.weight[oc * k + ky * row + r] as u8
                    } else {
                        0
                    };
                }
            }
        }
    }
    let corr = a.q.input_zero_point + 128;
    prepare(a, 0, cog, corr, row_sums(a.weight, k), params);
    let prm = Params::split(params);
    let clamp = [
        _mm512_set1_epi32(a.q.output_zero_point),
        _mm512_set1_epi32(i32::from(a.q.min)),
        _mm512_set1_epi32(i32::from(a.q.max)),
    ];
    let pad = (a.q.input_zero_point + 128) as u8;
    let geo = Geometry {
        pixels: d.out_h * d.out_w,
        out_w: d.out_w,
        col_step: p.stride_w * c,
        out_row_step: p.stride_h * wp * c,
        row_step: p.dilation_h * wp * c,
        kh: p.kernel_h,
        steps: k4r / 4,
        cog,
    };
    for n in 0..p.batch {
        let x = &a.input[n * d.image_len..][..d.image_len];
        // the padded image, unsigned; the padding and the slack past it zp + 128
        // SAFETY: F and BW are enabled on this function.
        unsafe { pad_image(p, x, pad, img) };
        let y = &mut output[n * d.out_image_len..][..d.out_image_len];
        // SAFETY: VNNI, F, BW and VL are enabled on this function; `img` holds every
        // byte the tiles read (`image_bytes`), `packed` ocp / 16 blocks of k4 steps.
        unsafe {
            if cog <= 16 {
                image::<10, 1>(&geo, img, packed, &prm, clamp, y);
            } else {
                image::<8, 2>(&geo, img, packed, &prm, clamp, y);
            }
        }
    }
}

/// Where an image's pixels read and go.
struct Geometry {
    pixels: usize,
    out_w: usize,
    /// Bytes between neighbouring pixels' fields in a row.
    col_step: usize,
    /// Bytes between neighbouring output rows' fields.
    out_row_step: usize,
    /// Bytes between a field's kernel rows.
    row_step: usize,
    kh: usize,
    /// Steps of 4 bytes a kernel row.
    steps: usize,
    cog: usize,
}

/// One image's output: tiles of `PP` pixels by `16 * NJ` channels, requantised into `y`
/// (NHWC).
///
/// # Safety
/// VNNI, F, BW and VL must be available; `img` must hold the padded image and the 3
/// bytes past it, `packed` the channel blocks up to `cog` rounded up to `16 * NJ`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn image<const PP: usize, const NJ: usize>(
    g: &Geometry,
    img: &[u8],
    packed: &[u8],
    prm: &Params<'_>,
    [zp_out, lo, hi]: [__m512i; 3],
    y: &mut [i8],
) {
    let k4 = g.kh * g.steps * 4;
    let mut ob = 0;
    while ob < g.cog {
        let w: [&[u8]; NJ] = core::array::from_fn(|j| &packed[(ob + 16 * j) * k4..][..16 * k4]);
        let mut q0 = 0;
        while q0 < g.pixels {
            // each pixel's first kernel row (past the last pixel, the last one's again),
            // its last row's run within the image
            let (mut oy, mut ox) = (q0 / g.out_w, q0 % g.out_w);
            let mut first = [0usize; PP];
            for (i, f) in first.iter_mut().enumerate() {
                *f = oy * g.out_row_step + ox * g.col_step;
                if q0 + i + 1 < g.pixels {
                    ox += 1;
                    if ox == g.out_w {
                        (oy, ox) = (oy + 1, 0);
                    }
                }
            }
            let span = (g.kh - 1) * g.row_step + 4 * g.steps;
            let x = first.map(|f| img[f..][..span].as_ptr());
            let wk = w.map(<[u8]>::as_ptr);
            // SAFETY: VNNI is enabled; each x[i] covers its kh runs (`span` bytes); each
            // weight block holds kh runs of `steps` 64-byte steps.
            let acc = unsafe { tile_rows::<PP, NJ>(g.kh, g.row_step, g.steps, x, wk) };
            for (i, acc_p) in acc.iter().enumerate().take(g.pixels - q0) {
                let at = (q0 + i) * g.cog;
                for (j, &reg) in acc_p.iter().enumerate() {
                    let c0 = ob + 16 * j;
                    if c0 >= g.cog {
                        break;
                    }
                    let dst = &mut y[at + c0..][..(g.cog - c0).min(16)];
                    // SAFETY: F, BW and VL are enabled; `prm` holds lanes c0..c0 + 16
                    // (whole blocks of 32); `dst` holds the n written.
                    unsafe { epilogue(reg, prm, c0, zp_out, lo, hi, dst) };
                }
            }
            q0 += PP;
        }
        ob += 16 * NJ;
    }
}
