//! Fuzz target `onnx`: the property `props::parsers::onnx` (the ONNX model reader; see
//! `fuzz/props/`), which `tests/fuzz_regressions.rs` also replays on stable over
//! `fuzz/regressions/onnx/`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::parsers::onnx(data));
