//! The training loop: mini-batches split across threads, gradients summed in a fixed
//! order, one optimizer step per batch, evaluation.
//!
//! With `threads = T`, each batch is cut into `T` contiguous shards; worker threads
//! (spawned once per epoch, woken by a barrier each step) run forward and backward on
//! their shard in their own [`Workspace`]; the main thread then sums the gradients in
//! shard order and takes the step. A fixed seed and thread count therefore give
//! bit-identical weights. Nothing is allocated per step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Normalize, Split, epoch_order, normalize_into};
use crate::error::{Error, Result};
use crate::layers::{Init, Layer, LayerState, Shape};
use crate::loss::{Loss, argmax};
use crate::model::{Model, Workspace};
use crate::optim::{Optimizer, OptimizerKind, Schedule};
use crate::rng::Rng;

/// The recipe of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Epochs to train (in all, counting those a resumed checkpoint already has).
    pub epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// Base learning rate.
    pub lr: f32,
    /// Update rule.
    pub optimizer: OptimizerKind,
    /// Weight decay.
    pub weight_decay: f32,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Threads each batch is split across.
    pub threads: usize,
    /// Seed of the initialisation, the shuffling and dropout.
    pub seed: u64,
    /// The loss.
    pub loss: Loss,
    /// Weight initialisation of a new model (biases: PyTorch's uniform).
    #[serde(default = "default_init")]
    pub init: Init,
}

fn default_init() -> Init {
    Init::KaimingUniform
}

impl Default for TrainConfig {
    /// The default recipe: 10 epochs of batch 64, SGD with Nesterov momentum 0.9,
    /// learning rate 0.05 on a cosine schedule, weight decay 5e-4, one thread, seed 1,
    /// Kaiming-uniform weights.
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch: 64,
            lr: 0.05,
            optimizer: OptimizerKind::SGD_NESTEROV,
            weight_decay: 5e-4,
            schedule: Schedule::Cosine { epochs: 10 },
            threads: 1,
            seed: 1,
            loss: Loss::CrossEntropy,
            init: Init::KaimingUniform,
        }
    }
}

impl TrainConfig {
    /// The default recipe for a model preset: [`TrainConfig::default`], except for
    /// `fmnist`, which trains with Adam at 0.001 (its batch-norm and dropout layers learn
    /// far faster that way than with SGD at 0.05).
    pub fn for_model(preset: &str) -> TrainConfig {
        let mut c = TrainConfig::default();
        if preset == "fmnist" {
            c.optimizer = OptimizerKind::ADAM;
            c.lr = 1e-3;
        }
        c
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first value out of range.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.epochs > 100_000 {
            return Err(Error::invalid("epochs must be in 1..=100000"));
        }
        if self.batch == 0 || self.batch > 65_536 {
            return Err(Error::invalid("batch must be in 1..=65536"));
        }
        if !(self.lr > 0.0 && self.lr <= 10.0) {
            return Err(Error::invalid("the learning rate must be in (0, 10]"));
        }
        if self.threads == 0 || self.threads > 256 {
            return Err(Error::invalid("threads must be in 1..=256"));
        }
        Ok(())
    }
}

/// One epoch's figures, as kept in the checkpoint (no timings, so that checkpoints of
/// equal runs are equal bytes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch (in training mode, as the weights moved).
    pub train_acc: f64,
    /// Test accuracy after the epoch.
    pub test_acc: f64,
}

/// One epoch's figures with its timing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_acc: f64,
    /// Test accuracy after the epoch (`NaN` when not evaluated).
    pub test_acc: f64,
    /// Training images per second (the training pass only, not the evaluation).
    pub images_per_sec: f64,
    /// Seconds of the training pass.
    pub seconds: f64,
}

struct Worker {
    ws: Workspace,
    /// Parameter gradients of the shard, summed over its micro-batches.
    acc: Vec<LayerState>,
    labels: Vec<u32>,
    rows: usize,
    loss: f64,
    correct: usize,
    err: Option<Error>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Job {
    /// Offset of the batch in the epoch order.
    start: usize,
    /// Images in the batch.
    len: usize,
    /// Global step (for dropout seeds).
    step: u64,
    stop: bool,
}

/// A model, its optimizer and the per-thread buffers to train it.
pub struct Trainer {
    /// The model being trained.
    pub model: Model,
    /// Its optimizer state.
    pub optimizer: Optimizer,
    /// The recipe.
    pub config: TrainConfig,
    /// Pixel normalisation (from the training set).
    pub norm: Normalize,
    /// Epochs completed.
    pub epoch: usize,
    /// Figures of the completed epochs.
    pub history: Vec<EpochRecord>,
    workers: Vec<Mutex<Worker>>,
    order: Vec<u32>,
    bn_acc: Vec<f64>,
    /// Pixels per channel plane of each layer's input.
    plane: Vec<usize>,
}

impl Trainer {
    /// A trainer for `model` with a fresh optimizer.
    ///
    /// # Errors
    /// A config out of range, or a model whose output is not a flat vector of classes.
    pub fn new(model: Model, config: TrainConfig, norm: Normalize) -> Result<Self> {
        config.validate()?;
        let optimizer = Optimizer::new(config.optimizer, config.weight_decay, &model)?;
        Self::resume(model, optimizer, config, norm, 0, Vec::new())
    }

    /// A trainer continuing from saved state: `epoch` epochs done, with `history`.
    ///
    /// # Errors
    /// As [`Trainer::new`]; an optimizer state that does not fit the model.
    pub fn resume(
        model: Model,
        optimizer: Optimizer,
        config: TrainConfig,
        norm: Normalize,
        epoch: usize,
        history: Vec<EpochRecord>,
    ) -> Result<Self> {
        config.validate()?;
        if !matches!(model.output_shape(), Shape::Flat(n) if n >= 2) {
            return Err(Error::invalid(format!(
                "the model must end in a flat vector of at least 2 class scores, not {}",
                model.output_shape()
            )));
        }
        let fits = optimizer.state.len() == model.layers().len()
            && optimizer.state.iter().zip(model.layers()).all(|(s, l)| {
                s.len() == l.param_count()
                    && s.iter().enumerate().all(|(i, bufs)| {
                        bufs.len() == optimizer.kind.buffer_names().len()
                            && bufs.iter().all(|b| b.len() == l.param(i).1.len())
                    })
            });
        if !fits {
            return Err(Error::invalid("optimizer state does not fit the model"));
        }
        let cap = micro_batch(&model, config.batch.div_ceil(config.threads));
        let workers = (0..config.threads)
            .map(|_| {
                let ws = Workspace::new(&model, cap)?;
                let acc = ws
                    .states()
                    .iter()
                    .map(|st| LayerState {
                        grads: st.grads.clone(),
                        ..LayerState::default()
                    })
                    .collect();
                Ok(Mutex::new(Worker {
                    ws,
                    acc,
                    labels: vec![0; cap],
                    rows: 0,
                    loss: 0.0,
                    correct: 0,
                    err: None,
                }))
            })
            .collect::<Result<_>>()?;
        let max_c = model
            .layers()
            .iter()
            .map(|l| match l {
                Layer::BatchNorm2d(b) => b.channels(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        Ok(Trainer {
            optimizer,
            config,
            norm,
            epoch,
            history,
            workers,
            order: Vec::new(),
            bn_acc: vec![0.0; 2 * max_c],
            plane: model
                .shapes()
                .iter()
                .map(|s| match *s {
                    Shape::Image { h, w, .. } => h * w,
                    Shape::Flat(_) => 1,
                })
                .collect(),
            model,
        })
    }

    /// Trains one epoch over `train`; `progress(images_done, images_total, mean_loss)`
    /// is called after every step, on this thread. The figures returned have no test
    /// accuracy yet (`NaN`); [`Trainer::finish_epoch`] records it.
    ///
    /// # Errors
    /// Images that do not fit the model's input, a label the model has no output for.
    pub fn train_epoch(
        &mut self,
        train: &Split,
        mut progress: impl FnMut(usize, usize, f64),
    ) -> Result<EpochStats> {
        let per = self.model.input_shape().len();
        if train.rows * train.cols != per {
            return Err(Error::invalid(format!(
                "images of {}x{} do not fit the model input {}",
                train.rows,
                train.cols,
                self.model.input_shape()
            )));
        }
        let classes = self.model.output_shape().len();
        if let Some(&l) = train.labels.iter().find(|&&l| usize::from(l) >= classes) {
            return Err(Error::invalid(format!(
                "label {l} in the training data, but the model has {classes} outputs"
            )));
        }
        let n = train.len();
        let mut order = std::mem::take(&mut self.order);
        epoch_order(n, self.config.seed, self.epoch, &mut order);
        let table = self.norm.table();
        let threads = self.config.threads;
        let batch = self.config.batch;
        let steps = n.div_ceil(batch);
        let t0 = Instant::now();
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);

        let model = RwLock::new(std::mem::replace(&mut self.model, placeholder()));
        let job = RwLock::new(Job::default());
        let barrier = SpinBarrier::new(threads);
        let ctx = Shard {
            model: &model,
            job: &job,
            train,
            order: &order,
            table: &table,
            threads,
            seed: self.config.seed,
            loss: self.config.loss,
            classes,
        };
        let owned = std::mem::take(&mut self.workers);
        let workers = &owned;
        let result = std::thread::scope(|s| -> Result<()> {
            for (t, worker) in workers.iter().enumerate().skip(1) {
                let (ctx, barrier) = (&ctx, &barrier);
                s.spawn(move || {
                    loop {
                        barrier.wait();
                        if ctx.job.read().expect("job lock").stop {
                            break;
                        }
                        ctx.run(t, &mut worker.lock().expect("worker lock"));
                        barrier.wait();
                    }
                });
            }
            let mut outcome = Ok(());
            for b in 0..steps {
                let start = b * batch;
                let len = batch.min(n - start);
                *job.write().expect("job lock") = Job {
                    start,
                    len,
                    step: self.optimizer.steps,
                    stop: false,
                };
                if threads > 1 {
                    barrier.wait();
                }
                ctx.run(0, &mut workers[0].lock().expect("worker lock"));
                if threads > 1 {
                    barrier.wait();
                }
                let mut m = model.write().expect("model lock");
                match self.reduce_and_step(workers, &mut m, len, b, steps) {
                    Ok((l, c)) => {
                        loss_sum += l;
                        correct += c;
                    }
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
                drop(m);
                progress((start + len).min(n), n, loss_sum / (start + len) as f64);
            }
            if threads > 1 {
                job.write().expect("job lock").stop = true;
                barrier.wait();
            }
            outcome
        });
        self.model = model.into_inner().expect("model lock");
        self.workers = owned;
        self.order = order;
        result?;
        let seconds = t0.elapsed().as_secs_f64();
        Ok(EpochStats {
            epoch: self.epoch + 1,
            train_loss: loss_sum / n as f64,
            train_acc: correct as f64 / n as f64,
            test_acc: f64::NAN,
            images_per_sec: n as f64 / seconds,
            seconds,
        })
    }

    /// Sums the shards' gradients into the first non-empty shard (in shard order), folds
    /// batch-norm statistics, and takes the optimizer step.
    fn reduce_and_step(
        &mut self,
        workers: &[Mutex<Worker>],
        model: &mut Model,
        len: usize,
        b: usize,
        steps: usize,
    ) -> Result<(f64, usize)> {
        let (mut loss, mut correct) = (0.0, 0);
        let mut first = None;
        for (t, w) in workers.iter().enumerate() {
            let mut w = w.lock().expect("worker lock");
            if let Some(e) = w.err.take() {
                return Err(e);
            }
            if w.rows == 0 {
                continue;
            }
            loss += w.loss;
            correct += w.correct;
            match first {
                None => first = Some(t),
                Some(f) => {
                    let mut acc = workers[f].lock().expect("worker lock");
                    for (sa, sw) in acc.acc.iter_mut().zip(&w.acc) {
                        for (ga, gw) in sa.grads.iter_mut().zip(&sw.grads) {
                            ga.iter_mut().zip(gw).for_each(|(a, &g)| *a += g);
                        }
                    }
                }
            }
        }
        let f = first.expect("a batch has at least one image");
        // batch-norm running statistics from the whole batch
        for (i, layer) in model.layers_mut().iter_mut().enumerate() {
            if let Layer::BatchNorm2d(bn) = layer {
                let hw = self.plane[i];
                let acc = &mut self.bn_acc[..2 * bn.channels()];
                acc.fill(0.0);
                for w in workers {
                    let w = w.lock().expect("worker lock");
                    if w.rows > 0 {
                        bn.accumulate(&w.ws.states()[i], w.rows, hw, acc);
                    }
                }
                bn.update_running(acc, len * hw);
            }
        }
        let frac = b as f64 / steps as f64;
        let lr = self.config.schedule.lr(self.config.lr, self.epoch, frac);
        let w = workers[f].lock().expect("worker lock");
        self.optimizer.step(model, &w.acc, lr);
        Ok((loss, correct))
    }

    /// Records an epoch's test accuracy and counts it as done.
    pub fn finish_epoch(&mut self, mut stats: EpochStats, test_acc: f64) -> EpochStats {
        stats.test_acc = test_acc;
        self.history.push(EpochRecord {
            epoch: stats.epoch,
            train_loss: stats.train_loss,
            train_acc: stats.train_acc,
            test_acc,
        });
        self.epoch += 1;
        stats
    }
}

/// A barrier that spins before it yields: a training step is a few milliseconds, and
/// waking a thread parked on a futex costs tens of microseconds twice per step.
struct SpinBarrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn new(n: usize) -> Self {
        SpinBarrier {
            n,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    fn wait(&self) {
        let start = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == start {
            if spins < 1 << 14 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// What every thread needs to run its shard of the current job.
struct Shard<'a> {
    model: &'a RwLock<Model>,
    job: &'a RwLock<Job>,
    train: &'a Split,
    order: &'a [u32],
    table: &'a [f32; 256],
    threads: usize,
    seed: u64,
    loss: Loss,
    classes: usize,
}

impl Shard<'_> {
    fn run(&self, t: usize, w: &mut Worker) {
        let job = *self.job.read().expect("job lock");
        let lo = job.start + t * job.len / self.threads;
        let hi = job.start + (t + 1) * job.len / self.threads;
        w.rows = hi - lo;
        w.loss = 0.0;
        w.correct = 0;
        if w.rows == 0 {
            return;
        }
        let model = self.model.read().expect("model lock");
        if let Err(e) = self.forward_backward(&model, &job, lo, hi, w) {
            w.err = Some(e);
        }
    }

    fn forward_backward(
        &self,
        model: &Model,
        job: &Job,
        lo: usize,
        hi: usize,
        w: &mut Worker,
    ) -> Result<()> {
        let per = model.input_shape().len();
        let mb = w.ws.capacity();
        let mut start = lo;
        while start < hi {
            let end = hi.min(start + mb);
            let b = end - start;
            let order = &self.order[start..end];
            for (dst, &i) in w.ws.input_mut(b).chunks_exact_mut(per).zip(order) {
                normalize_into(self.table, self.train.image(i as usize), dst);
            }
            for (l, &i) in w.labels.iter_mut().zip(order) {
                *l = u32::from(self.train.labels[i as usize]);
            }
            let seed = Rng::derive(self.seed, &[0x4452_4f50, job.step, start as u64]).next_u64();
            model.forward_ws(&mut w.ws, b, Some(seed))?;
            let (out, grad) = w.ws.output_and_grad_mut(model, b);
            let labels = &w.labels[..b];
            // the gradient is of the whole batch's mean loss: micro-batches and shards add up
            w.loss += self
                .loss
                .forward_backward(self.classes, job.len, out, labels, grad)?;
            w.correct += out
                .chunks_exact(self.classes)
                .zip(labels)
                .filter(|(row, l)| argmax(row) == **l as usize)
                .count();
            model.backward_ws(&mut w.ws, b)?;
            for (acc, st) in w.acc.iter_mut().zip(w.ws.states_mut()) {
                if start == lo {
                    // the first micro-batch's gradients become the sums without a copy: the
                    // workspace takes the old sums' buffers, which every backward pass
                    // overwrites
                    std::mem::swap(&mut acc.grads, &mut st.grads);
                } else {
                    for (a, g) in acc.grads.iter_mut().zip(&st.grads) {
                        a.iter_mut().zip(g).for_each(|(a, &g)| *a += g);
                    }
                }
            }
            start = end;
        }
        Ok(())
    }
}

/// Images per forward/backward pass within a shard of `shard` images. The activations
/// of a micro-batch of 16 LeNet-sized images fit the L2 cache (`examples/layer_times`
/// ran 16 images 1.3x faster per image than 64 with another job on the other core; whole
/// epochs showed no difference above this machine's noise); the gradients of the
/// micro-batches are summed, the same mathematics in another summation order. Models with batch
/// normalisation take the whole shard in one pass, so that its batch statistics are the
/// shard's.
pub fn micro_batch(model: &Model, shard: usize) -> usize {
    const MICRO: usize = 16;
    if model
        .layers()
        .iter()
        .any(|l| matches!(l, Layer::BatchNorm2d(_)))
    {
        shard
    } else {
        shard.min(MICRO)
    }
}

/// A stand-in while the model is lent to the threads of an epoch.
fn placeholder() -> Model {
    Model::new(Shape::Flat(1), vec![Layer::Relu]).expect("a valid model")
}

/// Accuracy and confusion matrix (`[true][predicted]` counts) of `model` on `split`,
/// evaluated on `threads` threads.
///
/// # Errors
/// Images that do not fit the model's input, a label the model has no output for.
pub fn evaluate(
    model: &Model,
    split: &Split,
    norm: &Normalize,
    threads: usize,
) -> Result<(f64, Vec<Vec<u64>>)> {
    let per = model.input_shape().len();
    if split.rows * split.cols != per {
        return Err(Error::invalid(format!(
            "images of {}x{} do not fit the model input {}",
            split.rows,
            split.cols,
            model.input_shape()
        )));
    }
    let classes = model.output_shape().len();
    if let Some(&l) = split.labels.iter().find(|&&l| usize::from(l) >= classes) {
        return Err(Error::invalid(format!(
            "label {l} in the data, but the model has {classes} outputs"
        )));
    }
    let n = split.len();
    let threads = threads.clamp(1, n.max(1));
    let table = norm.table();
    let parts: Vec<Result<Vec<Vec<u64>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let table = &table;
                s.spawn(move || -> Result<Vec<Vec<u64>>> {
                    let (lo, hi) = (t * n / threads, (t + 1) * n / threads);
                    let mut conf = vec![vec![0u64; classes]; classes];
                    if lo == hi {
                        return Ok(conf);
                    }
                    let mut ws = Workspace::inference(model, 64.min(hi - lo))?;
                    let cap = ws.capacity();
                    let mut i = lo;
                    while i < hi {
                        let b = cap.min(hi - i);
                        for (j, dst) in ws.input_mut(b).chunks_exact_mut(per).enumerate() {
                            normalize_into(table, split.image(i + j), dst);
                        }
                        model.forward_ws(&mut ws, b, None)?;
                        for (j, row) in ws.output(model, b).chunks_exact(classes).enumerate() {
                            conf[usize::from(split.labels[i + j])][argmax(row)] += 1;
                        }
                        i += b;
                    }
                    Ok(conf)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("evaluation thread"))
            .collect()
    });
    let mut conf = vec![vec![0u64; classes]; classes];
    for p in parts {
        for (row, prow) in conf.iter_mut().zip(p?) {
            row.iter_mut().zip(prow).for_each(|(a, b)| *a += b);
        }
    }
    let right: u64 = (0..classes).map(|c| conf[c][c]).sum();
    Ok((right as f64 / n.max(1) as f64, conf))
}
