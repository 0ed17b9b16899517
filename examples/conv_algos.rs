//! Times every kernel each pass of one layer can run (forward, input gradient, weight
//! gradient), interleaved, and prints each one's median and the ratio to the one the
//! planner picks: `cargo run --release --example conv_algos -- N C H K KSIZE STRIDE PAD
//! GROUPS MIN_MS` (square images and kernels; `VARIANT=avx2` forces a variant). `cnnkit
//! bench --tune` does the same for the bench's shapes; this takes any. The check behind
//! the planners' thresholds (`kernels/src/conv/plan.rs`) on a new CPU.

use cnnkit::kernels::{self as k, Conv2dParams};
use std::time::Duration;

fn main() {
    if let Ok(v) = std::env::var("VARIANT") {
        k::arch::force(k::arch::Isa::from_name(&v)).expect("a variant this CPU runs");
    }
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("whole numbers"))
        .collect();
    let [n, c, hw, m, ks, st, pad, g, min_ms] = a[..] else {
        eprintln!("usage: conv_algos N C H K KSIZE STRIDE PAD GROUPS MIN_MS");
        std::process::exit(2);
    };
    let p = Conv2dParams::new(n, c, hw, hw, m, ks, ks)
        .with_stride(st, st)
        .with_padding(pad, pad, pad, pad)
        .with_groups(g);
    let d = p.dims().expect("a valid layer");
    let tuned = cnnkit::bench::tune_conv(&p, Duration::from_millis(min_ms as u64)).expect("runs");
    let flops = 2.0 * (d.output_len * d.col_rows) as f64;
    for (pass, cands) in [
        ("forward", &tuned.forward),
        ("input grad", &tuned.input_grad),
        ("weight grad", &tuned.weight_grad),
    ] {
        println!("{pass}:");
        let picked = cands.iter().find(|c| c.chosen).map_or(f64::NAN, |c| c.ms);
        for c in cands {
            println!(
                "  {:<12} {:>9.3} ms {:>7.1} GFLOPS  {:.2}x the chosen{}",
                c.kernel,
                c.ms,
                flops / (c.ms * 1e-3) / 1e9,
                picked / c.ms,
                if c.chosen { "  <- planner" } else { "" }
            );
        }
    }
}
