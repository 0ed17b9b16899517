//! The parts of the training loop's thread pool: a barrier that spins before it yields
//! and that a panicking thread breaks (so no thread waits for a dead one), lock helpers
//! that do not turn one panic into many, and the message of a panic.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Reads a lock, whether or not a panicking thread poisoned it (every panic is reported
/// as an error anyway).
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes a lock, poisoned or not (see [`read`]).
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A barrier that spins before it yields: a training step is a few milliseconds, and
/// waking a thread parked on a futex costs tens of microseconds twice per step.
pub(crate) struct SpinBarrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    /// Set when a thread panicked: every wait returns at once.
    broken: AtomicBool,
}

impl SpinBarrier {
    pub(crate) fn new(n: usize) -> Self {
        SpinBarrier {
            n,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
        }
    }

    /// Breaks the barrier for good: every waiting and later [`SpinBarrier::wait`]
    /// returns `false`.
    pub(crate) fn break_all(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// Waits for the other threads; `false` when the barrier is broken.
    pub(crate) fn wait(&self) -> bool {
        if self.broken.load(Ordering::Acquire) {
            return false;
        }
        let start = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return true;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == start {
            if self.broken.load(Ordering::Acquire) {
                return false;
            }
            if spins < 1 << 14 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        true
    }
}

/// The message a panic carried (`panic!("...")` or a formatted one).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
