//! The IDX reader on arbitrary bytes (plain or gzipped): an error or a consistent array,
//! never a panic.
#![no_main]

use cnnkit::data::parse_idx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ndims in [1, 3] {
        if let Ok(a) = parse_idx("fuzz".as_ref(), data, ndims) {
            assert_eq!(a.dims.len(), ndims);
            assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
        }
    }
});
