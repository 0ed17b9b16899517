//! `linear_dot` against the reference; `net::Network` against the same kernels called by
//! hand (bit for bit: the network only adds the plumbing), its sizes, its errors, and
//! the weight `Blob`.

mod common;

use cnnkit_kernels::Elementwise as E;
use cnnkit_kernels::net::{self, BLOB_HEADER_LEN, Blob, Layer, Network};
use cnnkit_kernels::{
    self as k, Activation, Conv2dParams, KernelError, LinearParams, Pool2dParams, reference as r,
};
use common::{Rng, abs, assert_sum_close, check, range};
use quickcheck::{Arbitrary, Gen};

#[test]
fn linear_dot_matches_reference_on_every_variant() {
    fn prop(seed: u64, b: u8, i: u16, o: u8, relu: bool, bias: bool) -> bool {
        let p = LinearParams::new(
            b as usize % 4 + 1,
            i as usize % 300 + 1,
            o as usize % 40 + 1,
        );
        let (li, lw, lo) = p.lens().unwrap();
        let mut rng = Rng(seed);
        let (x, w, bv) = (rng.vec(li), rng.vec(lw), rng.vec(p.out_features));
        let act = if relu {
            Activation::Relu
        } else {
            Activation::None
        };
        let bo = bias.then_some(&bv[..]);
        let mut want = vec![0.0; lo];
        r::linear(&p, &x, &w, bo, act, &mut want).unwrap();
        let ab = abs(&bv);
        let mut mag = vec![0.0; lo];
        r::linear(
            &p,
            &abs(&x),
            &abs(&w),
            bias.then_some(&ab[..]),
            Activation::None,
            &mut mag,
        )
        .unwrap();
        let mut first: Option<Vec<f32>> = None;
        common::for_each_isa(|isa| {
            let mut got = vec![f32::NAN; lo];
            k::linear_dot(&p, &x, &w, bo, act, &mut got).unwrap();
            assert_sum_close(&format!("linear_dot {isa:?}"), &got, &want, &mag, li + 1);
            // one row's result does not depend on the others
            if p.batch > 1 {
                let one = LinearParams::new(1, p.in_features, p.out_features);
                let mut row = vec![0.0; p.out_features];
                k::linear_dot(&one, &x[..p.in_features], &w, bo, act, &mut row).unwrap();
                assert_eq!(row, got[..p.out_features], "row 0 alone");
            }
            first.get_or_insert(got);
        });
        true
    }
    check(300, prop as fn(u64, u8, u16, u8, bool, bool) -> bool);
}

#[test]
fn linear_dot_propagates_nan_and_infinity() {
    let p = LinearParams::new(1, 9, 2);
    let mut x = [1.0; 9];
    x[8] = f32::NAN;
    let w = [1.0; 18];
    let mut y = [0.0; 2];
    k::linear_dot(&p, &x, &w, None, Activation::Relu, &mut y).unwrap();
    assert!(y.iter().all(|v| v.is_nan()));
    x[8] = f32::INFINITY;
    k::linear_dot(
        &p,
        &x,
        &w,
        Some(&[0.0, f32::NEG_INFINITY]),
        Activation::None,
        &mut y,
    )
    .unwrap();
    assert_eq!(y[0], f32::INFINITY);
    assert!(y[1].is_nan()); // inf - inf
}

#[test]
fn linear_dot_rejects_bad_arguments() {
    let p = LinearParams::new(1, 3, 2);
    let (x, w, mut y) = ([0.0; 3], [0.0; 6], [0.0; 2]);
    let len = |arg| move |e: KernelError| matches!(e, KernelError::LengthMismatch { arg: a, .. } if a == arg);
    assert!(
        k::linear_dot(&p, &x[..2], &w, None, Activation::None, &mut y).is_err_and(len("input"))
    );
    assert!(
        k::linear_dot(&p, &x, &w[..5], None, Activation::None, &mut y).is_err_and(len("weight"))
    );
    assert!(
        k::linear_dot(&p, &x, &w, Some(&[0.0]), Activation::None, &mut y).is_err_and(len("bias"))
    );
    assert!(
        k::linear_dot(&p, &x, &w, None, Activation::None, &mut y[..1]).is_err_and(len("output"))
    );
    let nan = Activation::Clamp {
        min: f32::NAN,
        max: 1.0,
    };
    assert!(matches!(
        k::linear_dot(&p, &x, &w, None, nan, &mut y),
        Err(KernelError::InvalidParameter(_))
    ));
    assert_eq!(
        k::linear_dot(
            &LinearParams::new(0, 3, 2),
            &[],
            &w,
            None,
            Activation::None,
            &mut []
        ),
        Err(KernelError::ZeroSize("batch"))
    );
}

/// LeNet-5 at batch 1, activations fused.
const LENET: [Layer; 7] = [
    Layer::Conv2d {
        params: Conv2dParams::new(1, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2),
        bias: true,
        act: Activation::Relu,
    },
    Layer::MaxPool2d(Pool2dParams::new(1, 6, 28, 28, 2, 2)),
    Layer::Conv2d {
        params: Conv2dParams::new(1, 6, 14, 14, 16, 5, 5),
        bias: true,
        act: Activation::Relu,
    },
    Layer::MaxPool2d(Pool2dParams::new(1, 16, 10, 10, 2, 2)),
    Layer::Linear {
        params: LinearParams::new(1, 400, 120),
        bias: true,
        act: Activation::Relu,
    },
    Layer::Linear {
        params: LinearParams::new(1, 120, 84),
        bias: true,
        act: Activation::Relu,
    },
    Layer::Linear {
        params: LinearParams::new(1, 84, 10),
        bias: true,
        act: Activation::None,
    },
];

const LENET_NET: Network = match Network::new(&LENET) {
    Ok(n) => n,
    Err(_) => panic!("LeNet-5 does not fit together"),
};

// sized at compile time
static LENET_ARENA: [f32; LENET_NET.arena_len()] = [0.0; LENET_NET.arena_len()];

#[test]
fn lenet_sizes() {
    assert_eq!(LENET_NET.input_len(), 784);
    assert_eq!(LENET_NET.output_len(), 10);
    // 150+6, 2400+16, 48000+120, 10080+84, 840+10: PyTorch's count for LeNet-5
    assert_eq!(LENET_NET.param_len(), 61_706);
    // the largest adjacent pair: conv1's output (6x28x28) and pool1's (6x14x14)
    assert_eq!(LENET_NET.arena_len(), 4704 + 1176);
    assert_eq!(LENET_ARENA.len(), 4704 + 1176);
}

/// The layers a random case builds: `(layers, input_len)`.
#[derive(Clone, Debug)]
struct Chain(Vec<Layer>);

fn act(g: &mut Gen) -> Activation {
    match range(g, 0, 2) {
        0 => Activation::None,
        1 => Activation::Relu,
        _ => Activation::Clamp {
            min: -0.5,
            max: 0.75,
        },
    }
}

impl Arbitrary for Chain {
    /// A random image network: convolutions, pools and activations, then linear layers.
    fn arbitrary(g: &mut Gen) -> Self {
        let batch = range(g, 1, 2);
        let (mut c, mut h, mut w) = (range(g, 1, 4), range(g, 3, 12), range(g, 3, 12));
        let mut layers = Vec::new();
        for _ in 0..range(g, 0, 4) {
            match range(g, 0, 6) {
                0..=2 => {
                    let (kh, kw) = (range(g, 1, 3.min(h)), range(g, 1, 3.min(w)));
                    let out = range(g, 1, 9);
                    let pad = range(g, 0, 1);
                    let stride = range(g, 1, 2);
                    let p = Conv2dParams::new(batch, c, h, w, out, kh, kw)
                        .with_padding(pad, pad, pad, pad)
                        .with_stride(stride, stride);
                    let d = p.dims().unwrap();
                    layers.push(Layer::Conv2d {
                        params: p,
                        bias: common::coin(g),
                        act: act(g),
                    });
                    (c, h, w) = (out, d.out_h, d.out_w);
                }
                3 | 4 if h >= 2 && w >= 2 => {
                    let p = Pool2dParams::new(batch, c, h, w, 2, 2);
                    let d = p.dims().unwrap();
                    layers.push(if common::coin(g) {
                        Layer::MaxPool2d(p)
                    } else {
                        Layer::AvgPool2d {
                            params: p.with_padding(1, 0, 1, 0),
                            count_include_pad: common::coin(g),
                        }
                    });
                    let d2 = match layers.last() {
                        Some(Layer::AvgPool2d { params, .. }) => params.dims().unwrap(),
                        _ => d,
                    };
                    (h, w) = (d2.out_h, d2.out_w);
                }
                // any function of the descriptions
                _ => layers.push(Layer::Act(match E::ALL[range(g, 0, E::ALL.len() - 1)] {
                    E::LeakyRelu(_) => E::LeakyRelu(0.125),
                    e => e,
                })),
            }
        }
        let mut f = c * h * w;
        for _ in 0..range(g, usize::from(layers.is_empty()), 3) {
            let out = range(g, 1, 20);
            layers.push(Layer::Linear {
                params: LinearParams::new(batch, f, out),
                bias: common::coin(g),
                act: act(g),
            });
            f = out;
        }
        // an activation first has no size of its own: drop the leading ones
        let is_act = |l: &Layer| matches!(l, Layer::Act(_));
        let lead = layers.iter().take_while(|l| is_act(l)).count();
        layers.drain(..lead);
        if layers.is_empty() {
            layers.push(Layer::Linear {
                params: LinearParams::new(batch, c * h * w, 3),
                bias: true,
                act: Activation::None,
            });
        }
        Chain(layers)
    }
}

/// The same layers through the kernels called one by one, each into a fresh buffer.
fn by_hand(layers: &[Layer], params: &[f32], input: &[f32]) -> Vec<f32> {
    let mut x = input.to_vec();
    let mut params = params;
    let mut kept: Vec<Vec<f32>> = Vec::new();
    let batch = layers
        .iter()
        .find_map(|l| match *l {
            Layer::Conv2d { params: p, .. } => Some(p.batch),
            Layer::Linear { params: p, .. } => Some(p.batch),
            Layer::MaxPool2d(p) | Layer::AvgPool2d { params: p, .. } => Some(p.batch),
            _ => None,
        })
        .unwrap_or(1);
    for l in layers {
        let take = |n: usize, params: &mut &[f32]| {
            let (a, b) = params.split_at(n);
            *params = b;
            a.to_vec()
        };
        x = match *l {
            Layer::Conv2d {
                params: p,
                bias,
                act,
            } => {
                let d = p.dims().unwrap();
                let wt = take(d.weight_len, &mut params);
                let b = bias.then(|| take(d.bias_len, &mut params));
                let mut y = vec![0.0; d.output_len];
                k::conv2d_direct(&p, &x, &wt, b.as_deref(), act, &mut y).unwrap();
                y
            }
            Layer::Linear {
                params: p,
                bias,
                act,
            } => {
                let (_, lw, lo) = p.lens().unwrap();
                let wt = take(lw, &mut params);
                let b = bias.then(|| take(p.out_features, &mut params));
                let mut y = vec![0.0; lo];
                k::linear_dot(&p, &x, &wt, b.as_deref(), act, &mut y).unwrap();
                y
            }
            Layer::MaxPool2d(p) => {
                let mut y = vec![0.0; p.dims().unwrap().output_len];
                k::max_pool2d(&p, &x, &mut y, None).unwrap();
                y
            }
            Layer::AvgPool2d {
                params: p,
                count_include_pad,
            } => {
                let mut y = vec![0.0; p.dims().unwrap().output_len];
                k::avg_pool2d(&p, count_include_pad, &x, &mut y).unwrap();
                y
            }
            // (each function's kernel is checked against its reference in `elementwise`)
            Layer::Act(e) => {
                e.forward_inplace(&mut x).unwrap();
                x
            }
            Layer::Push => {
                kept.push(x.clone());
                x
            }
            Layer::Load { depth } => kept[kept.len() - 1 - depth as usize].clone(),
            Layer::AddPop => {
                let k = kept.pop().unwrap();
                x.iter().zip(&k).map(|(a, b)| a + b).collect()
            }
            Layer::CatPop => {
                let k = kept.pop().unwrap();
                let (kp, cp) = (k.len() / batch, x.len() / batch);
                (0..batch)
                    .flat_map(|s| {
                        k[s * kp..(s + 1) * kp]
                            .iter()
                            .chain(&x[s * cp..(s + 1) * cp])
                            .copied()
                    })
                    .collect()
            }
            Layer::Drop => {
                kept.pop().unwrap();
                x
            }
        };
    }
    assert!(kept.is_empty(), "values kept at the end");
    assert!(params.is_empty(), "parameters left over");
    x
}

fn same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: {g} != {w}"
        );
    }
}

#[test]
fn network_equals_its_kernels_called_by_hand() {
    fn prop(chain: Chain, seed: u64, spare: u8) -> bool {
        let net = Network::new(&chain.0).unwrap();
        let mut rng = Rng(seed);
        let params = rng.vec(net.param_len());
        let input = rng.vec(net.input_len());
        // (under each variant in turn: the lock keeps other tests from switching it)
        common::for_each_isa(|isa| {
            let want = by_hand(&chain.0, &params, &input);
            // an arena of exactly arena_len, and a larger one, both full of NaN beforehand
            for extra in [0, usize::from(spare)] {
                let mut arena = vec![f32::NAN; net.arena_len() + extra];
                let got = net.run(&params, &input, &mut arena).unwrap();
                same_bits(&format!("{isa:?} {chain:?} (+{extra})"), got, &want);
            }
            // the input written in place first gives the same
            let mut arena = vec![f32::NAN; net.arena_len()];
            net.input_mut(&mut arena).unwrap().copy_from_slice(&input);
            let got = net.run_in_arena(&params, &mut arena).unwrap();
            same_bits(&format!("{isa:?} {chain:?} in place"), got, &want);
        });
        // the arena is the only memory: the largest pair really is needed by some layer
        let mut short = vec![0.0; net.arena_len() - 1];
        assert_eq!(
            net.run(&params, &input, &mut short),
            Err(KernelError::ScratchTooSmall {
                needed: net.arena_len(),
                actual: net.arena_len() - 1
            })
        );
        true
    }
    check(300, prop as fn(Chain, u64, u8) -> bool);
}

#[test]
fn lenet_through_the_network_matches_the_reference() {
    let mut rng = Rng(7);
    let params = rng.vec(LENET_NET.param_len());
    let input = rng.vec(784);
    // the reference, layer by layer (f64 sums); magnitudes give the bound of the last layer
    let want = by_reference(&params, &input);
    common::for_each_isa(|isa| {
        let mut arena = [0.0; LENET_NET.arena_len()];
        let got = LENET_NET.run(&params, &input, &mut arena).unwrap();
        for (g, w) in got.iter().zip(&want) {
            // five layers of f32 rounding on values of order 1: far below 1e-4
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{isa:?}: {g} vs {w}"
            );
        }
    });
}

fn by_reference(params: &[f32], input: &[f32]) -> Vec<f32> {
    let mut x = input.to_vec();
    let mut off = 0;
    for l in &LENET {
        let mut next = |n: usize| {
            off += n;
            params[off - n..off].to_vec()
        };
        x = match *l {
            Layer::Conv2d { params: p, act, .. } => {
                let d = p.dims().unwrap();
                let (w, b) = (next(d.weight_len), next(d.bias_len));
                let mut y = vec![0.0; d.output_len];
                r::conv2d(&p, &x, &w, Some(&b), act, &mut y).unwrap();
                y
            }
            Layer::Linear { params: p, act, .. } => {
                let (_, lw, lo) = p.lens().unwrap();
                let (w, b) = (next(lw), next(p.out_features));
                let mut y = vec![0.0; lo];
                r::linear(&p, &x, &w, Some(&b), act, &mut y).unwrap();
                y
            }
            Layer::MaxPool2d(p) => {
                let mut y = vec![0.0; p.dims().unwrap().output_len];
                r::max_pool2d(&p, &x, &mut y, None).unwrap();
                y
            }
            _ => unreachable!("LeNet has no other layers"),
        };
    }
    x
}

#[test]
fn network_rejects_what_does_not_fit() {
    let conv = |c: usize| Layer::Conv2d {
        params: Conv2dParams::new(1, c, 8, 8, 4, 3, 3),
        bias: true,
        act: Activation::None,
    };
    assert_eq!(Network::new(&[]), Err(KernelError::ZeroSize("layers")));
    assert_eq!(
        Network::new(&[Layer::Act(E::Relu), Layer::Push, Layer::Drop]),
        Err(KernelError::ZeroSize("the first layer's input"))
    );
    // (an activation first runs in place on the input the next layer sizes)
    assert_eq!(
        Network::new(&[Layer::Act(E::Relu), conv(1)])
            .unwrap()
            .input_len(),
        64
    );
    // conv(1) gives 4x6x6 = 144; conv(2) takes 2x8x8 = 128
    assert_eq!(
        Network::new(&[conv(1), conv(2)]),
        Err(KernelError::LayerMismatch {
            layer: 1,
            what: "input length",
            expected: 128,
            actual: 144
        })
    );
    let lin = |b: usize, i: usize| Layer::Linear {
        params: LinearParams::new(b, i, 2),
        bias: false,
        act: Activation::None,
    };
    // same length, another batch: 1 x 144 read as 2 x 72 would mix images
    assert_eq!(
        Network::new(&[conv(1), lin(2, 72)]),
        Err(KernelError::LayerMismatch {
            layer: 1,
            what: "batch",
            expected: 2,
            actual: 1
        })
    );
    assert_eq!(
        Network::new(&[conv(0)]),
        Err(KernelError::ZeroSize("in_channels"))
    );
    assert!(matches!(
        Network::new(&[conv(1), Layer::Act(E::LeakyRelu(f32::NAN))]),
        Err(KernelError::InvalidParameter(_))
    ));
    let bad_clamp = Layer::Linear {
        params: LinearParams::new(1, 4, 2),
        bias: false,
        act: Activation::Clamp { min: 1.0, max: 0.0 },
    };
    assert!(matches!(
        Network::new(&[bad_clamp]),
        Err(KernelError::InvalidParameter(_))
    ));
    assert_eq!(
        Network::new(&[Layer::Linear {
            params: LinearParams::new(usize::MAX, 2, 2),
            bias: false,
            act: Activation::None,
        }]),
        Err(KernelError::Overflow)
    );

    let layers = [conv(1), lin(1, 144)];
    let net = Network::new(&layers).unwrap();
    assert_eq!(net.param_len(), 4 * 9 + 4 + 288);
    let mut arena = vec![0.0; net.arena_len()];
    let (p, x) = (vec![0.0; net.param_len()], vec![0.0; 64]);
    let len = |arg| move |e: KernelError| matches!(e, KernelError::LengthMismatch { arg: a, .. } if a == arg);
    assert!(net.run(&p[1..], &x, &mut arena).is_err_and(len("params")));
    assert!(net.run(&p, &x[1..], &mut arena).is_err_and(len("input")));
    assert!(net.run(&p, &x, &mut arena).is_ok());
    assert!(
        net.run_in_arena(&p[1..], &mut arena)
            .is_err_and(len("params"))
    );
    let short = net.arena_len() - 1;
    let small = KernelError::ScratchTooSmall {
        needed: net.arena_len(),
        actual: short,
    };
    assert_eq!(net.run_in_arena(&p, &mut arena[..short]), Err(small));
    assert_eq!(net.input_mut(&mut arena[..short]), Err(small));
    assert_eq!(net.input_mut(&mut arena).unwrap().len(), 64);
}

#[test]
fn fingerprint_tells_geometries_apart() {
    let base = LENET_NET.fingerprint();
    assert_eq!(base, net::fingerprint(&LENET));
    let mut variants = Vec::new();
    for i in 0..LENET.len() {
        let mut l = LENET;
        l[i] = match l[i] {
            Layer::Conv2d { params, bias, act } => Layer::Conv2d {
                params: params.with_padding(params.pad_top, params.pad_bottom, 1, 1),
                bias,
                act,
            },
            Layer::MaxPool2d(p) => Layer::AvgPool2d {
                params: p,
                count_include_pad: true,
            },
            Layer::Linear { params, bias, .. } => Layer::Linear {
                params,
                bias,
                act: Activation::Clamp { min: 0.0, max: 6.0 },
            },
            other => other,
        };
        // (a changed geometry may not fit together any more: the hash reads geometry only)
        variants.push(net::fingerprint(&l));
    }
    for (i, f) in variants.iter().enumerate() {
        assert_ne!(*f, base, "changing layer {i} must change the fingerprint");
    }
}

#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

fn blob_bytes(params: &[f32], fp: u32) -> Vec<u8> {
    let mut v = Blob::header(params.len() as u32, LENET.len() as u32, fp, 0.25, 0.5).to_vec();
    for p in params {
        v.extend_from_slice(&p.to_le_bytes());
    }
    v
}

#[test]
fn blob_round_trips_and_checks_its_network() {
    let params = Rng(3).vec(LENET_NET.param_len());
    let bytes = blob_bytes(&params, LENET_NET.fingerprint());
    let mut store = Box::new(Aligned([0_u8; BLOB_HEADER_LEN + 4 * 61_706]));
    store.0.copy_from_slice(&bytes);
    let blob = Blob::parse(&store.0).unwrap();
    assert_eq!(blob.params, &params[..]);
    assert_eq!((blob.mean, blob.std, blob.layers), (0.25, 0.5, 7));
    assert_eq!(blob.params_for(&LENET_NET).unwrap(), &params[..]);
    assert_eq!(blob.normalize(0), -0.5);
    assert_eq!(blob.normalize(255), 1.5);

    let other = Network::new(&LENET[..6]).unwrap();
    assert!(matches!(
        blob.params_for(&other),
        Err(KernelError::InvalidBlob(_))
    ));
    let wrong_fp = blob_bytes(&params, LENET_NET.fingerprint() ^ 1);
    store.0.copy_from_slice(&wrong_fp);
    let blob = Blob::parse(&store.0).unwrap();
    assert!(matches!(
        blob.params_for(&LENET_NET),
        Err(KernelError::InvalidBlob(_))
    ));
}

#[test]
fn blob_rejects_bad_bytes() {
    let bytes = blob_bytes(&[1.0, 2.0, 3.0], 9);
    let mut store = Aligned([0_u8; 64]);
    let n = bytes.len();
    store.0[..n].copy_from_slice(&bytes);
    let ok = &store.0[..n];
    assert_eq!(Blob::parse(ok).unwrap().params, &[1.0, 2.0, 3.0]);
    let why = |b: &[u8]| match Blob::parse(b) {
        Err(KernelError::InvalidBlob(w)) => w,
        other => panic!("expected an InvalidBlob, got {other:?}"),
    };
    assert!(why(&ok[..31]).contains("header"));
    assert!(why(&ok[..n - 4]).contains("truncated"));
    assert!(why(&store.0[..n + 4]).contains("count"));
    assert!(why(&ok[..n - 1]).contains("count"));
    // misaligned: the same bytes one byte further on
    let mut shifted = Aligned([0_u8; 64]);
    shifted.0[1..n + 1].copy_from_slice(&bytes);
    assert!(why(&shifted.0[1..n + 1]).contains("aligned"));
    let mut bad = store.0;
    bad[0] = b'X';
    assert!(why(&bad[..n]).contains("magic"));
    let mut bad = store.0;
    bad[4] = 2;
    assert!(why(&bad[..n]).contains("version"));
    // never a panic, whatever the bytes
    let mut rng = Rng(11);
    for len in 0..64 {
        let mut b = Aligned([0_u8; 64]);
        for v in b.0.iter_mut() {
            *v = rng.below(256) as u8;
        }
        if len > 8 {
            b.0[..4].copy_from_slice(b"CNKW");
        }
        let _ = Blob::parse(&b.0[..len]);
    }
}

// The aarch64 and wasm test runs in CI must exercise `wide`'s vector paths (NEON,
// simd128), not its scalar fallback: without the feature these tests do not build.
#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
compile_error!("build wasm32 with +simd128 (see .cargo/config.toml)");
#[cfg(all(target_arch = "aarch64", not(target_feature = "neon")))]
compile_error!("aarch64 without NEON");

/// Residual and concatenation blocks (identity and projection shortcuts, an identity
/// branch between two others, nesting, three-way adds; batches of 1 and 2) give the
/// bits of the same kernels called by hand, in an arena of `arena_len` exactly.
#[test]
fn blocks_match_the_kernels_by_hand() {
    let conv = |b, c, hw, o, k, s, p: usize, act| Layer::Conv2d {
        params: Conv2dParams::new(b, c, hw, hw, o, k, k)
            .with_stride(s, s)
            .with_padding(p, p, p, p),
        bias: true,
        act,
    };
    for b in [1, 2] {
        let relu = Activation::Relu;
        let none = Activation::None;
        let programs: Vec<Vec<Layer>> = vec![
            // res[conv conv]
            // (the identity shortcut added straight from where it was kept)
            vec![
                Layer::Push,
                conv(b, 2, 6, 2, 3, 1, 1, relu),
                conv(b, 2, 6, 2, 3, 1, 1, none),
                Layer::AddPop,
                Layer::Act(E::Relu),
            ],
            // res[conv(stride 2) | conv 1x1 stride 2]
            vec![
                Layer::Push,
                conv(b, 2, 6, 4, 3, 2, 1, relu),
                Layer::Push,
                Layer::Load { depth: 1 },
                conv(b, 2, 6, 4, 1, 2, 0, none),
                Layer::AddPop,
                Layer::Drop,
            ],
            // cat[conv | | conv]
            vec![
                Layer::Push,
                conv(b, 2, 6, 3, 3, 1, 1, relu),
                Layer::Push,
                Layer::Load { depth: 1 },
                Layer::Push,
                Layer::Load { depth: 2 },
                conv(b, 2, 6, 1, 1, 1, 0, none),
                Layer::CatPop,
                Layer::CatPop,
                Layer::Drop,
                Layer::MaxPool2d(Pool2dParams::new(b, 6, 6, 6, 2, 2)),
            ],
            // res[res[conv] conv] with the inner one on the same input
            vec![
                Layer::Push,
                Layer::Push,
                conv(b, 2, 6, 2, 3, 1, 1, relu),
                Layer::AddPop,
                conv(b, 2, 6, 2, 1, 1, 0, none),
                Layer::AddPop,
            ],
        ];
        for (i, layers) in programs.iter().enumerate() {
            let net = Network::new(layers).unwrap_or_else(|e| panic!("program {i}: {e:?}"));
            let mut rng = Rng(40 + i as u64);
            let params = rng.vec(net.param_len());
            let x = rng.vec(net.input_len());
            let mut arena = vec![f32::NAN; net.arena_len()];
            let got = net.run(&params, &x, &mut arena).unwrap().to_vec();
            same_bits(
                &format!("program {i}, batch {b}"),
                &got,
                &by_hand(layers, &params, &x),
            );
        }
    }
}

#[test]
fn block_programs_that_do_not_balance_are_refused() {
    let conv = Layer::Conv2d {
        params: Conv2dParams::new(1, 2, 4, 4, 2, 3, 3).with_padding(1, 1, 1, 1),
        bias: false,
        act: Activation::None,
    };
    let wide = Layer::Conv2d {
        params: Conv2dParams::new(1, 2, 4, 4, 3, 3, 3).with_padding(1, 1, 1, 1),
        bias: false,
        act: Activation::None,
    };
    let bad = |layers: &[Layer]| Network::new(layers).unwrap_err();
    assert!(matches!(
        bad(&[conv, Layer::Load { depth: 0 }]),
        KernelError::InvalidParameter(_)
    ));
    assert!(matches!(
        bad(&[conv, Layer::AddPop]),
        KernelError::InvalidParameter(_)
    ));
    assert!(matches!(
        bad(&[conv, Layer::Drop]),
        KernelError::InvalidParameter(_)
    ));
    assert!(matches!(
        bad(&[Layer::Push, conv]),
        KernelError::InvalidParameter(_)
    ));
    assert!(matches!(
        bad(&[Layer::Push, wide, Layer::AddPop, Layer::Drop]),
        KernelError::LayerMismatch { layer: 2, .. }
    ));
    let deep = [Layer::Push; net::MAX_KEPT + 1];
    let mut layers = vec![conv];
    layers.extend_from_slice(&deep);
    assert!(matches!(bad(&layers), KernelError::InvalidParameter(_)));
    assert!(matches!(
        bad(&[Layer::Push, Layer::CatPop, conv]),
        KernelError::ZeroSize(_)
    ));
}
