use cnnkit::bench::{conv_shapes, time_ms};
use cnnkit::kernels::{self as k, Activation};
use std::time::Duration;
fn main() {
    for (name, p) in conv_shapes() {
        let d = p.dims().unwrap();
        let x = vec![0.5f32; d.input_len];
        let w = vec![0.01f32; d.weight_len];
        let b = vec![0.1f32; d.bias_len];
        let mut y = vec![0.0; d.output_len];
        let mut s = vec![0.0; k::conv2d_im2col_scratch_len(&p).unwrap()];
        let t_direct = time_ms(Duration::from_millis(300), || {
            k::conv2d_direct(&p, &x, &w, Some(&b), Activation::Relu, &mut y).unwrap()
        });
        let t_im2col = time_ms(Duration::from_millis(300), || {
            k::conv2d_im2col(&p, &x, &w, Some(&b), Activation::Relu, &mut y, &mut s).unwrap()
        });
        println!(
            "{name:<12} direct {t_direct:>8.3} ms   im2col {t_im2col:>8.3} ms   ratio {:.2}",
            t_im2col / t_direct
        );
    }
}
