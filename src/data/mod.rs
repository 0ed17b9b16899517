//! MNIST-format datasets: images kept as `u8`, normalised batch by batch.

pub mod idx;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::rng::Rng;

pub use idx::{IdxArray, parse_idx, read_idx};

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Largest image side accepted.
pub const MAX_SIDE: usize = 4096;

/// Most channels an image may have.
pub const MAX_CHANNELS: usize = 64;

/// Class names of Fashion-MNIST, in label order.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// One split (train or test): `len` images of `channels x rows x cols` bytes and their
/// labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Pixels, image after image, channel plane after plane, row-major.
    pub images: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Channels (1 for an `idx3` image file `[n, rows, cols]`; an `idx4` file is
    /// `[n, channels, rows, cols]`).
    pub channels: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.pixels();
        &self.images[i * n..][..n]
    }

    /// Bytes per image: `channels x rows x cols`.
    pub fn pixels(&self) -> usize {
        self.channels * self.rows * self.cols
    }

    /// The shape of one image as a model takes it.
    pub fn shape(&self) -> crate::layers::Shape {
        crate::layers::Shape::Image {
            c: self.channels,
            h: self.rows,
            w: self.cols,
        }
    }

    /// Reads an image file and a label file and checks that they agree.
    ///
    /// # Errors
    /// Anything [`read_idx`] reports; counts that disagree; an absurd image size.
    pub fn read(images: &Path, labels: &Path) -> Result<Split> {
        let lab = read_idx(labels, 1)?;
        let img = idx::read_idx_of(images, &[3, 4])?;
        Split::from_arrays(images, img, labels, lab)
    }

    fn from_arrays(images: &Path, img: IdxArray, labels: &Path, lab: IdxArray) -> Result<Split> {
        let (n, channels, rows, cols) = match img.dims[..] {
            [n, rows, cols] => (n, 1, rows, cols),
            [n, c, rows, cols] => (n, c, rows, cols),
            _ => return Err(Error::data(images, "an image file has 3 or 4 dimensions")),
        };
        if channels > MAX_CHANNELS {
            return Err(Error::data(
                images,
                format!("images of {channels} channels: more than {MAX_CHANNELS}"),
            ));
        }
        if rows > MAX_SIDE || cols > MAX_SIDE {
            return Err(Error::data(
                images,
                format!("images of {rows}x{cols} pixels: larger than {MAX_SIDE} per side"),
            ));
        }
        if lab.dims[0] != n {
            return Err(Error::data(
                labels,
                format!(
                    "{} labels, but {} has {n} images",
                    lab.dims[0],
                    images.display()
                ),
            ));
        }
        Ok(Split {
            images: img.data,
            labels: lab.data,
            channels,
            rows,
            cols,
        })
    }
}

/// Per-pixel normalisation `(p / 255 - mean) / std`, as a 256-entry table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    /// Mean of the training pixels, scaled to `[0, 1]`.
    pub mean: f32,
    /// Their standard deviation.
    pub std: f32,
}

impl Normalize {
    /// The statistics of a split's pixels.
    pub fn of(split: &Split) -> Normalize {
        let mut hist = [0u64; 256];
        for &p in &split.images {
            hist[usize::from(p)] += 1;
        }
        let n = split.images.len().max(1) as f64;
        let mean = hist
            .iter()
            .enumerate()
            .map(|(v, &c)| v as f64 / 255.0 * c as f64)
            .sum::<f64>()
            / n;
        let var = hist
            .iter()
            .enumerate()
            .map(|(v, &c)| (v as f64 / 255.0 - mean).powi(2) * c as f64)
            .sum::<f64>()
            / n;
        Normalize {
            mean: mean as f32,
            std: (var.sqrt() as f32).max(1e-3),
        }
    }

    /// The lookup table from byte to normalised value.
    pub fn table(&self) -> [f32; 256] {
        let mut t = [0.0; 256];
        for (v, o) in t.iter_mut().enumerate() {
            *o = (v as f32 / 255.0 - self.mean) / self.std;
        }
        t
    }
}

/// Fills `out` with the normalised pixels of `images` (`u8`) through `table`.
pub fn normalize_into(table: &[f32; 256], images: &[u8], out: &mut [f32]) {
    for (o, &p) in out.iter_mut().zip(images) {
        *o = table[usize::from(p)];
    }
}

/// A training and a test split from one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The directory read.
    pub dir: PathBuf,
    /// `train-*` files.
    pub train: Split,
    /// `t10k-*` files.
    pub test: Split,
    /// Number of classes: the largest label plus one (10 for MNIST and Fashion-MNIST).
    pub classes: usize,
}

/// The files in `dir` that may hold `stem`: the usual name, with or without `.gz`, and
/// the dotted form some mirrors use (`train-images.idx3-ubyte`). Each one there must be a
/// regular file (a directory or device of that name is an error that says so).
fn candidates(dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    let mut found = Vec::new();
    for name in [stem, dotted.as_str()] {
        for ext in ["", ".gz"] {
            let p = dir.join(format!("{name}{ext}"));
            if std::fs::symlink_metadata(&p).is_ok() {
                crate::fsio::regular_file(&p)?;
                found.push(p);
            }
        }
    }
    if found.is_empty() {
        return Err(Error::data(
            dir,
            format!(
                "no {stem} or {stem}.gz in this directory (an MNIST-format data directory has train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, gzipped or not)"
            ),
        ));
    }
    Ok(found)
}

/// Reads `stem` from `dir`. Where the directory holds it twice (plain and gzipped, say),
/// both are read and must hold the same array.
fn read_one(dir: &Path, stem: &str, ndims: &[usize]) -> Result<(PathBuf, IdxArray)> {
    let found = candidates(dir, stem)?;
    let first = idx::read_idx_of(&found[0], ndims)?;
    for other in &found[1..] {
        if idx::read_idx_of(other, ndims)? != first {
            return Err(Error::data(
                other,
                format!(
                    "holds other data than {}, and both are in the data directory: \
                     remove the one that is wrong",
                    found[0].display()
                ),
            ));
        }
    }
    Ok((found[0].clone(), first))
}

impl Split {
    /// Reads the split `name` (`train` or `t10k`) from `dir` (see [`Dataset::load`]).
    ///
    /// # Errors
    /// As [`Split::read`]; a file there twice with different contents.
    pub fn load(dir: &Path, name: &str) -> Result<Split> {
        let (labels, lab) = read_one(dir, &format!("{name}-labels-idx1-ubyte"), &[1])?;
        // images of several channels: `[n, channels, rows, cols]` in an idx4 file
        let idx4 = format!("{name}-images-idx4-ubyte");
        let (images, img) = if candidates(dir, &format!("{name}-images-idx3-ubyte")).is_err()
            && candidates(dir, &idx4).is_ok()
        {
            read_one(dir, &idx4, &[4])?
        } else {
            read_one(dir, &format!("{name}-images-idx3-ubyte"), &[3])?
        };
        Split::from_arrays(&images, img, &labels, lab)
    }
}

fn check_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::data(
            dir,
            "is not a directory (--data takes the directory that holds the four IDX files)",
        )),
        Err(_) => Err(Error::data(
            dir,
            format!(
                "data directory not found. Install Fashion-MNIST with \
                 `apt-get install dataset-fashion-mnist` (it lands in {DEFAULT_DIR}), \
                 or pass `--data DIR` with a directory holding the four MNIST-format IDX files"
            ),
        )),
    }
}

impl Dataset {
    /// Reads the four IDX files from `dir`.
    ///
    /// # Errors
    /// A missing directory (the message names the Debian package and `--data`), a
    /// missing file, anything [`Split::read`] reports, train and test images of
    /// different sizes.
    pub fn load(dir: &Path) -> Result<Dataset> {
        check_dir(dir)?;
        let train = Split::load(dir, "train")?;
        let test = Split::load(dir, "t10k")?;
        if test.shape() != train.shape() {
            return Err(Error::data(
                dir,
                format!(
                    "test images are {}, training images {} (channels x rows x cols)",
                    test.shape(),
                    train.shape()
                ),
            ));
        }
        let classes = usize::from(*train.labels.iter().chain(&test.labels).max().unwrap_or(&0)) + 1;
        Ok(Dataset {
            dir: dir.to_path_buf(),
            train,
            test,
            classes,
        })
    }

    /// The test split of `dir` alone (for evaluation, which has no use for the rest).
    ///
    /// # Errors
    /// As [`Dataset::load`], for the test files.
    pub fn load_test(dir: &Path) -> Result<Split> {
        check_dir(dir)?;
        Split::load(dir, "t10k")
    }

    /// The training split of `dir` alone (for calibration, which has no use for the
    /// rest).
    ///
    /// # Errors
    /// As [`Dataset::load`], for the training files.
    pub fn load_train(dir: &Path) -> Result<Split> {
        check_dir(dir)?;
        Split::load(dir, "train")
    }

    /// Class names: Fashion-MNIST's when the directory name says fashion, else the
    /// label numbers.
    pub fn class_names(&self) -> Vec<String> {
        let fashion = self
            .dir
            .to_string_lossy()
            .to_ascii_lowercase()
            .contains("fashion");
        (0..self.classes)
            .map(|c| match FASHION_CLASSES.get(c) {
                Some(n) if fashion => (*n).to_string(),
                _ => c.to_string(),
            })
            .collect()
    }
}

/// The order of the training images in `epoch`: a permutation drawn from the seed and
/// the epoch alone, so a resumed run sees the same order as an uninterrupted one.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, out: &mut Vec<u32>) {
    out.clear();
    out.extend(0..n as u32);
    Rng::derive(seed, &[0x5348_5546, epoch as u64]).shuffle(out);
}
