//! LeNet-5's forward pass on one random 28x28 image, layer by layer through the kernels,
//! each layer checked against the scalar reference. Shows the API: geometry structs,
//! caller-owned scratch, fused bias + ReLU.
//!
//! Run: `cargo run --release --example lenet_forward`

use cnnkit::kernels::{
    self as k, Activation, Conv2dParams, LinearParams, Pool2dParams, reference as r,
};

fn rand(n: usize, seed: &mut u32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 17;
            *seed ^= *seed << 5;
            (*seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn main() -> Result<(), k::KernelError> {
    let mut seed = 42;
    let image = rand(28 * 28, &mut seed);

    let c1 = Conv2dParams::new(1, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2);
    let p1 = Pool2dParams::new(1, 6, 28, 28, 2, 2);
    let c2 = Conv2dParams::new(1, 6, 14, 14, 16, 5, 5);
    let p2 = Pool2dParams::new(1, 16, 10, 10, 2, 2);
    let fcs = [
        LinearParams::new(1, 400, 120),
        LinearParams::new(1, 120, 84),
        LinearParams::new(1, 84, 10),
    ];

    let scratch_len = [
        k::conv2d_scratch_len(&c1)?,
        k::conv2d_scratch_len(&c2)?,
        k::linear_scratch_len(&fcs[0])?,
        k::linear_scratch_len(&fcs[1])?,
        k::linear_scratch_len(&fcs[2])?,
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let mut scratch = vec![0.0; scratch_len];
    println!(
        "scratch: {scratch_len} floats; conv1 uses {:?}, conv2 uses {:?}",
        k::conv2d_algo(&c1)?,
        k::conv2d_algo(&c2)?
    );

    let (w1, b1) = (rand(c1.dims()?.weight_len, &mut seed), rand(6, &mut seed));
    let mut a1 = vec![0.0; c1.dims()?.output_len];
    k::conv2d(
        &c1,
        &image,
        &w1,
        Some(&b1),
        Activation::Relu,
        &mut a1,
        &mut scratch,
    )?;
    let mut want = vec![0.0; a1.len()];
    r::conv2d(&c1, &image, &w1, Some(&b1), Activation::Relu, &mut want)?;
    println!(
        "conv1 + relu  {:>5} outputs, max |diff| vs reference {:e}",
        a1.len(),
        max_diff(&a1, &want)
    );

    let mut m1 = vec![0.0; p1.dims()?.output_len];
    k::max_pool2d(&p1, &a1, &mut m1, None)?;

    let (w2, b2) = (rand(c2.dims()?.weight_len, &mut seed), rand(16, &mut seed));
    let mut a2 = vec![0.0; c2.dims()?.output_len];
    k::conv2d(
        &c2,
        &m1,
        &w2,
        Some(&b2),
        Activation::Relu,
        &mut a2,
        &mut scratch,
    )?;
    let mut want = vec![0.0; a2.len()];
    r::conv2d(&c2, &m1, &w2, Some(&b2), Activation::Relu, &mut want)?;
    println!(
        "conv2 + relu  {:>5} outputs, max |diff| vs reference {:e}",
        a2.len(),
        max_diff(&a2, &want)
    );

    let mut x = vec![0.0; p2.dims()?.output_len];
    k::max_pool2d(&p2, &a2, &mut x, None)?;

    for (i, fc) in fcs.iter().enumerate() {
        let w = rand(fc.in_features * fc.out_features, &mut seed);
        let b = rand(fc.out_features, &mut seed);
        let act = if i < 2 {
            Activation::Relu
        } else {
            Activation::None
        };
        let mut y = vec![0.0; fc.out_features];
        k::linear(fc, &x, &w, Some(&b), act, &mut y, &mut scratch)?;
        let mut want = vec![0.0; y.len()];
        r::linear(fc, &x, &w, Some(&b), act, &mut want)?;
        println!(
            "linear {:>3}->{:<3} max |diff| vs reference {:e}",
            fc.in_features,
            fc.out_features,
            max_diff(&y, &want)
        );
        x = y;
    }
    let mut probs = vec![0.0; 10];
    k::softmax(1, 10, &x, &mut probs)?;
    let best = probs
        .iter()
        .enumerate()
        .fold((0, 0.0), |b, (i, &p)| if p > b.1 { (i, p) } else { b });
    println!(
        "class {} with probability {:.3} (random weights)",
        best.0, best.1
    );
    Ok(())
}
