//! The training loop: mini-batches split across threads, gradients summed in a fixed
//! order, one optimizer step per batch (evaluation: [`mod@crate::evaluate`]).
//!
//! With `threads = T`, each batch is cut into `T` contiguous shards; worker threads
//! (spawned once per epoch, woken by a barrier each step) run forward and backward on
//! their shard in their own [`Workspace`]; then every thread takes the optimizer step
//! on its own copy of the model (the main thread on the trainer's), each summing the
//! shards' gradients in shard order, element by element, as it goes: the copies stay
//! equal bit for bit, and a fixed seed and thread count give bit-identical weights.
//! Nothing is allocated per step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Normalize, Split, epoch_order, normalize_into};
use crate::error::{Error, Result};
use crate::layers::{Init, Layer, LayerState, Shape};
use crate::loss::{Loss, argmax};
use crate::model::Model;
use crate::optim::{Optimizer, OptimizerKind, Schedule};
use crate::rng::Rng;
use crate::threads::{SpinBarrier, panic_message, read, write};
use crate::workspace::Workspace;

pub use crate::evaluate::{check_evaluate_budget, evaluate};

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
    /// far faster that way than with SGD at 0.05), and `resnet8` and `mobilenet`, which
    /// do too (MLPerf Tiny trains its ResNet-8 with Adam at 0.001).
    pub fn for_model(preset: &str) -> TrainConfig {
        let mut c = TrainConfig::default();
        if matches!(preset, "fmnist" | "resnet8" | "mobilenet") {
            c.optimizer = OptimizerKind::ADAM;
            c.lr = 1e-3;
        }
        c
    }

    /// Checks the ranges: those of the flags that set each field (the same checks apply
    /// to a recipe read from a checkpoint).
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
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(Error::invalid("threads must be in 1..=256"));
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return Err(Error::invalid(format!(
                "weight decay {}: must be in [0, 1)",
                self.weight_decay
            )));
        }
        self.optimizer.validate()?;
        self.schedule.validate()
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
    /// `acc` as the other threads read it, written by [`cnnkit_kernels::stream_copy`] (with
    /// more than one thread), so this thread's next step never writes lines another core
    /// holds (docs/log.md, "Measurements behind constants"; `cnnkit train --threads 2`).
    outbox: Vec<LayerState>,
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
    /// Learning rate of the step.
    lr: f32,
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
    workers: Vec<RwLock<Worker>>,
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
        crate::budget::check(
            &format!(
                "training with {} thread(s) and batch {}",
                config.threads, config.batch
            ),
            Self::bytes(&model, &optimizer, &config)?,
        )?;
        let workers = (0..config.threads)
            .map(|_| {
                let ws = Workspace::new(&model, cap)?;
                let acc: Vec<LayerState> = ws
                    .states()
                    .iter()
                    .map(|st| LayerState {
                        grads: st.grads.clone(),
                        ..LayerState::default()
                    })
                    .collect();
                Ok(RwLock::new(Worker {
                    ws,
                    outbox: if config.threads > 1 {
                        acc.clone()
                    } else {
                        Vec::new()
                    },
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
            plane: (0..model.layers().len())
                .map(|i| match model.input_shape_of(i) {
                    Shape::Image { h, w, .. } => h * w,
                    Shape::Flat(_) => 1,
                })
                .collect(),
            model,
        })
    }

    /// The bytes the per-thread buffers of training `model` with `config` take: each
    /// thread's workspace and gradient sums (and outbox), and every thread but this one's
    /// copy of the model and its optimizer state. Computed without allocating.
    ///
    /// # Errors
    /// When the sizes overflow.
    pub fn bytes(model: &Model, optimizer: &Optimizer, config: &TrainConfig) -> Result<u64> {
        let t = config.threads as u64;
        let cap = micro_batch(model, config.batch.div_ceil(config.threads));
        let params: u64 = model
            .state_dict()
            .iter()
            .map(|(_, t)| t.len() as u64 * 4)
            .sum();
        let grads = model.num_params() as u64 * 4;
        let state = grads * optimizer.kind.buffer_names().len() as u64;
        let outbox = if t > 1 { grads } else { 0 };
        let ws = Workspace::bytes(model, cap, true)?;
        Ok(t * (ws + grads + outbox) + (t - 1) * (params + state))
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
        if train.pixels() != per || train.shape() != self.model.input_shape() {
            return Err(Error::invalid(format!(
                "images of {} do not fit the model input {}",
                train.shape(),
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

        let job = RwLock::new(Job::default());
        let barrier = SpinBarrier::new(threads);
        let panic = std::sync::Mutex::new(None);
        let ctx = Shard {
            job: &job,
            panic: &panic,
            train,
            order: &order,
            table: &table,
            threads,
            seed: self.config.seed,
            loss: self.config.loss,
            classes,
        };
        // every other thread steps its own copy of the model, from all shards' gradients,
        // as this thread steps `self.model`: the copies stay equal bit for bit, and no
        // thread writes weights another one reads (which cost 4x the step's time on this
        // machine, the cores invalidating each other's cached lines)
        let replicas: Vec<(Model, Optimizer)> = (1..threads)
            .map(|_| (self.model.clone(), self.optimizer.clone()))
            .collect();
        let owned = std::mem::take(&mut self.workers);
        let workers = &owned;
        let result = std::thread::scope(|s| -> Result<()> {
            for (t, (mut model, mut optimizer)) in (1..threads).zip(replicas) {
                let (ctx, barrier) = (&ctx, &barrier);
                s.spawn(move || {
                    // a panic here (a bug) breaks the barrier, so that no thread waits
                    // for this one forever; the main thread reports it as an error
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        loop {
                            if !barrier.wait() {
                                break;
                            }
                            let job = *read(ctx.job);
                            if job.stop {
                                break;
                            }
                            ctx.run(t, &job, &model, &mut write(&workers[t]));
                            if !barrier.wait() {
                                break;
                            }
                            let shards = Shards::of(workers);
                            if shards.err.is_none() {
                                let (grads, k) = shards.grads(t);
                                optimizer.step_sum(&mut model, &grads[..k], job.lr);
                            }
                        }
                    }));
                    if let Err(p) = run {
                        ctx.panicked(t, &*p);
                        barrier.break_all();
                    }
                });
            }
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
                for b in 0..steps {
                    let start = b * batch;
                    let len = batch.min(n - start);
                    let frac = b as f64 / steps as f64;
                    let job = Job {
                        start,
                        len,
                        step: self.optimizer.steps,
                        lr: self.config.schedule.lr(self.config.lr, self.epoch, frac),
                        stop: false,
                    };
                    *write(ctx.job) = job;
                    if threads > 1 && !barrier.wait() {
                        return Err(ctx.panic_error());
                    }
                    ctx.run(0, &job, &self.model, &mut write(&workers[0]));
                    if threads > 1 && !barrier.wait() {
                        return Err(ctx.panic_error());
                    }
                    // (on an error the other threads skip the step too and wait for a job)
                    let (l, c) = self.reduce_and_step(workers, len, job.lr)?;
                    loss_sum += l;
                    correct += c;
                    progress((start + len).min(n), n, loss_sum / (start + len) as f64);
                }
                Ok(())
            }));
            let outcome = match run {
                Ok(r) => r,
                Err(p) => {
                    ctx.panicked(0, &*p);
                    barrier.break_all();
                    Err(ctx.panic_error())
                }
            };
            if threads > 1 {
                write(ctx.job).stop = true;
                barrier.wait();
            }
            outcome
        });
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

    /// Gathers the shards' losses, folds batch-norm statistics, and steps `self.model`
    /// with the sum of the shards' gradients (in shard order).
    fn reduce_and_step(
        &mut self,
        workers: &[RwLock<Worker>],
        len: usize,
        lr: f32,
    ) -> Result<(f64, usize)> {
        let shards = Shards::of(workers);
        if let Some(t) = shards.err {
            drop(shards);
            let mut w = write(&workers[t]);
            return Err(w
                .err
                .take()
                .unwrap_or_else(|| Error::invalid("internal error: a shard failed")));
        }
        let (mut loss, mut correct) = (0.0, 0);
        for w in shards.live() {
            loss += w.loss;
            correct += w.correct;
        }
        // batch-norm running statistics from the whole batch
        for (i, layer) in self.model.layers_mut().iter_mut().enumerate() {
            if let Layer::BatchNorm2d(bn) = layer {
                let hw = self.plane[i];
                let acc = &mut self.bn_acc[..2 * bn.channels()];
                acc.fill(0.0);
                for w in shards.live() {
                    bn.accumulate(&w.ws.states()[i], w.rows, hw, acc);
                }
                bn.update_running(acc, len * hw);
            }
        }
        let (grads, k) = shards.grads(0);
        self.optimizer.step_sum(&mut self.model, &grads[..k], lr);
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

/// The training thread that panics at its next step (for the test that proves a panic
/// never hangs the process); `usize::MAX`: none.
static PANIC_IN_THREAD: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Makes training thread `t` panic at its next step (`None`: no thread). For tests.
#[doc(hidden)]
pub fn inject_panic(t: Option<usize>) {
    PANIC_IN_THREAD.store(t.unwrap_or(usize::MAX), Ordering::Relaxed);
}

/// Most threads a batch is split across.
const MAX_THREADS: usize = 256;

/// The threads the command-line tool uses when `--threads` is not given: the cores this
/// process may run on ([`std::thread::available_parallelism`], which honours CPU affinity
/// and cgroup quotas), at most 256; 1 if that cannot be told.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
}

/// Read access to every shard's results after a step's forward and backward passes.
struct Shards<'a> {
    guards: [Option<RwLockReadGuard<'a, Worker>>; MAX_THREADS],
    /// The first shard that failed.
    err: Option<usize>,
}

impl<'a> Shards<'a> {
    fn of(workers: &'a [RwLock<Worker>]) -> Self {
        let mut guards = std::array::from_fn(|_| None);
        let mut err = None;
        for (t, (g, w)) in guards.iter_mut().zip(workers).enumerate() {
            let w = read(w);
            if w.err.is_some() && err.is_none() {
                err = Some(t);
            }
            *g = Some(w);
        }
        Shards { guards, err }
    }

    /// The shards that had images, in order.
    fn live(&self) -> impl Iterator<Item = &Worker> {
        self.guards
            .iter()
            .flatten()
            .map(|w| &**w)
            .filter(|w| w.rows > 0)
    }

    /// The live shards' gradients, in order: the first `k` of the array; shard `own`'s
    /// from its own sums, the others' from their outboxes.
    fn grads(&self, own: usize) -> ([&[LayerState]; MAX_THREADS], usize) {
        let mut out: [&[LayerState]; MAX_THREADS] = [&[]; MAX_THREADS];
        let mut k = 0;
        for (t, w) in self.guards.iter().flatten().enumerate() {
            if w.rows > 0 {
                out[k] = if t == own { &w.acc } else { &w.outbox };
                k += 1;
            }
        }
        (out, k)
    }
}

/// What every thread needs to run its shard of the current job.
struct Shard<'a> {
    job: &'a RwLock<Job>,
    /// The first panic of a thread: its number and message.
    panic: &'a std::sync::Mutex<Option<(usize, String)>>,
    train: &'a Split,
    order: &'a [u32],
    table: &'a [f32; 256],
    threads: usize,
    seed: u64,
    loss: Loss,
    classes: usize,
}

impl Shard<'_> {
    /// Records that thread `t` panicked with `payload`.
    fn panicked(&self, t: usize, payload: &(dyn std::any::Any + Send)) {
        let msg = panic_message(payload);
        let mut p = self
            .panic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.get_or_insert((t, msg));
    }

    /// The error that reports the first panic.
    fn panic_error(&self) -> Error {
        let p = self
            .panic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (t, msg) = p.clone().unwrap_or((0, "(unknown)".into()));
        Error::invalid(format!(
            "internal error: training thread {t} panicked ({msg}); this is a bug in cnnkit, \
             please report it. Nothing was saved after the last epoch."
        ))
    }

    fn run(&self, t: usize, job: &Job, model: &Model, w: &mut Worker) {
        if PANIC_IN_THREAD.load(Ordering::Relaxed) == t {
            PANIC_IN_THREAD.store(usize::MAX, Ordering::Relaxed);
            panic!("injected panic in training thread {t}");
        }
        let lo = job.start + t * job.len / self.threads;
        let hi = job.start + (t + 1) * job.len / self.threads;
        w.rows = hi - lo;
        w.loss = 0.0;
        w.correct = 0;
        if w.rows == 0 {
            return;
        }
        if let Err(e) = self.forward_backward(model, job, lo, hi, w) {
            w.err = Some(e);
            return;
        }
        if !w.loss.is_finite() {
            // nothing steps with this gradient: every thread sees the error first
            w.err = Some(Error::Diverged(format!(
                "the loss of step {} is {} (shard {t}); the learning rate ({}) may be too \
                 high for this model",
                job.step + 1,
                w.loss,
                job.lr
            )));
            return;
        }
        for (o, a) in w.outbox.iter_mut().zip(&w.acc) {
            for (o, a) in o.grads.iter_mut().zip(&a.grads) {
                if let Err(e) = cnnkit_kernels::stream_copy(a, o) {
                    w.err = Some(e.into());
                    return;
                }
            }
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
