//! LeNet-5 inference with `cnnkit-kernels` and nothing else: weights in flash, one static
//! arena sized at compile time from the model's geometry, no heap.
//!
//! `build.rs` exports the checkpoint `model/lenet5.safetensors` (trained by `cnnkit
//! train`) into a weight blob and a layer list, and bakes in the first Fashion-MNIST test
//! images. The same code runs on the Cortex-M4F (under QEMU) and on the host, and prints
//! the same lines on both ([`write_report`]).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::fmt;

use cnnkit_kernels::KernelError;
use cnnkit_kernels::net::{Blob, Network};

/// The exported geometry (`LAYERS`, `PARAMS`, `ARENA`, `FINGERPRINT`), the baked images
/// (`IMAGES`, `LABELS`) and the class names (`CLASSES`), written by `build.rs`.
#[allow(missing_docs)]
pub mod model {
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}

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

/// The baked images, `u8` pixels, one after the other.
static IMAGES: [u8; model::IMAGES * INPUT] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/images.bin"));

/// The `u8` pixels of baked image `image`, or `None` past the last.
pub fn pixels(image: usize) -> Option<&'static [u8]> {
    IMAGES.get(image * INPUT..(image + 1) * INPUT)
}

/// Bytes of the weight blob (header included).
pub fn weights_len() -> usize {
    WEIGHTS.0.len()
}

/// The weights, checked against the network's geometry.
///
/// # Errors
/// [`KernelError::InvalidBlob`] if the blob is malformed or was exported for another
/// geometry.
pub fn weights() -> Result<Blob<'static>, KernelError> {
    let blob = Blob::parse(&WEIGHTS.0)?;
    blob.params_for(&NET)?;
    Ok(blob)
}

/// One classified image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The image's position among the baked ones.
    pub image: usize,
    /// Its label.
    pub label: u8,
    /// The class with the largest logit (the first on ties).
    pub class: usize,
    /// The network's output.
    pub logits: [f32; OUTPUT],
}

/// Classifies baked image `image` in `arena`.
///
/// # Errors
/// [`KernelError::LengthMismatch`] for an image past the last; any kernel error.
pub fn classify(
    blob: &Blob<'_>,
    image: usize,
    arena: &mut [f32; ARENA],
) -> Result<Prediction, KernelError> {
    let Some(&label) = model::LABELS.get(image) else {
        return Err(KernelError::LengthMismatch {
            arg: "image",
            expected: model::IMAGES,
            actual: image,
        });
    };
    let params = blob.params_for(&NET)?;
    let pixels = pixels(image).unwrap_or(&[]);
    // normalised straight into the arena's input end: no input buffer of its own
    for (x, &p) in NET.input_mut(arena)?.iter_mut().zip(pixels) {
        *x = blob.normalize(p);
    }
    let out = NET.run_in_arena(params, arena)?;
    let mut logits = [0.0; OUTPUT];
    logits.copy_from_slice(out);
    let mut class = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[class] {
            class = i;
        }
    }
    Ok(Prediction {
        image,
        label,
        class,
        logits,
    })
}

/// The line printed for a prediction, the same on every target:
/// `image 0: label 9 predicted 9 (Ankle boot) logits -3.1416 ...`.
pub fn write_report(w: &mut impl fmt::Write, p: &Prediction) -> fmt::Result {
    let name = model::CLASSES.get(p.class).copied().unwrap_or("?");
    write!(
        w,
        "image {}: label {} predicted {} ({}) logits",
        p.image, p.label, p.class, name
    )?;
    for v in p.logits {
        w.write_char(' ')?;
        write_fixed(w, v)?;
    }
    Ok(())
}

/// `v` with four decimals, rounded half up in f32 (`-1.2346`), through integer
/// formatting: `core::fmt`'s float printing costs about 10 KB of flash. The same f32
/// operations give the same digits on every target.
pub fn write_fixed(w: &mut impl fmt::Write, v: f32) -> fmt::Result {
    if v.is_nan() {
        return w.write_str("NaN");
    }
    let sign = if v.is_sign_negative() { "-" } else { "" };
    let a = v.abs();
    if a >= 100_000.0 {
        // beyond 4 decimals in a u32 (and in f32's precision): the integer part only
        return if a.is_infinite() {
            write!(w, "{sign}inf")
        } else {
            write!(w, "{sign}{}", a as u64)
        };
    }
    let scaled = (a * 10_000.0 + 0.5) as u32;
    let sign = if scaled == 0 { "" } else { sign };
    write!(w, "{sign}{}.{:04}", scaled / 10_000, scaled % 10_000)
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
