//! The firmware's code, run on the host, agrees with `cnnkit predict` (the std layer's
//! model, `Model::predict_u8`) on every baked image: the same class, and logits within
//! `1e-4 * (1 + |logit|)`.
//!
//! The two compute differently: the firmware runs the exported network (direct
//! convolution, dot-product linear layers, batch normalisation folded, activations fused)
//! and the std layer its own layers (im2col + GEMM, blocked sums), so the logits differ by
//! f32 rounding only. That is about 1e-6 relative here; a mistake in the export (a
//! transposed weight, a missing bias, a wrong normalisation) moves them by order 1.

use std::path::Path;

use lenet5_firmware::{Buffers, NET, OUTPUT, classify, model, pixels, weights};

#[cfg(not(feature = "int8"))]
#[test]
fn firmware_logits_agree_with_cnnkit_predict() {
    let (std_model, meta) = cnnkit::checkpoint::load_model(Path::new(model::MODEL_FILE)).unwrap();
    let w = weights().unwrap();
    let blob = &w.0;
    assert_eq!((blob.mean, blob.std), (meta.pixel_mean, meta.pixel_std));
    let mut buffers = Box::new(Buffers::new());
    let mut worst = 0.0_f32;
    for i in 0..model::IMAGES {
        let fw = classify(&w, i, &mut buffers).unwrap();
        let want = std_model
            .predict_u8(&meta.norm(), pixels(i).unwrap())
            .unwrap();
        assert_eq!(want.len(), OUTPUT);
        let want = want.data();
        let best = cnnkit::loss::argmax(want);
        assert_eq!(
            fw.class, best,
            "image {i}: firmware {fw:?}, cnnkit {want:?}"
        );
        for (g, w) in fw.logits.iter().zip(want) {
            let d = (g - w).abs();
            assert!(d <= 1e-4 * (1.0 + w.abs()), "image {i}: logit {g} vs {w}");
            worst = worst.max(d / (1.0 + w.abs()));
        }
    }
    println!(
        "{} images, {} params: classes equal, largest |diff| / (1 + |logit|) = {worst:e}",
        model::IMAGES,
        NET.param_len()
    );
}

/// With `int8`: the firmware's logits are `cnnkit predict`'s on the int8 model file
/// (`Quantized::forward_u8`), exactly.
#[cfg(feature = "int8")]
#[test]
fn firmware_logits_equal_cnnkit_predict_on_the_int8_model() {
    let (q, _) = cnnkit::quant::file::load(Path::new(model::MODEL_FILE)).unwrap();
    let w = weights().unwrap();
    let mut buffers = Box::new(Buffers::new());
    for i in 0..model::IMAGES {
        let fw = classify(&w, i, &mut buffers).unwrap();
        let want = q.forward_u8(pixels(i).unwrap()).unwrap();
        assert_eq!(want.len(), OUTPUT);
        assert_eq!(fw.logits.as_slice(), want.as_slice(), "image {i}");
    }
    println!(
        "{} images: logits equal, {} layers",
        model::IMAGES,
        NET.layers().len()
    );
}

#[cfg(not(feature = "int8"))]
#[test]
fn the_blob_refuses_another_geometry() {
    use cnnkit_kernels::net::Network;
    let blob = weights().unwrap().0;
    assert!(blob.params_for(&NET).is_ok());
    let shorter = Network::new(&model::LAYERS[..model::LAYERS.len() - 1]).unwrap();
    assert!(blob.params_for(&shorter).is_err());
}
