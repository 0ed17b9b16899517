//! Evaluation: the accuracy and confusion matrix of a model on a data split, images
//! spread over threads (each with its own inference [`Workspace`]), and the memory check
//! a training run makes before its first epoch.

use crate::data::{Normalize, Split, normalize_into};
use crate::error::{Error, Result};
use crate::loss::argmax;
use crate::model::Model;
use crate::quant::AnyModel;
use crate::workspace::Workspace;

/// Checks that [`evaluate`] on `n` images and `threads` threads fits the memory budget
/// (its workspaces and confusion matrices), without allocating: a training run checks it
/// before its first epoch.
///
/// # Errors
/// [`Error::Invalid`] saying what would not fit.
pub fn check_evaluate_budget(model: &Model, n: usize, threads: usize) -> Result<()> {
    let threads = threads.clamp(1, n.max(1));
    let classes = model.output_shape().len();
    let per_thread = Workspace::bytes(model, 64.min(n.max(1)), false)?;
    // (a confusion matrix per thread and one for the sum)
    let confusion = (classes as u64).saturating_mul(classes as u64 * 8);
    crate::budget::check(
        &format!("evaluating {classes} classes on {threads} thread(s)"),
        per_thread
            .saturating_mul(threads as u64)
            .saturating_add(confusion.saturating_mul(threads as u64 + 1)),
    )
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
    if split.shape() != model.input_shape() {
        return Err(Error::invalid(format!(
            "images of {} do not fit the model input {}",
            split.shape(),
            model.input_shape()
        )));
    }
    let classes = model.output_shape().len();
    check_labels(split, classes)?;
    let n = split.len();
    let threads = threads.clamp(1, n.max(1));
    check_evaluate_budget(model, n, threads)?;
    let table = norm.table();
    confusion(split, classes, threads, |lo, hi, conf| {
        let mut ws = Workspace::inference(model, 64.min(hi - lo))?;
        let cap = ws.capacity();
        let mut i = lo;
        while i < hi {
            let b = cap.min(hi - i);
            for (j, dst) in ws.input_mut(b).chunks_exact_mut(per).enumerate() {
                normalize_into(&table, split.image(i + j), dst);
            }
            model.forward_ws(&mut ws, b, None)?;
            for (j, row) in ws.output(model, b).chunks_exact(classes).enumerate() {
                conf[usize::from(split.labels[i + j])][argmax(row)] += 1;
            }
            i += b;
        }
        Ok(())
    })
}

/// As [`evaluate`], for a model file of either kind (an int8 model quantises the
/// pixels with its own table, [`crate::quant::Quantized::input_table`]).
///
/// # Errors
/// As [`evaluate`].
pub fn evaluate_any(
    model: &AnyModel,
    split: &Split,
    threads: usize,
) -> Result<(f64, Vec<Vec<u64>>)> {
    let q = match model {
        AnyModel::F32(m, meta) => return evaluate(m, split, &meta.norm(), threads),
        AnyModel::Int8(q, _) => q,
    };
    let (c, h, w) = q.shape;
    let per = c * h * w;
    if split.pixels() != per || split.shape() != (crate::layers::Shape::Image { c, h, w }) {
        return Err(Error::invalid(format!(
            "images of {} do not fit the model input {c}x{h}x{w}",
            split.shape()
        )));
    }
    let classes = q.outputs();
    check_labels(split, classes)?;
    let n = split.len();
    let threads = threads.clamp(1, n.max(1));
    crate::budget::check(
        &format!("evaluating the int8 model on {threads} thread(s)"),
        q.workspace_bytes(64)?
            .saturating_mul(threads as u64)
            .saturating_add(
                (classes as u64).saturating_mul(classes as u64 * 8 * (threads as u64 + 1)),
            ),
    )?;
    confusion(split, classes, threads, |lo, hi, conf| {
        for i in (lo..hi).step_by(64) {
            let b = 64.min(hi - i);
            let logits = q.forward_u8(&split.images[i * per..(i + b) * per])?;
            for (j, row) in logits.chunks_exact(classes).enumerate() {
                conf[usize::from(split.labels[i + j])][argmax(row)] += 1;
            }
        }
        Ok(())
    })
}

/// A label the model has no output for.
fn check_labels(split: &Split, classes: usize) -> Result<()> {
    if let Some(&l) = split.labels.iter().find(|&&l| usize::from(l) >= classes) {
        return Err(Error::invalid(format!(
            "label {l} in the data, but the model has {classes} outputs"
        )));
    }
    Ok(())
}

/// Accuracy and confusion matrix of `split`, its images cut into `threads` ranges, each
/// counted by `count(lo, hi, confusion)` on a thread of its own.
fn confusion(
    split: &Split,
    classes: usize,
    threads: usize,
    count: impl Fn(usize, usize, &mut Vec<Vec<u64>>) -> Result<()> + Sync,
) -> Result<(f64, Vec<Vec<u64>>)> {
    let n = split.len();
    let parts: Vec<Result<Vec<Vec<u64>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let count = &count;
                s.spawn(move || -> Result<Vec<Vec<u64>>> {
                    let (lo, hi) = (t * n / threads, (t + 1) * n / threads);
                    let mut conf = vec![vec![0u64; classes]; classes];
                    if lo < hi {
                        count(lo, hi, &mut conf)?;
                    }
                    Ok(conf)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::invalid(
                        "internal error: an evaluation thread panicked (a bug in cnnkit)",
                    ))
                })
            })
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
