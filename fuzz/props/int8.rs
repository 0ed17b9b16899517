//! int8: convolution, fully connected, max and average pooling, add, requantise,
//! softmax (to int8 and to f32) and quantise / dequantise, on parameters from the fuzzer's bytes (zero and oversized sizes,
//! zero points and multipliers out of range, clamps upside down): an invalid call returns
//! the reference's error; a valid one equals the reference bit for bit under every variant.

use cnnkit_kernels::{
    self as k, AddParams, Conv2dParams, LinearParams, Pool2dParams, QuantOutput, Requant,
    RequantizeParams, reference as r,
};

use super::{Bytes, for_each_isa};

/// A multiplier from two bytes: mostly valid (2^-24 to 2^6), sometimes raw and invalid.
fn requant(b: &Bytes, i: usize) -> Requant {
    let (x, y) = (b.byte(i), b.byte(i + 1));
    if x == 255 {
        return Requant {
            multiplier: (y as i32) << 23,
            shift: y as i32 - 128,
        };
    }
    Requant::from_real((1.0 + x as f64 / 64.0) * 2f64.powi(y as i32 % 31 - 24)).unwrap()
}

fn zero_point(b: &Bytes, i: usize) -> i32 {
    // a few out of range
    b.byte(i) as i32 - 128
        + if b.byte(i) == 0 && b.byte(i + 1) & 1 == 1 {
            -1
        } else {
            0
        }
}

pub fn int8(data: &[u8]) {
    let mut b = Bytes::new(data, 40);
    match b.byte(0) % 6 {
        0 => conv(&mut b),
        1 => fully_connected(&mut b),
        2 => pool(&mut b),
        3 => add_requantize(&mut b),
        4 => softmax(&mut b),
        _ => quantize(&mut b),
    }
}

fn conv(b: &mut Bytes) {
    let p = Conv2dParams::new(
        b.byte(1) % 3,
        b.byte(2) % 9,
        b.byte(3) % 12,
        b.byte(4) % 24,
        b.byte(5) % 9,
        b.byte(6) % 5,
        b.byte(7) % 5,
    )
    .with_stride(b.byte(8) % 4, b.byte(9) % 4)
    .with_padding(
        b.byte(10) % 4,
        b.byte(11) % 4,
        b.byte(12) % 4,
        b.byte(13) % 4,
    )
    .with_dilation(b.byte(14) % 3, b.byte(15) % 3)
    .with_groups(b.byte(16) % 4);
    let n_rq = if b.byte(17) & 1 == 1 {
        1
    } else {
        p.out_channels
    };
    let rq: Vec<Requant> = (0..n_rq).map(|i| requant(b, 18 + 2 * (i % 4))).collect();
    let q = QuantOutput::new(zero_point(b, 26), zero_point(b, 27), &rq)
        .with_clamp(b.byte(28) as i8, b.byte(29) as i8 | 0x40);
    let (lx, lw, lo) = match p.dims() {
        Ok(d) => (d.input_len, d.weight_len, d.output_len),
        Err(_) => (0, 0, 0),
    };
    let x = b.int8s(lx);
    let w = b.int8s(lw);
    let bias: Vec<i32> = (0..p.out_channels).map(|i| (i as i32 - 3) * 977).collect();
    let bias = (b.byte(30) & 1 == 1).then_some(&bias[..]);
    let mut want = vec![0i8; lo];
    let res = r::conv2d_s8(&p, &q, &x, &w, bias, &mut want);
    let mut s = vec![0i16; k::conv2d_s8_scratch_len(&p).unwrap_or(0)];
    for_each_isa(|isa| {
        // the AVX-512 variant with and without VBMI where the CPU has it (the kernels
        // choose by it within the variant)
        let vbmi = k::arch::avx512_vbmi();
        for on in [true, false].into_iter().take(if vbmi { 2 } else { 1 }) {
            k::arch::use_avx512_vbmi(on);
            let mut got = vec![0x55i8; lo];
            assert_eq!(
                k::conv2d_s8(&p, &q, &x, &w, bias, &mut got, &mut s),
                res,
                "{isa:?} vbmi {on} {p:?}"
            );
            if res.is_ok() {
                assert_eq!(got, want, "conv2d_s8 {isa:?} vbmi {on} {p:?}");
                // the weights packed once: the same outputs
                let mut pk = vec![0u8; k::conv2d_s8_packed_len(&p).unwrap_or(0)];
                k::conv2d_s8_pack(&p, &w, &mut pk).unwrap();
                let mut got = vec![0x55i8; lo];
                k::conv2d_s8_prepacked(&p, &q, &x, &w, &pk, bias, &mut got, &mut s).unwrap();
                assert_eq!(got, want, "conv2d_s8_prepacked {isa:?} vbmi {on} {p:?}");
            }
        }
        k::arch::use_avx512_vbmi(true);
    });
}

fn fully_connected(b: &mut Bytes) {
    let p = LinearParams::new(b.byte(1) % 4, b.byte(2) % 80, b.byte(3) % 20);
    let rq: Vec<Requant> = (0..if b.byte(4) & 1 == 1 {
        1
    } else {
        p.out_features
    })
        .map(|i| requant(b, 5 + 2 * (i % 4)))
        .collect();
    let q = QuantOutput::new(zero_point(b, 13), zero_point(b, 14), &rq)
        .with_clamp(b.byte(15) as i8, b.byte(16) as i8 | 0x40);
    let (li, lw, lo) = p.lens().unwrap_or((0, 0, 0));
    let x = b.int8s(li);
    let w = b.int8s(lw);
    let bias: Vec<i32> = (0..p.out_features).map(|i| (i as i32 - 5) * 1201).collect();
    let bias = (b.byte(17) & 1 == 1).then_some(&bias[..]);
    let mut want = vec![0i8; lo];
    let res = r::fully_connected_s8(&p, &q, &x, &w, bias, &mut want);
    let mut s = vec![0i16; k::fully_connected_s8_scratch_len(&p)];
    for_each_isa(|isa| {
        let mut got = vec![0x55i8; lo];
        assert_eq!(
            k::fully_connected_s8(&p, &q, &x, &w, bias, &mut got, &mut s),
            res
        );
        if res.is_ok() {
            assert_eq!(got, want, "fully_connected_s8 {isa:?} {p:?}");
        }
    });
}

fn pool(b: &mut Bytes) {
    let p = Pool2dParams::new(
        b.byte(1) % 3,
        b.byte(2) % 70,
        b.byte(3) % 12,
        b.byte(4) % 12,
        b.byte(5) % 5,
        b.byte(6) % 5,
    )
    .with_stride(b.byte(7) % 4, b.byte(8) % 4)
    .with_padding(
        b.byte(9) % 4,
        b.byte(10) % 4,
        b.byte(11) % 4,
        b.byte(12) % 4,
    )
    .with_dilation(1 + b.byte(13) % 8 / 7, 1);
    let (lo_clamp, hi_clamp) = (b.byte(14) as i8, b.byte(15) as i8 | 0x40);
    let (li, lo) = p.dims().map_or((0, 0), |d| (d.input_len, d.output_len));
    let x = b.int8s(li);
    for (f, kf) in [
        (r::max_pool2d_s8 as PoolFn, k::max_pool2d_s8 as PoolFn),
        (r::avg_pool2d_s8, k::avg_pool2d_s8),
    ] {
        let mut want = vec![0i8; lo];
        let res = f(&p, lo_clamp, hi_clamp, &x, &mut want);
        for_each_isa(|isa| {
            let mut got = vec![0x55i8; lo];
            assert_eq!(kf(&p, lo_clamp, hi_clamp, &x, &mut got), res);
            if res.is_ok() {
                assert_eq!(got, want, "pool {isa:?} {p:?}");
            }
        });
    }
}

type PoolFn = fn(&Pool2dParams, i8, i8, &[i8], &mut [i8]) -> Result<(), k::KernelError>;

fn add_requantize(b: &mut Bytes) {
    let n = b.byte(1) * 3;
    let (x, y) = (b.int8s(n), b.int8s(n));
    let q = AddParams {
        a_zero_point: zero_point(b, 2),
        b_zero_point: zero_point(b, 3),
        output_zero_point: zero_point(b, 4),
        a: requant(b, 5),
        b: requant(b, 7),
        output: requant(b, 9),
        min: b.byte(11) as i8,
        max: b.byte(12) as i8 | 0x40,
    };
    let cut = b.byte(13) % 8 / 7;
    let mut want = vec![0i8; n];
    let res = r::add_s8(&q, &x, &y[cut.min(n)..], &mut want);
    let mut got = vec![0i8; n];
    assert_eq!(k::add_s8(&q, &x, &y[cut.min(n)..], &mut got), res);
    assert_eq!(
        got,
        if res.is_ok() { want } else { got.clone() },
        "add_s8 {q:?}"
    );
    let rq = RequantizeParams {
        input_zero_point: zero_point(b, 14),
        output_zero_point: zero_point(b, 15),
        requant: requant(b, 16),
    };
    let mut want = vec![0i8; n];
    let res = r::requantize_s8(&rq, &x, &mut want);
    let mut got = vec![0i8; n];
    assert_eq!(k::requantize_s8(&rq, &x, &mut got), res);
    if res.is_ok() {
        assert_eq!(got, want, "requantize_s8 {rq:?}");
    }
}

fn quantize(b: &mut Bytes) {
    let n = b.byte(1) * 2;
    let x = b.floats(n);
    let scale = f32::from_bits(u32::from_le_bytes(
        [b.byte(2), b.byte(3), b.byte(4), b.byte(5)].map(|v| v as u8),
    ));
    let zp = zero_point(b, 6);
    let mut want = vec![0i8; n];
    let res = r::quantize_s8(&x, scale, zp, &mut want);
    let mut got = vec![0i8; n];
    assert_eq!(k::quantize_s8(&x, scale, zp, &mut got), res);
    if res.is_ok() {
        assert_eq!(got, want, "quantize_s8 {scale} {zp}");
        let mut want_f = vec![0.0f32; n];
        r::dequantize_s8(&want, scale, zp, &mut want_f).unwrap();
        let mut got_f = vec![0.0f32; n];
        k::dequantize_s8(&want, scale, zp, &mut got_f).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got_f), bits(&want_f), "dequantize_s8 {scale} {zp}");
    }
}

/// Softmax: any parameters (raw ones too) give an error or outputs; valid ones give
/// probabilities (int8: -128 ..= 127 summing near 256 per row; f32: in [0, 1], summing
/// to 1), the same under every variant.
fn softmax(b: &mut Bytes) {
    let (rows, depth) = (b.byte(1) % 5, b.byte(2) % 40);
    let scale = f32::from_bits(u32::from_le_bytes(
        [b.byte(3), b.byte(4), b.byte(5), b.byte(6)].map(|v| v as u8),
    ));
    let beta = (b.byte(7) + 1) as f32 / 16.0;
    let params = if b.byte(8) == 255 {
        Ok(k::SoftmaxParams {
            multiplier: (b.byte(9) as i32) << 23,
            left_shift: b.byte(10) as i32 - 64,
            diff_min: b.byte(11) as i32 - 200,
        })
    } else {
        k::SoftmaxParams::new(beta, scale)
    };
    let n = rows * depth;
    let x = b.int8s(n);
    if let Ok(p) = params {
        let mut want = vec![0i8; n];
        let res = r::softmax_s8(&p, rows, depth, &x, &mut want);
        for_each_isa(|isa| {
            let mut got = vec![0i8; n];
            assert_eq!(k::softmax_s8(&p, rows, depth, &x, &mut got), res, "{isa:?}");
            assert_eq!(got, want, "{isa:?} {p:?}");
        });
        if res.is_ok() && p.check().is_ok() && SoftmaxSane::of(&p) {
            for row in want.chunks_exact(depth.max(1)) {
                let sum: i32 = row.iter().map(|&q| i32::from(q) + 128).sum();
                assert!((sum - 256).abs() <= depth as i32 + 1, "{p:?} {row:?}");
            }
        }
    }
    let mut y = vec![0.0f32; n];
    if k::softmax_s8_f32(beta, scale, rows, depth, &x, &mut y).is_ok() {
        for row in y.chunks_exact(depth.max(1)) {
            assert!(row.iter().all(|v| (0.0..=1.0).contains(v)), "{row:?}");
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-4, "{s}");
        }
    }
}

/// Parameters `SoftmaxParams::new` makes (raw ones may be valid yet meaningless).
struct SoftmaxSane;

impl SoftmaxSane {
    fn of(p: &k::SoftmaxParams) -> bool {
        let r = 31.0 * f64::from(1u32 << 26) / f64::from(1u32 << p.left_shift.clamp(0, 31));
        p.diff_min == -(r.floor() as i32)
    }
}
