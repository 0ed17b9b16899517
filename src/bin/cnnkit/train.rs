//! `cnnkit train`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use cnnkit::data::{self, Dataset, Normalize};
use cnnkit::{Error, Loss, Model, OptimizerKind, Result, Schedule, TrainConfig, Trainer, evaluate};
use cnnkit::{checkpoint, fsio};
use indicatif::{ProgressBar, ProgressStyle};

use crate::pct;

/// Arguments of `cnnkit train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory with the four IDX files (MNIST format, gzipped or not).
    #[arg(long, default_value = data::DEFAULT_DIR)]
    data: PathBuf,
    /// `lenet5`, `fmnist`, `resnet8`, `mobilenet`, or a model spec such as "conv(8,3,pad=1) relu maxpool(2) flatten linear(10)" (blocks: "res[conv(8,3,pad=1) bn relu]", "cat[A | B]").
    #[arg(long)]
    model: Option<String>,
    /// Epochs in all (a resumed run continues up to this many) [default: 10].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    epochs: Option<u32>,
    /// Images per step [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    batch: Option<u32>,
    /// Base learning rate [default: 0.05 for sgd, 0.001 for adam/adamw].
    #[arg(long)]
    lr: Option<f32>,
    /// `sgd` (momentum 0.9, Nesterov), `adam` or `adamw` [default: sgd; adam for fmnist, resnet8 and mobilenet].
    #[arg(long)]
    optimizer: Option<String>,
    /// Weight decay [default: 5e-4].
    #[arg(long)]
    weight_decay: Option<f32>,
    /// `cosine`, `const` or `step:EVERY:GAMMA` [default: cosine].
    #[arg(long)]
    schedule: Option<String>,
    /// `ce` (softmax cross-entropy) or `mse` (against one-hot labels) [default: ce].
    #[arg(long)]
    loss: Option<String>,
    /// Threads each batch is split across [default: the cores available to this process;
    /// with --resume, the checkpoint's]. The result is the same, bit for bit, for the same
    /// thread count on the same kind of CPU (and different for another thread count: the
    /// gradients are summed in shards; or another CPU kind: its kernels round differently).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Weight initialisation of a new model: `kaiming`, `kaiming-normal`, `xavier`,
    /// `xavier-normal` [default: kaiming].
    #[arg(long)]
    init: Option<String>,
    /// Seed of initialisation, shuffling and dropout [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Write the checkpoint here after every epoch (and the optimizer state to FILE.optim).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Continue from this checkpoint (and FILE.optim) with its recipe; flags given
    /// override it. Saves back to it unless --save says otherwise. An ONNX file (`*.onnx`)
    /// is fine-tuned from a fresh optimizer with the default recipe, and needs --save.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// One JSON object per epoch instead of text.
    #[arg(long)]
    json: bool,
    /// Let --save replace a file that is not a cnnkit checkpoint.
    #[arg(long)]
    overwrite: bool,
}

fn parse_config(a: &Args, base: Option<TrainConfig>) -> Result<TrainConfig> {
    let preset = a.model.as_deref().unwrap_or("lenet5");
    let mut c = base
        .clone()
        .unwrap_or_else(|| TrainConfig::for_model(preset));
    if let Some(o) = &a.optimizer {
        c.optimizer = OptimizerKind::from_name(o).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown optimizer `{o}` (expected sgd, adam or adamw)"
            ))
        })?;
        if a.lr.is_none() && base.is_none() {
            c.lr = match c.optimizer {
                OptimizerKind::Sgd { .. } => 0.05,
                OptimizerKind::Adam { .. } => 1e-3,
            };
        }
    }
    if let Some(e) = a.epochs {
        c.epochs = e as usize;
        if let Schedule::Cosine { epochs } = &mut c.schedule {
            *epochs = c.epochs;
        }
    }
    if let Some(b) = a.batch {
        c.batch = b as usize;
    }
    if let Some(lr) = a.lr {
        if !(lr > 0.0 && lr <= 10.0) {
            return Err(Error::Invalid(format!("--lr {lr}: must be in (0, 10]")));
        }
        c.lr = lr;
    }
    if let Some(wd) = a.weight_decay {
        if !(0.0..1.0).contains(&wd) {
            return Err(Error::Invalid(format!(
                "--weight-decay {wd}: must be in [0, 1)"
            )));
        }
        c.weight_decay = wd;
    }
    if let Some(s) = &a.schedule {
        c.schedule = Schedule::parse(s, c.epochs)?;
    }
    if let Some(l) = &a.loss {
        c.loss = Loss::from_name(l)
            .ok_or_else(|| Error::Invalid(format!("unknown loss `{l}` (expected ce or mse)")))?;
    }
    if let Some(t) = a.threads {
        c.threads = usize::from(t);
    } else if base.is_none() {
        c.threads = cnnkit::train::available_threads();
    }
    if let Some(s) = a.seed {
        c.seed = s;
    }
    if let Some(i) = &a.init {
        c.init = cnnkit::Init::from_name(i).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown init `{i}` (expected kaiming, kaiming-normal, xavier or xavier-normal)"
            ))
        })?;
    }
    c.validate()?;
    Ok(c)
}

/// Checks before the first epoch that `--save PATH` (and its optimizer files) can be
/// written: a file name in a writable directory, and nothing there but cnnkit's own
/// checkpoints unless `--overwrite`.
fn check_save(path: &Path, overwrite: bool) -> Result<()> {
    let what = "a cnnkit checkpoint";
    fsio::check_destination(
        path,
        "--save",
        what,
        overwrite,
        checkpoint::looks_like_checkpoint,
    )?;
    for p in [
        checkpoint::optim_path(path),
        checkpoint::optim_next_path(path),
    ] {
        if std::fs::symlink_metadata(&p).is_ok() {
            fsio::check_destination(
                &p,
                "--save",
                what,
                overwrite,
                checkpoint::looks_like_checkpoint,
            )?;
        }
    }
    Ok(())
}

/// A diverged run's error, saying which checkpoint it kept.
fn kept(err: Error, save: Option<&Path>, epoch: usize) -> Error {
    let Error::Diverged(msg) = err else {
        return err;
    };
    let tail = match save {
        Some(p) if epoch > 0 && p.exists() => format!(
            "; nothing was saved: {} still holds epoch {epoch}",
            p.display()
        ),
        Some(p) => format!("; nothing was saved to {}", p.display()),
        None => String::new(),
    };
    Error::Diverged(format!("{msg}{tail}"))
}

/// `cnnkit train`.
pub fn run(a: &Args) -> Result<()> {
    // check everything the arguments alone decide before reading 50 MB of data
    if a.resume.is_some() && (a.model.is_some() || a.init.is_some()) {
        return Err(Error::Invalid(
            "--model and --init do not go with --resume: the checkpoint fixes the model".into(),
        ));
    }
    // an ONNX model (from PyTorch, say) is fine-tuned from a fresh optimizer and saved as
    // a checkpoint
    let onnx = a.resume.as_deref().is_some_and(cnnkit::onnx::is_onnx_path);
    if onnx && a.save.is_none() {
        return Err(Error::Invalid(
            "--resume from an ONNX file needs --save FILE: the result is a cnnkit checkpoint"
                .into(),
        ));
    }
    let resumed = match &a.resume {
        Some(path) => {
            let (model, meta) = checkpoint::load_model(path)?;
            let opt = if onnx {
                None
            } else {
                Some(checkpoint::load_optimizer(path, &model, &meta)?)
            };
            Some((model, meta, opt))
        }
        None => None,
    };
    let config = parse_config(a, resumed.as_ref().map(|(_, m, _)| m.config.clone()))?;
    let save = a.save.clone().or_else(|| a.resume.clone());
    if let Some(p) = &save {
        check_save(p, a.overwrite)?;
    }
    let ds = Dataset::load(&a.data)?;
    let input = ds.train.shape();
    let classes = ds.class_names();
    let mut trainer = match resumed {
        Some((model, meta, opt)) => {
            if model.input_shape() != input {
                return Err(Error::Invalid(format!(
                    "the checkpoint's model takes {}, the data has {input} images",
                    model.input_shape()
                )));
            }
            if meta.epoch >= config.epochs {
                return Err(Error::Invalid(format!(
                    "the checkpoint has {} epoch(s) already; pass --epochs above that to continue",
                    meta.epoch
                )));
            }
            let opt = match opt {
                Some(o) => o,
                None => cnnkit::Optimizer::new(config.optimizer, config.weight_decay, &model)?,
            };
            Trainer::resume(model, opt, config, meta.norm(), meta.epoch, meta.history)?
        }
        None => {
            let spec = a.model.as_deref().unwrap_or("lenet5");
            let model = Model::from_spec_with(spec, input, config.init, config.seed)?;
            Trainer::new(model, config, Normalize::of(&ds.train))?
        }
    };
    cnnkit::train::check_evaluate_budget(&trainer.model, ds.test.len(), trainer.config.threads)?;
    let classes_out = trainer.model.output_shape().len();
    if ds.classes > classes_out {
        return Err(Error::Invalid(format!(
            "the data has {} classes, the model only {classes_out} outputs",
            ds.classes
        )));
    }
    if !a.json {
        outln!(
            "model {} ({} parameters), {} training / {} test images, batch {}, {} thread(s), kernels: {}",
            trainer.model.spec(),
            trainer.model.num_params(),
            ds.train.len(),
            ds.test.len(),
            trainer.config.batch,
            trainer.config.threads,
            cnnkit::kernels::arch::active().name(),
        );
    }
    let epochs = trainer.config.epochs;
    while trainer.epoch < epochs {
        let e = trainer.epoch + 1;
        let bar = if a.json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(ds.train.len() as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{e}/{epochs}"));
        let mut last = 0;
        let stats = trainer
            .train_epoch(&ds.train, |done, _, loss| {
                if done - last >= 2048 || done == ds.train.len() {
                    bar.set_position(done as u64);
                    bar.set_message(format!("loss {loss:.4}"));
                    last = done;
                }
            })
            .map_err(|err| kept(err, save.as_deref(), trainer.epoch))?;
        bar.finish_and_clear();
        let (acc, _) = evaluate(
            &trainer.model,
            &ds.test,
            &trainer.norm,
            trainer.config.threads,
        )?;
        let stats = trainer.finish_epoch(stats, acc);
        if let Some(path) = &save {
            checkpoint::save(path, &trainer, &classes)
                .map_err(|err| kept(err, Some(path), trainer.epoch - 1))?;
        }
        if a.json {
            outln!(
                "{}",
                serde_json::to_string(&stats).map_err(|e| Error::Invalid(e.to_string()))?
            );
        } else {
            outln!(
                "epoch {e}/{epochs}: loss {:.4}, train {}, test {}, {:.0} images/s, {:.1} s",
                stats.train_loss,
                pct(stats.train_acc),
                pct(stats.test_acc),
                stats.images_per_sec,
                stats.seconds
            );
        }
    }
    if let (Some(path), false) = (&save, a.json) {
        outln!("saved {}", path.display());
    }
    Ok(())
}
