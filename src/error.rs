//! The error type of the std layer: every failure names what went wrong and where.

use std::fmt;
use std::path::{Path, PathBuf};

use cnnkit_kernels::KernelError;

/// Everything that can go wrong in `cnnkit`.
#[derive(Debug)]
pub enum Error {
    /// A kernel refused its arguments (a bug in the layer above, or a model too large).
    Kernel(KernelError),
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A data file is malformed (wrong magic, truncated, counts that disagree, ...).
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A checkpoint is corrupt or does not fit the model.
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A model spec, an option or an argument is invalid.
    Invalid(String),
    /// Training diverged: a loss, weight or optimizer state that is not finite (or is
    /// absurdly large). Nothing was saved from that point on.
    Diverged(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn data(path: &Path, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub(crate) fn checkpoint(path: &Path, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Kernel(e) => write!(f, "kernel: {e}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Data { path, msg } => write!(f, "{}: {msg}", path.display()),
            Error::Checkpoint { path, msg } => write!(f, "checkpoint {}: {msg}", path.display()),
            Error::Invalid(msg) => f.write_str(msg),
            Error::Diverged(msg) => write!(f, "training diverged: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Kernel(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<KernelError> for Error {
    fn from(e: KernelError) -> Self {
        Error::Kernel(e)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
