//! Shared test helpers: a seeded generator for data, tolerance checks, quickcheck setup.
#![allow(dead_code)]

use quickcheck::{Gen, QuickCheck, Testable};

/// Property cases per test under Miri.
pub const MIRI_CASES: u64 = 3;

/// Runs a property `n` times on random inputs (fixed sizes; shapes come from the cases).
/// Under Miri (an interpreter, about 10^4 times slower) a property runs a few cases only.
pub fn check<A: Testable>(n: u64, prop: A) {
    let n = if cfg!(miri) { n.min(MIRI_CASES) } else { n };
    QuickCheck::new()
        .tests(n)
        .max_tests(n * 20)
        .quickcheck(prop);
}

/// A uniform integer in `lo..=hi`.
/// Under Miri the range is cut to its first four values (small shapes).
pub fn range(g: &mut Gen, lo: usize, hi: usize) -> usize {
    let hi = if cfg!(miri) { hi.min(lo + 3) } else { hi };
    lo + (<u32 as quickcheck::Arbitrary>::arbitrary(g) as usize) % (hi - lo + 1)
}

/// A fair coin.
pub fn coin(g: &mut Gen) -> bool {
    <bool as quickcheck::Arbitrary>::arbitrary(g)
}

/// SplitMix64: deterministic data from a seed.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
    /// Values that are all distinct and at least 1/64 apart: a shuffled ramp.
    pub fn distinct(&mut self, n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n).map(|i| i as f32 / 64.0 - n as f32 / 128.0).collect();
        for i in (1..n).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
        v
    }
}

pub fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// `got` agrees with `want` (computed in f64 and rounded once) for every element:
/// `|got - want| <= (terms + 2) * eps * magnitude + eps * |want|`, where `magnitude` is
/// the sum of the absolute values of the terms each element sums (the standard worst-case
/// bound for a `terms`-long f32 sum in any order, fused or not). NaN must match NaN.
pub fn assert_sum_close(what: &str, got: &[f32], want: &[f32], magnitude: &[f32], terms: usize) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let gamma = (terms as f32 + 2.0) * f32::EPSILON;
    for i in 0..got.len() {
        let (g, w) = (got[i], want[i]);
        if w.is_nan() || g.is_nan() {
            assert!(w.is_nan() && g.is_nan(), "{what}[{i}]: got {g}, want {w}");
            continue;
        }
        let tol = gamma * magnitude[i] + f32::EPSILON * w.abs() + f32::MIN_POSITIVE;
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w}, |diff| {} > tol {tol} ({terms} terms)",
            (g - w).abs()
        );
    }
}

/// `got` agrees with `want` (computed in f64 and rounded once) within a bound derived
/// for each element: `|got - want| <= bound + eps * |want|`. NaN must match NaN.
pub fn assert_within(what: &str, got: &[f32], want: &[f32], bound: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for i in 0..got.len() {
        let (g, w) = (got[i], want[i]);
        if w.is_nan() || g.is_nan() {
            assert!(w.is_nan() && g.is_nan(), "{what}[{i}]: got {g}, want {w}");
            continue;
        }
        let tol = bound[i] + f64::from(f32::EPSILON * w.abs() + f32::MIN_POSITIVE);
        let diff = (f64::from(g) - f64::from(w)).abs();
        assert!(
            diff <= tol,
            "{what}[{i}]: got {g}, want {w}, |diff| {diff} > bound {tol}"
        );
    }
}

/// Element-wise `|got - want| <= atol + rtol * |want|`, NaN matching NaN and equal
/// infinities matching.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for i in 0..got.len() {
        let (g, w) = (got[i], want[i]);
        if w.is_nan() || g.is_nan() {
            assert!(w.is_nan() && g.is_nan(), "{what}[{i}]: got {g}, want {w}");
            continue;
        }
        if w.is_infinite() || g.is_infinite() {
            assert_eq!(g, w, "{what}[{i}]");
            continue;
        }
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Distance in units in the last place between two finite f32 of any sign.
pub fn ulps(a: f32, b: f32) -> u32 {
    fn key(x: f32) -> i64 {
        let b = x.to_bits() as i32;
        (if b < 0 { i32::MIN - b } else { b }) as i64
    }
    (key(a) - key(b)).unsigned_abs() as u32
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// Checks a gradient against central differences of a scalar function, coordinate by
/// coordinate: `|fd - grad| <= tol * (1 + |grad|)`. The step is the one the f32
/// coordinates really take (`orig + h` rounds where `|orig|` is large against `h`).
pub fn fd_check(
    what: &str,
    x: &mut [f32],
    grad: &[f32],
    h: f32,
    tol: f64,
    mut f: impl FnMut(&[f32]) -> f64,
) {
    for i in 0..x.len() {
        let orig = x[i];
        x[i] = orig + h;
        let (up, xu) = (f(x), x[i]);
        x[i] = orig - h;
        let (down, xd) = (f(x), x[i]);
        x[i] = orig;
        let fd = (up - down) / (f64::from(xu) - f64::from(xd));
        let g = f64::from(grad[i]);
        assert!(
            (fd - g).abs() <= tol * (1.0 + g.abs()),
            "{what}[{i}]: finite difference {fd}, backward {g}"
        );
    }
}

static ISA_LOCK: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Holds the kernel variant steady (no [`for_each_isa`] of another test forces another
/// one meanwhile) while the guard lives: for a test that sizes a scratch and then runs
/// the kernel under whatever variant is detected (a variant forced in between could want
/// another scratch). Not while calling [`for_each_isa`] (it would wait for itself).
#[allow(dead_code)]
pub fn isa_steady() -> std::sync::RwLockReadGuard<'static, ()> {
    ISA_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` once under every kernel variant this CPU supports, forcing each in turn
/// (serialised, since the setting is process-wide), then returns to the detected one.
pub fn for_each_isa(mut f: impl FnMut(cnnkit_kernels::arch::Isa)) {
    use cnnkit_kernels::arch;
    let _g = ISA_LOCK.write().unwrap_or_else(|e| e.into_inner());
    for isa in arch::supported() {
        arch::force(Some(isa)).unwrap();
        f(isa);
    }
    arch::force(None).unwrap();
}

/// [`for_each_isa`], and each variant again where the int8 kernels have a choice within
/// it: on aarch64 with the dot product kernel where the CPU has it (chosen at run time;
/// a build with `+dotprod` always uses it), on x86 without AVX-512 VBMI where the CPU has
/// it (the code of CPUs with VNNI and no VBMI). `f` gets the variant and which of these
/// ran (`""`, `"sdot"` or `"no VBMI"`).
#[allow(dead_code)] // (the int8 tests')
pub fn for_each_int8_variant(mut f: impl FnMut(cnnkit_kernels::arch::Isa, &'static str)) {
    use cnnkit_kernels::arch;
    for_each_isa(|isa| {
        f(isa, if arch::aarch64_dotprod() { "sdot" } else { "" });
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("dotprod") && !arch::aarch64_dotprod() {
            // SAFETY: the CPU has DotProd (detected above).
            unsafe { arch::set_aarch64_dotprod(true) };
            f(isa, "sdot");
            // SAFETY: false promises nothing.
            unsafe { arch::set_aarch64_dotprod(false) };
        }
        if isa == arch::Isa::Avx512 && arch::avx512_vbmi() {
            arch::use_avx512_vbmi(false);
            f(isa, "no VBMI");
            arch::use_avx512_vbmi(true);
        }
    });
}
