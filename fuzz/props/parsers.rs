//! The std layer's parsers on arbitrary bytes: an error or a consistent result, never a
//! panic.

use std::collections::HashMap;

use cnnkit::checkpoint::{model_bytes, model_from_bytes};
use cnnkit::data::parse_idx;
use cnnkit::spec::{self, LayerSpec};
use cnnkit::{Model, Optimizer, Shape, Split, Trainer, evaluate};
use safetensors::tensor::{Dtype, TensorView};

/// The IDX reader (plain or gzipped): an error, or an array whose dims fit its data.
pub fn idx(data: &[u8]) {
    for ndims in [1, 3] {
        if let Ok(a) = parse_idx("fuzz".as_ref(), data, ndims) {
            assert_eq!(a.dims.len(), ndims);
            assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
        }
    }
}

/// The checkpoint loader: an error, or a model that saves back to bytes that load to the
/// same model.
pub fn checkpoint(data: &[u8]) {
    if let Ok((model, meta)) = model_from_bytes("fuzz".as_ref(), data) {
        let bytes = model_bytes(&model, &meta).expect("serialise a loaded model");
        let (again, meta2) = model_from_bytes("again".as_ref(), &bytes).expect("reload");
        // (compared as bytes: a fuzzed file may hold NaN weights, and NaN != NaN)
        assert!(model_bytes(&again, &meta2).expect("serialise") == bytes);
    }
}

/// The model text spec: an error, or a model whose spec rebuilds it.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // (two models alive at once: a budget as the CLI's readers have, so that a spec of
    // 800 MB of parameters, such as `conv(666669,3) ... linear(3)` on 12 x 12, is refused
    // rather than built twice past the fuzzer's 1 GB)
    cnnkit::budget::set(128 << 20);
    let input = Shape::Image { c: 1, h: 12, w: 12 };
    if let Ok(m) = Model::from_spec(text, input, 3) {
        let again = Model::from_spec(&m.spec(), input, 3).expect("the spec of a model parses");
        assert!(again == m, "{text:?} -> {}", m.spec());
    }
}

/// The checkpoint metadata, every field: the fuzzer's bytes are the `cnnkit` metadata
/// (JSON) of a checkpoint whose tensors fit the model its spec names (when that model
/// is small), so the fields reach validation rather than a missing tensor. A model that
/// loads must validate, save back to the same model, and go through what the CLI does
/// with one without a panic: predict, evaluate, and an epoch of training resumed from
/// its recipe (on up to 4 threads and batches of up to 64). Under a 128 MiB budget.
pub fn meta(data: &[u8]) {
    cnnkit::budget::set(128 << 20);
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let bytes = checkpoint_for(json);
    let Ok((model, meta)) = model_from_bytes("fuzz".as_ref(), &bytes) else {
        return;
    };
    meta.validate(model.output_shape().len())
        .expect("a checkpoint that loads has valid metadata");
    let again = model_bytes(&model, &meta).expect("serialise a loaded model");
    let (m2, meta2) = model_from_bytes("again".as_ref(), &again).expect("reload");
    assert!(m2 == model && meta2 == meta);
    // what the CLI does with a model
    let Shape::Image { c, h, w } = model.input_shape() else {
        unreachable!("a checkpoint's input is an image")
    };
    let per = c * h * w;
    let n = 5;
    let pixels: Vec<u8> = (0..n * per).map(|i| (i * 37 % 251) as u8).collect();
    let _ = model.predict_u8(&meta.norm(), &pixels);
    let classes = model.output_shape().len();
    let split = Split {
        images: pixels,
        labels: (0..n).map(|i| (i % classes.min(256)) as u8).collect(),
        channels: c,
        rows: h,
        cols: w,
    };
    let _ = evaluate(&model, &split, &meta.norm(), 2);
    let cfg = &meta.config;
    if cfg.threads <= 4 && cfg.batch <= 64 {
        let Ok(opt) = Optimizer::new(cfg.optimizer, cfg.weight_decay, &model) else {
            return;
        };
        let r = Trainer::resume(
            model,
            opt,
            cfg.clone(),
            meta.norm(),
            meta.epoch,
            meta.history,
        );
        if let Ok(mut t) = r {
            let _ = t.train_epoch(&split, |_, _, _| {});
        }
    }
}

/// A checkpoint with `json` as its metadata and, if `json` names a spec and input of a
/// model of at most 100,000 parameters, a tensor of the right shape for each of them.
fn checkpoint_for(json: &str) -> Vec<u8> {
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    if let Some((_, _, plan)) = small_spec(json) {
        for (i, p) in plan.iter().enumerate() {
            for ps in &p.params {
                let var = ps.name == "running_var";
                let values: Vec<u8> = (0..ps.len())
                    .flat_map(|k| {
                        let x = ((k * 7919 % 201) as f32 - 100.0) / 1000.0;
                        (if var { x.abs() + 0.5 } else { x }).to_le_bytes()
                    })
                    .collect();
                tensors.push((
                    format!("{i}.{}", ps.name),
                    Dtype::F32,
                    ps.shape.clone(),
                    values,
                ));
            }
            if matches!(p.layer, LayerSpec::BatchNorm2d) {
                let n = format!("{i}.num_batches_tracked");
                tensors.push((n, Dtype::I64, vec![], 3i64.to_le_bytes().to_vec()));
            }
        }
    }
    file_of(json, &tensors)
}

/// The spec, input shape and plan that the metadata `json` names, when they give a model
/// of at most 100,000 parameters.
fn small_spec(json: &str) -> Option<(String, Shape, Vec<spec::Planned>)> {
    let v = serde_json::from_str::<serde_json::Value>(json).ok()?;
    let text = v["spec"].as_str()?;
    let d: Vec<usize> = v["input"]
        .as_array()?
        .iter()
        .filter_map(|x| x.as_u64())
        .map(|x| x as usize)
        .collect();
    let [c, h, w] = <[usize; 3]>::try_from(d).ok()?;
    let input = Shape::Image { c, h, w };
    let plan = spec::plan(text, input).ok()?;
    (spec::param_elements(&plan) <= 100_000).then(|| (text.to_string(), input, plan))
}

/// A safetensors file of `tensors` with `json` as its `cnnkit` metadata.
fn file_of(json: &str, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, dt, sh, b)| {
            (
                n.clone(),
                TensorView::new(*dt, sh.clone(), b).expect("view"),
            )
        })
        .collect();
    let md = HashMap::from([("cnnkit".to_string(), json.to_string())]);
    safetensors::serialize(views, &Some(md)).expect("serialise")
}

/// `predict`'s image path (PNG or PNM, grayscale or RGB, resized): an error, or exactly
/// the model's input size in values, for a square and a wide, short grayscale input and
/// an RGB one. Under a 64 MiB
/// budget (the decoder's allocations follow it): a 16-bit image at the budget, its 8-bit
/// copy and ASan's quarantine of the freed buffers (up to 256 MB) stay within the
/// fuzzer's `-rss_limit_mb=512`; at 128 MiB they did not (CI, December 2026).
pub fn image(data: &[u8]) {
    cnnkit::budget::set(64 << 20);
    for (c, h, w) in [(1, 28, 28), (1, 3, 97), (3, 16, 16)] {
        let shape = Shape::Image { c, h, w };
        if let Ok(px) = cnnkit::pixels::decode("fuzz".as_ref(), data, shape) {
            assert_eq!(px.len(), c * h * w);
        }
    }
}

/// The int8 model reader (`cnnkit::quant::file`): the bytes are a file, or, when they
/// start with `{`, the `cnnkit` metadata (JSON) of a file whose tensors fit the spec it
/// names (when that model is small), so the fields reach validation. A model that loads
/// saves back to the same model and runs on an image without a panic. Under a 128 MiB
/// budget.
pub fn qmodel(data: &[u8]) {
    use cnnkit::quant::file::{from_bytes, quantized_bytes};
    cnnkit::budget::set(128 << 20);
    let bytes = if data.first() == Some(&b'{') {
        let Ok(json) = std::str::from_utf8(data) else {
            return;
        };
        int8_file_for(json)
    } else {
        data.to_vec()
    };
    let Ok((q, meta)) = from_bytes("fuzz".as_ref(), &bytes) else {
        return;
    };
    let again = quantized_bytes(&q, &meta.classes).expect("a loaded int8 model saves");
    let (q2, meta2) = from_bytes("again".as_ref(), &again).expect("reload");
    // (a file that says format 2 where format 1 says it all is saved as format 1)
    let same = cnnkit::quant::file::QMeta {
        format: meta.format,
        ..meta2.clone()
    };
    assert!(q2 == q && meta2.format <= meta.format && same == meta);
    let (c, h, w) = q.shape;
    if let Ok(logits) = q.forward_u8(&vec![200u8; c * h * w]) {
        assert_eq!(logits.len(), q.outputs());
    }
}

/// An int8 model file with the metadata `json`, and (when its spec and input give a
/// model of at most 100,000 parameters) a weight, bias and scale tensor of the right
/// type and shape for each of its convolutions and linear layers.
fn int8_file_for(json: &str) -> Vec<u8> {
    use cnnkit::kernels::net::Layer as NetLayer;
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    if let Some((text, input, _)) = small_spec(json)
        && let Ok(model) = Model::from_spec(&text, input, 1)
        && let Ok(e) = cnnkit::export::Export::new(
            &model,
            cnnkit::Normalize {
                mean: 0.5,
                std: 0.25,
            },
            1,
        )
    {
        for (j, l) in e.layers.iter().enumerate() {
            let shape = match l {
                NetLayer::Conv2d { params: p, .. } => match p.dims() {
                    Ok(d) => vec![p.out_channels, p.kernel_h, p.kernel_w, d.in_per_group],
                    Err(_) => continue,
                },
                NetLayer::Linear { params: p, .. } => vec![p.out_features, p.in_features],
                _ => continue,
            };
            let n: usize = shape.iter().product();
            let out = shape[0];
            let weight = (0..n).map(|k| (k * 7919 % 255) as u8).collect();
            tensors.push((format!("{j}.weight"), Dtype::I8, shape, weight));
            let bias = (0..out)
                .flat_map(|k| (k as i32 * 37 - 100).to_le_bytes())
                .collect();
            tensors.push((format!("{j}.bias"), Dtype::I32, vec![out], bias));
            let scale = (0..out)
                .flat_map(|k| (0.002 * (k + 1) as f32).to_le_bytes())
                .collect();
            tensors.push((format!("{j}.weight_scale"), Dtype::F32, vec![out], scale));
        }
    }
    file_of(json, &tensors)
}

/// The ONNX reader: an error, or a model that cnnkit writes back to an ONNX file that
/// reads as the same model; its inference runs (or refuses) under a 128 MiB budget.
pub fn onnx(data: &[u8]) {
    cnnkit::budget::set(128 << 20);
    let Ok(im) = cnnkit::onnx::from_onnx(data) else {
        return;
    };
    let again = Model::from_spec(&im.model.spec(), im.model.input_shape(), 1)
        .expect("the spec of an imported model parses");
    assert!(again.layers().len() == im.model.layers().len());
    if im.classes.len() == im.model.output_shape().len() {
        let bytes = cnnkit::onnx::to_onnx(&im.model, im.norm, &im.classes).expect("export");
        let back = cnnkit::onnx::from_onnx(&bytes).expect("read back what cnnkit wrote");
        let bytes2 = cnnkit::onnx::to_onnx(&back.model, back.norm, &back.classes).expect("export");
        // (compared as bytes: weights may be NaN)
        assert!(bytes == bytes2, "{}", im.model.spec());
    }
    let n = im.model.input_shape().len();
    if let Ok(x) = cnnkit::Tensor::from_vec(im.model.input_shape().batched(1), vec![0.5; n]) {
        let _ = im.model.forward(&x);
    }
}
