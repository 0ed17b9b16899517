//! ONNX: a model written as an ONNX graph (opset 17), for onnxruntime, TensorRT, TFLite's
//! converters and the rest of the ONNX world, and ONNX models read as cnnkit models
//! ([`from_onnx`], [`load`]: what `torch.onnx.export` writes of a CNN; the operators are
//! listed there) (feature `onnx`).
//!
//! The graph takes *normalised* pixels, `[batch, c, h, w]` (the batch dimension is named
//! `batch`), and gives the logits, `[batch, classes]`. The file's `metadata_props` carry
//! what a reader needs to feed it: `pixel_mean` and `pixel_std` (pixels scaled to [0, 1]
//! first, then `(p - mean) / std`) and `classes` (a JSON array of names).
//!
//! | cnnkit | ONNX |
//! |---|---|
//! | `conv` | `Conv` (`group` for `groups`) |
//! | `linear` | `Gemm` (`transB = 1`) |
//! | `maxpool`, `avgpool` | `MaxPool`, `AveragePool` (`count_include_pad = 1`) |
//! | `gap` | `GlobalAveragePool` |
//! | `batchnorm` | `BatchNormalization` (running statistics) |
//! | `relu`, `tanh`, `sigmoid`, `leakyrelu` | `Relu`, `Tanh`, `Sigmoid`, `LeakyRelu` |
//! | `relu6` | `Clip` (0, 6) |
//! | `gelu` | `0.5 x (1 + erf(x / sqrt 2))` in `Div`, `Erf`, `Add`, `Mul` (`Gelu` is opset 20's) |
//! | `flatten`, `dropout` | `Flatten`, `Identity` |
//! | `res[...]`, `cat[...]` | `Add` (`Sum` for more than two branches), `Concat` on channels |
//!
//! Tensors keep the checkpoint's names (`3.weight`, ...); layer `i`'s node is named
//! `i_OpType` (GELU's later nodes `i_OpType_k`).
//!
//! ```
//! use cnnkit::{Model, Shape, data::Normalize};
//! let m = Model::from_spec("conv(4,3,pad=1) relu res[conv(4,3,pad=1)] gap flatten linear(3)",
//!                          Shape::Image { c: 1, h: 8, w: 8 }, 1).unwrap();
//! let norm = Normalize { mean: 0.5, std: 0.25 };
//! let bytes = cnnkit::onnx::to_onnx(&m, norm, &["a".into(), "b".into(), "c".into()]).unwrap();
//! assert!(bytes.len() > 4 * m.num_params());
//! ```

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::all,
    unreachable_pub
)]
pub mod proto;

mod import;

pub use import::{Imported, MAX_NODES, from_onnx};

use prost::Message;

use crate::data::Normalize;
use crate::error::{Error, Result};
use crate::layers::{Elementwise, Layer, Shape};
use crate::model::Model;
use proto::attribute_proto::AttributeType;
use proto::tensor_shape_proto::{Dimension, dimension};
use proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};

/// The operator set the graph is written for.
pub const OPSET: i64 = 17;
/// ONNX's IR version for opset 17.
const IR_VERSION: i64 = 8;
/// `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;

/// How a file [`to_onnx`] wrote begins: the IR version, then the producer's name.
pub const HEAD: &[u8] = b"\x08\x08\x12\x06cnnkit";

/// Loads an ONNX file as a model with checkpoint metadata (its spec, input, pixel
/// normalisation and class names; no training history): what `eval`, `predict` and
/// `export` take in place of a checkpoint. The file is read through the checkpoint's
/// size cap ([`crate::checkpoint::MAX_FILE`] and the memory budget).
///
/// # Errors
/// [`Error::Checkpoint`] naming the file: unreadable, too large, or refused by
/// [`from_onnx`] or the metadata's checks.
pub fn load(path: &std::path::Path) -> Result<(Model, crate::checkpoint::Meta)> {
    use std::io::Read as _;
    let cap = crate::checkpoint::MAX_FILE.min(crate::budget::get());
    let f = crate::fsio::open_readable(path)?;
    let mut bytes = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(Error::checkpoint(
            path,
            format!("larger than cnnkit reads ({})", crate::budget::human(cap)),
        ));
    }
    let im = from_onnx(&bytes).map_err(|e| Error::checkpoint(path, e.to_string()))?;
    let Shape::Image { c, h, w } = im.model.input_shape() else {
        unreachable!("from_onnx takes images")
    };
    let meta = crate::checkpoint::Meta {
        format: crate::checkpoint::FORMAT,
        spec: im.model.spec(),
        input: [c, h, w],
        pixel_mean: im.norm.mean,
        pixel_std: im.norm.std,
        classes: im.classes,
        config: crate::train::TrainConfig::default(),
        epoch: 0,
        steps: 0,
        history: Vec::new(),
        optim_digest: None,
    };
    meta.validate(im.model.output_shape().len())
        .map_err(|e| Error::checkpoint(path, format!("metadata_props: {e}")))?;
    Ok((im.model, meta))
}

/// Whether `path` names an ONNX file (by its extension, `.onnx`).
pub fn is_onnx_path(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// The ONNX file of `model` (see the module docs), its metadata from `norm` and
/// `classes`.
///
/// # Errors
/// [`Error::Invalid`] for class names that do not match the model's outputs.
pub fn to_onnx(model: &Model, norm: Normalize, classes: &[String]) -> Result<Vec<u8>> {
    if model.output_shape().len() != classes.len() {
        return Err(Error::invalid(format!(
            "{} class names for {} outputs",
            classes.len(),
            model.output_shape().len()
        )));
    }
    let last = model.layers().len();
    let value = |v: usize| match v {
        0 => "input".to_string(),
        v if v == last => "logits".to_string(),
        v => format!("v{v}"),
    };
    let tensors = model.state_dict();
    let mut g = GraphProto {
        name: Some("cnnkit".into()),
        ..GraphProto::default()
    };
    for (i, l) in model.layers().iter().enumerate() {
        let ins: Vec<String> = model.inputs(i).iter().map(|&v| value(v)).collect();
        let out = value(i + 1);
        let mut node =
            |op: &str, inputs: Vec<String>, output: String, attrs: Vec<AttributeProto>| {
                // (a layer written as several nodes numbers the later ones)
                let k = g
                    .node
                    .iter()
                    .rev()
                    .take_while(|n| {
                        n.name
                            .as_deref()
                            .is_some_and(|n| n.starts_with(&format!("{i}_")))
                    })
                    .count();
                let name = if k == 0 {
                    format!("{i}_{op}")
                } else {
                    format!("{i}_{op}_{k}")
                };
                g.node.push(NodeProto {
                    name: Some(name),
                    op_type: Some(op.into()),
                    input: inputs,
                    output: vec![output],
                    attribute: attrs,
                    ..NodeProto::default()
                });
            };
        let mut params = Vec::new();
        match l {
            Layer::Conv2d(c) => {
                let (k, s, p) = (c.kernel as i64, c.stride as i64, c.padding as i64);
                node(
                    "Conv",
                    vec![ins[0].clone(), format!("{i}.weight"), format!("{i}.bias")],
                    out,
                    vec![
                        ints("kernel_shape", &[k, k]),
                        ints("strides", &[s, s]),
                        ints("pads", &[p, p, p, p]),
                        ints("dilations", &[1, 1]),
                        int("group", c.groups as i64),
                    ],
                );
                params.extend(["weight", "bias"]);
            }
            Layer::Linear(_) => {
                node(
                    "Gemm",
                    vec![ins[0].clone(), format!("{i}.weight"), format!("{i}.bias")],
                    out,
                    vec![int("transB", 1)],
                );
                params.extend(["weight", "bias"]);
            }
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                let (k, s, pd) = (p.kernel as i64, p.stride as i64, p.padding as i64);
                let mut attrs = vec![
                    ints("kernel_shape", &[k, k]),
                    ints("strides", &[s, s]),
                    ints("pads", &[pd, pd, pd, pd]),
                ];
                let op = if matches!(l, Layer::MaxPool2d(_)) {
                    "MaxPool"
                } else {
                    attrs.push(int("count_include_pad", 1));
                    "AveragePool"
                };
                node(op, ins, out, attrs);
            }
            Layer::GlobalAvgPool => node("GlobalAveragePool", ins, out, vec![]),
            Layer::BatchNorm2d(bn) => {
                let names = ["weight", "bias", "running_mean", "running_var"];
                let mut inputs = ins;
                inputs.extend(names.iter().map(|n| format!("{i}.{n}")));
                node(
                    "BatchNormalization",
                    inputs,
                    out,
                    vec![float("epsilon", bn.eps)],
                );
                params.extend(names);
            }
            Layer::Act(e) => match e {
                Elementwise::Relu => node("Relu", ins, out, vec![]),
                Elementwise::Tanh => node("Tanh", ins, out, vec![]),
                Elementwise::Sigmoid => node("Sigmoid", ins, out, vec![]),
                Elementwise::LeakyRelu(a) => node("LeakyRelu", ins, out, vec![float("alpha", *a)]),
                Elementwise::Relu6 => {
                    g.initializer.push(scalar(&format!("{i}.min"), 0.0));
                    g.initializer.push(scalar(&format!("{i}.max"), 6.0));
                    let inputs = vec![ins[0].clone(), format!("{i}.min"), format!("{i}.max")];
                    node("Clip", inputs, out, vec![]);
                }
                Elementwise::Gelu => {
                    let c = |n: &str| format!("{i}.{n}");
                    for (n, v) in [
                        ("sqrt2", std::f32::consts::SQRT_2),
                        ("one", 1.0),
                        ("half", 0.5),
                    ] {
                        g.initializer.push(scalar(&c(n), v));
                    }
                    let x = ins[0].clone();
                    node("Div", vec![x.clone(), c("sqrt2")], c("div"), vec![]);
                    node("Erf", vec![c("div")], c("erf"), vec![]);
                    node("Add", vec![c("erf"), c("one")], c("add"), vec![]);
                    node("Mul", vec![x, c("add")], c("mul"), vec![]);
                    node("Mul", vec![c("mul"), c("half")], out, vec![]);
                }
            },
            Layer::Flatten => node("Flatten", ins, out, vec![int("axis", 1)]),
            Layer::Dropout(_) => node("Identity", ins, out, vec![]),
            Layer::Add if ins.len() == 2 => node("Add", ins, out, vec![]),
            Layer::Add => node("Sum", ins, out, vec![]),
            Layer::Concat => node("Concat", ins, out, vec![int("axis", 1)]),
        }
        for p in params {
            let name = format!("{i}.{p}");
            let (_, t) = tensors
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| Error::invalid(format!("no tensor {name}")))?;
            g.initializer.push(TensorProto {
                name: Some(name),
                dims: t.shape().iter().map(|&d| d as i64).collect(),
                data_type: Some(FLOAT),
                raw_data: Some(t.data().iter().flat_map(|v| v.to_le_bytes()).collect()),
                ..TensorProto::default()
            });
        }
    }
    g.input.push(value_info("input", model.input_shape()));
    g.output.push(value_info("logits", model.output_shape()));
    let meta = |k: &str, v: String| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v),
    };
    let m = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("cnnkit".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        graph: Some(g),
        metadata_props: vec![
            meta("pixel_mean", format!("{:?}", norm.mean)),
            meta("pixel_std", format!("{:?}", norm.std)),
            meta(
                "classes",
                serde_json::to_string(classes).map_err(|e| Error::invalid(e.to_string()))?,
            ),
            meta("cnnkit_spec", model.spec()),
        ],
        ..ModelProto::default()
    };
    Ok(m.encode_to_vec())
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(ty as i32),
        ..AttributeProto::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: Some(v),
        ..attr(name, AttributeType::Int)
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: Some(v),
        ..attr(name, AttributeType::Float)
    }
}

fn scalar(name: &str, v: f32) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(FLOAT),
        raw_data: Some(v.to_le_bytes().to_vec()),
        ..TensorProto::default()
    }
}

/// A float tensor of `[batch, ...shape]`, the batch dimension named.
fn value_info(name: &str, s: Shape) -> ValueInfoProto {
    let dims = std::iter::once(Dimension {
        value: Some(dimension::Value::DimParam("batch".into())),
        ..Dimension::default()
    })
    .chain(s.batched(1)[1..].iter().map(|&d| Dimension {
        value: Some(dimension::Value::DimValue(d as i64)),
        ..Dimension::default()
    }))
    .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}
