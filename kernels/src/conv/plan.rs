//! The convolution planners, one per pass: every choice of algorithm is made here, once,
//! from the geometry; the scratch length and the kernel that runs both follow from the
//! plan. A caller that runs one shape many times (a training step, a firmware's loop)
//! can keep the plan and skip the choice and the validation of the geometry:
//!
//! ```
//! use cnnkit_kernels::{Activation, Conv2dParams, Conv2dPlan, ConvKernel};
//! let p = Conv2dParams::new(64, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2);
//! let plan = Conv2dPlan::new(&p).unwrap();
//! assert_eq!(plan.kernel(), ConvKernel::Flat); // LeNet's first layer: pixels in the lanes
//! let d = p.dims().unwrap();
//! let (x, w) = (vec![1.0; d.input_len], vec![0.5; d.weight_len]);
//! let mut y = vec![0.0; d.output_len];
//! let mut scratch = vec![0.0; plan.scratch_len()];
//! for _ in 0..2 {
//!     plan.run(&x, &w, None, Activation::Relu, &mut y, &mut scratch).unwrap();
//! }
//! assert_eq!(y[2 * 28 + 2], 12.5); // an inner pixel sees all 25 taps
//! ```
//!
//! What decides (re-measure with `examples/winograd_ab.rs` and `cnnkit bench`):
//! - **Forward** ([`Conv2dPlan`]): 1x1 stride-1 unpadded kernels are a plain GEMM
//!   (`Pointwise`); wide 3x3 stride-1 layers Winograd's F(2x2, 3x3) where it pays
//!   (`winograd_pays`); fewer than 8 outputs per group the flat planes at stride 1
//!   (pixels in the lanes) or else the direct kernel (depthwise rows, vector rows, or
//!   scalar code on targets without vector registers); up to 1,024 taps per output, or
//!   planes of 128 pixels and more, the implicit GEMM; the rest im2col + GEMM.
//! - **Input gradient** ([`Conv2dInputGradPlan`]): depthwise rows or flat planes for
//!   depthwise layers; a plain GEMM for 1x1 stride-1 unpadded kernels; a forward
//!   convolution of `dY` with the flipped weights (unless that would be an im2col one),
//!   eight images in the vector lanes for small planes, or flat planes for few output
//!   channels, in an order that depends on whether zmm registers do twice the work of ymm
//!   ones on this CPU ([`arch::zmm_fma_doubles`]); `W^T dY` and col2im otherwise. The
//!   lanes, flat planes and forward convolution need finite weights (they multiply explicit
//!   zero borders), so their plans name a `fallback` the run takes for weights that are
//!   not.
//! - **Weight gradient** ([`Conv2dWeightGradPlan`]): flat planes (finite inputs) or rows
//!   for few input channels per group and depthwise layers (the implicit GEMM's zmm tile
//!   instead for more than 16 output channels where zmm registers do twice the work), the
//!   implicit GEMM for output planes of 16 pixels and more, im2col + GEMM otherwise.
//!
//! `cnnkit bench --tune` and `examples/conv_algos.rs` time every kernel of each pass
//! ([`Conv2dInputGradPlan::for_kernel`], [`Conv2dWeightGradPlan::for_kernel`]) and mark the
//! planners' picks.

use super::Ctx;
use super::fwd_direct::HAS_VECTORS;
use super::input_as_forward::{as_forward, as_forward_input};
use super::input_gemm::{gemm_input, gemm_input_scratch_len};
use super::weight_gemm::{gemm_weight, gemm_weight_scratch_len};
use super::{
    check_input_grad_slices, check_weight_grad_slices, depthwise, fwd_depthwise, fwd_direct_scalar,
    fwd_flat, fwd_im2col, fwd_implicit, fwd_winograd, input_depthwise, input_flat, input_lanes,
    is_pointwise, weight_depthwise, weight_flat, weight_implicit, weight_rows,
};
use crate::arch::{self, Isa};
use crate::error::KernelError;
use crate::gemm::sgemm_scratch_len;
use crate::params::{Activation, Conv2dDims, Conv2dParams, check_scratch};

/// The forward algorithms, as the public functions that run them: [`crate::conv2d`]
/// chooses one ([`crate::conv2d_algo`]); [`Conv2dPlan::kernel`] says what runs inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conv2dAlgo {
    /// [`crate::conv2d_direct`]: no scratch; for groups of fewer than 8 output channels
    /// that the flat planes do not take (strided or dilated ones, 1 to 3 outputs,
    /// strided depthwise convolutions), where GEMM tiles would be mostly empty.
    Direct,
    /// [`crate::conv2d_im2col`]: im2col + SGEMM (a plain GEMM for 1x1 stride-1 unpadded
    /// kernels); for many taps per output (above 1,024) on small planes (under 128 pixels),
    /// where the batch-wide GEMM fills its tiles across images.
    Im2col,
    /// [`crate::conv2d_implicit`]: the GEMM's register tile over (pixels x output
    /// channels), taps read in place, no im2col matrix; or, for 4 to 7 output channels
    /// per group and depthwise layers at stride 1, the flat planes (pixels in the lanes).
    Implicit,
    /// [`crate::conv2d_winograd`]: Winograd's F(2x2, 3x3), 2.25x fewer multiplications,
    /// for wide 3x3 stride-1 layers where a cost model of the FMA rate says the GEMM work it
    /// saves outweighs its transforms (128+ channels each way on a CPU with two 512-bit FMA
    /// units, 64+ on others; the model and its measurements are in `conv/plan.rs`).
    Winograd,
}

/// The kernel a plan runs: what really computes a pass, for labels, benches and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConvKernel {
    /// Vectorised along output rows (`PV * 8` pixels x 6 channels per tile).
    Direct,
    /// Plain scalar code, 4 pixels per tile (targets without vector registers).
    DirectScalar,
    /// Depthwise layers row by row (any stride and dilation).
    Depthwise,
    /// Flat zero-padded planes, every tap one constant offset, pixels in the lanes
    /// (stride 1).
    Flat,
    /// The implicit GEMM: a GEMM register tile, taps read in place.
    Implicit,
    /// im2col (or its block in the GEMM's packed layout) + SGEMM.
    Im2col,
    /// A plain GEMM over the input planes (1x1 stride-1 unpadded kernels).
    Pointwise,
    /// Winograd's F(2x2, 3x3).
    Winograd,
    /// Input gradient: eight images in the vector lanes.
    Lanes,
    /// Input gradient: a forward convolution of `dY` with the flipped weights.
    AsForward,
    /// Input gradient: `W^T dY` by GEMM, then col2im.
    Col2im,
    /// Weight gradient: along the output rows, for few input channels per group.
    Rows,
}

impl ConvKernel {
    /// Every kernel, in declaration order (tests and benches try each one a pass takes).
    ///
    /// ```
    /// use cnnkit_kernels::ConvKernel;
    /// assert!(ConvKernel::ALL.iter().enumerate().all(|(i, k)| k.index() == i));
    /// ```
    pub const ALL: [ConvKernel; 12] = [
        ConvKernel::Direct,
        ConvKernel::DirectScalar,
        ConvKernel::Depthwise,
        ConvKernel::Flat,
        ConvKernel::Implicit,
        ConvKernel::Im2col,
        ConvKernel::Pointwise,
        ConvKernel::Winograd,
        ConvKernel::Lanes,
        ConvKernel::AsForward,
        ConvKernel::Col2im,
        ConvKernel::Rows,
    ];

    /// The kernel's place in [`ConvKernel::ALL`] (an exhaustive match: a new kernel does
    /// not compile until it has one, and the example above checks the list agrees).
    pub const fn index(self) -> usize {
        match self {
            ConvKernel::Direct => 0,
            ConvKernel::DirectScalar => 1,
            ConvKernel::Depthwise => 2,
            ConvKernel::Flat => 3,
            ConvKernel::Implicit => 4,
            ConvKernel::Im2col => 5,
            ConvKernel::Pointwise => 6,
            ConvKernel::Winograd => 7,
            ConvKernel::Lanes => 8,
            ConvKernel::AsForward => 9,
            ConvKernel::Col2im => 10,
            ConvKernel::Rows => 11,
        }
    }

    /// A short name for tables and labels (`"flat"`, `"implicit"`, `"col2im"`...).
    pub const fn name(self) -> &'static str {
        match self {
            ConvKernel::Direct => "direct",
            ConvKernel::DirectScalar => "direct-scalar",
            ConvKernel::Depthwise => "depthwise",
            ConvKernel::Flat => "flat",
            ConvKernel::Implicit => "implicit",
            ConvKernel::Im2col => "im2col",
            ConvKernel::Pointwise => "pointwise",
            ConvKernel::Winograd => "winograd",
            ConvKernel::Lanes => "lanes",
            ConvKernel::AsForward => "as-forward",
            ConvKernel::Col2im => "col2im",
            ConvKernel::Rows => "rows",
        }
    }
}

/// Cycles per element of im2col's matrix (taps x pixels) that building it costs: written
/// once and read back by the GEMM's packing, from beyond L1 (fitted below).
const IM2COL_CYCLES_PER_ELEMENT: f64 = 2.0;

/// Whether the implicit GEMM beats im2col + GEMM, by a cost model in cycles per element of
/// im2col's matrix (taps x output pixels). Both run the same GEMM; im2col pays
/// [`IM2COL_CYCLES_PER_ELEMENT`] to build its matrix, and the implicit GEMM pays for the
/// partial tiles at the end of each image's plane (its tiles of `MR` pixels run within one
/// image: 25 pixels fill 28 at 7, the tile `implicit::takes_alt` picks):
/// `2 m (1 / fill - 1) / (F * 0.85)` cycles per element,
/// `m` output channels per group, `F` the FMA flops a cycle of the variant that runs (as
/// for [`winograd_pays`]). So the implicit GEMM loses only on small planes (few pixels,
/// badly rounded) with many output channels: large planes fill their tiles, and few
/// channels make the GEMM's work per element too small to pay for a copy.
///
/// `cargo run --release --example conv_algos`, implicit over im2col, AMD Zen 5 (F = 64 with
/// AVX-512; model's lost cycles in brackets; measured with 8-row tiles on 7 x 7 planes,
/// before the 7-row ones: 512 channels there now 1.02x), AVX-512 / AVX2: 128 -> 64 channels 3x3 on 7 x
/// 7, 64 images 2.08x (0.34) / 1.39x (0.48); 64 channels 5x5 on 7 x 7, 64 images 2.04x /
/// 1.38x; 128 channels 5x5 on 7 x 7 1.47x (0.67) / 1.16x (0.96), 8 and 64 images alike;
/// 512 channels 3x3 on 7 x 7 (8 images) 1.00x (2.69) / 1.09x (3.84, the model's one
/// miss); 256 -> 512 stride 2 to 7 x 7 1.02x / 1.02x; 100 channels on 5 x 5 (8 images),
/// AVX2 0.98x (1.47). Intel Xeon family 6 model 207 (F = 64), from the constants this
/// replaced: 512 channels on 7 x 7 0.88x (2.69); 100 channels on 5 x 5 1.12x (1.03); 64 on
/// 7 x 7 1.25x. (The constants were: implicit up to 1,024 taps, or on planes of 128 pixels
/// or more; they sent 128 -> 64 channels on 7 x 7, the input gradient of the `fmnist`
/// preset's last layer, to im2col at half the implicit GEMM's speed.)
pub(crate) fn implicit_pays(d: &Conv2dDims) -> bool {
    let f = fma_flops_per_cycle();
    let mr = super::implicit::forward_tile_rows(arch::active(), d.out_per_group, d.col_cols);
    let px = d.col_cols;
    let fill = px as f64 / px.next_multiple_of(mr) as f64;
    let lost = 2.0 * d.out_per_group as f64 * (1.0 / fill - 1.0) / (f * 0.85);
    lost <= IM2COL_CYCLES_PER_ELEMENT
}

/// Whether Winograd's algorithm pays for a 3x3 stride-1 kernel, by a cost model in
/// cycles per group: it saves GEMM work (16 products per tile of 2 x 2 outputs and channel
/// pair against 36) and pays for its transforms, which do not shrink as the FMA rate
/// grows. So the rule follows the FMA throughput per cycle of the variant that runs
/// (`zmm_doubles`): a CPU with two 512-bit FMA units (Intel's server cores, AMD
/// Zen 5) runs the GEMMs twice as fast as one with one unit (Zen 4) or on AVX2, and
/// Winograd pays only from more channels there.
///
/// - direct (the implicit GEMM or im2col): `2 m c 9 px / (F * 0.95 * fill)`, where `fill`
///   is the share of the plane's pixels in whole tiles of 16 (a fitted term: the
///   implicit GEMM's tiles run within one image, but 7 x 7 planes have tiles of 7 rows
///   since; re-measured with them, the model keeps every 7 x 7 layer below on its side:
///   64 -> 128 channels (64 images) 0.99 / 0.96, 64 channels 0.85 / 0.81, 128 (8 images)
///   1.08 / 1.07, 256 1.31 / 1.25, 512 1.46 / 1.33);
/// - Winograd: `2 m c 16 T / (F * 0.8) + 1.5 * 16 T (c + m) + 0.75 * 16 m c`: the GEMMs
///   over `T` tiles (each image's rounded up to 8: its run of columns in a block), the
///   input and output transforms (1.5 cycles a transformed value: they are bound by
///   memory), the weights' (0.75).
///
/// The constants are fitted to 14 layers timed on an AMD Zen 5 (F = 64; `cargo run
/// --release --example winograd_ab -- N C HW K REPS`, the implicit GEMM against Winograd,
/// medians of 20; model / measured): 64 -> 64 channels on 56 x 56 0.86 / 0.77, 28 x 28
/// 0.84 / 0.80, 14 x 14 0.78 / 0.79, 7 x 7 (64 images) 0.85 / 0.95; 64 -> 128 on 7 x 7
/// (64 images) 0.99 / 1.09; 128 on 28 x 28 1.15 / 1.12, 14 x 14 1.07 / 1.09, 7 x 7 1.08 /
/// 1.24; 256 on 14 x 14 1.31 / 1.31, one image 1.07 / 1.21, 7 x 7 1.31 / 1.37; 512 on 7 x 7
/// 1.46 / 1.23, one image 0.81 / 0.78; 32 on 14 x 14 (32 images) 0.52 / 0.52: the same
/// side of 1 on all but the 64 -> 128 layer. With F = 32 it predicts what a Zen 4
/// measured with the blocks of one image each (64 channels on 56 x 56 1.25x, 32 channels
/// 0.84x: model 1.18, 0.86).
pub(crate) fn winograd_pays(p: &Conv2dParams, d: &Conv2dDims) -> bool {
    if !fwd_winograd::applies(p) {
        return false;
    }
    let f = fma_flops_per_cycle();
    let (c, m) = (d.in_per_group as f64, d.out_per_group as f64);
    let px = d.col_cols as f64;
    let fill = px / d.col_cols.next_multiple_of(16) as f64;
    let tiles = d.out_h.div_ceil(2) * d.out_w.div_ceil(2);
    let t = (p.batch as f64) * tiles.next_multiple_of(8) as f64;
    let direct = 2.0 * m * c * 9.0 * px * p.batch as f64 / (f * 0.95 * fill);
    let winograd =
        2.0 * m * c * 16.0 * t / (f * 0.8) + 1.5 * 16.0 * t * (c + m) + 0.75 * 16.0 * m * c;
    winograd < direct
}

/// The forward algorithm for `p` (what [`crate::conv2d_algo`] answers).
fn forward_algo(p: &Conv2dParams, d: &Conv2dDims) -> Conv2dAlgo {
    if is_pointwise(p) {
        Conv2dAlgo::Im2col
    } else if winograd_pays(p, d) {
        Conv2dAlgo::Winograd
    } else if d.out_per_group < 8 {
        if fwd_flat::forward_applies(p, d) {
            Conv2dAlgo::Implicit
        } else {
            Conv2dAlgo::Direct
        }
    } else if implicit_pays(d) {
        Conv2dAlgo::Implicit
    } else {
        Conv2dAlgo::Im2col
    }
}

/// The kernel [`crate::conv2d_direct`] runs for `p`.
pub(super) fn direct_kernel(p: &Conv2dParams, d: &Conv2dDims) -> ConvKernel {
    if depthwise::applies(p, d) {
        ConvKernel::Depthwise
    } else if HAS_VECTORS {
        ConvKernel::Direct
    } else {
        ConvKernel::DirectScalar
    }
}

/// The direct kernels: `kernel` is one of [`direct_kernel`]'s.
pub(super) fn run_direct(
    kernel: ConvKernel,
    ctx: &Ctx<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    match kernel {
        ConvKernel::Depthwise => fwd_depthwise::forward(ctx, input, weight, bias, output),
        ConvKernel::DirectScalar => fwd_direct_scalar::forward(ctx, input, weight, bias, output),
        _ => super::fwd_direct::forward(ctx, input, weight, bias, output),
    }
}

/// A planned forward convolution: the algorithm and kernel chosen for its geometry, the
/// variant active when it was planned, and the scratch it needs. Run it as often as
/// wanted; only the slices are checked at each run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conv2dPlan {
    p: Conv2dParams,
    d: Conv2dDims,
    algo: Conv2dAlgo,
    kernel: ConvKernel,
    isa: Isa,
    scratch_len: usize,
}

impl Conv2dPlan {
    /// The plan [`crate::conv2d`] runs for `p`.
    ///
    /// # Errors
    /// As [`Conv2dParams::dims`].
    pub fn new(p: &Conv2dParams) -> Result<Self, KernelError> {
        let d = p.dims()?;
        Self::with(p, d, forward_algo(p, &d))
    }

    /// The plan of a given algorithm (what [`crate::conv2d_implicit`] and the other
    /// variants run).
    ///
    /// # Errors
    /// As [`Conv2dParams::dims`]; [`KernelError::InvalidParameter`] for Winograd's on a
    /// geometry it does not take (not 3x3, stride 1, undilated).
    pub fn for_algo(p: &Conv2dParams, algo: Conv2dAlgo) -> Result<Self, KernelError> {
        Self::with(p, p.dims()?, algo)
    }

    fn with(p: &Conv2dParams, d: Conv2dDims, algo: Conv2dAlgo) -> Result<Self, KernelError> {
        let (kernel, scratch_len) = match algo {
            Conv2dAlgo::Direct => (direct_kernel(p, &d), 0),
            Conv2dAlgo::Implicit if fwd_flat::forward_applies(p, &d) => {
                (ConvKernel::Flat, fwd_flat::forward_scratch_len(p, &d)?)
            }
            Conv2dAlgo::Implicit => (
                ConvKernel::Implicit,
                fwd_implicit::forward_scratch_len(p, &d)?,
            ),
            Conv2dAlgo::Im2col => {
                let k = if is_pointwise(p) {
                    ConvKernel::Pointwise
                } else {
                    ConvKernel::Im2col
                };
                (k, fwd_im2col::forward_scratch_len(p, &d)?)
            }
            Conv2dAlgo::Winograd => {
                if !fwd_winograd::applies(p) {
                    return Err(fwd_winograd::NOT_3X3);
                }
                (
                    ConvKernel::Winograd,
                    fwd_winograd::forward_scratch_len(p, &d)?,
                )
            }
        };
        Ok(Conv2dPlan {
            p: *p,
            d,
            algo,
            kernel,
            isa: arch::active(),
            scratch_len,
        })
    }

    /// The geometry planned for.
    pub const fn params(&self) -> &Conv2dParams {
        &self.p
    }

    /// Its sizes.
    pub const fn dims(&self) -> &Conv2dDims {
        &self.d
    }

    /// The public algorithm (the function of that name runs this plan).
    pub const fn algo(&self) -> Conv2dAlgo {
        self.algo
    }

    /// The kernel that computes the pass.
    pub const fn kernel(&self) -> ConvKernel {
        self.kernel
    }

    /// The variant that was active when planned (the kernels run the one active at run
    /// time: every variant computes the same results, within the stated tolerances).
    pub const fn isa(&self) -> Isa {
        self.isa
    }

    /// Scratch elements a run needs.
    pub const fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// `output = clamp(conv(input, weight) + bias)`, as [`crate::conv2d`].
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] for a bad clamp; [`KernelError::LengthMismatch`]
    /// for a slice of the wrong length; [`KernelError::ScratchTooSmall`] below
    /// [`Conv2dPlan::scratch_len`].
    pub fn run(
        &self,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), KernelError> {
        let (_, lo, hi) = super::check_forward(&self.p, input, weight, bias, act, output)?;
        check_scratch(self.scratch_len, scratch.len())?;
        self.run_unchecked(input, weight, bias, (lo, hi), output, scratch)
    }

    /// [`Conv2dPlan::run`] with the slices already checked and the clamp as bounds.
    pub(super) fn run_unchecked(
        &self,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        (lo, hi): (f32, f32),
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), KernelError> {
        let (p, d) = (&self.p, &self.d);
        let clamp = (lo, hi);
        match self.kernel {
            ConvKernel::Direct | ConvKernel::DirectScalar | ConvKernel::Depthwise => {
                let ctx = Ctx { p, d, lo, hi };
                run_direct(self.kernel, &ctx, input, weight, bias, output);
                Ok(())
            }
            ConvKernel::Flat => {
                fwd_flat::forward(p, d, input, weight, bias, clamp, output, scratch)
            }
            ConvKernel::Implicit => {
                fwd_implicit::forward(p, d, input, weight, bias, clamp, output, scratch)
            }
            ConvKernel::Winograd => {
                let plain = fwd_winograd::Weights::Plain;
                fwd_winograd::forward(p, d, input, weight, bias, clamp, output, scratch, plain)
            }
            _ => fwd_im2col::forward(p, d, input, weight, bias, clamp, output, scratch),
        }
    }
}

impl Conv2dPlan {
    /// [`Conv2dPlan::run_unchecked`] without bias or clamp on the weights of the layer
    /// whose input gradient this forward convolution is ([`super::input_as_forward`]):
    /// Winograd's transform reads them flipped as they are; the other kernels get a
    /// flipped copy, made by `flip` into the front of `scratch`.
    pub(super) fn run_flipped(
        &self,
        input: &[f32],
        weight: &[f32],
        output: &mut [f32],
        scratch: &mut [f32],
        flip: impl FnOnce(&[f32], &mut [f32]),
    ) -> Result<(), KernelError> {
        let all = (f32::NEG_INFINITY, f32::INFINITY);
        if self.kernel == ConvKernel::Winograd {
            let (p, d, flipped) = (&self.p, &self.d, fwd_winograd::Weights::Flipped);
            return fwd_winograd::forward(p, d, input, weight, None, all, output, scratch, flipped);
        }
        let (copy, rest) = scratch.split_at_mut(self.d.weight_len);
        flip(weight, copy);
        self.run_unchecked(input, copy, None, all, output, rest)
    }
}

/// A planned input gradient: the kernel chosen for the geometry and, where that kernel
/// needs finite weights, the one that runs for weights that are not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conv2dInputGradPlan {
    p: Conv2dParams,
    d: Conv2dDims,
    kernel: ConvKernel,
    fallback: Option<ConvKernel>,
    /// The forward convolution of [`ConvKernel::AsForward`].
    fwd: Option<Conv2dPlan>,
    scratch_len: usize,
}

impl Conv2dInputGradPlan {
    /// The plan [`crate::conv2d_backward_input`] runs for `p`.
    ///
    /// # Errors
    /// As [`Conv2dParams::dims`].
    pub fn new(p: &Conv2dParams) -> Result<Self, KernelError> {
        let d = p.dims()?;
        Self::with(p, d, input_kernel(p, &d))
    }

    /// The plan of a given kernel (to time or test each one the geometry takes):
    /// [`ConvKernel::Col2im`] takes every geometry, [`ConvKernel::Depthwise`] depthwise
    /// layers, [`ConvKernel::Pointwise`] 1x1 stride-1 unpadded kernels, and
    /// [`ConvKernel::Flat`], [`ConvKernel::Lanes`] and [`ConvKernel::AsForward`] the
    /// layers their modules take.
    ///
    /// # Errors
    /// As [`Conv2dParams::dims`]; [`KernelError::InvalidParameter`] for a kernel that does
    /// not take the geometry.
    pub fn for_kernel(p: &Conv2dParams, kernel: ConvKernel) -> Result<Self, KernelError> {
        Self::with(p, p.dims()?, kernel)
    }

    fn with(p: &Conv2dParams, d: Conv2dDims, kernel: ConvKernel) -> Result<Self, KernelError> {
        let dw = depthwise::applies(p, &d);
        let mut plan = Conv2dInputGradPlan {
            p: *p,
            d,
            kernel,
            fallback: None,
            fwd: None,
            scratch_len: 0,
        };
        let gemm = || gemm_input_scratch_len(p, &d);
        match kernel {
            ConvKernel::Depthwise if dw => {}
            ConvKernel::Flat if dw && input_flat::applies(p, &d) => {
                plan.fallback = Some(ConvKernel::Depthwise);
                plan.scratch_len = input_flat::scratch_len(p, &d)?;
            }
            ConvKernel::Flat if input_flat::applies(p, &d) => {
                plan.fallback = Some(ConvKernel::Col2im);
                plan.scratch_len = gemm()?.max(input_flat::scratch_len(p, &d)?);
            }
            ConvKernel::Pointwise if is_pointwise(p) => {
                plan.scratch_len = sgemm_scratch_len(d.col_rows, d.col_cols, d.out_per_group);
            }
            ConvKernel::Lanes if !dw && input_lanes::applies(p, &d) => {
                plan.fallback = Some(ConvKernel::Col2im);
                plan.scratch_len = gemm()?.max(input_lanes::scratch_len(p, &d)?);
            }
            ConvKernel::AsForward => {
                let Some(q) = as_forward(p, &d) else {
                    return Err(NOT_TAKEN);
                };
                let fwd = Conv2dPlan::new(&q)?;
                let own = crate::params::add(d.weight_len, fwd.scratch_len)?;
                if dw {
                    // (non-finite weights: the depthwise kernel, which needs no scratch)
                    plan.fallback = Some(ConvKernel::Depthwise);
                    plan.scratch_len = own;
                } else {
                    plan.fallback = Some(ConvKernel::Col2im);
                    plan.scratch_len = gemm()?.max(own);
                }
                plan.fwd = Some(fwd);
            }
            ConvKernel::Col2im => plan.scratch_len = gemm()?,
            _ => return Err(NOT_TAKEN),
        }
        Ok(plan)
    }

    /// The geometry planned for.
    pub const fn params(&self) -> &Conv2dParams {
        &self.p
    }

    /// The kernel that computes the gradient (for finite weights).
    pub const fn kernel(&self) -> ConvKernel {
        self.kernel
    }

    /// The kernel that runs instead for weights with an infinity or NaN, if another one.
    pub const fn fallback(&self) -> Option<ConvKernel> {
        self.fallback
    }

    /// Scratch elements a run needs (for either kernel).
    pub const fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// The input gradient, as [`crate::conv2d_backward_input`].
    ///
    /// # Errors
    /// [`KernelError::LengthMismatch`]; [`KernelError::ScratchTooSmall`] below
    /// [`Conv2dInputGradPlan::scratch_len`].
    pub fn run(
        &self,
        weight: &[f32],
        grad_output: &[f32],
        grad_input: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), KernelError> {
        let (p, d) = (&self.p, &self.d);
        check_input_grad_slices(d, weight, grad_output, grad_input)?;
        check_scratch(self.scratch_len, scratch.len())?;
        let kernel = match self.fallback {
            Some(f) if !input_flat::finite(weight) => f,
            _ => self.kernel,
        };
        match kernel {
            ConvKernel::Lanes => {
                input_lanes::backward_input(p, d, weight, grad_output, grad_input, scratch);
                Ok(())
            }
            ConvKernel::Flat => {
                input_flat::backward_input(p, d, weight, grad_output, grad_input, scratch)
            }
            ConvKernel::Depthwise => {
                input_depthwise::backward_input(p, d, weight, grad_output, grad_input);
                Ok(())
            }
            ConvKernel::AsForward => match &self.fwd {
                Some(fwd) => as_forward_input(p, d, fwd, weight, grad_output, grad_input, scratch),
                None => gemm_input(p, d, weight, grad_output, grad_input, scratch),
            },
            _ => gemm_input(p, d, weight, grad_output, grad_input, scratch),
        }
    }
}

/// A planned weight gradient: the kernel chosen for the geometry and, where that kernel
/// needs finite inputs, the one that runs for inputs that are not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conv2dWeightGradPlan {
    p: Conv2dParams,
    d: Conv2dDims,
    kernel: ConvKernel,
    fallback: Option<ConvKernel>,
    scratch_len: usize,
}

impl Conv2dWeightGradPlan {
    /// The plan [`crate::conv2d_backward_weight`] runs for `p`.
    ///
    /// # Errors
    /// As [`Conv2dParams::dims`].
    pub fn new(p: &Conv2dParams) -> Result<Self, KernelError> {
        let d = p.dims()?;
        Self::with(p, d, weight_kernel(p, &d))
    }

    /// The plan of a given kernel (to time or test each one the geometry takes):
    /// [`ConvKernel::Im2col`] and [`ConvKernel::Implicit`] take every geometry,
    /// [`ConvKernel::Depthwise`] depthwise layers, [`ConvKernel::Pointwise`] 1x1 stride-1
    /// unpadded kernels, [`ConvKernel::Rows`] few input channels per group at stride 1, and
    /// [`ConvKernel::Flat`] stride-1 undilated depthwise layers or layers `Rows` takes.
    ///
    /// # Errors
    /// As [`Conv2dParams::dims`]; [`KernelError::InvalidParameter`] for a kernel that does
    /// not take the geometry.
    pub fn for_kernel(p: &Conv2dParams, kernel: ConvKernel) -> Result<Self, KernelError> {
        Self::with(p, p.dims()?, kernel)
    }

    fn with(p: &Conv2dParams, d: Conv2dDims, kernel: ConvKernel) -> Result<Self, KernelError> {
        let dw = depthwise::applies(p, &d);
        let rows = weight_rows::applies(p, &d);
        let mut plan = Conv2dWeightGradPlan {
            p: *p,
            d,
            kernel,
            fallback: None,
            scratch_len: 0,
        };
        match kernel {
            ConvKernel::Depthwise if dw => {}
            ConvKernel::Flat if dw && weight_flat::applies(p) => {
                plan.fallback = Some(ConvKernel::Depthwise);
                plan.scratch_len = weight_flat::scratch_len(p, &d)?;
            }
            ConvKernel::Flat if rows && weight_flat::applies(p) => {
                plan.fallback = Some(ConvKernel::Rows);
                plan.scratch_len =
                    weight_rows::scratch_len(p, &d).max(weight_flat::scratch_len(p, &d)?);
            }
            ConvKernel::Rows if rows => plan.scratch_len = weight_rows::scratch_len(p, &d),
            ConvKernel::Pointwise if is_pointwise(p) => {
                plan.scratch_len = gemm_weight_scratch_len(p, &d)?;
            }
            ConvKernel::Implicit => {
                plan.scratch_len = weight_implicit::backward_weight_scratch_len(p)?;
            }
            ConvKernel::Im2col => plan.scratch_len = gemm_weight_scratch_len(p, &d)?,
            _ => return Err(NOT_TAKEN),
        }
        Ok(plan)
    }

    /// The geometry planned for.
    pub const fn params(&self) -> &Conv2dParams {
        &self.p
    }

    /// The kernel that computes the gradient (for finite inputs).
    pub const fn kernel(&self) -> ConvKernel {
        self.kernel
    }

    /// The kernel that runs instead for inputs with an infinity or NaN, if another one.
    pub const fn fallback(&self) -> Option<ConvKernel> {
        self.fallback
    }

    /// Scratch elements a run needs (for either kernel).
    pub const fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// The weight gradient, summed over the batch, as [`crate::conv2d_backward_weight`].
    ///
    /// # Errors
    /// [`KernelError::LengthMismatch`]; [`KernelError::ScratchTooSmall`] below
    /// [`Conv2dWeightGradPlan::scratch_len`].
    pub fn run(
        &self,
        input: &[f32],
        grad_output: &[f32],
        grad_weight: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), KernelError> {
        let (p, d) = (&self.p, &self.d);
        check_weight_grad_slices(d, input, grad_output, grad_weight)?;
        check_scratch(self.scratch_len, scratch.len())?;
        let kernel = match self.fallback {
            Some(f) if !weight_flat::finite(input) => f,
            _ => self.kernel,
        };
        match kernel {
            ConvKernel::Flat => {
                weight_flat::backward_weight(p, d, input, grad_output, grad_weight, scratch);
                Ok(())
            }
            ConvKernel::Depthwise => {
                weight_depthwise::backward_weight(p, d, input, grad_output, grad_weight);
                Ok(())
            }
            ConvKernel::Rows => {
                weight_rows::backward_weight(p, d, input, grad_output, grad_weight, scratch);
                Ok(())
            }
            ConvKernel::Implicit => {
                weight_implicit::backward_weight(p, d, input, grad_output, grad_weight, scratch)
            }
            _ => gemm_weight(p, d, input, grad_output, grad_weight, scratch),
        }
    }
}

/// What [`Conv2dInputGradPlan::for_kernel`] and [`Conv2dWeightGradPlan::for_kernel`]
/// answer for a kernel that does not take the geometry.
const NOT_TAKEN: KernelError =
    KernelError::InvalidParameter("the kernel does not take this convolution's geometry");

/// The input gradient's kernel for `p`. Measured on a Xeon family 6 model 207 (`cargo run
/// --release --example conv_algos`, 3x3 and 5x5 stride-1 layers, AVX-512 / AVX2 forced):
/// - The forward convolution of `dY` beats the flat planes wherever both apply (16 -> 32
///   channels 5x5 on 14 x 14, 64 images: 1.34x / 1.25x), and col2im beats it where that
///   forward convolution is an im2col one (many taps on small planes: 64 -> 128 channels
///   on 7 x 7, 64 images, col2im 2.06x / 1.33x the flat planes' speed, 1.47x / 1.20x the
///   forward convolution's; 512 on 7 x 7 1.10x).
/// - Against the batch in the lanes (8-lane vectors whatever the variant), the forward
///   convolution of `dY` wins only where zmm registers do twice the work of ymm ones
///   ([`arch::zmm_fma_doubles`]; AVX-512: 1.08-1.57x on 32 -> 32 channels 10 x 10, 64
///   -> 16 to 64 channels 7 x 7, 16 -> 16 channels 14 x 14), and loses to it at 8 lanes
///   (AVX2: 0.82-0.93x); with one 512-bit unit (Zen 4) the lanes keep it.
/// - The flat planes beat col2im for few output channels (LeNet's first layer, 6
///   channels: 1.7x).
/// - Depthwise layers at stride 1: the forward convolution of `dY` (itself depthwise, on
///   the forward pass's flat planes) beats the input gradient's flat planes with AVX2 and
///   AVX-512, and not with the portable variant (AMD Zen 5, 3x3 unless said, AVX-512 /
///   AVX2 / portable: 256 channels on 28 x 28, 8 images, 1.48x / 1.19x; 96 on 56 x 56
///   1.41x / 1.27x / 1.00x; 512 on 7 x 7 1.52x / 1.15x / 1.17x; 144 channels 5x5 on 14 x
///   14 1.12x / 1.02x / 0.90x; 32 on 112 x 112, one image, 1.23x / 1.16x / 1.04x; 32 on 10
///   x 10 unpadded 1.41x / 1.13x / 0.92x).
fn input_kernel(p: &Conv2dParams, d: &Conv2dDims) -> ConvKernel {
    if depthwise::applies(p, d) {
        return if as_forward(p, d).is_some() && arch::active() != Isa::Portable {
            ConvKernel::AsForward
        } else if input_flat::applies(p, d) {
            ConvKernel::Flat
        } else {
            ConvKernel::Depthwise
        };
    }
    if is_pointwise(p) {
        return ConvKernel::Pointwise;
    }
    let flipped = as_forward(p, d);
    // the forward convolution of dY, unless it would be an im2col one
    let fwd = flipped.is_some_and(|q| {
        q.dims()
            .is_ok_and(|qd| forward_algo(&q, &qd) != Conv2dAlgo::Im2col)
    });
    if fwd && zmm_doubles() {
        ConvKernel::AsForward
    } else if input_lanes::applies(p, d) {
        ConvKernel::Lanes
    } else if fwd {
        ConvKernel::AsForward
    } else if input_flat::applies(p, d) && flipped.is_none() {
        ConvKernel::Flat
    } else {
        ConvKernel::Col2im
    }
}

/// The FMA flops a cycle the cost models take for the active variant: two units of 16
/// lanes where zmm registers do twice the work of ymm ones ([`zmm_doubles`]), two of 8
/// lanes on AVX2 and on AVX-512 otherwise. The portable variant is taken as AVX2 (not
/// measured: its 8-lane vectors are emulated on narrower registers, the rest of its work
/// as its FMAs, so the ratios the models weigh stay about the same).
fn fma_flops_per_cycle() -> f64 {
    if zmm_doubles() { 64.0 } else { 32.0 }
}

/// Whether the active variant is AVX-512 on a CPU whose zmm registers do twice the work of
/// ymm ones ([`arch::zmm_fma_doubles`]).
fn zmm_doubles() -> bool {
    arch::active() == Isa::Avx512 && arch::zmm_fma_doubles()
}

/// The weight gradient's kernel for `p`: the implicit GEMM not for 1x1 stride-1 unpadded
/// kernels (a plain GEMM on the input), nor for output planes under 16 pixels, where the
/// per-image pass over the transposed gradient would outweigh the work (the batched GEMM
/// spans images there). For few input channels the flat planes or rows, except that the
/// implicit GEMM's zmm tile (more than 16 output channels) beats them where zmm registers
/// do twice the work (Xeon family 6 model 207, `examples/conv_algos`: 3 -> 32 channels
/// 3x3 on 320 x 320 1.29x, on 32 x 32 1.52x; 1 -> 32 on 28 x 28 1.09x; 4 -> 32 5x5 1.76x;
/// with AVX2 forced 0.93-1.25x, and 1 -> 16 channels 1.0x either way).
fn weight_kernel(p: &Conv2dParams, d: &Conv2dDims) -> ConvKernel {
    let flat = weight_flat::applies(p);
    if depthwise::applies(p, d) {
        if flat {
            ConvKernel::Flat
        } else {
            ConvKernel::Depthwise
        }
    } else if is_pointwise(p) {
        ConvKernel::Pointwise
    } else if weight_rows::applies(p, d) {
        if d.out_per_group > 16 && d.col_cols >= 16 && zmm_doubles() {
            ConvKernel::Implicit
        } else if flat {
            ConvKernel::Flat
        } else {
            ConvKernel::Rows
        }
    } else if d.col_cols >= 16 {
        ConvKernel::Implicit
    } else {
        ConvKernel::Im2col
    }
}
