//! Post-training int8 quantisation (`cnnkit::quant`): the int8 model's logits follow the
//! f32 model's (batch norm folded, ReLU fused, NHWC columns after a flatten permuted), and
//! what it cannot quantise is refused by name.

use cnnkit::quant::{Quantized, TensorQuant};
use cnnkit::{Model, Normalize, Shape, Tensor};

fn images(n: usize, per: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n * per)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// The int8 logits of a conv-batchnorm-ReLU-pool-conv-pool-linear model stay within a few
/// output steps of the f32 ones on images it was not calibrated on.
#[test]
fn int8_logits_follow_the_f32_model() {
    let input = Shape::Image { c: 2, h: 12, w: 10 };
    let m = Model::from_spec(
        "conv(8,3,pad=1) batchnorm relu maxpool(2) conv(12,3) relu maxpool(2) flatten \
         dropout(0.2) linear(20) relu linear(6)",
        input,
        7,
    )
    .unwrap();
    let per = input.len();
    let calib = images(64, per, 1);
    let q = Quantized::new(
        &m,
        Normalize {
            mean: 0.5,
            std: 0.25,
        },
        &calib,
    )
    .unwrap();
    let test = images(32, per, 2);
    let want = m
        .forward(&Tensor::from_vec(vec![32, 2, 12, 10], test.clone()).unwrap())
        .unwrap();
    let got = q.forward(&test).unwrap();
    assert_eq!(got.len(), want.data().len());
    let range = want.data().iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let mean_err = got
        .iter()
        .zip(want.data())
        .map(|(g, w)| (g - w).abs())
        .sum::<f32>()
        / got.len() as f32;
    let max_err = got
        .iter()
        .zip(want.data())
        .fold(0.0f32, |a, (g, w)| a.max((g - w).abs()));
    // a few steps of the output scale, through four requantised layers
    assert!(
        mean_err < 0.03 * range && max_err < 0.12 * range,
        "mean {mean_err}, max {max_err}, logits up to {range}"
    );
}

#[test]
fn what_has_no_int8_form_is_refused() {
    let input = Shape::Image { c: 1, h: 8, w: 8 };
    let norm = Normalize {
        mean: 0.5,
        std: 0.25,
    };
    let calib = images(4, 64, 3);
    for (spec, says) in [
        ("conv(4,3) tanh flatten linear(3)", "tanh"),
        (
            "conv(4,3,pad=1) relu avgpool(3,stride=1,pad=1) flatten linear(3)",
            "padding",
        ),
    ] {
        let m = Model::from_spec(spec, input, 1).unwrap();
        let e = Quantized::new(&m, norm, &calib).unwrap_err().to_string();
        assert!(e.contains(says), "{spec}: {e}");
    }
    let m = Model::from_spec("conv(4,3) relu flatten linear(3)", input, 1).unwrap();
    assert!(Quantized::new(&m, norm, &[]).is_err());
    assert!(Quantized::new(&m, norm, &calib[..63]).is_err());
    let mut bad = calib.clone();
    bad[5] = f32::NAN;
    assert!(
        Quantized::new(&m, norm, &bad)
            .unwrap_err()
            .to_string()
            .contains("finite")
    );
    let q = Quantized::new(&m, norm, &calib).unwrap();
    assert!(q.forward(&calib[..10]).is_err());
}

#[test]
fn tensor_ranges_hold_zero_exactly() {
    for (lo, hi) in [
        (0.0, 6.0),
        (-1.0, 1.0),
        (-3.0, -1.0),
        (2.0, 5.0),
        (0.0, 0.0),
    ] {
        let t = TensorQuant::from_range(lo, hi);
        assert!(t.scale > 0.0);
        assert_eq!(t.quantize(0.0), t.zero_point, "{lo} {hi}");
        assert!((-128..=127).contains(&t.zero_point));
    }
    assert_eq!(TensorQuant::from_range(0.0, 6.0).zero_point, -128);
}
