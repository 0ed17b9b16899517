use cnnkit::kernels::{self as k, GemmParams, arch};
use std::time::Instant;
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (m, n, kk) = (args[0], args[1], args[2]);
    let reps = args.get(3).copied().unwrap_or(9);
    let a: Vec<f32> = (0..m * kk).map(|i| (i % 13) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..kk * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut c = vec![0.0; m * n];
    let mut s = vec![0.0; k::sgemm_scratch_len(m, n, kk)];
    let p = GemmParams::new(m, n, kk);
    for isa in arch::supported() {
        arch::force(Some(isa)).unwrap();
        let mut t = vec![];
        for _ in 0..reps {
            let st = Instant::now();
            k::sgemm(&p, &a, &b, &mut c, &mut s).unwrap();
            t.push(st.elapsed().as_secs_f64());
        }
        t.sort_by(|x, y| x.partial_cmp(y).unwrap());
        let med = t[reps / 2];
        println!(
            "{} {}x{}x{}: {:.3} ms  {:.1} GFLOPS",
            isa.name(),
            m,
            n,
            kk,
            med * 1e3,
            2.0 * (m * n * kk) as f64 / med / 1e9
        );
    }
    let mut t = vec![];
    for _ in 0..reps {
        let st = Instant::now();
        unsafe {
            matrixmultiply::sgemm(
                m,
                kk,
                n,
                1.0,
                a.as_ptr(),
                kk as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        };
        t.push(st.elapsed().as_secs_f64());
    }
    t.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let med = t[reps / 2];
    println!(
        "matrixmultiply: {:.3} ms  {:.1} GFLOPS",
        med * 1e3,
        2.0 * (m * n * kk) as f64 / med / 1e9
    );
}
