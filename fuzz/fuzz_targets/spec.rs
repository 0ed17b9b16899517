//! The model text spec on arbitrary strings: an error, or a model whose spec rebuilds it.
#![no_main]

use cnnkit::{Model, Shape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let input = Shape::Image { c: 1, h: 12, w: 12 };
    if let Ok(m) = Model::from_spec(text, input, 3) {
        let again = Model::from_spec(&m.spec(), input, 3).expect("the spec of a model parses");
        assert!(again == m, "{text:?} -> {}", m.spec());
    }
});
