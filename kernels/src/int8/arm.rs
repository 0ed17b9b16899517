//! The int8 dot products with the ARM DSP extension (Cortex-M4 and M7, ARMv7-A):
//! `SMLAD` does two 16 x 16-bit multiply-accumulates in one instruction, `SXTB16`
//! sign-extends two of a word's four int8 weights to 16 bits: bytes 0 and 2, or 1 and 3.
//! A convolution's columns keep the taps' order and the weights are repacked by PKHBT and
//! PKHTB (once per weight word for four columns); a linear layer's one input row is
//! stored as `[x0, x2, x1, x3]` per quadruple ([`prepare_row`]), the words SMLAD pairs
//! with SXTB16's halves as they come (CMSIS-NN reorders the same way). Selected at
//! compile time (`build.rs` sets `cnnkit_arm_dsp` from the target); the sums (wrapping
//! int32, as SMLAD's are) equal the portable ones bit for bit.

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

/// Four int8 weights (a word) as two pairs of 16-bit values: `([w0, w2], [w1, w3])`,
/// what a prepared row's words `[x0, x2]`, `[x1, x3]` pair with.
#[inline(always)]
fn weights4_prepared(x: u32) -> (u32, u32) {
    (sxtb16(x), sxtb16_ror8(x))
}

/// Four int8 weights (a word) as two pairs of 16-bit values in the taps' order:
/// `([w0, w1], [w2, w3])`.
#[inline(always)]
fn weights4(x: u32) -> (u32, u32) {
    let (even, odd) = (sxtb16(x), sxtb16_ror8(x));
    // (the compiler emits PKHBT and PKHTB for these)
    (
        (even & 0xffff) | (odd << 16),
        (odd & 0xffff_0000) | (even >> 16),
    )
}

/// `a - b` on the two 16-bit halves (wrapping).
#[inline(always)]
fn ssub16(a: u32, b: u32) -> u32 {
    let r: u32;
    // SAFETY: a register-to-register instruction: no memory, no stack; it sets the GE
    // flags, which nothing here reads.
    unsafe {
        asm!("ssub16 {r}, {a}, {b}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
             options(pure, nomem, nostack));
    }
    r
}

/// `dst[i] = src[i] - zp` widened to 16 bits, four at a time: one word of int8 values
/// sign-extended by SXTB16 in pairs, the zero point subtracted from both halves at once,
/// two words stored.
#[inline(always)]
pub(super) fn widen(dst: &mut [i16], src: &[i8], zp: i16) {
    let n = dst.len().min(src.len());
    let z = u32::from(zp as u16) * 0x0001_0001;
    let (mut d, mut s) = (dst.as_mut_ptr(), src.as_ptr());
    for _ in 0..n / 4 {
        // SAFETY: four values of each slice remain at `s` and `d` (n / 4 steps of four);
        // unaligned word accesses are allowed on the Cortex-M4 and ARMv7-A
        unsafe {
            let x = s.cast::<u32>().read_unaligned();
            // [x0 - zp, x2 - zp] and [x1 - zp, x3 - zp] (the differences fit 16 bits)
            let (e, o) = (ssub16(sxtb16(x), z), ssub16(sxtb16_ror8(x), z));
            d.cast::<u32>().write_unaligned((e & 0xffff) | (o << 16));
            d.add(2)
                .cast::<u32>()
                .write_unaligned((e >> 16) | (o & 0xffff_0000));
            s = s.add(4);
            d = d.add(4);
        }
    }
    for i in 0..n % 4 {
        // SAFETY: the last n % 4 values of each slice
        unsafe { *d.add(i) = i16::from(*s.add(i)) - zp };
    }
}

/// Swaps the middle two values of every full quadruple of `row`: `[x0, x1, x2, x3]` to
/// `[x0, x2, x1, x3]` (the values past the last quadruple stay).
#[inline(always)]
pub(super) fn prepare_row(row: &mut [i16]) {
    for q in row.chunks_exact_mut(4) {
        q.swap(1, 2);
    }
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
    let mut c0 = col;
    // SAFETY: inside `col` (the caller's guarantee; the first column when N < 3)
    let mut c2 = unsafe { col.add(if N > 2 { 2 * k_len } else { 0 }) };
    let mut wp = w;
    if N == 4 && quads > 0 {
        // twelve registers: the four sums, two column pointers (columns 1 and 3 at a byte
        // offset from them), the weight pointer, the count, the two weight pairs and a
        // load; 23 instructions for 16 multiply-accumulates
        let off = 2 * k_len;
        // SAFETY: reads `quads` words of weights from `wp` and two words per quadruple
        // from each column (c0, c0 + off, c2, c2 + off), all inside the slices (the
        // caller's guarantee: 4 * quads <= k_len); no stack, no memory written; the
        // pointers come back advanced past the quadruples read
        unsafe {
            asm!(
                "2:",
                "ldr {t}, [{wp}], #4",
                "sxtb16 {hi}, {t}, ror #8",
                "sxtb16 {t}, {t}",
                "pkhbt {lo}, {t}, {hi}, lsl #16",
                "pkhtb {hi}, {hi}, {t}, asr #16",
                "ldr {t}, [{c0}, {off}]",
                "smlad {s1}, {t}, {lo}, {s1}",
                "ldr {t}, [{c0}], #4",
                "smlad {s0}, {t}, {lo}, {s0}",
                "ldr {t}, [{c2}, {off}]",
                "smlad {s3}, {t}, {lo}, {s3}",
                "ldr {t}, [{c2}], #4",
                "smlad {s2}, {t}, {lo}, {s2}",
                "ldr {t}, [{c0}, {off}]",
                "smlad {s1}, {t}, {hi}, {s1}",
                "ldr {t}, [{c0}], #4",
                "smlad {s0}, {t}, {hi}, {s0}",
                "ldr {t}, [{c2}, {off}]",
                "smlad {s3}, {t}, {hi}, {s3}",
                "ldr {t}, [{c2}], #4",
                "smlad {s2}, {t}, {hi}, {s2}",
                "subs {n}, {n}, #1",
                "bne 2b",
                s0 = inout(reg) s0,
                s1 = inout(reg) s1,
                s2 = inout(reg) s2,
                s3 = inout(reg) s3,
                c0 = inout(reg) c0,
                c2 = inout(reg) c2 => _,
                wp = inout(reg) wp,
                n = inout(reg) quads => _,
                off = in(reg) off,
                t = out(reg) _,
                lo = out(reg) _,
                hi = out(reg) _,
                options(nostack, readonly),
            );
        }
    } else {
        // SAFETY: as above, for N <= 2 (c1 = c0 + k_len)
        let mut c1 = unsafe { col.add(if N > 1 { k_len } else { 0 }) };
        for _ in 0..quads {
            // SAFETY: each pointer stays inside its column or the weights (the caller's
            // guarantee) and advances by the four taps read
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
                wp = wp.add(4);
                c0 = c0.add(4);
                c1 = c1.add(4);
                c2 = c2.add(4);
            }
        }
    }
    // the taps past the last quadruple, in natural order
    let rest = k_len - 4 * quads;
    for k in 0..rest {
        // SAFETY: 4 * quads + k < k_len; column i's tail is `c0 + i * k_len + k` (c0 has
        // advanced past its quadruples), inside `col` for i < N
        unsafe {
            let wk = i32::from(*wp.add(k));
            s0 = s0.wrapping_add(i32::from(*c0.add(k)) * wk);
            if N > 1 {
                s1 = s1.wrapping_add(i32::from(*c0.add(k_len + k)) * wk);
            }
            if N > 2 {
                s2 = s2.wrapping_add(i32::from(*c0.add(2 * k_len + k)) * wk);
            }
            if N > 3 {
                s3 = s3.wrapping_add(i32::from(*c0.add(3 * k_len + k)) * wk);
            }
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

/// `acc[r] += sum_k col[k] * w_r[k]` for two weight rows over one prepared row: each
/// column word read once for both rows. Not inlined, as [`dot_columns`].
#[inline(never)]
pub(super) fn dot_rows2(col: &[i16], w0: &[i8], w1: &[i8], acc: &mut [i32; 2]) {
    let k = col.len().min(w0.len()).min(w1.len());
    let quads = k / 4;
    let (mut s0, mut s1) = (acc[0], acc[1]);
    let (mut c, mut p0, mut p1) = (col.as_ptr(), w0.as_ptr(), w1.as_ptr());
    for _ in 0..quads {
        // SAFETY: four values of the column and of each row remain (quads steps of four)
        unsafe {
            let (a, b) = (word(c), word(c.add(2)));
            let (lo, hi) = weights4_prepared(word(p0));
            s0 = smlad(b, hi, smlad(a, lo, s0));
            let (lo, hi) = weights4_prepared(word(p1));
            s1 = smlad(b, hi, smlad(a, lo, s1));
            c = c.add(4);
            p0 = p0.add(4);
            p1 = p1.add(4);
        }
    }
    for i in 0..k % 4 {
        // SAFETY: the last k % 4 values of each
        unsafe {
            let x = i32::from(*c.add(i));
            s0 = s0.wrapping_add(x * i32::from(*p0.add(i)));
            s1 = s1.wrapping_add(x * i32::from(*p1.add(i)));
        }
    }
    *acc = [s0, s1];
}
