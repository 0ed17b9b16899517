//! The `cnnkit` command-line tool.

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
}

#[derive(Subcommand)]
enum Command {
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
        /// Force a kernel variant (`portable`, `avx2`); default: the best this CPU runs.
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
    match cli.command {
        Command::Bench {
            filter,
            threads,
            json,
            variant,
            min_time_ms,
        } => {
            if let Some(v) = variant {
                let Some(isa) = Isa::from_name(&v) else {
                    eprintln!("error: unknown variant '{v}' (expected one of: portable, avx2)");
                    return ExitCode::from(2);
                };
                if let Err(e) = arch::force(Some(isa)) {
                    eprintln!("error: variant '{v}': {e}");
                    return ExitCode::from(2);
                }
            }
            let threads = usize::from(threads);
            let peak = bench::fma_peak_gflops();
            if !json {
                println!(
                    "variant {} (detected {}), FMA peak measured {:.1} GFLOPS per core, {} thread(s)",
                    arch::active().name(),
                    arch::detected().name(),
                    peak,
                    threads
                );
                println!(
                    "{:<20} {:<16} {:<8} {:>9} {:>8} {:>6}  shape",
                    "kernel", "variant", "pass", "ms", "GFLOPS", "%peak"
                );
            }
            let res = bench::run(
                filter.as_deref(),
                threads,
                Duration::from_millis(min_time_ms),
                peak,
                |r| {
                    if json {
                        println!("{}", serde_json::to_string(r).unwrap_or_default());
                    } else {
                        println!(
                            "{:<20} {:<16} {:<8} {:>9.3} {:>8.1} {:>5.1}%  {}",
                            r.name,
                            r.variant,
                            r.pass.name(),
                            r.ms,
                            r.gflops,
                            r.pct_peak,
                            r.shape
                        );
                    }
                },
            );
            match res {
                Ok(rows) if rows.is_empty() => {
                    eprintln!("error: no benchmark matches the filter");
                    ExitCode::from(2)
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
