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

/// A small quantised model (conv-BN-ReLU-pool, linear) and its class names.
fn small() -> (Quantized, Vec<String>) {
    let input = Shape::Image { c: 1, h: 8, w: 8 };
    let m = Model::from_spec(
        "conv(4,3,pad=1) batchnorm relu maxpool(2) flatten linear(5)",
        input,
        3,
    )
    .unwrap();
    let norm = Normalize {
        mean: 0.3,
        std: 0.4,
    };
    let q = Quantized::new(&m, norm, &images(16, 64, 5)).unwrap();
    let classes = (0..5).map(|i| format!("class {i}")).collect();
    (q, classes)
}

/// The int8 model file reads back as the same model (every weight, bias, scale, zero
/// point and clamp), whose logits are the same; 8-bit pixels through the input table
/// give what the normalised images give.
#[test]
fn an_int8_model_file_reads_back_as_the_same_model() {
    use cnnkit::quant::file;
    let (q, classes) = small();
    let bytes = file::quantized_bytes(&q, &classes).unwrap();
    let (again, meta) = file::from_bytes("q".as_ref(), &bytes).unwrap();
    assert_eq!(again, q);
    assert_eq!(meta.classes, classes);
    assert_eq!(meta.calibration.images, 16);
    assert!(file::looks_like_quantized(&bytes));
    assert!(!file::looks_like_quantized(
        b"\x10\0\0\0\0\0\0\0{\"__metadata__\""
    ));
    let pixels: Vec<u8> = (0..3 * 64).map(|i| (i * 37 % 256) as u8).collect();
    let norm = q.norm.table();
    let x: Vec<f32> = pixels.iter().map(|&p| norm[usize::from(p)]).collect();
    assert_eq!(again.forward_u8(&pixels).unwrap(), q.forward(&x).unwrap());
    assert_eq!(q.outputs(), 5);
    // and f32 checkpoints are not int8 models, nor the other way round
    let dir = std::env::temp_dir().join(format!("cnnkit-quant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("q.safetensors");
    file::save(&path, &q, &classes).unwrap();
    let err = cnnkit::checkpoint::load_model(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("int8 model"), "{err}");
    let any = cnnkit::quant::AnyModel::load(&path).unwrap();
    assert_eq!(any.kind(), "int8");
    assert_eq!(any.predict_u8(&pixels).unwrap(), q.forward(&x).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every field of an int8 model file, metadata and tensors, is checked and refused by
/// name: a load never panics, allocates beyond the file, or yields a model that would
/// compute something other than TFLite's scheme.
#[test]
fn every_field_of_an_int8_model_file_is_checked() {
    use cnnkit::quant::file;
    use safetensors::tensor::{Dtype, SafeTensors, TensorView};
    let (q, classes) = small();
    let bytes = file::quantized_bytes(&q, &classes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&md.metadata().as_ref().unwrap()["cnnkit"]).unwrap();
    type Entry = (String, Dtype, Vec<usize>, Vec<u8>);
    type Tensors = Vec<Entry>;
    let tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let build = |json: &serde_json::Value, tensors: &Tensors| -> Vec<u8> {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let meta = std::collections::HashMap::from([("cnnkit".to_string(), json.to_string())]);
        safetensors::serialize(views, &Some(meta)).unwrap()
    };
    // the unchanged parts load
    file::from_bytes("ok".as_ref(), &build(&json, &tensors)).unwrap();
    let meta_cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("/kind", "fp16".into(), "not an int8 model"),
        ("/format", 7.into(), "format 7"),
        ("/format", 0.into(), "format 0"),
        (
            "/spec",
            "conv(4,3,pad=1) relu maxpool(2) flatten linear(6)".into(),
            "needs [6, 64]",
        ),
        (
            "/spec",
            "conv(4,3,pad=1) relu maxpool(2) flatten linear(4)".into(),
            "5 names for a model of 4",
        ),
        (
            "/spec",
            "conv(4,5) relu maxpool(2) flatten linear(5)".into(),
            "`0.weight` has shape",
        ),
        ("/spec", "conv(4,3) tanh flatten linear(5)".into(), "tanh"),
        (
            "/spec",
            "flatten linear(10000) linear(10000) linear(5)".into(),
            "more than the file",
        ),
        ("/spec", "nonsense(3)".into(), "model spec"),
        ("/input", serde_json::json!([1, 8, 0]), "`input`"),
        ("/pixel_std", 0.0.into(), "pixel_std"),
        ("/pixel_mean", 2.0.into(), "pixel_mean"),
        ("/classes", serde_json::json!([]), "classes"),
        ("/classes/0", "a\u{7}".into(), "classes"),
        ("/calibration/images", 0.into(), "calibration"),
        ("/calibration/method", "kl".into(), "calibration"),
        ("/input_quant/scale", 0.0.into(), "input_quant.scale"),
        ("/input_quant/scale", (-1.0).into(), "input_quant.scale"),
        ("/input_quant/scale", 1e-40.into(), "input_quant.scale"),
        (
            "/input_quant/zero_point",
            128.into(),
            "input_quant.zero_point",
        ),
        ("/layers/0/op", "linear".into(), "layers[0].op"),
        ("/layers/0/min", 300.into(), "layers[0].min"),
        (
            "/layers/0/output/zero_point",
            (-129).into(),
            "layers[0].output.zero_point",
        ),
        (
            "/layers/0/output/scale",
            1e-30.into(),
            "requantisation multiplier",
        ),
        ("/layers/1/min", 0.into(), "keeps its input's quantisation"),
        ("/layers/0/max", 100.into(), "needs int8 format 2"),
        ("/layers/1/op", "clamp".into(), "layers[1].op"),
        ("/layers", serde_json::json!([]), "`layers`"),
        ("/extra", 1.into(), "unknown field"),
    ];
    for (at, v, want) in meta_cases {
        let mut j = json.clone();
        match j.pointer_mut(at) {
            Some(slot) => *slot = v.clone(),
            None => {
                let (parent, key) = at.rsplit_once('/').unwrap();
                j.pointer_mut(if parent.is_empty() { "" } else { parent })
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .insert(key.into(), v.clone());
            }
        }
        let err = file::from_bytes("bad".as_ref(), &build(&j, &tensors))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{at} = {v}: {err}");
    }
    // format 2 fields
    for (max, want) in [(300, "layers[0].max"), (-5, "above its max")] {
        let mut j = json.clone();
        j["format"] = 2.into();
        j["layers"][0]["min"] = 0.into();
        j["layers"][0]["max"] = max.into();
        let err = file::from_bytes("bad".as_ref(), &build(&j, &tensors)).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
    // a missing field
    let mut j = json.clone();
    j["layers"][0].as_object_mut().unwrap().remove("output");
    let err = file::from_bytes("bad".as_ref(), &build(&j, &tensors)).unwrap_err();
    assert!(
        err.to_string().contains("layers[0].output` is missing"),
        "{err}"
    );
    // tensors: missing, extra, wrong type or shape, bad scales
    let f32le = |v: f32| v.to_le_bytes().to_vec();
    let edit = |name: &str, f: &dyn Fn(&mut Entry)| {
        let mut t = tensors.clone();
        f(t.iter_mut().find(|x| x.0 == name).unwrap());
        t
    };
    let mut missing = tensors.clone();
    missing.retain(|t| t.0 != "2.bias");
    let mut extra = tensors.clone();
    extra.push(("9.weight".into(), Dtype::I8, vec![1], vec![0]));
    let tensor_cases: Vec<(Tensors, &str)> = vec![
        (missing, "`2.bias` is missing"),
        (extra, "`9.weight` does not belong"),
        (
            edit("0.weight", &|t| t.1 = Dtype::U8),
            "`0.weight` is U8, expected I8",
        ),
        (
            edit("0.weight", &|t| t.2 = vec![4, 1, 3, 3]),
            "`0.weight` has shape [4, 1, 3, 3]",
        ),
        (
            edit("0.weight_scale", &|t| {
                t.3[4..8].copy_from_slice(&f32le(f32::NAN))
            }),
            "`0.weight_scale` element 1",
        ),
        (
            edit("2.weight_scale", &|t| {
                t.3[..4].copy_from_slice(&f32le(-0.5))
            }),
            "`2.weight_scale` element 0",
        ),
        (
            edit("2.weight_scale", &|t| {
                t.3[..4].copy_from_slice(&f32le(1e30))
            }),
            "requantisation multiplier",
        ),
        (
            edit("2.bias", &|t| t.1 = Dtype::F32),
            "`2.bias` is F32, expected I32",
        ),
    ];
    for (t, want) in tensor_cases {
        let err = file::from_bytes("bad".as_ref(), &build(&json, &t))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
    // every truncation is refused, never a panic
    for n in (0..bytes.len()).step_by(7) {
        assert!(file::from_bytes("cut".as_ref(), &bytes[..n]).is_err());
    }
    // any weight and bias values are fine (the kernels wrap as TFLite's int32 sums do)
    let wild = edit("2.bias", &|t| {
        t.3.iter_mut().for_each(|b| *b = 0x7f);
    });
    let (w, _) = file::from_bytes("wild".as_ref(), &build(&json, &wild)).unwrap();
    w.forward(&images(2, 64, 9)).unwrap();
}

/// The error of int8 logits against the f32 ones: `(mean, max)` over all logits, and the
/// largest |f32 logit|.
fn errors(got: &[f32], want: &[f32]) -> (f32, f32, f32) {
    assert_eq!(got.len(), want.len());
    let range = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let mean = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .sum::<f32>()
        / got.len() as f32;
    let max = got
        .iter()
        .zip(want)
        .fold(0.0f32, |a, (g, w)| a.max((g - w).abs()));
    (mean, max, range)
}

/// Graphs quantise: residual sums (TFLite's `ADD`, each input at its own scale, a ReLU
/// after it as the sum's clamp), concatenations (each part requantised to the output's
/// scale), ReLU6 (fused as a clamp, or in place), depthwise convolutions, global average
/// pooling. Their int8 logits follow the f32 model's on images they were not calibrated
/// on; the file reads back as the same model, in format 2 (a plain stack stays format 1).
#[test]
fn graph_models_quantize_and_follow_the_f32_model() {
    use cnnkit::quant::file;
    let input = Shape::Image { c: 1, h: 12, w: 12 };
    let norm = Normalize {
        mean: 0.5,
        std: 0.25,
    };
    for spec in [
        // a residual stage as ResNet-8's (projection shortcut), the ReLU after the sum
        "conv(8,3,pad=1) batchnorm relu \
         res[conv(16,3,stride=2,pad=1) batchnorm relu conv(16,3,pad=1) batchnorm | conv(16,1,stride=2)] relu \
         res[conv(16,3,pad=1) batchnorm relu conv(16,3,pad=1) batchnorm] relu gap flatten linear(6)",
        // an inverted residual block (ReLU6, depthwise), a concatenation with the identity
        "conv(8,3,pad=1) batchnorm relu6 \
         res[conv(24,1) batchnorm relu6 conv(24,3,pad=1,groups=24) batchnorm relu6 conv(8,1) batchnorm] \
         cat[conv(4,3,pad=1) relu | ] maxpool(2) relu6 \
         cat[conv(6,1) | res[conv(12,3,pad=1) relu] ] gap flatten linear(5)",
    ] {
        let m = Model::from_spec(spec, input, 11).unwrap();
        let per = input.len();
        let q = Quantized::new(&m, norm, &images(64, per, 21))
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        let test = images(32, per, 22);
        let want = m
            .forward(&Tensor::from_vec(vec![32, 1, 12, 12], test.clone()).unwrap())
            .unwrap();
        let got = q.forward(&test).unwrap();
        let (mean, max, range) = errors(&got, want.data());
        assert!(
            mean < 0.03 * range && max < 0.12 * range,
            "{spec}: mean {mean}, max {max}, logits up to {range}"
        );
        // the file
        let classes: Vec<String> = (0..q.outputs()).map(|i| format!("c{i}")).collect();
        let bytes = file::quantized_bytes(&q, &classes).unwrap();
        let (again, meta) = file::from_bytes("g".as_ref(), &bytes).unwrap();
        assert_eq!(again, q, "{spec}");
        assert_eq!(meta.format, 2);
        assert_eq!(again.forward(&test).unwrap(), got);
        // and as firmware source (compiled and run by the firmware's CI step)
        let src = q.rust_source(2).unwrap();
        assert!(
            src.contains("QLayer::AddPop") && src.contains("QLayer::Push"),
            "{spec}"
        );
    }
    let (q, classes) = small();
    let bytes = file::quantized_bytes(&q, &classes).unwrap();
    assert_eq!(file::from_bytes("s".as_ref(), &bytes).unwrap().1.format, 1);
}
