//! The int8 operators: the reference against TFLite's reference kernels bit for bit (the
//! fixtures `fixtures/make_tflite_int8.py` made with LiteRT), the fixed-point steps
//! against their definitions, and every invalid argument refused.

mod common;

use cnnkit_kernels::{
    self as k, AddParams, Conv2dParams, KernelError, LinearParams, Pool2dParams, QuantOutput,
    Requant, RequantizeParams, reference as r,
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

/// TFLite's `ADD` of two int8 tensors of one shape.
struct Add {
    name: &'static str,
    a_scale: f32,
    a_zero_point: i32,
    b_scale: f32,
    b_zero_point: i32,
    output_scale: f32,
    output_zero_point: i32,
    min: i8,
    max: i8,
    a: &'static [i8],
    b: &'static [i8],
    output: &'static [i8],
}

/// TFLite's `QUANTIZE` from int8 to int8.
struct Requantize {
    name: &'static str,
    input_scale: f32,
    input_zero_point: i32,
    output_scale: f32,
    output_zero_point: i32,
    input: &'static [i8],
    output: &'static [i8],
}

#[allow(dead_code)] // (a fixture's documentation fields)
struct Softmax {
    name: &'static str,
    rows: usize,
    depth: usize,
    beta: f32,
    input_scale: f32,
    input_zero_point: i32,
    input: &'static [i8],
    output: &'static [i8],
}

mod fixtures {
    use super::{Add, Affine, Conv, Fc, Pool, Requantize, Softmax};
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

// ---- the kernels against the reference, bit for bit, on every variant ----

use common::{check, coin, range};
use quickcheck::{Arbitrary, Gen};

/// Random int8 values, some at the ends of the range.
fn bytes(rng: &mut common::Rng, n: usize) -> Vec<i8> {
    (0..n)
        .map(|_| match rng.below(10) {
            0 => -128,
            1 => 127,
            _ => rng.next_u64() as i8,
        })
        .collect()
}

/// Multipliers from 2^-20 to 2^4 (the right shifts and some left ones), per channel; a
/// third of them exact powers of two, whose products land on halves (the ties each
/// rounding step must break as TFLite does) for every odd sum.
fn requants(rng: &mut common::Rng, n: usize) -> Vec<Requant> {
    (0..n)
        .map(|_| {
            let e = rng.below(25) as i32 - 20;
            let m = if rng.below(3) == 0 {
                2f64.powi(e)
            } else {
                f64::from(rng.uniform().abs() + 0.01) * 2f64.powi(e)
            };
            Requant::from_real(m).unwrap()
        })
        .collect()
}

#[derive(Clone, Debug)]
struct ConvCase {
    p: Conv2dParams,
    seed: u64,
}

impl Arbitrary for ConvCase {
    fn arbitrary(g: &mut Gen) -> Self {
        loop {
            let groups = *g.choose(&[1, 1, 1, 2, 3]).unwrap();
            let depthwise = range(g, 0, 4) == 0;
            let (cig, cog) = if depthwise {
                (1, range(g, 1, 3))
            } else {
                (range(g, 1, 20), range(g, 1, 10))
            };
            let (kh, kw) = (range(g, 1, 5), range(g, 1, 5));
            let cin = if depthwise {
                range(g, 1, 9)
            } else {
                cig * groups
            };
            let groups = if depthwise { cin } else { groups };
            let mut p = Conv2dParams::new(
                range(g, 1, 3),
                cin,
                range(g, 1, 12),
                range(g, 1, 12),
                cog * groups,
                kh,
                kw,
            )
            .with_groups(groups);
            if coin(g) {
                p = p.with_stride(range(g, 1, 4), range(g, 1, 4));
            }
            if coin(g) {
                p = p.with_padding(
                    range(g, 0, kh),
                    range(g, 0, kh),
                    range(g, 0, kw),
                    range(g, 0, kw),
                );
            }
            if range(g, 0, 4) == 0 {
                p = p.with_dilation(range(g, 1, 3), range(g, 1, 3));
            }
            if p.dims().is_ok() {
                return ConvCase {
                    p,
                    seed: u64::arbitrary(g),
                };
            }
        }
    }
}

fn conv_matches(c: &ConvCase) -> bool {
    let p = &c.p;
    let d = p.dims().unwrap();
    let mut rng = common::Rng(c.seed);
    let x = bytes(&mut rng, d.input_len);
    let w: Vec<i8> = bytes(&mut rng, d.weight_len)
        .into_iter()
        .map(|v| v.max(-127))
        .collect();
    let bias: Vec<i32> = (0..d.bias_len)
        .map(|_| rng.below(20_000) as i32 - 10_000)
        .collect();
    let n_rq = if rng.below(3) == 0 { 1 } else { p.out_channels };
    let rq = requants(&mut rng, n_rq);
    let (zi, zo) = (rng.below(256) as i32 - 128, rng.below(256) as i32 - 128);
    let lo = (rng.below(100) as i32 - 128) as i8;
    let q = QuantOutput::new(zi, zo, &rq).with_clamp(lo, (rng.below(100) as i32 + 27) as i8);
    let b = (rng.below(2) == 0).then_some(&bias[..]);
    let mut want = vec![0i8; d.output_len];
    r::conv2d_s8(p, &q, &x, &w, b, &mut want).unwrap();
    let mut s = vec![i16::MIN; k::conv2d_s8_scratch_len(p).unwrap()];
    common::for_each_int8_variant(|isa, extra| {
        let mut got = vec![0x55i8; d.output_len];
        k::conv2d_s8(p, &q, &x, &w, b, &mut got, &mut s).unwrap();
        assert_eq!(first_difference(&got, &want), None, "{isa:?} {extra} {p:?}");
        // the weights packed once (one byte past the allocation's alignment, then moved
        // to another buffer: the header says where the groups start)
        let mut pk = vec![0u8; k::conv2d_s8_packed_len(p).unwrap() + 1];
        k::conv2d_s8_pack(p, &w, &mut pk[1..]).unwrap();
        let moved = pk[1..].to_vec();
        let mut got = vec![0x55i8; d.output_len];
        k::conv2d_s8_prepacked(p, &q, &x, &w, &moved, b, &mut got, &mut s).unwrap();
        assert_eq!(
            first_difference(&got, &want),
            None,
            "prepacked {isa:?} {extra} {p:?}"
        );
    });
    true
}

/// Packed weights: packed where the VNNI kernel that packs them runs (ResNet's deep 3x3
/// layers, grouped layers), refused for another layer or at another length.
#[test]
fn conv2d_s8_packed_weights_are_checked() {
    // (under each variant in turn: the packed length depends on the one active)
    common::for_each_int8_variant(|_, _| packed_weights_checked());
}

fn packed_weights_checked() {
    let wide = Conv2dParams::new(1, 96, 5, 5, 40, 3, 3).with_padding(1, 1, 1, 1);
    let other = Conv2dParams::new(1, 96, 5, 5, 48, 3, 3).with_padding(1, 1, 1, 1);
    let len = k::conv2d_s8_packed_len(&wide).unwrap();
    #[cfg(target_arch = "x86_64")]
    if k::arch::active() == k::arch::Isa::Avx512 && k::arch::avx512_vnni() {
        assert!(len > 96 * 9 * 40, "{len}");
        assert!(k::conv2d_s8_packed_len(&other).unwrap() > 0);
    }
    let d = wide.dims().unwrap();
    let (x, w) = (vec![1i8; d.input_len], vec![1i8; d.weight_len]);
    let r = [Requant::from_real(0.01).unwrap()];
    let q = QuantOutput::new(0, 0, &r);
    let mut y = vec![0i8; d.output_len];
    let mut s = vec![0i16; k::conv2d_s8_scratch_len(&other).unwrap()];
    let mut pk = vec![0u8; len + 1];
    assert!(matches!(
        k::conv2d_s8_pack(&wide, &w, &mut pk),
        Err(KernelError::LengthMismatch { arg: "packed", .. })
    ));
    assert!(matches!(
        k::conv2d_s8_pack(&wide, &w[1..], &mut pk[..len]),
        Err(KernelError::LengthMismatch { arg: "weight", .. })
    ));
    assert!(matches!(
        k::conv2d_s8_prepacked(&wide, &q, &x, &w, &pk, None, &mut y, &mut s),
        Err(KernelError::LengthMismatch { arg: "packed", .. })
    ));
    if len == 0 {
        return;
    }
    // packed for a layer of the same length but other channels, or never packed
    let od = other.dims().unwrap();
    let mut opk = vec![0u8; k::conv2d_s8_packed_len(&other).unwrap()];
    k::conv2d_s8_pack(&other, &vec![1i8; od.weight_len], &mut opk).unwrap();
    let mut y2 = vec![0i8; od.output_len];
    let mut fresh = vec![0u8; opk.len()];
    assert_eq!(
        k::conv2d_s8_prepacked(
            &other,
            &q,
            &x,
            &vec![1i8; od.weight_len],
            &fresh,
            None,
            &mut y2,
            &mut s
        ),
        Err(KernelError::PackedMismatch)
    );
    // another layer's, of the same length (channels padded to the same blocks)
    assert_eq!(opk.len(), len);
    assert_eq!(
        k::conv2d_s8_prepacked(&wide, &q, &x, &w, &opk, None, &mut y, &mut s),
        Err(KernelError::PackedMismatch)
    );
    k::conv2d_s8_pack(&wide, &w, &mut pk[..len]).unwrap();
    fresh.resize(len, 0);
    fresh.copy_from_slice(&pk[..len]);
    // the header's channels altered: refused
    fresh[12] ^= 1;
    assert_eq!(
        k::conv2d_s8_prepacked(&wide, &q, &x, &w, &fresh, None, &mut y, &mut s),
        Err(KernelError::PackedMismatch)
    );
    // where the groups start, past the end: refused
    fresh.copy_from_slice(&pk[..len]);
    fresh[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        k::conv2d_s8_prepacked(&wide, &q, &x, &w, &fresh, None, &mut y, &mut s),
        Err(KernelError::PackedMismatch)
    );
    let mut want = vec![0i8; d.output_len];
    k::conv2d_s8(&wide, &q, &x, &w, None, &mut want, &mut s).unwrap();
    k::conv2d_s8_prepacked(&wide, &q, &x, &w, &pk[..len], None, &mut y, &mut s).unwrap();
    assert_eq!(y, want);
}

#[test]
fn conv2d_s8_equals_reference() {
    check(
        400,
        (|c: ConvCase| conv_matches(&c)) as fn(ConvCase) -> bool,
    );
}

#[test]
fn kernels_equal_tflite_fixtures() {
    for c in fixtures::CONV {
        let p = c.params();
        let rq = c.requant();
        let q =
            QuantOutput::new(c.input_zero_point, c.output_zero_point, &rq).with_clamp(c.min, c.max);
        let mut s = vec![0i16; k::conv2d_s8_scratch_len(&p).unwrap()];
        common::for_each_int8_variant(|isa, extra| {
            let mut got = vec![0i8; c.output.len()];
            k::conv2d_s8(&p, &q, c.input, c.weight, Some(c.bias), &mut got, &mut s).unwrap();
            assert_eq!(
                first_difference(&got, c.output),
                None,
                "{isa:?} {extra} {}",
                c.name
            );
        });
    }
    for c in fixtures::POOL {
        let (t, b, l, rt) = c.padding;
        let p = Pool2dParams::new(c.batch, c.channels, c.in_h, c.in_w, c.kernel.0, c.kernel.1)
            .with_stride(c.stride.0, c.stride.1)
            .with_padding(t, b, l, rt);
        common::for_each_int8_variant(|isa, extra| {
            let mut got = vec![0i8; c.output.len()];
            if c.max {
                k::max_pool2d_s8(&p, c.lo, c.hi, c.input, &mut got).unwrap();
            } else {
                k::avg_pool2d_s8(&p, c.lo, c.hi, c.input, &mut got).unwrap();
            }
            assert_eq!(
                first_difference(&got, c.output),
                None,
                "{isa:?} {extra} {}",
                c.name
            );
        });
    }
    for c in fixtures::AFFINE {
        let mut q = vec![0i8; c.real.len()];
        k::quantize_s8(c.real, c.scale, c.zero_point, &mut q).unwrap();
        assert_eq!(first_difference(&q, c.quantized), None, "{}", c.name);
        let mut back = vec![0.0f32; q.len()];
        k::dequantize_s8(&q, c.scale, c.zero_point, &mut back).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(c.dequantized), "{}", c.name);
    }
}

#[test]
fn fully_connected_s8_equals_reference() {
    let mut rng = common::Rng(3);
    for i in 0..300 {
        let p = LinearParams::new(1 + rng.below(4), 1 + rng.below(70), 1 + rng.below(20));
        let x = bytes(&mut rng, p.batch * p.in_features);
        let w = bytes(&mut rng, p.in_features * p.out_features);
        let bias: Vec<i32> = (0..p.out_features)
            .map(|_| rng.below(4000) as i32 - 2000)
            .collect();
        let rq = requants(&mut rng, if i % 2 == 0 { 1 } else { p.out_features });
        let q = QuantOutput::new(rng.below(256) as i32 - 128, rng.below(60) as i32 - 30, &rq);
        let b = (i % 3 != 0).then_some(&bias[..]);
        let mut want = vec![0i8; p.batch * p.out_features];
        r::fully_connected_s8(&p, &q, &x, &w, b, &mut want).unwrap();
        let mut s = vec![0i16; k::fully_connected_s8_scratch_len(&p)];
        common::for_each_int8_variant(|isa, extra| {
            let mut got = vec![0i8; want.len()];
            k::fully_connected_s8(&p, &q, &x, &w, b, &mut got, &mut s).unwrap();
            assert_eq!(first_difference(&got, &want), None, "{isa:?} {extra} {p:?}");
        });
    }
}

#[test]
fn pooling_s8_equals_reference() {
    let mut rng = common::Rng(5);
    for i in 0..400 {
        let (kh, kw) = (1 + rng.below(4), 1 + rng.below(4));
        let mut p = Pool2dParams::new(
            1 + rng.below(2),
            1 + rng.below(80),
            1 + rng.below(9),
            1 + rng.below(9),
            kh,
            kw,
        )
        .with_stride(1 + rng.below(3), 1 + rng.below(3));
        if i % 2 == 0 {
            p = p.with_padding(rng.below(kh), rng.below(kh), rng.below(kw), rng.below(kw));
        }
        let Ok(d) = p.dims() else { continue };
        let x = bytes(&mut rng, d.input_len);
        let (lo, hi) = (
            (rng.below(60) as i32 - 128) as i8,
            (rng.below(60) as i32 + 68) as i8,
        );
        for max in [false, true] {
            let f = if max {
                r::max_pool2d_s8
            } else {
                r::avg_pool2d_s8
            };
            let kf = if max {
                k::max_pool2d_s8
            } else {
                k::avg_pool2d_s8
            };
            let mut want = vec![0i8; d.output_len];
            f(&p, lo, hi, &x, &mut want).unwrap();
            common::for_each_int8_variant(|isa, extra| {
                let mut got = vec![0x55i8; d.output_len];
                kf(&p, lo, hi, &x, &mut got).unwrap();
                assert_eq!(
                    first_difference(&got, &want),
                    None,
                    "{isa:?} {extra} {max} {p:?}"
                );
            });
        }
    }
}

#[test]
fn quantize_s8_equals_reference() {
    let mut rng = common::Rng(9);
    let mut x: Vec<f32> = (0..5000)
        .map(|_| f32::from_bits(rng.next_u64() as u32))
        .collect();
    x.extend((0..2000).map(|i| (i as f32 - 1000.0) * 0.25));
    x.extend([
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::MAX,
        f32::MIN,
    ]);
    for (scale, zp) in [(0.5, 0), (0.25, -128), (1e-3, 127), (3.0, 17), (1e-30, -5)] {
        let mut want = vec![0i8; x.len()];
        r::quantize_s8(&x, scale, zp, &mut want).unwrap();
        let mut got = vec![0i8; x.len()];
        k::quantize_s8(&x, scale, zp, &mut got).unwrap();
        assert_eq!(first_difference(&got, &want), None, "{scale} {zp}");
        let mut back_want = vec![0.0f32; x.len()];
        r::dequantize_s8(&want, scale, zp, &mut back_want).unwrap();
        let mut back = vec![0.0f32; x.len()];
        k::dequantize_s8(&want, scale, zp, &mut back).unwrap();
        for (g, w) in back.iter().zip(&back_want) {
            assert_eq!(g.to_bits(), w.to_bits(), "{scale} {zp}");
        }
    }
}

/// Every invalid call gets the reference's error, and too little scratch its own.
#[test]
fn kernels_refuse_what_the_reference_refuses() {
    let rq = [Requant::from_real(0.01).unwrap()];
    let bad_rq = [Requant {
        multiplier: 5,
        shift: 0,
    }];
    let good = Conv2dParams::new(1, 2, 3, 3, 2, 2, 2);
    let d = good.dims().unwrap();
    let qs = [
        QuantOutput::new(0, 0, &rq),
        QuantOutput::new(128, 0, &rq),
        QuantOutput::new(0, 0, &rq).with_clamp(3, 2),
        QuantOutput::new(0, 0, &bad_rq),
        QuantOutput::new(0, 0, &[]),
    ];
    let ps = [
        good,
        Conv2dParams::new(1, 2, 3, 3, 2, 4, 4),
        Conv2dParams::new(1, 2, 3, 3, 3, 2, 2).with_groups(2),
        good.with_stride(0, 1),
        Conv2dParams::new(0, 2, 3, 3, 2, 2, 2),
    ];
    for p in &ps {
        for q in &qs {
            for cut in [0, 1] {
                let x = vec![0i8; d.input_len - cut];
                let w = vec![0i8; d.weight_len];
                let mut y = vec![0i8; d.output_len];
                let want = r::conv2d_s8(p, q, &x, &w, None, &mut y).err();
                let mut s = vec![0i16; 100_000];
                let got = k::conv2d_s8(p, q, &x, &w, None, &mut y, &mut s).err();
                assert_eq!(got, want, "{p:?} {q:?}");
            }
        }
    }
    let need = k::conv2d_s8_scratch_len(&good).unwrap();
    let (x, w, mut y) = (
        vec![0i8; d.input_len],
        vec![0i8; d.weight_len],
        vec![0i8; d.output_len],
    );
    let mut s = vec![0i16; need - 1];
    assert!(matches!(
        k::conv2d_s8(&good, &qs[0], &x, &w, None, &mut y, &mut s),
        Err(KernelError::ScratchTooSmall { .. })
    ));
    let fc = LinearParams::new(2, 3, 4);
    let mut s = vec![0i16; 2];
    assert!(matches!(
        k::fully_connected_s8(&fc, &qs[0], &[0; 6], &[0; 12], None, &mut [0; 8], &mut s),
        Err(KernelError::ScratchTooSmall { .. })
    ));
    for (p, q) in [
        (LinearParams::new(0, 3, 4), qs[0]),
        (fc, qs[1]),
        (fc, qs[4]),
    ] {
        let want = r::fully_connected_s8(&p, &q, &[0; 6], &[0; 12], None, &mut [0; 8]).err();
        let got = k::fully_connected_s8(&p, &q, &[0; 6], &[0; 12], None, &mut [0; 8], &mut [0; 8]);
        assert_eq!(got.err(), want);
        assert!(want.is_some());
    }
    let pp = Pool2dParams::new(1, 2, 4, 4, 2, 2);
    for (p, lo, hi, n) in [
        (pp, -128, 127, 31),
        (pp, 1, 0, 32),
        (pp.with_dilation(2, 1), -128, 127, 32),
        (pp.with_padding(0, 2, 0, 0), -128, 127, 32),
    ] {
        let x = vec![0i8; n];
        for (f, kf) in [
            (
                r::max_pool2d_s8 as fn(&_, _, _, &_, &mut _) -> _,
                k::max_pool2d_s8 as fn(&_, _, _, &_, &mut _) -> _,
            ),
            (r::avg_pool2d_s8, k::avg_pool2d_s8),
        ] {
            let want = f(&p, lo, hi, &x, &mut [0; 8]).err();
            assert!(want.is_some());
            assert_eq!(kf(&p, lo, hi, &x, &mut [0; 8]).err(), want);
        }
    }
    for (scale, zp, n) in [(0.0, 0, 2), (f32::NAN, 0, 2), (0.1, -129, 2), (0.1, 0, 1)] {
        let want = r::quantize_s8(&[0.0, 1.0], scale, zp, &mut vec![0; n]).err();
        assert!(want.is_some());
        assert_eq!(
            k::quantize_s8(&[0.0, 1.0], scale, zp, &mut vec![0; n]).err(),
            want
        );
        let want = r::dequantize_s8(&[0, 1], scale, zp, &mut vec![0.0; n]).err();
        assert_eq!(
            k::dequantize_s8(&[0, 1], scale, zp, &mut vec![0.0; n]).err(),
            want
        );
    }
}

/// ADD and QUANTIZE (int8 to int8): the reference and the kernels against LiteRT, and the
/// kernels against the reference on random parameters.
#[test]
fn add_and_requantize_equal_tflite_and_the_reference() {
    for c in fixtures::ADD {
        let q = AddParams::from_scales(
            c.a_scale,
            c.a_zero_point,
            c.b_scale,
            c.b_zero_point,
            c.output_scale,
            c.output_zero_point,
        )
        .unwrap()
        .with_clamp(c.min, c.max);
        let mut got = vec![0i8; c.output.len()];
        r::add_s8(&q, c.a, c.b, &mut got).unwrap();
        assert_eq!(
            first_difference(&got, c.output),
            None,
            "reference {}",
            c.name
        );
        common::for_each_int8_variant(|isa, extra| {
            let mut got = vec![0i8; c.output.len()];
            k::add_s8(&q, c.a, c.b, &mut got).unwrap();
            assert_eq!(
                first_difference(&got, c.output),
                None,
                "{isa:?} {extra} {}",
                c.name
            );
        });
    }
    for c in fixtures::REQUANTIZE {
        let q = RequantizeParams::from_scales(
            c.input_scale,
            c.input_zero_point,
            c.output_scale,
            c.output_zero_point,
        )
        .unwrap();
        let mut got = vec![0i8; c.output.len()];
        r::requantize_s8(&q, c.input, &mut got).unwrap();
        assert_eq!(
            first_difference(&got, c.output),
            None,
            "reference {}",
            c.name
        );
        k::requantize_s8(&q, c.input, &mut got).unwrap();
        assert_eq!(first_difference(&got, c.output), None, "{}", c.name);
    }
    let mut rng = common::Rng(21);
    let all: Vec<i8> = (-128..=127).collect();
    for _ in 0..300 {
        let s = |rng: &mut common::Rng| 0.001 + rng.uniform().abs() * 0.2;
        let z = |rng: &mut common::Rng| rng.below(256) as i32 - 128;
        let (sa, za, sb, zb, so, zo) = (
            s(&mut rng),
            z(&mut rng),
            s(&mut rng),
            z(&mut rng),
            s(&mut rng),
            z(&mut rng),
        );
        let Ok(q) = AddParams::from_scales(sa, za, sb, zb, so, zo) else {
            continue;
        };
        let b = bytes(&mut rng, all.len());
        let mut want = vec![0i8; all.len()];
        r::add_s8(&q, &all, &b, &mut want).unwrap();
        let mut got = vec![0i8; all.len()];
        k::add_s8(&q, &all, &b, &mut got).unwrap();
        assert_eq!(first_difference(&got, &want), None, "{q:?}");
        let q = RequantizeParams::from_scales(sa, za, so, zo).unwrap();
        r::requantize_s8(&q, &all, &mut want).unwrap();
        k::requantize_s8(&q, &all, &mut got).unwrap();
        assert_eq!(first_difference(&got, &want), None, "{q:?}");
    }
    // refused alike
    assert!(AddParams::from_scales(0.1, 0, 0.1, 0, 0.0, 0).is_err());
    assert!(AddParams::from_scales(0.1, 0, 0.1, 200, 0.1, 0).is_err());
    // an output scale 2^-21 of the inputs': the output multiplier would be 1 or more
    assert!(AddParams::from_scales(1.0, 0, 1.0, 0, 1e-7, 0).is_err());
    let q = AddParams::from_scales(0.1, 0, 0.1, 0, 0.1, 0).unwrap();
    for bad in [
        q.with_clamp(1, 0),
        AddParams {
            a_zero_point: 128,
            ..q
        },
        AddParams {
            output: Requant {
                multiplier: 1 << 30,
                shift: 1,
            },
            ..q
        },
    ] {
        let want = r::add_s8(&bad, &[0; 2], &[0; 2], &mut [0; 2]).err();
        assert!(want.is_some(), "{bad:?}");
        assert_eq!(k::add_s8(&bad, &[0; 2], &[0; 2], &mut [0; 2]).err(), want);
    }
    for (a, b, o) in [(2, 1, 2), (2, 2, 1)] {
        let want = r::add_s8(&q, &vec![0; a], &vec![0; b], &mut vec![0; o]).err();
        assert!(want.is_some());
        assert_eq!(
            k::add_s8(&q, &vec![0; a], &vec![0; b], &mut vec![0; o]).err(),
            want
        );
    }
    assert!(RequantizeParams::from_scales(0.1, 0, 0.0, 0).is_err());
    assert!(RequantizeParams::from_scales(f32::NAN, 0, 0.1, 0).is_err());
    let rq = RequantizeParams::from_scales(0.1, 0, 0.1, 0).unwrap();
    let bad = RequantizeParams {
        output_zero_point: -129,
        ..rq
    };
    assert_eq!(
        k::requantize_s8(&bad, &[0], &mut [0]).err(),
        r::requantize_s8(&bad, &[0], &mut [0]).err()
    );
    assert!(k::requantize_s8(&rq, &[0], &mut [0; 2]).is_err());
}

// ---- the int8 network ----

use cnnkit_kernels::qnet::{QLayer, QNetwork};

/// LeNet-5 in int8 (NHWC), random weights and multipliers, through `QNetwork` and through
/// the reference layer by layer: the same bytes, on every variant.
#[test]
fn qnetwork_equals_the_reference_layer_by_layer() {
    let mut rng = common::Rng(31);
    let c1 = Conv2dParams::new(2, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2);
    let p1 = Pool2dParams::new(2, 6, 28, 28, 2, 2);
    let c2 = Conv2dParams::new(2, 6, 14, 14, 16, 5, 5);
    let p2 = Pool2dParams::new(2, 16, 10, 10, 2, 2);
    let (f1, f2, f3) = (
        LinearParams::new(2, 400, 120),
        LinearParams::new(2, 120, 84),
        LinearParams::new(2, 84, 10),
    );
    let w = |rng: &mut common::Rng, n: usize| -> Vec<i8> {
        bytes(rng, n).into_iter().map(|v| v.max(-127)).collect()
    };
    let b = |rng: &mut common::Rng, n: usize| -> Vec<i32> {
        (0..n).map(|_| rng.below(6000) as i32 - 3000).collect()
    };
    let (w1, w2) = (w(&mut rng, 150), w(&mut rng, 2400));
    let (w3, w4, w5) = (w(&mut rng, 48_000), w(&mut rng, 10_080), w(&mut rng, 840));
    // (the last layer has none: the path without a bias)
    let (b1, b2, b3, b4) = (
        b(&mut rng, 6),
        b(&mut rng, 16),
        b(&mut rng, 120),
        b(&mut rng, 84),
    );
    let r = |rng: &mut common::Rng, n: usize, scale: f64| -> Vec<Requant> {
        (0..n)
            .map(|_| Requant::from_real(scale * (0.5 + f64::from(rng.uniform().abs()))).unwrap())
            .collect()
    };
    let (r1, r2, r3, r4, r5) = (
        r(&mut rng, 6, 1.0 / 400.0),
        r(&mut rng, 16, 1.0 / 1500.0),
        r(&mut rng, 1, 1.0 / 1000.0),
        r(&mut rng, 84, 1.0 / 300.0),
        r(&mut rng, 1, 1.0 / 1500.0),
    );
    let q1 = QuantOutput::new(-128, -128, &r1).with_clamp(-128, 127);
    let q2 = QuantOutput::new(-128, -128, &r2).with_clamp(-128, 127);
    let q3 = QuantOutput::new(-128, -128, &r3).with_clamp(-128, 127);
    let q4 = QuantOutput::new(-128, -128, &r4).with_clamp(-128, 127);
    let q5 = QuantOutput::new(-128, 3, &r5);
    let layers = [
        QLayer::Conv2d {
            params: c1,
            weight: &w1,
            bias: Some(&b1),
            q: q1,
        },
        QLayer::MaxPool2d {
            params: p1,
            min: -128,
            max: 127,
        },
        QLayer::Conv2d {
            params: c2,
            weight: &w2,
            bias: Some(&b2),
            q: q2,
        },
        QLayer::AvgPool2d {
            params: p2,
            min: -128,
            max: 127,
        },
        QLayer::Linear {
            params: f1,
            weight: &w3,
            bias: Some(&b3),
            q: q3,
        },
        QLayer::Linear {
            params: f2,
            weight: &w4,
            bias: Some(&b4),
            q: q4,
        },
        QLayer::Linear {
            params: f3,
            weight: &w5,
            bias: None,
            q: q5,
        },
    ];
    let net = QNetwork::new(&layers).unwrap();
    assert_eq!(net.input_len(), 2 * 784);
    assert_eq!(net.output_len(), 20);
    // the largest input + output: the first pool's
    assert_eq!(net.arena_len(), 2 * 6 * 784 + 2 * 6 * 196);
    let x = bytes(&mut rng, 2 * 784);

    // the reference, layer by layer
    let mut a1 = vec![0i8; 2 * 6 * 784];
    r::conv2d_s8(&c1, &q1, &x, &w1, Some(&b1), &mut a1).unwrap();
    let mut a2 = vec![0i8; 2 * 6 * 196];
    r::max_pool2d_s8(&p1, -128, 127, &a1, &mut a2).unwrap();
    let mut a3 = vec![0i8; 2 * 16 * 100];
    r::conv2d_s8(&c2, &q2, &a2, &w2, Some(&b2), &mut a3).unwrap();
    let mut a4 = vec![0i8; 2 * 400];
    r::avg_pool2d_s8(&p2, -128, 127, &a3, &mut a4).unwrap();
    let mut a5 = vec![0i8; 2 * 120];
    r::fully_connected_s8(&f1, &q3, &a4, &w3, Some(&b3), &mut a5).unwrap();
    let mut a6 = vec![0i8; 2 * 84];
    r::fully_connected_s8(&f2, &q4, &a5, &w4, Some(&b4), &mut a6).unwrap();
    let mut want = vec![0i8; 20];
    r::fully_connected_s8(&f3, &q5, &a6, &w5, None, &mut want).unwrap();
    // no layer collapses its values (the multipliers fit the sums)
    for (name, a) in [
        ("conv1", &a1),
        ("pool1", &a2),
        ("conv2", &a3),
        ("pool2", &a4),
        ("fc1", &a5),
        ("fc2", &a6),
        ("fc3", &want),
    ] {
        let distinct: std::collections::BTreeSet<i8> = a.iter().copied().collect();
        // (the logits: 20 values)
        let least = if a.len() > 20 { 10 } else { 8 };
        assert!(distinct.len() >= least, "{name} degenerate: {distinct:?}");
    }

    common::for_each_int8_variant(|isa, extra| {
        let mut arena = vec![0x55i8; net.arena_len()];
        let mut scratch = vec![0x5555i16; net.scratch_len()];
        let got = net.run(&x, &mut arena, &mut scratch).unwrap();
        assert_eq!(got, &want[..], "{isa:?} {extra}");
        // one buffer for activations and scratch: the same, in less memory; at any
        // alignment of the buffer and with room to spare
        assert!(net.shared_len() <= net.arena_len() + 2 * net.scratch_len() + 1);
        for (skip, extra) in [(0, 0), (1, 0), (0, 3), (1, 1)] {
            let mut buf = vec![0x55i8; skip + net.shared_len() + extra];
            let buf = &mut buf[skip..];
            net.input_mut(buf)
                .unwrap_or_else(|_| panic!("{isa:?} {extra}"))
                .copy_from_slice(&x);
            let got = net.run_shared(buf).unwrap();
            assert_eq!(
                got,
                &want[..],
                "{isa:?} {extra} shared, skip {skip} extra {extra}"
            );
        }
    });
    let mut short = vec![0i8; net.shared_len() - 1];
    assert!(matches!(
        net.run_shared(&mut short),
        Err(KernelError::ScratchTooSmall { .. })
    ));

    // what it refuses
    let mut arena = vec![0i8; net.arena_len()];
    let mut scratch = vec![0i16; net.scratch_len()];
    assert!(matches!(
        net.run(&x[1..], &mut arena, &mut scratch),
        Err(KernelError::LengthMismatch { .. })
    ));
    assert!(matches!(
        net.run(&x, &mut arena[1..], &mut scratch),
        Err(KernelError::ScratchTooSmall { .. })
    ));
    if net.scratch_len() > 0 {
        let mut short = vec![0i16; net.scratch_len() - 1];
        assert!(matches!(
            net.run(&x, &mut arena, &mut short),
            Err(KernelError::ScratchTooSmall { .. })
        ));
    }
    let mut bad = layers;
    bad.swap(1, 2);
    assert!(matches!(
        QNetwork::new(&bad),
        Err(KernelError::LayerMismatch { layer: 1, .. })
    ));
    let mut bad = layers;
    bad[0] = QLayer::Conv2d {
        params: c1,
        weight: &w1[1..],
        bias: Some(&b1),
        q: q1,
    };
    assert!(matches!(
        QNetwork::new(&bad),
        Err(KernelError::LengthMismatch { .. })
    ));
    let mut bad = layers;
    bad[4] = QLayer::Linear {
        params: f1,
        weight: &w3,
        bias: Some(&b3),
        q: q1,
    };
    assert!(matches!(
        QNetwork::new(&bad),
        Err(KernelError::LengthMismatch { arg: "requant", .. })
    ));
    let mut bad = layers;
    bad[1] = QLayer::MaxPool2d {
        params: Pool2dParams::new(1, 6, 28, 28, 2, 2),
        min: -128,
        max: 127,
    };
    assert!(QNetwork::new(&bad).is_err());
    assert!(matches!(QNetwork::new(&[]), Err(KernelError::ZeroSize(_))));
}

/// A `QNetwork` program run by hand: the reference kernels, the kept values in a `Vec`.
fn qby_hand(layers: &[QLayer<'_>], input: &[i8]) -> Vec<i8> {
    let mut x = input.to_vec();
    let mut kept: Vec<Vec<i8>> = Vec::new();
    let batch = layers
        .iter()
        .find_map(|l| match *l {
            QLayer::Conv2d { params: p, .. } => Some(p.batch),
            QLayer::Linear { params: p, .. } => Some(p.batch),
            QLayer::MaxPool2d { params: p, .. } | QLayer::AvgPool2d { params: p, .. } => {
                Some(p.batch)
            }
            _ => None,
        })
        .unwrap_or(1);
    for l in layers {
        x = match *l {
            QLayer::Conv2d {
                params,
                weight,
                bias,
                q,
            } => {
                let mut y = vec![0i8; params.dims().unwrap().output_len];
                r::conv2d_s8(&params, &q, &x, weight, bias, &mut y).unwrap();
                y
            }
            QLayer::Linear {
                params,
                weight,
                bias,
                q,
            } => {
                let mut y = vec![0i8; params.lens().unwrap().2];
                r::fully_connected_s8(&params, &q, &x, weight, bias, &mut y).unwrap();
                y
            }
            QLayer::MaxPool2d { params, min, max } => {
                let mut y = vec![0i8; params.dims().unwrap().output_len];
                r::max_pool2d_s8(&params, min, max, &x, &mut y).unwrap();
                y
            }
            QLayer::AvgPool2d { params, min, max } => {
                let mut y = vec![0i8; params.dims().unwrap().output_len];
                r::avg_pool2d_s8(&params, min, max, &x, &mut y).unwrap();
                y
            }
            QLayer::Clamp { min, max } => x.iter().map(|v| (*v).clamp(min, max)).collect(),
            QLayer::Push => {
                kept.push(x.clone());
                x
            }
            QLayer::Load { depth } => kept[kept.len() - 1 - depth as usize].clone(),
            QLayer::AddPop { q } => {
                let a = kept.pop().unwrap();
                let mut y = vec![0i8; x.len()];
                r::add_s8(&q, &a, &x, &mut y).unwrap();
                y
            }
            QLayer::CatPop {
                pixels,
                kept: rk,
                current: rc,
            } => {
                let a = kept.pop().unwrap();
                let p = batch * pixels;
                let (mut qa, mut qx) = (vec![0i8; a.len()], vec![0i8; x.len()]);
                r::requantize_s8(&rk, &a, &mut qa).unwrap();
                r::requantize_s8(&rc, &x, &mut qx).unwrap();
                let (ca, cx) = (a.len() / p, x.len() / p);
                (0..p)
                    .flat_map(|i| {
                        qa[i * ca..(i + 1) * ca]
                            .iter()
                            .chain(&qx[i * cx..(i + 1) * cx])
                            .copied()
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
            QLayer::Drop => {
                kept.pop().unwrap();
                x
            }
        };
    }
    assert!(kept.is_empty());
    x
}

/// Residual and concatenation blocks (`Push`, `Load`, `AddPop`, `CatPop`, `Drop`,
/// `Clamp`) through `QNetwork`, in its arena with a separate scratch and in one shared
/// buffer, against the reference kernels run by hand: the same bytes, batches 1 and 2,
/// every int8 variant, the arena filled with garbage first.
#[test]
fn qnetwork_blocks_match_the_kernels_by_hand() {
    let mut rng = common::Rng(77);
    // (leaked: the layers borrow their data for the whole test)
    let mut conv = |b: usize, c: usize, o: usize, k: usize, s: usize, p: usize, zin: i32| {
        let params = Conv2dParams::new(b, c, 6, 6, o, k, k)
            .with_stride(s, s)
            .with_padding(p, p, p, p);
        let w: &'static [i8] = Box::leak(
            bytes(&mut rng, o * k * k * c)
                .into_iter()
                .map(|v| v.max(-127))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let bias: &'static [i32] = Box::leak(
            (0..o)
                .map(|_| rng.below(4000) as i32 - 2000)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let rq: &'static [Requant] = Box::leak(
            (0..o)
                .map(|_| {
                    let m = (0.5 + f64::from(rng.uniform().abs())) / (60.0 * (k * k * c) as f64);
                    Requant::from_real(m).unwrap()
                })
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let zout = rng.below(41) as i32 - 20;
        QLayer::Conv2d {
            params,
            weight: w,
            bias: Some(bias),
            q: QuantOutput::new(zin, zout, rq),
        }
    };
    let add = |za: i32, zb: i32, zo: i32| QLayer::AddPop {
        q: AddParams::from_scales(0.05, za, 0.08, zb, 0.1, zo)
            .unwrap()
            .with_clamp(zo as i8, 127),
    };
    let cat = |pixels: usize, same: bool| QLayer::CatPop {
        pixels,
        kept: RequantizeParams::from_scales(0.05, 3, 0.07, -2).unwrap(),
        current: if same {
            RequantizeParams::from_scales(0.07, -2, 0.07, -2).unwrap()
        } else {
            RequantizeParams::from_scales(0.02, 10, 0.07, -2).unwrap()
        },
    };
    for b in [1, 2] {
        let programs: Vec<Vec<QLayer<'static>>> = vec![
            // res[conv conv] relu
            vec![
                QLayer::Push,
                conv(b, 2, 2, 3, 1, 1, 0),
                conv(b, 2, 2, 3, 1, 1, 5),
                add(0, 7, -3),
                QLayer::Clamp { min: 0, max: 100 },
            ],
            // res[conv(stride 2) | conv 1x1 stride 2]
            vec![
                QLayer::Push,
                conv(b, 2, 4, 3, 2, 1, 0),
                QLayer::Push,
                QLayer::Load { depth: 1 },
                conv(b, 2, 4, 1, 2, 0, 0),
                add(4, -9, 1),
                QLayer::Drop,
            ],
            // cat[conv | | conv]
            vec![
                QLayer::Push,
                conv(b, 2, 3, 3, 1, 1, 0),
                QLayer::Push,
                QLayer::Load { depth: 1 },
                QLayer::Push,
                QLayer::Load { depth: 2 },
                conv(b, 2, 1, 1, 1, 0, 0),
                cat(36, false),
                cat(36, true),
                QLayer::Drop,
            ],
            // cat[conv | | conv] max-pool
            vec![
                QLayer::Push,
                conv(b, 2, 3, 3, 1, 1, 0),
                QLayer::Push,
                QLayer::Load { depth: 1 },
                QLayer::Push,
                QLayer::Load { depth: 2 },
                conv(b, 2, 1, 1, 1, 0, 0),
                cat(36, true),
                cat(36, false),
                QLayer::Drop,
                QLayer::MaxPool2d {
                    params: Pool2dParams::new(b, 6, 6, 6, 2, 2),
                    min: -128,
                    max: 127,
                },
            ],
            // res[res[conv] conv] with the inner one on the same input; a clamp first
            vec![
                QLayer::Clamp {
                    min: -100,
                    max: 120,
                },
                QLayer::Push,
                QLayer::Push,
                conv(b, 2, 2, 3, 1, 1, 0),
                add(0, 1, 2),
                conv(b, 2, 2, 1, 1, 0, 2),
                add(0, 2, 0),
            ],
        ];
        for (i, layers) in programs.iter().enumerate() {
            let net = QNetwork::new(layers).unwrap_or_else(|e| panic!("program {i}: {e:?}"));
            let x = bytes(&mut common::Rng(500 + i as u64), net.input_len());
            let want = qby_hand(layers, &x);
            let distinct: std::collections::BTreeSet<i8> = want.iter().copied().collect();
            assert!(distinct.len() >= 8, "program {i} degenerate: {distinct:?}");
            common::for_each_int8_variant(|isa, extra| {
                let what = format!("program {i}, batch {b}, {isa:?} {extra}");
                let mut arena = vec![0x55i8; net.arena_len()];
                let mut scratch = vec![0x5555i16; net.scratch_len()];
                let got = net.run(&x, &mut arena, &mut scratch).unwrap();
                assert_eq!(got, &want[..], "{what}");
                for skip in [0, 1] {
                    let mut buf = vec![0x55i8; skip + net.shared_len()];
                    let buf = &mut buf[skip..];
                    net.input_mut(buf).unwrap().copy_from_slice(&x);
                    assert_eq!(net.run_shared(buf).unwrap(), &want[..], "{what} shared");
                }
            });
        }
    }
}

/// One step of a random int8 program: a convolution with its own data, or a layer that
/// holds none.
enum Step {
    Conv {
        params: Conv2dParams,
        weight: Vec<i8>,
        bias: Vec<i32>,
        requant: Vec<Requant>,
        zin: i32,
        zout: i32,
        clamp: (i8, i8),
    },
    Op(QLayer<'static>),
}

/// A random program of blocks (nested up to `depth`) from `c` channels of `side x side`
/// images: its steps and the channels it ends with.
fn random_program(
    rng: &mut common::Rng,
    b: usize,
    side: usize,
    c: usize,
    depth: u32,
) -> (Vec<Step>, usize) {
    let mut steps = Vec::new();
    let mut c = c;
    let items = 1 + rng.below(3);
    for _ in 0..items {
        let choice = if depth == 0 {
            rng.below(2)
        } else {
            rng.below(5)
        };
        match choice {
            0 => {
                let o = 1 + rng.below(5);
                steps.push(random_conv(rng, b, side, c, o));
                c = o;
            }
            1 => {
                let lo = rng.below(256) as i32 - 128;
                let hi = lo + rng.below((128 - lo) as usize) as i32;
                steps.push(Step::Op(QLayer::Clamp {
                    min: lo as i8,
                    max: hi as i8,
                }));
            }
            2 => {
                // res[BODY]: the body back to c channels
                steps.push(Step::Op(QLayer::Push));
                let (body, o) = random_program(rng, b, side, c, depth - 1);
                steps.extend(body);
                if o != c {
                    steps.push(random_conv(rng, b, side, o, c));
                }
                steps.push(Step::Op(QLayer::AddPop { q: random_add(rng) }));
            }
            3 => {
                // res[BODY | SHORTCUT] to o channels
                steps.push(Step::Op(QLayer::Push));
                let (body, o) = random_program(rng, b, side, c, depth - 1);
                steps.extend(body);
                steps.push(Step::Op(QLayer::Push));
                steps.push(Step::Op(QLayer::Load { depth: 1 }));
                steps.push(random_conv(rng, b, side, c, o));
                steps.push(Step::Op(QLayer::AddPop { q: random_add(rng) }));
                steps.push(Step::Op(QLayer::Drop));
                c = o;
            }
            _ => {
                // cat[A | B] or cat[A | ] (the identity)
                steps.push(Step::Op(QLayer::Push));
                let (a, ca) = random_program(rng, b, side, c, depth - 1);
                steps.extend(a);
                steps.push(Step::Op(QLayer::Push));
                steps.push(Step::Op(QLayer::Load { depth: 1 }));
                let cb = if rng.below(3) == 0 {
                    c
                } else {
                    let (bb, cb) = random_program(rng, b, side, c, depth - 1);
                    steps.extend(bb);
                    cb
                };
                steps.push(Step::Op(QLayer::CatPop {
                    pixels: side * side,
                    kept: random_requantize(rng),
                    current: random_requantize(rng),
                }));
                steps.push(Step::Op(QLayer::Drop));
                c = ca + cb;
            }
        }
    }
    (steps, c)
}

fn random_conv(rng: &mut common::Rng, b: usize, side: usize, c: usize, o: usize) -> Step {
    let k = if rng.below(2) == 0 { 1 } else { 3 };
    let p = k / 2;
    let params = Conv2dParams::new(b, c, side, side, o, k, k).with_padding(p, p, p, p);
    let weight = bytes(rng, o * k * k * c)
        .into_iter()
        .map(|v| v.max(-127))
        .collect();
    let bias = (0..o).map(|_| rng.below(4000) as i32 - 2000).collect();
    let requant = (0..o)
        .map(|_| {
            let m = (0.5 + f64::from(rng.uniform().abs())) / (60.0 * (k * k * c) as f64);
            Requant::from_real(m).unwrap()
        })
        .collect();
    let lo = rng.below(160) as i32 - 128;
    Step::Conv {
        params,
        weight,
        bias,
        requant,
        zin: rng.below(41) as i32 - 20,
        zout: rng.below(41) as i32 - 20,
        clamp: (lo as i8, 127),
    }
}

fn random_add(rng: &mut common::Rng) -> AddParams {
    let s = |rng: &mut common::Rng| 0.01 + 0.2 * rng.uniform().abs();
    let z = |rng: &mut common::Rng| rng.below(61) as i32 - 30;
    let zo = z(rng);
    AddParams::from_scales(s(rng), z(rng), s(rng), z(rng), 2.0 * s(rng), zo)
        .unwrap()
        .with_clamp(if rng.below(2) == 0 { zo as i8 } else { -128 }, 127)
}

fn random_requantize(rng: &mut common::Rng) -> RequantizeParams {
    if rng.below(3) == 0 {
        // the same scale and zero point: copied
        let z = rng.below(61) as i32 - 30;
        return RequantizeParams::from_scales(0.05, z, 0.05, z).unwrap();
    }
    let s = |rng: &mut common::Rng| 0.01 + 0.2 * rng.uniform().abs();
    RequantizeParams::from_scales(
        s(rng),
        rng.below(61) as i32 - 30,
        s(rng),
        rng.below(61) as i32 - 30,
    )
    .unwrap()
}

/// Random programs of nested residual and concatenation blocks, convolutions and clamps,
/// batches 1 and 2: `QNetwork` (arena and scratch, one shared buffer) equals the
/// reference kernels run by hand, on every int8 variant.
#[test]
fn random_qnetwork_block_programs_match_the_kernels_by_hand() {
    let cases = if cfg!(miri) { 3 } else { 150 };
    for seed in 0..cases {
        let mut rng = common::Rng(9000 + seed);
        let (b, side) = (1 + rng.below(2), 1 + rng.below(5));
        let c = 1 + rng.below(4);
        let (steps, _) = random_program(&mut rng, b, side, c, 3);
        // a first sized layer (the input's length) unless the program starts with one
        let mut all = vec![random_conv(&mut rng, b, side, c, c)];
        all.extend(steps);
        let layers: Vec<QLayer<'_>> = all
            .iter()
            .map(|s| match s {
                Step::Conv {
                    params,
                    weight,
                    bias,
                    requant,
                    zin,
                    zout,
                    clamp,
                } => QLayer::Conv2d {
                    params: *params,
                    weight,
                    bias: Some(bias),
                    q: QuantOutput::new(*zin, *zout, requant).with_clamp(clamp.0, clamp.1),
                },
                Step::Op(l) => *l,
            })
            .collect();
        let net = QNetwork::new(&layers).unwrap_or_else(|e| panic!("seed {seed}: {e:?}"));
        let x = bytes(&mut rng, net.input_len());
        let want = qby_hand(&layers, &x);
        assert_eq!(want.len(), net.output_len());
        common::for_each_int8_variant(|isa, extra| {
            let what = format!("seed {seed}, {} layers, {isa:?} {extra}", layers.len());
            let mut arena = vec![0x55i8; net.arena_len()];
            let mut scratch = vec![0x5555i16; net.scratch_len()];
            assert_eq!(
                net.run(&x, &mut arena, &mut scratch).unwrap(),
                &want[..],
                "{what}"
            );
            let mut buf = vec![0x55i8; net.shared_len()];
            net.input_mut(&mut buf).unwrap().copy_from_slice(&x);
            assert_eq!(
                net.run_shared(&mut buf).unwrap(),
                &want[..],
                "{what} shared"
            );
        });
    }
}

/// The multiplier of equal scales is what the concatenation takes for a copy.
#[test]
fn equal_scales_requantise_as_the_identity() {
    let q = RequantizeParams::from_scales(0.05, 3, 0.05, 3).unwrap();
    assert_eq!(
        q.requant,
        Requant {
            multiplier: 1 << 30,
            shift: 1
        }
    );
}

/// Block programs that do not balance, or whose values do not fit, are refused.
#[test]
fn qnetwork_block_programs_that_do_not_balance_are_refused() {
    static W: [i8; 36] = [1; 36];
    static W3: [i8; 54] = [1; 54];
    const R: [Requant; 1] = [Requant {
        multiplier: 1 << 30,
        shift: -4,
    }];
    let conv = QLayer::Conv2d {
        params: Conv2dParams::new(1, 2, 4, 4, 2, 3, 3).with_padding(1, 1, 1, 1),
        weight: &W,
        bias: None,
        q: QuantOutput::new(0, 0, &R),
    };
    let wide = QLayer::Conv2d {
        params: Conv2dParams::new(1, 2, 4, 4, 3, 3, 3).with_padding(1, 1, 1, 1),
        weight: &W3,
        bias: None,
        q: QuantOutput::new(0, 0, &R),
    };
    let add = QLayer::AddPop {
        q: AddParams::from_scales(0.1, 0, 0.1, 0, 0.2, 0).unwrap(),
    };
    let cat = |pixels| QLayer::CatPop {
        pixels,
        kept: RequantizeParams::from_scales(0.1, 0, 0.1, 0).unwrap(),
        current: RequantizeParams::from_scales(0.1, 0, 0.1, 0).unwrap(),
    };
    let bad = |layers: &[QLayer<'_>]| QNetwork::new(layers).unwrap_err();
    for layers in [
        &[conv, QLayer::Load { depth: 0 }][..],
        &[conv, add],
        &[conv, QLayer::Drop],
        &[QLayer::Push, conv],
        &[conv, QLayer::Clamp { min: 3, max: 2 }],
    ] {
        assert!(
            matches!(bad(layers), KernelError::InvalidParameter(_)),
            "{layers:?}"
        );
    }
    assert!(matches!(
        bad(&[QLayer::Push, wide, add]),
        KernelError::LayerMismatch { layer: 2, .. }
    ));
    // 2 x 16 and 3 x 16 values do not split into 5 pixels
    assert!(matches!(
        bad(&[QLayer::Push, wide, cat(5)]),
        KernelError::LayerMismatch { layer: 2, .. }
    ));
    assert!(matches!(
        bad(&[QLayer::Push, wide, cat(0)]),
        KernelError::ZeroSize(_)
    ));
    assert!(QNetwork::new(&[QLayer::Push, wide, cat(16), conv_after_cat()]).is_ok());
    let mut deep = vec![conv];
    deep.extend([QLayer::Push; cnnkit_kernels::qnet::MAX_KEPT + 1]);
    assert!(matches!(bad(&deep), KernelError::InvalidParameter(_)));
    assert!(matches!(
        bad(&[QLayer::Push, cat(1), conv]),
        KernelError::ZeroSize(_)
    ));
    let mut q = AddParams::from_scales(0.1, 0, 0.1, 0, 0.2, 0).unwrap();
    q.output_zero_point = 300;
    assert!(matches!(
        bad(&[QLayer::Push, conv, QLayer::AddPop { q }]),
        KernelError::InvalidParameter(_)
    ));
}

/// A convolution of the 5 channels `cat[conv(3) | ]` gives on 4 x 4.
fn conv_after_cat() -> QLayer<'static> {
    static W: [i8; 5] = [1; 5];
    const R: [Requant; 1] = [Requant {
        multiplier: 1 << 30,
        shift: -4,
    }];
    QLayer::Conv2d {
        params: Conv2dParams::new(1, 5, 4, 4, 1, 1, 1),
        weight: &W,
        bias: None,
        q: QuantOutput::new(0, 0, &R),
    }
}

/// int8 softmax: equal to LiteRT's reference SOFTMAX (gemmlowp's fixed point) on every
/// fixture row; the parameters from beta and the input scale as TFLite's; what it refuses.
#[test]
fn softmax_equals_tflite() {
    let mut outputs = 0;
    for c in fixtures::SOFTMAX {
        let p = cnnkit_kernels::SoftmaxParams::new(c.beta, c.input_scale).unwrap();
        let mut got = vec![0i8; c.output.len()];
        k::softmax_s8(&p, c.rows, c.depth, c.input, &mut got).unwrap();
        assert_eq!(first_difference(&got, c.output), None, "{} {p:?}", c.name);
        // (the fixtures exercise the function: probabilities that sum near 1)
        for row in got.chunks_exact(c.depth) {
            let sum: f32 = row.iter().map(|&q| (f32::from(q) + 128.0) / 256.0).sum();
            assert!(
                (sum - 1.0).abs() < 0.1 + c.depth as f32 / 256.0,
                "{} {sum}",
                c.name
            );
        }
        outputs += got.len();
    }
    assert!(outputs > 500);
    let p = cnnkit_kernels::SoftmaxParams::new(1.0, 0.1).unwrap();
    let mut y = [0i8; 4];
    assert!(k::softmax_s8(&p, 2, 2, &[0; 3], &mut y).is_err());
    assert!(k::softmax_s8(&p, 1, 0, &[], &mut []).is_err());
    assert!(k::softmax_s8(&p, usize::MAX, 2, &[], &mut []).is_err());
    let bad = cnnkit_kernels::SoftmaxParams {
        left_shift: 40,
        ..p
    };
    assert!(k::softmax_s8(&bad, 2, 2, &[0; 4], &mut y).is_err());
    for (beta, scale) in [(0.0, 0.1), (1.0, f32::NAN), (-1.0, 0.1), (1e-12, 1e-12)] {
        assert!(
            cnnkit_kernels::SoftmaxParams::new(beta, scale).is_err(),
            "{beta} {scale}"
        );
    }
    // to f32: the f32 softmax of the dequantised logits, and the int8 one's probabilities
    // within half an output step
    for c in fixtures::SOFTMAX {
        let mut p = vec![0.0f32; c.output.len()];
        k::softmax_s8_f32(c.beta, c.input_scale, c.rows, c.depth, c.input, &mut p).unwrap();
        let x: Vec<f32> = c
            .input
            .iter()
            .map(|&v| c.beta * c.input_scale * f32::from(i16::from(v) - c.input_zero_point as i16))
            .collect();
        let mut want = vec![0.0f32; x.len()];
        k::softmax(c.rows, c.depth, &x, &mut want).unwrap();
        for ((g, w), &q) in p.iter().zip(&want).zip(c.output) {
            assert!((g - w).abs() <= 1e-6, "{}: {g} vs {w}", c.name);
            // (int8 holds 0 to 255/256)
            let q = (f32::from(q) + 128.0) / 256.0;
            let g8 = g.min(255.0 / 256.0);
            assert!(
                (g8 - q).abs() <= 0.5 / 256.0 + 1e-3,
                "{}: {g} vs int8 {q}",
                c.name
            );
        }
    }
    assert!(k::softmax_s8_f32(1.0, 0.1, 1, 2, &[0; 2], &mut [0.0; 3]).is_err());
    assert!(k::softmax_s8_f32(f32::INFINITY, 0.1, 1, 2, &[0; 2], &mut [0.0; 2]).is_err());
    // (each finite, the product not: the fuzzer's find)
    assert!(k::softmax_s8_f32(16.0, 1e38, 1, 2, &[0; 2], &mut [0.0; 2]).is_err());
}

/// Sums at the ends of int32 through the largest multiplier: the requantised value
/// saturates when the output's zero point is added (TFLite's saturating add), so it
/// clamps to the top (or bottom), never wraps to the other end, on every variant.
#[test]
fn conv2d_s8_saturates_at_the_ends_of_int32() {
    for (channels, kernel, groups) in [(1, 1, 1), (24, 3, 1), (40, 1, 1), (20, 3, 20)] {
        let p = Conv2dParams::new(1, channels, 4, 4, 20, kernel, kernel)
            .with_padding(1, 1, 1, 1)
            .with_groups(groups);
        let d = p.dims().unwrap();
        let x = vec![0i8; d.input_len];
        let w = vec![0i8; d.weight_len];
        let rq = [Requant {
            multiplier: i32::MAX,
            shift: 0,
        }];
        for (bias, zo) in [
            (i32::MAX, 127),
            (i32::MAX - 3, 1),
            (i32::MIN, -128),
            (i32::MIN + 5, -1),
        ] {
            let q = QuantOutput::new(0, zo, &rq);
            let b = vec![bias; d.bias_len];
            let mut want = vec![0i8; d.output_len];
            r::conv2d_s8(&p, &q, &x, &w, Some(&b), &mut want).unwrap();
            let end = if bias > 0 { 127 } else { -128 };
            assert!(want.iter().all(|&v| v == end), "{want:?}");
            let mut s = vec![0i16; k::conv2d_s8_scratch_len(&p).unwrap()];
            common::for_each_int8_variant(|isa, extra| {
                let mut got = vec![0i8; d.output_len];
                k::conv2d_s8(&p, &q, &x, &w, Some(&b), &mut got, &mut s).unwrap();
                assert_eq!(
                    got, want,
                    "{isa:?} {extra} {p:?} bias {bias} zero point {zo}"
                );
            });
        }
    }
}

/// First layers requantised every way the VBMI kernel has: every right shift 1 or more
/// and no left shift (the offset folded into the 64-bit products), a channel with a left
/// shift, one with no right shift, offsets too large to fold; per channel and per tensor.
#[test]
fn conv2d_s8_first_layers_requantise_every_way() {
    let layers = [
        Conv2dParams::new(2, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2),
        Conv2dParams::new(1, 3, 11, 37, 11, 3, 3).with_padding(1, 1, 1, 1),
    ];
    let scales: [&[f64]; 5] = [
        &[0.003, 0.0071, 0.2, 0.49, 0.001, 0.06],
        &[0.003, 3.5, 0.2, 0.49, 0.001, 0.06],
        &[0.003, 0.0071, 0.75, 0.49, 0.001, 0.06],
        &[0.25],
        &[0.5],
    ];
    for (i, p) in layers.iter().enumerate() {
        let d = p.dims().unwrap();
        let mut rng = common::Rng(5 + i as u64);
        let x = bytes(&mut rng, d.input_len);
        let w: Vec<i8> = bytes(&mut rng, d.weight_len)
            .into_iter()
            .map(|v| v.max(-127))
            .collect();
        // the largest sums, towards the bias's end of int32 (they wrap there, as in the
        // reference): every input 127 against the zero point -128, every weight of a
        // channel 127 with the sign of its bias
        let x_max = vec![127i8; d.input_len];
        let taps = d.weight_len / p.out_channels;
        let w_max: Vec<i8> = (0..d.weight_len)
            .map(|t| if (t / taps) % 2 == 0 { 127 } else { -127 })
            .collect();
        for (j, sc) in scales.iter().enumerate() {
            let rq: Vec<Requant> = (0..if sc.len() == 1 { 1 } else { p.out_channels })
                .map(|c| Requant::from_real(sc[c % sc.len()]).unwrap())
                .collect();
            for (big, extreme) in [(0, false), (2_147_000_000, false), (i32::MAX - 1000, true)] {
                let bias: Vec<i32> = (0..d.bias_len)
                    .map(|c| rng.below(2000) as i32 - 1000 + if c % 2 == 0 { big } else { -big })
                    .collect();
                let (x, w, zi) = if extreme {
                    (&x_max, &w_max, -128)
                } else {
                    (&x, &w, rng.below(256) as i32 - 128)
                };
                let q = QuantOutput::new(zi, 7, &rq);
                let mut want = vec![0i8; d.output_len];
                r::conv2d_s8(p, &q, x, w, Some(&bias), &mut want).unwrap();
                let mut s = vec![0i16; k::conv2d_s8_scratch_len(p).unwrap()];
                common::for_each_int8_variant(|isa, extra| {
                    let mut got = vec![0x55i8; d.output_len];
                    k::conv2d_s8(p, &q, x, w, Some(&bias), &mut got, &mut s).unwrap();
                    assert_eq!(
                        first_difference(&got, &want),
                        None,
                        "{isa:?} {extra} {p:?} scales {j} bias {big}"
                    );
                });
            }
        }
    }
}

/// Layers wider and larger than the random cases: several blocks of output channels per
/// tile row, more pixels than one chunk, odd and large receptive fields, groups.
#[test]
fn conv2d_s8_wide_layers_equal_reference() {
    let cases = [
        Conv2dParams::new(1, 32, 16, 16, 40, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(2, 3, 30, 30, 70, 5, 5).with_stride(2, 2),
        Conv2dParams::new(1, 48, 20, 20, 48, 1, 1).with_groups(2),
        Conv2dParams::new(1, 101, 9, 9, 17, 3, 3).with_padding(2, 0, 1, 1),
        Conv2dParams::new(1, 8, 40, 40, 33, 3, 3).with_dilation(2, 2),
        // first layers (VNNI's pixels-in-lanes kernel): several segments of a row,
        // several blocks of channels, tall kernels with dilated rows
        Conv2dParams::new(2, 1, 50, 70, 20, 5, 5).with_padding(2, 2, 2, 2),
        Conv2dParams::new(1, 2, 9, 40, 9, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(1, 1, 30, 33, 5, 7, 3)
            .with_dilation(2, 1)
            .with_stride(2, 1)
            .with_padding(3, 0, 2, 1),
        // first layers with VBMI (flattened fields): LeNet's (a pass of 32 pixels, 6
        // channels, a row pair within one window); 3 channels, passes of 32 and 8
        // pixels, channel blocks of 8 and 5 in a wider pixel, rows in two windows;
        // stride 2 in a row, 4 blocks; 2 channels, dilated rows, 8 channels
        Conv2dParams::new(2, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2),
        Conv2dParams::new(1, 3, 20, 40, 13, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(1, 1, 17, 70, 32, 3, 3).with_stride(1, 2),
        Conv2dParams::new(1, 2, 12, 24, 8, 3, 2)
            .with_dilation(2, 1)
            .with_padding(0, 1, 1, 0),
        // short kernel rows, fields read in place (VNNI): two blocks of channels, one
        // partial; stride, padding and dilated rows
        Conv2dParams::new(2, 6, 14, 14, 40, 5, 5),
        Conv2dParams::new(1, 4, 13, 11, 24, 3, 3)
            .with_stride(2, 1)
            .with_padding(1, 0, 2, 1)
            .with_dilation(2, 1),
        // depthwise (VNNI's interleaved rows): whole and partial blocks of 64 channels,
        // strides 1 and 2 (output rows in pairs or alone), four-row, dilated and wide
        // kernels, uneven padding
        Conv2dParams::new(2, 64, 9, 9, 64, 3, 3)
            .with_padding(1, 1, 1, 1)
            .with_groups(64),
        Conv2dParams::new(2, 144, 12, 11, 144, 3, 3)
            .with_stride(2, 2)
            .with_padding(1, 1, 1, 1)
            .with_groups(144),
        Conv2dParams::new(1, 200, 8, 10, 200, 4, 5)
            .with_padding(2, 1, 0, 3)
            .with_groups(200),
        Conv2dParams::new(1, 96, 11, 9, 96, 2, 3)
            .with_dilation(2, 2)
            .with_stride(2, 1)
            .with_padding(1, 2, 2, 2)
            .with_groups(96),
        Conv2dParams::new(1, 70, 7, 7, 70, 1, 1)
            .with_stride(1, 2)
            .with_groups(70),
    ];
    for (i, p) in cases.iter().enumerate() {
        conv_matches(&ConvCase {
            p: *p,
            seed: 77 + i as u64,
        });
    }
}
