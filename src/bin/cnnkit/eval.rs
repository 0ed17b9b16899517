//! `cnnkit eval`.

use std::path::PathBuf;

use cnnkit::data::{self, Dataset};
use cnnkit::quant::AnyModel;
use cnnkit::{Result, evaluate::evaluate_any};

use crate::pct;

/// Arguments of `cnnkit eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file: a checkpoint (`train --save`) or an int8 model (`quantize`).
    #[arg(long)]
    model_file: PathBuf,
    /// Directory with the IDX files (only the test split is read).
    #[arg(long, default_value = data::DEFAULT_DIR)]
    data: PathBuf,
    /// Threads [default: the cores available to this process]; the figures do not
    /// depend on it.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `cnnkit eval`.
pub fn run(a: &Args) -> Result<()> {
    let (model_file, dir, threads, json) = (
        &a.model_file,
        &a.data,
        a.threads
            .map_or_else(cnnkit::train::available_threads, usize::from),
        a.json,
    );
    let model = AnyModel::load(model_file)?;
    let test = Dataset::load_test(dir)?;
    let (acc, conf) = evaluate_any(&model, &test, threads)?;
    if json {
        let v = serde_json::json!({
            "accuracy": acc,
            "images": test.len(),
            "confusion": conf,
            "kind": model.kind(),
        });
        outln!("{v}");
        return Ok(());
    }
    outln!(
        "{} ({}): test accuracy {} on {} images ({})",
        model_file.display(),
        model.kind(),
        pct(acc),
        test.len(),
        dir.display()
    );
    let names = model.classes();
    let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
    let w = (0..conf.len())
        .map(|i| format!("{i} {}", name(i)).chars().count())
        .max()
        .unwrap_or(1);
    outln!("confusion matrix (rows: true class, columns: predicted)");
    out!("{:>w$} ", "");
    for j in 0..conf.len() {
        out!("{j:>5}");
    }
    outln!("  recall");
    for (i, row) in conf.iter().enumerate() {
        out!("{:<w$} ", format!("{i} {}", name(i)));
        for v in row {
            out!("{v:>5}");
        }
        let total: u64 = row.iter().sum();
        outln!("  {}", pct(row[i] as f64 / total.max(1) as f64));
    }
    Ok(())
}
