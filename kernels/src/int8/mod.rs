//! int8 kernels, TFLite's quantisation scheme ([`crate::QuantOutput`]): NHWC activations,
//! OHWI weights, int32 sums requantised by a fixed-point multiplier and shift. Every
//! kernel equals the `reference` one of the same name bit for bit, on every variant.
//!
//! The variants are the f32 kernels' lane types ([`Int8Kernel`]): they share the portable
//! code, compiled under each variant's target features, and the ISA-specific dot products
//! (the Cortex-M4's SMLAD, aarch64's NEON `smlal`) override the trait's methods. The x86
//! convolution has kernels of its own, chosen at run time: AVX-512 VNNI (`vpdpbusd`,
//! `x86.rs`; `x86_rows.rs` for first layers: pixels in the lanes, `x86_flat.rs` the same
//! with VBMI and the fields flattened across kernel rows; `x86_implicit.rs` for
//! short kernel rows: fields read in place from a padded copy of the image) and AVX2
//! (`vpmaddwd`, `avx2.rs`), for every non-depthwise layer, and VNNI for depthwise ones
//! (`x86_dw.rs`: a kernel column's rows in the four bytes); so has aarch64 with the dot
//! product extension (`sdot`, `neon_dot.rs`: compiled in, or chosen at run time once
//! `arch::set_aarch64_dotprod` said the CPU has it).

#[cfg(cnnkit_arm_dsp)]
mod arm;
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_rows;
mod conv;
mod depthwise;
mod linear;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_dot;
mod pool;
pub(crate) mod quantize;
mod softmax;
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86;
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86_dw;
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86_flat;
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86_implicit;
#[cfg(target_arch = "x86_64")]
mod x86_rows;

pub use conv::{
    conv2d_s8, conv2d_s8_pack, conv2d_s8_packed_len, conv2d_s8_prepacked, conv2d_s8_scratch_len,
};
pub use linear::{fully_connected_s8, fully_connected_s8_scratch_len};
pub use pool::{avg_pool2d_s8, max_pool2d_s8};
pub use quantize::{add_s8, dequantize_s8, quantize_s8, requantize_s8};
pub use softmax::softmax_s8_f32;

/// int8 softmax: TFLite's reference kernel (gemmlowp's fixed-point exponential and
/// reciprocal), one implementation for every target: it is `reference::softmax_s8`
/// (a row of logits costs little next to the layers before it).
pub use crate::reference::softmax_s8;

use crate::qparams::{QuantOutput, Requant};

/// The int8 microkernels of one variant. Each method has the portable definition; a lane
/// type overrides what its instructions do better.
pub(crate) trait Int8Kernel {
    /// Puts a linear layer's widened input row in the order [`Int8Kernel::dot_rows2`]
    /// reads; the portable order is the row's own.
    #[inline(always)]
    fn prepare_row(_row: &mut [i16]) {}

    /// `acc[0] += sum_k col[k] * w0[k]`, `acc[1] += sum_k col[k] * w1[k]`: one column (as
    /// [`Int8Kernel::prepare_row`] left it), two weight rows of `col.len()` (a linear
    /// layer's two outputs).
    #[inline(always)]
    fn dot_rows2(col: &[i16], w0: &[i8], w1: &[i8], acc: &mut [i32; 2]) {
        let k = col.len();
        Self::dot_columns(col, k, w0, &mut acc[..1]);
        Self::dot_columns(col, k, w1, &mut acc[1..]);
    }

    /// `dst[i] = src[i] - zp`, widened to 16 bits (a run of gathered taps).
    #[inline(always)]
    fn widen(dst: &mut [i16], src: &[i8], zp: i16) {
        for (o, &v) in dst.iter_mut().zip(src) {
            *o = i16::from(v) - zp;
        }
    }

    /// `acc[p] += sum_k col[p * k_len + k] * w[k]` for the `acc.len()` columns of `col`.
    #[inline(always)]
    fn dot_columns(col: &[i16], k_len: usize, w: &[i8], acc: &mut [i32]) {
        for (a, c) in acc.iter_mut().zip(col.chunks_exact(k_len)) {
            *a = a.wrapping_add(dot(c, w));
        }
    }
}

#[cfg(not(any(cnnkit_arm_dsp, target_arch = "aarch64")))]
impl Int8Kernel for crate::simd::f32x8 {}

/// aarch64's NEON dot products (`smlal`).
#[cfg(target_arch = "aarch64")]
impl Int8Kernel for crate::simd::f32x8 {
    #[inline(always)]
    fn dot_columns(col: &[i16], k_len: usize, w: &[i8], acc: &mut [i32]) {
        neon::dot_columns(col, k_len, w, acc);
    }
}

/// The ARM DSP extension's dot products (Cortex-M4 and M7, ARMv7-A): SMLAD.
#[cfg(cnnkit_arm_dsp)]
impl Int8Kernel for crate::simd::f32x8 {
    #[inline(always)]
    fn prepare_row(row: &mut [i16]) {
        arm::prepare_row(row);
    }

    #[inline(always)]
    fn dot_rows2(col: &[i16], w0: &[i8], w1: &[i8], acc: &mut [i32; 2]) {
        arm::dot_rows2(col, w0, w1, acc);
    }

    #[inline(always)]
    fn widen(dst: &mut [i16], src: &[i8], zp: i16) {
        arm::widen(dst, src, zp);
    }

    #[inline(always)]
    fn dot_columns(col: &[i16], k_len: usize, w: &[i8], acc: &mut [i32]) {
        arm::dot_columns(col, k_len, w, acc);
    }
}
#[cfg(target_arch = "x86_64")]
impl Int8Kernel for crate::arch::x86::Avx2 {}
#[cfg(target_arch = "x86_64")]
impl Int8Kernel for crate::arch::x86::Avx512 {}

/// `sum a[k] * b[k]` in wrapping int32 (the products of an offset int8 and an int8 fit in
/// 16 x 8 bits; their sum wraps as TFLite's int32 sum does on overflow).
#[inline(always)]
pub(crate) fn dot(a: &[i16], b: &[i8]) -> i32 {
    // eight partial sums: the compiler keeps them in vector lanes (pmaddwd)
    let mut s = [0i32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b[..a.len()].split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for l in 0..8 {
            s[l] = s[l].wrapping_add(i32::from(x[l]) * i32::from(y[l]));
        }
    }
    let mut t = s.iter().fold(0i32, |u, &v| u.wrapping_add(v));
    for (&x, &y) in ar.iter().zip(br) {
        t = t.wrapping_add(i32::from(x) * i32::from(y));
    }
    t
}

/// TFLite's `SaturatingRoundingDoublingHighMul`: `(a * b + nudge) / 2^31` truncated, the
/// nudge `2^30` for a product at least 0 and `1 - 2^30` below, which is
/// `floor((a * b + 2^30) / 2^31)` either way (for a negative numerator `n`, truncation is
/// `ceil(n / d) = floor((n + d - 1) / d)`): one multiply-accumulate and a shift (SMLAL on
/// the Cortex-M4). `MIN * MIN` saturates.
#[inline(always)]
pub(crate) fn srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    ((i64::from(a) * i64::from(b) + (1 << 30)) >> 31) as i32
}

/// TFLite's `RoundingDivideByPOT`, as TFLite computes it (`e` in 0..=31).
#[inline(always)]
pub(crate) fn rdbpot(x: i32, e: u32) -> i32 {
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier` (the left shift wraps, as TFLite's does).
#[inline(always)]
pub(crate) fn requantize(x: i32, r: Requant) -> i32 {
    let left = r.shift.max(0) as u32;
    let right = (-r.shift).max(0) as u32;
    rdbpot(srdhm(x.wrapping_mul(1 << left), r.multiplier), right)
}

/// One output value from its int32 sum: requantised, the zero point added, clamped.
#[inline(always)]
pub(crate) fn store(acc: i32, r: Requant, q: &QuantOutput<'_>) -> i8 {
    let v = requantize(acc, r).saturating_add(q.output_zero_point);
    // (`max` then `min`, not `clamp`: the same for min <= max, which `QuantOutput` checks,
    // without clamp's assertion in every output)
    v.max(i32::from(q.min)).min(i32::from(q.max)) as i8
}

#[cfg(test)]
mod tests {
    use crate::qparams::Requant;
    use crate::reference as r;

    /// The kernels' fixed-point steps (TFLite's bit tricks) against the reference's
    /// (written from the definitions in i64).
    #[test]
    fn fixed_point_steps_match_the_reference() {
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let special = [
            0,
            1,
            -1,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
            1 << 30,
            -(1 << 30),
            3,
            -3,
        ];
        for i in 0..300_000u32 {
            let v = next();
            let a = if i % 3 == 0 {
                special[(v % 10) as usize]
            } else {
                (v as i32) >> ((v >> 40) % 31)
            };
            let b = (next() as i32) >> (i % 31);
            assert_eq!(super::srdhm(a, b), r::doubling_high_mul(a, b), "{a} {b}");
            let e = (v >> 50) as u32 % 32;
            assert_eq!(super::rdbpot(a, e), r::divide_by_pot(a, e), "{a} {e}");
            let q = Requant {
                multiplier: (1 << 30) + ((next() >> 34) as i32),
                shift: (next() % 62) as i32 - 31,
            };
            assert_eq!(super::requantize(a, q), r::requantize(a, q), "{a} {q:?}");
        }
    }
}
