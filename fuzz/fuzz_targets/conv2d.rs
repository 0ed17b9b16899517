//! Fuzz target `conv2d`: the property `props::conv::conv2d` (see `fuzz/props/`), which
//! `tests/fuzz_regressions.rs` also replays on stable over `fuzz/regressions/conv2d/`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::conv::conv2d(data));
