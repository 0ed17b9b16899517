//! LeNet-5 on a Cortex-M4F: classifies the baked Fashion-MNIST test images and prints each
//! prediction and its logits over semihosting, then exits with status 0 (1 on any error).
//! Built for the host, the same program prints the same lines on stdout.
//!
//! Run: `cargo run -p lenet5-firmware --profile firmware --target thumbv7em-none-eabihf`
//! (QEMU's mps2-an386, see `.cargo/config.toml`), or without `--target` on the host.
#![cfg_attr(target_os = "none", no_std, no_main)]

use lenet5_firmware::{Buffers, classify, model, weights, write_report, write_sizes};

#[cfg(target_os = "none")]
mod target {
    use core::fmt::Write;

    use cortex_m_rt::entry;
    use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
    use cortex_m_semihosting::hio;
    use panic_semihosting as _;

    use super::*;

    #[entry]
    fn main() -> ! {
        // cortex-m-rt turns this into a `&'static mut` to a static: the buffers, in .bss
        static mut BUFFERS: Buffers = Buffers::new();
        let ok = match hio::hstdout() {
            Ok(mut out) => run(&mut out, BUFFERS).is_ok(),
            Err(()) => false,
        };
        debug::exit(if ok { EXIT_SUCCESS } else { EXIT_FAILURE });
        // (only reached without a semihosting host to end the program)
        loop {
            cortex_m::asm::wfi();
        }
    }

    fn run(out: &mut hio::HostStream, buffers: &mut Buffers) -> Result<(), ()> {
        let w = match weights() {
            Ok(b) => b,
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                return Err(());
            }
        };
        write_sizes(out).map_err(|_| ())?;
        writeln!(out).map_err(|_| ())?;
        for i in 0..model::IMAGES {
            match classify(&w, i, buffers) {
                Ok(p) => {
                    write_report(out, &p).map_err(|_| ())?;
                    writeln!(out).map_err(|_| ())?;
                }
                Err(e) => {
                    let _ = writeln!(out, "error: image {i}: {e}");
                    return Err(());
                }
            }
        }
        Ok(())
    }
}

/// On the host: prints what the firmware prints. With `--compare FILE` (the firmware's
/// output under QEMU), checks instead that FILE reports the same sizes, the same images
/// and the same predictions, with logits within `1e-4 * (2 + |logit|)` of the host's
/// (the host may fuse multiply-adds the Cortex-M4 build does not; 1e-4 of that is the
/// printed resolution) — with `int8`, equal — and exits with 1 otherwise.
#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut lines = Vec::new();
    if let Err(e) = host_lines(&mut lines) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            for l in &lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        [flag, file] if flag == "--compare" => match std::fs::read_to_string(file) {
            Ok(text) => match compare(&lines, &text) {
                Ok(worst) => {
                    println!(
                        "{file}: the same {} predictions as the host; largest logit difference {worst:.4}",
                        model::IMAGES
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{file}: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("error: {file}: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: lenet5-firmware [--compare QEMU_OUTPUT]");
            ExitCode::from(2)
        }
    }
}

/// The lines the firmware prints, computed on the host.
#[cfg(not(target_os = "none"))]
fn host_lines(lines: &mut Vec<String>) -> Result<(), cnnkit_kernels::KernelError> {
    let mut buffers = Box::new(Buffers::new());
    let w = weights()?;
    let mut line = String::new();
    let _ = write_sizes(&mut line);
    lines.push(line);
    for i in 0..model::IMAGES {
        let p = classify(&w, i, &mut buffers)?;
        let mut line = String::new();
        let _ = write_report(&mut line, &p);
        lines.push(line);
    }
    Ok(())
}

/// `(predicted class, logits)` of a report line.
#[cfg(not(target_os = "none"))]
fn parse_report(line: &str) -> Option<(usize, Vec<f32>)> {
    let (head, logits) = line.split_once(" logits ")?;
    let class = head
        .split_once(" predicted ")?
        .1
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let logits = logits
        .split(' ')
        .map(str::parse)
        .collect::<Result<Vec<f32>, _>>()
        .ok()?;
    Some((class, logits))
}

/// Compares the firmware's output with the host's lines; returns the largest logit
/// difference.
#[cfg(not(target_os = "none"))]
fn compare(host: &[String], target: &str) -> Result<f32, String> {
    let target: Vec<&str> = target
        .lines()
        .filter(|l| l.starts_with("sizes: ") || l.starts_with("image "))
        .collect();
    if target.len() != host.len() {
        return Err(format!(
            "{} report lines, the host has {} (did the firmware stop early?)",
            target.len(),
            host.len()
        ));
    }
    // (the scratch the kernels need depends on the target: x86's VNNI kernels want more)
    let sizes = |l: &str| l.split(", scratch").next().unwrap_or_default().to_string();
    if sizes(target[0]) != sizes(&host[0]) {
        return Err(format!("sizes differ: `{}` vs `{}`", target[0], host[0]));
    }
    let mut worst = 0.0_f32;
    for (t, h) in target[1..].iter().zip(&host[1..]) {
        let (Some((tc, tl)), Some((hc, hl))) = (parse_report(t), parse_report(h)) else {
            return Err(format!("unreadable line `{t}`"));
        };
        if tc != hc || tl.len() != hl.len() {
            return Err(format!(
                "prediction differs:\n  target `{t}`\n  host   `{h}`"
            ));
        }
        for (a, b) in tl.iter().zip(&hl) {
            let d = (a - b).abs();
            // (int8: integer arithmetic and one f32 multiply per logit, the same everywhere)
            let tolerance = if cfg!(feature = "int8") {
                0.0
            } else {
                1e-4 * (2.0 + b.abs())
            };
            if d.is_nan() || d > tolerance {
                return Err(format!("logits differ:\n  target `{t}`\n  host   `{h}`"));
            }
            worst = worst.max(d);
        }
    }
    Ok(worst)
}
