//! The `cnnkit` command-line tool: train, eval, predict, viz, export, quantize, bench. Each
//! subcommand lives in a module of its own with its arguments; this file parses the
//! command line, sets the memory budget and maps errors to exit statuses (2: bad input,
//! 3: training diverged).

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cnnkit::{Error, Result};

/// `println!` that returns an error from the enclosing function, instead of panicking,
/// when standard output cannot be written (a full disk, a closed pipe).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*).map_err(crate::stdout_error)?
    }};
}

/// `print!` as [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($t)*).map_err(crate::stdout_error)?
    }};
}

mod bench;
mod eval;
mod export;
mod predict;
mod quantize;
mod train;
mod viz;

#[derive(Parser)]
#[command(
    name = "cnnkit",
    version,
    about = "CPU convolutional networks: kernels, benchmarks, training"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Memory budget: no buffer sized from input (model, batch, threads, images) may make
    /// cnnkit take more (e.g. 4G, 512M) [default: 4G].
    #[arg(long, global = true, env = "CNNKIT_MAX_MEMORY", value_name = "SIZE")]
    max_memory: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on an MNIST-format dataset (Fashion-MNIST by default).
    Train(train::Args),
    /// Accuracy and confusion matrix of a saved model on the test split.
    Eval(eval::Args),
    /// Class and probabilities of PNG, PGM or PPM images (grayscale or RGB as the model takes; resized to its input).
    Predict(predict::Args),
    /// PNG images of the first-layer filters, of every layer's feature maps for one test
    /// image, and a chart of the training curves.
    Viz(viz::Args),
    /// Export a saved model for `cnnkit_kernels::net` (a firmware, say): the weights as a
    /// flat little-endian blob, and the layer list as Rust source.
    Export(export::Args),
    /// Post-training int8 quantisation of a saved model (TFLite's scheme: weights per
    /// channel, activations per tensor from calibration images), for `eval` and `predict`.
    Quantize(quantize::Args),
    /// Time the kernels on the shapes of real models: ms, GFLOPS, % of the FMA peak.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(m) = &cli.max_memory {
        match cnnkit::budget::parse_size(m) {
            Ok(b) => cnnkit::budget::set(b),
            Err(e) => {
                eprintln!("error: --max-memory: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let result = match &cli.command {
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Viz(a) => viz::run(a),
        Command::Export(a) => export::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Bench(a) => return bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // (a diverged run is no bad input: its own status, so scripts can tell)
        Err(e @ Error::Diverged(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The error for standard output that cannot be written.
fn stdout_error(e: std::io::Error) -> Error {
    Error::Invalid(format!("cannot write to standard output: {e}"))
}

/// A fraction as a percentage with two decimals.
fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Makes the output directory `out` (of `--out`), or says why it cannot be one.
fn out_dir(out: &Path) -> Result<()> {
    if let Ok(m) = std::fs::metadata(out)
        && !m.is_dir()
    {
        return Err(Error::Invalid(format!(
            "--out {}: exists and is not a directory (--out names the directory to write into)",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| {
        Error::Invalid(format!(
            "--out {}: cannot create the directory: {e}",
            out.display()
        ))
    })
}
