//! The int8 operators: the reference against TFLite's reference kernels bit for bit (the
//! fixtures `fixtures/make_tflite_int8.py` made with LiteRT), the fixed-point steps
//! against their definitions, and every invalid argument refused.

mod common;

use cnnkit_kernels::{
    self as k, Conv2dParams, KernelError, LinearParams, Pool2dParams, QuantOutput, Requant,
    reference as r,
};

/// One convolution fixture (NHWC, OHWI weights; depthwise as `groups == in_channels`).
struct Conv {
    name: &'static str,
    batch: usize,
    in_h: usize,
    in_w: usize,
    in_channels: usize,
    out_channels: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    padding: (usize, usize, usize, usize),
    groups: usize,
    input_scale: f32,
    input_zero_point: i32,
    weight_scales: &'static [f32],
    output_scale: f32,
    output_zero_point: i32,
    min: i8,
    max: i8,
    input: &'static [i8],
    weight: &'static [i8],
    bias: &'static [i32],
    output: &'static [i8],
}

/// One fully connected fixture (one weight scale).
struct Fc {
    name: &'static str,
    batch: usize,
    in_features: usize,
    out_features: usize,
    input_scale: f32,
    input_zero_point: i32,
    weight_scale: f32,
    output_scale: f32,
    output_zero_point: i32,
    min: i8,
    max: i8,
    input: &'static [i8],
    weight: &'static [i8],
    bias: &'static [i32],
    output: &'static [i8],
}

/// One pooling fixture (input and output share scale and zero point).
struct Pool {
    name: &'static str,
    max: bool,
    batch: usize,
    in_h: usize,
    in_w: usize,
    channels: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize, usize, usize),
    lo: i8,
    hi: i8,
    input: &'static [i8],
    output: &'static [i8],
}

/// TFLite's QUANTIZE of `real` and DEQUANTIZE of the result.
struct Affine {
    name: &'static str,
    scale: f32,
    zero_point: i32,
    real: &'static [f32],
    quantized: &'static [i8],
    dequantized: &'static [f32],
}

mod fixtures {
    use super::{Affine, Conv, Fc, Pool};
    include!("fixtures/tflite_int8.rs");
}

impl Conv {
    fn params(&self) -> Conv2dParams {
        let (t, b, l, rt) = self.padding;
        Conv2dParams::new(
            self.batch,
            self.in_channels,
            self.in_h,
            self.in_w,
            self.out_channels,
            self.kernel.0,
            self.kernel.1,
        )
        .with_stride(self.stride.0, self.stride.1)
        .with_padding(t, b, l, rt)
        .with_dilation(self.dilation.0, self.dilation.1)
        .with_groups(self.groups)
    }

    fn requant(&self) -> Vec<Requant> {
        self.weight_scales
            .iter()
            .map(|&w| Requant::for_scales(self.input_scale, w, self.output_scale).unwrap())
            .collect()
    }
}

/// Where two int8 outputs differ first, for the message.
fn first_difference(got: &[i8], want: &[i8]) -> Option<(usize, i8, i8)> {
    got.iter()
        .zip(want)
        .enumerate()
        .find(|(_, (g, w))| g != w)
        .map(|(i, (&g, &w))| (i, g, w))
}

#[test]
fn conv2d_reference_equals_tflite() {
    for c in fixtures::CONV {
        let p = c.params();
        let rq = c.requant();
        let q =
            QuantOutput::new(c.input_zero_point, c.output_zero_point, &rq).with_clamp(c.min, c.max);
        let mut got = vec![0i8; c.output.len()];
        r::conv2d_s8(&p, &q, c.input, c.weight, Some(c.bias), &mut got).unwrap();
        assert_eq!(
            first_difference(&got, c.output),
            None,
            "{}: (index, ours, TFLite's)",
            c.name
        );
        // the fixture is not trivial: outputs spread over the range, some clamped
        let distinct: std::collections::BTreeSet<i8> = got.iter().copied().collect();
        assert!(distinct.len() > 10, "{}: {distinct:?}", c.name);
    }
}

/// LiteRT's x86 FULLY_CONNECTED requantises with one rounding, `(acc * multiplier +
/// 2^(30 - shift)) >> (31 - shift)` (its convolutions, TFLite Micro and CMSIS-NN round
/// twice, as cnnkit does: the doubling high multiply, then the right shift). The two differ
/// where the first rounding lands on a half: there, and only there, LiteRT's output must be
/// the single rounding's.
#[test]
fn fully_connected_reference_equals_tflite_where_one_rounding_agrees() {
    let single = |acc: i32, r: Requant| {
        let total = 31 - r.shift;
        ((i64::from(acc) * i64::from(r.multiplier) + (1i64 << (total - 1))) >> total) as i32
    };
    let mut differ = 0;
    for c in fixtures::FC {
        let p = LinearParams::new(c.batch, c.in_features, c.out_features);
        let rq = [Requant::for_scales(c.input_scale, c.weight_scale, c.output_scale).unwrap()];
        let q =
            QuantOutput::new(c.input_zero_point, c.output_zero_point, &rq).with_clamp(c.min, c.max);
        let mut got = vec![0i8; c.output.len()];
        r::fully_connected_s8(&p, &q, c.input, c.weight, Some(c.bias), &mut got).unwrap();
        for (i, (&g, &want)) in got.iter().zip(c.output).enumerate() {
            let (b, o) = (i / c.out_features, i % c.out_features);
            let mut acc = c.bias[o];
            for j in 0..c.in_features {
                let x = i32::from(c.input[b * c.in_features + j]) - c.input_zero_point;
                acc += x * i32::from(c.weight[o * c.in_features + j]);
            }
            let clamp =
                |v: i32| (v + c.output_zero_point).clamp(i32::from(c.min), i32::from(c.max)) as i8;
            assert_eq!(g, clamp(r::requantize(acc, rq[0])), "{} {i}", c.name);
            if g != want {
                differ += 1;
                assert_eq!(want, clamp(single(acc, rq[0])), "{} {i}", c.name);
                assert_eq!((i32::from(g) - i32::from(want)).abs(), 1, "{} {i}", c.name);
            }
        }
    }
    println!("outputs where LiteRT's one rounding differs: {differ}");
}

#[test]
fn pooling_reference_equals_tflite() {
    for c in fixtures::POOL {
        let (t, b, l, rt) = c.padding;
        let p = Pool2dParams::new(c.batch, c.channels, c.in_h, c.in_w, c.kernel.0, c.kernel.1)
            .with_stride(c.stride.0, c.stride.1)
            .with_padding(t, b, l, rt);
        let mut got = vec![0i8; c.output.len()];
        if c.max {
            r::max_pool2d_s8(&p, c.lo, c.hi, c.input, &mut got).unwrap();
        } else {
            r::avg_pool2d_s8(&p, c.lo, c.hi, c.input, &mut got).unwrap();
        }
        assert_eq!(first_difference(&got, c.output), None, "{}", c.name);
    }
}

#[test]
fn quantize_and_dequantize_reference_equal_tflite() {
    for c in fixtures::AFFINE {
        let mut q = vec![0i8; c.real.len()];
        r::quantize_s8(c.real, c.scale, c.zero_point, &mut q).unwrap();
        assert_eq!(first_difference(&q, c.quantized), None, "{}", c.name);
        let mut back = vec![0.0f32; q.len()];
        r::dequantize_s8(&q, c.scale, c.zero_point, &mut back).unwrap();
        for (i, (g, w)) in back.iter().zip(c.dequantized).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{}: element {i}", c.name);
        }
    }
}

/// `QuantizeMultiplier` on exact powers of two, their neighbours, a value that rounds up
/// to 2^31, and the limits.
#[test]
fn requant_from_real_is_tflites_quantize_multiplier() {
    let r = |x: f64| Requant::from_real(x).unwrap();
    assert_eq!(r(0.0), Requant::default());
    assert_eq!(
        r(1.0),
        Requant {
            multiplier: 1 << 30,
            shift: 1
        }
    );
    assert_eq!(
        r(0.5),
        Requant {
            multiplier: 1 << 30,
            shift: 0
        }
    );
    assert_eq!(
        r(0.75),
        Requant {
            multiplier: 3 << 29,
            shift: 0
        }
    );
    // q = 1 - 2^-40 rounds to 2^31: halved, shift bumped
    let almost = 1.0 - 2f64.powi(-40);
    assert_eq!(
        r(almost),
        Requant {
            multiplier: 1 << 30,
            shift: 1
        }
    );
    // below 2^-32 the multiplier is 0
    assert_eq!(r(2f64.powi(-33)), Requant::default());
    assert_eq!(
        r(2f64.powi(-32)),
        Requant {
            multiplier: 1 << 30,
            shift: -31
        }
    );
    for bad in [-1e-9, f64::NAN, f64::INFINITY, 2f64.powi(30)] {
        assert!(matches!(
            Requant::from_real(bad),
            Err(KernelError::InvalidParameter(_))
        ));
    }
    assert!(Requant::for_scales(1.0, 1.0, 0.0).is_err());
    assert!(Requant::for_scales(1.0, 1.0, f32::NAN).is_err());
    // every value from_real makes is valid, and the round trip is close
    let mut rng = common::Rng(7);
    for _ in 0..10_000 {
        let x = f64::from(rng.uniform().abs() + 1e-6) * 2f64.powi(rng.below(40) as i32 - 30);
        let q = r(x);
        if x < 2f64.powi(-32) {
            assert_eq!(q, Requant::default(), "{x}");
            continue;
        }
        assert!(q.is_valid(), "{x}: {q:?}");
        let back = f64::from(q.multiplier) * 2f64.powi(q.shift - 31);
        assert!((back - x).abs() <= x * 2f64.powi(-30), "{x}: {q:?}");
    }
}

/// The fixed-point steps against TFLite's formulas, written out as TFLite writes them.
#[test]
fn fixed_point_steps_match_tflites_formulas() {
    fn tflite_srdhm(a: i32, b: i32) -> i32 {
        if a == i32::MIN && b == i32::MIN {
            return i32::MAX;
        }
        let ab = i64::from(a) * i64::from(b);
        let nudge = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
        ((ab + nudge) / (1i64 << 31)) as i32
    }
    fn tflite_rdbpot(x: i32, e: u32) -> i32 {
        let mask = ((1i64 << e) - 1) as i32;
        let remainder = x & mask;
        let threshold = (mask >> 1) + i32::from(x < 0);
        (x >> e) + i32::from(remainder > threshold)
    }
    let mut rng = common::Rng(11);
    let special = [
        0,
        1,
        -1,
        2,
        -2,
        i32::MAX,
        i32::MIN,
        i32::MIN + 1,
        1 << 30,
        -(1 << 30),
    ];
    let mut pick = |i: usize| -> i32 {
        if i.is_multiple_of(4) {
            special[rng.below(special.len())]
        } else {
            rng.next_u64() as i32 >> rng.below(31)
        }
    };
    for i in 0..200_000 {
        let (a, b) = (pick(i), pick(i + 1));
        assert_eq!(r::doubling_high_mul(a, b), tflite_srdhm(a, b), "{a} {b}");
        let e = (b as u32) % 32;
        assert_eq!(r::divide_by_pot(a, e), tflite_rdbpot(a, e), "{a} >> {e}");
    }
}

#[test]
fn invalid_arguments_are_refused() {
    let p = Conv2dParams::new(1, 2, 3, 3, 2, 2, 2);
    let d = p.dims().unwrap();
    let rq = [Requant::from_real(0.01).unwrap()];
    let q = QuantOutput::new(0, 0, &rq);
    let (x, w, b) = (
        vec![0i8; d.input_len],
        vec![0i8; d.weight_len],
        vec![0i32; 2],
    );
    let mut y = vec![0i8; d.output_len];
    let call = |q: &QuantOutput<'_>, x: &[i8], w: &[i8], b: &[i32], y: &mut [i8]| {
        r::conv2d_s8(&p, q, x, w, Some(b), y)
    };
    assert!(call(&q, &x, &w, &b, &mut y).is_ok());
    let bad_rq = [Requant {
        multiplier: 5,
        shift: 0,
    }];
    let three = [rq[0]; 3];
    for (what, bad) in [
        ("input zero point", QuantOutput::new(128, 0, &rq)),
        ("output zero point", QuantOutput::new(0, -129, &rq)),
        ("clamp", QuantOutput::new(0, 0, &rq).with_clamp(5, 4)),
        ("multiplier", QuantOutput::new(0, 0, &bad_rq)),
        ("requant count", QuantOutput::new(0, 0, &three)),
        ("no requant", QuantOutput::new(0, 0, &[])),
    ] {
        assert!(call(&bad, &x, &w, &b, &mut y).is_err(), "{what}");
    }
    assert!(call(&q, &x[1..], &w, &b, &mut y).is_err());
    assert!(call(&q, &x, &w[1..], &b, &mut y).is_err());
    assert!(call(&q, &x, &w, &b[1..], &mut y).is_err());
    assert!(call(&q, &x, &w, &b, &mut y[1..]).is_err());

    let pp = Pool2dParams::new(1, 2, 4, 4, 2, 2);
    let (px, mut py) = (vec![0i8; 32], vec![0i8; 8]);
    assert!(r::max_pool2d_s8(&pp, -128, 127, &px, &mut py).is_ok());
    assert!(r::max_pool2d_s8(&pp, 1, 0, &px, &mut py).is_err());
    assert!(r::avg_pool2d_s8(&pp.with_dilation(2, 1), -128, 127, &px, &mut py).is_err());
    assert!(r::avg_pool2d_s8(&pp.with_padding(2, 0, 0, 0), -128, 127, &px, &mut py).is_err());
    assert!(r::avg_pool2d_s8(&pp, -128, 127, &px[1..], &mut py).is_err());

    let mut out = [0i8; 2];
    for (scale, zp) in [
        (0.0, 0),
        (-1.0, 0),
        (f32::NAN, 0),
        (f32::INFINITY, 0),
        (0.1, 200),
    ] {
        assert!(r::quantize_s8(&[0.0, 1.0], scale, zp, &mut out).is_err());
    }
    assert!(r::quantize_s8(&[0.0], 0.1, 0, &mut out).is_err());
    // NaN gives the zero point, the infinities the ends
    r::quantize_s8(&[f32::NAN, f32::INFINITY], 0.1, 3, &mut out).unwrap();
    assert_eq!(out, [3, 127]);
    let _ = k::arch::active();
}
