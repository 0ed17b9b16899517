//! Forward pass of depthwise layers row by row (any stride and dilation): per output
//! row, each kernel row's input row is copied once into a zero-padded stack buffer, and
//! the output row, initialised to the bias, accumulates `kernel_w` FMAs per vector from
//! it; the clamp follows while the row is still in L1. No scratch: `conv2d_direct`'s
//! depthwise path.

use super::Ctx;
use super::depthwise::{SEG, is_pad_row, padded_row, row_len};
use crate::arch::dispatch;
use crate::simd::LANES;
use crate::vector::Vf32;

/// Forward pass (see [`fwd`]); arguments validated by the caller, `output` overwritten.
// (a function of its own, as the entry of a pass: the portable variant has no
// trampoline between the kernels a plan runs, and inlined into one they ran slower)
#[inline(never)]
pub(super) fn forward(
    ctx: &Ctx<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    // (local copies: kernels read the geometry in their inner loops, and a copy on this
    // stack is one the compiler knows no store to the output changes; see `fwd_implicit`)
    let ctx = &Ctx {
        p: &{ *ctx.p },
        d: &{ *ctx.d },
        ..*ctx
    };
    // its own entry points, so that its loops get registers of their own
    dispatch!(fwd(
        ctx: &Ctx<'_>,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
    ));
}

/// Depthwise convolution (one input and one output channel per group): per output row,
/// each kernel row's input row is copied once into a zero-padded stack buffer, and the
/// output row, initialised to the bias, accumulates `kernel_w` FMAs per vector from it;
/// the clamp follows while the row is still in L1. The vectors of a row are independent
/// chains, which hides the FMA latency that one channel at a time would expose.
#[inline(always)]
fn fwd<V: Vf32>(
    ctx: &Ctx<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let (p, d) = (ctx.p, ctx.d);
    let (h, w) = (p.in_h, p.in_w);
    let (kh_n, kw_n) = (p.kernel_h, p.kernel_w);
    let row_len = row_len(p, d);
    let mut buf = [0.0_f32; SEG];
    // the output row, accumulated in whole vectors (row_len >= tiles * 8)
    let mut acc_row = [0.0_f32; SEG];
    let tiles = d.out_w.div_ceil(LANES);
    let (lo, hi) = (V::splat(ctx.lo), V::splat(ctx.hi));
    // stride 2 (MobileNet's downsampling layers): each input row split into its even and
    // its odd columns, so that every tap reads a whole vector; eight floats gathered a
    // tap cost twice PyTorch's time there. (The row is read past `row_len` up to a whole
    // pair of vectors: zeros, `buf` is never written there.)
    let half = row_len.next_multiple_of(2 * LANES) / 2;
    let two = p.stride_w == 2 && 2 * half <= SEG;
    // stride 2 with taps within 16 columns (MobileNet's 3 x 3): the even and odd columns
    // made in registers from the input row itself, each tap's vector by a shift across
    // two of them. Through the stack buffers, each 8-float load straddled two stores
    // made a moment before (the row copied in at the left padding's offset, the phases
    // read one lane in), and every such load waited for the stores to reach the cache:
    // 4.3 ms on MobileNetV2's 144 channels at 56 x 56, three quarters of it there.
    // (not where `wide` emulates its lanes, a Cortex-M4F: no registers to gain, only flash)
    let s2 = crate::arch::HAS_VECTORS && p.stride_w == 2 && (kw_n - 1) * p.dilation_w < 2 * LANES;
    let mut phases = [0.0_f32; SEG];
    let planes = input
        .chunks_exact(h * w)
        .zip(output.chunks_exact_mut(d.col_cols));
    for (i, (x, y)) in planes.enumerate() {
        let c = i % p.out_channels;
        let wc = &weight[c * kh_n * kw_n..][..kh_n * kw_n];
        let b = V::splat(bias.map_or(0.0, |b| b[c]));
        let skip_pad_rows = wc.iter().all(|v| v.is_finite());
        // columns of the padded row that hold input: [pad_left, pad_left + w) clipped
        let lo_col = p.pad_left.min(row_len);
        let hi_col = (p.pad_left + w).clamp(lo_col, row_len);
        if !s2 {
            // (the stride-2 rows read the input in place, never `buf`)
            buf[..row_len].fill(0.0);
        }
        for oh in 0..d.out_h {
            for t in 0..tiles {
                b.store(&mut acc_row[t * LANES..t * LANES + LANES]);
            }
            for kh in 0..kh_n {
                let ihp = oh * p.stride_h + kh * p.dilation_h;
                if skip_pad_rows && is_pad_row(p, ihp) {
                    continue;
                }
                let wr = &wc[kh * kw_n..][..kw_n];
                if s2 {
                    let src = (!is_pad_row(p, ihp)).then(|| &x[(ihp - p.pad_top) * w..][..w]);
                    s2_row::<V>(
                        p.pad_left,
                        src,
                        wr,
                        p.dilation_w,
                        &mut acc_row[..tiles * LANES],
                    );
                    continue;
                }
                padded_row::<V>(p, x, ihp, &mut buf[lo_col..hi_col]);
                if two {
                    // even columns to [0, half), odd ones to [half, 2 half)
                    for j in (0..row_len).step_by(2 * LANES) {
                        let (e, o) = V::load(&buf[j..j + LANES])
                            .deinterleave(V::load(&buf[j + LANES..][..LANES]));
                        e.store(&mut phases[j / 2..j / 2 + LANES]);
                        o.store(&mut phases[half + j / 2..][..LANES]);
                    }
                }
                for t in 0..tiles {
                    let dst = &mut acc_row[t * LANES..t * LANES + LANES];
                    let mut acc = V::load(dst);
                    let base = t * LANES * p.stride_w;
                    for (kw, &wv) in wr.iter().enumerate() {
                        let off = kw * p.dilation_w;
                        let at = base + off;
                        let xv = if p.stride_w == 1 {
                            V::load(&buf[at..at + LANES])
                        } else if two {
                            // lane l reads column (t * 8 + l) * 2 + off
                            V::load(&phases[(off & 1) * half + t * LANES + off / 2..][..LANES])
                        } else {
                            let mut a = [0.0; LANES];
                            for (l, v) in a.iter_mut().enumerate() {
                                *v = buf[at + l * p.stride_w];
                            }
                            V::from_array(a)
                        };
                        acc = V::splat(wv).mul_add(xv, acc);
                    }
                    acc.store(dst);
                }
            }
            let yrow = &mut y[oh * d.out_w..][..d.out_w];
            let full = d.out_w / LANES;
            for t in 0..full {
                let v = V::load(&acc_row[t * LANES..t * LANES + LANES]).clamp(lo, hi);
                v.store(&mut yrow[t * LANES..t * LANES + LANES]);
            }
            if full < tiles {
                let v = V::load(&acc_row[full * LANES..full * LANES + LANES]).clamp(lo, hi);
                let a = v.to_array();
                for (j, o) in yrow[full * LANES..].iter_mut().enumerate() {
                    *o = a[j];
                }
            }
        }
    }
}

/// One kernel row's taps `wr` (columns `dilation` apart) at stride 2 into the output
/// row's sums `acc` (whole vectors): input row `src` (`None`: a padding row, zeros),
/// `pad_left` zeros before it. The even and odd padded columns of each 16 come from
/// [`Vf32::deinterleave`], a tap at column offset `off` is the even (odd) ones shifted
/// down by `off / 2` across the next 16's ([`Vf32::shift_down_in`]; `off < 16`).
#[inline(always)]
fn s2_row<V: Vf32>(
    pad_left: usize,
    src: Option<&[f32]>,
    wr: &[f32],
    dilation: usize,
    acc: &mut [f32],
) {
    let (mut e, mut o) =
        fetch_s2::<V>(src, pad_left, 0).deinterleave(fetch_s2::<V>(src, pad_left, LANES));
    if let ([w0, w1, w2], 1) = (wr, dilation) {
        // 3 x 3 (MobileNet's): the taps' weights broadcast once, the loop unrolled
        let (w0, w1, w2) = (V::splat(*w0), V::splat(*w1), V::splat(*w2));
        for (t, dst) in acc.chunks_exact_mut(LANES).enumerate() {
            let q = 2 * LANES * (t + 1);
            let (e1, o1) = fetch_s2::<V>(src, pad_left, q).deinterleave(fetch_s2::<V>(
                src,
                pad_left,
                q + LANES,
            ));
            let a = w0.mul_add(e, V::load(dst));
            let a = w1.mul_add(o, a);
            w2.mul_add(e.shift_down_in(e1, 1), a).store(dst);
            (e, o) = (e1, o1);
        }
        return;
    }
    for (t, dst) in acc.chunks_exact_mut(LANES).enumerate() {
        let q = 2 * LANES * (t + 1);
        let (e1, o1) =
            fetch_s2::<V>(src, pad_left, q).deinterleave(fetch_s2::<V>(src, pad_left, q + LANES));
        let mut a = V::load(dst);
        for (k, &wv) in wr.iter().enumerate() {
            a = V::splat(wv).mul_add(tap_s2([e, o, e1, o1], k * dilation), a);
        }
        a.store(dst);
        (e, o) = (e1, o1);
    }
}

/// Padded columns `q..q + 8` of an input row `src` (`None`: a padding row, zeros) with
/// `pad_left` zeros before it: short loads at its right end, moved up by the padding at
/// its left. (A function, not a closure: closures do not take the variant's target
/// features, and this one was a call per vector.)
#[inline(always)]
pub(super) fn fetch_s2<V: Vf32>(src: Option<&[f32]>, pad_left: usize, q: usize) -> V {
    match src {
        Some(r) if q >= pad_left && q - pad_left < r.len() => V::load(&r[q - pad_left..]),
        Some(r) if q < pad_left && pad_left - q < LANES => V::load(r).shift_up(pad_left - q),
        _ => V::splat(0.0),
    }
}

/// The inputs a tap `off < 16` columns on reads at stride 2, from the phases of this 16
/// columns and the next (`[even, odd, next even, next odd]`): lane `l` holds padded column
/// `2 l + off`.
#[inline(always)]
pub(super) fn tap_s2<V: Vf32>([e, o, e1, o1]: [V; 4], off: usize) -> V {
    let (v, next) = if off.is_multiple_of(2) {
        (e, e1)
    } else {
        (o, o1)
    };
    if off < 2 {
        v
    } else {
        v.shift_down_in(next, off / 2)
    }
}
