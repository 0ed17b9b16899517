//! Cache blocking of the packed product (`mc`, `kc`, `nc`), from this CPU's caches and the
//! FMA rate of the tile's registers: see [`SgemmBlocking::model`].

use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::{self, Caches, Isa};
use crate::error::KernelError;

/// Largest depth of a packed panel (K block) any CPU gets; scratch sizes use it.
pub(crate) const KC_MAX: usize = 512;
/// Largest number of rows of A packed at once (M block).
pub(crate) const MC_MAX: usize = 384;
/// Largest number of columns of B packed at once (N block).
pub(crate) const NC_MAX: usize = 1024;

/// How the packed product is cut into cache-sized blocks (BLIS names): `kc` rows of B
/// (one `kc x NR` sliver of it is reused from L1 by every `MR`-row sliver of A), `mc` rows
/// of A (an `mc x kc` block packed at once, reused from L2 by every sliver of B) and `nc`
/// columns of B (a `kc x nc` panel packed at once).
///
/// Each variant's blocking comes from [`SgemmBlocking::model`] on this CPU's caches, or is
/// forced with [`force_sgemm_blocking`] (for tuning). The blocking changes the order in
/// which `k` is summed (one pass per `kc` rows), so results are bit-for-bit reproducible for
/// a given blocking, not across blockings.
///
/// ```
/// use cnnkit_kernels::{arch, sgemm_blocking};
/// let b = sgemm_blocking(arch::active());
/// assert!(b.kc >= 64 && b.mc >= 48 && b.nc >= 512);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgemmBlocking {
    /// Rows of A packed at once: a multiple of 48 (every tile's row count divides it).
    pub mc: usize,
    /// Depth of a packed panel.
    pub kc: usize,
    /// Columns of B packed at once: a multiple of 32 (every tile's width divides it).
    pub nc: usize,
}

impl SgemmBlocking {
    /// The blocking used where the caches are unknown, as tuned on an AMD Zen 4 (32 KiB
    /// L1d, 1 MiB L2): `kc` 512, `mc` 96, `nc` 1024.
    pub const DEFAULT: Self = Self {
        mc: 96,
        kc: KC_MAX,
        nc: NC_MAX,
    };

    /// What a tile `nr` floats wide gets on a CPU with caches `c`, `fma_doubles` saying
    /// whether its core retires two FMAs of the tile's register width per cycle.
    ///
    /// Two FMAs per cycle eat a sliver of B (`kc x nr` floats, read once per `MR` rows of
    /// A) twice as fast as one, too fast to stream it from L2: it must stay in L1d, beside
    /// the A sliver streaming past and the strip of C the pass over the A block updates.
    ///
    /// - `kc`: the largest multiple of 32 with the B sliver in two thirds of L1d (64..=512).
    /// - `mc`: 96, as the default: from 48 to 192 it measured within 3% either way on the
    ///   Xeon below (sgemm 256^3 1.4% better at 48, the 1x1 layer of the bench 2.7% worse),
    ///   and 384 lost, so no cache rule was kept for it.
    /// - `nc`: 1024 (the B panel lives in L2 or L3; below 1024 columns a product is one N
    ///   block anyway).
    ///
    /// At one FMA per cycle (AMD's Zen 4 with zmm: its 512-bit FMAs take two cycles), or
    /// with unknown caches (0), [`SgemmBlocking::DEFAULT`], measured best there.
    ///
    /// Measured on an Intel Xeon (family 6 model 207: 48 KiB L1d, 2 MiB L2, two 512-bit FMAs
    /// per cycle), `cnnkit bench --tune --filter sgemm` and `--blocking` in alternation:
    /// `kc` 256 against 512 (the default) for the zmm tile, sgemm 1024^3 14.8 against
    /// 15.8 ms (medians of 5 alternations, per-pair ratios 0.91-0.94 but one), 256^3 2%
    /// faster; the convolutions' GEMMs within 1-2%.
    ///
    /// ```
    /// use cnnkit_kernels::{arch::Caches, SgemmBlocking};
    /// let xeon = Caches { l1d: 48 << 10, l2: 2 << 20, l3: 0 };
    /// let b = SgemmBlocking::model(xeon, 32, true);
    /// assert_eq!((b.mc, b.kc, b.nc), (96, 256, 1024));
    /// assert_eq!(SgemmBlocking::model(xeon, 32, false), SgemmBlocking::DEFAULT);
    /// ```
    pub const fn model(c: Caches, nr: usize, fma_doubles: bool) -> Self {
        if c.l1d == 0 || nr == 0 || !fma_doubles {
            return Self::DEFAULT;
        }
        let kc = clamp(c.l1d * 2 / 3 / (nr * 4) / 32 * 32, 64, KC_MAX);
        Self {
            kc,
            ..Self::DEFAULT
        }
    }

    /// Checks the limits [`force_sgemm_blocking`] states.
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] outside them.
    pub const fn check(self) -> Result<Self, KernelError> {
        let ok = self.kc >= 1
            && self.kc <= KC_MAX
            && self.mc >= 48
            && self.mc <= MC_MAX
            && self.mc.is_multiple_of(48)
            && self.nc >= 32
            && self.nc <= NC_MAX
            && self.nc.is_multiple_of(32);
        if ok {
            Ok(self)
        } else {
            Err(KernelError::InvalidParameter(
                "sgemm blocking: kc in 1..=512, mc a multiple of 48 in 48..=384, nc a multiple of 32 in 32..=1024",
            ))
        }
    }
}

const fn clamp(v: usize, lo: usize, hi: usize) -> usize {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// The forced blocking, packed as `mc | kc << 10 | nc << 20` (0: none; every field fits
/// its bits within the limits, and 32-bit atomics exist on every target).
static FORCED: AtomicU32 = AtomicU32::new(0);
/// Each variant's modelled blocking, packed as [`FORCED`] (0: not computed yet).
static MODELLED: [AtomicU32; Isa::ALL.len()] = [const { AtomicU32::new(0) }; Isa::ALL.len()];

const fn pack(b: SgemmBlocking) -> u32 {
    (b.mc | b.kc << 10 | b.nc << 20) as u32
}

const fn unpack(v: u32) -> SgemmBlocking {
    let v = v as usize;
    SgemmBlocking {
        mc: v & 0x3ff,
        kc: (v >> 10) & 0x3ff,
        nc: v >> 20,
    }
}

/// The blocking `isa`'s products use now: the forced one if any, else the model's for
/// this CPU (computed once per variant: reading the caches takes a few `cpuid`
/// instructions, slow under a hypervisor).
///
/// ```
/// use cnnkit_kernels::{arch::Isa, sgemm_blocking, SgemmBlocking};
/// assert_eq!(sgemm_blocking(Isa::Portable).nc % 32, 0);
/// ```
pub fn sgemm_blocking(isa: Isa) -> SgemmBlocking {
    let forced = FORCED.load(Ordering::Relaxed);
    if forced != 0 {
        return unpack(forced);
    }
    let slot = &MODELLED[isa as usize];
    let v = slot.load(Ordering::Relaxed);
    if v != 0 {
        return unpack(v);
    }
    let nr = super::nr_of(isa);
    let doubles = match isa {
        // every CPU with AVX2 and FMA this crate targets retires two 256-bit FMAs per
        // cycle; the portable variant is bound by other things
        Isa::Avx2Fma => true,
        Isa::Avx512 => arch::zmm_fma_doubles(),
        Isa::Portable => false,
    };
    let b = SgemmBlocking::model(arch::caches(), nr, doubles);
    slot.store(pack(b), Ordering::Relaxed);
    b
}

/// Forces every variant's products to use `blocking` (`None` returns to the model's). A
/// process-wide setting for tuning (`cnnkit bench --tune` sweeps it); a product reads the
/// blocking once when it starts, so a concurrent change never mixes two in one product.
///
/// # Errors
/// [`KernelError::InvalidParameter`] unless `kc` is in 1..=512, `mc` is a multiple of 48
/// in 48..=384 and `nc` a multiple of 32 in 32..=1024 (the limits scratch sizes assume).
///
/// ```
/// use cnnkit_kernels::{force_sgemm_blocking, SgemmBlocking};
/// let b = SgemmBlocking { mc: 96, kc: 256, nc: 1024 };
/// force_sgemm_blocking(Some(b)).unwrap();
/// assert!(force_sgemm_blocking(Some(SgemmBlocking { mc: 50, ..b })).is_err());
/// force_sgemm_blocking(None).unwrap();
/// ```
pub fn force_sgemm_blocking(blocking: Option<SgemmBlocking>) -> Result<(), KernelError> {
    let v = match blocking {
        Some(b) => pack(b.check()?),
        None => 0,
    };
    FORCED.store(v, Ordering::Relaxed);
    Ok(())
}
