//! `cnnkit quantize`.

use std::path::PathBuf;

use cnnkit::data::{self, Dataset};
use cnnkit::quant::{self, AnyModel, Quantized};
use cnnkit::{Error, Result, checkpoint, evaluate, fsio};

use crate::pct;

/// Arguments of `cnnkit quantize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The f32 checkpoint (written by `train --save`).
    #[arg(long)]
    model_file: PathBuf,
    /// The int8 model file to write (safetensors; `eval` and `predict` take it).
    #[arg(long)]
    out: PathBuf,
    /// Training images that calibrate the activation ranges (min and max of every
    /// tensor), evenly spaced over the training split.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    calib: u32,
    /// Directory with the IDX files (the training split calibrates; `--eval` reads the
    /// test split).
    #[arg(long, default_value = data::DEFAULT_DIR)]
    data: PathBuf,
    /// Also the test accuracy of the f32 model and of the int8 one.
    #[arg(long)]
    eval: bool,
    /// Threads for `--eval` [default: the cores available to this process].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Replace a file at `--out` that is not an int8 model cnnkit wrote.
    #[arg(long)]
    overwrite: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `cnnkit quantize`.
pub fn run(a: &Args) -> Result<()> {
    if let (Ok(x), Ok(y)) = (a.model_file.canonicalize(), a.out.canonicalize())
        && x == y
    {
        return Err(Error::Invalid(format!(
            "--out {}: that is the model file itself; the int8 model goes to a file of its own",
            a.out.display()
        )));
    }
    fsio::check_destination(
        &a.out,
        "--out",
        "an int8 model cnnkit wrote",
        a.overwrite,
        quant::file::looks_like_quantized,
    )?;
    let (model, meta) = checkpoint::load_model(&a.model_file)?;
    let norm = meta.norm();
    let (train, test) = if a.eval {
        let d = Dataset::load(&a.data)?;
        (d.train, Some(d.test))
    } else {
        (Dataset::load_train(&a.data)?, None)
    };
    let x = quant::calibration_images(&train, norm, model.input_shape().len(), a.calib as usize)?;
    let t = std::time::Instant::now();
    let q = Quantized::new(&model, norm, &x)?;
    let secs = t.elapsed().as_secs_f64();
    quant::file::save(&a.out, &q, &meta.classes)?;
    let (int8_bytes, f32_bytes) = q.weight_bytes();
    let accuracy = if let Some(test) = &test {
        let threads = a
            .threads
            .map_or_else(cnnkit::train::available_threads, usize::from);
        let (f, _) = evaluate(&model, test, &norm, threads)?;
        let any = AnyModel::Int8(
            Box::new(q.clone()),
            Box::new(quant::file::meta_of(&q, &meta.classes)),
        );
        let (i, _) = cnnkit::evaluate::evaluate_any(&any, test, threads)?;
        Some((f, i))
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::json!({
            "out": a.out.display().to_string(),
            "layers": q.layers.len(),
            "calibration_images": q.calibration_images,
            "calibration_seconds": secs,
            "weight_bytes_int8": int8_bytes,
            "weight_bytes_f32": f32_bytes,
        });
        if let Some((f, i)) = accuracy {
            v["accuracy_f32"] = f.into();
            v["accuracy_int8"] = i.into();
        }
        outln!("{v}");
        return Ok(());
    }
    outln!(
        "{}: int8 model of `{}`, {} layers, calibrated on {} training images (min-max) in {:.2} s; \
         weights and biases {} bytes (f32: {})",
        a.out.display(),
        q.spec,
        q.layers.len(),
        q.calibration_images,
        secs,
        int8_bytes,
        f32_bytes
    );
    if let Some((f, i)) = accuracy {
        outln!(
            "test accuracy on {} images: f32 {}, int8 {} ({:+.2} points)",
            test.as_ref().map_or(0, |t| t.len()),
            pct(f),
            pct(i),
            100.0 * (i - f)
        );
    }
    Ok(())
}
