//! Instruction sets and run-time dispatch.
//!
//! `wide` picks its instructions at compile time, so a default `x86_64` build runs SSE2.
//! The hot kernels therefore also come compiled for AVX2 + FMA and for AVX-512 under
//! `#[target_feature]`, and the best variant the CPU supports is chosen at run time from
//! `cpuid` (which needs no `std`), detected once and cached. Every variant can be forced,
//! for tests and benches:
//!
//! ```
//! use cnnkit_kernels::arch::{self, Isa};
//! let best = arch::detected();
//! assert!(arch::supported().any(|i| i == best));
//! arch::force(Some(Isa::Portable)).unwrap();
//! assert_eq!(arch::active(), Isa::Portable);
//! arch::force(None).unwrap(); // back to the detected one
//! ```

use core::sync::atomic::{AtomicU8, Ordering};

use crate::error::KernelError;

pub(crate) mod simd;
pub(crate) mod vector;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// Calls the generic kernel `f::<V>(args)` with `V` the lane type of the variant
/// [`active`] names: for AVX2 + FMA and for AVX-512 through a `#[target_feature]`
/// function (a trampoline), so that everything `f` inlines is compiled with those
/// features; otherwise with the portable `wide::f32x8`.
///
/// `dispatch!(f(a: &A, b: &mut B))` names each argument with its type (the types of the
/// trampoline's parameters), `dispatch!(f[T](..))` passes more generic arguments after
/// `V` (`f::<V, T>`), `dispatch!(f(..) -> R)` returns `f`'s `R`, and
/// `dispatch!(@on isa; f(..))` runs the variant `isa` instead of the active one (when the
/// CPU supports it; the portable one otherwise).
///
/// A kernel's tile shapes and thresholds are not arguments: they are associated items
/// of traits its operator defines and each lane type implements (for instance
/// `gemm::kernel::GemmKernel`), so `f` reads them from `V`.
macro_rules! dispatch {
    ($f:ident $([$($g:ty),* $(,)?])? ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)?) => {
        $crate::arch::dispatch!(@on $crate::arch::active();
            $f $([$($g),*])? ($($arg: $ty),*) $(-> $ret)?)
    };
    (@on $isa:expr; $f:ident $([$($g:ty),* $(,)?])? ( $($arg:ident : $ty:ty),* $(,)? )
        $(-> $ret:ty)?) => {{
        match $isa {
            #[cfg(target_arch = "x86_64")]
            $crate::arch::Isa::Avx512 if $crate::arch::Isa::Avx512.is_supported() => {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $f::<$crate::arch::x86::Avx512 $($(, $g)*)?>($($arg),*)
                }
                // SAFETY: the guard checked that the CPU supports AVX-512 F, BW and VL,
                // AVX2 and FMA.
                unsafe { avx512($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            $crate::arch::Isa::Avx2Fma if $crate::arch::Isa::Avx2Fma.is_supported() => {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $f::<$crate::arch::x86::Avx2 $($(, $g)*)?>($($arg),*)
                }
                // SAFETY: the guard checked that the CPU supports AVX2 and FMA.
                unsafe { avx2($($arg),*) }
            }
            _ => $f::<$crate::simd::f32x8 $($(, $g)*)?>($($arg),*),
        }
    }};
}
pub(crate) use dispatch;

/// Whether `wide` has vector registers on this target: elsewhere (a Cortex-M4F) its
/// 8-lane vectors are emulated lane by lane, and kernels that gain nothing from lanes
/// there take their scalar or smaller code (the linear layer's `dot_rows_scalar`, the
/// int8 depthwise convolution's general loop, which keeps the firmware's flash small).
pub(crate) const HAS_VECTORS: bool = cfg!(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "wasm32",
    target_feature = "neon"
));

/// Evaluates `expr` with `V` the lane type of the variant `isa` (the portable one where
/// the CPU cannot run it), without target features: for a kernel's constants
/// (`with_isa!(isa, V => <V as GemmKernel>::MR)`), never for its code.
macro_rules! with_isa {
    ($isa:expr, $V:ident => $e:expr) => {{
        match $isa {
            #[cfg(target_arch = "x86_64")]
            $crate::arch::Isa::Avx512 if $crate::arch::Isa::Avx512.is_supported() => {
                type $V = $crate::arch::x86::Avx512;
                $e
            }
            #[cfg(target_arch = "x86_64")]
            $crate::arch::Isa::Avx2Fma if $crate::arch::Isa::Avx2Fma.is_supported() => {
                type $V = $crate::arch::x86::Avx2;
                $e
            }
            _ => {
                type $V = $crate::simd::f32x8;
                $e
            }
        }
    }};
}
pub(crate) use with_isa;

/// A register tile's shape as a type, `R` by `C` (what the two count is the kernel's:
/// rows by vectors, pixels by vectors, channels by strips): a lane type names the tiles
/// it runs through its operators' traits (`type Tile = Tile<6, 2>`), and the operator
/// turns the type back into const generics in one generic `impl` for every `Tile<R, C>`.
pub(crate) struct Tile<const R: usize, const C: usize>;

/// A kernel variant, named for the instructions it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Isa {
    /// `wide`'s portable code: whatever the build's compile-time features give (SSE2 in a
    /// default x86_64 build, NEON on aarch64, simd128 on wasm with the feature, scalar
    /// lanes on a Cortex-M4).
    Portable,
    /// x86_64 AVX2 + FMA, chosen at run time.
    Avx2Fma,
    /// x86_64 AVX-512 F, BW and VL (with AVX2 and FMA), chosen at run time: the 8-lane
    /// code with 32 registers and masked edges, and 16-lane registers for the GEMM
    /// microkernel, the implicit convolution's tile, `tanh` and `sigmoid`.
    Avx512,
}

impl Isa {
    /// Every variant, most portable first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2Fma, Isa::Avx512];

    /// A short name (`"portable"`, `"avx2"`, `"avx512"`) for tables and flags.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The variant with this [`Isa::name`].
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    const fn code(self) -> u8 {
        match self {
            Isa::Portable => 1,
            Isa::Avx2Fma => 2,
            Isa::Avx512 => 3,
        }
    }

    const fn from_code(c: u8) -> Option<Isa> {
        match c {
            1 => Some(Isa::Portable),
            2 => Some(Isa::Avx2Fma),
            3 => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// Whether this CPU can run the variant.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Avx2Fma | Isa::Avx512 => detected() >= self,
        }
    }
}

static DETECTED: AtomicU8 = AtomicU8::new(0);
static FORCED: AtomicU8 = AtomicU8::new(0);

/// The best variant this CPU supports (detected on the first call, then cached).
pub fn detected() -> Isa {
    if let Some(i) = Isa::from_code(DETECTED.load(Ordering::Relaxed)) {
        return i;
    }
    let i = detect();
    DETECTED.store(i.code(), Ordering::Relaxed);
    i
}

fn detect() -> Isa {
    // Miri interprets the portable path only (it has no `cpuid`).
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        if x86::has_avx512() {
            return Isa::Avx512;
        }
        if x86::has_avx2_fma() {
            return Isa::Avx2Fma;
        }
    }
    Isa::Portable
}

/// This core's data caches, in bytes (0 where unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caches {
    /// Level 1 data cache.
    pub l1d: usize,
    /// Level 2 cache.
    pub l2: usize,
    /// Level 3 cache (usually shared by several cores: its whole size).
    pub l3: usize,
}

/// This CPU's cache sizes, from `cpuid` on x86_64 (leaf 4 on Intel, 0x8000_001D on AMD);
/// all 0 elsewhere and under Miri. Read on each call (a few `cpuid` instructions).
///
/// ```
/// let c = cnnkit_kernels::arch::caches();
/// assert!(c.l1d == 0 || c.l1d <= c.l2.max(c.l1d));
/// ```
pub fn caches() -> Caches {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let [l1d, l2, l3] = x86::cache_sizes();
        Caches { l1d, l2, l3 }
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        Caches {
            l1d: 0,
            l2: 0,
            l3: 0,
        }
    }
}

static VNNI: AtomicU8 = AtomicU8::new(0);

/// Whether this CPU has AVX-512 VNNI (`vpdpbusd`: four int8 multiply-adds per 32-bit
/// lane), which the AVX-512 variant's int8 kernels use where it exists (detected once);
/// false elsewhere and under Miri.
///
/// ```
/// let vnni = cnnkit_kernels::arch::avx512_vnni();
/// assert!(!vnni || cnnkit_kernels::arch::Isa::Avx512.is_supported());
/// ```
pub fn avx512_vnni() -> bool {
    match VNNI.load(Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    let has = x86::has_avx512_vnni();
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let has = false;
    VNNI.store(if has { 2 } else { 1 }, Ordering::Relaxed);
    has
}

static DOTPROD: AtomicU8 = AtomicU8::new(0);

/// Whether the int8 convolution uses aarch64's dot product instructions (`sdot`, Armv8.2
/// DotProd): always in a build that enables them (`-C target-feature=+dotprod`, or a
/// `-C target-cpu` that has them), else once [`set_aarch64_dotprod`] said the CPU has
/// them (the kernels are `no_std` and cannot ask the operating system; `cnnkit`'s std
/// layer asks and tells them). False on other architectures.
///
/// ```
/// let on = cnnkit_kernels::arch::aarch64_dotprod();
/// assert!(!on || cfg!(target_arch = "aarch64"));
/// ```
pub fn aarch64_dotprod() -> bool {
    cfg!(all(target_arch = "aarch64", target_feature = "dotprod"))
        || (cfg!(target_arch = "aarch64") && DOTPROD.load(Ordering::Relaxed) == 2)
}

/// Tells the int8 kernels whether this aarch64 CPU has the dot product instructions
/// (`std::arch::is_aarch64_feature_detected!("dotprod")`), so that they use `sdot` without
/// a build for such CPUs. Ignored on other architectures, and `false` is ignored by a
/// build that enables the instructions.
///
/// # Safety
/// With `true`, the CPU must support Armv8.2's DotProd (else the int8 convolution executes
/// an undefined instruction).
///
/// ```
/// // SAFETY: false promises nothing.
/// unsafe { cnnkit_kernels::arch::set_aarch64_dotprod(false) };
/// assert_eq!(
///     cnnkit_kernels::arch::aarch64_dotprod(),
///     cfg!(all(target_arch = "aarch64", target_feature = "dotprod"))
/// );
/// ```
pub unsafe fn set_aarch64_dotprod(on: bool) {
    DOTPROD.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

static VBMI: AtomicU8 = AtomicU8::new(0);

/// Whether the int8 kernels use AVX-512 VBMI (`vpermb`, `vpermt2b`, to move bytes): where
/// this CPU has it (detected once) unless [`use_avx512_vbmi`] turned it off; false
/// elsewhere and under Miri.
///
/// ```
/// let on = cnnkit_kernels::arch::avx512_vbmi();
/// assert!(!on || cnnkit_kernels::arch::Isa::Avx512.is_supported());
/// ```
pub fn avx512_vbmi() -> bool {
    match VBMI.load(Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    let has = x86::has_avx512_vbmi();
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let has = false;
    VBMI.store(if has { 2 } else { 1 }, Ordering::Relaxed);
    has
}

/// Turns the int8 kernels' use of AVX-512 VBMI off, or back on where the CPU has it: the
/// code CPUs with VNNI and without VBMI run (Intel's Cascade Lake) can then be tested
/// and timed on a CPU that has both.
///
/// ```
/// use cnnkit_kernels::arch;
/// arch::use_avx512_vbmi(false);
/// assert!(!arch::avx512_vbmi());
/// arch::use_avx512_vbmi(true); // (detected again)
/// ```
pub fn use_avx512_vbmi(on: bool) {
    VBMI.store(if on { 0 } else { 1 }, Ordering::Relaxed);
}

static ZMM_DOUBLES: AtomicU8 = AtomicU8::new(0);

/// Whether this CPU runs AVX-512's 512-bit FMAs at about the rate of its 256-bit ones, so
/// that zmm registers do twice the work per cycle (two 512-bit FMA units, as Intel's server
/// cores have; AMD's Zen 4 splits each 512-bit FMA in two). The planners prefer kernels
/// with zmm tiles where it does. Measured once (about 0.3 ms, with the time-stamp
/// counter) on the first call, then fixed for the process; false without AVX-512, on other
/// architectures and under Miri.
///
/// ```
/// let wide = cnnkit_kernels::arch::zmm_fma_doubles();
/// assert_eq!(wide, cnnkit_kernels::arch::zmm_fma_doubles()); // cached
/// ```
pub fn zmm_fma_doubles() -> bool {
    match ZMM_DOUBLES.load(Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    let doubles = x86::zmm_fma_doubles();
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let doubles = false;
    // the first answer stored is every caller's (threads measuring at once could disagree,
    // and the GEMM packs A for the tile this chooses, then reads it back)
    let code = if doubles { 2 } else { 1 };
    match ZMM_DOUBLES.compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => doubles,
        Err(stored) => stored == 2,
    }
}

/// Every variant this CPU can run, most portable first.
pub fn supported() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_supported())
}

/// The variant the kernels use now: the forced one if any, else [`detected`].
#[inline]
pub fn active() -> Isa {
    match Isa::from_code(FORCED.load(Ordering::Relaxed)) {
        Some(i) => i,
        None => detected(),
    }
}

/// Forces every kernel to use `isa` (`None` returns to the detected best). This is a
/// process-wide setting meant for tests and benches; every variant computes the same
/// results within the stated tolerances, so a concurrent caller is never wrong, only
/// perhaps slower.
///
/// # Errors
/// [`KernelError::InvalidParameter`] if this CPU cannot run `isa`.
pub fn force(isa: Option<Isa>) -> Result<(), KernelError> {
    match isa {
        None => FORCED.store(0, Ordering::Relaxed),
        Some(i) if i.is_supported() => FORCED.store(i.code(), Ordering::Relaxed),
        Some(_) => {
            return Err(KernelError::InvalidParameter(
                "this CPU cannot run that variant",
            ));
        }
    }
    Ok(())
}
