//! The properties the fuzz targets check, one function per target taking the fuzzer's
//! bytes. Shared by `fuzz/fuzz_targets/*.rs` (nightly, cargo-fuzz) and by
//! `tests/fuzz_regressions.rs`, which replays every file under `fuzz/regressions/` on
//! stable, so an input that once failed stays checked by a plain `cargo test`.
//!
//! Kernel properties: the fuzzer's bytes become bounded parameters (zero and oversized
//! values included, so invalid parameters are reached too) and data (any f32 bit
//! pattern: NaN, infinities, subnormals, huge values). An invalid call must return the
//! reference's `Err`; a valid one must match the scalar reference within the stated
//! bound, under every kernel variant the CPU supports. The bounds:
//! - sums (convolution, GEMM, linear, col2im, average pooling, backward passes): the
//!   standard worst case `|got - want| <= (terms + 2) eps * sum|terms| + eps |want| +
//!   MIN_POSITIVE`, where `sum|terms|` is the same computation on absolute values;
//!   where that magnitude overflows f32 (the f32 kernel may overflow in between, where the
//!   f64 reference does not), only NaN is compared: a NaN result must be NaN;
//! - copies and selections (im2col, ReLU, max/min pooling with indices): bit-equal
//!   (NaN to NaN);
//! - transcendental functions: the accuracy the kernel documents, in ULP.
#![allow(dead_code)]

pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod int8;
pub mod net;
pub mod norm;
pub mod parsers;
pub mod pool;

use cnnkit_kernels::arch;

/// Reads parameters from the front of the fuzzer's bytes and floats from the rest.
pub struct Bytes<'a> {
    head: &'a [u8],
    floats: &'a [u8],
    next_float: usize,
    next_byte: usize,
}

impl<'a> Bytes<'a> {
    /// Splits `data` into `head` parameter bytes (zero-extended if short) and float data.
    pub fn new(data: &'a [u8], head: usize) -> Self {
        let (head, floats) = data.split_at(head.min(data.len()));
        Self {
            head,
            floats,
            next_float: 0,
            next_byte: 0,
        }
    }

    /// Parameter byte `i` (0 past the end).
    pub fn byte(&self, i: usize) -> usize {
        self.head.get(i).copied().unwrap_or(0) as usize
    }

    /// The next `n` floats: the data's bit patterns, then (once it runs out) a small
    /// repeating ramp, so large shapes stay cheap to reach.
    pub fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.float()).collect()
    }

    /// The next `n` int8 values: the data's bytes (after those the floats took), then a
    /// repeating ramp over the whole range.
    pub fn int8s(&mut self, n: usize) -> Vec<i8> {
        (0..n)
            .map(|_| {
                let i = self.next_byte;
                self.next_byte += 1;
                match self.floats.get(i) {
                    Some(&v) => v as i8,
                    None => (i.wrapping_mul(37) % 256) as u8 as i8,
                }
            })
            .collect()
    }

    /// One float, as [`Bytes::floats`].
    pub fn float(&mut self) -> f32 {
        let i = self.next_float;
        self.next_float += 1;
        match self.floats.get(4 * i..4 * i + 4) {
            Some(c) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            None => ((i % 7) as f32 - 3.0) * 0.5,
        }
    }
}

static ISA_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` under every kernel variant the CPU supports (the setting is process-wide,
/// hence the lock), then returns to the detected one.
pub fn for_each_isa(mut f: impl FnMut(arch::Isa)) {
    let _g = ISA_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for isa in arch::supported() {
        arch::force(Some(isa)).unwrap();
        f(isa);
    }
    arch::force(None).unwrap();
}

pub fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// The sum bound (see the module docs): `mag[i]` is the reference computation on
/// absolute values, `terms` the longest sum behind one element.
pub fn assert_sum_close(what: &str, got: &[f32], want: &[f32], mag: &[f32], terms: usize) {
    assert_sum_close_abs(what, got, want, mag, terms, f32::MIN_POSITIVE);
}

/// [`assert_sum_close`] with the absolute part of the bound given (`MIN_POSITIVE` there,
/// for products that underflow).
pub fn assert_sum_close_abs(
    what: &str,
    got: &[f32],
    want: &[f32],
    mag: &[f32],
    terms: usize,
    atol: f32,
) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let gamma = (terms as f32 + 2.0) * f32::EPSILON;
    for (i, ((&g, &e), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        if !m.is_finite() || e.is_nan() {
            assert!(!e.is_nan() || g.is_nan(), "{what}[{i}]: got {g}, want NaN");
            continue;
        }
        let tol = gamma * m + f32::EPSILON * e.abs() + atol;
        assert!(
            (g - e).abs() <= tol,
            "{what}[{i}]: got {g}, want {e}, diff {} > {tol} (magnitude {m}, {terms} terms)",
            (g - e).abs()
        );
    }
}

/// Marks the magnitudes of averages whose sum (before the division) overflows f32: the
/// kernel sums in f32, as PyTorch does, while the f64 reference does not overflow.
/// The f32 sum may round up by `(divisor + 2) eps` relative, so sums within that of
/// `f32::MAX` count as overflowing too.
pub fn sum_must_fit(mag: &mut [f32], divisor: usize) {
    let d = divisor as f64;
    for m in mag {
        let sum = f64::from(*m) * d * (1.0 + (d + 2.0) * f64::from(f32::EPSILON));
        if sum.is_nan() || sum > f64::from(f32::MAX) {
            *m = f32::INFINITY;
        }
    }
}

/// Bit-equal, except that any NaN matches any NaN.
pub fn assert_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
            "{what}[{i}]: got {g:e} ({:#x}), want {e:e} ({:#x})",
            g.to_bits(),
            e.to_bits()
        );
    }
}

/// Distance in units in the last place between two f32 of any sign (0 for NaN vs NaN,
/// `u32::MAX` for NaN vs a number).
pub fn ulps(a: f32, b: f32) -> u32 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0
        } else {
            u32::MAX
        };
    }
    fn key(x: f32) -> i64 {
        let b = x.to_bits() as i32;
        i64::from(if b < 0 { i32::MIN - b } else { b })
    }
    (key(a) - key(b)).unsigned_abs().min(u64::from(u32::MAX)) as u32
}
