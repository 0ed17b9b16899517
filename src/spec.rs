//! Model specs: the text form of a sequential model, parsed into [`LayerSpec`]s, which
//! describe the layers without their tensors.
//!
//! A spec's shapes, parameter shapes and sizes are known before anything is allocated
//! ([`plan`]), so a checkpoint loader can check them against the file first, and a
//! model is built by handing every parameter over once ([`LayerSpec::build`]): drawn
//! from the initialisation, or read from a file, never both.
//!
//! Layers are separated by spaces (or commas outside parentheses):
//!
//! | spec | layer (PyTorch) |
//! |---|---|
//! | `conv(OUT,K[,stride=S][,pad=P])` | `nn.Conv2d(in, OUT, K, S, P)` |
//! | `linear(OUT)` | `nn.Linear(in, OUT)` |
//! | `maxpool(K[,stride=S][,pad=P])`, `avgpool(...)` | `nn.MaxPool2d`, `nn.AvgPool2d` |
//! | `relu`, `leakyrelu[(SLOPE)]`, `tanh`, `sigmoid`, `gelu` | activations ([`Elementwise::name`]; slope 0.01 by default) |
//! | `flatten` | `nn.Flatten()` |
//! | `dropout[(P)]` | `nn.Dropout(P)` (0.5 by default) |
//! | `batchnorm` | `nn.BatchNorm2d(in)` |
//! | `gap` | `nn.AdaptiveAvgPool2d(1)` (each channel's mean, `c x 1 x 1`) |
//! | `res[BODY]`, `res[BODY \| SHORTCUT]` | a residual block: `BODY(x) + x`, or `BODY(x) + SHORTCUT(x)` |
//! | `cat[A \| B \| ...]` | `torch.cat([A(x), B(x), ...], 1)`; an empty branch is `x` itself |
//!
//! `conv` takes `groups=G` too (`groups` = the input channels: a depthwise convolution),
//! and `relu6` is `nn.ReLU6`. Blocks nest; a branch is any spec, and an empty one is the
//! identity, so `res[A]` and `res[A |]` are the same block. A ResNet basic block with a
//! projection shortcut:
//!
//! ```text
//! res[conv(32,3,stride=2,pad=1) bn relu conv(32,3,pad=1) bn | conv(32,1,stride=2) bn] relu
//! ```
//!
//! An argument may be given by position or by name, not both (`conv(6,5,k=3)` is an
//! error, not a 3x3 convolution).
//!
//! ```
//! use cnnkit::{Shape, spec};
//! let layers = spec::plan("conv(4,3,pad=1) relu flatten linear(10)",
//!                         Shape::Image { c: 1, h: 8, w: 8 }).unwrap();
//! assert_eq!(layers.len(), 4);
//! assert_eq!(layers[3].output, Shape::Flat(10));
//! assert_eq!(spec::param_elements(&layers), 4 * 9 + 4 + 256 * 10 + 10);
//! assert!(spec::plan("conv(6,5,k=3)", Shape::Image { c: 1, h: 8, w: 8 })
//!     .unwrap_err().to_string().contains("twice"));
//! // a residual block: layers 0-2 are the body, layer 3 adds the block's input (value 0)
//! let res = spec::plan("res[conv(1,3,pad=1) bn relu]", Shape::Image { c: 1, h: 8, w: 8 })
//!     .unwrap();
//! assert_eq!(res[3].inputs, vec![3, 0]);
//! ```

use std::fmt;

use crate::error::{Error, Result};
use crate::layers::{Elementwise, Pool, Shape};
pub use crate::layers::{Fill, LayerSpec, MAX_TENSOR, ParamSpec};

/// Largest whole number a spec argument takes.
const MAX_ARG: usize = 1 << 20;

/// The spec of the `lenet5` preset: LeNet-5 with ReLU and max pooling.
pub const LENET5: &str = "conv(6,5,pad=2) relu maxpool(2) conv(16,5) relu maxpool(2) flatten \
                          linear(120) relu linear(84) relu linear(10)";

/// The spec of the `fmnist` preset: three conv-batchnorm-ReLU-max-pool blocks (32, 64
/// and 128 channels), dropout and two linear layers, 242k parameters.
pub const FMNIST: &str = "conv(32,3,pad=1) batchnorm relu maxpool(2) \
                          conv(64,3,pad=1) batchnorm relu maxpool(2) \
                          conv(128,3,pad=1) batchnorm relu maxpool(2) \
                          flatten dropout(0.25) linear(128) relu dropout(0.25) linear(10)";

/// The spec of the `resnet8` preset: MLPerf Tiny's ResNet-8 (its Keras reference
/// `resnet_v1_eembc`: a 16-channel 3x3 stem, three residual stages of 16, 32 and 64
/// channels, batch norm after each 3x3 convolution, the last two stages halving the image
/// with a 1x1 projection shortcut, global average pooling, one linear layer).
pub const RESNET8: &str = "conv(16,3,pad=1) bn relu \
                           res[conv(16,3,pad=1) bn relu conv(16,3,pad=1) bn] relu \
                           res[conv(32,3,stride=2,pad=1) bn relu conv(32,3,pad=1) bn \
                               | conv(32,1,stride=2)] relu \
                           res[conv(64,3,stride=2,pad=1) bn relu conv(64,3,pad=1) bn \
                               | conv(64,1,stride=2)] relu \
                           gap flatten linear(10)";

/// The spec of the `mobilenet` preset: a small MobileNetV2-style network: a 3x3 stem, then
/// inverted residual blocks (1x1 expansion, ReLU6, depthwise 3x3, ReLU6, linear 1x1
/// projection), with the skip connection where the shape allows, global average pooling
/// and one linear layer. Written for 28 x 28 inputs of one channel; its `groups` follow
/// the expansion, so it takes any image size.
pub const MOBILENET: &str = "conv(16,3,pad=1) bn relu6 \
                             conv(48,1) bn relu6 conv(48,3,stride=2,pad=1,groups=48) bn relu6 \
                             conv(24,1) bn \
                             res[conv(96,1) bn relu6 conv(96,3,pad=1,groups=96) bn relu6 \
                                 conv(24,1) bn] \
                             conv(96,1) bn relu6 conv(96,3,stride=2,pad=1,groups=96) bn relu6 \
                             conv(32,1) bn \
                             res[conv(128,1) bn relu6 conv(128,3,pad=1,groups=128) bn relu6 \
                                 conv(32,1) bn] \
                             conv(128,1) bn relu6 gap flatten linear(10)";

/// The spec of a preset name (`lenet5`, `fmnist`, `resnet8`, `mobilenet`), or `None`.
pub fn preset(name: &str) -> Option<&'static str> {
    match name {
        "lenet5" => Some(LENET5),
        "fmnist" => Some(FMNIST),
        "resnet8" => Some(RESNET8),
        "mobilenet" => Some(MOBILENET),
        _ => None,
    }
}

impl fmt::Display for LayerSpec {
    /// The layer as a spec writes it (the shortest form: defaults left out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerSpec::Conv2d {
                out,
                kernel,
                stride,
                padding,
                groups,
            } => {
                write!(f, "conv({out},{kernel}")?;
                if stride != 1 {
                    write!(f, ",stride={stride}")?;
                }
                if padding != 0 {
                    write!(f, ",pad={padding}")?;
                }
                if groups != 1 {
                    write!(f, ",groups={groups}")?;
                }
                f.write_str(")")
            }
            LayerSpec::Linear { out } => write!(f, "linear({out})"),
            LayerSpec::MaxPool2d(p) | LayerSpec::AvgPool2d(p) => {
                let name = if matches!(self, LayerSpec::MaxPool2d(_)) {
                    "maxpool"
                } else {
                    "avgpool"
                };
                write!(f, "{name}({}", p.kernel)?;
                if p.stride != p.kernel {
                    write!(f, ",stride={}", p.stride)?;
                }
                if p.padding != 0 {
                    write!(f, ",pad={}", p.padding)?;
                }
                f.write_str(")")
            }
            LayerSpec::Act(e) => match e.param() {
                Some(v) => write!(f, "{}({v})", e.name()),
                None => f.write_str(e.name()),
            },
            LayerSpec::Flatten => f.write_str("flatten"),
            LayerSpec::Dropout(p) => write!(f, "dropout({p})"),
            LayerSpec::BatchNorm2d => f.write_str("batchnorm"),
            LayerSpec::GlobalAvgPool => f.write_str("gap"),
            // (written as the `]` of their block by `write_graph`)
            LayerSpec::Add => f.write_str("add"),
            LayerSpec::Concat => f.write_str("cat"),
        }
    }
}

/// One planned layer: what it is, the token it came from, and its shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The layer.
    pub layer: LayerSpec,
    /// The spec token (for messages).
    pub token: String,
    /// Input shape of one sample (a merge's: its first input's).
    pub input: Shape,
    /// Output shape of one sample.
    pub output: Shape,
    /// The tensors it holds.
    pub params: Vec<ParamSpec>,
    /// The values it reads: 0 is the model's input, `j + 1` the output of layer `j`
    /// (`[i]` for layer `i` of a plain stack; several for the `add` or `cat` that ends a
    /// block).
    pub inputs: Vec<usize>,
}

/// One token of a spec.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Layer(String),
    /// `res[` or `cat[`.
    Open(String),
    Bar,
    Close,
}

/// Parses `spec` (or a preset name) for `input`: every layer with its shapes and tensor
/// shapes, each checked against [`MAX_TENSOR`]; nothing is allocated but the plan. A
/// block's layers come out branch after branch, then the `add` or `cat` that ends it.
///
/// # Errors
/// [`Error::Invalid`] naming the layer (index and token) that does not parse or fit.
pub fn plan(spec: &str, input: Shape) -> Result<Vec<Planned>> {
    let spec = preset(spec.trim()).unwrap_or(spec);
    check_shape(input, "the input")?;
    let toks = split(spec)?;
    let mut out = Vec::new();
    let mut at = 0;
    let end = sequence(&toks, &mut at, 0, input, &mut out, 0)?;
    if let Some(t) = toks.get(at) {
        return Err(Error::invalid(format!(
            "model spec: `{}` outside a block",
            if *t == Tok::Bar { "|" } else { "]" }
        )));
    }
    if out.is_empty() || end.0 != out.len() {
        return Err(Error::invalid("model spec has no layers"));
    }
    Ok(out)
}

/// Deepest nesting of blocks a spec may have.
const MAX_DEPTH: usize = 32;

/// Plans the layers of `toks` from `*at` up to a `|`, `]` or the end, starting from
/// value `from` of shape `shape`; returns the value and shape it ends with.
fn sequence(
    toks: &[Tok],
    at: &mut usize,
    mut from: usize,
    mut shape: Shape,
    out: &mut Vec<Planned>,
    depth: usize,
) -> Result<(usize, Shape)> {
    while let Some(t) = toks.get(*at) {
        let i = out.len();
        match t {
            Tok::Bar | Tok::Close => break,
            Tok::Layer(tok) => {
                *at += 1;
                let e = |e: Error| Error::invalid(format!("model spec, layer {i} `{tok}`: {e}"));
                let layer = parse_layer(tok).map_err(e)?;
                let params = layer.params(shape).map_err(e)?;
                let output = layer.output_shape(shape).map_err(e)?;
                check_shape(
                    output,
                    &format!("model spec, layer {i} `{tok}`: the output"),
                )?;
                out.push(Planned {
                    layer,
                    token: tok.clone(),
                    input: shape,
                    output,
                    params,
                    inputs: vec![from],
                });
            }
            Tok::Open(name) => {
                *at += 1;
                let (layer, what) = match name.as_str() {
                    "res" => (LayerSpec::Add, "res[...]"),
                    "cat" => (LayerSpec::Concat, "cat[...]"),
                    _ => {
                        return Err(Error::invalid(format!(
                            "model spec: unknown block `{name}[` (expected res[ or cat[)"
                        )));
                    }
                };
                if depth >= MAX_DEPTH {
                    return Err(Error::invalid(format!(
                        "model spec: blocks nested deeper than {MAX_DEPTH}"
                    )));
                }
                let mut ends = Vec::new();
                loop {
                    ends.push(sequence(toks, at, from, shape, out, depth + 1)?);
                    match toks.get(*at) {
                        Some(Tok::Bar) => *at += 1,
                        Some(Tok::Close) => {
                            *at += 1;
                            break;
                        }
                        _ => {
                            return Err(Error::invalid(format!(
                                "model spec: `{name}[` is not closed by `]`"
                            )));
                        }
                    }
                }
                if ends.len() == 1 {
                    ends.push((from, shape)); // `res[A]`: A + x
                }
                if ends.iter().all(|&(v, _)| v == from) {
                    return Err(Error::invalid(format!(
                        "model spec: a {what} block needs a layer in one of its branches"
                    )));
                }
                let i = out.len();
                let shapes: Vec<Shape> = ends.iter().map(|e| e.1).collect();
                let output = layer.merge_shape(&shapes).map_err(|e| {
                    Error::invalid(format!(
                        "model spec, the {what} block ending at layer {i}: {e}"
                    ))
                })?;
                check_shape(
                    output,
                    &format!("model spec, the {what} block ending at layer {i}"),
                )?;
                out.push(Planned {
                    layer,
                    token: what.to_string(),
                    input: shapes[0],
                    output,
                    params: Vec::new(),
                    inputs: ends.iter().map(|e| e.0).collect(),
                });
            }
        }
        from = out.len();
        shape = out[from - 1].output;
    }
    Ok((from, shape))
}

/// The spec of a graph of layers (`inputs[i]`: the values layer `i` reads, as
/// [`Planned::inputs`]), with each `add` or `cat` written as the block it ends, or `None`
/// when the graph is not in the order [`plan`] gives (branches one after another, each
/// starting from the block's input): only such a graph has a spec.
pub fn write_graph(layers: &[LayerSpec], inputs: &[Vec<usize>]) -> Option<String> {
    if layers.len() != inputs.len() || inputs.iter().any(Vec::is_empty) {
        return None;
    }
    let forks = block_forks(layers, inputs);
    let mut out = String::new();
    seq_text(layers, inputs, &forks, (0, layers.len(), 0), &mut out, 0)?;
    Some(out)
}

/// For each layer that joins a block (add, cat) of a graph in spec order, the value the
/// block starts from (its input); `None` for the other layers. Where one branch is the
/// identity, that is the smallest value the join takes; else the input of its second
/// branch's first layer.
pub(crate) fn block_forks(layers: &[LayerSpec], inputs: &[Vec<usize>]) -> Vec<Option<usize>> {
    let fork = |m: usize| -> Option<usize> {
        let lo = *inputs[m].iter().min()?;
        match inputs.get(lo) {
            Some(v) if lo < m && v.len() == 1 && v[0] < lo => Some(v[0]),
            _ => Some(lo),
        }
    };
    (0..layers.len())
        .map(|m| if layers[m].is_merge() { fork(m) } else { None })
        .collect()
}

/// The outermost block among layers `j..hi` that starts at layer `j` from value `from`
/// (the value layer `j` reads: `j` itself, or at the start of a branch the enclosing
/// block's input): the layer that joins it.
pub(crate) fn block_at(forks: &[Option<usize>], j: usize, hi: usize, from: usize) -> Option<usize> {
    (j..hi).rev().find(|&m| forks[m] == Some(from))
}

/// The spec text of layers `lo..hi` (`span`: `(lo, hi, from)`, `from` the value layer `lo`
/// reads).
fn seq_text(
    layers: &[LayerSpec],
    inputs: &[Vec<usize>],
    forks: &[Option<usize>],
    (lo, hi, from): (usize, usize, usize),
    out: &mut String,
    depth: usize,
) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut j = lo;
    while j < hi {
        if !out.is_empty() && !out.ends_with('[') && !out.ends_with("| ") {
            out.push(' ');
        }
        // the outermost block that starts here
        let f = if j == lo { from } else { j };
        let Some(m) = block_at(forks, j, hi, f) else {
            if layers[j].is_merge() {
                return None;
            }
            out.push_str(&layers[j].to_string());
            j += 1;
            continue;
        };
        out.push_str(if layers[m] == LayerSpec::Add {
            "res["
        } else {
            "cat["
        });
        let mut start = j;
        let ends = &inputs[m];
        for (k, &v) in ends.iter().enumerate() {
            if k > 0 {
                out.push_str(if out.ends_with('[') { "| " } else { " | " });
            }
            if v != f {
                if v <= start {
                    return None;
                }
                seq_text(layers, inputs, forks, (start, v, f), out, depth + 1)?;
                start = v;
            }
        }
        if start != m {
            return None;
        }
        // `res[A | ]` is written `res[A]`
        if out.ends_with(" | ") && ends.len() == 2 && ends[1] == f {
            out.truncate(out.len() - 3);
        }
        out.push(']');
        j = m + 1;
    }
    Some(())
}

/// Elements of every tensor the planned layers hold.
pub fn param_elements(plan: &[Planned]) -> u64 {
    plan.iter()
        .flat_map(|p| &p.params)
        .map(|p| p.len() as u64)
        .sum()
}

/// A sample shape must have elements, and at most [`MAX_TENSOR`] of them.
pub(crate) fn check_shape(s: Shape, what: &str) -> Result<()> {
    let n = match s {
        Shape::Image { c, h, w } => c.checked_mul(h).and_then(|x| x.checked_mul(w)),
        Shape::Flat(n) => Some(n),
    };
    match n {
        Some(n) if n > 0 && n <= MAX_TENSOR => Ok(()),
        Some(0) => Err(Error::invalid(format!("{what} has no elements"))),
        _ => Err(Error::invalid(format!(
            "{what} ({s}) has more than 2^28 elements per sample"
        ))),
    }
}

fn split(spec: &str) -> Result<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut blocks = 0i32;
    for ch in spec.chars() {
        match ch {
            '(' => {
                depth += 1;
                cur.push(ch);
            }
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(Error::invalid(format!(
                        "model spec `{spec}`: unbalanced `)`"
                    )));
                }
                cur.push(ch);
            }
            '[' | ']' | '|' if depth == 0 => {
                let word = std::mem::take(&mut cur);
                if ch == '[' {
                    if word.is_empty() {
                        return Err(Error::invalid(format!(
                            "model spec `{spec}`: `[` without a block name (res[ or cat[)"
                        )));
                    }
                    blocks += 1;
                    toks.push(Tok::Open(word.to_ascii_lowercase()));
                    continue;
                }
                if !word.is_empty() {
                    toks.push(Tok::Layer(word));
                }
                if ch == ']' {
                    blocks -= 1;
                    if blocks < 0 {
                        return Err(Error::invalid(format!(
                            "model spec `{spec}`: unbalanced `]`"
                        )));
                    }
                    toks.push(Tok::Close);
                } else {
                    toks.push(Tok::Bar);
                }
            }
            c if depth == 0 && (c.is_whitespace() || c == ',' || c == ';') => {
                if !cur.is_empty() {
                    toks.push(Tok::Layer(std::mem::take(&mut cur)));
                }
            }
            c if c.is_whitespace() => {}
            c => cur.push(c),
        }
    }
    if depth != 0 {
        return Err(Error::invalid(format!(
            "model spec `{spec}`: unbalanced `(`"
        )));
    }
    if blocks != 0 {
        return Err(Error::invalid(format!(
            "model spec `{spec}`: unbalanced `[`"
        )));
    }
    if !cur.is_empty() {
        toks.push(Tok::Layer(cur));
    }
    if toks.is_empty() {
        return Err(Error::invalid("model spec is empty"));
    }
    Ok(toks)
}

/// Positional and `key=value` arguments of one spec token.
struct Args<'a> {
    pos: Vec<&'a str>,
    kw: Vec<(&'a str, &'a str)>,
}

fn parse_args(inner: &str) -> Args<'_> {
    let mut a = Args {
        pos: Vec::new(),
        kw: Vec::new(),
    };
    for part in inner.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) => a.kw.push((k, v)),
            None => a.pos.push(part),
        }
    }
    a
}

impl Args<'_> {
    /// At most `max_pos` positional arguments, keys from `keys` only, each at most once,
    /// and none given both by position (`positional[i]` names position `i`) and by name.
    fn check(&self, max_pos: usize, keys: &[&str], positional: &[&str]) -> Result<()> {
        if self.pos.len() > max_pos {
            return Err(Error::invalid(format!(
                "takes at most {max_pos} positional argument(s)"
            )));
        }
        for (i, (k, v)) in self.kw.iter().enumerate() {
            if !keys.contains(k) {
                return Err(Error::invalid(format!(
                    "unknown argument `{k}` (expected one of: {})",
                    keys.join(", ")
                )));
            }
            if self.kw[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(Error::invalid(format!("`{k}` is given twice")));
            }
            if let Some(p) = positional.iter().position(|p| p == k)
                && let Some(pv) = self.pos.get(p)
            {
                return Err(Error::invalid(format!(
                    "`{k}` is given twice: as {pv} (by position) and as {k}={v}"
                )));
            }
        }
        Ok(())
    }

    fn usize(&self, pos: usize, key: &str, default: Option<usize>) -> Result<usize> {
        let text = self
            .kw
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .or_else(|| self.pos.get(pos).copied());
        let v = match (text, default) {
            (Some(t), _) => t.parse::<usize>().map_err(|_| {
                Error::invalid(format!("`{key}` must be a whole number, got `{t}`"))
            })?,
            (None, Some(d)) => d,
            (None, None) => return Err(Error::invalid(format!("missing `{key}`"))),
        };
        if v > MAX_ARG {
            return Err(Error::invalid(format!("`{key}` = {v} is too large")));
        }
        Ok(v)
    }

    fn f32(&self, default: f32, lo: f32, hi: f32, what: &str) -> Result<f32> {
        let Some(t) = self.pos.first() else {
            return Ok(default);
        };
        match t.parse::<f32>() {
            Ok(v) if (lo..hi).contains(&v) => Ok(v),
            _ => Err(Error::invalid(format!(
                "{what} must be a number in [{lo}, {hi}), got `{t}`"
            ))),
        }
    }
}

fn positive(v: usize, what: &str) -> Result<usize> {
    if v == 0 {
        return Err(Error::invalid(format!("{what} must be at least 1")));
    }
    Ok(v)
}

/// One token, without shapes.
fn parse_layer(tok: &str) -> Result<LayerSpec> {
    let (name, inner) = match tok.find('(') {
        Some(i) if tok.ends_with(')') => (&tok[..i], &tok[i + 1..tok.len() - 1]),
        Some(_) => return Err(Error::invalid("expected `)` at the end")),
        None => (tok, ""),
    };
    let a = parse_args(inner);
    let name = name.to_ascii_lowercase();
    let no_args = |a: &Args| -> Result<()> { a.check(0, &[], &[]) };
    Ok(match name.as_str() {
        "conv" | "conv2d" => {
            a.check(2, &["out", "k", "stride", "pad", "groups"], &["out", "k"])?;
            LayerSpec::Conv2d {
                out: positive(a.usize(0, "out", None)?, "out")?,
                kernel: positive(a.usize(1, "k", None)?, "k")?,
                stride: positive(a.usize(usize::MAX, "stride", Some(1))?, "stride")?,
                padding: a.usize(usize::MAX, "pad", Some(0))?,
                groups: positive(a.usize(usize::MAX, "groups", Some(1))?, "groups")?,
            }
        }
        "linear" | "fc" => {
            a.check(1, &["out"], &["out"])?;
            LayerSpec::Linear {
                out: positive(a.usize(0, "out", None)?, "out")?,
            }
        }
        "maxpool" | "avgpool" => {
            a.check(1, &["k", "stride", "pad"], &["k"])?;
            let kernel = positive(a.usize(0, "k", None)?, "k")?;
            let p = Pool {
                kernel,
                stride: positive(a.usize(usize::MAX, "stride", Some(kernel))?, "stride")?,
                padding: a.usize(usize::MAX, "pad", Some(0))?,
            };
            if name == "maxpool" {
                LayerSpec::MaxPool2d(p)
            } else {
                LayerSpec::AvgPool2d(p)
            }
        }
        "flatten" => no_args(&a).map(|()| LayerSpec::Flatten)?,
        n if Elementwise::ALL.iter().any(|e| e.name() == n) => {
            // (the functions and their names are the kernels' `Elementwise`)
            let takes = Elementwise::ALL
                .iter()
                .any(|e| e.name() == n && e.param().is_some());
            a.check(usize::from(takes), &[], &[])?;
            let param = match a.pos.first() {
                Some(_) => Some(a.f32(0.0, 0.0, f32::MAX, "the parameter")?),
                None => None,
            };
            LayerSpec::Act(
                Elementwise::from_name(n, param).map_err(|e| Error::invalid(e.to_string()))?,
            )
        }
        "dropout" => {
            a.check(1, &[], &[])?;
            LayerSpec::Dropout(a.f32(0.5, 0.0, 1.0, "the drop probability")?)
        }
        "batchnorm" | "bn" => {
            no_args(&a)?;
            LayerSpec::BatchNorm2d
        }
        "gap" | "globalavgpool" => {
            no_args(&a)?;
            LayerSpec::GlobalAvgPool
        }
        _ => {
            let acts: Vec<&str> = Elementwise::ALL.iter().map(|e| e.name()).collect();
            return Err(Error::invalid(format!(
                "unknown layer (expected conv, linear, maxpool, avgpool, {}, flatten, dropout, \
                 batchnorm, gap, or a block res[...] or cat[...])",
                acts.join(", ")
            )));
        }
    })
}
