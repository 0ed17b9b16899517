//! # cnnkit
//!
//! The std layer over [`cnnkit_kernels`] (re-exported as [`kernels`]): benchmarks today;
//! models, training, data loading and checkpoints build on it.

pub use cnnkit_kernels as kernels;

pub mod bench;
