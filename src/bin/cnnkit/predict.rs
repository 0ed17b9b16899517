//! `cnnkit predict`.

use std::path::PathBuf;

use cnnkit::quant::AnyModel;
use cnnkit::{Error, Result};

/// Arguments of `cnnkit predict`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file: a checkpoint (`train --save`) or an int8 model (`quantize`).
    #[arg(long)]
    model_file: PathBuf,
    /// Images (PNG, PGM or PPM): converted to grayscale for a model of one channel, to
    /// RGB for one of three, and resized to the model's input.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// One JSON object per image instead of text.
    #[arg(long)]
    json: bool,
}

/// `cnnkit predict`.
pub fn run(a: &Args) -> Result<()> {
    let (model_file, images, json) = (&a.model_file, &a.images, a.json);
    let model = AnyModel::load(model_file)?;
    let input = model.input_shape();
    // read every image first, so that a bad one fails before any output
    let mut xs = Vec::new();
    cnnkit::budget::check(
        &format!("{} image(s) of {input}", images.len()),
        (images.len() as u64).saturating_mul(input.len() as u64 * 5),
    )?;
    for p in images {
        xs.extend(cnnkit::pixels::load(p, input)?);
    }
    let logits = model.predict_u8(&xs)?;
    let classes = model.outputs();
    for (p, row) in images.iter().zip(logits.chunks_exact(classes)) {
        if let Some(x) = row.iter().find(|x| !x.is_finite()) {
            return Err(Error::Invalid(format!(
                "{}: the model's score is {x}: its weights cannot classify this image \
                 (no prediction made)",
                p.display()
            )));
        }
    }
    let mut probs = vec![0.0; logits.len()];
    cnnkit::kernels::softmax(images.len(), classes, &logits, &mut probs)?;
    let name = |i: usize| {
        model
            .classes()
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    };
    for (i, (p, row)) in images.iter().zip(probs.chunks_exact(classes)).enumerate() {
        let best = cnnkit::loss::argmax(row);
        if json {
            let v = serde_json::json!({
                "image": p.display().to_string(),
                "class": best,
                "name": name(best),
                "probabilities": row,
                "logits": &logits[i * classes..(i + 1) * classes],
            });
            outln!("{v}");
        } else {
            let list: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, q)| format!("{}:{:.3}", i, q))
                .collect();
            outln!(
                "{}: {} {} ({:.1}%)  [{}]",
                p.display(),
                best,
                name(best),
                100.0 * row[best],
                list.join(" ")
            );
        }
    }
    Ok(())
}
