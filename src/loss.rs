//! Classification losses over logits, with their gradients, for shards of a batch.

use cnnkit_kernels as k;

use crate::error::{Error, Result};

/// The training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Softmax cross-entropy on the logits (PyTorch's `nn.CrossEntropyLoss`), mean over
    /// the batch.
    CrossEntropy,
    /// Mean squared error between the logits and the one-hot label
    /// (`nn.MSELoss` against `one_hot(label)`), mean over all elements.
    Mse,
}

impl Loss {
    /// `ce` / `cross-entropy` or `mse`.
    pub fn from_name(s: &str) -> Option<Loss> {
        match s {
            "ce" | "cross-entropy" | "crossentropy" => Some(Loss::CrossEntropy),
            "mse" => Some(Loss::Mse),
            _ => None,
        }
    }

    /// The name [`Loss::from_name`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "ce",
            Loss::Mse => "mse",
        }
    }

    /// Loss and gradient of one shard of `labels.len()` rows out of a batch of `total`
    /// rows: returns the shard's *sum* of per-row losses (the batch loss is the sum over
    /// shards divided by `total`); `grad` is the gradient of the batch loss, so the
    /// shards' parameter gradients add up to the batch gradient.
    ///
    /// # Errors
    /// A label outside `0..classes`, or lengths that do not fit.
    pub fn forward_backward(
        self,
        classes: usize,
        total: usize,
        logits: &[f32],
        labels: &[u32],
        grad: &mut [f32],
    ) -> Result<f64> {
        let rows = labels.len();
        if rows == 0 || total < rows || logits.len() != rows * classes || grad.len() != logits.len()
        {
            return Err(Error::invalid("loss: lengths do not fit"));
        }
        match self {
            Loss::CrossEntropy => {
                let mean = k::softmax_cross_entropy(rows, classes, logits, labels, grad)?;
                let scale = rows as f32 / total as f32;
                if scale != 1.0 {
                    grad.iter_mut().for_each(|g| *g *= scale);
                }
                Ok(f64::from(mean) * rows as f64)
            }
            Loss::Mse => {
                if let Some(&l) = labels.iter().find(|&&l| l as usize >= classes) {
                    return Err(Error::invalid(format!("label {l} is not below {classes}")));
                }
                let scale = 2.0 / (total * classes) as f32;
                let mut sum = 0.0f64;
                for ((x, g), &l) in logits
                    .chunks_exact(classes)
                    .zip(grad.chunks_exact_mut(classes))
                    .zip(labels)
                {
                    let mut row = 0.0f64;
                    for (j, (&v, d)) in x.iter().zip(g.iter_mut()).enumerate() {
                        let diff = v - if j == l as usize { 1.0 } else { 0.0 };
                        row += f64::from(diff * diff);
                        *d = diff * scale;
                    }
                    sum += row / classes as f64;
                }
                Ok(sum)
            }
        }
    }
}

/// The index of the largest logit of each row (the first on ties; NaN never wins).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}
