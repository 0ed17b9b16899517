//! Exports the model for the firmware at build time, on the host, with `cnnkit`'s own
//! exporter (the code behind `cnnkit export`):
//! - `weights.bin`: the flat little-endian weight blob (flash);
//! - `model.rs`: the layer list as Rust constants (sizes every static buffer);
//! - `images.bin` + `images.rs`: the test images baked in, and their labels.
//!
//! With the feature `int8`, an int8 model file (`cnnkit quantize`) instead: `model.rs`
//! holds its layers and their data (`Quantized::rust_source`), and there is no blob.
//!
//! Inputs (each can be overridden, for another model or other images):
//! - `CNNKIT_FIRMWARE_MODEL`: a checkpoint written by `cnnkit train --save`
//!   (default `model/lenet5.safetensors`), or with `int8` an int8 model file (default
//!   `model/lenet5.int8.safetensors`);
//! - `CNNKIT_FIRMWARE_IMAGES`: a directory with `images-idx3-ubyte` and `labels-idx1-ubyte`
//!   (default `model/`, the first 10 Fashion-MNIST test images);
//! - `CNNKIT_FIRMWARE_COUNT`: how many of them to bake in (default: all).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn path_var(name: &str, default: PathBuf) -> PathBuf {
    println!("cargo:rerun-if-env-changed={name}");
    env::var_os(name).map_or(default, PathBuf::from)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let int8 = env::var_os("CARGO_FEATURE_INT8").is_some();
    let model_file = path_var(
        "CNNKIT_FIRMWARE_MODEL",
        here.join(if int8 {
            "model/lenet5.int8.safetensors"
        } else {
            "model/lenet5.safetensors"
        }),
    );
    let image_dir = path_var("CNNKIT_FIRMWARE_IMAGES", here.join("model"));
    println!("cargo:rerun-if-env-changed=CNNKIT_FIRMWARE_COUNT");
    for p in [&model_file, &image_dir, &here.join("memory.x")] {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let (mut src, input_len, class_names) = if int8 {
        let (q, meta) = cnnkit::quant::file::load(&model_file)?;
        let (c, h, w) = q.shape;
        // (no blob: the data are in model.rs)
        fs::write(out.join("weights.bin"), [])?;
        (q.rust_source(1)?, c * h * w, meta.classes)
    } else {
        let (model, meta) = cnnkit::checkpoint::load_model(&model_file)?;
        let export = cnnkit::export::Export::new(&model, meta.norm(), 1)?;
        let net = export.network()?;
        fs::write(out.join("weights.bin"), export.blob()?)?;
        (export.rust_source()?, net.input_len(), meta.classes)
    };

    let split = cnnkit::data::Split::read(
        &image_dir.join("images-idx3-ubyte"),
        &image_dir.join("labels-idx1-ubyte"),
    )?;
    let count = match env::var("CNNKIT_FIRMWARE_COUNT") {
        Ok(v) => v.parse::<usize>()?.min(split.len()),
        Err(_) => split.len(),
    };
    let pixels = split.rows * split.cols;
    if pixels != input_len {
        return Err(
            format!("the images have {pixels} pixels, the model takes {input_len} inputs").into(),
        );
    }
    fs::write(out.join("images.bin"), &split.images[..count * pixels])?;
    let labels: Vec<String> = split.labels[..count].iter().map(u8::to_string).collect();
    let classes: Vec<String> = class_names.iter().map(|c| format!("{c:?}")).collect();
    src.push_str(&format!(
        "\n/// The model file exported.\npub const MODEL_FILE: &str = {:?};\n",
        model_file.display().to_string()
    ));
    src.push_str(&format!(
        "\n/// Images baked in.\npub const IMAGES: usize = {count};\n\
         /// Their labels.\npub const LABELS: [u8; {count}] = [{}];\n\
         /// Class names, in label order.\npub const CLASSES: [&str; {}] = [{}];\n",
        labels.join(", "),
        classes.len(),
        classes.join(", ")
    ));
    fs::write(out.join("model.rs"), src)?;

    // the linker script for cortex-m-rt's link.x
    fs::copy(here.join("memory.x"), out.join("memory.x"))?;
    println!("cargo:rustc-link-search={}", out.display());
    Ok(())
}
