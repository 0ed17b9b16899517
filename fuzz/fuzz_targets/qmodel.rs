//! Fuzz target `qmodel`: the property `props::parsers::qmodel` (the int8 model file
//! reader; see `fuzz/props/`), which `tests/fuzz_regressions.rs` also replays on stable
//! over `fuzz/regressions/qmodel/`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::parsers::qmodel(data));
