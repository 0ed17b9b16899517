//! The int8 dot products with the ARM DSP extension (Cortex-M4 and M7, ARMv7-A):
//! `SMLAD` does two 16 x 16-bit multiply-accumulates in one instruction, `SXTB16`
//! sign-extends two of a word's four int8 weights to 16 bits. Selected at compile time
//! (`build.rs` sets `cnnkit_arm_dsp` from the target); the portable kernels' gathered
//! 16-bit columns are what they read, so the sums (wrapping int32, as SMLAD's are) equal
//! the portable ones bit for bit.

use core::arch::asm;

/// `acc + lo(a) * lo(b) + hi(a) * hi(b)`, 16-bit halves signed, wrapping.
#[inline(always)]
fn smlad(a: u32, b: u32, mut acc: i32) -> i32 {
    // SAFETY: SMLAD reads three registers and writes one: no memory, no stack; it may set
    // the sticky Q flag, which nothing here reads.
    unsafe {
        asm!("smlad {c}, {a}, {b}, {c}", a = in(reg) a, b = in(reg) b, c = inout(reg) acc,
             options(pure, nomem, nostack));
    }
    acc
}

/// Bytes 0 and 2 of `x` sign-extended to the two 16-bit halves.
#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    let r: u32;
    // SAFETY: a register-to-register instruction: no memory, no stack, no flags.
    unsafe {
        asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// Bytes 1 and 3 of `x` sign-extended to the two 16-bit halves.
#[inline(always)]
fn sxtb16_ror8(x: u32) -> u32 {
    let r: u32;
    // SAFETY: as `sxtb16`.
    unsafe {
        asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// Four int8 weights (a word) as two pairs of 16-bit values: `([w0, w1], [w2, w3])`.
#[inline(always)]
fn weights4(x: u32) -> (u32, u32) {
    let (even, odd) = (sxtb16(x), sxtb16_ror8(x));
    // (the compiler emits PKHBT and PKHTB for these)
    (
        (even & 0xffff) | (odd << 16),
        (odd & 0xffff_0000) | (even >> 16),
    )
}

/// The word at `p` (any alignment: the Cortex-M4 and ARMv7-A load unaligned words).
///
/// # Safety
/// `p` points to four readable bytes.
#[inline(always)]
unsafe fn word<T>(p: *const T) -> u32 {
    // SAFETY: the caller's.
    unsafe { p.cast::<u32>().read_unaligned() }
}

/// `acc[i] += sum_k col_i[k] * w[k]` for `N` (1 to 4) columns starting `k_len` apart
/// at `col`, each sum in a register of its own.
///
/// # Safety
/// `col` holds `N * k_len` values, `w` holds `k_len`.
#[inline(always)]
unsafe fn dot_n<const N: usize>(col: *const i16, k_len: usize, w: *const i8, acc: &mut [i32; N]) {
    // (written out per column: the compiler keeps an array of sums in memory)
    let mut s0 = acc[0];
    let mut s1 = if N > 1 { acc[1] } else { 0 };
    let mut s2 = if N > 2 { acc[2] } else { 0 };
    let mut s3 = if N > 3 { acc[3] } else { 0 };
    let quads = k_len / 4;
    // SAFETY: each pointer stays inside its column or the weights (the caller's
    // guarantee): column i is `col + i * k_len` (the first column when N <= i), and the
    // loops below read taps below k_len only
    let (mut c0, mut c1, mut c2, mut c3) = unsafe {
        (
            col,
            col.add(if N > 1 { k_len } else { 0 }),
            col.add(if N > 2 { 2 * k_len } else { 0 }),
            col.add(if N > 3 { 3 * k_len } else { 0 }),
        )
    };
    let mut wp = w;
    // (pointers stepped, not indexed: the scratch is often a static whose address the
    // compiler would otherwise rebuild in every iteration)
    for _ in 0..quads {
        // SAFETY: as above; the pointers advance by the four taps just read
        unsafe {
            let (lo, hi) = weights4(word(wp));
            s0 = smlad(word(c0), lo, s0);
            s0 = smlad(word(c0.add(2)), hi, s0);
            if N > 1 {
                s1 = smlad(word(c1), lo, s1);
                s1 = smlad(word(c1.add(2)), hi, s1);
            }
            if N > 2 {
                s2 = smlad(word(c2), lo, s2);
                s2 = smlad(word(c2.add(2)), hi, s2);
            }
            if N > 3 {
                s3 = smlad(word(c3), lo, s3);
                s3 = smlad(word(c3.add(2)), hi, s3);
            }
            wp = wp.add(4);
            c0 = c0.add(4);
            c1 = c1.add(4);
            c2 = c2.add(4);
            c3 = c3.add(4);
        }
    }
    for k in 0..k_len - 4 * quads {
        // SAFETY: 4 * quads + k < k_len, as above
        unsafe {
            let wk = i32::from(*wp.add(k));
            s0 = s0.wrapping_add(i32::from(*c0.add(k)) * wk);
            s1 = s1.wrapping_add(i32::from(*c1.add(k)) * wk);
            s2 = s2.wrapping_add(i32::from(*c2.add(k)) * wk);
            s3 = s3.wrapping_add(i32::from(*c3.add(k)) * wk);
        }
    }
    acc[0] = s0;
    if N > 1 {
        acc[1] = s1;
    }
    if N > 2 {
        acc[2] = s2;
    }
    if N > 3 {
        acc[3] = s3;
    }
}

/// `acc[p] += sum_k col[p * k_len + k] * w[k]`: four columns at a time (one weight word
/// unpacked serves sixteen multiply-accumulates), then two, then one. Not inlined: in a
/// function of its own the four sums, four column pointers and the weight pointer stay
/// in registers (inlined into a whole network, they were spilled in the inner loop).
#[inline(never)]
pub(super) fn dot_columns(col: &[i16], k_len: usize, w: &[i8], acc: &mut [i32]) {
    let n = acc.len().min(col.len() / k_len.max(1));
    if k_len == 0 || w.len() < k_len {
        return;
    }
    let (col, w) = (col.as_ptr(), w.as_ptr());
    let mut p = 0;
    while p + 4 <= n {
        let Some(a) = acc[p..].first_chunk_mut::<4>() else {
            return;
        };
        // SAFETY: columns p..p + 4 are inside `col` (p + 4 <= n), `w` holds k_len
        unsafe { dot_n(col.add(p * k_len), k_len, w, a) };
        p += 4;
    }
    if p + 2 <= n {
        let Some(a) = acc[p..].first_chunk_mut::<2>() else {
            return;
        };
        // SAFETY: as above
        unsafe { dot_n(col.add(p * k_len), k_len, w, a) };
        p += 2;
    }
    if p < n {
        let Some(a) = acc[p..].first_chunk_mut::<1>() else {
            return;
        };
        // SAFETY: as above
        unsafe { dot_n(col.add(p * k_len), k_len, w, a) };
    }
}
