//! Optimizers (SGD with momentum and Nesterov, Adam, AdamW) and learning-rate schedules,
//! with PyTorch's update rules so that a recipe carries over.

use serde::{Deserialize, Serialize};

use cnnkit_kernels as k;

use crate::error::{Error, Result};
use crate::layers::LayerState;
use crate::model::Model;

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.SGD(momentum, nesterov, weight_decay)`.
    Sgd {
        /// Momentum (0 for plain SGD).
        momentum: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// `torch.optim.Adam` (`decoupled = false`, L2 in the gradient) or `AdamW`
    /// (`decoupled = true`, decay applied to the weights).
    Adam {
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
        /// AdamW's decoupled weight decay.
        decoupled: bool,
    },
}

impl OptimizerKind {
    /// SGD with momentum 0.9, Nesterov.
    pub const SGD_NESTEROV: OptimizerKind = OptimizerKind::Sgd {
        momentum: 0.9,
        nesterov: true,
    };
    /// Adam with PyTorch's defaults.
    pub const ADAM: OptimizerKind = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        decoupled: false,
    };
    /// AdamW with PyTorch's defaults.
    pub const ADAMW: OptimizerKind = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        decoupled: true,
    };

    /// `sgd` (momentum 0.9, Nesterov), `adam` or `adamw`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "sgd" => Some(Self::SGD_NESTEROV),
            "adam" => Some(Self::ADAM),
            "adamw" => Some(Self::ADAMW),
            _ => None,
        }
    }

    /// Checks the hyperparameters: momentum and betas in `[0, 1)`, `eps` positive and
    /// finite.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the value.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            OptimizerKind::Sgd { momentum, .. } => (0.0..1.0).contains(&momentum),
            OptimizerKind::Adam {
                beta1, beta2, eps, ..
            } => {
                (0.0..1.0).contains(&beta1)
                    && (0.0..1.0).contains(&beta2)
                    && eps > 0.0
                    && eps.is_finite()
            }
        };
        if !ok {
            return Err(Error::invalid(format!(
                "optimizer hyperparameters out of range: {self:?}"
            )));
        }
        Ok(())
    }

    /// The names of the per-parameter state buffers (PyTorch's optimizer state keys).
    pub fn buffer_names(&self) -> &'static [&'static str] {
        match self {
            OptimizerKind::Sgd { momentum, .. } if *momentum == 0.0 => &[],
            OptimizerKind::Sgd { .. } => &["momentum_buffer"],
            OptimizerKind::Adam { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }
}

/// An optimizer and its state for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    /// The update rule.
    pub kind: OptimizerKind,
    /// Weight decay (L2 for SGD and Adam, decoupled for AdamW).
    pub weight_decay: f32,
    /// Steps taken.
    pub steps: u64,
    /// `state[layer][param][buffer]`, each as long as the parameter.
    pub state: Vec<Vec<Vec<Vec<f32>>>>,
}

impl Optimizer {
    /// A fresh optimizer (zeroed state) for `model`.
    ///
    /// # Errors
    /// When a hyperparameter is out of range.
    pub fn new(kind: OptimizerKind, weight_decay: f32, model: &Model) -> Result<Self> {
        kind.validate()?;
        if !(0.0..1.0).contains(&weight_decay) {
            return Err(Error::invalid(format!(
                "weight decay {weight_decay}: must be in [0, 1)"
            )));
        }
        let nbuf = kind.buffer_names().len();
        let state = model
            .layers()
            .iter()
            .map(|l| {
                (0..l.param_count())
                    .map(|i| vec![vec![0.0; l.param(i).1.len()]; nbuf])
                    .collect()
            })
            .collect();
        Ok(Optimizer {
            kind,
            weight_decay,
            steps: 0,
            state,
        })
    }

    /// One update of every parameter of `model` with learning rate `lr` from the
    /// gradients in `grads` (one [`LayerState`] per layer). Allocates nothing.
    ///
    /// # Panics
    /// When `grads` does not hold a gradient of the length of each parameter of `model`.
    pub fn step(&mut self, model: &mut Model, grads: &[LayerState], lr: f32) {
        self.step_sum(model, &[grads], lr);
    }

    /// [`Optimizer::step`] with the gradient `shards[0] + shards[1] + ...` (summed in
    /// that order, element by element), without writing the sum anywhere: the training
    /// loop's threads each step their own copy of the model from all shards' gradients.
    /// Allocates nothing.
    ///
    /// # Panics
    /// When `shards` is empty, or a shard has no gradient of the length of a parameter
    /// of `model` (as [`Optimizer::step`]).
    pub fn step_sum(&mut self, model: &mut Model, shards: &[&[LayerState]], lr: f32) {
        assert!(!shards.is_empty(), "a step needs at least one gradient");
        self.steps += 1;
        let rule = Rule::new(self.kind, self.weight_decay, self.steps, lr);
        for (l, (layer, bufs)) in model
            .layers_mut()
            .iter_mut()
            .zip(&mut self.state)
            .enumerate()
        {
            for (i, b) in bufs.iter_mut().enumerate() {
                let p = layer.param_mut(i).data_mut();
                if let [one] = shards {
                    rule.apply(p, &one[l].grads[i], b);
                    continue;
                }
                let mut d = [0.0f32; CHUNK];
                for (c, w) in p.chunks_mut(CHUNK).enumerate() {
                    let r = c * CHUNK..c * CHUNK + w.len();
                    let d = &mut d[..w.len()];
                    d.copy_from_slice(&shards[0][l].grads[i][r.clone()]);
                    for s in &shards[1..] {
                        let g = &s[l].grads[i][r.clone()];
                        d.iter_mut().zip(g).for_each(|(d, &g)| *d += g);
                    }
                    rule.apply_range(w, d, b, r);
                }
            }
        }
    }
}

/// Gradient elements summed and applied at a time (on the stack, in L1).
const CHUNK: usize = 256;

/// One step's update rule with its constants: the kernels' parameters.
#[derive(Clone, Copy)]
enum Rule {
    Sgd(k::SgdParams),
    Adam(k::AdamParams),
}

impl Rule {
    fn new(kind: OptimizerKind, wd: f32, steps: u64, lr: f32) -> Self {
        match kind {
            OptimizerKind::Sgd { momentum, nesterov } => Rule::Sgd(k::SgdParams {
                lr,
                momentum,
                nesterov,
                weight_decay: wd,
                first: steps == 1,
            }),
            OptimizerKind::Adam {
                beta1,
                beta2,
                eps,
                decoupled,
            } => {
                // (in f64 with `powf`, as PyTorch's Python floats: `powi` has no fixed
                // rounding, so it differed between debug and release builds)
                let t = steps as f64;
                Rule::Adam(k::AdamParams {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay: wd,
                    decoupled,
                    step_size: lr / bias_correction(beta1, t),
                    bc2_sqrt: bias_correction(beta2, t).sqrt(),
                })
            }
        }
    }

    /// The update of `p` from its gradient `g` and its state buffers `bufs`.
    fn apply(&self, p: &mut [f32], g: &[f32], bufs: &mut [Vec<f32>]) {
        self.apply_range(p, g, bufs, 0..p.len());
    }

    /// The update of `p` (the elements `r` of a parameter) from their gradient `g` and
    /// the elements `r` of the parameter's state buffers `bufs` (the kernels
    /// `sgd_step` and `adam_step`).
    ///
    /// # Panics
    /// When the lengths disagree (a bug: the optimizer sized its buffers from the model).
    fn apply_range(
        &self,
        p: &mut [f32],
        g: &[f32],
        bufs: &mut [Vec<f32>],
        r: std::ops::Range<usize>,
    ) {
        let done = match (self, bufs) {
            (Rule::Sgd(sp), []) => k::sgd_step(sp, p, g, None),
            (Rule::Sgd(sp), [m]) => k::sgd_step(sp, p, g, Some(&mut m[r])),
            (Rule::Adam(ap), [m, v]) => k::adam_step(ap, p, g, &mut m[r.clone()], &mut v[r]),
            _ => unreachable!("SGD keeps at most one buffer, Adam two"),
        };
        done.expect("the optimizer's buffers fit the model");
    }
}

/// Adam's bias correction `1 - beta^t`, computed in `f64` (PyTorch computes it in Python
/// floats) and rounded once.
fn bias_correction(beta: f32, t: f64) -> f32 {
    (1.0 - f64::from(beta).powf(t)) as f32
}

/// A learning-rate schedule over (fractional) epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` every `every` epochs (`StepLR`).
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor per decay.
        gamma: f32,
    },
    /// Cosine annealing from the base rate to 0 over `epochs` epochs, updated every step
    /// (`CosineAnnealingLR` with `T_max` in steps).
    Cosine {
        /// Length of the schedule in epochs.
        epochs: usize,
    },
}

impl Schedule {
    /// `const`, `step:EVERY:GAMMA`, or `cosine` (over `epochs`).
    ///
    /// # Errors
    /// [`Error::Invalid`] for anything else.
    pub fn parse(s: &str, epochs: usize) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "schedule `{s}`: expected `const`, `cosine` or `step:EVERY:GAMMA` (e.g. step:3:0.5)"
            ))
        };
        match s {
            "const" | "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine { epochs }),
            _ => {
                let mut it = s.split(':');
                if it.next() != Some("step") {
                    return Err(bad());
                }
                let every: usize = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                let gamma: f32 = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                let step = Schedule::Step { every, gamma };
                if it.next().is_some() || step.validate().is_err() {
                    return Err(bad());
                }
                Ok(step)
            }
        }
    }

    /// Checks the values [`Schedule::parse`] accepts: `every` and `epochs` in
    /// `1..=100000`, `gamma` in `(0, 1]`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the value.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Schedule::Constant => true,
            Schedule::Step { every, gamma } => {
                (1..=100_000).contains(&every) && gamma > 0.0 && gamma <= 1.0
            }
            Schedule::Cosine { epochs } => (1..=100_000).contains(&epochs),
        };
        if !ok {
            return Err(Error::invalid(format!(
                "schedule {self:?}: `every` and `epochs` must be in 1..=100000, `gamma` in (0, 1]"
            )));
        }
        Ok(())
    }

    /// The text [`Schedule::parse`] takes.
    pub fn name(&self) -> String {
        match *self {
            Schedule::Constant => "const".into(),
            Schedule::Step { every, gamma } => format!("step:{every}:{gamma}"),
            Schedule::Cosine { .. } => "cosine".into(),
        }
    }

    /// The rate at `epoch` (0-based) after `frac` of it (`0 <= frac < 1`).
    pub fn lr(&self, base: f32, epoch: usize, frac: f64) -> f32 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => {
                // (`every` >= 1 once validated; max(1) keeps an unvalidated one from dividing by 0)
                let n = (epoch / every.max(1)).min(i32::MAX as usize) as i32;
                base * gamma.powi(n)
            }
            Schedule::Cosine { epochs } => {
                let t = ((epoch as f64 + frac) / epochs.max(1) as f64).min(1.0);
                (f64::from(base) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }
}
