//! The layers' backward passes against finite differences through whole models (every
//! layer type, batch-norm's batch statistics and dropout's mask included), the
//! optimizers against PyTorch's update rules written out by hand, schedules, specs.

use cnnkit::layers::LayerState;
use cnnkit::{Loss, Model, Optimizer, OptimizerKind, Rng, Schedule, Shape, Tensor, Workspace};

/// Loss of the batch in `ws` for `model` in training mode with a fixed dropout seed.
fn loss(model: &Model, ws: &mut Workspace, x: &[f32], labels: &[u32], backward: bool) -> f64 {
    let b = labels.len();
    ws.input_mut(b).copy_from_slice(x);
    model.forward_ws(ws, b, Some(42)).unwrap();
    let classes = model.output_shape().len();
    let (out, grad) = ws.output_and_grad_mut(model, b);
    let l = Loss::CrossEntropy
        .forward_backward(classes, b, out, labels, grad)
        .unwrap();
    if backward {
        model.backward_ws(ws, b).unwrap();
    }
    l / b as f64
}

fn grad_check(spec: &str, input: Shape, batch: usize, seed: u64) {
    let mut model = Model::from_spec(spec, input, seed).unwrap();
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.normal()).collect();
    let classes = model.output_shape().len() as u64;
    let labels: Vec<u32> = (0..batch).map(|_| rng.below(classes) as u32).collect();
    let mut ws = Workspace::new(&model, batch).unwrap();
    loss(&model, &mut ws, &x, &labels, true);
    let grads: Vec<LayerState> = ws.states().to_vec();
    let (mut checked, mut kinks) = (0, 0);
    for (li, st) in grads.iter().enumerate() {
        for p in 0..model.layers()[li].param_count() {
            let n = model.layers()[li].param(p).1.len();
            for _ in 0..12.min(n) {
                let j = rng.below(n as u64) as usize;
                let orig = model.layers()[li].param(p).1.data()[j];
                let mut central = |h: f32| {
                    model.layers_mut()[li].param_mut(p).data_mut()[j] = orig + h;
                    let lp = loss(&model, &mut ws, &x, &labels, false);
                    model.layers_mut()[li].param_mut(p).data_mut()[j] = orig - h;
                    let lm = loss(&model, &mut ws, &x, &labels, false);
                    model.layers_mut()[li].param_mut(p).data_mut()[j] = orig;
                    (lp - lm) / (2.0 * f64::from(h))
                };
                let (fd, half) = (central(1e-3), central(5e-4));
                let an = f64::from(st.grads[p][j]);
                // central differences: O(h^2) truncation plus f32 rounding of the loss
                // (~1e-7 * |loss| / h); a wrong gradient is off by O(|an|)
                let tol = 2e-3 + 2e-2 * an.abs().max(fd.abs());
                // where two steps disagree, a ReLU or max-pool switched inside the step
                // (the loss has a kink there, and no derivative to compare with): skipped,
                // and counted
                if (fd - half).abs() > tol {
                    kinks += 1;
                    continue;
                }
                assert!(
                    (fd - an).abs() <= tol,
                    "{spec}: layer {li} ({}) param {p} [{j}]: analytic {an}, numeric {fd}",
                    model.layers()[li].kind()
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0 && kinks * 10 <= checked,
        "{spec}: {kinks} kinks, {checked} checked"
    );
}

#[test]
fn backward_passes_match_finite_differences() {
    let img = |c, h, w| Shape::Image { c, h, w };
    grad_check(
        "conv(3,3,pad=1) batchnorm tanh avgpool(2) flatten linear(4)",
        img(2, 6, 6),
        3,
        1,
    );
    grad_check(
        "conv(4,3,stride=2) leakyrelu(0.1) maxpool(2,stride=1) flatten dropout(0.4) linear(5) sigmoid linear(3)",
        img(1, 9, 9),
        4,
        2,
    );
    grad_check(
        "conv(3,5,pad=2) relu maxpool(2) conv(4,3) relu flatten linear(6) relu linear(3)",
        img(1, 8, 8),
        2,
        3,
    );
    grad_check("flatten linear(7) tanh linear(4)", img(1, 3, 3), 5, 4);
    grad_check(
        "conv(2,1) batchnorm avgpool(3,stride=2,pad=1) flatten linear(3)",
        img(3, 5, 5),
        2,
        5,
    );
}

#[test]
fn batchnorm_eval_uses_running_statistics_and_inference_matches_workspace() {
    let mut m = Model::from_spec(
        "conv(3,3) batchnorm relu flatten linear(4)",
        Shape::Image { c: 1, h: 5, w: 5 },
        9,
    )
    .unwrap();
    if let cnnkit::Layer::BatchNorm2d(bn) = &mut m.layers_mut()[1] {
        bn.running_mean
            .data_mut()
            .copy_from_slice(&[0.5, -0.5, 1.0]);
        bn.running_var.data_mut().copy_from_slice(&[4.0, 0.25, 1.0]);
    }
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..2 * 25).map(|_| rng.normal()).collect();
    let out = m
        .forward(&Tensor::from_vec(vec![2, 1, 5, 5], x.clone()).unwrap())
        .unwrap();
    assert_eq!(out.shape(), &[2, 4]);
    // (every layer's own output kept, to read them; the output as the fused pass's)
    let mut ws = Workspace::new(&m, 2).unwrap();
    ws.keep_every_activation();
    ws.input_mut(2).copy_from_slice(&x);
    m.forward_ws(&mut ws, 2, None).unwrap();
    assert_eq!(ws.output(&m, 2), out.data());
    // the batch-norm output in eval mode is (x - running_mean) / sqrt(running_var + eps)
    let conv = ws.activation(&m, 0, 1).to_vec();
    let bn = ws.activation(&m, 1, 1);
    for (i, (&c, &y)) in conv.iter().zip(bn).enumerate() {
        let ch = i / 9;
        let (mean, var) = ([0.5, -0.5, 1.0][ch], [4.0f32, 0.25, 1.0][ch]);
        assert!((y - (c - mean) / (var + 1e-5).sqrt()).abs() < 1e-5);
    }
    assert!(
        m.forward(&Tensor::from_vec(vec![1, 24], vec![0.0; 24]).unwrap())
            .is_err()
    );
}

/// One scalar parameter through `steps` updates with gradients `g`, next to the same
/// update written out as in PyTorch's documentation.
#[test]
fn optimizers_follow_pytorch_update_rules() {
    let model = || {
        let mut m =
            Model::from_spec("flatten linear(2)", Shape::Image { c: 1, h: 1, w: 1 }, 1).unwrap();
        m.layers_mut()[1]
            .param_mut(0)
            .data_mut()
            .copy_from_slice(&[1.0, -2.0]);
        m
    };
    let grads = [[0.5f32, -1.0], [0.25, 2.0], [-1.0, 0.5]];
    let run = |kind: OptimizerKind, wd: f32, lr: f32| {
        let mut m = model();
        let mut opt = Optimizer::new(kind, wd, &m).unwrap();
        let mut st = vec![LayerState::default(), LayerState::default()];
        for g in grads {
            st[1].grads = vec![g.to_vec(), vec![0.0; 2]];
            opt.step(&mut m, &st, lr);
        }
        m.layers()[1].param(0).1.data().to_vec()
    };
    let (lr, wd) = (0.1f32, 0.01f32);
    // SGD, momentum 0.9, Nesterov, weight decay
    let mut want = vec![1.0f32, -2.0];
    let mut buf = [0.0f32; 2];
    for (t, g) in grads.iter().enumerate() {
        for i in 0..2 {
            let d = g[i] + wd * want[i];
            buf[i] = if t == 0 { d } else { 0.9 * buf[i] + d };
            want[i] -= lr * (d + 0.9 * buf[i]);
        }
    }
    assert_eq!(run(OptimizerKind::SGD_NESTEROV, wd, lr), want);
    // Adam and AdamW
    for decoupled in [false, true] {
        let mut want = vec![1.0f32, -2.0];
        let (mut m, mut v) = ([0.0f32; 2], [0.0f32; 2]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..2 {
                let mut d = g[i];
                if decoupled {
                    want[i] *= 1.0 - lr * wd;
                } else {
                    d += wd * want[i];
                }
                m[i] = 0.9 * m[i] + (1.0 - 0.9) * d;
                v[i] = 0.999 * v[i] + (1.0 - 0.999) * d * d;
                let bc = |beta: f64| (1.0 - beta.powf(f64::from(t))) as f32;
                let denom = v[i].sqrt() / bc(0.9990000128746033).sqrt() + 1e-8;
                want[i] -= lr / bc(0.8999999761581421) * m[i] / denom;
            }
        }
        let kind = if decoupled {
            OptimizerKind::ADAMW
        } else {
            OptimizerKind::ADAM
        };
        assert_eq!(run(kind, wd, lr), want, "decoupled {decoupled}");
    }
    assert!(
        Optimizer::new(
            OptimizerKind::Sgd {
                momentum: 1.5,
                nesterov: false
            },
            0.0,
            &model()
        )
        .is_err()
    );
}

/// `step_sum` over shards equals `step` with the shards summed beforehand, in order,
/// for parameters longer than the chunk it sums at a time (and not a multiple of it).
#[test]
fn optimizer_step_sum_is_the_step_of_the_summed_gradients() {
    let shape = Shape::Image { c: 1, h: 1, w: 1 };
    let spec = "flatten linear(300) linear(3)";
    let mut rng = Rng::new(11);
    for kind in [
        OptimizerKind::Sgd {
            momentum: 0.0,
            nesterov: false,
        },
        OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        OptimizerKind::SGD_NESTEROV,
        OptimizerKind::ADAM,
        OptimizerKind::ADAMW,
    ] {
        let (mut a, mut b) = (
            Model::from_spec(spec, shape, 4).unwrap(),
            Model::from_spec(spec, shape, 4).unwrap(),
        );
        let mut oa = Optimizer::new(kind, 0.01, &a).unwrap();
        let mut ob = oa.clone();
        for _ in 0..3 {
            let shards: Vec<Vec<LayerState>> = (0..3)
                .map(|_| {
                    a.layers()
                        .iter()
                        .map(|l| LayerState {
                            grads: (0..l.param_count())
                                .map(|i| (0..l.param(i).1.len()).map(|_| rng.normal()).collect())
                                .collect(),
                            ..LayerState::default()
                        })
                        .collect()
                })
                .collect();
            let mut sum = shards[0].clone();
            for s in &shards[1..] {
                for (x, y) in sum.iter_mut().zip(s) {
                    for (x, y) in x.grads.iter_mut().zip(&y.grads) {
                        x.iter_mut().zip(y).for_each(|(x, &y)| *x += y);
                    }
                }
            }
            let refs: Vec<&[LayerState]> = shards.iter().map(Vec::as_slice).collect();
            oa.step_sum(&mut a, &refs, 0.05);
            ob.step(&mut b, &sum, 0.05);
        }
        assert_eq!(a, b, "{kind:?}");
        assert_eq!(oa, ob, "{kind:?}");
    }
}

#[test]
fn schedules() {
    let c = Schedule::parse("cosine", 10).unwrap();
    assert_eq!(c.lr(0.1, 0, 0.0), 0.1);
    assert!((c.lr(0.1, 5, 0.0) - 0.05).abs() < 1e-7);
    assert!(c.lr(0.1, 9, 0.99) < 1e-3);
    let s = Schedule::parse("step:3:0.5", 10).unwrap();
    assert_eq!(
        (s.lr(1.0, 2, 0.9), s.lr(1.0, 3, 0.0), s.lr(1.0, 7, 0.0)),
        (1.0, 0.5, 0.25)
    );
    assert_eq!(Schedule::parse("const", 3).unwrap().lr(0.3, 2, 0.5), 0.3);
    for bad in ["step", "step:0:0.5", "step:2:1.5", "step:2:0.5:1", "linear"] {
        assert!(Schedule::parse(bad, 3).is_err(), "{bad}");
    }
}

#[test]
fn specs_round_trip_and_errors_name_the_layer() {
    let input = Shape::Image { c: 1, h: 28, w: 28 };
    for spec in [
        "lenet5",
        "fmnist",
        "conv(8,3,stride=2,pad=1) leakyrelu(0.2) avgpool(3,stride=2,pad=1) flatten dropout(0.1) linear(10)",
    ] {
        let m = Model::from_spec(spec, input, 1).unwrap();
        let again = Model::from_spec(&m.spec(), input, 1).unwrap();
        assert_eq!(m, again, "{spec}");
    }
    let lenet = Model::from_spec("lenet5", input, 1).unwrap();
    assert_eq!(lenet.num_params(), 61_706);
    for (spec, needle) in [
        ("", "empty"),
        ("conv(6,5", "unbalanced"),
        ("conv(6)", "missing `k`"),
        ("conv(0,3)", "at least 1"),
        ("conv(6,3,bogus=1)", "unknown argument"),
        ("relu(3)", "positional"),
        ("dropout(1.5)", "drop probability"),
        ("conv(4,3) linear(10)", "flatten"),
        ("flatten batchnorm", "image input"),
        ("maxpool(64)", "layer 0"),
        // found by fuzz/fuzz_targets/spec.rs: pooling a flat input panicked
        ("conv(4,3) flatten maxpool(5)", "image input"),
        ("flatten avgpool(2)", "image input"),
        ("warp(3)", "unknown layer"),
        ("conv(4,3,stride=99999999)", "too large"),
    ] {
        let e = Model::from_spec(spec, input, 1).unwrap_err().to_string();
        assert!(e.contains(needle), "{spec}: {e}");
    }
}

#[test]
fn dropout_drops_the_right_fraction_and_keeps_the_mean() {
    use cnnkit::layers::Mode;
    let m = Model::from_spec("dropout(0.25)", Shape::Flat(10_000), 1).unwrap();
    let mut ws = Workspace::new(&m, 4).unwrap();
    ws.input_mut(4).fill(1.0);
    m.forward_layer(&mut ws, 0, 4, Mode::Train { seed: 5 })
        .unwrap();
    let y = ws.output(&m, 4);
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / y.len() as f64;
    assert!((zeros - 0.25).abs() < 0.01, "{zeros}");
    assert!((mean - 1.0).abs() < 0.02, "{mean}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    m.forward_layer(&mut ws, 0, 4, Mode::Eval).unwrap();
    assert!(ws.output(&m, 4).iter().all(|&v| v == 1.0));
}

/// A ReLU before a max-pool runs its backward pass inside the pool's, at the pooled size
/// (`Model::backward_ws`): the same parameter gradients, bit for bit, as every layer's
/// own backward pass one after the other. The data have exact zeros, negatives and a NaN
/// at the ReLU, and ties in the pooling windows. The first conv's gradients come from the
/// pool's gradient and indices (`conv2d_backward_weight_sparse`, which the kernel tests
/// hold to the dense reference, and which differs from the dense pass in its summation
/// order and in leaving out `0 * NaN`): here the model must pass it the pool's indices and
/// the masked gradient, bit for bit.
#[test]
fn relu_before_max_pool_backward_matches_layer_by_layer() {
    use cnnkit::layers::Mode;
    let input = Shape::Image { c: 2, h: 9, w: 9 };
    let model = Model::from_spec(
        "conv(4,3,pad=1) relu maxpool(2) conv(3,3) relu maxpool(2,stride=1) flatten linear(3)",
        input,
        7,
    )
    .unwrap();
    let b = 3;
    let mut rng = Rng::new(8);
    let mut x: Vec<f32> = (0..b * input.len())
        .map(|_| (rng.normal() * 4.0).round() / 4.0)
        .collect();
    x[5] = f32::NAN;
    let mut ws = Workspace::new(&model, b).unwrap();
    ws.input_mut(b).copy_from_slice(&x);
    model.forward_ws(&mut ws, b, Some(1)).unwrap();
    let g: Vec<f32> = (0..b * 3).map(|_| rng.normal()).collect();
    let (_, grad) = ws.output_and_grad_mut(&model, b);
    grad.copy_from_slice(&g);
    model.backward_ws(&mut ws, b).unwrap();

    // the same model, one layer at a time through the public layer API
    let shapes = model.shapes().to_vec();
    let mut acts = vec![x];
    let mut states = Vec::new();
    for (i, l) in model.layers().iter().enumerate() {
        let mut st = l.state(b, shapes[i]).unwrap();
        let mut scratch = vec![0.0; l.scratch_len(b, shapes[i], true).unwrap()];
        let mut y = vec![0.0; b * shapes[i + 1].len()];
        let mode = Mode::Train { seed: 0 };
        l.forward(b, shapes[i], &acts[i], &mut y, &mut st, &mut scratch, mode)
            .unwrap();
        acts.push(y);
        states.push((st, scratch));
    }
    assert!(
        acts[1].iter().any(|v| v.is_nan()),
        "a NaN reaches the first ReLU"
    );
    let mut gy = g;
    let (mut pooled, mut indices) = (Vec::new(), Vec::new());
    for (i, l) in model.layers().iter().enumerate().rev() {
        if i == 2 {
            // the first max-pool's output gradient, through the ReLU's mask (its output)
            pooled = gy.clone();
            cnnkit::kernels::relu_backward_inplace(&acts[3], &mut pooled).unwrap();
            indices.clone_from(&states[2].0.indices);
        }
        let (st, scratch) = &mut states[i];
        let mut gx = vec![0.0; b * shapes[i].len()];
        let want_gx = (i > 0).then_some(&mut gx[..]);
        l.backward(
            b,
            shapes[i],
            &acts[i],
            &acts[i + 1],
            &gy,
            want_gx,
            st,
            scratch,
        )
        .unwrap();
        if i == 0 {
            // the first conv takes its gradients from the pool's (see the test's note)
            let cnnkit::Layer::Conv2d(c) = l else {
                unreachable!()
            };
            let p = c.params(b, shapes[0]).unwrap();
            let (gw, gb) = st.grads.split_at_mut(1);
            let mut s =
                vec![0.0; cnnkit::kernels::conv2d_backward_weight_sparse_scratch_len(&p).unwrap()];
            cnnkit::kernels::conv2d_backward_weight_sparse(
                &p,
                &acts[0],
                shapes[3].len() / 4,
                &indices,
                &pooled,
                &mut gw[0],
                Some(&mut gb[0]),
                &mut s,
            )
            .unwrap();
        }
        let st = &states[i].0;
        let got = &ws.states()[i].grads;
        for (p, (a, e)) in got.iter().zip(&st.grads).enumerate() {
            let (a, e): (Vec<u32>, Vec<u32>) = (
                a.iter().map(|v| v.to_bits()).collect(),
                e.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(a, e, "layer {i} ({}) parameter {p}", l.kind());
        }
        gy = gx;
    }
}

/// Graphs: residual and concatenation blocks (nested, with identity branches, with a
/// projection shortcut), depthwise and grouped convolutions, ReLU6 and global average
/// pooling, against finite differences. A value two layers read gets the sum of their
/// gradients; a ReLU whose input a block also reads is not fused into the layer before it.
#[test]
fn graph_backward_passes_match_finite_differences() {
    let img = |c, h, w| Shape::Image { c, h, w };
    grad_check(
        "conv(4,3,pad=1) relu res[conv(4,3,pad=1) batchnorm relu conv(4,3,pad=1)] relu gap \
         flatten linear(3)",
        img(2, 6, 6),
        3,
        21,
    );
    grad_check(
        "conv(4,3,pad=1) res[conv(8,3,stride=2,pad=1) relu6 | conv(8,1,stride=2) batchnorm] \
         flatten linear(3)",
        img(1, 6, 6),
        2,
        12,
    );
    grad_check(
        "conv(4,1) cat[conv(2,3,pad=1) tanh | | conv(3,1) sigmoid] conv(6,3,groups=3) flatten \
         linear(3)",
        img(2, 5, 5),
        2,
        13,
    );
    grad_check(
        "conv(4,3,pad=1) res[res[conv(4,3,pad=1) relu] conv(4,1)] gap flatten linear(3)",
        img(1, 5, 5),
        2,
        14,
    );
    // the conv's output feeds the block's ReLU and its add: no fused ReLU; then a ReLU
    // into a max-pool after the add (their joint backward pass)
    grad_check(
        "conv(4,3,pad=1) res[relu conv(4,3,pad=1,groups=4)] relu maxpool(2) flatten linear(3)",
        img(2, 6, 6),
        2,
        15,
    );
    grad_check(
        "conv(6,3,pad=1) relu6 conv(6,3,pad=1,groups=6) batchnorm relu6 cat[conv(2,1) |] \
         flatten linear(3)",
        img(1, 4, 4),
        2,
        16,
    );
}

/// `res[A]` is `A(x) + x`, `cat[A | ]` is `A(x)` then `x`, channel by channel, sample by
/// sample: the same weights (drawn in the same order) in a stack give the parts.
/// The fused forward pass (a ReLU in the store of the layer before it, in training and in
/// inference) gives what every layer run on its own gives, on graphs whose branches start
/// with a layer a ReLU follows (that layer reads the block's input, not the value before
/// it in spec order).
#[test]
fn fused_forward_passes_equal_the_layer_by_layer_ones() {
    let input = Shape::Image { c: 2, h: 6, w: 6 };
    let batch = 3;
    for spec in [
        "cat[conv(3,1) relu | conv(2,3,pad=1) relu] flatten linear(4) relu linear(3)",
        // (the value before the second branch has the block input's shape: reading it
        // instead computed other numbers without an error)
        "cat[conv(2,1) relu | conv(2,3,pad=1) relu] flatten linear(3)",
        "conv(2,1) cat[conv(3,1) | res[conv(2,3,pad=1) relu] relu | cat[| conv(1,1) relu]] gap flatten linear(3)",
        "res[conv(2,3,pad=1) relu conv(2,1) | conv(2,1) relu] relu maxpool(2) flatten linear(3)",
    ] {
        let m = Model::from_spec(spec, input, 3).unwrap();
        let mut rng = Rng::new(4);
        let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.normal()).collect();
        let run = |train: Option<u64>, keep: bool| {
            let mut ws = if train.is_some() {
                Workspace::new(&m, batch).unwrap()
            } else {
                Workspace::inference(&m, batch).unwrap()
            };
            if keep {
                ws.keep_every_activation();
            }
            ws.input_mut(batch).copy_from_slice(&x);
            m.forward_ws(&mut ws, batch, train).unwrap();
            ws.output(&m, batch).to_vec()
        };
        let plain = run(None, true);
        assert_eq!(run(None, false), plain, "{spec}: inference");
        assert_eq!(run(Some(1), false), plain, "{spec}: training");
    }
}

#[test]
fn blocks_compute_what_they_say() {
    let input = Shape::Image { c: 2, h: 5, w: 5 };
    let mut rng = Rng::new(3);
    let n = 3;
    let x: Vec<f32> = (0..n * input.len()).map(|_| rng.normal()).collect();
    let xt = Tensor::from_vec(input.batched(n), x.clone()).unwrap();
    let plain = Model::from_spec("conv(2,3,pad=1) relu", input, 9).unwrap();
    let a = plain.forward(&xt).unwrap();
    let res = Model::from_spec("res[conv(2,3,pad=1) relu]", input, 9).unwrap();
    let r = res.forward(&xt).unwrap();
    for ((r, a), x) in r.data().iter().zip(a.data()).zip(&x) {
        assert_eq!(*r, a + x);
    }
    let cat = Model::from_spec("cat[conv(2,3,pad=1) relu |]", input, 9).unwrap();
    let c = cat.forward(&xt).unwrap();
    assert_eq!(c.shape(), &[n, 4, 5, 5]);
    for s in 0..n {
        let per = input.len();
        assert_eq!(
            &c.data()[s * 2 * per..s * 2 * per + per],
            &a.data()[s * per..(s + 1) * per]
        );
        assert_eq!(
            &c.data()[s * 2 * per + per..(s + 1) * 2 * per],
            &x[s * per..(s + 1) * per]
        );
    }
}

#[test]
fn graph_specs_round_trip_and_errors_name_the_block() {
    let input = Shape::Image { c: 1, h: 28, w: 28 };
    for spec in [
        "resnet8",
        "mobilenet",
        "conv(4,3,pad=1) res[res[conv(4,3,pad=1) relu] conv(4,1)] gap flatten linear(3)",
        "conv(4,1) cat[conv(2,3,pad=1) tanh | | conv(3,1) sigmoid] flatten linear(3)",
        "conv(4,1) cat[| conv(2,3,pad=1)] res[cat[conv(3,1) | conv(3,1)]] gap flatten linear(2)",
        // a block at the start of a later branch (it reads the enclosing block's input)
        "conv(2,1) cat[conv(3,1) | res[conv(2,3,pad=1) relu] relu | cat[| conv(1,1)]] gap flatten linear(2)",
    ] {
        let m = Model::from_spec(spec, input, 1).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert!(!m.is_stack(), "{spec}");
        let again = Model::from_spec(&m.spec(), input, 1).unwrap();
        assert_eq!(m, again, "{spec} -> {}", m.spec());
    }
    let r8 = Model::from_spec("resnet8", input, 1).unwrap();
    assert_eq!(r8.output_shape(), Shape::Flat(10));
    // MLPerf Tiny's ResNet-8 (78,666 parameters in Keras on 32x32x3 images, batch norm's
    // 480 running statistics among them) on one channel: 288 fewer stem weights
    assert_eq!(r8.num_params(), 78_666 - 480 - 288);
    for (spec, needle) in [
        ("res[conv(4,3)]", "cannot be added"),
        ("res[]", "needs a layer"),
        ("cat[|]", "needs a layer"),
        ("res[conv(1,3,pad=1)", "unbalanced `[`"),
        ("conv(1,3) ]", "unbalanced `]`"),
        ("warp[relu]", "unknown block"),
        ("relu | relu", "outside a block"),
        ("conv(2,1) cat[flatten | relu]", "cannot be concatenated"),
        ("conv(4,3,groups=3)", "groups"),
        ("[relu]", "block name"),
    ] {
        let e = Model::from_spec(spec, input, 1).unwrap_err().to_string();
        assert!(e.contains(needle), "{spec}: {e}");
    }
    let deep = format!("{}relu{}", "res[".repeat(40), "]".repeat(40));
    let e = Model::from_spec(&deep, input, 1).unwrap_err().to_string();
    assert!(e.contains("nested deeper"), "{e}");
}

/// [`Model::graph`] keeps only graphs a spec writes: interleaved branches and values no
/// layer reads are refused.
#[test]
fn graphs_out_of_spec_order_are_refused() {
    use cnnkit::layers::Layer;
    let input = Shape::Image { c: 2, h: 4, w: 4 };
    let layers = Model::from_spec("conv(2,1) conv(2,1) relu", input, 1)
        .unwrap()
        .layers()
        .to_vec();
    let mut with_add = layers.clone();
    with_add.push(Layer::Add);
    // branch A = conv 0 then the ReLU, branch B = conv 1, emitted A, B, A
    let e = Model::graph(
        input,
        with_add.clone(),
        vec![vec![0], vec![0], vec![1], vec![3, 2]],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("spec order"), "{e}");
    // in spec order it is kept, and written as a block
    let m = Model::graph(input, with_add, vec![vec![0], vec![1], vec![2], vec![3, 0]]).unwrap();
    assert_eq!(m.spec(), "res[conv(2,1) conv(2,1) relu]");
    let e = Model::graph(input, layers.clone(), vec![vec![0], vec![0], vec![2]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("never read"), "{e}");
    let e = Model::graph(input, layers, vec![vec![0], vec![2], vec![2]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("comes later"), "{e}");
}
