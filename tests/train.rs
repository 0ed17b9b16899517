//! The threaded training loop against the same mathematics written out on one model:
//! every thread steps its own copy of the model, and the copies must move exactly as
//! one model stepped with the sum of the shards' gradients.

mod common;

use cnnkit::data::{epoch_order, normalize_into};
use cnnkit::layers::LayerState;
use cnnkit::train::micro_batch;
use cnnkit::{
    Model, Normalize, Optimizer, OptimizerKind, Rng, Shape, Split, TrainConfig, Trainer, Workspace,
};

/// The parameters of `m`, flattened in layer and parameter order.
fn params(m: &Model) -> Vec<f32> {
    m.layers()
        .iter()
        .flat_map(|l| (0..l.param_count()).flat_map(move |i| l.param(i).1.data().to_vec()))
        .collect()
}

/// Trains `model` for `epochs` epochs as the trainer documents it: shards of the batch
/// in order, micro-batches within a shard, their gradients summed in that order, one
/// plain optimizer step with the sum. Returns the model after each epoch.
fn reference(model: &Model, config: &TrainConfig, split: &Split, epochs: usize) -> Vec<Model> {
    let mut model = model.clone();
    let mut opt = Optimizer::new(config.optimizer, config.weight_decay, &model).unwrap();
    let table = Normalize::of(split).table();
    let (n, batch, threads) = (split.len(), config.batch, config.threads);
    let per = model.input_shape().len();
    let classes = model.output_shape().len();
    let cap = micro_batch(&model, batch.div_ceil(threads));
    let mut ws = Workspace::new(&model, cap).unwrap();
    let mut order = Vec::new();
    let mut out = Vec::new();
    for epoch in 0..epochs {
        epoch_order(n, config.seed, epoch, &mut order);
        let steps = n.div_ceil(batch);
        for b in 0..steps {
            let (start, len) = (b * batch, batch.min(n - b * batch));
            let lr = config
                .schedule
                .lr(config.lr, epoch, b as f64 / steps as f64);
            let add = |sum: &mut Option<Vec<Vec<Vec<f32>>>>, grads: Vec<Vec<Vec<f32>>>| match sum {
                None => *sum = Some(grads),
                Some(s) => {
                    for (a, g) in s.iter_mut().flatten().zip(grads.iter().flatten()) {
                        a.iter_mut().zip(g).for_each(|(a, &g)| *a += g);
                    }
                }
            };
            let mut sum = None;
            for t in 0..threads {
                let mut shard = None;
                let (lo, hi) = (start + t * len / threads, start + (t + 1) * len / threads);
                let mut m0 = lo;
                while m0 < hi {
                    let m1 = hi.min(m0 + cap);
                    let rows = m1 - m0;
                    for (dst, &i) in ws.input_mut(rows).chunks_exact_mut(per).zip(&order[m0..m1]) {
                        normalize_into(&table, split.image(i as usize), dst);
                    }
                    let labels: Vec<u32> = order[m0..m1]
                        .iter()
                        .map(|&i| u32::from(split.labels[i as usize]))
                        .collect();
                    let seed =
                        Rng::derive(config.seed, &[0x4452_4f50, opt.steps, m0 as u64]).next_u64();
                    model.forward_ws(&mut ws, rows, Some(seed)).unwrap();
                    let (o, g) = ws.output_and_grad_mut(&model, rows);
                    config
                        .loss
                        .forward_backward(classes, len, o, &labels, g)
                        .unwrap();
                    model.backward_ws(&mut ws, rows).unwrap();
                    let grads: Vec<Vec<Vec<f32>>> =
                        ws.states().iter().map(|s| s.grads.clone()).collect();
                    add(&mut shard, grads);
                    m0 = m1;
                }
                if let Some(shard) = shard {
                    add(&mut sum, shard);
                }
            }
            let st: Vec<LayerState> = sum
                .unwrap()
                .into_iter()
                .map(|grads| LayerState {
                    grads,
                    ..LayerState::default()
                })
                .collect();
            opt.step(&mut model, &st, lr);
        }
        out.push(model.clone());
    }
    out
}

#[test]
fn every_thread_count_moves_the_model_as_one_summed_step() {
    let (images, labels) = common::images(90, 12, 7);
    let split = Split {
        images,
        labels,
        channels: 1,
        rows: 12,
        cols: 12,
    };
    let shape = Shape::Image { c: 1, h: 12, w: 12 };
    // (threads, batch): shards of 20 images in micro-batches of 16 and 4, then of 5;
    // shards of 1 and 2 images; a last batch of 2 whose first shard (the main
    // thread's) is empty; a batch smaller than the thread count throughout
    for (threads, batch, kind) in [
        (2, 40, OptimizerKind::SGD_NESTEROV),
        (3, 5, OptimizerKind::ADAMW),
        (3, 4, OptimizerKind::SGD_NESTEROV),
        (4, 2, OptimizerKind::ADAM),
        (1, 40, OptimizerKind::SGD_NESTEROV),
    ] {
        let model = Model::from_spec(
            "conv(4,5,pad=2) relu maxpool(2) conv(6,3) tanh flatten linear(16) relu linear(10)",
            shape,
            5,
        )
        .unwrap();
        let config = TrainConfig {
            threads,
            batch,
            optimizer: kind,
            lr: 0.01,
            ..TrainConfig::default()
        };
        let want = reference(&model, &config, &split, 2);
        let mut t = Trainer::new(model, config, Normalize::of(&split)).unwrap();
        for (epoch, want) in want.iter().enumerate() {
            let stats = t.train_epoch(&split, |_, _, _| {}).unwrap();
            t.finish_epoch(stats, f64::NAN);
            let (got, want) = (params(&t.model), params(want));
            assert_eq!(got.len(), want.len());
            let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(
                diff,
                0,
                "threads {threads}, batch {batch}, {kind:?}: {diff} parameters differ after epoch {}",
                epoch + 1
            );
        }
    }
}
