//! Times every forward algorithm `conv2d` can choose on one layer, interleaved, and prints
//! each one's median and the ratio to the one `conv2d` picks: `cargo run --release
//! --example conv_algos -- N C H K KSIZE STRIDE PAD GROUPS REPS` (square images and
//! kernels; `VARIANT=avx2` forces a variant). The check behind the planner's thresholds
//! (`forward_algo` in `kernels/src/conv/plan.rs`) on a new CPU.

use cnnkit_kernels::{self as k, Activation, Conv2dAlgo, Conv2dParams, Conv2dPlan};
use std::time::Instant;

fn main() {
    if let Ok(v) = std::env::var("VARIANT") {
        k::arch::force(k::arch::Isa::from_name(&v)).unwrap();
    }
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("whole numbers"))
        .collect();
    let [n, c, hw, m, ks, st, pad, g, reps] = a[..] else {
        eprintln!("usage: conv_algos N C H K KSIZE STRIDE PAD GROUPS REPS");
        std::process::exit(2);
    };
    let p = Conv2dParams::new(n, c, hw, hw, m, ks, ks)
        .with_stride(st, st)
        .with_padding(pad, pad, pad, pad)
        .with_groups(g);
    let d = p.dims().unwrap();
    let mut s = 1u64;
    let mut rnd = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let x: Vec<f32> = (0..d.input_len).map(|_| rnd()).collect();
    let w: Vec<f32> = (0..d.weight_len).map(|_| rnd()).collect();
    let mut y = vec![0.0; d.output_len];
    let chosen = Conv2dPlan::new(&p).unwrap();
    let plans: Vec<Conv2dPlan> = [
        Conv2dAlgo::Direct,
        Conv2dAlgo::Implicit,
        Conv2dAlgo::Im2col,
        Conv2dAlgo::Winograd,
    ]
    .into_iter()
    .filter_map(|algo| Conv2dPlan::for_algo(&p, algo).ok())
    .collect();
    let mut scratch: Vec<Vec<f32>> = plans.iter().map(|q| vec![0.0; q.scratch_len()]).collect();
    let mut times = vec![Vec::new(); plans.len()];
    for _ in 0..reps.max(1) {
        for ((q, s), t) in plans.iter().zip(&mut scratch).zip(&mut times) {
            let t0 = Instant::now();
            q.run(&x, &w, None, Activation::None, &mut y, s).unwrap();
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let med = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let meds: Vec<f64> = times.iter_mut().map(med).collect();
    let pick = plans.iter().position(|q| q.kernel() == chosen.kernel());
    let flops = 2.0 * (d.output_len * d.col_rows) as f64;
    for (q, ms) in plans.iter().zip(&meds) {
        let vs = pick.map_or(f64::NAN, |i| meds[i] / ms);
        println!(
            "{:<12} {:>9.3} ms {:>7.1} GFLOPS  {:.2}x the chosen ({:?}){}",
            format!("{:?}", q.kernel()),
            ms,
            flops / (ms * 1e-3) / 1e9,
            vs,
            chosen.kernel(),
            if q.kernel() == chosen.kernel() {
                "  <- conv2d"
            } else {
                ""
            }
        );
    }
}
