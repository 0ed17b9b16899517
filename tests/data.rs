//! The IDX reader: plain and gzipped files read alike; every malformed file gets an
//! error that names the file and the problem, never a panic.

mod common;

use cnnkit::data::{Dataset, read_idx};
use common::{gzip, idx_bytes, tempdir, write_dataset};

#[test]
fn plain_and_gzipped_datasets_read_alike() {
    let a = tempdir("data_plain");
    let b = tempdir("data_gz");
    write_dataset(&a, 50, 20, false);
    write_dataset(&b, 50, 20, true);
    let (da, db) = (Dataset::load(&a).unwrap(), Dataset::load(&b).unwrap());
    assert_eq!(da.train, db.train);
    assert_eq!(da.test, db.test);
    assert_eq!((da.train.len(), da.test.len(), da.classes), (50, 20, 10));
    assert_eq!((da.train.rows, da.train.cols), (28, 28));
}

fn err_of(name: &str, bytes: &[u8], ndims: usize) -> String {
    let d = tempdir(&format!("idx_{name}"));
    let p = d.join(name);
    std::fs::write(&p, bytes).unwrap();
    let e = read_idx(&p, ndims).unwrap_err().to_string();
    assert!(e.contains(name), "error does not name the file: {e}");
    e
}

#[test]
fn malformed_idx_files_get_clear_errors() {
    let good = idx_bytes(&[2, 3, 3], &[7; 18]);
    assert_eq!(
        read_idx(
            &{
                let d = tempdir("idx_good");
                std::fs::write(d.join("g"), &good).unwrap();
                d.join("g")
            },
            3
        )
        .unwrap()
        .dims,
        vec![2, 3, 3]
    );
    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    assert!(err_of("magic", &bad_magic, 3).contains("magic"));
    let mut bad_type = good.clone();
    bad_type[2] = 0x0d;
    assert!(err_of("type", &bad_type, 3).contains("0x0d"));
    assert!(err_of("ndims", &good, 1).contains("3 dimensions, expected 1"));
    assert!(err_of("trunc", &good[..good.len() - 1], 3).contains("truncated"));
    assert!(err_of("trunc_header", &good[..6], 3).contains("truncated"));
    assert!(err_of("empty", &[], 3).contains("truncated"));
    assert!(err_of("trailing", &[good.as_slice(), &[0]].concat(), 3).contains("more data"));
    assert!(err_of("zero", &idx_bytes(&[0, 28, 28], &[]), 3).contains("is 0"));
    let absurd = idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[1, 2, 3]);
    assert!(err_of("absurd", &absurd, 3).contains("1 GiB"));
    let gz = gzip(&good);
    let e = err_of("gz_trunc", &gz[..gz.len() / 2], 3);
    assert!(e.contains("gzip"), "{e}");
    let mut gz_bad = gz.clone();
    let mid = gz_bad.len() / 2;
    gz_bad[mid] ^= 0xff;
    gz_bad[mid + 1] ^= 0xff;
    let e = err_of("gz_bad", &gz_bad, 3);
    assert!(e.contains("gzip") || e.contains("truncated"), "{e}");
}

#[test]
fn dataset_level_checks() {
    let d = tempdir("data_mismatch");
    write_dataset(&d, 30, 10, false);
    // labels for 29 images
    std::fs::write(
        d.join("train-labels-idx1-ubyte"),
        idx_bytes(&[29], &[1; 29]),
    )
    .unwrap();
    let e = Dataset::load(&d).unwrap_err().to_string();
    assert!(e.contains("29 labels") && e.contains("30 images"), "{e}");

    let d = tempdir("data_missing_file");
    write_dataset(&d, 30, 10, false);
    std::fs::remove_file(d.join("t10k-labels-idx1-ubyte")).unwrap();
    let e = Dataset::load(&d).unwrap_err().to_string();
    assert!(e.contains("t10k-labels-idx1-ubyte"), "{e}");

    let d = tempdir("data_huge_side");
    write_dataset(&d, 30, 10, false);
    std::fs::write(
        d.join("t10k-images-idx3-ubyte"),
        idx_bytes(&[1, 5000, 1], &[0; 5000]),
    )
    .unwrap();
    let e = Dataset::load(&d).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");

    let e = Dataset::load("/nonexistent/cnnkit-data".as_ref())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apt-get install dataset-fashion-mnist") && e.contains("--data"),
        "{e}"
    );
}
