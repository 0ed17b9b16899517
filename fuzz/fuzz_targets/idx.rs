//! Fuzz target `idx`: the property `props::parsers::idx` (see `fuzz/props/`), which
//! `tests/fuzz_regressions.rs` also replays on stable over `fuzz/regressions/idx/`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::parsers::idx(data));
