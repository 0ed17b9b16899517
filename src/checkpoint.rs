//! Checkpoints in safetensors, tensors named as PyTorch's `state_dict()` of the
//! equivalent `nn.Sequential` (`0.weight`, `0.bias`, `1.running_mean`, ...), so that
//! `model.load_state_dict(safetensors.torch.load_file(path))` works in PyTorch.
//!
//! The model file carries one metadata entry, `cnnkit`, a JSON object with the model
//! spec, input shape, pixel normalisation, class names, the training recipe, the epochs
//! and steps done and the per-epoch figures. The optimizer state (PyTorch's names:
//! `0.weight.momentum_buffer`, `0.weight.exp_avg`, ...) goes beside it in
//! `FILE.optim`, also safetensors, stamped with the same step count, so that
//! `--resume FILE` continues exactly where training stopped.
//!
//! # What a save guarantees
//!
//! - Every file is written through [`crate::fsio::write_atomic`] (an exclusive temporary
//!   file, fsync, rename), so a crash leaves the old file or the new one.
//! - The model and its optimizer state change as one unit. The model file records a
//!   digest of the optimizer file it belongs with (`optim_digest`). A save writes the new
//!   optimizer state to `FILE.optim.next`, then the model file (the commit point), then
//!   renames `FILE.optim.next` to `FILE.optim`. A crash before the commit leaves the old
//!   pair; after it, the new model file and `FILE.optim.next`, which [`load_optimizer`]
//!   takes and the next save renames into place. Every crash point leaves the old pair
//!   or the new pair (`tests/hostile.rs` crashes each operation in turn).
//! - Nothing is written that cnnkit would refuse to read: non-finite or absurd weights,
//!   or metadata out of range, stop the save with an error.
//!
//! # What a load checks
//!
//! Every metadata field as the same value given as a flag would be; the model's size,
//! from the spec, against the file's length before anything is allocated; every tensor's
//! type, shape and values (finite, at most [`MAX_ABS`] in magnitude, variances not
//! negative), naming the tensor. Files are read through a cap ([`MAX_FILE`], and the
//! memory budget), so a device or pipe cannot make a load read without end.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::budget;
use crate::data::Normalize;
use crate::error::{Error, Result};
use crate::fsio;
use crate::layers::{Layer, Shape};
use crate::model::Model;
use crate::optim::Optimizer;
use crate::spec;
use crate::tensor::Tensor;
use crate::train::{EpochRecord, TrainConfig, Trainer};

pub use crate::fsio::write_atomic;

/// Version of the metadata layout.
pub const FORMAT: u32 = 1;

/// Largest checkpoint file read (1 GiB; less if the memory budget is smaller).
pub const MAX_FILE: u64 = 1 << 30;

/// Largest safetensors header read (64 MiB).
pub const MAX_HEADER: u64 = 64 << 20;

/// Largest magnitude of a weight or a batch-norm statistic saved or loaded: a larger one
/// is taken for a diverged or corrupt model.
pub const MAX_ABS: f32 = 1e6;

/// Longest class name (in characters) a checkpoint may carry.
pub const MAX_CLASS_NAME: usize = 64;

/// The `cnnkit` metadata of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// [`FORMAT`].
    pub format: u32,
    /// The model spec ([`Model::spec`]).
    pub spec: String,
    /// Input shape `[channels, height, width]`.
    pub input: [usize; 3],
    /// Mean of the training pixels (in `[0, 1]`).
    pub pixel_mean: f32,
    /// Their standard deviation (in `[0.001, 1]`).
    pub pixel_std: f32,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// The recipe.
    pub config: TrainConfig,
    /// Epochs done.
    pub epoch: usize,
    /// Optimizer steps done.
    pub steps: u64,
    /// Per-epoch figures.
    pub history: Vec<EpochRecord>,
    /// Digest of the optimizer file saved with this model file (absent in files of
    /// cnnkit 0.1, whose pair is checked by the step count alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optim_digest: Option<String>,
}

impl Meta {
    /// The pixel normalisation.
    pub fn norm(&self) -> Normalize {
        Normalize {
            mean: self.pixel_mean,
            std: self.pixel_std,
        }
    }

    /// The input shape.
    pub fn input_shape(&self) -> Shape {
        let [c, h, w] = self.input;
        Shape::Image { c, h, w }
    }

    /// Checks every field as the same value given as a flag would be, and against a
    /// model of `outputs` class scores.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field.
    pub fn validate(&self, outputs: usize) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::invalid(format!("`{field}`: {msg}")));
        if self.format != FORMAT {
            return bad(
                "format",
                format!("{}, this cnnkit reads {FORMAT}", self.format),
            );
        }
        validate_io(
            self.input,
            self.pixel_mean,
            self.pixel_std,
            &self.classes,
            outputs,
        )?;
        self.config
            .validate()
            .map_err(|e| Error::invalid(format!("`config`: {e}")))?;
        if self.epoch > 100_000 || self.history.len() != self.epoch {
            return bad(
                "history",
                format!(
                    "{} records for {} epochs done",
                    self.history.len(),
                    self.epoch
                ),
            );
        }
        for (i, r) in self.history.iter().enumerate() {
            let acc = |a: f64| a.is_finite() && (0.0..=1.0).contains(&a);
            let fine = r.epoch == i + 1
                && r.train_loss.is_finite()
                && r.train_loss >= 0.0
                && acc(r.train_acc)
                && acc(r.test_acc);
            if !fine {
                return bad("history", format!("record {i} is out of range: {r:?}"));
            }
        }
        if self.steps < self.epoch as u64 {
            return bad(
                "steps",
                format!("{} steps for {} epochs", self.steps, self.epoch),
            );
        }
        if let Some(d) = &self.optim_digest
            && !is_digest(d)
        {
            return bad("optim_digest", format!("`{d}` is not a digest"));
        }
        Ok(())
    }
}

/// Checks the fields every model file has (f32 or int8) as the same values given as
/// flags would be: the input shape, the pixel normalisation, the class names against a
/// model of `outputs` class scores.
///
/// # Errors
/// [`Error::Invalid`] naming the field.
pub(crate) fn validate_io(
    input: [usize; 3],
    pixel_mean: f32,
    pixel_std: f32,
    classes: &[String],
    outputs: usize,
) -> Result<()> {
    let bad = |field: &str, msg: String| Err(Error::invalid(format!("`{field}`: {msg}")));
    let [c, h, w] = input;
    let side = crate::data::MAX_SIDE;
    if c == 0 || h == 0 || w == 0 || h > side || w > side {
        return bad(
            "input",
            format!("{c}x{h}x{w}: sides must be in 1..={side}, channels at least 1"),
        );
    }
    if !(pixel_mean.is_finite() && (0.0..=1.0).contains(&pixel_mean)) {
        return bad("pixel_mean", format!("{} is not in [0, 1]", pixel_mean));
    }
    if !(pixel_std.is_finite() && (1e-3..=1.0).contains(&pixel_std)) {
        return bad("pixel_std", format!("{} is not in [0.001, 1]", pixel_std));
    }
    if classes.is_empty() || classes.len() > outputs {
        return bad(
            "classes",
            format!("{} names for a model of {outputs} outputs", classes.len()),
        );
    }
    for (i, name) in classes.iter().enumerate() {
        let n = name.chars().count();
        if n == 0 || n > MAX_CLASS_NAME || name.chars().any(char::is_control) {
            return bad(
                "classes",
                format!(
                    "name {i} must be 1 to {MAX_CLASS_NAME} characters without control \
                         characters (it has {n})"
                ),
            );
        }
    }
    Ok(())
}

/// The optimizer file beside a model file: `FILE.optim`.
pub fn optim_path(path: &Path) -> PathBuf {
    with_suffix(path, ".optim")
}

/// Where a save puts the new optimizer state before its model file commits it:
/// `FILE.optim.next`.
pub fn optim_next_path(path: &Path) -> PathBuf {
    with_suffix(path, ".optim.next")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OptimMeta {
    format: u32,
    optimizer: crate::optim::OptimizerKind,
    weight_decay: f32,
    steps: u64,
}

/// FNV-1a, 64 bits, as `fnv1a64:` and 16 hex digits: it tells which optimizer file a
/// model file was saved with (not a defence: whoever can write one file can write both).
fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

fn is_digest(d: &str) -> bool {
    d.strip_prefix("fnv1a64:")
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `head` (a file's first bytes) starts as a file cnnkit writes: a safetensors
/// header whose metadata comes first and is cnnkit's.
pub fn looks_like_checkpoint(head: &[u8]) -> bool {
    const START: &[u8] = br#"{"__metadata__":{"cnnkit":"#;
    head.len() >= 8 + START.len() && head[8..].starts_with(START)
}

pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn serialize(
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    meta_json: String,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(n, dt, shape, bytes)| {
            TensorView::new(*dt, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::invalid(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("cnnkit".to_string(), meta_json)]);
    safetensors::serialize(views, &Some(meta))
        .map_err(|e| Error::invalid(format!("safetensors: {e}")))
}

/// The bytes of a model file for `model` with `meta`.
///
/// # Errors
/// Should the serialisation fail.
pub fn model_bytes(model: &Model, meta: &Meta) -> Result<Vec<u8>> {
    let mut tensors: Vec<_> = model
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, Dtype::F32, t.shape().to_vec(), f32_bytes(t.data())))
        .collect();
    for (n, v) in model.int_buffers() {
        tensors.push((n, Dtype::I64, vec![], v.to_le_bytes().to_vec()));
    }
    let json = serde_json::to_string(meta).map_err(|e| Error::invalid(e.to_string()))?;
    serialize(tensors, json)
}

/// The metadata describing `trainer` now.
pub fn meta_of(trainer: &Trainer, classes: &[String]) -> Meta {
    let input = match trainer.model.input_shape() {
        Shape::Image { c, h, w } => [c, h, w],
        Shape::Flat(n) => [1, 1, n],
    };
    Meta {
        format: FORMAT,
        spec: trainer.model.spec(),
        input,
        pixel_mean: trainer.norm.mean,
        pixel_std: trainer.norm.std,
        classes: classes.to_vec(),
        config: trainer.config.clone(),
        epoch: trainer.epoch,
        steps: trainer.optimizer.steps,
        history: trainer.history.clone(),
        optim_digest: None,
    }
}

/// Checks that every weight and statistic of `model` is one a load accepts: finite, at
/// most [`MAX_ABS`] in magnitude, variances not negative.
///
/// # Errors
/// [`Error::Diverged`] naming the first tensor that is not.
pub fn check_model_values(model: &Model) -> Result<()> {
    for (name, t) in model.state_dict() {
        check_values(&name, t.data()).map_err(Error::Diverged)?;
    }
    Ok(())
}

fn check_values(name: &str, v: &[f32]) -> std::result::Result<(), String> {
    let variance = name.ends_with("running_var");
    if let Some((i, x)) = v
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_finite() || x.abs() > MAX_ABS || (variance && **x < 0.0))
    {
        let why = if !x.is_finite() {
            "not finite"
        } else if variance && *x < 0.0 {
            "a negative variance"
        } else {
            "larger in magnitude than 1e6"
        };
        return Err(format!("tensor `{name}` element {i} is {x}: {why}"));
    }
    Ok(())
}

/// Saves the model of `trainer` to `path` and its optimizer state to `FILE.optim` as
/// one unit (see the module docs: every crash point leaves the old pair or the new).
///
/// # Errors
/// [`Error::Diverged`] for weights or optimizer state cnnkit would not load (nothing is
/// written); [`Error::Invalid`] for metadata out of range; [`Error::Io`] naming the file.
pub fn save(path: &Path, trainer: &Trainer, classes: &[String]) -> Result<()> {
    check_model_values(&trainer.model)?;
    let obytes = optimizer_bytes(trainer)?;
    let mut meta = meta_of(trainer, classes);
    meta.optim_digest = Some(digest(&obytes));
    meta.validate(trainer.model.output_shape().len())?;
    let mbytes = model_bytes(&trainer.model, &meta)?;
    let (opath, next) = (optim_path(path), optim_next_path(path));
    // a pair an earlier save committed but did not finish renaming: finish it, so that
    // `next` may be reused
    if next.exists()
        && let Ok(Some(d)) = committed_digest(path)
        && file_digest(&next).as_deref() == Some(d.as_str())
        && file_digest(&opath).as_deref() != Some(d.as_str())
    {
        fsio::rename(&next, &opath)?;
    }
    fsio::write_atomic(&next, &obytes)?;
    fsio::write_atomic(path, &mbytes)?;
    fsio::rename(&next, &opath)
}

fn optimizer_bytes(trainer: &Trainer) -> Result<Vec<u8>> {
    let opt = &trainer.optimizer;
    let mut tensors = Vec::new();
    for (i, (layer, bufs)) in trainer.model.layers().iter().zip(&opt.state).enumerate() {
        for (p, pbufs) in bufs.iter().enumerate() {
            let (pname, t) = layer.param(p);
            for (bname, b) in opt.kind.buffer_names().iter().zip(pbufs) {
                let name = format!("{i}.{pname}.{bname}");
                check_state(&name, b).map_err(Error::Diverged)?;
                tensors.push((name, Dtype::F32, t.shape().to_vec(), f32_bytes(b)));
            }
        }
    }
    let om = OptimMeta {
        format: FORMAT,
        optimizer: opt.kind,
        weight_decay: opt.weight_decay,
        steps: opt.steps,
    };
    let json = serde_json::to_string(&om).map_err(|e| Error::invalid(e.to_string()))?;
    serialize(tensors, json)
}

/// Optimizer state: finite, second moments not negative.
fn check_state(name: &str, v: &[f32]) -> std::result::Result<(), String> {
    let second = name.ends_with("exp_avg_sq");
    if let Some((i, x)) = v
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_finite() || (second && **x < 0.0))
    {
        return Err(format!("optimizer tensor `{name}` element {i} is {x}"));
    }
    Ok(())
}

/// The optimizer digest the model file at `path` records, if it reads.
fn committed_digest(path: &Path) -> Result<Option<String>> {
    let bytes = read_safetensors(path)?;
    let (_, json) = parse(path, &bytes)?;
    let meta: Meta = serde_json::from_str(&json)
        .map_err(|e| Error::checkpoint(path, format!("bad `cnnkit` metadata: {e}")))?;
    Ok(meta.optim_digest)
}

/// The digest of the regular file at `path`, if it reads (a pipe planted there is
/// not opened: it could block for ever).
fn file_digest(path: &Path) -> Option<String> {
    fsio::regular_file(path).ok()?;
    read_safetensors(path).ok().map(|b| digest(&b))
}

/// Reads a safetensors file through caps: a regular file larger than [`MAX_FILE`] (or
/// the memory budget) is refused before reading; anything else (a pipe, a device) is
/// read as its header says, never more than the cap, and refused at the first byte
/// past what the header describes.
///
/// # Errors
/// [`Error::Io`]; [`Error::Checkpoint`] for a file too large, a header too large or
/// unreadable, truncated data or bytes after it.
pub fn read_safetensors(path: &Path) -> Result<Vec<u8>> {
    let cap = MAX_FILE.min(budget::get());
    let f = fsio::open_readable(path)?;
    let file_len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
    if let Some(len) = file_len
        && len > cap
    {
        return Err(Error::checkpoint(
            path,
            format!(
                "{len} bytes: larger than cnnkit reads ({})",
                budget::human(cap)
            ),
        ));
    }
    let bad = |msg: String| Error::checkpoint(path, msg);
    let mut r = std::io::BufReader::new(f);
    let mut buf = Vec::new();
    (&mut r)
        .take(8)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    if buf.len() < 8 {
        return Err(bad(format!(
            "not a valid safetensors file (corrupt or truncated?): {} bytes, no header",
            buf.len()
        )));
    }
    let n = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER.min(cap - 8) || file_len.is_some_and(|len| n > len - 8) {
        return Err(bad(format!(
            "not a valid safetensors file (corrupt or truncated?): a header of {n} bytes"
        )));
    }
    read_exact_into(&mut r, &mut buf, n, path)?;
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(&buf[8..]).map_err(|e| {
        bad(format!(
            "not a valid safetensors file (corrupt header?): {e}"
        ))
    })?;
    let data = meta
        .tensors()
        .values()
        .map(|t| t.data_offsets.1 as u64)
        .max()
        .unwrap_or(0);
    let total = 8 + n + data;
    if total > cap || file_len.is_some_and(|len| len != total) {
        return Err(bad(format!(
            "not a valid safetensors file (corrupt or truncated?): its header describes \
             {total} bytes, the file {}",
            file_len.map_or_else(|| "holds more or fewer".into(), |l| format!("has {l}"))
        )));
    }
    read_exact_into(&mut r, &mut buf, data, path)?;
    let mut one = [0u8; 1];
    if r.read(&mut one).map_err(|e| Error::io(path, e))? != 0 {
        return Err(bad(
            "not a valid safetensors file: bytes after the data its header describes".into(),
        ));
    }
    Ok(buf)
}

/// Appends exactly `n` bytes of `r` to `buf`.
fn read_exact_into(r: &mut impl Read, buf: &mut Vec<u8>, n: u64, path: &Path) -> Result<()> {
    let want = buf.len() + n as usize;
    buf.try_reserve_exact(n as usize)
        .map_err(|_| Error::checkpoint(path, "out of memory"))?;
    r.take(n).read_to_end(buf).map_err(|e| Error::io(path, e))?;
    if buf.len() < want {
        return Err(Error::checkpoint(
            path,
            "not a valid safetensors file (corrupt or truncated?): it ends early",
        ));
    }
    Ok(())
}

pub(crate) fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(SafeTensors<'a>, String)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        Error::checkpoint(
            path,
            format!("not a valid safetensors file (corrupt or truncated?): {e}"),
        )
    })?;
    let (_, md) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::checkpoint(path, format!("unreadable header: {e}")))?;
    let json = md
        .metadata()
        .as_ref()
        .and_then(|m| m.get("cnnkit"))
        .cloned()
        .ok_or_else(|| Error::checkpoint(path, "no `cnnkit` metadata: not written by cnnkit"))?;
    Ok((st, json))
}

/// Reads tensor `name` of `shape` as `f32`, checking each value with `check`.
fn read_f32(
    path: &Path,
    st: &SafeTensors,
    name: &str,
    shape: &[usize],
    check: fn(&str, &[f32]) -> std::result::Result<(), String>,
) -> Result<Vec<f32>> {
    let v = st
        .tensor(name)
        .map_err(|_| Error::checkpoint(path, format!("tensor `{name}` is missing")))?;
    if v.dtype() != Dtype::F32 {
        return Err(Error::checkpoint(
            path,
            format!("tensor `{name}` is {:?}, expected F32", v.dtype()),
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
    let mut out = Vec::new();
    out.try_reserve_exact(v.data().len() / 4)
        .map_err(|_| Error::checkpoint(path, "out of memory"))?;
    out.extend(
        v.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    check(name, &out).map_err(|e| Error::checkpoint(path, e))?;
    Ok(out)
}

/// Loads a model file: the model (architecture from the metadata, every tensor checked
/// against it) and its metadata.
///
/// # Errors
/// [`Error::Io`]; [`Error::Checkpoint`] for a corrupt or truncated file, missing or
/// out-of-range metadata (naming the field), a missing or unexpected tensor, or a tensor
/// whose type, shape or values do not fit the model (naming the tensor).
pub fn load_model(path: &Path) -> Result<(Model, Meta)> {
    #[cfg(feature = "onnx")]
    if crate::onnx::is_onnx_path(path) {
        return crate::onnx::load(path);
    }
    model_from_bytes(path, &read_safetensors(path)?)
}

/// As [`load_model`] on the bytes of a file already in memory; `path` is for messages.
///
/// # Errors
/// As [`load_model`].
pub fn model_from_bytes(path: &Path, bytes: &[u8]) -> Result<(Model, Meta)> {
    let (st, json) = parse(path, bytes)?;
    if crate::quant::file::is_int8_meta(&json) {
        return Err(Error::checkpoint(
            path,
            "an int8 model (made by `cnnkit quantize`): this needs the f32 checkpoint it \
             was made from (eval and predict take either)",
        ));
    }
    let meta: Meta = serde_json::from_str(&json)
        .map_err(|e| Error::checkpoint(path, format!("bad `cnnkit` metadata: {e}")))?;
    if meta.format != FORMAT {
        return Err(Error::checkpoint(
            path,
            format!(
                "metadata format {}, this cnnkit reads {FORMAT}",
                meta.format
            ),
        ));
    }
    let input = meta.input_shape();
    // the architecture and its sizes, without allocating a tensor
    let plan = spec::plan(&meta.spec, input)
        .map_err(|e| Error::checkpoint(path, format!("model spec in the metadata: {e}")))?;
    let outputs = plan.last().map_or(0, |p| p.output.len());
    meta.validate(outputs)
        .map_err(|e| Error::checkpoint(path, format!("metadata {e}")))?;
    // each tensor is allocated only once the file has shown one of its type and shape:
    // what a load allocates is bounded by what the file holds
    let mut expected = Vec::new();
    let mut layers = Vec::with_capacity(plan.len());
    for (i, p) in plan.iter().enumerate() {
        let mut layer = p.layer.build(p.input, |ps| {
            let name = format!("{i}.{}", ps.name);
            let data = read_f32(path, &st, &name, &ps.shape, check_values)?;
            expected.push(name);
            Tensor::from_vec(ps.shape.clone(), data)
        })?;
        if let Layer::BatchNorm2d(bn) = &mut layer {
            let name = format!("{i}.num_batches_tracked");
            let v = st
                .tensor(&name)
                .map_err(|_| Error::checkpoint(path, format!("tensor `{name}` is missing")))?;
            let n = <[u8; 8]>::try_from(v.data())
                .ok()
                .filter(|_| v.dtype() == Dtype::I64)
                .map(i64::from_le_bytes)
                .ok_or_else(|| {
                    Error::checkpoint(path, format!("tensor `{name}` must be one I64"))
                })?;
            if n < 0 {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor `{name}` is {n}: a count cannot be negative"),
                ));
            }
            bn.num_batches_tracked = n;
            expected.push(name);
        }
        layers.push(layer);
    }
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    if let Some(extra) = names.iter().find(|n| !expected.contains(n)) {
        return Err(Error::checkpoint(
            path,
            format!(
                "tensor `{extra}` does not belong to the model `{}`",
                meta.spec
            ),
        ));
    }
    let inputs = plan.into_iter().map(|p| p.inputs).collect();
    let model =
        Model::graph(input, layers, inputs).map_err(|e| Error::checkpoint(path, e.to_string()))?;
    Ok((model, meta))
}

/// Loads the optimizer state saved with the model file `path` for `model` (whose
/// metadata is `meta`): `FILE.optim`, or `FILE.optim.next` when a save committed the
/// model file but did not get to rename it; the one whose digest the model file records,
/// at the same step count.
///
/// # Errors
/// As [`load_model`]; no optimizer file that belongs to the model file.
pub fn load_optimizer(path: &Path, model: &Model, meta: &Meta) -> Result<Optimizer> {
    let opath = optim_path(path);
    let (opath, bytes) = match &meta.optim_digest {
        None => {
            fsio::regular_file(&opath)?;
            let bytes = read_safetensors(&opath)?;
            (opath, bytes)
        }
        Some(d) => {
            let mut found = None;
            for p in [opath.clone(), optim_next_path(path)] {
                if let Some(bytes) = fsio::regular_file(&p)
                    .and_then(|_| read_safetensors(&p))
                    .ok()
                    .filter(|b| digest(b) == *d)
                {
                    found = Some((p, bytes));
                    break;
                }
            }
            found.ok_or_else(|| {
                let what = match fsio::regular_file(&opath) {
                    Ok(_) => "was saved with another model file (its digest differs)".into(),
                    Err(_) if !opath.exists() => "is missing".into(),
                    Err(e) => format!("is unreadable ({e})"),
                };
                Error::checkpoint(
                    &opath,
                    format!(
                        "the optimizer state of {} {what}: they do not belong together",
                        path.display()
                    ),
                )
            })?
        }
    };
    let (st, json) = parse(&opath, &bytes)?;
    let om: OptimMeta = serde_json::from_str(&json)
        .map_err(|e| Error::checkpoint(&opath, format!("bad `cnnkit` metadata: {e}")))?;
    if om.steps != meta.steps {
        return Err(Error::checkpoint(
            &opath,
            format!(
                "optimizer state is from step {}, the model file from step {}: \
                 they do not belong together",
                om.steps, meta.steps
            ),
        ));
    }
    let mut opt = Optimizer::new(om.optimizer, om.weight_decay, model)
        .map_err(|e| Error::checkpoint(&opath, e.to_string()))?;
    opt.steps = om.steps;
    let names = om.optimizer.buffer_names();
    for (i, (layer, bufs)) in model.layers().iter().zip(opt.state.iter_mut()).enumerate() {
        for (p, pbufs) in bufs.iter_mut().enumerate() {
            let (pname, t) = layer.param(p);
            for (bname, b) in names.iter().zip(pbufs.iter_mut()) {
                let name = format!("{i}.{pname}.{bname}");
                *b = read_f32(&opath, &st, &name, t.shape(), check_state)?;
            }
        }
    }
    let expected: usize = opt
        .state
        .iter()
        .map(|l| l.iter().map(Vec::len).sum::<usize>())
        .sum();
    if st.len() != expected {
        return Err(Error::checkpoint(
            &opath,
            format!("{} tensors, the optimizer has {expected}", st.len()),
        ));
    }
    Ok(opt)
}
