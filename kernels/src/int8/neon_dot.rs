//! int8 convolution with aarch64's dot product instructions (`sdot`, Armv8.2's DotProd:
//! Cortex-A55/A76 and later, Neoverse, Apple M1 and later), chosen where the build
//! targets them (`-C target-feature=+dotprod`, or a `-C target-cpu` that has it) or once
//! `arch::set_aarch64_dotprod` said the CPU has them (the kernels are `no_std` and cannot
//! ask the operating system; `cnnkit`'s std layer asks and tells them).
//!
//! `sdot` multiplies four signed bytes by four signed bytes and adds them to a 32-bit lane:
//! 16 multiply-adds an instruction. The input stays signed, so
//! `sum (x - zp) w = sum x w - zp sum w`: the weights' sums per output channel are taken
//! once per call, and taps in the padding hold `zp` (they cancel). The weights are packed
//! as the VNNI kernel packs them (16 output channels by 4 taps, 64 bytes a step: four
//! registers of 4 channels); a tile is 4 output pixels by 16 output channels (16
//! accumulators), each step taking 4 taps of a pixel from a lane of its field's register
//! (`sdot v.4s, w.16b, x.4b[lane]`). Wrapping int32 sums equal the reference's.

use core::arch::aarch64::{int8x16_t, int32x4_t, vdupq_n_s32, vld1q_s8, vst1q_s32};
use core::arch::asm;

use super::conv::{Args, gather, pack16x4};
use super::store;

/// Output pixels per tile.
const PP: usize = 4;
/// Output channels per tile (four registers of 4).
const OC: usize = 16;
/// Output pixels gathered at once (their fields stay in L1 and L2 while every block of 16
/// channels' weights passes over them).
const CHUNK: usize = 64;

/// Bytes of scratch [`conv`] needs: packed weights of one group (taps rounded up to 16),
/// one int32 offset per output channel, the receptive fields of one chunk.
pub(crate) const fn scratch_bytes(k: usize, cog: usize) -> usize {
    let k16 = k.div_ceil(16) * 16;
    let ocp = cog.div_ceil(OC) * OC;
    ocp * k16 + 4 * ocp + CHUNK * k16
}

/// `acc + w . x[LANE]` lane by lane: four signed byte products per 32-bit lane.
macro_rules! sdot {
    ($acc:expr, $w:expr, $x:expr, $lane:literal) => {
        // SAFETY: a register-only instruction of the DotProd extension, which the
        // enclosing function enables (its callers' contract: the CPU has it): no
        // memory, no stack, no flags.
        unsafe {
            asm!(
                concat!("sdot {a:v}.4s, {w:v}.16b, {x:v}.4b[", $lane, "]"),
                a = inout(vreg) $acc,
                w = in(vreg) $w,
                x = in(vreg) $x,
                options(pure, nomem, nostack, preserves_flags)
            )
        }
    };
}

/// The convolution of a validated call; `scratch` holds [`scratch_bytes`].
///
/// # Safety
/// The CPU must support DotProd.
#[target_feature(enable = "dotprod")]
pub(crate) unsafe fn conv(a: &Args<'_>, output: &mut [i8], scratch: &mut [u8]) {
    let (p, d) = (a.p, a.d);
    let k = d.col_rows;
    let k16 = k.div_ceil(16) * 16;
    let cog = d.out_per_group;
    let ocp = cog.div_ceil(OC) * OC;
    let (packed, rest) = scratch.split_at_mut(ocp * k16);
    let (offsets, rest) = rest.split_at_mut(4 * ocp);
    let col = &mut rest[..CHUNK * k16];
    let zp = a.q.input_zero_point;
    let pixels = d.out_h * d.out_w;
    for g in 0..p.groups {
        let w_g = &a.weight[g * cog * k..][..cog * k];
        pack16x4(w_g, k, k16, packed);
        for (oc, row) in w_g.chunks_exact(k).enumerate() {
            let sum: i32 = row.iter().map(|&v| i32::from(v)).sum();
            let off = a
                .bias
                .map_or(0, |b| b[g * cog + oc])
                .wrapping_sub(zp.wrapping_mul(sum));
            offsets[4 * oc..4 * oc + 4].copy_from_slice(&off.to_le_bytes());
        }
        for n in 0..p.batch {
            let x = &a.input[n * d.image_len..][..d.image_len];
            let y = &mut output[n * d.out_image_len..][..d.out_image_len];
            let mut q0 = 0;
            while q0 < pixels {
                let nc = CHUNK.min(pixels - q0);
                for i in 0..nc {
                    let dst = &mut col[i * k16..][..k16];
                    let f = |v: i8| v as u8;
                    let run = |d: &mut [u8], s: &[i8]| {
                        for (o, &v) in d.iter_mut().zip(s) {
                            *o = v as u8;
                        }
                    };
                    let m = gather(a, x, g, q0 + i, zp as u8, f, run, dst);
                    dst[m..].fill(0);
                }
                let mut t0 = 0;
                while t0 < nc {
                    let np = PP.min(nc - t0);
                    let rows = &col[t0 * k16..][..PP * k16];
                    let mut ob = 0;
                    while ob < cog {
                        // SAFETY: DotProd is enabled on this function.
                        let acc = unsafe { tile(k16, rows, &packed[ob * k16..][..OC * k16]) };
                        for (i, sums) in acc.iter().enumerate().take(np) {
                            let at = (q0 + t0 + i) * p.out_channels + g * cog;
                            for c in ob..cog.min(ob + OC) {
                                let o = &offsets[4 * c..4 * c + 4];
                                let off = i32::from_le_bytes([o[0], o[1], o[2], o[3]]);
                                let s = sums[c - ob].wrapping_add(off);
                                y[at + c] = store(s, a.q.requant_of(g * cog + c), a.q);
                            }
                        }
                        ob += OC;
                    }
                    t0 += PP;
                }
                q0 += nc;
            }
        }
    }
}

/// `PP` pixels by 16 channels: `acc[p][c] = sum_k col[p][k] w[c][k]` over `k16` taps,
/// `w` one packed block of 16 channels.
///
/// # Safety
/// The CPU must support DotProd.
#[target_feature(enable = "dotprod")]
#[inline]
unsafe fn tile(k16: usize, col: &[u8], w: &[u8]) -> [[i32; OC]; PP] {
    let mut acc: [[int32x4_t; 4]; PP] = [[vdupq_n_s32(0); 4]; PP];
    for s in 0..k16 / 16 {
        let xs: [int8x16_t; PP] = core::array::from_fn(|p| {
            // SAFETY: NEON; 16 bytes of `col`.
            unsafe { vld1q_s8(col[p * k16 + 16 * s..][..16].as_ptr().cast()) }
        });
        let step = |j: usize| -> [int8x16_t; 4] {
            let at = (4 * s + j) * 64;
            core::array::from_fn(|i| {
                // SAFETY: NEON; 16 bytes of `w`.
                unsafe { vld1q_s8(w[at + 16 * i..][..16].as_ptr().cast()) }
            })
        };
        let w0 = step(0);
        for (acc_p, &x) in acc.iter_mut().zip(&xs) {
            for (a, &wi) in acc_p.iter_mut().zip(&w0) {
                sdot!(*a, wi, x, "0");
            }
        }
        let w1 = step(1);
        for (acc_p, &x) in acc.iter_mut().zip(&xs) {
            for (a, &wi) in acc_p.iter_mut().zip(&w1) {
                sdot!(*a, wi, x, "1");
            }
        }
        let w2 = step(2);
        for (acc_p, &x) in acc.iter_mut().zip(&xs) {
            for (a, &wi) in acc_p.iter_mut().zip(&w2) {
                sdot!(*a, wi, x, "2");
            }
        }
        let w3 = step(3);
        for (acc_p, &x) in acc.iter_mut().zip(&xs) {
            for (a, &wi) in acc_p.iter_mut().zip(&w3) {
                sdot!(*a, wi, x, "3");
            }
        }
    }
    let mut out = [[0i32; OC]; PP];
    for (o, acc_p) in out.iter_mut().zip(&acc) {
        for (i, &a) in acc_p.iter().enumerate() {
            // SAFETY: 4 lanes stored into 4 of `o`'s values.
            unsafe { vst1q_s32(o[4 * i..][..4].as_mut_ptr(), a) };
        }
    }
    out
}
