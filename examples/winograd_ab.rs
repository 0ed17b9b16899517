//! Times the implicit GEMM and Winograd's algorithm on one 3x3 layer (padding 1),
//! alternating, and prints min and median of each and the ratio of medians: `cargo run
//! --release --example winograd_ab -- N C HW K REPS` (`VARIANT=avx2` forces a variant).
//! The measurements behind `conv2d`'s choice (the cost model `winograd_pays` in `kernels/src/conv/plan.rs` is fitted to them).

use cnnkit_kernels::{self as k, Activation, Conv2dParams};
use std::time::Instant;
fn main() {
    if let Ok(v) = std::env::var("VARIANT") {
        k::arch::force(k::arch::Isa::from_name(&v)).unwrap();
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (n, c, hw, m, reps) = (args[0], args[1], args[2], args[3], args[4]);
    let p = Conv2dParams::new(n, c, hw, hw, m, 3, 3).with_padding(1, 1, 1, 1);
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
    let b: Vec<f32> = (0..d.bias_len).map(|_| rnd()).collect();
    let mut y1 = vec![0.0; d.output_len];
    let mut y2 = vec![0.0; d.output_len];
    let mut s1 = vec![0.0; k::conv2d_implicit_scratch_len(&p).unwrap()];
    let mut s2 = vec![0.0; k::conv2d_winograd_scratch_len(&p).unwrap()];
    let (mut t1, mut t2) = (vec![], vec![]);
    for _ in 0..reps {
        let t = Instant::now();
        k::conv2d_implicit(&p, &x, &w, Some(&b), Activation::None, &mut y1, &mut s1).unwrap();
        t1.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        k::conv2d_winograd(&p, &x, &w, Some(&b), Activation::None, &mut y2, &mut s2).unwrap();
        t2.push(t.elapsed().as_secs_f64() * 1e3);
    }
    t1.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t2.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let md = y1
        .iter()
        .zip(&y2)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let mx = y1.iter().map(|a| a.abs()).fold(0.0f32, f32::max);
    println!(
        "{:?} implicit min {:.3} med {:.3}  winograd min {:.3} med {:.3}  ratio(med) {:.2}  maxdiff {md:e} (max |y| {mx})",
        k::arch::active(),
        t1[0],
        t1[reps / 2],
        t2[0],
        t2[reps / 2],
        t1[reps / 2] / t2[reps / 2]
    );
}
