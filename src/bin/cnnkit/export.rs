//! `cnnkit export`.

use std::path::PathBuf;

use cnnkit::{Result, checkpoint, fsio};

use crate::out_dir;

/// Arguments of `cnnkit export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint.
    #[arg(long)]
    model_file: PathBuf,
    /// Output directory (created if missing): `weights.bin` and `model.rs` go there.
    #[arg(long)]
    out: PathBuf,
    /// Images per call the exported network takes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    batch: u32,
    /// Replace a `weights.bin` or `model.rs` there that `cnnkit export` did not write.
    #[arg(long)]
    overwrite: bool,
}

/// How the Rust source `cnnkit export` writes begins.
const EXPORT_HEAD: &[u8] = b"// Written by `cnnkit export`";

/// `cnnkit export`.
pub fn run(a: &Args) -> Result<()> {
    let (model_file, out, batch, overwrite) =
        (&a.model_file, &a.out, a.batch as usize, a.overwrite);
    let (model, meta) = checkpoint::load_model(model_file)?;
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
        |h| h.starts_with(EXPORT_HEAD),
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
