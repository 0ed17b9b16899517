//! Fuzz target `image` (predict's PNG/PGM decoding and resize): the property `props::parsers::image` (see
//! `fuzz/props/`), which `tests/fuzz_regressions.rs` also replays on stable over
//! `fuzz/regressions/image/`. CI runs it with `-rss_limit_mb=512`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::parsers::image(data));
