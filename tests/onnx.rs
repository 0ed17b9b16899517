//! ONNX export: every layer kind and block written as an ONNX graph. The files, inputs and
//! cnnkit's logits go to `target/tmp/onnx-check/`, where `tools/onnx_check.py` (a CI step,
//! with onnxruntime from PyPI) runs them and compares the logits within 1e-4.
#![cfg(feature = "onnx")]

use cnnkit::data::Normalize;
use cnnkit::layers::Layer;
use cnnkit::onnx::proto::ModelProto;
use cnnkit::{Model, Rng, Shape, Tensor};
use prost::Message;

/// The models: the presets, and a spec with every other layer kind (grouped convolution,
/// leaky ReLU, average pooling with padding, GELU, tanh, sigmoid, a three-branch
/// concatenation with the identity, a three-branch residual block).
const MODELS: [(&str, &str, [usize; 3]); 5] = [
    ("lenet5", "lenet5", [1, 28, 28]),
    ("fmnist", "fmnist", [1, 28, 28]),
    ("resnet8", "resnet8", [1, 28, 28]),
    ("mobilenet", "mobilenet", [1, 28, 28]),
    (
        "every-layer",
        "conv(6,3,stride=2,pad=1) leakyrelu(0.1) avgpool(3,stride=2,pad=1) \
         conv(6,3,pad=1,groups=3) gelu cat[tanh | sigmoid |] \
         res[conv(18,1) relu6 | conv(18,1,groups=18) | conv(18,1) batchnorm] \
         maxpool(2) dropout(0.3) gap flatten linear(4)",
        [3, 16, 16],
    ),
];

#[test]
fn exported_graphs_decode_and_carry_their_metadata() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-check");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, spec, [c, h, w]) in MODELS {
        let input = Shape::Image { c, h, w };
        let mut model = Model::from_spec(spec, input, 7).unwrap();
        // batch norm with running statistics that are not the identity's
        let mut rng = Rng::new(8);
        for l in model.layers_mut() {
            if let Layer::BatchNorm2d(bn) = l {
                for v in bn.running_mean.data_mut() {
                    *v = rng.normal() * 0.3;
                }
                for v in bn.running_var.data_mut() {
                    *v = 0.5 + rng.uniform_in(0.0, 1.0);
                }
                for v in bn.weight.data_mut() {
                    *v = 1.0 + rng.normal() * 0.2;
                }
            }
        }
        let classes: Vec<String> = (0..model.output_shape().len())
            .map(|i| format!("class {i}"))
            .collect();
        let norm = Normalize {
            mean: 0.286,
            std: 0.353,
        };
        let bytes = cnnkit::onnx::to_onnx(&model, norm, &classes).unwrap();
        assert!(bytes.starts_with(cnnkit::onnx::HEAD), "{name}");
        let m = ModelProto::decode(bytes.as_slice()).unwrap();
        let g = m.graph.as_ref().unwrap();
        assert_eq!(m.opset_import[0].version, Some(cnnkit::onnx::OPSET));
        assert!(g.node.len() >= model.layers().len(), "{name}");
        let meta: Vec<(&str, &str)> = m
            .metadata_props
            .iter()
            .map(|p| (p.key.as_deref().unwrap(), p.value.as_deref().unwrap()))
            .collect();
        assert!(meta.contains(&("pixel_mean", "0.286")), "{meta:?}");
        assert!(meta.contains(&("pixel_std", "0.353")), "{meta:?}");
        let names: Vec<String> =
            serde_json::from_str(meta.iter().find(|p| p.0 == "classes").unwrap().1).unwrap();
        assert_eq!(names, classes);
        // every parameter tensor is there, with its values
        let params: usize = g
            .initializer
            .iter()
            .filter(|t| !t.dims.is_empty())
            .map(|t| t.raw_data.as_ref().unwrap().len() / 4)
            .sum();
        let running: usize = model
            .layers()
            .iter()
            .map(|l| match l {
                Layer::BatchNorm2d(bn) => 2 * bn.channels(),
                _ => 0,
            })
            .sum();
        assert_eq!(params, model.num_params() + running, "{name}");
        // inputs and cnnkit's logits for tools/onnx_check.py
        let n = 3;
        let x: Vec<f32> = (0..n * input.len()).map(|_| rng.normal()).collect();
        let logits = model
            .forward(&Tensor::from_vec(input.batched(n), x.clone()).unwrap())
            .unwrap();
        std::fs::write(dir.join(format!("{name}.onnx")), &bytes).unwrap();
        let check = serde_json::json!({
            "input_shape": input.batched(n),
            "input": x,
            "logits": logits.data(),
        });
        std::fs::write(dir.join(format!("{name}.json")), check.to_string()).unwrap();
    }
}

#[test]
fn class_names_must_match_the_outputs() {
    let m = Model::from_spec("flatten linear(3)", Shape::Image { c: 1, h: 2, w: 2 }, 1).unwrap();
    let norm = Normalize {
        mean: 0.0,
        std: 1.0,
    };
    let e = cnnkit::onnx::to_onnx(&m, norm, &["a".into()]).unwrap_err();
    assert!(e.to_string().contains("1 class names for 3 outputs"), "{e}");
}

fn fixture(name: &str) -> (Vec<u8>, serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
    let json = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
    (bytes, serde_json::from_str(&json).unwrap())
}

fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `torch.onnx.export`'s LeNet-5, ResNet-8 (batch norm kept) and MobileNetV2 blocks
/// (batch norm folded, dropout) import as graphs that give PyTorch's logits within 1e-4;
/// with no metadata, pixels in [0, 1] and Fashion-MNIST's class names.
#[test]
fn pytorch_models_import_and_give_its_logits() {
    for (name, needle) in [
        ("lenet5", "maxpool(2)"),
        ("resnet8", "res[conv(32,3,stride=2,pad=1) batchnorm relu"),
        ("mobilenet_block", "groups=96"),
    ] {
        let (bytes, j) = fixture(name);
        let im = cnnkit::onnx::from_onnx(&bytes).unwrap();
        let spec = im.model.spec();
        assert!(spec.contains(needle), "{name}: {spec}");
        assert_eq!((im.norm.mean, im.norm.std), (0.0, 1.0));
        assert_eq!(im.classes.len(), 10);
        assert_eq!(im.classes[0], cnnkit::data::FASHION_CLASSES[0]);
        let shape: Vec<usize> = j["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let x = Tensor::from_vec(shape, f32s(&j["input"])).unwrap();
        let got = im.model.forward(&x).unwrap();
        let d = max_diff(got.data(), &f32s(&j["logits"]));
        assert!(d <= 1e-4, "{name}: max |cnnkit - PyTorch| = {d}");
        eprintln!(
            "{name}: {} layers, max |cnnkit - PyTorch| = {d:.2e}",
            im.model.layers().len()
        );
    }
}

/// What cnnkit exports, it imports back: the same logits (dropout read as the identity);
/// GELU, written as `Div`, `Erf`, ... nodes, is refused by name.
#[test]
fn exported_models_import_back() {
    for (name, spec, [c, h, w]) in MODELS {
        let input = Shape::Image { c, h, w };
        let model = Model::from_spec(spec, input, 7).unwrap();
        let classes: Vec<String> = (0..model.output_shape().len())
            .map(|i| format!("c{i}"))
            .collect();
        let norm = Normalize {
            mean: 0.25,
            std: 0.5,
        };
        let bytes = cnnkit::onnx::to_onnx(&model, norm, &classes).unwrap();
        let im = match cnnkit::onnx::from_onnx(&bytes) {
            Ok(im) => im,
            Err(e) => {
                assert!(spec.contains("gelu"), "{name}: {e}");
                assert!(
                    e.to_string()
                        .contains("`4_Div` (Div): operator not supported"),
                    "{e}"
                );
                continue;
            }
        };
        assert_eq!((im.norm.mean, im.norm.std), (0.25, 0.5));
        assert_eq!(im.classes, classes);
        let mut rng = Rng::new(3);
        let x = Tensor::from_vec(
            input.batched(2),
            (0..2 * input.len()).map(|_| rng.normal()).collect(),
        )
        .unwrap();
        let (a, b) = (model.forward(&x).unwrap(), im.model.forward(&x).unwrap());
        assert_eq!(a.data(), b.data(), "{name}");
    }
}

/// Hostile files: each refused with a message (the node's name and op type where there
/// is one), nothing allocated beyond what the file holds.
#[test]
fn hostile_onnx_files_are_refused_by_name() {
    let (bytes, _) = fixture("resnet8");
    let good = ModelProto::decode(bytes.as_slice()).unwrap();
    let refuse = |m: &ModelProto, needle: &str| {
        let e = cnnkit::onnx::from_onnx(&m.encode_to_vec())
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "`{needle}` not in: {e}");
    };
    let e = cnnkit::onnx::from_onnx(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(e.to_string().contains("not an ONNX model"), "{e}");
    assert!(cnnkit::onnx::from_onnx(b"\x08\x08not onnx at all").is_err());
    let conv = |m: &mut ModelProto| -> usize {
        let g = m.graph.as_ref().unwrap();
        g.node
            .iter()
            .position(|n| n.op_type.as_deref() == Some("Conv"))
            .unwrap()
    };
    // an operator cnnkit does not run
    let mut m = good.clone();
    let i = conv(&mut m);
    let g = m.graph.as_mut().unwrap();
    g.node[i].op_type = Some("Softplus".into());
    let name = g.node[i].name.clone().unwrap();
    refuse(&m, &format!("`{name}` (Softplus): operator not supported"));
    // an attribute value it does not take
    let mut m = good.clone();
    let i = conv(&mut m);
    let g = m.graph.as_mut().unwrap();
    g.node[i]
        .attribute
        .iter_mut()
        .find(|a| a.name.as_deref() == Some("dilations"))
        .unwrap()
        .ints = vec![2, 2];
    refuse(&m, "dilated convolutions are not supported");
    // a weight that claims 2^40 floats and holds a few
    let mut m = good.clone();
    let g = m.graph.as_mut().unwrap();
    let w = g.node[conv(&mut good.clone())].input[1].clone();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some(w.as_str()))
        .unwrap();
    t.dims = vec![1 << 20, 1, 1 << 10, 1 << 10];
    refuse(&m, "kernel_shape does not match the weight");
    let t = m.graph.as_mut().unwrap().initializer.iter_mut();
    let t = t
        .into_iter()
        .find(|t| t.name.as_deref() == Some(w.as_str()))
        .unwrap();
    t.dims = vec![1 << 20, 1, 3, 3];
    refuse(&m, "does not hold the 9437184 floats its shape says");
    // a NaN weight
    let mut m = good.clone();
    let g = m.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some(w.as_str()))
        .unwrap();
    t.raw_data.as_mut().unwrap()[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    refuse(&m, "weights must be finite");
    // a second output, a missing graph, bad metadata
    let mut m = good.clone();
    let g = m.graph.as_mut().unwrap();
    let o = g.output[0].clone();
    g.output.push(o);
    refuse(&m, "2 outputs");
    let mut m = good.clone();
    m.graph = None;
    refuse(&m, "no graph");
    let mut m = good.clone();
    m.metadata_props
        .push(cnnkit::onnx::proto::StringStringEntryProto {
            key: Some("pixel_std".into()),
            value: Some("wide".into()),
        });
    refuse(&m, "pixel_std");
    // a branch that leaves its block: the add reads the stem's input too
    let mut m = good.clone();
    let g = m.graph.as_mut().unwrap();
    let add = g
        .node
        .iter()
        .position(|n| n.op_type.as_deref() == Some("Add"))
        .unwrap();
    g.node[add].input.push("input".into());
    g.node[add].op_type = Some("Sum".into());
    refuse(&m, "not made of residual or concatenation blocks");
}
