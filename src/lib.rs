//! # cnnkit
//!
//! Convolutional networks on the CPU, over the `no_std` kernels of [`cnnkit_kernels`]
//! (re-exported as [`kernels`]): an owned [`Tensor`], [`layers`] with forward and
//! backward passes, a sequential [`Model`] built in code or from a text spec, losses,
//! optimizers and schedules, an IDX (MNIST-format) reader, a multi-threaded training
//! loop whose results are reproducible, and safetensors checkpoints named as PyTorch's
//! `state_dict`.
//!
//! ```no_run
//! use cnnkit::{Dataset, Model, Normalize, Shape, TrainConfig, Trainer, evaluate};
//! let data = Dataset::load("/usr/share/datasets/fashion-mnist".as_ref())?;
//! let model = Model::from_spec("lenet5", Shape::Image { c: 1, h: 28, w: 28 }, 1)?;
//! let mut t = Trainer::new(model, TrainConfig::default(), Normalize::of(&data.train))?;
//! let stats = t.train_epoch(&data.train, |_, _, _| {})?;
//! let (acc, _) = evaluate(&t.model, &data.test, &t.norm, 1)?;
//! t.finish_epoch(stats, acc);
//! # Ok::<(), cnnkit::Error>(())
//! ```

pub use cnnkit_kernels as kernels;

/// Tells the kernels what they cannot find out without an operating system, once per
/// process: today whether an aarch64 CPU has the dot product instructions (`sdot`), which
/// the int8 convolution then uses (a build with `+dotprod` uses them always). Called by
/// everything here that runs int8 kernels; a program calling the kernels directly can
/// call it too.
pub fn detect_cpu() {
    #[cfg(target_arch = "aarch64")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                // SAFETY: the CPU has DotProd (detected just now).
                unsafe { cnnkit_kernels::arch::set_aarch64_dotprod(true) };
            }
        });
    }
}

#[doc(hidden)]
pub mod bench;
pub mod budget;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod export;
pub mod fsio;
pub mod fusion;
pub mod layers;
pub mod loss;
pub mod model;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod optim;
#[cfg(feature = "images")]
pub mod pixels;
pub mod quant;
pub mod rng;
pub mod spec;
pub mod tensor;
mod threads;
pub mod train;
pub mod workspace;

pub use data::{Dataset, Normalize, Split};
pub use error::{Error, Result};
pub use evaluate::evaluate;
pub use layers::{Init, Layer, Shape};
pub use loss::Loss;
pub use model::Model;
pub use optim::{Optimizer, OptimizerKind, Schedule};
pub use rng::Rng;
pub use tensor::Tensor;
pub use train::{EpochRecord, EpochStats, TrainConfig, Trainer};
pub use workspace::Workspace;
