//! The int8 dot products with aarch64's NEON (every aarch64 CPU has it): the weights
//! widened to 16 bits eight at a time (`sxtl`) and multiplied into 32-bit lanes with the
//! columns' 16-bit values (`smlal`, `smlal2`), up to four columns per weight load.
//! NEON's lane sums wrap as TFLite's int32 sums do, so the results equal the portable
//! ones bit for bit.

use core::arch::aarch64::{
    int32x4_t, vaddq_s32, vaddvq_s32, vdupq_n_s32, vget_low_s16, vld1_s8, vld1q_s16,
    vmlal_high_s16, vmlal_s16, vmovl_s8,
};

/// `acc[p] += sum_k col[p * k_len + k] * w[k]` for the `acc.len()` columns of `col`.
#[inline(always)]
pub(super) fn dot_columns(col: &[i16], k_len: usize, w: &[i8], acc: &mut [i32]) {
    let mut p = 0;
    while p < acc.len() {
        let m = (acc.len() - p).min(4);
        let cols = &col[p * k_len..(p + m) * k_len];
        let out = &mut acc[p..p + m];
        match m {
            4 => columns::<4>(cols, k_len, w, out),
            3 => columns::<3>(cols, k_len, w, out),
            2 => columns::<2>(cols, k_len, w, out),
            _ => columns::<1>(cols, k_len, w, out),
        }
        p += m;
    }
}

/// `M` columns of `k_len` values against one weight row.
#[inline(always)]
fn columns<const M: usize>(col: &[i16], k_len: usize, w: &[i8], acc: &mut [i32]) {
    let w = &w[..k_len];
    let k8 = k_len / 8 * 8;
    // SAFETY: NEON is part of the aarch64 baseline (here and in the blocks below, whose
    // loads read 8 values inside the slices named).
    let mut lo: [int32x4_t; M] = [unsafe { vdupq_n_s32(0) }; M];
    let mut hi = lo;
    let mut t = 0;
    while t < k8 {
        // SAFETY: as above; 8 bytes of `w`.
        let wv = unsafe { vmovl_s8(vld1_s8(w[t..t + 8].as_ptr())) };
        for c in 0..M {
            let x = &col[c * k_len + t..c * k_len + t + 8];
            // SAFETY: as above; 8 values of `x`.
            unsafe {
                let xv = vld1q_s16(x.as_ptr());
                lo[c] = vmlal_s16(lo[c], vget_low_s16(xv), vget_low_s16(wv));
                hi[c] = vmlal_high_s16(hi[c], xv, wv);
            }
        }
        t += 8;
    }
    for c in 0..M {
        // SAFETY: as above.
        let mut s = unsafe { vaddvq_s32(vaddq_s32(lo[c], hi[c])) };
        for (&x, &v) in col[c * k_len + k8..(c + 1) * k_len].iter().zip(&w[k8..]) {
            s = s.wrapping_add(i32::from(x) * i32::from(v));
        }
        acc[c] = acc[c].wrapping_add(s);
    }
}
