//! Winograd's rounding error against the implicit GEMM's, both measured against the f64
//! reference on uniform random data in [-1, 1): `cargo run --release --example
//! winograd_error -- N C HW K` (a 3x3 layer, padding 1). Prints the outputs' rms and each
//! algorithm's max and rms error.

use cnnkit_kernels::{self as k, Activation, Conv2dParams, reference as r};
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (n, c, hw, m) = (args[0], args[1], args[2], args[3]);
    let p = Conv2dParams::new(n, c, hw, hw, m, 3, 3).with_padding(1, 1, 1, 1);
    let d = p.dims().unwrap();
    let mut s = 7u64;
    let mut rnd = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let x: Vec<f32> = (0..d.input_len).map(|_| rnd()).collect();
    let w: Vec<f32> = (0..d.weight_len).map(|_| rnd()).collect();
    let mut want = vec![0.0; d.output_len];
    r::conv2d(&p, &x, &w, None, Activation::None, &mut want).unwrap();
    let mut y1 = vec![0.0; d.output_len];
    let mut y2 = vec![0.0; d.output_len];
    let mut s1 = vec![0.0; k::conv2d_implicit_scratch_len(&p).unwrap()];
    let mut s2 = vec![0.0; k::conv2d_winograd_scratch_len(&p).unwrap()];
    k::conv2d_implicit(&p, &x, &w, None, Activation::None, &mut y1, &mut s1).unwrap();
    k::conv2d_winograd(&p, &x, &w, None, Activation::None, &mut y2, &mut s2).unwrap();
    let stats = |y: &[f32]| {
        let (mut mx, mut ss) = (0.0f64, 0.0f64);
        for (a, b) in y.iter().zip(&want) {
            let e = (*a as f64 - *b as f64).abs();
            mx = mx.max(e);
            ss += e * e;
        }
        (mx, (ss / y.len() as f64).sqrt())
    };
    let rms_y = (want.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / want.len() as f64).sqrt();
    println!(
        "N{n} C{c} {hw}x{hw} K{m}: rms |y| {rms_y:.3}; implicit max/rms err {:?}; winograd {:?}",
        stats(&y1),
        stats(&y2)
    );
}
