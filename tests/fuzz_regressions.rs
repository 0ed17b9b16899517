//! Replays every input kept in `fuzz/regressions/TARGET/` (the seed corpora, and every
//! input a fuzz target once failed on) through the same property the fuzz target checks
//! (`fuzz/props/`), on stable: a regression that fuzzing found stays fixed under a plain
//! `cargo test`. Kernel properties run under every kernel variant the CPU supports.

use std::path::Path;

#[path = "../fuzz/props/mod.rs"]
mod props;

type Property = fn(&[u8]);

/// The fuzz targets (`fuzz/fuzz_targets/NAME.rs`) and their properties.
const TARGETS: [(&str, Property); 16] = [
    ("conv2d", props::conv::conv2d),
    ("im2col", props::conv::im2col),
    ("sgemm", props::gemm::sgemm),
    ("pool2d", props::pool::pool2d),
    ("activations", props::elementwise::activations),
    ("linear", props::elementwise::linear),
    ("net", props::net::net),
    ("idx", props::parsers::idx),
    ("checkpoint", props::parsers::checkpoint),
    ("spec", props::parsers::spec),
    ("meta", props::parsers::meta),
    ("image", props::parsers::image),
    ("norm", props::norm::norm),
    ("int8", props::int8::int8),
    ("qmodel", props::parsers::qmodel),
    ("onnx", props::parsers::onnx),
];

fn replay(target: &str) {
    let (_, prop) = TARGETS.iter().find(|(t, _)| *t == target).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    for f in files {
        let data = std::fs::read(&f).unwrap();
        if let Err(e) = std::panic::catch_unwind(|| prop(&data)) {
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("{}: {msg}", f.display());
        }
    }
}

#[test]
fn every_target_has_a_folder_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (t, _) in TARGETS {
        assert!(
            root.join("regressions").join(t).is_dir(),
            "fuzz/regressions/{t}"
        );
        assert!(
            root.join("fuzz_targets").join(format!("{t}.rs")).is_file(),
            "fuzz/fuzz_targets/{t}.rs"
        );
    }
    let n = std::fs::read_dir(root.join("fuzz_targets"))
        .unwrap()
        .count();
    assert_eq!(n, TARGETS.len(), "a fuzz target without a replay here");
}

#[test]
fn conv2d() {
    replay("conv2d");
}

#[test]
fn int8() {
    replay("int8");
}

#[test]
fn im2col() {
    replay("im2col");
}

#[test]
fn sgemm() {
    replay("sgemm");
}

#[test]
fn pool2d() {
    replay("pool2d");
}

#[test]
fn activations() {
    replay("activations");
}

#[test]
fn linear() {
    replay("linear");
}

#[test]
fn net() {
    replay("net");
}

#[test]
fn idx() {
    replay("idx");
}

#[test]
fn checkpoint() {
    replay("checkpoint");
}

#[test]
fn qmodel() {
    replay("qmodel");
}

#[test]
fn spec() {
    replay("spec");
}

#[test]
fn meta() {
    replay("meta");
}

#[test]
fn image() {
    replay("image");
}

#[test]
fn norm() {
    replay("norm");
}

#[test]
fn onnx() {
    replay("onnx");
}
