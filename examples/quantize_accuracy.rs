//! Test accuracy of a trained checkpoint in f32 and after post-training int8 quantisation
//! (`cnnkit::quant`), calibrated on the first N training images:
//!
//! ```sh
//! cargo run --release -- train --save /tmp/lenet.safetensors
//! cargo run --release --example quantize_accuracy -- /tmp/lenet.safetensors 1000
//! ```
//!
//! Arguments: the checkpoint, the calibration images (default 1000), the IDX directory
//! (default `/usr/share/datasets/fashion-mnist`).

use std::path::Path;
use std::process::ExitCode;

use cnnkit::quant::Quantized;
use cnnkit::{Dataset, Normalize, checkpoint, evaluate};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> cnnkit::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        return Err(cnnkit::Error::Invalid(String::from(
            "usage: quantize_accuracy CHECKPOINT [CALIBRATION_IMAGES] [IDX_DIR]",
        )));
    };
    let calib: usize = match args.get(1) {
        Some(n) => n
            .parse()
            .map_err(|_| cnnkit::Error::Invalid(format!("'{n}': not a count of images")))?,
        None => 1000,
    };
    let dir = args
        .get(2)
        .map_or("/usr/share/datasets/fashion-mnist", String::as_str);
    let (model, meta) = checkpoint::load_model(Path::new(file))?;
    let norm = Normalize {
        mean: meta.pixel_mean,
        std: meta.pixel_std,
    };
    let data = Dataset::load(Path::new(dir))?;
    let (f32_acc, _) = evaluate(&model, &data.test, &norm, 2)?;
    let f32_acc = 100.0 * f32_acc;

    let per = data.train.rows * data.train.cols;
    let n = calib.clamp(1, data.train.len());
    let table = norm.table();
    let mut x = vec![0.0f32; n * per];
    cnnkit::data::normalize_into(&table, &data.train.images[..n * per], &mut x);
    let t = std::time::Instant::now();
    let q = Quantized::new(&model, norm, &x)?;
    let quantize_ms = t.elapsed().as_secs_f64() * 1e3;

    let test = &data.test;
    let (mut right, chunk) = (0usize, 500);
    let t = std::time::Instant::now();
    for (imgs, labels) in test
        .images
        .chunks(chunk * per)
        .zip(test.labels.chunks(chunk))
    {
        let mut xt = vec![0.0f32; imgs.len()];
        cnnkit::data::normalize_into(&table, imgs, &mut xt);
        let logits = q.forward(&xt)?;
        let classes = logits.len() / labels.len();
        for (row, &l) in logits.chunks_exact(classes).zip(labels) {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            right += usize::from(best == usize::from(l));
        }
    }
    let int8_ms = t.elapsed().as_secs_f64() * 1e3;
    let int8_acc = 100.0 * right as f64 / test.len() as f64;
    let weights: usize = q
        .layers
        .iter()
        .map(|l| match l {
            cnnkit::quant::QuantLayer::Conv2d { weight, bias, .. }
            | cnnkit::quant::QuantLayer::Linear { weight, bias, .. } => {
                weight.len() + 4 * bias.len()
            }
            _ => 0,
        })
        .sum();
    println!(
        "{file}: f32 test accuracy {f32_acc:.2}%, int8 {int8_acc:.2}% ({:+.2} points); \
         calibrated on {n} training images in {quantize_ms:.0} ms; int8 weights and biases \
         {weights} bytes; {} test images in {int8_ms:.0} ms (one thread)",
        int8_acc - f32_acc,
        test.len()
    );
    Ok(())
}
