//! Optimizers (SGD with momentum and Nesterov, Adam, AdamW) and learning-rate schedules,
//! with PyTorch's update rules so that a recipe carries over.

use serde::{Deserialize, Serialize};

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
        let ok = match kind {
            OptimizerKind::Sgd { momentum, .. } => (0.0..1.0).contains(&momentum),
            OptimizerKind::Adam {
                beta1, beta2, eps, ..
            } => (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0,
        };
        if !ok || !(0.0..1.0).contains(&weight_decay) {
            return Err(Error::invalid(format!(
                "optimizer hyperparameters out of range: {kind:?}, weight decay {weight_decay}"
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
    pub fn step(&mut self, model: &mut Model, grads: &[LayerState], lr: f32) {
        self.steps += 1;
        let wd = self.weight_decay;
        let t = self.steps as i32;
        for ((layer, st), bufs) in model
            .layers_mut()
            .iter_mut()
            .zip(grads)
            .zip(&mut self.state)
        {
            for (i, (g, b)) in st.grads.iter().zip(bufs.iter_mut()).enumerate() {
                let p = layer.param_mut(i).data_mut();
                match self.kind {
                    OptimizerKind::Sgd { momentum, nesterov } => {
                        if momentum == 0.0 {
                            for (w, &d) in p.iter_mut().zip(g) {
                                *w -= lr * (d + wd * *w);
                            }
                            continue;
                        }
                        let first = t == 1;
                        for ((w, &d), m) in p.iter_mut().zip(g).zip(b[0].iter_mut()) {
                            let d = d + wd * *w;
                            *m = if first { d } else { momentum * *m + d };
                            let u = if nesterov { d + momentum * *m } else { *m };
                            *w -= lr * u;
                        }
                    }
                    OptimizerKind::Adam {
                        beta1,
                        beta2,
                        eps,
                        decoupled,
                    } => {
                        // (in f64 with `powf`, as PyTorch's Python floats: `powi` has no
                        // fixed rounding, so it differed between debug and release builds)
                        let bc1 = bias_correction(beta1, t);
                        let bc2_sqrt = bias_correction(beta2, t).sqrt();
                        let step = lr / bc1;
                        let (m1, m2) = b.split_at_mut(1);
                        for (((w, &d), m), v) in p
                            .iter_mut()
                            .zip(g)
                            .zip(m1[0].iter_mut())
                            .zip(m2[0].iter_mut())
                        {
                            let d = if decoupled {
                                *w *= 1.0 - lr * wd;
                                d
                            } else {
                                d + wd * *w
                            };
                            *m = beta1 * *m + (1.0 - beta1) * d;
                            *v = beta2 * *v + (1.0 - beta2) * d * d;
                            *w -= step * *m / (v.sqrt() / bc2_sqrt + eps);
                        }
                    }
                }
            }
        }
    }
}

/// Adam's bias correction `1 - beta^t`, computed in `f64` (PyTorch computes it in Python
/// floats) and rounded once.
fn bias_correction(beta: f32, t: i32) -> f32 {
    (1.0 - f64::from(beta).powf(f64::from(t))) as f32
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
                if every == 0 || !(gamma > 0.0 && gamma <= 1.0) || it.next().is_some() {
                    return Err(bad());
                }
                Ok(Schedule::Step { every, gamma })
            }
        }
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
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every) as i32),
            Schedule::Cosine { epochs } => {
                let t = ((epoch as f64 + frac) / epochs.max(1) as f64).min(1.0);
                (f64::from(base) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }
}
