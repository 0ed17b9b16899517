//! `cnnkit::export`: the exported network computes what the model computes (batch
//! normalisation folded, activations fused, flatten and dropout gone), the blob holds the
//! parameters in state_dict order, and what cannot be exported is refused.

use cnnkit::export::Export;
use cnnkit::kernels::Activation;
use cnnkit::kernels::net::{Blob, Layer as NetLayer};
use cnnkit::{Layer, Model, Normalize, Shape, Tensor};

const NORM: Normalize = Normalize {
    mean: 0.25,
    std: 0.5,
};

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1 << 23) as f32 - 1.0
        })
        .collect()
}

/// Gives every batch normalisation non-trivial running statistics and affine parameters.
fn perturb_batchnorm(m: &mut Model) {
    for (i, l) in m.layers_mut().iter_mut().enumerate() {
        if let Layer::BatchNorm2d(bn) = l {
            let c = bn.channels();
            let v = values(4 * c, i as u32 + 1);
            bn.weight.data_mut().copy_from_slice(&v[..c]);
            bn.bias.data_mut().copy_from_slice(&v[c..2 * c]);
            bn.running_mean.data_mut().copy_from_slice(&v[2 * c..3 * c]);
            for (r, x) in bn.running_var.data_mut().iter_mut().zip(&v[3 * c..]) {
                *r = 0.5 + x.abs();
            }
        }
    }
}

/// The model's evaluation forward pass and the exported network's, on the same inputs.
fn both(spec: &str, input: Shape, batch: usize) -> (Vec<f32>, Vec<f32>, Export) {
    let mut m = Model::from_spec(spec, input, 5).unwrap();
    perturb_batchnorm(&mut m);
    let x = values(batch * input.len(), 9);
    let want = m
        .forward(&Tensor::from_vec(input.batched(batch), x.clone()).unwrap())
        .unwrap();
    let e = Export::new(&m, NORM, batch).unwrap();
    let net = e.network().unwrap();
    let mut arena = vec![0.0; net.arena_len()];
    let got = net.run(&e.params, &x, &mut arena).unwrap().to_vec();
    (got, want.data().to_vec(), e)
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "[{i}] {g} vs {w}");
    }
}

#[test]
fn lenet5_exports_to_seven_fused_layers() {
    let img = Shape::Image { c: 1, h: 28, w: 28 };
    let (got, want, e) = both("lenet5", img, 1);
    assert_close(&got, &want);
    assert_eq!(e.layers.len(), 7);
    assert!(matches!(
        e.layers[0],
        NetLayer::Conv2d {
            act: Activation::Relu,
            ..
        }
    ));
    assert!(matches!(
        e.layers[6],
        NetLayer::Linear {
            act: Activation::None,
            ..
        }
    ));
    // the parameters are the state_dict's tensors in order, concatenated
    let m = Model::from_spec("lenet5", img, 5).unwrap();
    let flat: Vec<f32> = m
        .state_dict()
        .iter()
        .flat_map(|(_, t)| t.data().to_vec())
        .collect();
    assert_eq!(Export::new(&m, NORM, 1).unwrap().params, flat);
}

#[test]
fn batchnorm_folds_and_other_layers_map() {
    let img = Shape::Image { c: 2, h: 12, w: 12 };
    for spec in [
        "fmnist",
        "conv(4,3,pad=1) batchnorm relu avgpool(2) conv(3,3) tanh maxpool(2,stride=1) flatten \
         dropout linear(7) sigmoid linear(5) leakyrelu(0.2) linear(3)",
        "conv(4,3,stride=2,pad=1) relu relu flatten linear(4)",
    ] {
        let input = if spec == "fmnist" {
            Shape::Image { c: 1, h: 28, w: 28 }
        } else {
            img
        };
        for batch in [1, 3] {
            let (got, want, _) = both(spec, input, batch);
            assert_close(&got, &want);
        }
    }
}

/// Graphs export as block operations around their branches (the input kept, each
/// branch, the results added or concatenated): ResNet-8, the MobileNetV2-style preset,
/// nested blocks, concatenations with the identity and three branches, batches of 1 and
/// 3; the arena holds the kept values beside the two working buffers.
#[test]
fn graphs_export_as_block_operations() {
    use cnnkit_kernels::net::Layer as NetLayer;
    let img = Shape::Image { c: 2, h: 10, w: 10 };
    for (spec, input) in [
        ("resnet8", Shape::Image { c: 1, h: 28, w: 28 }),
        ("mobilenet", Shape::Image { c: 1, h: 28, w: 28 }),
        (
            "conv(4,3,pad=1) res[res[conv(4,3,pad=1) relu] conv(4,1)] relu gap flatten linear(3)",
            img,
        ),
        (
            "conv(4,1) cat[conv(2,3,pad=1) tanh | | conv(3,1) sigmoid] maxpool(2) flatten linear(3)",
            img,
        ),
        (
            "res[conv(2,3,pad=1) batchnorm relu | conv(2,1) | conv(2,1,groups=2)] flatten linear(3)",
            img,
        ),
        // blocks at the start of a later branch
        (
            "cat[conv(3,1) | res[conv(2,3,pad=1) relu] relu | cat[| conv(1,1)]] flatten linear(3)",
            img,
        ),
    ] {
        for batch in [1, 3] {
            let (got, want, e) = both(spec, input, batch);
            assert_close(&got, &want);
            let count = |f: fn(&NetLayer) -> bool| e.layers.iter().filter(|l| f(l)).count();
            let pushes = count(|l| matches!(l, NetLayer::Push));
            let pops = count(|l| matches!(l, NetLayer::AddPop | NetLayer::CatPop | NetLayer::Drop));
            // every value kept is taken back once
            assert!(pushes > 0 && pushes == pops, "{spec}");
        }
    }
    // ResNet-8 on one 28 x 28 image: the parameters, and an arena of the kept block input
    // (16 x 28 x 28) beside two working buffers
    let (_, _, e) = both("resnet8", Shape::Image { c: 1, h: 28, w: 28 }, 1);
    let net = e.network().unwrap();
    assert_eq!(
        net.param_len(),
        77_898 - 2 * (16 + 16 + 16 + 32 + 32 + 64 + 64)
    );
    assert!(net.arena_len() <= 4 * 16 * 28 * 28, "{}", net.arena_len());
    assert!(e.rust_source().unwrap().contains("Layer::AddPop"));
}

#[test]
fn what_cannot_be_folded_is_refused() {
    let img = Shape::Image { c: 1, h: 8, w: 8 };
    for spec in [
        "conv(4,3) relu batchnorm flatten linear(2)",
        "batchnorm conv(4,3) flatten linear(2)",
        "conv(4,3) maxpool(2) batchnorm flatten linear(2)",
    ] {
        let m = Model::from_spec(spec, img, 1).unwrap();
        let err = Export::new(&m, NORM, 1).unwrap_err().to_string();
        assert!(
            err.contains("batchnorm") && err.contains("folded"),
            "{spec}: {err}"
        );
    }
    // (an activation first runs in place on the input: the layer after it sizes it)
    let (got, want, _) = both("relu conv(2,3) flatten linear(2)", img, 2);
    assert_close(&got, &want);
    let m = Model::from_spec("lenet5", Shape::Image { c: 1, h: 28, w: 28 }, 1).unwrap();
    assert!(Export::new(&m, NORM, 0).is_err());
    // the fields are public: an edited export is checked again, not trusted
    let mut e = Export::new(&m, NORM, 1).unwrap();
    e.params.pop();
    assert!(e.blob().unwrap_err().to_string().contains("parameters"));
    assert!(e.rust_source().is_ok());
    e.layers.remove(1); // conv1's 6x28x28 output into conv2, which takes 6x14x14
    assert!(e.blob().is_err() && e.rust_source().is_err());
}

#[test]
fn blob_and_source_describe_the_network() {
    let m = Model::from_spec("lenet5", Shape::Image { c: 1, h: 28, w: 28 }, 3).unwrap();
    let e = Export::new(&m, NORM, 1).unwrap();
    let net = e.network().unwrap();
    let bytes = e.blob().unwrap();
    // an aligned copy, as a firmware's flash image would be
    let mut words = vec![0_u32; bytes.len() / 4];
    for (w, b) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_ne_bytes(b.try_into().unwrap());
    }
    let aligned: &[u8] = unsafe {
        // SAFETY: reading the initialised u32s as bytes, same length and lifetime
        std::slice::from_raw_parts(words.as_ptr().cast(), bytes.len())
    };
    assert_eq!(aligned, &bytes[..]);
    let blob = Blob::parse(aligned).unwrap();
    assert_eq!(blob.params_for(&net).unwrap(), &e.params[..]);
    assert_eq!((blob.mean, blob.std), (NORM.mean, NORM.std));
    let src = e.rust_source().unwrap();
    for needle in [
        "pub const LAYERS: [Layer; 7]",
        "Conv2dParams::new(1, 1, 28, 28, 6, 5, 5)",
        "with_padding(2, 2, 2, 2)",
        "act: Activation::Relu",
        "LinearParams::new(1, 84, 10), bias: true, act: Activation::None",
        &format!("pub const PARAMS: usize = {};", net.param_len()),
        &format!("pub const ARENA: usize = {};", net.arena_len()),
        &format!("pub const FINGERPRINT: u32 = {:#010x};", net.fingerprint()),
    ] {
        assert!(src.contains(needle), "{needle} not in\n{src}");
    }
}
