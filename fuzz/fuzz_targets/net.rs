//! Fuzz target `net`: the property `props::net::net` (see `fuzz/props/`), which
//! `tests/fuzz_regressions.rs` also replays on stable over `fuzz/regressions/net/`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::net::net(data));
