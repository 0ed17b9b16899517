//! Which layers run inside others: the one fusion pass that training and export share.
//!
//! - A ReLU right after a Conv2d or Linear layer runs in that layer's kernel epilogue (the
//!   clamp of its store): one pass over the output instead of two. Training does this in
//!   its forward pass (the ReLU's backward takes its mask from the fused output), and
//!   for a ReLU after batch normalisation too; export writes it into the firmware
//!   layer's `act`.
//! - Only along a chain: a layer whose output another layer reads too (the input of a
//!   `res[...]` block) keeps its output, and takes no ReLU or batch norm.
//! - In inference only (export), batch normalisation after a Conv2d or Linear layer is
//!   folded into its weights and bias, and flatten and dropout are the identity (a ReLU
//!   after them still fuses into the layer before them).
//!
//! ```
//! use cnnkit::fusion::{Role, roles};
//! use cnnkit::{Model, Shape};
//! let m = Model::from_spec("conv(4,3) batchnorm relu flatten linear(10) relu",
//!                          Shape::Image { c: 1, h: 8, w: 8 }, 1).unwrap();
//! let train = roles(&m, false);
//! assert_eq!(train[2], Role::Epilogue { of: 1 }); // in the batch norm's store
//! assert_eq!(train[5], Role::Epilogue { of: 4 });
//! let export = roles(&m, true);
//! assert_eq!(export[1], Role::Folded { into: 0 });
//! assert_eq!(export[2], Role::Epilogue { of: 0 });
//! assert_eq!(export[3], Role::Identity);
//! ```

use crate::layers::{Elementwise, Layer};
use crate::model::Model;

/// What becomes of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It runs as itself.
    Run,
    /// A ReLU applied in the store of layer `of` (a Conv2d or Linear layer; in training
    /// also a batch normalisation).
    Epilogue {
        /// The layer whose epilogue applies it.
        of: usize,
    },
    /// A batch normalisation folded into the weights of layer `into` (inference only).
    Folded {
        /// The layer whose weights and bias take it.
        into: usize,
    },
    /// The identity (flatten, and dropout, in inference).
    Identity,
}

/// The role of each of the model's layers, in training (`inference = false`) or in
/// inference.
pub fn roles(model: &Model, inference: bool) -> Vec<Role> {
    let layers = model.layers();
    let mut roles = vec![Role::Run; layers.len()];
    // the Conv2d or Linear layer whose store may still take a fold or a ReLU
    let mut open: Option<usize> = None;
    for (i, l) in layers.iter().enumerate() {
        if !model.chained(i) {
            open = None;
        }
        match (l, open) {
            (Layer::Conv2d(_) | Layer::Linear(_), _) => {
                open = Some(i);
                continue;
            }
            (Layer::BatchNorm2d(_), Some(into)) if inference => {
                roles[i] = Role::Folded { into };
                continue;
            }
            (Layer::BatchNorm2d(_), _) if !inference => {
                open = Some(i);
                continue;
            }
            (Layer::Flatten | Layer::Dropout(_), _) if inference => {
                roles[i] = Role::Identity;
                continue;
            }
            (Layer::Act(Elementwise::Relu), Some(of)) => roles[i] = Role::Epilogue { of },
            _ => {}
        }
        open = None;
    }
    roles
}
