//! `net`: the inference entry point. Two properties, chosen by the first byte:
//! - the weight blob parser on arbitrary bytes, aligned and not: never a panic, and what
//!   it accepts is exactly what the header says (the parameters are the bytes after it);
//! - a network of arbitrary layers (some invalid, some that do not fit together):
//!   `Network::new` refuses exactly the chains that a layer's own check or the length
//!   chain refuses, and a valid one run in an arena of exactly `arena_len` gives, bit for
//!   bit, what its kernels give called one by one into buffers of their own (each kernel
//!   is checked against the reference by its own target).

use cnnkit_kernels::Elementwise as E;
use cnnkit_kernels::net::{BLOB_HEADER_LEN, BLOB_MAGIC, BLOB_VERSION, Blob, Layer, Network};
use cnnkit_kernels::{
    self as k, Activation, Conv2dParams, KernelError, LinearParams, Pool2dParams,
};

use super::{Bytes, assert_same, for_each_isa};

/// The property of the `net` target.
pub fn net(data: &[u8]) {
    match data.split_first() {
        Some((&mode, rest)) if mode & 1 == 0 => blob(rest, usize::from(mode >> 1) % 4),
        Some((_, rest)) => network(rest),
        None => {}
    }
}

fn blob(bytes: &[u8], shift: usize) {
    // a copy `shift` bytes into a fresh buffer: aligned and misaligned starts (whether a
    // start is aligned is read from the pointer below, not assumed)
    let mut buf = vec![0_u8; bytes.len() + 4];
    buf[shift..shift + bytes.len()].copy_from_slice(bytes);
    let view = &buf[shift..shift + bytes.len()];
    let word = |i: usize| u32::from_le_bytes(view[4 + 4 * i..8 + 4 * i].try_into().unwrap());
    let well_formed = view.len() >= BLOB_HEADER_LEN
        && view[..4] == BLOB_MAGIC
        && word(0) == BLOB_VERSION
        && (view.len() - BLOB_HEADER_LEN).is_multiple_of(4)
        && (view.len() - BLOB_HEADER_LEN) / 4 == word(1) as usize;
    // (no parameters need no alignment)
    let aligned = (view.as_ptr() as usize + BLOB_HEADER_LEN).is_multiple_of(4)
        || view.len() == BLOB_HEADER_LEN;
    match Blob::parse(view) {
        Ok(b) => {
            assert!(well_formed && aligned);
            assert_eq!(b.layers, word(2));
            assert_eq!(b.fingerprint, word(3));
            assert_eq!(b.mean.to_bits(), word(4));
            assert_eq!(b.std.to_bits(), word(5));
            let bytes_back: Vec<u8> = b.params.iter().flat_map(|p| p.to_le_bytes()).collect();
            assert_eq!(bytes_back, &view[BLOB_HEADER_LEN..]);
        }
        Err(KernelError::InvalidBlob(_)) => assert!(!(well_formed && aligned)),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn act(byte: usize) -> Activation {
    match byte % 4 {
        0 => Activation::None,
        1 => Activation::Relu,
        2 => Activation::Clamp {
            min: -1.0,
            max: 0.5,
        },
        _ => Activation::Clamp {
            min: 1.0,
            max: 0.0, // crossed: invalid
        },
    }
}

/// Up to six layers from three bytes each, after the input shape.
fn network(data: &[u8]) {
    let mut b = Bytes::new(data, 4 + 3 * 6);
    let batch = b.byte(0) % 3; // 0 is invalid
    let (mut c, mut h, mut w) = (b.byte(1) % 4 + 1, b.byte(2) % 13, b.byte(3) % 13);
    let mut layers = Vec::new();
    for i in 0..b.byte(3) / 13 % 7 {
        let (kind, p1, p2) = (b.byte(4 + 3 * i), b.byte(5 + 3 * i), b.byte(6 + 3 * i));
        let layer = match kind % 8 {
            0 | 1 => Layer::Conv2d {
                params: Conv2dParams::new(batch, c, h, w, p1 % 6, p2 % 4, (p2 >> 2) % 4)
                    .with_stride((p1 >> 3) % 3, (p1 >> 5) % 3)
                    .with_padding(p2 >> 4 & 1, p2 >> 5 & 1, p2 >> 6 & 1, p2 >> 7 & 1)
                    .with_dilation(1 + (kind >> 3) % 2, 1 + (kind >> 4) % 2)
                    .with_groups(1 + (kind >> 5) % 2),
                bias: kind & 0x40 != 0,
                act: act(kind >> 6),
            },
            2 => Layer::MaxPool2d(
                Pool2dParams::new(batch, c, h, w, p1 % 4, p2 % 4).with_stride(p1 >> 2 & 3, 1),
            ),
            3 => Layer::AvgPool2d {
                params: Pool2dParams::new(batch, c, h, w, p1 % 4, p2 % 4).with_padding(
                    p2 >> 2 & 1,
                    0,
                    p2 >> 3 & 1,
                    0,
                ),
                count_include_pad: p1 & 0x80 != 0,
            },
            4 => Layer::Linear {
                // in_features off by one now and then: a chain that does not fit
                params: LinearParams::new(
                    batch,
                    (c * h * w + usize::from(p2 & 0x80 != 0)).max(usize::from(p2 & 0x40 != 0)),
                    p1 % 12,
                ),
                bias: p2 & 1 != 0,
                act: act(p2 >> 1),
            },
            5 => Layer::Act(E::Relu),
            6 => match p1 % 3 {
                0 => Layer::Act(E::Tanh),
                1 => Layer::Act(E::Sigmoid),
                _ => Layer::Act(E::LeakyRelu(if p2 == 255 {
                    f32::NAN
                } else {
                    p2 as f32 / 64.0
                })),
            },
            // any function of the descriptions (a new one is fuzzed here without an edit)
            _ => Layer::Act(E::ALL[p1 % E::ALL.len()]),
        };
        // the shape after it, if it is valid on its own
        let next = match layer {
            Layer::Conv2d { params, .. } => params
                .dims()
                .ok()
                .map(|d| (params.out_channels, d.out_h, d.out_w)),
            Layer::MaxPool2d(params) | Layer::AvgPool2d { params, .. } => {
                params.dims().ok().map(|d| (c, d.out_h, d.out_w))
            }
            Layer::Linear { params, .. } => Some((params.out_features, 1, 1)),
            _ => Some((c, h, w)),
        };
        layers.push(layer);
        match next {
            Some(s) => (c, h, w) = s,
            None => break,
        }
    }
    let net = match Network::new(&layers) {
        Ok(n) => n,
        Err(e) => {
            // refused: some layer is invalid on its own, or the chain does not fit
            assert!(!fits(&layers), "{layers:?} refused with {e:?}");
            return;
        }
    };
    assert!(fits(&layers), "{layers:?} accepted");
    let params = b.floats(net.param_len());
    let input = b.floats(net.input_len());
    for_each_isa(|isa| {
        let want = by_hand(&layers, &params, &input);
        let mut arena = vec![f32::NAN; net.arena_len()];
        let got = net.run(&params, &input, &mut arena).unwrap();
        assert_same(&format!("{} {layers:?}", isa.name()), got, &want);
    });
}

/// Whether the chain is valid: every layer on its own, a sized layer somewhere (in-place
/// activations before it run on the input it takes), each sized layer taking what the
/// one before gives, one batch.
fn fits(layers: &[Layer]) -> bool {
    let mut len = None;
    let mut batch = None;
    for l in layers {
        let (i, o, bt) = match *l {
            Layer::Conv2d { params, act, .. } => match (params.dims(), act.bounds()) {
                (Ok(d), Ok(_)) => (d.input_len, d.output_len, params.batch),
                _ => return false,
            },
            Layer::Linear { params, act, .. } => match (params.lens(), act.bounds()) {
                (Ok((i, _, o)), Ok(_)) => (i, o, params.batch),
                _ => return false,
            },
            Layer::MaxPool2d(params) | Layer::AvgPool2d { params, .. } => match params.dims() {
                Ok(d) => (d.input_len, d.output_len, params.batch),
                Err(_) => return false,
            },
            Layer::Act(E::LeakyRelu(s)) if !s.is_finite() => return false,
            _ => continue,
        };
        if len.is_some_and(|l| l != i) || batch.is_some_and(|b| b != bt) {
            return false;
        }
        (len, batch) = (Some(o), Some(bt));
    }
    len.is_some()
}

/// The layers through their kernels, one by one, each into a buffer of its own.
fn by_hand(layers: &[Layer], params: &[f32], input: &[f32]) -> Vec<f32> {
    let mut x = input.to_vec();
    let mut rest = params;
    let mut take = |n: usize| {
        let (a, b) = rest.split_at(n);
        rest = b;
        a
    };
    for l in layers {
        match *l {
            Layer::Conv2d {
                params: p,
                bias,
                act,
            } => {
                let d = p.dims().unwrap();
                let wt = take(d.weight_len);
                let bv = bias.then(|| take(d.bias_len));
                let mut y = vec![0.0; d.output_len];
                k::conv2d_direct(&p, &x, wt, bv, act, &mut y).unwrap();
                x = y;
            }
            Layer::Linear {
                params: p,
                bias,
                act,
            } => {
                let (_, lw, lo) = p.lens().unwrap();
                let wt = take(lw);
                let bv = bias.then(|| take(p.out_features));
                let mut y = vec![0.0; lo];
                k::linear_dot(&p, &x, wt, bv, act, &mut y).unwrap();
                x = y;
            }
            Layer::MaxPool2d(p) => {
                let mut y = vec![0.0; p.dims().unwrap().output_len];
                k::max_pool2d(&p, &x, &mut y, None).unwrap();
                x = y;
            }
            Layer::AvgPool2d {
                params: p,
                count_include_pad,
            } => {
                let mut y = vec![0.0; p.dims().unwrap().output_len];
                k::avg_pool2d(&p, count_include_pad, &x, &mut y).unwrap();
                x = y;
            }
            // (each function's kernel is checked against its reference in `elementwise`)
            Layer::Act(e) => e.forward_inplace(&mut x).unwrap(),
            // (the generator builds no blocks: `kernels/tests/net.rs` checks them against
            // the kernels by hand)
            Layer::Push | Layer::Load { .. } | Layer::AddPop | Layer::CatPop | Layer::Drop => {
                unreachable!("no block operations in a generated chain")
            }
        }
    }
    x
}
