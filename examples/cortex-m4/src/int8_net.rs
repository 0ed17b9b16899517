//! The int8 network: every weight, bias and multiplier a `static` in flash (from
//! `model.rs`), activations and the kernels' scratch in one buffer
//! ([`QNetwork::run_shared`]: a layer's scratch lies between its input and its output).

use core::fmt;

use cnnkit_kernels::KernelError;
use cnnkit_kernels::qnet::{QLayer, QNetwork};

use crate::{Prediction, argmax, label, model, pixels};

/// The network, checked at compile time.
pub const NET: QNetwork<'static> = match QNetwork::new(&model::LAYERS) {
    Ok(n) => n,
    Err(_) => panic!("the exported layers do not fit together"),
};

const _: () = assert!(NET.arena_len() == model::ARENA);

/// Pixels per image (the network's input).
pub const INPUT: usize = NET.input_len();
/// Classes (the network's output).
pub const OUTPUT: usize = NET.output_len();
/// Bytes of the one buffer: the largest input + output + scratch of a layer (the
/// kernels' scratch depends on the target: x86's VNNI kernels want more).
pub const BUFFER: usize = NET.shared_len();

/// Bytes of the weights, biases and multipliers (8 bytes each) in flash.
pub const WEIGHT_BYTES: usize = {
    let (mut n, mut i) = (0, 0);
    while i < model::LAYERS.len() {
        match model::LAYERS[i] {
            QLayer::Conv2d {
                weight, bias, q, ..
            }
            | QLayer::Linear {
                weight, bias, q, ..
            } => {
                n += weight.len() + 8 * q.requant.len();
                if let Some(b) = bias {
                    n += 4 * b.len();
                }
            }
            _ => {}
        }
        i += 1;
    }
    n
};

/// The memory a classification works in (in `.bss` on the target).
pub struct Buffers {
    /// Activations and scratch.
    pub buf: [i8; BUFFER],
}

impl Buffers {
    /// Zeroed.
    pub const fn new() -> Self {
        Buffers { buf: [0; BUFFER] }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`classify`] reads besides the code: nothing to check at run time (the layers
/// and their data are constants, checked at compile time).
pub struct Weights;

/// The weights (nothing to check: see [`Weights`]).
///
/// # Errors
/// None; the signature is the f32 build's.
pub fn weights() -> Result<Weights, KernelError> {
    Ok(Weights)
}

/// Classifies baked image `image` in `buffers`: the pixels through the input table, the
/// int8 network, the logits dequantised.
///
/// # Errors
/// [`KernelError::LengthMismatch`] for an image past the last; any kernel error.
pub fn classify(
    _: &Weights,
    image: usize,
    buffers: &mut Buffers,
) -> Result<Prediction, KernelError> {
    let label = label(image)?;
    let pixels = pixels(image).unwrap_or(&[]);
    // quantised straight into the arena's input end (one channel: NCHW is NHWC)
    for (x, &p) in NET.input_mut(&mut buffers.buf)?.iter_mut().zip(pixels) {
        *x = model::INPUT_TABLE[usize::from(p)];
    }
    let out = NET.run_shared(&mut buffers.buf)?;
    let mut logits = [0.0; OUTPUT];
    for (l, &q) in logits.iter_mut().zip(out.iter()) {
        *l = model::OUTPUT_SCALE * (i32::from(q) - model::OUTPUT_ZERO_POINT) as f32;
    }
    Ok(Prediction {
        image,
        label,
        class: argmax(&logits),
        logits,
    })
}

/// The summary line: `sizes: int8 weights W bytes, arena A bytes, buffer B bytes`.
pub fn write_sizes(w: &mut impl fmt::Write) -> fmt::Result {
    write!(
        w,
        "sizes: int8 weights, biases and multipliers {WEIGHT_BYTES} bytes, arena {} bytes, \
         scratch {} bytes, one buffer for both {BUFFER} bytes",
        NET.arena_len(),
        2 * NET.scratch_len()
    )
}
