//! Times `sgemm` on square matrices: `cargo run --release --example sgemm_probe -- N REPS`
//! prints min and median of REPS calls (`VARIANT=avx2` forces a variant). The
//! measurements behind the GEMM's blocking constants (`kernels/src/gemm/mod.rs`).

use cnnkit_kernels as k;
use std::time::Instant;
fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let reps: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    if let Ok(v) = std::env::var("VARIANT") {
        k::arch::force(k::arch::Isa::from_name(&v)).unwrap();
    }
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0; n * n];
    let p = k::GemmParams::new(n, n, n);
    let mut s = vec![0.0; k::sgemm_scratch_len(n, n, n)];
    let mut t = vec![];
    for _ in 0..reps {
        let t0 = Instant::now();
        k::sgemm(&p, &a, &b, &mut c, &mut s).unwrap();
        t.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{n}: min {:.1} us med {:.1} us -> {:.1} GFLOPS (med)",
        t[0],
        t[reps / 2],
        2.0 * (n * n * n) as f64 / t[reps / 2] / 1e3
    );
}
