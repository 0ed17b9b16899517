//! Small MNIST-format datasets the tests write themselves.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// The bytes of an unsigned-byte IDX file.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An easy, learnable task: class `c` is a bright horizontal bar at row `3 + 2c` on a
/// noisy background, one row lower half of the time.
pub fn images(n: usize, side: usize, seed: u32) -> (Vec<u8>, Vec<u8>) {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s
    };
    let mut img = Vec::with_capacity(n * side * side);
    let mut lab = Vec::with_capacity(n);
    for _ in 0..n {
        let c = (next() % 10) as usize;
        let row = (3 + 2 * c + (next() % 2) as usize).min(side - 1);
        for y in 0..side {
            for _ in 0..side {
                let noise = (next() % 40) as u8;
                img.push(if y == row { 200 + noise } else { noise });
            }
        }
        lab.push(c as u8);
    }
    (img, lab)
}

/// Writes the four files of a dataset of `n_train` + `n_test` images to `dir`.
pub fn write_dataset(dir: &Path, n_train: usize, n_test: usize, gz: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, n, seed) in [("train", n_train, 1), ("t10k", n_test, 2)] {
        let (img, lab) = images(n, 28, seed);
        let files = [
            (
                format!("{name}-images-idx3-ubyte"),
                idx_bytes(&[n as u32, 28, 28], &img),
            ),
            (
                format!("{name}-labels-idx1-ubyte"),
                idx_bytes(&[n as u32], &lab),
            ),
        ];
        for (f, bytes) in files {
            if gz {
                std::fs::write(dir.join(format!("{f}.gz")), gzip(&bytes)).unwrap();
            } else {
                std::fs::write(dir.join(f), bytes).unwrap();
            }
        }
    }
}

/// A fresh directory under the target directory's tmp.
pub fn tempdir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
