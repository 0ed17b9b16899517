//! Fuzz target `pool2d`: the property `props::pool::pool2d` (see `fuzz/props/`), which
//! `tests/fuzz_regressions.rs` also replays on stable over `fuzz/regressions/pool2d/`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::pool::pool2d(data));
