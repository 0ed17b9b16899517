//! `cnnkit export`.

use std::path::PathBuf;

use cnnkit::quant::{AnyModel, INT8_SOURCE_HEAD, Quantized};
use cnnkit::{Result, fsio};

use crate::out_dir;

/// Arguments of `cnnkit export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint, or an int8 model file (`quantize`).
    #[arg(long)]
    model_file: PathBuf,
    /// Output directory (created if missing): `weights.bin` and `model.rs` go there (for
    /// an int8 model, `model.rs` alone: its data are in it).
    #[arg(long, required_unless_present = "onnx")]
    out: Option<PathBuf>,
    /// Write the model as an ONNX file (opset 17) here: it takes normalised pixels, and its
    /// metadata_props carry pixel_mean, pixel_std and classes.
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// Images per call the exported network takes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    batch: u32,
    /// Replace a `weights.bin`, `model.rs` or ONNX file that `cnnkit export` did not write.
    #[arg(long)]
    overwrite: bool,
}

/// How the Rust source `cnnkit export` writes begins.
const EXPORT_HEAD: &[u8] = b"// Written by `cnnkit export`";

/// `cnnkit export`.
pub fn run(a: &Args) -> Result<()> {
    let (model_file, batch, overwrite) = (&a.model_file, a.batch as usize, a.overwrite);
    let (model, meta) = match AnyModel::load(model_file)? {
        AnyModel::F32(model, meta) => (model, meta),
        AnyModel::Int8(..) if a.onnx.is_some() => {
            return Err(cnnkit::Error::Invalid(
                "--onnx takes an f32 checkpoint: export the model before quantising it".into(),
            ));
        }
        AnyModel::Int8(q, _) => {
            let out = a.out.as_ref().expect("clap requires --out without --onnx");
            return export_int8(&q, out, batch, overwrite);
        }
    };
    if let Some(path) = &a.onnx {
        let bytes = cnnkit::onnx::to_onnx(&model, meta.norm(), &meta.classes)?;
        fsio::check_destination(
            path,
            "--onnx",
            "an ONNX file cnnkit wrote",
            overwrite,
            |h| h.starts_with(cnnkit::onnx::HEAD),
        )?;
        fsio::write_atomic(path, &bytes)?;
        outln!(
            "{}: ONNX opset {}, {} layers, {} parameters, {} bytes",
            path.display(),
            cnnkit::onnx::OPSET,
            model.layers().len(),
            model.num_params(),
            bytes.len()
        );
    }
    let Some(out) = &a.out else { return Ok(()) };
    let e = cnnkit::export::Export::new(&model, meta.norm(), batch)?;
    let net = e.network()?;
    let blob = e.blob()?;
    let src = e.rust_source()?;
    out_dir(out)?;
    let (wpath, spath) = (out.join("weights.bin"), out.join("model.rs"));
    fsio::check_destination(
        &wpath,
        "--out",
        "a weight blob cnnkit wrote",
        overwrite,
        |h| h.starts_with(&cnnkit::kernels::net::BLOB_MAGIC),
    )?;
    fsio::check_destination(
        &spath,
        "--out",
        "Rust source cnnkit wrote",
        overwrite,
        is_our_source,
    )?;
    fsio::write_atomic(&wpath, &blob)?;
    fsio::write_atomic(&spath, src.as_bytes())?;
    outln!(
        "{}: {} layers, {} parameters ({} bytes of weights.bin), arena {} floats ({} bytes), fingerprint {:#010x}",
        out.display(),
        e.layers.len(),
        net.param_len(),
        blob.len(),
        net.arena_len(),
        4 * net.arena_len(),
        net.fingerprint()
    );
    Ok(())
}

/// Whether a `model.rs` is one `cnnkit export` wrote (from an f32 or an int8 model).
fn is_our_source(head: &[u8]) -> bool {
    head.starts_with(EXPORT_HEAD) || head.starts_with(INT8_SOURCE_HEAD.as_bytes())
}

/// `cnnkit export` of an int8 model: `model.rs` with the layers and their data.
fn export_int8(q: &Quantized, out: &std::path::Path, batch: usize, overwrite: bool) -> Result<()> {
    let src = q.rust_source(batch)?;
    out_dir(out)?;
    let spath = out.join("model.rs");
    fsio::check_destination(
        &spath,
        "--out",
        "Rust source cnnkit wrote",
        overwrite,
        is_our_source,
    )?;
    fsio::write_atomic(&spath, src.as_bytes())?;
    let (bytes, _) = q.weight_bytes();
    outln!(
        "{}: int8, {} layers, {} bytes of weights and biases in model.rs",
        out.display(),
        q.layers.len(),
        bytes
    );
    Ok(())
}
