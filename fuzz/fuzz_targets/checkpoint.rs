//! Fuzz target `checkpoint`: the property `props::parsers::checkpoint` (see `fuzz/props/`), which
//! `tests/fuzz_regressions.rs` also replays on stable over `fuzz/regressions/checkpoint/`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::parsers::checkpoint(data));
