//! Fuzz target `meta` (the checkpoint metadata, every field): the property `props::parsers::meta` (see
//! `fuzz/props/`), which `tests/fuzz_regressions.rs` also replays on stable over
//! `fuzz/regressions/meta/`. CI runs it with `-rss_limit_mb=512`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::parsers::meta(data));
