//! Replays the parser inputs kept in `fuzz/regressions/` (seeds, and every input a fuzz
//! target once crashed on) on stable, with the fuzz targets' checks: an error or a
//! consistent result, never a panic.

use std::path::Path;

use cnnkit::checkpoint::{model_bytes, model_from_bytes};
use cnnkit::data::parse_idx;
use cnnkit::{Model, Shape};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no inputs in {}", dir.display());
    v
}

#[test]
fn idx_inputs() {
    for (name, data) in inputs("idx") {
        for ndims in [1, 3] {
            if let Ok(a) = parse_idx(name.as_ref(), &data, ndims) {
                assert_eq!(a.dims.iter().product::<usize>(), a.data.len(), "{name}");
            }
        }
    }
}

#[test]
fn spec_inputs() {
    let input = Shape::Image { c: 1, h: 12, w: 12 };
    for (name, data) in inputs("spec") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        if let Ok(m) = Model::from_spec(text, input, 3) {
            assert_eq!(Model::from_spec(&m.spec(), input, 3).unwrap(), m, "{name}");
        }
    }
}

#[test]
fn checkpoint_inputs() {
    for (name, data) in inputs("checkpoint") {
        if let Ok((model, meta)) = model_from_bytes(name.as_ref(), &data) {
            let bytes = model_bytes(&model, &meta).unwrap();
            let (again, meta2) = model_from_bytes(name.as_ref(), &bytes).unwrap();
            assert!(model_bytes(&again, &meta2).unwrap() == bytes, "{name}");
        }
    }
}
