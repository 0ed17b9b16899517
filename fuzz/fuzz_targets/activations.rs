//! Fuzz target `activations`: the property `props::elementwise::activations` (see `fuzz/props/`), which
//! `tests/fuzz_regressions.rs` also replays on stable over `fuzz/regressions/activations/`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::elementwise::activations(data));
