use cnnkit::kernels::{self as k, Activation};
use std::time::Instant;
fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    for (name, p) in cnnkit::bench::conv_shapes() {
        if !name.contains(&filter) {
            continue;
        }
        let d = p.dims().unwrap();
        let x = cnnkit::bench::rand(d.input_len, 3);
        let w = cnnkit::bench::rand(d.weight_len, 4);
        let gy = cnnkit::bench::rand(d.output_len, 6);
        let mut y = vec![0.0; d.output_len];
        let (mut gx, mut gw) = (vec![0.0; d.input_len], vec![0.0; d.weight_len]);
        let n = k::conv2d_scratch_len(&p)
            .unwrap()
            .max(k::conv2d_backward_input_scratch_len(&p).unwrap())
            .max(k::conv2d_backward_weight_scratch_len(&p).unwrap());
        let mut s = vec![0.0; n];
        let mut best = [f64::MAX; 3];
        for _ in 0..15 {
            let t = Instant::now();
            k::conv2d(&p, &x, &w, None, Activation::None, &mut y, &mut s).unwrap();
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            k::conv2d_backward_input(&p, &w, &gy, &mut gx, &mut s).unwrap();
            best[1] = best[1].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            k::conv2d_backward_weight(&p, &x, &gy, &mut gw, &mut s).unwrap();
            best[2] = best[2].min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name}: fwd {:.3} bwd_in {:.3} bwd_w {:.3} ms",
            best[0] * 1e3,
            best[1] * 1e3,
            best[2] * 1e3
        );
    }
}
