//! LeNet-5 inference with `cnnkit-kernels` and nothing else: weights in flash, static
//! buffers sized at compile time from the model's geometry, no heap.
//!
//! `build.rs` exports the checkpoint `model/lenet5.safetensors` (trained by `cnnkit
//! train`) into a weight blob and a layer list, or with the feature `int8` the int8 model
//! `model/lenet5.int8.safetensors` (made from it by `cnnkit quantize`) into a layer list
//! with its data, and bakes in the first Fashion-MNIST test images. The same code runs on
//! the Cortex-M4F (under QEMU) and on the host, and prints the same lines on both
//! ([`write_report`]).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::fmt;

use cnnkit_kernels::KernelError;

#[cfg(not(feature = "int8"))]
mod f32_net;
#[cfg(not(feature = "int8"))]
pub use f32_net::*;
#[cfg(feature = "int8")]
mod int8_net;
#[cfg(feature = "int8")]
pub use int8_net::*;

/// The exported model (the layers and their sizes; with `int8` their data too), the
/// baked images (`IMAGES`, `LABELS`) and the class names (`CLASSES`), written by
/// `build.rs`.
#[allow(missing_docs)]
pub mod model {
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}

/// The baked images, `u8` pixels, one after the other.
static IMAGES: [u8; model::IMAGES * INPUT] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/images.bin"));

/// The `u8` pixels of baked image `image`, or `None` past the last.
pub fn pixels(image: usize) -> Option<&'static [u8]> {
    IMAGES.get(image * INPUT..(image + 1) * INPUT)
}

/// The label of baked image `image`.
fn label(image: usize) -> Result<u8, KernelError> {
    model::LABELS
        .get(image)
        .copied()
        .ok_or(KernelError::LengthMismatch {
            arg: "image",
            expected: model::IMAGES,
            actual: image,
        })
}

/// The class with the largest logit (the first on ties).
fn argmax(logits: &[f32]) -> usize {
    let mut class = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[class] {
            class = i;
        }
    }
    class
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

/// The line printed for a prediction, the same on every target:
/// `image 0: label 9 predicted 9 (Ankle boot) logits -3.1416 ...`.
pub fn write_report(w: &mut impl fmt::Write, p: &Prediction) -> fmt::Result {
    let name = model::CLASSES.get(p.class).copied().unwrap_or("?");
    write!(
        w,
        "image {}: label {} predicted {} ({}) logits",
        // (the label through u32, whose formatting the other numbers already link:
        // u8's own is another 92 bytes of flash)
        p.image,
        u32::from(p.label),
        p.class,
        name
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
        // beyond 4 decimals in a u32 (and in f32's precision): the integer part only,
        // through u32 (saturating at 4294967295: u64 formatting costs 1.2 KB of flash)
        return if a.is_infinite() {
            write!(w, "{sign}inf")
        } else {
            write!(w, "{sign}{}", a as u32)
        };
    }
    let scaled = (a * 10_000.0 + 0.5) as u32;
    let sign = if scaled == 0 { "" } else { sign };
    write!(w, "{sign}{}.{:04}", scaled / 10_000, scaled % 10_000)
}
