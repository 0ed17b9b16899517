//! The f32 network: the weight blob in flash, one arena.

use core::fmt;

use cnnkit_kernels::KernelError;
use cnnkit_kernels::net::{Blob, Network};

use crate::{Prediction, argmax, label, model, pixels};

/// The network, checked at compile time.
pub const NET: Network<'static> = match Network::new(&model::LAYERS) {
    Ok(n) => n,
    Err(_) => panic!("the exported layers do not fit together"),
};

// the exporter's figures and the kernels' agree
const _: () = assert!(NET.arena_len() == model::ARENA && NET.param_len() == model::PARAMS);

/// Pixels per image (the network's input).
pub const INPUT: usize = NET.input_len();
/// Classes (the network's output).
pub const OUTPUT: usize = NET.output_len();
/// Floats of the one activation buffer: the largest input + output of a layer. The
/// network needs no other RAM (no scratch: direct convolution, dot-product linear layers).
pub const ARENA: usize = NET.arena_len();

#[repr(C, align(4))]
struct Aligned<T: ?Sized>(T);

/// The weight blob, 4-byte aligned so that its floats are read in place from flash.
static WEIGHTS: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/weights.bin")));

/// Bytes of the weight blob (header included).
pub fn weights_len() -> usize {
    WEIGHTS.0.len()
}

/// The memory a classification works in: the arena (in `.bss` on the target).
pub struct Buffers {
    /// The activations.
    pub arena: [f32; ARENA],
}

impl Buffers {
    /// Zeroed.
    pub const fn new() -> Self {
        Buffers {
            arena: [0.0; ARENA],
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`classify`] reads: the weight blob, checked.
pub struct Weights(pub Blob<'static>);

/// The weights, checked against the network's geometry.
///
/// # Errors
/// [`KernelError::InvalidBlob`] if the blob is malformed or was exported for another
/// geometry.
pub fn weights() -> Result<Weights, KernelError> {
    let blob = Blob::parse(&WEIGHTS.0)?;
    blob.params_for(&NET)?;
    Ok(Weights(blob))
}

/// Classifies baked image `image` in `buffers`.
///
/// # Errors
/// [`KernelError::LengthMismatch`] for an image past the last; any kernel error.
pub fn classify(
    weights: &Weights,
    image: usize,
    buffers: &mut Buffers,
) -> Result<Prediction, KernelError> {
    let label = label(image)?;
    let blob = &weights.0;
    let params = blob.params_for(&NET)?;
    let pixels = pixels(image).unwrap_or(&[]);
    let arena = &mut buffers.arena;
    // normalised straight into the arena's input end: no input buffer of its own
    for (x, &p) in NET.input_mut(arena)?.iter_mut().zip(pixels) {
        *x = blob.normalize(p);
    }
    let out = NET.run_in_arena(params, arena)?;
    let mut logits = [0.0; OUTPUT];
    logits.copy_from_slice(out);
    Ok(Prediction {
        image,
        label,
        class: argmax(&logits),
        logits,
    })
}

/// The summary line: `sizes: weights W bytes (P params), arena A floats (B bytes)`.
pub fn write_sizes(w: &mut impl fmt::Write) -> fmt::Result {
    write!(
        w,
        "sizes: weights {} bytes ({} params), arena {} floats ({} bytes), no scratch",
        weights_len(),
        NET.param_len(),
        ARENA,
        4 * ARENA
    )
}
