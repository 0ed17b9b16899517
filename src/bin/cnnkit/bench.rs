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
    /// Instead of the rows: this CPU's caches and FMA peaks, and for each convolution
    /// shape every kernel of each pass (forward, input gradient, weight gradient) timed,
    /// with the planners' picks marked (to check their thresholds on a new CPU).
    #[arg(long)]
    tune: bool,
    /// Force the GEMM's cache blocking, `MC/KC/NC` (e.g. `96/512/1024`), for every row;
    /// default: this CPU's model (`--tune` prints it and times others).
    #[arg(long, value_parser = parse_blocking, conflicts_with = "tune")]
    blocking: Option<cnnkit::kernels::SgemmBlocking>,
    /// Instead of the rows: inference of these model files (f32 checkpoints or int8
    /// models, each given with its own `--model-file`), one image and a batch of 64 at a
    /// time on one thread, as `eval` and `predict` run them: ms and images/s.
    #[arg(long, conflicts_with = "tune")]
    model_file: Vec<std::path::PathBuf>,
}

/// `MC/KC/NC` for `--blocking`, within the limits of `force_sgemm_blocking`.
fn parse_blocking(s: &str) -> Result<cnnkit::kernels::SgemmBlocking, String> {
    let bad = || format!("'{s}': expected MC/KC/NC, three whole numbers (e.g. 96/512/1024)");
    let v: Vec<usize> = s
        .split('/')
        .map(|x| x.trim().parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [mc, kc, nc] = v[..] else {
        return Err(bad());
    };
    let b = cnnkit::kernels::SgemmBlocking { mc, kc, nc };
    b.check().map_err(|e| format!("'{s}': {e}"))
}

/// `cnnkit bench`.
pub fn run(a: &Args) -> ExitCode {
    let Args {
        filter,
        threads,
        json,
        variant,
        min_time_ms,
        tune,
        blocking,
        model_file,
    } = a.clone();
    if let Err(e) = cnnkit::kernels::force_sgemm_blocking(blocking) {
        eprintln!("error: --blocking: {e}");
        return ExitCode::from(2);
    }
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
    if !model_file.is_empty() {
        return match model_rows(&model_file, json, min_time_ms) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    if tune {
        return match tune_rows(filter.as_deref(), json, min_time_ms) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
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
        let c = arch::caches();
        outln!(
            "variant {} (detected {}), {} thread(s); FMA peak measured per core, GFLOPS: {}; \
             caches L1d {} KiB, L2 {} KiB, L3 {} KiB",
            arch::active().name(),
            arch::detected().name(),
            threads,
            list.join(", "),
            c.l1d / 1024,
            c.l2 / 1024,
            c.l3 / 1024
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

/// `cnnkit bench --model-file F...`: each model's inference, batch 1 and 64, one thread.
fn model_rows(files: &[std::path::PathBuf], json: bool, min_time_ms: u64) -> cnnkit::Result<()> {
    use cnnkit::quant::AnyModel;
    let models = files
        .iter()
        .map(|f| AnyModel::load(f))
        .collect::<cnnkit::Result<Vec<_>>>()?;
    if !json {
        outln!(
            "variant {} (detected {}), 1 thread; inference as eval and predict run it",
            arch::active().name(),
            arch::detected().name()
        );
        outln!(
            "{:<40} {:<5} {:>5} {:>10} {:>12} {:>10}",
            "model file",
            "kind",
            "batch",
            "ms",
            "ms/image",
            "images/s"
        );
    }
    for (f, m) in files.iter().zip(&models) {
        let per = m.input_shape().len();
        for batch in [1usize, 64] {
            cnnkit::budget::check(
                &format!("a batch of {batch} images of {}", m.input_shape()),
                (batch * per) as u64 * 5,
            )?;
            let pixels: Vec<u8> = (0..batch * per).map(|i| (i * 37 % 251) as u8).collect();
            // (the median of the timed runs: at least 5, and at least `min_time_ms`)
            let mut times = Vec::new();
            let start = std::time::Instant::now();
            m.predict_u8(&pixels)?;
            while times.len() < 5 || start.elapsed() < Duration::from_millis(min_time_ms) {
                let t = std::time::Instant::now();
                std::hint::black_box(m.predict_u8(std::hint::black_box(&pixels))?);
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            let ms = times[times.len() / 2];
            let per_image = ms / batch as f64;
            if json {
                let v = serde_json::json!({
                    "name": f.display().to_string(),
                    "kind": m.kind(),
                    "batch": batch,
                    "ms": ms,
                    "ms_per_image": per_image,
                    "images_per_sec": 1e3 / per_image,
                    "variant": arch::active().name(),
                });
                outln!("{v}");
            } else {
                outln!(
                    "{:<40} {:<5} {:>5} {:>10.4} {:>12.4} {:>10.0}",
                    f.display().to_string(),
                    m.kind(),
                    batch,
                    ms,
                    per_image,
                    1e3 / per_image
                );
            }
        }
    }
    Ok(())
}

/// `cnnkit bench --tune`: the machine as the planner sees it, then each convolution shape's
/// kernels timed, pass by pass.
fn tune_rows(filter: Option<&str>, json: bool, min_time_ms: u64) -> cnnkit::Result<ExitCode> {
    use std::io::Write as _;
    let shapes: Vec<_> = bench::conv_shapes()
        .into_iter()
        .filter(|(name, _)| filter.is_none_or(|f| format!("conv2d/{name}").contains(f)))
        .collect();
    let gemms: Vec<usize> = [256, 512, 1024]
        .into_iter()
        .filter(|n| filter.is_none_or(|f| format!("sgemm/{n}").contains(f)))
        .collect();
    if shapes.is_empty() && gemms.is_empty() {
        eprintln!("error: no GEMM size or convolution shape matches the filter");
        return Ok(ExitCode::from(2));
    }
    let c = arch::caches();
    let peaks = bench::fma_peaks();
    let mut out = std::io::stdout();
    let say = |out: &mut std::io::Stdout, line: String| writeln!(out, "{line}");
    let mut res = Ok(());
    if !json {
        let list: Vec<String> = peaks
            .iter()
            .map(|(isa, g)| format!("{} {g:.1}", isa.name()))
            .collect();
        res = res.and(say(
            &mut out,
            format!(
                "variant {}; FMA peak per core, GFLOPS: {}; caches L1d {} KiB, L2 {} KiB, L3 {} \
                 KiB; zmm FMAs at the ymm rate (the planners' wide-tile rule): {}",
                arch::active().name(),
                list.join(", "),
                c.l1d / 1024,
                c.l2 / 1024,
                c.l3 / 1024,
                if arch::zmm_fma_doubles() { "yes" } else { "no" }
            ),
        ));
        res = res.and(say(
            &mut out,
            format!(
                "sgemm: the fastest blockings (mc/kc/nc), GFLOPS; * = the model's \
                 ({}); convolutions: each pass's kernels per layer, median ms, * = the \
                 planner's pick; ! = another is 5% or more faster",
                {
                    let b = cnnkit::kernels::sgemm_blocking(arch::active());
                    format!("mc {} kc {} nc {}", b.mc, b.kc, b.nc)
                }
            ),
        ));
    }
    let min_time = std::time::Duration::from_millis(min_time_ms);
    let grid = bench::blocking_grid();
    for n in gemms {
        let name = format!("sgemm/{n}");
        let mut cands = bench::tune_sgemm(n, &grid, min_time)
            .map_err(|e| cnnkit::Error::Invalid(e.to_string()))?;
        if json {
            let row = serde_json::json!({ "name": name, "blockings": cands });
            res = res.and(say(&mut out, row.to_string()));
            continue;
        }
        cands.sort_by(|a, b| a.ms.total_cmp(&b.ms));
        let best = cands[0].ms;
        let picked = cands.iter().find(|c| c.chosen).map_or(f64::NAN, |c| c.ms);
        let cell = |c: &bench::BlockingCandidate| {
            let mark = if c.chosen { "*" } else { "" };
            format!("{mark}{}/{}/{} {:.1}", c.mc, c.kc, c.nc, c.gflops)
        };
        let mut cells: Vec<String> = cands.iter().take(6).map(cell).collect();
        if let Some(c) = cands.iter().skip(6).find(|c| c.chosen) {
            cells.push(format!("... {}", cell(c)));
        }
        res = res.and(say(
            &mut out,
            format!(
                "{name:<22} {:<12} {}{}",
                "GFLOPS",
                cells.join("  "),
                if picked > 1.05 * best { "  !" } else { "" }
            ),
        ));
    }
    for (name, p) in shapes {
        let tuned =
            bench::tune_conv(&p, min_time).map_err(|e| cnnkit::Error::Invalid(e.to_string()))?;
        let name = format!("conv2d/{name}");
        if json {
            let mut row =
                serde_json::to_value(&tuned).map_err(|e| cnnkit::Error::Invalid(e.to_string()))?;
            row["name"] = name.into();
            res = res.and(say(&mut out, row.to_string()));
            continue;
        }
        let passes = [
            ("fwd", &tuned.forward),
            ("input grad", &tuned.input_grad),
            ("weight grad", &tuned.weight_grad),
        ];
        for (i, (pass, cands)) in passes.into_iter().enumerate() {
            let best = cands.iter().map(|c| c.ms).fold(f64::INFINITY, f64::min);
            let picked = cands.iter().find(|c| c.chosen).map_or(f64::NAN, |c| c.ms);
            let cells: Vec<String> = cands
                .iter()
                .map(|c| {
                    format!(
                        "{}{} {:.3}",
                        if c.chosen { "*" } else { "" },
                        c.kernel,
                        c.ms
                    )
                })
                .collect();
            let head = if i == 0 { name.as_str() } else { "" };
            res = res.and(say(
                &mut out,
                format!(
                    "{head:<22} {pass:<12} {}{}",
                    cells.join("  "),
                    if picked > 1.05 * best { "  !" } else { "" }
                ),
            ));
        }
    }
    if let Err(e) = res {
        return Err(stdout_error(e));
    }
    Ok(ExitCode::SUCCESS)
}
