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
//! Both files are written atomically: to a temporary file in the same directory, synced,
//! then renamed over the old one, so a crash leaves either the old or the new file.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::data::Normalize;
use crate::error::{Error, Result};
use crate::layers::{Layer, Shape};
use crate::model::Model;
use crate::optim::Optimizer;
use crate::train::{EpochRecord, TrainConfig, Trainer};

/// Version of the metadata layout.
pub const FORMAT: u32 = 1;

/// Largest checkpoint file read (1 GiB).
pub const MAX_FILE: u64 = 1 << 30;

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
    /// Their standard deviation.
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
}

impl Meta {
    /// The pixel normalisation.
    pub fn norm(&self) -> Normalize {
        Normalize {
            mean: self.pixel_mean,
            std: self.pixel_std,
        }
    }
}

/// The optimizer file beside a model file: `FILE.optim`.
pub fn optim_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".optim");
    path.with_file_name(name)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OptimMeta {
    format: u32,
    optimizer: crate::optim::OptimizerKind,
    weight_decay: f32,
    steps: u64,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced,
/// then renamed.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(
        path.file_name()
            .ok_or_else(|| Error::invalid(format!("{}: not a file name", path.display())))?,
    );
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // make the rename durable (best effort: not every platform opens directories)
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

fn serialize(
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
    }
}

/// Saves the model of `trainer` to `path` and its optimizer state to `FILE.optim`,
/// both atomically (the optimizer first, so the model file, written last, never names
/// a step its optimizer file has not reached).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn save(path: &Path, trainer: &Trainer, classes: &[String]) -> Result<()> {
    let opt = &trainer.optimizer;
    let mut tensors = Vec::new();
    for (i, (layer, bufs)) in trainer.model.layers().iter().zip(&opt.state).enumerate() {
        for (p, pbufs) in bufs.iter().enumerate() {
            let (pname, t) = layer.param(p);
            for (bname, b) in opt.kind.buffer_names().iter().zip(pbufs) {
                tensors.push((
                    format!("{i}.{pname}.{bname}"),
                    Dtype::F32,
                    t.shape().to_vec(),
                    f32_bytes(b),
                ));
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
    write_atomic(&optim_path(path), &serialize(tensors, json)?)?;
    write_atomic(
        path,
        &model_bytes(&trainer.model, &meta_of(trainer, classes))?,
    )
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let len = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if len > MAX_FILE {
        return Err(Error::checkpoint(
            path,
            format!("{len} bytes: larger than 1 GiB"),
        ));
    }
    fs::read(path).map_err(|e| Error::io(path, e))
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(SafeTensors<'a>, String)> {
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

fn read_f32(
    path: &Path,
    st: &SafeTensors,
    name: &str,
    shape: &[usize],
    out: &mut [f32],
) -> Result<()> {
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
    for (o, b) in out.iter_mut().zip(v.data().chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

/// Loads a model file: the model (architecture from the metadata, every tensor checked
/// against it) and its metadata.
///
/// # Errors
/// [`Error::Io`]; [`Error::Checkpoint`] for a corrupt or truncated file, missing
/// metadata, a missing or unexpected tensor, or a tensor whose type or shape does not
/// fit the model (the message names the tensor).
pub fn load_model(path: &Path) -> Result<(Model, Meta)> {
    model_from_bytes(path, &read_file(path)?)
}

/// As [`load_model`] on the bytes of a file already in memory; `path` is for messages.
///
/// # Errors
/// As [`load_model`].
pub fn model_from_bytes(path: &Path, bytes: &[u8]) -> Result<(Model, Meta)> {
    let (st, json) = parse(path, bytes)?;
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
    let [c, h, w] = meta.input;
    let mut model = Model::from_spec(&meta.spec, Shape::Image { c, h, w }, 0)
        .map_err(|e| Error::checkpoint(path, format!("model spec in the metadata: {e}")))?;
    let mut expected = Vec::new();
    for (i, layer) in model.layers_mut().iter_mut().enumerate() {
        for p in 0..layer.param_count() {
            let name = format!("{i}.{}", layer.param(p).0);
            let t = layer.param_mut(p);
            let shape = t.shape().to_vec();
            read_f32(path, &st, &name, &shape, t.data_mut())?;
            expected.push(name);
        }
        if let Layer::BatchNorm2d(bn) = layer {
            let c = bn.channels();
            let name = format!("{i}.running_mean");
            read_f32(path, &st, &name, &[c], bn.running_mean.data_mut())?;
            expected.push(name);
            let name = format!("{i}.running_var");
            read_f32(path, &st, &name, &[c], bn.running_var.data_mut())?;
            expected.push(name);
            let name = format!("{i}.num_batches_tracked");
            let v = st
                .tensor(&name)
                .map_err(|_| Error::checkpoint(path, format!("tensor `{name}` is missing")))?;
            if v.dtype() != Dtype::I64 || v.data().len() != 8 {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor `{name}` must be one I64"),
                ));
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(v.data());
            bn.num_batches_tracked = i64::from_le_bytes(b);
            expected.push(name);
        }
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
    Ok((model, meta))
}

/// Loads the optimizer state saved beside the model file `path` (`FILE.optim`) for
/// `model`, checking that it was saved at step `steps`.
///
/// # Errors
/// As [`load_model`]; a step count that differs from the model file's.
pub fn load_optimizer(path: &Path, model: &Model, steps: u64) -> Result<Optimizer> {
    let opath = optim_path(path);
    let bytes = read_file(&opath)?;
    let (st, json) = parse(&opath, &bytes)?;
    let om: OptimMeta = serde_json::from_str(&json)
        .map_err(|e| Error::checkpoint(&opath, format!("bad `cnnkit` metadata: {e}")))?;
    if om.steps != steps {
        return Err(Error::checkpoint(
            &opath,
            format!(
                "optimizer state is from step {}, the model file from step {steps}: \
                 they do not belong together",
                om.steps
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
                read_f32(&opath, &st, &format!("{i}.{pname}.{bname}"), t.shape(), b)?;
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
