//! The `cnnkit` command-line tool: train, eval, predict, viz, bench.

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

mod commands;
mod viz;

/// The error for standard output that cannot be written.
fn stdout_error(e: std::io::Error) -> cnnkit::Error {
    cnnkit::Error::Invalid(format!("cannot write to standard output: {e}"))
}

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cnnkit::bench;
use cnnkit::kernels::arch::{self, Isa};

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
    Train(commands::TrainArgs),
    /// Accuracy and confusion matrix of a saved model on the test split.
    Eval {
        /// The checkpoint (safetensors, written by `train --save`).
        #[arg(long)]
        model_file: PathBuf,
        /// Directory with the four IDX files.
        #[arg(long, default_value = cnnkit::data::DEFAULT_DIR)]
        data: PathBuf,
        /// Threads.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Class and probabilities of PNG or PGM images (grayscale; resized to the model input).
    Predict {
        /// The checkpoint.
        #[arg(long)]
        model_file: PathBuf,
        /// Images (PNG or PGM); colour images are converted to grayscale.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// One JSON object per image instead of text.
        #[arg(long)]
        json: bool,
    },
    /// PNG images of the first-layer filters, of every layer's feature maps for one test
    /// image, and a chart of the training curves.
    Viz {
        /// The checkpoint.
        #[arg(long)]
        model_file: PathBuf,
        /// Directory with the four IDX files (for the test image).
        #[arg(long, default_value = cnnkit::data::DEFAULT_DIR)]
        data: PathBuf,
        /// Index of the test image.
        #[arg(long, default_value_t = 0)]
        image: usize,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Replace files in the output directory that are not PNG images.
        #[arg(long)]
        overwrite: bool,
    },
    /// Export a saved model for `cnnkit_kernels::net` (a firmware, say): the weights as a
    /// flat little-endian blob, and the layer list as Rust source.
    Export {
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
    },
    /// Time the kernels on the shapes of real models: ms, GFLOPS, % of the FMA peak.
    Bench {
        /// Only rows whose name contains this text (e.g. `conv2d`, `lenet`, `sgemm/1024`).
        #[arg(long)]
        filter: Option<String>,
        /// Threads; the batch (or GEMM rows, or elements) is split across them.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// One JSON object per row instead of a table.
        #[arg(long)]
        json: bool,
        /// Force a kernel variant (`portable`, `avx2`, `avx512`); default: the best this CPU runs.
        #[arg(long)]
        variant: Option<String>,
        /// Minimum time per row, milliseconds (each row also runs at least 5 times).
        #[arg(long, default_value_t = 300)]
        min_time_ms: u64,
    },
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
    let result = match cli.command {
        Command::Train(args) => commands::train(&args),
        Command::Eval {
            model_file,
            data,
            threads,
            json,
        } => commands::eval(&model_file, &data, usize::from(threads), json),
        Command::Predict {
            model_file,
            images,
            json,
        } => commands::predict(&model_file, &images, json),
        Command::Viz {
            model_file,
            data,
            image,
            out,
            overwrite,
        } => viz::run(&model_file, &data, image, &out, overwrite),
        Command::Export {
            model_file,
            out,
            batch,
            overwrite,
        } => commands::export(&model_file, &out, batch as usize, overwrite),
        Command::Bench {
            filter,
            threads,
            json,
            variant,
            min_time_ms,
        } => return run_bench(filter, threads, json, variant, min_time_ms),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // (a diverged run is no bad input: its own status, so scripts can tell)
        Err(e @ cnnkit::Error::Diverged(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_bench(
    filter: Option<String>,
    threads: u16,
    json: bool,
    variant: Option<String>,
    min_time_ms: u64,
) -> ExitCode {
    if let Some(v) = variant {
        let Some(isa) = Isa::from_name(&v) else {
            eprintln!("error: unknown variant '{v}' (expected one of: portable, avx2, avx512)");
            return ExitCode::from(2);
        };
        if let Err(e) = arch::force(Some(isa)) {
            eprintln!("error: variant '{v}': {e}");
            return ExitCode::from(2);
        }
    }
    match bench_rows(filter, threads, json, min_time_ms) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn bench_rows(
    filter: Option<String>,
    threads: u16,
    json: bool,
    min_time_ms: u64,
) -> cnnkit::Result<ExitCode> {
    let threads = usize::from(threads);
    let peak = bench::fma_peak_gflops();
    if !json {
        outln!(
            "variant {} (detected {}), FMA peak measured {:.1} GFLOPS per core, {} thread(s)",
            arch::active().name(),
            arch::detected().name(),
            peak,
            threads
        );
        outln!(
            "{:<20} {:<16} {:<8} {:>9} {:>8} {:>6}  shape",
            "kernel",
            "variant",
            "pass",
            "ms",
            "GFLOPS",
            "%peak"
        );
    }
    let mut failed = None;
    let res = bench::run(
        filter.as_deref(),
        threads,
        Duration::from_millis(min_time_ms),
        peak,
        |r| {
            use std::io::Write as _;
            let line = if json {
                writeln!(
                    std::io::stdout(),
                    "{}",
                    serde_json::to_string(r).unwrap_or_default()
                )
            } else {
                writeln!(
                    std::io::stdout(),
                    "{:<20} {:<16} {:<8} {:>9.3} {:>8.1} {:>5.1}%  {}",
                    r.name,
                    r.variant,
                    r.pass.name(),
                    r.ms,
                    r.gflops,
                    r.pct_peak,
                    r.shape
                )
            };
            if let Err(e) = line {
                failed.get_or_insert(e);
            }
        },
    );
    if let Some(e) = failed {
        return Err(stdout_error(e));
    }
    Ok(match res {
        Ok(rows) if rows.is_empty() => {
            eprintln!("error: no benchmark matches the filter");
            ExitCode::from(2)
        }
        Ok(rows) => {
            if !json && rows.iter().any(|r| r.variant.starts_with("winograd")) {
                outln!(
                    "(GFLOPS count a convolution's direct multiply-adds; Winograd's algorithm \
                     does 2.25x fewer, so its rows can pass 100% of the FMA peak)"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    })
}
