//! The memory budget: every buffer whose size comes from input (a checkpoint, a spec, a
//! batch size, a thread count, an image) is checked against it before it is allocated.
//!
//! The default is [`DEFAULT`] (4 GiB); `cnnkit --max-memory SIZE` or the environment
//! variable `CNNKIT_MAX_MEMORY` change it for the command line, [`set`] for a program.
//!
//! ```
//! use cnnkit::budget;
//! assert_eq!(budget::parse_size("512M").unwrap(), 512 << 20);
//! assert!(budget::check("a test buffer", budget::get() + 1).is_err());
//! let v: Vec<f32> = budget::zeroed(1000, "a test buffer").unwrap();
//! assert_eq!(v.len(), 1000);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The budget unless told otherwise: 4 GiB.
pub const DEFAULT: u64 = 4 << 30;

static LIMIT: AtomicU64 = AtomicU64::new(DEFAULT);

/// Sets the budget, in bytes, for the whole process.
pub fn set(bytes: u64) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// The budget in bytes.
pub fn get() -> u64 {
    LIMIT.load(Ordering::Relaxed)
}

/// `bytes` in the unit a reader takes in at a glance.
pub fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (u, n) in UNITS {
        if bytes >= n {
            return format!("{:.1} {u}", bytes as f64 / n as f64);
        }
    }
    format!("{bytes} bytes")
}

/// Checks that `what` (a phrase such as "the training buffers") may take `bytes`.
///
/// # Errors
/// [`Error::Invalid`] naming `what`, both sizes and how to raise the budget.
pub fn check(what: &str, bytes: u64) -> Result<()> {
    let limit = get();
    if bytes > limit {
        return Err(Error::invalid(format!(
            "{what} would take {}, more than the memory budget of {} \
             (raise it with --max-memory or CNNKIT_MAX_MEMORY)",
            human(bytes),
            human(limit)
        )));
    }
    Ok(())
}

/// `n` default values, within the budget, or an error instead of an abort.
///
/// # Errors
/// When `n` values of `T` exceed the budget or cannot be allocated.
pub fn zeroed<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>> {
    let bytes = (n as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    check(what, bytes)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::invalid(format!(
            "{what}: could not allocate {} (out of memory)",
            human(bytes)
        ))
    })?;
    v.resize(n, T::default());
    Ok(v)
}

/// Parses a size: a whole number of bytes with an optional suffix `K`, `M`, `G` or `T`
/// (powers of 1024; `KiB`, `MB` and the like read the same).
///
/// # Errors
/// [`Error::Invalid`] for anything else, or 0.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad_size(s)),
    };
    let n: u64 = num.parse().map_err(|_| bad_size(s))?;
    let bytes = n.checked_mul(1 << shift).ok_or_else(|| bad_size(s))?;
    if bytes == 0 {
        return Err(bad_size(s));
    }
    Ok(bytes)
}

fn bad_size(s: &str) -> Error {
    Error::invalid(format!(
        "memory budget `{s}`: expected a positive size such as 4G, 512M or 1000000"
    ))
}
