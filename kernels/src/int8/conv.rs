//! int8 convolution (NHWC, OHWI weights): the receptive fields of a block of output pixels
//! gathered with the input's zero point subtracted (16-bit, padding 0), then one dot
//! product per pixel and output channel, requantised as it is stored (CMSIS-NN's
//! `arm_convolve_s8` scheme).

use super::{Int8Kernel, store};
use crate::arch;
use crate::error::KernelError;
use crate::params::{Conv2dDims, Conv2dParams, add, ctry, mul};
use crate::qparams::{QuantOutput, check_conv2d_s8};

/// Output pixels gathered at once: their fields (`PIXELS * kh * kw * in / groups` values)
/// stay in L1 while every output channel's weights pass over them.
const PIXELS: usize = 8;

/// Scratch (16-bit elements) [`conv2d_s8`] needs on any variant: the receptive fields of
/// a few output pixels of one group, and (AVX2, AVX-512 VNNI) one group's weights packed.
///
/// # Errors
/// As [`Conv2dParams::dims`].
///
/// ```
/// use cnnkit_kernels::{conv2d_s8_scratch_len, Conv2dParams};
/// let p = Conv2dParams::new(1, 1, 28, 28, 6, 5, 5);
/// assert!(conv2d_s8_scratch_len(&p).unwrap() >= 4 * 25); // four receptive fields at least
/// ```
pub const fn conv2d_s8_scratch_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    let d = ctry!(p.dims());
    let mut need = ctry!(mul(d.col_rows, PIXELS));
    // the VNNI variant's bytes (packed weights of a group, per-channel parameters and
    // weight sums, the receptive fields of up to 256 pixels), asked of every x86_64 caller so that one
    // buffer serves whichever variant runs (other targets never run it)
    #[cfg(target_arch = "x86_64")]
    {
        let k4 = ctry!(add(d.col_rows, 3));
        let ocp = ctry!(add(d.out_per_group, 32));
        let bytes = ctry!(add(
            ctry!(add(ctry!(mul(ocp, k4)), ctry!(mul(20, ocp)))),
            ctry!(mul(k4, 256))
        ));
        let half = bytes.div_ceil(2);
        if half > need {
            need = half;
        }
        // the AVX2 kernel's 16-bit values: packed weights of a group (8 channels by 2
        // taps, whole blocks of 16 channels), four int32 parameters per output channel,
        // the receptive fields of up to 128 pixels
        let k2 = ctry!(add(d.col_rows, 1));
        let ocp = ctry!(add(d.out_per_group, 16));
        let values = ctry!(add(
            ctry!(add(ctry!(mul(ocp, k2)), ctry!(mul(8, ocp)))),
            ctry!(mul(k2, 128))
        ));
        if values > need {
            need = values;
        }
        // the AVX2 kernel for few values per kernel row
        if super::avx2_rows::eligible(p, d.out_w) {
            let Some(bytes) = super::avx2_rows::scratch_bytes(p, d.out_w) else {
                return Err(KernelError::Overflow);
            };
            let half = bytes.div_ceil(2);
            if half > need {
                need = half;
            }
        }
        // the VNNI kernel for first layers with VBMI
        #[cfg(not(miri))]
        if super::x86_flat::eligible(p, d.out_w) {
            let Some(bytes) = super::x86_flat::scratch_bytes(p) else {
                return Err(KernelError::Overflow);
            };
            let half = bytes.div_ceil(2);
            if half > need {
                need = half;
            }
        }
        // the VNNI kernel reading fields in place
        #[cfg(not(miri))]
        if super::x86_implicit::eligible(p) {
            let Some(bytes) = super::x86_implicit::scratch_bytes(p) else {
                return Err(KernelError::Overflow);
            };
            let half = bytes.div_ceil(2);
            if half > need {
                need = half;
            }
        }
        // the VNNI kernel for few values per kernel row
        if super::x86_rows::eligible(p, d.out_w) {
            let Some(bytes) = super::x86_rows::scratch_bytes(p, d.out_w) else {
                return Err(KernelError::Overflow);
            };
            let half = bytes.div_ceil(2);
            if half > need {
                need = half;
            }
        }
    }
    // the aarch64 sdot kernel's bytes (packed weights of a group with taps rounded up to
    // 16, an offset per channel, the fields of 64 pixels), asked of every aarch64 caller
    // (the kernel may be chosen at run time)
    #[cfg(target_arch = "aarch64")]
    {
        let k16 = ctry!(add(d.col_rows, 15));
        let ocp = ctry!(add(d.out_per_group, 16));
        let bytes = ctry!(add(
            ctry!(add(ctry!(mul(ocp, k16)), ctry!(mul(4, ocp)))),
            ctry!(mul(k16, 64))
        ));
        let half = bytes.div_ceil(2);
        if half > need {
            need = half;
        }
    }
    // the depthwise kernel's transposed weights and per-channel parameters, and the
    // VNNI one's bytes
    if depthwise(p) {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if super::x86_dw::eligible(p) {
            let Some(bytes) = super::x86_dw::scratch_bytes(p, d.out_w) else {
                return Err(KernelError::Overflow);
            };
            let half = bytes.div_ceil(2);
            if half > need {
                need = half;
            }
        }
        let dw = ctry!(mul(
            ctry!(add(ctry!(mul(p.kernel_h, p.kernel_w)), 6)),
            p.in_channels
        ));
        if dw > need {
            need = dw;
        }
    }
    // on x86, the values `aligned` may skip
    #[cfg(target_arch = "x86_64")]
    {
        need = ctry!(add(need, 32));
    }
    Ok(need)
}

/// The scratch from its first 64-byte boundary (skipping at most 31 values, which
/// [`conv2d_s8_scratch_len`] adds on x86): the x86 kernels lay out packed weights and
/// fields from its start, so no 64-byte load splits two cache lines (with the bench's
/// 16-byte aligned buffers, ResNet's 3x3 layers ran 7-15% slower).
#[cfg(target_arch = "x86_64")]
fn aligned(scratch: &mut [i16]) -> &mut [i16] {
    // (an offset past 31 values cannot be, save where `align_offset` declines: Miri)
    let skip = match scratch.as_ptr().align_offset(64) {
        s if s <= 31 && s <= scratch.len() => s,
        _ => 0,
    };
    &mut scratch[skip..]
}

/// int8 convolution: NHWC `input` and `output`, OHWI `weight`, optional int32 `bias`, each
/// output `clamp(zp_out + requant(sum((x - zp_in) * w) + bias))` (see [`QuantOutput`];
/// taps in the padding add nothing). Equals `reference::conv2d_s8` bit for bit.
///
/// # Errors
/// As `reference::conv2d_s8`; [`KernelError::ScratchTooSmall`] below
/// [`conv2d_s8_scratch_len`].
///
/// ```
/// use cnnkit_kernels::{conv2d_s8, conv2d_s8_scratch_len, Conv2dParams, QuantOutput, Requant};
/// // 1 x 2 x 2 x 1 input, one 2 x 2 filter of ones: the sum of (x - zp) times 0.5
/// let p = Conv2dParams::new(1, 1, 2, 2, 1, 2, 2);
/// let r = [Requant::from_real(0.5).unwrap()];
/// let q = QuantOutput::new(1, 0, &r);
/// let mut y = [0i8; 1];
/// let mut s = vec![0i16; conv2d_s8_scratch_len(&p).unwrap()];
/// conv2d_s8(&p, &q, &[3, 5, 1, 7], &[1, 1, 1, 1], None, &mut y, &mut s).unwrap();
/// assert_eq!(y, [6]); // (2 + 4 + 0 + 6) / 2
/// ```
pub fn conv2d_s8(
    p: &Conv2dParams,
    q: &QuantOutput<'_>,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &mut [i8],
    scratch: &mut [i16],
) -> Result<(), KernelError> {
    convolve(p, q, input, weight, None, bias, output, scratch)
}

/// Bytes [`conv2d_s8_pack`] writes for layer `p` on the kernel this CPU runs now: the
/// weights in the layout that kernel reads, packed once rather than on every call (x86
/// with AVX-512 VNNI, layers its other kernels do not take: ResNet's 3x3 and wider). 0
/// where the kernel reads the weights as they are. It depends on the active variant:
/// pack again after [`arch::force`](crate::arch::force).
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn conv2d_s8_packed_len(p: &Conv2dParams) -> Result<usize, KernelError> {
    let d = p.dims()?;
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if packs_weights(p, &d) {
        return super::x86::packed_bytes(d.col_rows, d.out_per_group, p.groups)
            .ok_or(KernelError::Overflow);
    }
    let _ = d;
    Ok(0)
}

/// Packs layer `p`'s OHWI `weight` into `packed` ([`conv2d_s8_packed_len`] bytes, any
/// alignment) for [`conv2d_s8_prepacked`]: what [`conv2d_s8`] does on every call, done
/// once. Nothing is written where the length is 0.
///
/// # Errors
/// As [`Conv2dParams::dims`]; [`KernelError::LengthMismatch`] for `weight` or `packed`.
///
/// ```
/// use cnnkit_kernels::*;
/// let p = Conv2dParams::new(1, 64, 7, 7, 64, 3, 3).with_padding(1, 1, 1, 1);
/// let d = p.dims().unwrap();
/// let (x, w) = (vec![3i8; d.input_len], vec![-2i8; d.weight_len]);
/// let r = [Requant::from_real(0.001).unwrap()];
/// let q = QuantOutput::new(0, 0, &r);
/// let mut packed = vec![0u8; conv2d_s8_packed_len(&p).unwrap()];
/// conv2d_s8_pack(&p, &w, &mut packed).unwrap();
/// let mut s = vec![0i16; conv2d_s8_scratch_len(&p).unwrap()];
/// let (mut y, mut y2) = (vec![0i8; d.output_len], vec![0i8; d.output_len]);
/// conv2d_s8_prepacked(&p, &q, &x, &w, &packed, None, &mut y, &mut s).unwrap();
/// conv2d_s8(&p, &q, &x, &w, None, &mut y2, &mut s).unwrap();
/// assert_eq!(y, y2);
/// ```
pub fn conv2d_s8_pack(
    p: &Conv2dParams,
    weight: &[i8],
    packed: &mut [u8],
) -> Result<(), KernelError> {
    let d = p.dims()?;
    if weight.len() != d.weight_len {
        return Err(KernelError::LengthMismatch {
            arg: "weight",
            expected: d.weight_len,
            actual: weight.len(),
        });
    }
    let need = packed_len_of(p, packed.len())?;
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = (need, d);
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if need > 0 {
        // SAFETY: `packs_weights` (need > 0) saw AVX-512 F, BW, VL and VNNI; `packed`
        // holds `packed_bytes`.
        unsafe { super::x86::pack_layer(weight, d.col_rows, d.out_per_group, p.groups, packed) };
    }
    Ok(())
}

/// [`conv2d_s8`] with the weights also packed by [`conv2d_s8_pack`] (from the same
/// `weight`, for the same `p`, on the variant active now): the same outputs, without
/// packing the weights again (fbgemm and oneDNN pack theirs once too). `weight` is still
/// read by the kernels that take it as it is.
///
/// # Errors
/// As [`conv2d_s8`]; [`KernelError::LengthMismatch`] where `packed` is not
/// [`conv2d_s8_packed_len`] bytes, [`KernelError::PackedMismatch`] where it was packed for
/// another layer. (Packed from other weights, it gives other outputs: nothing checks the
/// bytes themselves.)
#[allow(clippy::too_many_arguments)]
pub fn conv2d_s8_prepacked(
    p: &Conv2dParams,
    q: &QuantOutput<'_>,
    input: &[i8],
    weight: &[i8],
    packed: &[u8],
    bias: Option<&[i32]>,
    output: &mut [i8],
    scratch: &mut [i16],
) -> Result<(), KernelError> {
    packed_len_of(p, packed.len())?;
    convolve(p, q, input, weight, Some(packed), bias, output, scratch)
}

/// [`conv2d_s8_packed_len`], checked against the `len` of the packed bytes passed.
fn packed_len_of(p: &Conv2dParams, len: usize) -> Result<usize, KernelError> {
    let need = conv2d_s8_packed_len(p)?;
    if len != need {
        return Err(KernelError::LengthMismatch {
            arg: "packed",
            expected: need,
            actual: len,
        });
    }
    Ok(need)
}

/// Whether [`conv2d_s8`] runs the VNNI kernel that packs the weights (`x86::conv`) for
/// `p` on the variant active now.
#[cfg(all(target_arch = "x86_64", not(miri)))]
fn packs_weights(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    vnni_kernel(p, d) == Some(Vnni::General)
}

/// The AVX-512 VNNI kernels, in the order [`vnni_kernel`] prefers them.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Vnni {
    /// Depthwise layers of up to 4 kernel rows (`x86_dw`).
    Depthwise,
    /// First layers with VBMI: fields flattened across kernel rows (`x86_flat`).
    Flat,
    /// First layers: output pixels in the lanes (`x86_rows`).
    Rows,
    /// Short kernel rows, up to 64 output channels: fields read in place (`x86_implicit`).
    Implicit,
    /// Everything else: gathered fields, packed weights (`x86::conv`).
    General,
}

/// Which VNNI kernel [`convolve`] runs for `p` on the variant active now (`None`: not
/// the AVX-512 variant, a CPU without VNNI, or a depthwise layer no VNNI kernel takes).
/// The one place the choice is made: [`conv2d_s8_packed_len`] asks it too.
#[cfg(all(target_arch = "x86_64", not(miri)))]
fn vnni_kernel(p: &Conv2dParams, d: &Conv2dDims) -> Option<Vnni> {
    if arch::active() != arch::Isa::Avx512 || !arch::avx512_vnni() {
        return None;
    }
    Some(if depthwise(p) {
        if !super::x86_dw::eligible(p) {
            return None;
        }
        Vnni::Depthwise
    } else if arch::avx512_vbmi() && super::x86_flat::eligible(p, d.out_w) {
        Vnni::Flat
    } else if super::x86_rows::eligible(p, d.out_w) {
        Vnni::Rows
    } else if super::x86_implicit::eligible(p) {
        Vnni::Implicit
    } else {
        Vnni::General
    })
}

/// [`conv2d_s8`] and [`conv2d_s8_prepacked`] (`packed`: its length checked).
#[allow(clippy::too_many_arguments)]
fn convolve(
    p: &Conv2dParams,
    q: &QuantOutput<'_>,
    input: &[i8],
    weight: &[i8],
    packed: Option<&[u8]>,
    bias: Option<&[i32]>,
    output: &mut [i8],
    scratch: &mut [i16],
) -> Result<(), KernelError> {
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = packed;
    let d = check_conv2d_s8(
        p,
        q,
        input.len(),
        weight.len(),
        bias.map(<[i32]>::len),
        output.len(),
    )?;
    let need = conv2d_s8_scratch_len(p)?;
    if scratch.len() < need {
        return Err(KernelError::ScratchTooSmall {
            needed: need,
            actual: scratch.len(),
        });
    }
    #[cfg(target_arch = "x86_64")]
    let scratch = aligned(scratch);
    let a = &Args {
        p,
        d: &d,
        q,
        input,
        weight,
        bias,
    };
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    let vnni = vnni_kernel(p, &d);
    if depthwise(p) {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if vnni == Some(Vnni::Depthwise) {
            let bytes = super::x86_dw::scratch_bytes(p, d.out_w).unwrap_or(usize::MAX);
            let sb = as_bytes(scratch);
            // SAFETY: the CPU has AVX-512 F, BW and VNNI (checked above); `sb` holds the
            // bytes `scratch_bytes` asks (conv2d_s8_scratch_len covers them).
            unsafe { super::x86_dw::conv(a, output, &mut sb[..bytes]) };
            return Ok(());
        }
        arch::dispatch!(run_depthwise(a: &Args<'_>, output: &mut [i8], scratch: &mut [i16]));
        return Ok(());
    }
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if let Some(kernel) = vnni {
        if kernel == Vnni::Flat {
            let bytes = super::x86_flat::scratch_bytes(p).unwrap_or(usize::MAX);
            let sb = as_bytes(scratch);
            // SAFETY: the CPU has AVX-512 F, BW, VL, VNNI and VBMI (checked above); `sb`
            // holds the bytes `scratch_bytes` asks (conv2d_s8_scratch_len covers them).
            unsafe { super::x86_flat::conv(a, output, &mut sb[..bytes]) };
            return Ok(());
        }
        if kernel == Vnni::Rows {
            let bytes = super::x86_rows::scratch_bytes(p, d.out_w).unwrap_or(usize::MAX);
            let sb = as_bytes(scratch);
            // SAFETY: the CPU has AVX-512 F, BW, VL and VNNI (checked above); `sb` holds
            // the bytes `scratch_bytes` asks (conv2d_s8_scratch_len covers them).
            unsafe { super::x86_rows::conv(a, output, &mut sb[..bytes]) };
            return Ok(());
        }
        if kernel == Vnni::Implicit {
            let bytes = super::x86_implicit::scratch_bytes(p).unwrap_or(usize::MAX);
            let sb = as_bytes(scratch);
            // SAFETY: the CPU has AVX-512 F, BW, VL and VNNI (checked above); `sb` holds
            // the bytes `scratch_bytes` asks (conv2d_s8_scratch_len covers them).
            unsafe { super::x86_implicit::conv(a, output, &mut sb[..bytes]) };
            return Ok(());
        }
        let pre = match packed {
            Some(v) if !v.is_empty() => Some(
                super::x86::unpacked(v, d.col_rows, d.out_per_group, p.groups)
                    .ok_or(KernelError::PackedMismatch)?,
            ),
            // (the length was checked: 0 is only where another kernel runs)
            _ => None,
        };
        let bytes = super::x86::scratch_bytes(d.col_rows, d.out_per_group);
        let sb = as_bytes(scratch);
        // SAFETY: the CPU has AVX-512 F, BW, VL and VNNI (checked above); `sb` holds the bytes
        // `scratch_bytes` asks (conv2d_s8_scratch_len covers them); `pre` holds every
        // group's packed weights and sums (`unpacked`).
        unsafe { super::x86::conv(a, output, &mut sb[..bytes], pre) };
        return Ok(());
    }
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if matches!(arch::active(), arch::Isa::Avx2Fma | arch::Isa::Avx512) {
        if super::avx2_rows::eligible(p, d.out_w) {
            let bytes = super::avx2_rows::scratch_bytes(p, d.out_w).unwrap_or(usize::MAX);
            let sb = as_bytes(scratch);
            // SAFETY: the active variant is one the CPU supports, and both need AVX2; `sb`
            // holds the bytes `scratch_bytes` asks (conv2d_s8_scratch_len covers them).
            unsafe { super::avx2_rows::conv(a, output, &mut sb[..bytes]) };
            return Ok(());
        }
        let values = super::avx2::scratch_bytes(d.col_rows, d.out_per_group) / 2;
        // SAFETY: the active variant is one the CPU supports (`arch::force` refuses
        // others), and both need AVX2; `scratch` holds what `scratch_bytes` asks
        // (conv2d_s8_scratch_len covers it).
        unsafe { super::avx2::conv(a, output, &mut scratch[..values]) };
        return Ok(());
    }
    #[cfg(target_arch = "aarch64")]
    if arch::aarch64_dotprod() {
        let bytes = super::neon_dot::scratch_bytes(d.col_rows, d.out_per_group);
        let sb = as_bytes(scratch);
        // SAFETY: the CPU has DotProd (the build enables it, or `set_aarch64_dotprod`'s
        // caller promised it); `sb` holds the bytes `scratch_bytes` asks.
        unsafe { super::neon_dot::conv(a, output, &mut sb[..bytes]) };
        return Ok(());
    }
    arch::dispatch!(run(a: &Args<'_>, output: &mut [i8], scratch: &mut [i16]));
    Ok(())
}

/// The bytes of an `i16` scratch, for the kernels that lay theirs out in bytes.
#[cfg_attr(
    not(any(all(target_arch = "x86_64", not(miri)), target_arch = "aarch64")),
    allow(dead_code)
)] // (the VNNI, AVX2 first-layer and sdot kernels')
fn as_bytes(scratch: &mut [i16]) -> &mut [u8] {
    // SAFETY: the same memory, twice as many elements of one byte (any bit pattern is a
    // valid u8, alignment 1); the returned borrow is the only view of it while it lives.
    unsafe { core::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast::<u8>(), 2 * scratch.len()) }
}

/// A validated call.
pub(crate) struct Args<'a> {
    pub p: &'a Conv2dParams,
    pub d: &'a Conv2dDims,
    pub q: &'a QuantOutput<'a>,
    pub input: &'a [i8],
    pub weight: &'a [i8],
    pub bias: Option<&'a [i32]>,
}

/// One filter per channel: `groups == in_channels == out_channels` (a depth multiplier of
/// 1, MobileNet's).
const fn depthwise(p: &Conv2dParams) -> bool {
    p.groups > 1 && p.groups == p.in_channels && p.groups == p.out_channels
}

#[inline(always)]
fn run_depthwise<V: Int8Kernel>(a: &Args<'_>, output: &mut [i8], scratch: &mut [i16]) {
    super::depthwise::run(a, output, scratch);
}

#[inline(always)]
fn run<V: Int8Kernel>(a: &Args<'_>, output: &mut [i8], scratch: &mut [i16]) {
    let (p, d) = (a.p, a.d);
    let k = d.col_rows;
    let cog = d.out_per_group;
    let pixels = d.out_h * d.out_w;
    let col = &mut scratch[..k * PIXELS];
    for n in 0..p.batch {
        let x = &a.input[n * d.image_len..][..d.image_len];
        let y = &mut output[n * d.out_image_len..][..d.out_image_len];
        for g in 0..p.groups {
            let w_g = &a.weight[g * cog * k..][..cog * k];
            let mut p0 = 0;
            while p0 < pixels {
                let np = PIXELS.min(pixels - p0);
                let zp = a.q.input_zero_point as i16;
                for i in 0..np {
                    let f = |v: i8| i16::from(v) - zp;
                    let run = |d: &mut [i16], s: &[i8]| V::widen(d, s, zp);
                    gather(a, x, g, p0 + i, 0, f, run, &mut col[i * k..][..k]);
                }
                let y_px = &mut y[p0 * p.out_channels..][..np * p.out_channels];
                for (j, w) in w_g.chunks_exact(k).enumerate() {
                    let oc = g * cog + j;
                    let b = a.bias.map_or(0, |b| b[oc]);
                    let mut acc = [b; PIXELS];
                    V::dot_columns(&col[..np * k], k, w, &mut acc[..np]);
                    let r = a.q.requant_of(oc);
                    for (px, &s) in y_px.chunks_exact_mut(p.out_channels).zip(&acc[..np]) {
                        if let Some(o) = px.get_mut(oc) {
                            *o = store(s, r, a.q);
                        }
                    }
                }
                p0 += np;
            }
        }
    }
}

/// The receptive field of output pixel `pix` in group `g` in `(ky, kx, c)` order (the
/// weights' OHWI order), each input value mapped by `f` (a run of a kernel row's taps by
/// `run`, which does what `f` does to each), taps in the padding `pad`; returns
/// how many values it wrote (`kh * kw * in / groups`). Both the portable kernel (values
/// minus the zero point, 16-bit) and the VNNI one (unsigned bytes) gather with it.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // (the value maps of the two callers)
pub(super) fn gather<T: Copy>(
    a: &Args<'_>,
    x: &[i8],
    g: usize,
    pix: usize,
    pad: T,
    f: impl Fn(i8) -> T,
    run: impl Fn(&mut [T], &[i8]),
    col: &mut [T],
) -> usize {
    let (p, d) = (a.p, a.d);
    let cig = d.in_per_group;
    let (oy, ox) = (pix / d.out_w, pix % d.out_w);
    let mut at = 0;
    let row = p.kernel_w * cig;
    // one group and dense columns: a kernel row's taps are one run of the input row
    let runs = p.groups == 1 && p.dilation_w == 1;
    // the field wholly inside the image (most pixels): one run per kernel row, no checks
    let (iy0, ix0) = (
        (oy * p.stride_h).wrapping_sub(p.pad_top),
        (ox * p.stride_w).wrapping_sub(p.pad_left),
    );
    if runs
        && iy0 < p.in_h
        && ix0 < p.in_w
        && (p.kernel_h - 1) * p.dilation_h < p.in_h - iy0
        && p.kernel_w <= p.in_w - ix0
    {
        let step = p.dilation_h * p.in_w * p.in_channels;
        let mut src = (iy0 * p.in_w + ix0) * p.in_channels;
        for dst in col[..p.kernel_h * row].chunks_exact_mut(row) {
            run(dst, &x[src..src + row]);
            src += step;
        }
        return p.kernel_h * row;
    }
    for ky in 0..p.kernel_h {
        let iy = (oy * p.stride_h + ky * p.dilation_h).wrapping_sub(p.pad_top);
        let ix0 = (ox * p.stride_w) as isize - p.pad_left as isize;
        if runs && iy < p.in_h && ix0 >= 0 && ix0 as usize + p.kernel_w <= p.in_w {
            let src = &x[(iy * p.in_w + ix0 as usize) * p.in_channels..][..row];
            run(&mut col[at..at + row], src);
            at += row;
            continue;
        }
        if cig == 1 {
            // one value per tap (a first layer's single channel): no inner loop
            let base = iy.wrapping_mul(p.in_w);
            for (kx, o) in col[at..at + p.kernel_w].iter_mut().enumerate() {
                let ix = (ox * p.stride_w + kx * p.dilation_w).wrapping_sub(p.pad_left);
                *o = if iy < p.in_h && ix < p.in_w {
                    f(x[(base + ix) * p.in_channels + g])
                } else {
                    pad
                };
            }
            at += p.kernel_w;
            continue;
        }
        for kx in 0..p.kernel_w {
            let ix = (ox * p.stride_w + kx * p.dilation_w).wrapping_sub(p.pad_left);
            let dst = &mut col[at..][..cig];
            if iy < p.in_h && ix < p.in_w {
                let src = &x[(iy * p.in_w + ix) * p.in_channels + g * cig..][..cig];
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = f(v);
                }
            } else {
                dst.fill(pad);
            }
            at += cig;
        }
    }
    at
}

/// Packs one group's weights (rows of `k`) into blocks of 16 channels by 4 taps (64 bytes
/// a step, zero-padded to whole blocks and to `k4` taps, a multiple of 4), writing each step's 64 bytes in order (four bytes
/// from each of 16 rows) rather than scattering byte by byte. (The VNNI kernel packs the
/// same layout with a transpose, `x86::pack`.)
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))] // (the sdot kernel's)
#[inline(always)]
pub(super) fn pack16x4(w: &[i8], k: usize, k4: usize, packed: &mut [u8]) {
    let rows = w.len() / k;
    let full = k / 4;
    for (blk, dst) in packed.chunks_exact_mut(16 * k4).enumerate() {
        for (s, step) in dst.chunks_exact_mut(64).enumerate() {
            for (lane, out) in step.chunks_exact_mut(4).enumerate() {
                let r = blk * 16 + lane;
                if r >= rows {
                    out.fill(0);
                } else if s < full {
                    let src = &w[r * k + 4 * s..][..4];
                    out.copy_from_slice(&[src[0] as u8, src[1] as u8, src[2] as u8, src[3] as u8]);
                } else {
                    // the last step of a k that is not a multiple of 4
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = if 4 * s + j < k {
                            w[r * k + 4 * s + j] as u8
                        } else {
                            0
                        };
                    }
                }
            }
        }
    }
}
