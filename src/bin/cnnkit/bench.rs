//! `cnnkit bench`: the kernels on the shapes of real models.

use std::process::ExitCode;
use std::time::Duration;

use cnnkit::bench;
use cnnkit::kernels::arch::{self, Isa};

use crate::stdout_error;

/// Arguments of `cnnkit bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Only rows whose name contains this text (e.g. `conv2d`, `lenet`, `sgemm/1024`).
    #[arg(long)]
    filter: Option<String>,
    /// Threads; the batch (or GEMM rows, or elements) is split across them. One by
    /// default (unlike train and eval): the figures are per core, against its peak.
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
}

/// `cnnkit bench`.
pub fn run(a: &Args) -> ExitCode {
    let Args {
        filter,
        threads,
        json,
        variant,
        min_time_ms,
    } = a.clone();
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
    let peaks = bench::fma_peaks();
    if !json {
        let list: Vec<String> = peaks
            .iter()
            .map(|(isa, g)| format!("{} {g:.1}", isa.name()))
            .collect();
        outln!(
            "variant {} (detected {}), {} thread(s); FMA peak measured per core, GFLOPS: {}",
            arch::active().name(),
            arch::detected().name(),
            threads,
            list.join(", ")
        );
        outln!(
            "{:<20} {:<36} {:<8} {:>9} {:>8} {:>6}  shape",
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
        &peaks,
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
                    "{:<20} {:<36} {:<8} {:>9.3} {:>8.1} {:>5.1}%  {}",
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
