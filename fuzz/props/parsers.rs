//! The std layer's parsers on arbitrary bytes: an error or a consistent result, never a
//! panic.

use cnnkit::checkpoint::{model_bytes, model_from_bytes};
use cnnkit::data::parse_idx;
use cnnkit::{Model, Shape};

/// The IDX reader (plain or gzipped): an error, or an array whose dims fit its data.
pub fn idx(data: &[u8]) {
    for ndims in [1, 3] {
        if let Ok(a) = parse_idx("fuzz".as_ref(), data, ndims) {
            assert_eq!(a.dims.len(), ndims);
            assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
        }
    }
}

/// The checkpoint loader: an error, or a model that saves back to bytes that load to the
/// same model.
pub fn checkpoint(data: &[u8]) {
    if let Ok((model, meta)) = model_from_bytes("fuzz".as_ref(), data) {
        let bytes = model_bytes(&model, &meta).expect("serialise a loaded model");
        let (again, meta2) = model_from_bytes("again".as_ref(), &bytes).expect("reload");
        // (compared as bytes: a fuzzed file may hold NaN weights, and NaN != NaN)
        assert!(model_bytes(&again, &meta2).expect("serialise") == bytes);
    }
}

/// The model text spec: an error, or a model whose spec rebuilds it.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let input = Shape::Image { c: 1, h: 12, w: 12 };
    if let Ok(m) = Model::from_spec(text, input, 3) {
        let again = Model::from_spec(&m.spec(), input, 3).expect("the spec of a model parses");
        assert!(again == m, "{text:?} -> {}", m.spec());
    }
}
