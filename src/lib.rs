//! # cnnkit
//!
//! The std layer over [`cnnkit_kernels`]: today it re-exports the kernel crate; models,
//! training, data loading, checkpoints and the `cnnkit` command-line tool build on it.

pub use cnnkit_kernels as kernels;
