//! Reading an ONNX model (as `torch.onnx.export` writes a CNN) into a [`Model`].
//!
//! Operators: `Conv` (square kernels, equal strides and pads, no dilation), `Gemm`
//! (`alpha = beta = 1`, no `transA`), `BatchNormalization` (inference), `Relu`, `Clip` to
//! `[0, 6]` or `[0, inf)`, `LeakyRelu`, `Tanh`, `Sigmoid`, `MaxPool`, `AveragePool`,
//! `GlobalAveragePool`, `Flatten` (axis 1) and `Reshape` to `[batch, features]`, `Add` and
//! `Sum` of graph values, `Concat` on channels; `Dropout` and `Identity` are dropped. Any
//! other operator, attribute value or layout is refused with the node's name and op type,
//! never guessed. The graph must be series-parallel (residual and concatenation blocks,
//! nested): it becomes a spec with `res[...]` and `cat[...]` blocks.
//!
//! A hostile file is bounded: the file's length is capped before it is read, every
//! tensor's element count is checked against the bytes it holds before anything is
//! allocated for it, and a graph may have at most [`MAX_NODES`] nodes.

use std::collections::HashMap;

use prost::Message;

use super::proto::{AttributeProto, ModelProto, NodeProto, TensorProto, type_proto};
use crate::data::{FASHION_CLASSES, Normalize};
use crate::error::{Error, Result};
use crate::layers::{BatchNorm2d, Conv2d, Elementwise, Layer, Linear, Pool, Shape};
use crate::model::Model;
use crate::tensor::Tensor;

/// Most nodes a graph may have.
pub const MAX_NODES: usize = 4096;

/// A model read from an ONNX file, with what its metadata says.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The model.
    pub model: Model,
    /// The pixel normalisation: `metadata_props` `pixel_mean` and `pixel_std`, else none
    /// (mean 0, std 1: pixels scaled to [0, 1]).
    pub norm: Normalize,
    /// Class names: `metadata_props` `classes` (a JSON array), else Fashion-MNIST's for
    /// 10 outputs, else the label numbers.
    pub classes: Vec<String>,
}

/// One node, its tensors resolved.
struct Node<'a> {
    proto: &'a NodeProto,
    /// Its graph-value inputs (not initializers or constants).
    values: Vec<String>,
}

/// The model in `bytes` (an ONNX `ModelProto`).
///
/// # Errors
/// [`Error::Invalid`] for a file that does not decode, an operator, attribute or graph
/// shape outside the module docs' list (naming the node), tensors that do not fit.
pub fn from_onnx(bytes: &[u8]) -> Result<Imported> {
    let m = ModelProto::decode(bytes)
        .map_err(|e| Error::invalid(format!("not an ONNX model (protobuf: {e})")))?;
    if let Some(o) = m.opset_import.iter().find(|o| {
        !o.domain.as_deref().unwrap_or("").is_empty() && o.domain.as_deref() != Some("ai.onnx")
    }) {
        return Err(Error::invalid(format!(
            "operator set `{}` is not supported (only ONNX's own)",
            o.domain.as_deref().unwrap_or("")
        )));
    }
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| Error::invalid("the ONNX model has no graph"))?;
    if g.node.len() > MAX_NODES {
        return Err(Error::invalid(format!(
            "the graph has {} nodes, more than {MAX_NODES}",
            g.node.len()
        )));
    }
    // constants: initializers and Constant nodes
    let mut consts: HashMap<&str, &TensorProto> = HashMap::new();
    for t in &g.initializer {
        consts.insert(t.name.as_deref().unwrap_or(""), t);
    }
    for n in &g.node {
        if n.op_type.as_deref() == Some("Constant") {
            let t = n
                .attribute
                .iter()
                .find(|a| a.name.as_deref() == Some("value"))
                .and_then(|a| a.t.as_ref())
                .ok_or_else(|| node_err(n, "a Constant without a tensor `value`"))?;
            consts.insert(output(n)?, t);
        }
    }
    let input = g
        .input
        .iter()
        .find(|i| !consts.contains_key(i.name.as_deref().unwrap_or("")))
        .ok_or_else(|| Error::invalid("the graph has no input"))?;
    let in_name = input.name.clone().unwrap_or_default();
    let shape = input_shape(input)?;
    let out_name = match g.output.as_slice() {
        [o] => o.name.clone().unwrap_or_default(),
        o => {
            return Err(Error::invalid(format!(
                "the graph has {} outputs; cnnkit models have one (the logits)",
                o.len()
            )));
        }
    };

    // the nodes that compute, with Identity and Dropout read through
    let mut alias: HashMap<String, String> = HashMap::new();
    let resolve = |alias: &HashMap<String, String>, v: &str| -> String {
        let mut v = v.to_string();
        for _ in 0..=MAX_NODES {
            match alias.get(&v) {
                Some(a) => v = a.clone(),
                None => break,
            }
        }
        v
    };
    let mut nodes: Vec<Node> = Vec::new();
    for n in &g.node {
        let op = n.op_type.as_deref().unwrap_or("");
        if op == "Constant" {
            continue;
        }
        if n.domain
            .as_deref()
            .is_some_and(|d| !d.is_empty() && d != "ai.onnx")
        {
            return Err(node_err(n, "an operator outside ONNX's own set"));
        }
        let values: Vec<String> = n
            .input
            .iter()
            .filter(|v| !v.is_empty() && !consts.contains_key(v.as_str()))
            .map(|v| resolve(&alias, v))
            .collect();
        if op == "Identity" || op == "Dropout" {
            if n.output.len() > 1 && n.output[1..].iter().any(|o| !o.is_empty()) {
                return Err(node_err(n, "a Dropout whose mask is used"));
            }
            let [v] = values.as_slice() else {
                return Err(node_err(n, "needs one graph input"));
            };
            alias.insert(output(n)?.to_string(), v.clone());
            continue;
        }
        nodes.push(Node { proto: n, values });
    }
    let out_name = resolve(&alias, &out_name);

    // series-parallel order, then the layers
    let mut b = Builder {
        nodes: &nodes,
        consts: &consts,
        producer: HashMap::new(),
        consumers: HashMap::new(),
        ids: HashMap::from([(in_name.clone(), 0)]),
        shapes: vec![shape],
        layers: Vec::new(),
        inputs: Vec::new(),
    };
    for (i, n) in nodes.iter().enumerate() {
        for v in &n.values {
            if *v != in_name && !b.producer.contains_key(v) {
                return Err(node_err(
                    n.proto,
                    &format!("reads `{v}` before any node writes it (nodes out of order?)"),
                ));
            }
            b.consumers.entry(v.clone()).or_default().push(i);
        }
        let out = output(n.proto)?;
        if b.producer.insert(out.to_string(), i).is_some() || out == in_name {
            return Err(node_err(
                n.proto,
                &format!("writes `{out}`, which another node wrote"),
            ));
        }
    }
    let end = b.sequence(&in_name, None, 0)?;
    if end != out_name {
        return Err(Error::invalid(format!(
            "the graph ends in `{end}`, not its output `{out_name}`"
        )));
    }
    let model = Model::graph(shape, b.layers, b.inputs)?;
    let outputs = model.output_shape();
    let Shape::Flat(classes) = outputs else {
        return Err(Error::invalid(format!(
            "the graph gives {outputs} per image: flatten it to class scores"
        )));
    };
    let meta = |k: &str| {
        m.metadata_props
            .iter()
            .find(|p| p.key.as_deref() == Some(k))
            .and_then(|p| p.value.as_deref())
    };
    let number = |k: &str, default: f32| -> Result<f32> {
        meta(k).map_or(Ok(default), |v| {
            v.trim().parse::<f32>().map_err(|_| {
                Error::invalid(format!("metadata_props `{k}` = `{v}` is not a number"))
            })
        })
    };
    let norm = Normalize {
        mean: number("pixel_mean", 0.0)?,
        std: number("pixel_std", 1.0)?,
    };
    let names = match meta("classes") {
        Some(j) => serde_json::from_str::<Vec<String>>(j).map_err(|e| {
            Error::invalid(format!(
                "metadata_props `classes` is not a JSON array of names: {e}"
            ))
        })?,
        None if classes == 10 => FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
        None => (0..classes).map(|i| i.to_string()).collect(),
    };
    Ok(Imported {
        model,
        norm,
        classes: names,
    })
}

/// The graph walked in series-parallel order into layers.
struct Builder<'a> {
    nodes: &'a [Node<'a>],
    consts: &'a HashMap<&'a str, &'a TensorProto>,
    producer: HashMap<String, usize>,
    consumers: HashMap<String, Vec<usize>>,
    /// ONNX value -> cnnkit value.
    ids: HashMap<String, usize>,
    shapes: Vec<Shape>,
    layers: Vec<Layer>,
    inputs: Vec<Vec<usize>>,
}

impl Builder<'_> {
    /// Layers from value `from` on, until a value `stop` reads (or the graph's end);
    /// returns the value it ends with.
    fn sequence(&mut self, from: &str, stop: Option<usize>, depth: usize) -> Result<String> {
        if depth > 32 {
            return Err(Error::invalid("blocks nested deeper than 32"));
        }
        let mut cur = from.to_string();
        loop {
            let cons = self.consumers.get(&cur).cloned().unwrap_or_default();
            if stop.is_some_and(|s| cons.contains(&s)) {
                if cons.len() > 1 {
                    return Err(self.not_sp(&cur));
                }
                return Ok(cur);
            }
            match cons.as_slice() {
                [] => return Ok(cur),
                [n] if !is_merge(self.nodes[*n].proto) => {
                    cur = self.emit(*n, &[cur.clone()])?;
                }
                [_] => return Err(self.not_sp(&cur)),
                _ => cur = self.block(&cur, &cons, depth)?,
            }
        }
    }

    /// The block that starts at the fork `f` (read by the nodes `cons`): its join, each
    /// branch in the join's input order, then the join.
    fn block(&mut self, f: &str, cons: &[usize], depth: usize) -> Result<String> {
        let join = self.join(f, cons)?;
        let jn = &self.nodes[join];
        let mut ends = Vec::new();
        for v in jn.values.clone() {
            if v == f {
                ends.push(v);
                continue;
            }
            // the branch's first node: the consumer of `f` from which `v` is reached
            let first = cons
                .iter()
                .copied()
                .filter(|&c| c != join)
                .find(|&c| self.reaches(c, &v, join))
                .ok_or_else(|| self.not_sp(f))?;
            let start = self.emit(first, &[f.to_string()])?;
            let end = self.sequence(&start, Some(join), depth + 1)?;
            if end != v {
                return Err(self.not_sp(f));
            }
            ends.push(end);
        }
        // every reader of `f` is in a branch, or the join
        let branches = ends.iter().filter(|e| *e != f).count();
        if cons.len() != branches + usize::from(ends.iter().any(|e| e == f)) {
            return Err(self.not_sp(f));
        }
        self.emit(join, &ends)
    }

    /// The merge node every path from `f` passes through first.
    fn join(&self, f: &str, cons: &[usize]) -> Result<usize> {
        let lo = *cons.iter().min().expect("a fork has readers");
        (lo..self.nodes.len())
            .filter(|&j| is_merge(self.nodes[j].proto))
            .find(|&j| self.dominated(cons, j))
            .ok_or_else(|| self.not_sp(f))
    }

    /// Whether every path from the nodes `from` reaches node `j` before the graph's end.
    fn dominated(&self, from: &[usize], j: usize) -> bool {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = from.iter().copied().filter(|&n| n != j).collect();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            let out = output(self.nodes[n].proto).unwrap_or("");
            match self.consumers.get(out) {
                None => return false, // an end not through `j`
                Some(next) => stack.extend(next.iter().copied().filter(|&m| m != j)),
            }
        }
        true
    }

    /// Whether value `v` is reached from node `n` without passing `stop`.
    fn reaches(&self, n: usize, v: &str, stop: usize) -> bool {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![n];
        while let Some(n) = stack.pop() {
            if n == stop || std::mem::replace(&mut seen[n], true) {
                continue;
            }
            let out = output(self.nodes[n].proto).unwrap_or("");
            if out == v {
                return true;
            }
            if let Some(next) = self.consumers.get(out) {
                stack.extend(next);
            }
        }
        false
    }

    fn not_sp(&self, v: &str) -> Error {
        Error::invalid(format!(
            "the graph around `{v}` is not made of residual or concatenation blocks \
             (branches that leave a block, or join another)"
        ))
    }

    /// Node `n` as a layer reading the ONNX values `ins`; returns its output's name.
    fn emit(&mut self, n: usize, ins: &[String]) -> Result<String> {
        let node = &self.nodes[n];
        let p = node.proto;
        let ids: Vec<usize> = ins
            .iter()
            .map(|v| {
                self.ids
                    .get(v)
                    .copied()
                    .ok_or_else(|| node_err(p, &format!("reads `{v}` out of order")))
            })
            .collect::<Result<_>>()?;
        let in_shapes: Vec<Shape> = ids.iter().map(|&v| self.shapes[v]).collect();
        let layer = to_layer(p, self.consts, &in_shapes)?;
        let shape = if layer.is_merge() {
            layer.to_spec().merge_shape(&in_shapes)
        } else {
            layer.output_shape(in_shapes[0])
        }
        .map_err(|e| node_err(p, &e.to_string()))?;
        self.layers.push(layer);
        self.inputs.push(ids);
        self.shapes.push(shape);
        let out = output(p)?.to_string();
        self.ids.insert(out.clone(), self.layers.len());
        Ok(out)
    }
}

fn is_merge(n: &NodeProto) -> bool {
    matches!(n.op_type.as_deref(), Some("Add" | "Sum" | "Concat"))
}

fn output(n: &NodeProto) -> Result<&str> {
    match n.output.first() {
        Some(o) if !o.is_empty() => Ok(o),
        _ => Err(node_err(n, "has no output")),
    }
}

fn node_err(n: &NodeProto, msg: &str) -> Error {
    Error::invalid(format!(
        "ONNX node `{}` ({}): {msg}",
        n.name.as_deref().unwrap_or("?"),
        n.op_type.as_deref().unwrap_or("?")
    ))
}

/// `[batch, c, h, w]` of the graph input, float.
fn input_shape(i: &super::proto::ValueInfoProto) -> Result<Shape> {
    let bad = |m: &str| {
        Error::invalid(format!(
            "graph input `{}`: {m}",
            i.name.as_deref().unwrap_or("?")
        ))
    };
    let Some(type_proto::Value::TensorType(t)) = i.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad("not a tensor"));
    };
    if t.elem_type != Some(1) {
        return Err(bad("not float32"));
    }
    let dims: Vec<Option<i64>> = t
        .shape
        .as_ref()
        .ok_or_else(|| bad("no shape"))?
        .dim
        .iter()
        .map(|d| match d.value {
            Some(super::proto::tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
            _ => None,
        })
        .collect();
    let dim = |d: Option<i64>| -> Result<usize> {
        d.filter(|&v| v > 0)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| bad("channels, height and width must be fixed positive sizes"))
    };
    match dims.as_slice() {
        [_, c, h, w] => {
            let s = Shape::Image {
                c: dim(*c)?,
                h: dim(*h)?,
                w: dim(*w)?,
            };
            crate::spec::check_shape(s, "the ONNX input")?;
            Ok(s)
        }
        _ => Err(bad("cnnkit takes images, [batch, channels, height, width]")),
    }
}

/// The attribute `name` of `n`.
fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

/// Refuses any attribute not in `known`.
fn only(n: &NodeProto, known: &[&str]) -> Result<()> {
    match n
        .attribute
        .iter()
        .find(|a| !known.contains(&a.name.as_deref().unwrap_or("")))
    {
        Some(a) => Err(node_err(
            n,
            &format!(
                "attribute `{}` is not supported",
                a.name.as_deref().unwrap_or("")
            ),
        )),
        None => Ok(()),
    }
}

fn int_attr(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

/// A square size from `ints` attribute `name` with all entries equal, or `default`.
fn same(n: &NodeProto, name: &str, len: usize, default: usize) -> Result<usize> {
    let Some(a) = attr(n, name) else {
        return Ok(default);
    };
    let v = &a.ints;
    if v.len() != len || v.iter().any(|&x| x != v[0]) || v[0] < 0 || v[0] > 1 << 20 {
        return Err(node_err(
            n,
            &format!("{name} {v:?}: cnnkit takes square windows, equal strides and padding"),
        ));
    }
    Ok(v[0] as usize)
}

/// The float data of constant `name`, its shape checked to be `want`.
fn floats(
    n: &NodeProto,
    consts: &HashMap<&str, &TensorProto>,
    name: &str,
    want: &[usize],
) -> Result<Tensor> {
    let t = consts
        .get(name)
        .ok_or_else(|| node_err(n, &format!("`{name}` must be a constant tensor")))?;
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    if dims != want {
        return Err(node_err(
            n,
            &format!("`{name}` has shape {:?}, the layer needs {want:?}", t.dims),
        ));
    }
    let len: usize = want.iter().product();
    if t.data_type != Some(1) {
        return Err(node_err(n, &format!("`{name}` is not float32")));
    }
    // (the bytes are already in memory: the count is checked against them before the
    // tensor is allocated)
    let data = match (&t.raw_data, t.float_data.len()) {
        (Some(raw), 0) if raw.len() == 4 * len => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
        (None, k) if k == len => t.float_data.clone(),
        _ => {
            return Err(node_err(
                n,
                &format!("`{name}` does not hold the {len} floats its shape says"),
            ));
        }
    };
    let data: Vec<f32> = data;
    if let Some(v) = data
        .iter()
        .find(|v| !v.is_finite() || v.abs() > crate::checkpoint::MAX_ABS)
    {
        return Err(node_err(
            n,
            &format!("`{name}` holds {v}: weights must be finite and at most 1e6 in magnitude"),
        ));
    }
    Tensor::from_vec(want.to_vec(), data)
}

/// A scalar float constant (`Clip`'s bounds), or `None` when the input is absent.
fn scalar(n: &NodeProto, consts: &HashMap<&str, &TensorProto>, k: usize) -> Result<Option<f32>> {
    match n.input.get(k).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(name) => {
            let t = floats(n, consts, name, &[]).or_else(|_| floats(n, consts, name, &[1]))?;
            Ok(Some(t.data()[0]))
        }
    }
}

/// The layer of node `n` (its graph inputs of shapes `ins`).
fn to_layer(n: &NodeProto, consts: &HashMap<&str, &TensorProto>, ins: &[Shape]) -> Result<Layer> {
    let op = n.op_type.as_deref().unwrap_or("");
    let one = || -> Result<Shape> {
        match ins {
            [s] => Ok(*s),
            _ => Err(node_err(n, "needs exactly one graph input")),
        }
    };
    let image = || -> Result<(usize, usize, usize)> {
        match one()? {
            Shape::Image { c, h, w } => Ok((c, h, w)),
            s => Err(node_err(n, &format!("needs an image, got {s} features"))),
        }
    };
    Ok(match op {
        "Conv" => {
            only(
                n,
                &[
                    "kernel_shape",
                    "strides",
                    "pads",
                    "dilations",
                    "group",
                    "auto_pad",
                ],
            )?;
            if attr(n, "auto_pad")
                .and_then(|a| a.s.as_deref())
                .is_some_and(|s| s != b"NOTSET")
            {
                return Err(node_err(n, "auto_pad is not supported: give pads"));
            }
            let (c, _, _) = image()?;
            let wname = n.input.get(1).ok_or_else(|| node_err(n, "no weight"))?;
            let wt = consts
                .get(wname.as_str())
                .ok_or_else(|| node_err(n, "the weight must be a constant tensor"))?;
            let [out, cg, k, k2] = wt.dims[..] else {
                return Err(node_err(n, "the weight must be [out, in / groups, k, k]"));
            };
            let group = int_attr(n, "group", 1);
            if k != k2
                || k <= 0
                || out <= 0
                || cg <= 0
                || group <= 0
                || out > 1 << 20
                || k > 1 << 10
            {
                return Err(node_err(
                    n,
                    &format!("weight shape {:?}: cnnkit takes square kernels", wt.dims),
                ));
            }
            let (out, k, groups) = (out as usize, k as usize, group as usize);
            if cg as usize * groups != c {
                return Err(node_err(
                    n,
                    &format!(
                        "the weight takes {} channels, the input has {c}",
                        cg as usize * groups
                    ),
                ));
            }
            same(n, "kernel_shape", 2, k).and_then(|kk| {
                if kk == k {
                    Ok(())
                } else {
                    Err(node_err(n, "kernel_shape does not match the weight"))
                }
            })?;
            if same(n, "dilations", 2, 1)? != 1 {
                return Err(node_err(n, "dilated convolutions are not supported"));
            }
            let weight = floats(n, consts, wname, &[out, c / groups, k, k])?;
            let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
                Some(b) => floats(n, consts, b, &[out])?,
                None => Tensor::zeros(vec![out])?,
            };
            Layer::Conv2d(Conv2d {
                in_channels: c,
                out_channels: out,
                kernel: k,
                stride: same(n, "strides", 2, 1)?,
                padding: same(n, "pads", 4, 0)?,
                groups,
                weight,
                bias,
            })
        }
        "Gemm" => {
            only(n, &["alpha", "beta", "transA", "transB"])?;
            let Shape::Flat(fin) = one()? else {
                return Err(node_err(n, "needs a flat input (Flatten before it)"));
            };
            let unit = |a: &str| attr(n, a).and_then(|a| a.f).unwrap_or(1.0) == 1.0;
            if !unit("alpha") || !unit("beta") || int_attr(n, "transA", 0) != 0 {
                return Err(node_err(
                    n,
                    "only alpha = beta = 1 without transA is supported",
                ));
            }
            let wname = n.input.get(1).ok_or_else(|| node_err(n, "no weight"))?;
            let wt = consts
                .get(wname.as_str())
                .ok_or_else(|| node_err(n, "the weight must be a constant tensor"))?;
            let trans = int_attr(n, "transB", 0) != 0;
            let out = wt.dims.get(if trans { 0 } else { 1 }).copied().unwrap_or(0);
            if out <= 0 || out > 1 << 24 {
                return Err(node_err(n, &format!("weight shape {:?}", wt.dims)));
            }
            let out = out as usize;
            let weight = if trans {
                floats(n, consts, wname, &[out, fin])?
            } else {
                let w = floats(n, consts, wname, &[fin, out])?;
                let mut t = vec![0.0; out * fin];
                for (i, row) in w.data().chunks_exact(out).enumerate() {
                    for (o, &v) in row.iter().enumerate() {
                        t[o * fin + i] = v;
                    }
                }
                Tensor::from_vec(vec![out, fin], t)?
            };
            let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
                Some(b) => floats(n, consts, b, &[out]).or_else(|_| {
                    floats(n, consts, b, &[1, out])
                        .and_then(|t| Tensor::from_vec(vec![out], t.data().to_vec()))
                })?,
                None => Tensor::zeros(vec![out])?,
            };
            Layer::Linear(Linear {
                in_features: fin,
                out_features: out,
                weight,
                bias,
            })
        }
        "BatchNormalization" => {
            only(n, &["epsilon", "momentum", "training_mode"])?;
            if int_attr(n, "training_mode", 0) != 0 || n.output.len() > 1 {
                return Err(node_err(n, "training mode is not supported"));
            }
            let (c, _, _) = image()?;
            let get = |k: usize| {
                let name = n
                    .input
                    .get(k)
                    .ok_or_else(|| node_err(n, "missing an input"))?;
                floats(n, consts, name, &[c])
            };
            let mut bn = BatchNorm2d::new(c)?;
            bn.weight = get(1)?;
            bn.bias = get(2)?;
            bn.running_mean = get(3)?;
            bn.running_var = get(4)?;
            bn.eps = attr(n, "epsilon").and_then(|a| a.f).unwrap_or(1e-5);
            let eps_ok = bn.eps > 0.0 && bn.eps < 1.0;
            if !eps_ok || bn.running_var.data().iter().any(|v| v.is_sign_negative()) {
                return Err(node_err(
                    n,
                    "epsilon must be in (0, 1) and the variances >= 0",
                ));
            }
            Layer::BatchNorm2d(bn)
        }
        "Relu" | "Tanh" | "Sigmoid" => {
            only(n, &[])?;
            one()?;
            Layer::Act(match op {
                "Relu" => Elementwise::Relu,
                "Tanh" => Elementwise::Tanh,
                _ => Elementwise::Sigmoid,
            })
        }
        "LeakyRelu" => {
            only(n, &["alpha"])?;
            one()?;
            let a = attr(n, "alpha").and_then(|a| a.f).unwrap_or(0.01);
            let e = Elementwise::LeakyRelu(a);
            e.check().map_err(|e| node_err(n, &e.to_string()))?;
            Layer::Act(e)
        }
        "Clip" => {
            only(n, &["min", "max"])?;
            one()?;
            let lo = scalar(n, consts, 1)?.or(attr(n, "min").and_then(|a| a.f));
            let hi = scalar(n, consts, 2)?.or(attr(n, "max").and_then(|a| a.f));
            match (lo, hi) {
                (Some(0.0), Some(6.0)) => Layer::Act(Elementwise::Relu6),
                (Some(0.0), None) => Layer::Act(Elementwise::Relu),
                _ => {
                    return Err(node_err(
                        n,
                        &format!(
                            "Clip to [{lo:?}, {hi:?}]: only ReLU6 [0, 6] and ReLU [0, inf) are supported"
                        ),
                    ));
                }
            }
        }
        "MaxPool" | "AveragePool" => {
            only(
                n,
                &[
                    "kernel_shape",
                    "strides",
                    "pads",
                    "dilations",
                    "ceil_mode",
                    "count_include_pad",
                    "storage_order",
                    "auto_pad",
                ],
            )?;
            image()?;
            if int_attr(n, "ceil_mode", 0) != 0
                || same(n, "dilations", 2, 1)? != 1
                || n.output.len() > 1
            {
                return Err(node_err(
                    n,
                    "ceil_mode, dilation and indices are not supported",
                ));
            }
            if attr(n, "auto_pad")
                .and_then(|a| a.s.as_deref())
                .is_some_and(|s| s != b"NOTSET")
            {
                return Err(node_err(n, "auto_pad is not supported: give pads"));
            }
            let kernel = same(n, "kernel_shape", 2, 0)?;
            if kernel == 0 {
                return Err(node_err(n, "needs kernel_shape"));
            }
            let p = Pool {
                kernel,
                stride: same(n, "strides", 2, 1)?,
                padding: same(n, "pads", 4, 0)?,
            };
            if op == "MaxPool" {
                Layer::MaxPool2d(p)
            } else {
                if p.padding > 0 && int_attr(n, "count_include_pad", 0) == 0 {
                    return Err(node_err(
                        n,
                        "padding left out of the divisor (count_include_pad = 0) is not supported",
                    ));
                }
                Layer::AvgPool2d(p)
            }
        }
        "GlobalAveragePool" => {
            only(n, &[])?;
            image()?;
            Layer::GlobalAvgPool
        }
        "Flatten" => {
            only(n, &["axis"])?;
            one()?;
            if int_attr(n, "axis", 1) != 1 {
                return Err(node_err(n, "only axis 1 is supported"));
            }
            Layer::Flatten
        }
        "Reshape" => {
            only(n, &["allowzero"])?;
            let s = one()?;
            let name = n.input.get(1).ok_or_else(|| node_err(n, "no shape"))?;
            let t = consts
                .get(name.as_str())
                .ok_or_else(|| node_err(n, "the shape must be a constant"))?;
            let dims: Vec<i64> = match (t.data_type, &t.raw_data) {
                (Some(7), Some(raw)) if raw.len() <= 64 && raw.len() % 8 == 0 => raw
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect(),
                (Some(7), None) if t.int64_data.len() <= 8 => t.int64_data.clone(),
                _ => return Err(node_err(n, "the shape must be a short int64 constant")),
            };
            match dims.as_slice() {
                [_, f] if *f == -1 || usize::try_from(*f).ok() == Some(s.len()) => Layer::Flatten,
                _ => {
                    return Err(node_err(
                        n,
                        &format!("reshape to {dims:?}: only [batch, features] is supported"),
                    ));
                }
            }
        }
        "Add" | "Sum" => {
            only(n, &[])?;
            if ins.len() < 2 || ins.len() != n.input.len() {
                return Err(node_err(
                    n,
                    "adds graph values only (a constant term is not supported)",
                ));
            }
            Layer::Add
        }
        "Concat" => {
            only(n, &["axis"])?;
            if int_attr(n, "axis", 1) != 1 || ins.len() < 2 || ins.len() != n.input.len() {
                return Err(node_err(n, "concatenates graph values on axis 1 only"));
            }
            Layer::Concat
        }
        _ => return Err(node_err(n, "operator not supported")),
    })
}
