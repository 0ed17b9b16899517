//! Fuzz target `norm` (batch normalisation and the optimizer updates): the property
//! `props::norm::norm` (see `fuzz/props/`), which `tests/fuzz_regressions.rs` also replays
//! on stable over `fuzz/regressions/norm/`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::norm::norm(data));
