//! The checkpoint loader on arbitrary bytes: an error, or a model whose tensors have the
//! shapes its spec gives them; never a panic.
#![no_main]

use cnnkit::checkpoint::{model_bytes, model_from_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((model, meta)) = model_from_bytes("fuzz".as_ref(), data) {
        // what loads saves back to bytes that load to the same model
        let bytes = model_bytes(&model, &meta).expect("serialise a loaded model");
        let (again, meta2) = model_from_bytes("again".as_ref(), &bytes).expect("reload");
        // (compared as bytes: a fuzzed file may hold NaN weights, and NaN != NaN)
        assert!(model_bytes(&again, &meta2).expect("serialise") == bytes);
    }
});
