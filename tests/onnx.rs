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
