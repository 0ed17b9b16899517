//! The int8 model file: a [`Quantized`] model in safetensors, every scale and zero point
//! in it, loadable in Python (`safetensors.numpy.load_file`, the metadata with
//! `safe_open(path, "np").metadata()`).
//!
//! Tensors, for the `j`-th quantised layer (a convolution or linear layer, its batch
//! normalisation folded and its ReLU fused):
//!
//! | name | type | shape | what |
//! |---|---|---|---|
//! | `j.weight` | I8 | `[out, kh, kw, in / groups]` (OHWI), or `[out, in]` | symmetric per output channel, zero point 0 |
//! | `j.bias` | I32 | `[out]` | at `input_scale * weight_scale[o]`, zero point 0 |
//! | `j.weight_scale` | F32 | `[out]` | each output channel's weight scale |
//!
//! The metadata entry `cnnkit` is a JSON object: `kind` (`"int8"`), `format` ([`FORMAT`]),
//! `spec` (the f32 model's spec, whose layers give every geometry), `input` (`[c, h,
//! w]`), `pixel_mean`, `pixel_std`, `classes`, `calibration` (`images`, `method`:
//! `"min-max"`), `input_quant` (`scale`, `zero_point` of the normalised input) and
//! `layers`: per quantised layer, `op` (`conv2d`, `linear`, `max_pool2d`, `avg_pool2d`),
//! and for a convolution or linear layer its `output` (`scale`, `zero_point`) and `min`
//! (the clamp's lower end: the output's zero point under a fused ReLU, else -128). A
//! layer's input quantisation is the previous layer's output's (a pooling keeps its
//! input's); activations are NHWC (a linear layer after a flatten takes its columns in
//! `(h, w, c)` order). Real values are `scale * (q - zero_point)`; the requantisation
//! multipliers are derived on load as TFLite derives them
//! ([`cnnkit_kernels::Requant::for_scales`]).
//!
//! A load checks everything before use, as [`crate::checkpoint`] does: the file through
//! the same caps, every metadata field (naming it), the spec's size against the file's
//! length before a tensor is allocated, every tensor's type and shape, every scale
//! (finite, normal, above 0, a multiplier TFLite's scheme can hold) and zero point
//! (-128..=127), and no tensor that does not belong. A save checks the bytes by loading
//! them before it writes (through [`crate::fsio::write_atomic`]).

use std::path::Path;

use cnnkit_kernels::net::Layer as NetLayer;
use cnnkit_kernels::{Requant, qnet::QNetwork};
use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::{
    QuantLayer, Quantized, TensorQuant, Walk, act_clamp, check_int8_form, fused_activations,
};
use crate::checkpoint::{self, f32_bytes, parse, read_safetensors, serialize, validate_io};
use crate::data::Normalize;
use crate::error::{Error, Result};
use crate::export::Export;
use crate::model::Model;
use crate::spec;

/// Version of the int8 metadata layout: 2 since residual and concatenation blocks, ReLU6
/// and clamps (written only by a model that has one of them; a plain stack is still
/// written as format 1, which every earlier cnnkit reads).
pub const FORMAT: u32 = 2;

/// The `kind` of an int8 model file.
pub const KIND: &str = "int8";

/// The calibration method recorded (the only one so far).
pub const METHOD: &str = "min-max";

/// A tensor's scale and zero point, as the metadata holds them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantParams {
    /// The step between two int8 values.
    pub scale: f32,
    /// The int8 value of real 0.
    pub zero_point: i32,
}

/// How the model was calibrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Training images run through the f32 model.
    pub images: usize,
    /// [`METHOD`].
    pub method: String,
}

/// One quantised layer's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerMeta {
    /// `conv2d`, `linear`, `max_pool2d`, `avg_pool2d`; since format 2 also `clamp` (a
    /// ReLU or ReLU6 in place), `fused` (one the layer before took as its clamp), `push`,
    /// `load`, `add`, `concat`, `drop` (the block operations of
    /// [`cnnkit_kernels::qnet::QLayer`]).
    pub op: String,
    /// The output quantisation of a convolution, linear layer, `add` or `concat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<QuantParams>,
    /// The clamp's lower end of a convolution, linear layer or `add`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    /// Its upper end, where it is not 127 (a fused ReLU6; format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}

/// The `cnnkit` metadata of an int8 model file (`kind` first: [`looks_like_quantized`]
/// knows the file from its first bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QMeta {
    /// [`KIND`].
    pub kind: String,
    /// [`FORMAT`].
    pub format: u32,
    /// The f32 model's spec.
    pub spec: String,
    /// Input shape `[channels, height, width]`.
    pub input: [usize; 3],
    /// Mean of the training pixels (in `[0, 1]`).
    pub pixel_mean: f32,
    /// Their standard deviation (in `[0.001, 1]`).
    pub pixel_std: f32,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// How it was calibrated.
    pub calibration: Calibration,
    /// The normalised input's quantisation.
    pub input_quant: QuantParams,
    /// Per quantised layer.
    pub layers: Vec<LayerMeta>,
}

/// Whether a model file's `cnnkit` metadata (JSON) is an int8 model's.
pub fn is_int8_meta(json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(|k| k == KIND))
        .unwrap_or(false)
}

/// Whether `head` (a file's first bytes) starts as an int8 model file cnnkit writes.
pub fn looks_like_quantized(head: &[u8]) -> bool {
    const START: &[u8] = br#"{"__metadata__":{"cnnkit":"{\"kind\":\"int8\""#;
    head.len() >= 8 + START.len() && head[8..].starts_with(START)
}

fn op_name(l: &QuantLayer) -> &'static str {
    match l {
        QuantLayer::Conv2d { .. } => "conv2d",
        QuantLayer::Linear { .. } => "linear",
        QuantLayer::MaxPool2d(_) => "max_pool2d",
        QuantLayer::AvgPool2d(_) => "avg_pool2d",
        QuantLayer::Clamp { .. } => "clamp",
        QuantLayer::Fused => "fused",
        QuantLayer::Push => "push",
        QuantLayer::Load { .. } => "load",
        QuantLayer::AddPop { .. } => "add",
        QuantLayer::CatPop { .. } => "concat",
        QuantLayer::Drop => "drop",
    }
}

/// The op of exported layer `l` in the metadata (`fused`: whether the layer before takes
/// it as its clamp).
fn op_of(l: &NetLayer, fused: bool) -> &'static str {
    match l {
        NetLayer::Conv2d { .. } => "conv2d",
        NetLayer::Linear { .. } => "linear",
        NetLayer::MaxPool2d(_) => "max_pool2d",
        NetLayer::AvgPool2d { .. } => "avg_pool2d",
        NetLayer::Act(_) if fused => "fused",
        NetLayer::Act(_) => "clamp",
        NetLayer::Push => "push",
        NetLayer::Load { .. } => "load",
        NetLayer::AddPop => "add",
        NetLayer::CatPop => "concat",
        NetLayer::Drop => "drop",
    }
}

fn params_of(t: TensorQuant) -> QuantParams {
    QuantParams {
        scale: t.scale,
        zero_point: t.zero_point,
    }
}

/// The metadata of `q` with `classes`.
pub fn meta_of(q: &Quantized, classes: &[String]) -> QMeta {
    let (c, h, w) = q.shape;
    let layers: Vec<LayerMeta> = q
        .layers
        .iter()
        .map(|l| {
            let (output, min, max) = match l {
                QuantLayer::Conv2d {
                    output, min, max, ..
                }
                | QuantLayer::Linear {
                    output, min, max, ..
                }
                | QuantLayer::AddPop {
                    output, min, max, ..
                } => (
                    Some(params_of(*output)),
                    Some(i32::from(*min)),
                    (*max != 127).then_some(i32::from(*max)),
                ),
                QuantLayer::CatPop { output, .. } => (Some(params_of(*output)), None, None),
                _ => (None, None, None),
            };
            LayerMeta {
                op: op_name(l).into(),
                output,
                min,
                max,
            }
        })
        .collect();
    // format 1 where it says everything (what earlier versions read)
    let v1 = ["conv2d", "linear", "max_pool2d", "avg_pool2d"];
    let format = if layers
        .iter()
        .all(|l| v1.contains(&l.op.as_str()) && l.max.is_none())
    {
        1
    } else {
        FORMAT
    };
    QMeta {
        kind: KIND.into(),
        format,
        spec: q.spec.clone(),
        input: [c, h, w],
        pixel_mean: q.norm.mean,
        pixel_std: q.norm.std,
        classes: classes.to_vec(),
        calibration: Calibration {
            images: q.calibration_images,
            method: METHOD.into(),
        },
        input_quant: params_of(q.input),
        layers,
    }
}

/// The bytes of an int8 model file for `q` with `classes`, checked by loading them.
///
/// # Errors
/// [`Error::Invalid`] for metadata or values the loader would refuse (nothing to write).
pub fn quantized_bytes(q: &Quantized, classes: &[String]) -> Result<Vec<u8>> {
    let meta = meta_of(q, classes);
    let mut tensors = Vec::new();
    for (j, l) in q.layers.iter().enumerate() {
        if let QuantLayer::Conv2d {
            weight,
            bias,
            weight_scale,
            ..
        }
        | QuantLayer::Linear {
            weight,
            bias,
            weight_scale,
            ..
        } = l
        {
            let out = bias.len();
            let shape = match l {
                QuantLayer::Conv2d { params: p, .. } => {
                    vec![
                        out,
                        p.kernel_h,
                        p.kernel_w,
                        weight.len() / out.max(1) / (p.kernel_h * p.kernel_w).max(1),
                    ]
                }
                _ => vec![out, weight.len() / out.max(1)],
            };
            tensors.push((
                format!("{j}.weight"),
                Dtype::I8,
                shape,
                weight.iter().map(|&v| v as u8).collect(),
            ));
            tensors.push((
                format!("{j}.bias"),
                Dtype::I32,
                vec![out],
                bias.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            tensors.push((
                format!("{j}.weight_scale"),
                Dtype::F32,
                vec![out],
                f32_bytes(weight_scale),
            ));
        }
    }
    let json = serde_json::to_string(&meta).map_err(|e| Error::invalid(e.to_string()))?;
    let bytes = serialize(tensors, json)?;
    let (again, _) = from_bytes(Path::new("(the model to save)"), &bytes)
        .map_err(|e| Error::invalid(format!("the int8 model cannot be saved: {e}")))?;
    if again != *q {
        return Err(Error::invalid(
            "internal error: the int8 model does not read back as saved (a bug in cnnkit)",
        ));
    }
    Ok(bytes)
}

/// Saves `q` (with `classes`) to `path` through [`crate::fsio::write_atomic`].
///
/// # Errors
/// As [`quantized_bytes`]; [`Error::Io`] naming the file.
pub fn save(path: &Path, q: &Quantized, classes: &[String]) -> Result<()> {
    let bytes = quantized_bytes(q, classes)?;
    crate::fsio::write_atomic(path, &bytes)
}

/// Loads an int8 model file: the model and its metadata.
///
/// # Errors
/// [`Error::Io`]; [`Error::Checkpoint`] for anything the module docs list.
pub fn load(path: &Path) -> Result<(Quantized, QMeta)> {
    from_bytes(path, &read_safetensors(path)?)
}

/// Reads tensor `name` of `dtype` and `shape`, its raw bytes.
fn raw<'a>(
    path: &Path,
    st: &'a SafeTensors,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'a [u8]> {
    let v = st
        .tensor(name)
        .map_err(|_| Error::checkpoint(path, format!("tensor `{name}` is missing")))?;
    if v.dtype() != dtype {
        return Err(Error::checkpoint(
            path,
            format!("tensor `{name}` is {:?}, expected {dtype:?}", v.dtype()),
        ));
    }
    if v.shape() != shape {
        return Err(Error::checkpoint(
            path,
            format!(
                "tensor `{name}` has shape {:?}, the model needs {shape:?}",
                v.shape()
            ),
        ));
    }
    Ok(v.data())
}

/// A scale and zero point from the metadata, checked; `field` names it in messages.
fn tensor_quant(path: &Path, field: &str, p: QuantParams) -> Result<TensorQuant> {
    if !(p.scale.is_normal() && p.scale > 0.0) {
        return Err(Error::checkpoint(
            path,
            format!(
                "metadata `{field}.scale` is {}: a scale is finite, normal and above 0",
                p.scale
            ),
        ));
    }
    if !(-128..=127).contains(&p.zero_point) {
        return Err(Error::checkpoint(
            path,
            format!(
                "metadata `{field}.zero_point` is {}: not an int8 value",
                p.zero_point
            ),
        ));
    }
    Ok(TensorQuant {
        scale: p.scale,
        zero_point: p.zero_point,
    })
}

/// The output quantisation and clamp of layer `j`, a convolution, linear layer or sum.
fn output_of(path: &Path, j: usize, m: &LayerMeta) -> Result<(TensorQuant, i8, i8)> {
    let field = format!("layers[{j}]");
    let out = m
        .output
        .ok_or_else(|| Error::checkpoint(path, format!("metadata `{field}.output` is missing")))?;
    let out = tensor_quant(path, &format!("{field}.output"), out)?;
    let min = m
        .min
        .ok_or_else(|| Error::checkpoint(path, format!("metadata `{field}.min` is missing")))?;
    let int8 = |what: &str, v: i32| {
        i8::try_from(v).map_err(|_| {
            Error::checkpoint(
                path,
                format!("metadata `{field}.{what}` is {v}: not an int8 value"),
            )
        })
    };
    let (min, max) = (int8("min", min)?, int8("max", m.max.unwrap_or(127))?);
    if min > max {
        return Err(Error::checkpoint(
            path,
            format!("metadata `{field}`: the clamp's min {min} is above its max {max}"),
        ));
    }
    Ok((out, min, max))
}

/// Weights, biases, scales and multipliers of layer `j` with `out` outputs, its weight
/// tensor of `shape`, from input scale `s_in` to output scale `s_out`.
#[allow(clippy::type_complexity)]
fn weights_of(
    path: &Path,
    st: &SafeTensors,
    j: usize,
    shape: &[usize],
    s_in: f32,
    s_out: f32,
) -> Result<(Vec<i8>, Vec<i32>, Vec<f32>, Vec<Requant>)> {
    let out = shape[0];
    let w = raw(path, st, &format!("{j}.weight"), Dtype::I8, shape)?;
    let weight = w.iter().map(|&b| b as i8).collect();
    let b = raw(path, st, &format!("{j}.bias"), Dtype::I32, &[out])?;
    let bias = b
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let name = format!("{j}.weight_scale");
    let s = raw(path, st, &name, Dtype::F32, &[out])?;
    let mut scales = Vec::with_capacity(out);
    let mut requant = Vec::with_capacity(out);
    for (o, c) in s.chunks_exact(4).enumerate() {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if !(v.is_normal() && v > 0.0) {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor `{name}` element {o} is {v}: a scale is finite, normal and above 0"
                ),
            ));
        }
        requant.push(Requant::for_scales(s_in, v, s_out).map_err(|e| {
            Error::checkpoint(
                path,
                format!(
                    "tensor `{name}` element {o}: input scale x weight scale / output scale \
                     = {s_in} x {v} / {s_out} is no requantisation multiplier ({e})"
                ),
            )
        })?);
        scales.push(v);
    }
    Ok((weight, bias, scales, requant))
}

/// As [`load`] on the bytes of a file already in memory; `path` is for messages.
///
/// # Errors
/// As [`load`].
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<(Quantized, QMeta)> {
    let (st, json) = parse(path, bytes)?;
    let bad = |msg: String| Error::checkpoint(path, msg);
    if !is_int8_meta(&json) {
        return Err(bad(
            "not an int8 model (an f32 checkpoint? `cnnkit quantize` makes one from it)".into(),
        ));
    }
    let meta: QMeta =
        serde_json::from_str(&json).map_err(|e| bad(format!("bad `cnnkit` metadata: {e}")))?;
    if !(1..=FORMAT).contains(&meta.format) {
        return Err(bad(format!(
            "metadata format {}, this cnnkit reads int8 formats 1 to {FORMAT}",
            meta.format
        )));
    }
    // the fields alone first (the class count again once the spec gives the outputs)
    validate_io(
        meta.input,
        meta.pixel_mean,
        meta.pixel_std,
        &meta.classes,
        usize::MAX,
    )
    .map_err(|e| bad(format!("metadata {e}")))?;
    let [c, h, w] = meta.input;
    let input = crate::layers::Shape::Image { c, h, w };
    let plan = spec::plan(&meta.spec, input)
        .map_err(|e| bad(format!("model spec in the metadata: {e}")))?;
    // every parameter of the f32 spec takes at least a byte of the file (a weight one,
    // a bias or batch-norm channel the 8 bytes of its layer's bias and scale): a spec
    // larger than the file is refused before the model is built
    let elements = spec::param_elements(&plan);
    if elements > bytes.len() as u64 {
        return Err(bad(format!(
            "the model spec in the metadata has {elements} parameters, more than the file's \
             {} bytes can hold",
            bytes.len()
        )));
    }
    let outputs = plan.last().map_or(0, |p| p.output.len());
    validate_io(
        meta.input,
        meta.pixel_mean,
        meta.pixel_std,
        &meta.classes,
        outputs,
    )
    .map_err(|e| bad(format!("metadata {e}")))?;
    if meta.calibration.method != METHOD || meta.calibration.images == 0 {
        return Err(bad(format!(
            "metadata `calibration`: {} images by `{}` (expected at least 1 image, `{METHOD}`)",
            meta.calibration.images, meta.calibration.method
        )));
    }
    let norm = Normalize {
        mean: meta.pixel_mean,
        std: meta.pixel_std,
    };
    // the geometry: the f32 model's export (weights do not matter here)
    let model =
        Model::from_spec(&meta.spec, input, 0).map_err(|e| bad(format!("model spec: {e}")))?;
    let e = Export::new(&model, norm, 1).map_err(|e| bad(format!("model spec: {e}")))?;
    check_int8_form(&e.layers).map_err(|e| bad(format!("model spec: {e}")))?;
    if meta.layers.len() != e.layers.len() {
        return Err(bad(format!(
            "metadata `layers`: {} entries, the spec has {} int8 layers",
            meta.layers.len(),
            e.layers.len()
        )));
    }
    let input_q = tensor_quant(path, "input_quant", meta.input_quant)?;
    let fused = fused_activations(&e.layers);
    let mut walk = Walk::new(input_q, (c, h, w));
    let mut layers = Vec::with_capacity(e.layers.len());
    let mut expected = Vec::new();
    for (j, (l, m)) in e.layers.iter().zip(&meta.layers).enumerate() {
        let want = op_of(l, fused[j].is_some());
        if m.op != want {
            return Err(bad(format!(
                "metadata `layers[{j}].op` is `{}`, the spec's layer is `{want}`",
                m.op
            )));
        }
        if meta.format < 2 && (want != op_of(l, false) || !l.is_sized() || m.max.is_some()) {
            return Err(bad(format!(
                "metadata `layers[{j}]` (`{want}`) needs int8 format 2, the file says {}",
                meta.format
            )));
        }
        let cur = walk.cur;
        match *l {
            NetLayer::Conv2d { params, .. } => {
                let (out, min, max) = output_of(path, j, m)?;
                let cig = params.dims()?.in_per_group;
                let shape = [params.out_channels, params.kernel_h, params.kernel_w, cig];
                let (weight, bias, weight_scale, requant) =
                    weights_of(path, &st, j, &shape, cur.scale, out.scale)?;
                layers.push(QuantLayer::Conv2d {
                    params,
                    weight,
                    bias,
                    weight_scale,
                    requant,
                    input: cur,
                    output: out,
                    min,
                    max,
                });
                walk.cur = out;
                let d = params.dims()?;
                walk.image = (params.out_channels, d.out_h, d.out_w);
            }
            NetLayer::Linear { params, .. } => {
                let (out, min, max) = output_of(path, j, m)?;
                let shape = [params.out_features, params.in_features];
                let (weight, bias, weight_scale, requant) =
                    weights_of(path, &st, j, &shape, cur.scale, out.scale)?;
                layers.push(QuantLayer::Linear {
                    params,
                    weight,
                    bias,
                    weight_scale,
                    requant,
                    input: cur,
                    output: out,
                    min,
                    max,
                });
                walk.cur = out;
                walk.image = (params.out_features, 1, 1);
            }
            NetLayer::MaxPool2d(p) | NetLayer::AvgPool2d { params: p, .. } => {
                layers.push(if let NetLayer::MaxPool2d(_) = l {
                    QuantLayer::MaxPool2d(p)
                } else {
                    QuantLayer::AvgPool2d(p)
                });
                let d = p.dims()?;
                walk.image = (p.channels, d.out_h, d.out_w);
            }
            NetLayer::Act(a) => layers.push(if fused[j].is_some() {
                QuantLayer::Fused
            } else {
                let (min, max) = act_clamp(a, cur);
                QuantLayer::Clamp { min, max }
            }),
            NetLayer::AddPop => {
                let (out, min, max) = output_of(path, j, m)?;
                layers.push(
                    walk.block(l, out, (min, max))
                        .map_err(|e| bad(e.to_string()))?,
                );
            }
            NetLayer::CatPop => {
                let out = m
                    .output
                    .ok_or_else(|| bad(format!("metadata `layers[{j}].output` is missing")))?;
                let out = tensor_quant(path, &format!("layers[{j}].output"), out)?;
                layers.push(
                    walk.block(l, out, (-128, 127))
                        .map_err(|e| bad(e.to_string()))?,
                );
            }
            NetLayer::Push | NetLayer::Load { .. } | NetLayer::Drop => {
                layers.push(
                    walk.block(l, cur, (-128, 127))
                        .map_err(|e| bad(e.to_string()))?,
                );
            }
        }
        if matches!(l, NetLayer::Conv2d { .. } | NetLayer::Linear { .. }) {
            for t in ["weight", "bias", "weight_scale"] {
                expected.push(format!("{j}.{t}"));
            }
        }
        // what the layer does not take
        let takes = match l {
            NetLayer::Conv2d { .. } | NetLayer::Linear { .. } | NetLayer::AddPop => (true, true),
            NetLayer::CatPop => (true, false),
            _ => (false, false),
        };
        if (!takes.0 && m.output.is_some()) || (!takes.1 && (m.min.is_some() || m.max.is_some())) {
            return Err(bad(format!(
                "metadata `layers[{j}]` (`{want}`) has a field it does not take (a pooling, \
                 clamp or block operation keeps its input's quantisation; a concatenation \
                 has no clamp)"
            )));
        }
    }
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    if let Some(extra) = names.iter().find(|n| !expected.contains(n)) {
        return Err(bad(format!(
            "tensor `{extra}` does not belong to the int8 model of `{}`",
            meta.spec
        )));
    }
    let q = Quantized {
        layers,
        input: input_q,
        output: walk.cur,
        norm,
        shape: (c, h, w),
        spec: meta.spec.clone(),
        calibration_images: meta.calibration.images,
    };
    {
        let l = q.qlayers(1).map_err(|e| bad(e.to_string()))?;
        QNetwork::new(&l).map_err(|e| bad(e.to_string()))?;
    }
    Ok((q, meta))
}

/// A model file of either kind: what `eval` and `predict` take.
#[derive(Debug, Clone)]
pub enum AnyModel {
    /// An f32 checkpoint.
    F32(Box<Model>, Box<checkpoint::Meta>),
    /// An int8 model file.
    Int8(Box<Quantized>, Box<QMeta>),
}

impl AnyModel {
    /// Loads either kind (told apart by the metadata's `kind`), or an ONNX file (named
    /// `*.onnx`, feature `onnx`: [`crate::onnx::load`]) as an f32 model.
    ///
    /// # Errors
    /// As [`checkpoint::load_model`] or [`load`].
    pub fn load(path: &Path) -> Result<AnyModel> {
        #[cfg(feature = "onnx")]
        if crate::onnx::is_onnx_path(path) {
            let (model, m) = crate::onnx::load(path)?;
            return Ok(AnyModel::F32(Box::new(model), Box::new(m)));
        }
        let bytes = read_safetensors(path)?;
        let (_, json) = parse(path, &bytes)?;
        if is_int8_meta(&json) {
            let (q, m) = from_bytes(path, &bytes)?;
            Ok(AnyModel::Int8(Box::new(q), Box::new(m)))
        } else {
            let (model, m) = checkpoint::model_from_bytes(path, &bytes)?;
            Ok(AnyModel::F32(Box::new(model), Box::new(m)))
        }
    }

    /// `f32` or `int8`.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyModel::F32(..) => "f32",
            AnyModel::Int8(..) => KIND,
        }
    }

    /// The input shape.
    pub fn input_shape(&self) -> crate::layers::Shape {
        match self {
            AnyModel::F32(m, _) => m.input_shape(),
            AnyModel::Int8(q, _) => {
                let (c, h, w) = q.shape;
                crate::layers::Shape::Image { c, h, w }
            }
        }
    }

    /// Class scores per image.
    pub fn outputs(&self) -> usize {
        match self {
            AnyModel::F32(m, _) => m.output_shape().len(),
            AnyModel::Int8(q, _) => q.outputs(),
        }
    }

    /// The class names.
    pub fn classes(&self) -> &[String] {
        match self {
            AnyModel::F32(_, m) => &m.classes,
            AnyModel::Int8(_, m) => &m.classes,
        }
    }

    /// The pixel normalisation.
    pub fn norm(&self) -> Normalize {
        match self {
            AnyModel::F32(_, m) => m.norm(),
            AnyModel::Int8(q, _) => q.norm,
        }
    }

    /// Logits of 8-bit images (NCHW, one after another).
    ///
    /// # Errors
    /// [`Error::Invalid`] for no image or a partial one.
    pub fn predict_u8(&self, pixels: &[u8]) -> Result<Vec<f32>> {
        match self {
            AnyModel::F32(m, meta) => Ok(m.predict_u8(&meta.norm(), pixels)?.data().to_vec()),
            AnyModel::Int8(q, _) => q.forward_u8(pixels),
        }
    }
}
