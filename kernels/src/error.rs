//! The one error type every kernel returns.

use core::fmt;

/// Why a kernel refused its arguments.
///
/// Every public kernel validates all of its parameters and slice lengths before it
/// touches memory and returns one of these instead of panicking. Nothing has been
/// written to any output when an error is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelError {
    /// A size that must be at least 1 is 0; the field names it (`"batch"`, `"kernel_h"`, ...).
    ZeroSize(&'static str),
    /// A stride is 0.
    ZeroStride,
    /// A dilation is 0.
    ZeroDilation,
    /// `groups` is 0 or does not divide both channel counts.
    InvalidGroups {
        /// The requested number of groups.
        groups: usize,
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
    },
    /// A size or index computation overflows `usize`.
    Overflow,
    /// The dilated kernel is larger than the padded input, so the output would be empty.
    EmptyOutput,
    /// A slice does not have the length the parameters imply.
    LengthMismatch {
        /// The argument's name (`"input"`, `"weight"`, `"bias"`, ...).
        arg: &'static str,
        /// The length the parameters imply (for GEMM operands: the minimum).
        expected: usize,
        /// The length that was passed.
        actual: usize,
    },
    /// The caller's scratch slice is shorter than the kernel's `*_scratch_len`.
    ScratchTooSmall {
        /// Elements needed.
        needed: usize,
        /// Elements passed.
        actual: usize,
    },
    /// A GEMM leading dimension is smaller than the row it has to hold.
    InvalidLeadingDimension {
        /// `"lda"`, `"ldb"` or `"ldc"`.
        arg: &'static str,
        /// The leading dimension passed.
        ld: usize,
        /// The smallest valid value.
        min: usize,
    },
    /// A class label is not below the number of classes.
    InvalidLabel {
        /// Position of the label in the batch.
        index: usize,
        /// The label.
        label: u32,
        /// The number of classes.
        classes: usize,
    },
    /// A stored pooling index points outside the input plane.
    InvalidIndex {
        /// Position of the index in the index slice.
        index: usize,
        /// The stored value.
        value: u32,
    },
    /// A scalar parameter is out of its domain (a NaN clamp bound, min > max, ...).
    InvalidParameter(&'static str),
    /// A layer of a [`Network`](crate::net::Network) does not take what the layer before
    /// it gives.
    LayerMismatch {
        /// The layer's position.
        layer: usize,
        /// What differs: `"input length"` or `"batch"`.
        what: &'static str,
        /// The layer's own value.
        expected: usize,
        /// What the layers before give.
        actual: usize,
    },
    /// A weight [`Blob`](crate::net::Blob) cannot be read; the text says why.
    InvalidBlob(&'static str),
    /// Packed weights ([`conv2d_s8_pack`](crate::conv2d_s8_pack)) were made for another
    /// layer, or for the kernel another CPU variant runs: pack them again.
    PackedMismatch,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroSize(what) => write!(f, "{what} must be at least 1"),
            Self::ZeroStride => f.write_str("stride must be at least 1"),
            Self::ZeroDilation => f.write_str("dilation must be at least 1"),
            Self::InvalidGroups {
                groups,
                in_channels,
                out_channels,
            } => write!(
                f,
                "groups = {groups} must be at least 1 and divide in_channels = {in_channels} \
                 and out_channels = {out_channels}"
            ),
            Self::Overflow => f.write_str("a size computation overflows usize"),
            Self::EmptyOutput => {
                f.write_str("the dilated kernel is larger than the padded input: empty output")
            }
            Self::LengthMismatch {
                arg,
                expected,
                actual,
            } => write!(f, "{arg} has {actual} elements, expected {expected}"),
            Self::ScratchTooSmall { needed, actual } => {
                write!(f, "scratch has {actual} elements, needs {needed}")
            }
            Self::InvalidLeadingDimension { arg, ld, min } => {
                write!(f, "{arg} = {ld} is smaller than the row length {min}")
            }
            Self::InvalidLabel {
                index,
                label,
                classes,
            } => write!(
                f,
                "label {label} at position {index} is not below the class count {classes}"
            ),
            Self::InvalidIndex { index, value } => write!(
                f,
                "pooling index {value} at position {index} is outside the input plane"
            ),
            Self::PackedMismatch => f.write_str(
                "the packed weights were made for another layer or CPU variant: pack them again",
            ),
            Self::InvalidParameter(what) => write!(f, "invalid parameter: {what}"),
            Self::LayerMismatch {
                layer,
                what,
                expected,
                actual,
            } => write!(
                f,
                "layer {layer} takes {what} {expected}, but the layers before give {actual}"
            ),
            Self::InvalidBlob(why) => write!(f, "weight blob: {why}"),
        }
    }
}

impl core::error::Error for KernelError {}
