//! Geometry structs and every size derived from them, all with checked arithmetic.
//!
//! The structs are small `Copy` values with `const fn` builders, so that firmware can
//! size static buffers at compile time:
//!
//! ```
//! use cnnkit_kernels::Conv2dParams;
//! const C1: Conv2dParams = Conv2dParams::new(1, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2);
//! const OUT: usize = match C1.dims() {
//!     Ok(d) => d.output_len,
//!     Err(_) => panic!("bad geometry"),
//! };
//! let buf = [0.0_f32; OUT]; // sized at compile time
//! assert_eq!(buf.len(), 6 * 28 * 28);
//! ```

use crate::error::KernelError;

/// `?` for `const fn`.
macro_rules! ctry {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Err(e),
        }
    };
}
pub(crate) use ctry;

/// Checked multiplication that maps overflow to [`KernelError::Overflow`].
pub(crate) const fn mul(a: usize, b: usize) -> Result<usize, KernelError> {
    match a.checked_mul(b) {
        Some(v) => Ok(v),
        None => Err(KernelError::Overflow),
    }
}

/// Checked addition that maps overflow to [`KernelError::Overflow`].
pub(crate) const fn add(a: usize, b: usize) -> Result<usize, KernelError> {
    match a.checked_add(b) {
        Some(v) => Ok(v),
        None => Err(KernelError::Overflow),
    }
}

/// Product of four sizes, checked.
pub(crate) const fn mul4(a: usize, b: usize, c: usize, d: usize) -> Result<usize, KernelError> {
    mul(ctry!(mul(a, b)), ctry!(mul(c, d)))
}

/// Returns [`KernelError::ZeroSize`] naming `what` if `v == 0`.
pub(crate) const fn nonzero(v: usize, what: &'static str) -> Result<(), KernelError> {
    if v == 0 {
        Err(KernelError::ZeroSize(what))
    } else {
        Ok(())
    }
}

/// Checks that `actual == expected` for the slice named `arg`.
pub(crate) const fn check_len(
    arg: &'static str,
    expected: usize,
    actual: usize,
) -> Result<(), KernelError> {
    if expected == actual {
        Ok(())
    } else {
        Err(KernelError::LengthMismatch {
            arg,
            expected,
            actual,
        })
    }
}

/// Checks that the caller's scratch holds at least `needed` elements.
pub(crate) const fn check_scratch(needed: usize, actual: usize) -> Result<(), KernelError> {
    if actual >= needed {
        Ok(())
    } else {
        Err(KernelError::ScratchTooSmall { needed, actual })
    }
}

/// The checks and extents that a convolution's and a pooling window's dimensions share,
/// per axis `[input, kernel, stride, pad_lo, pad_hi, dilation]` (height, then width):
/// `[(out_h, padded_h), (out_w, padded_w)]`. One function for both (not inlined): the
/// int8 firmware links both, and its flash is counted.
#[inline(never)]
const fn window2d(h: [usize; 6], w: [usize; 6]) -> Result<[(usize, usize); 2], KernelError> {
    ctry!(nonzero(h[0], "in_h"));
    ctry!(nonzero(w[0], "in_w"));
    ctry!(nonzero(h[1], "kernel_h"));
    ctry!(nonzero(w[1], "kernel_w"));
    if h[2] == 0 || w[2] == 0 {
        return Err(KernelError::ZeroStride);
    }
    if h[5] == 0 || w[5] == 0 {
        return Err(KernelError::ZeroDilation);
    }
    Ok([
        ctry!(window_out(h[0], h[1], h[2], h[3], h[4], h[5])),
        ctry!(window_out(w[0], w[1], w[2], w[3], w[4], w[5])),
    ])
}

/// `window2d` of a struct with the spatial fields that `Conv2dParams` and
/// `Pool2dParams` share (`in_h`, `kernel_h`, `stride_h`, `pad_top`, ... by name).
macro_rules! window_of {
    ($p:expr) => {
        window2d(
            [
                $p.in_h,
                $p.kernel_h,
                $p.stride_h,
                $p.pad_top,
                $p.pad_bottom,
                $p.dilation_h,
            ],
            [
                $p.in_w,
                $p.kernel_w,
                $p.stride_w,
                $p.pad_left,
                $p.pad_right,
                $p.dilation_w,
            ],
        )
    };
}

/// Output extent of one spatial axis of a sliding window, and the padded extent.
///
/// Returns `(out, padded)` where `padded = input + pad_lo + pad_hi`.
pub(crate) const fn window_out(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_lo: usize,
    pad_hi: usize,
    dilation: usize,
) -> Result<(usize, usize), KernelError> {
    // effective kernel extent: dilation * (kernel - 1) + 1
    let eff = ctry!(add(ctry!(mul(dilation, kernel - 1)), 1));
    let padded = ctry!(add(ctry!(add(input, pad_lo)), pad_hi));
    if padded < eff {
        return Err(KernelError::EmptyOutput);
    }
    Ok(((padded - eff) / stride + 1, padded))
}

/// An element-wise activation layer, as every description of a model names it: the
/// firmware's [`crate::net::Layer`], the `cnnkit` crate's layers, its exporter and its
/// spec parser. Each use is one exhaustive `match` (or a method here), so a new function
/// is added in one place and missed nowhere. The kernels are methods
/// ([`Elementwise::forward`], [`Elementwise::backward`]); the oracle is
/// [`crate::reference::elementwise_forward`].
///
/// ```
/// use cnnkit_kernels::Elementwise;
/// let e = Elementwise::from_name("leakyrelu", Some(0.2)).unwrap();
/// assert_eq!(e, Elementwise::LeakyRelu(0.2));
/// let mut y = [0.0; 2];
/// e.forward(&[-1.0, 2.0], &mut y).unwrap();
/// assert_eq!(y, [-0.2, 2.0]);
/// assert!(Elementwise::ALL.iter().any(|e| e.name() == "tanh"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elementwise {
    /// `max(x, 0)` (PyTorch's `nn.ReLU`); its gradient is taken from the output.
    Relu,
    /// `x` for `x > 0`, else `slope * x` (`nn.LeakyReLU(slope)`); gradient from the input.
    LeakyRelu(f32),
    /// `tanh(x)` (`nn.Tanh`); gradient from the output.
    Tanh,
    /// `1 / (1 + e^-x)` (`nn.Sigmoid`); gradient from the output.
    Sigmoid,
    /// `x Phi(x)`, `Phi` the normal distribution function (`nn.GELU()`, the exact form);
    /// gradient from the input.
    Gelu,
    /// `min(max(x, 0), 6)` (`nn.ReLU6`, MobileNet's activation); gradient from the output
    /// (none where the output is 0 or 6, as PyTorch's `hardtanh_backward`).
    Relu6,
}

impl Elementwise {
    /// One of each (`LeakyRelu` with PyTorch's default slope, 0.01): for tests, benches
    /// and fuzzing, which cover every function through this list.
    pub const ALL: [Elementwise; 6] = [
        Elementwise::Relu,
        Elementwise::LeakyRelu(0.01),
        Elementwise::Tanh,
        Elementwise::Sigmoid,
        Elementwise::Gelu,
        Elementwise::Relu6,
    ];

    /// The name a model spec writes (`relu`, `leakyrelu`, `tanh`, `sigmoid`, `gelu`,
    /// `relu6`).
    pub const fn name(self) -> &'static str {
        match self {
            Elementwise::Relu => "relu",
            Elementwise::LeakyRelu(_) => "leakyrelu",
            Elementwise::Tanh => "tanh",
            Elementwise::Sigmoid => "sigmoid",
            Elementwise::Gelu => "gelu",
            Elementwise::Relu6 => "relu6",
        }
    }

    /// PyTorch's module name (`ReLU`, `LeakyReLU`, `Tanh`, `Sigmoid`, `GELU`, `ReLU6`).
    pub const fn torch_name(self) -> &'static str {
        match self {
            Elementwise::Relu => "ReLU",
            Elementwise::LeakyRelu(_) => "LeakyReLU",
            Elementwise::Tanh => "Tanh",
            Elementwise::Sigmoid => "Sigmoid",
            Elementwise::Gelu => "GELU",
            Elementwise::Relu6 => "ReLU6",
        }
    }

    /// Its parameter (leaky ReLU's slope), if it has one.
    pub const fn param(self) -> Option<f32> {
        match self {
            Elementwise::LeakyRelu(s) => Some(s),
            Elementwise::Relu
            | Elementwise::Tanh
            | Elementwise::Sigmoid
            | Elementwise::Gelu
            | Elementwise::Relu6 => None,
        }
    }

    /// The function of [`Elementwise::name`] `name` with parameter `param` (the default
    /// where `None`).
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] for an unknown name, a parameter a function does
    /// not take, or one out of range (a slope that is not finite).
    pub fn from_name(name: &str, param: Option<f32>) -> Result<Self, KernelError> {
        let e = match (name, param) {
            ("relu", None) => Elementwise::Relu,
            ("leakyrelu", p) => Elementwise::LeakyRelu(p.unwrap_or(0.01)),
            ("tanh", None) => Elementwise::Tanh,
            ("sigmoid", None) => Elementwise::Sigmoid,
            ("gelu", None) => Elementwise::Gelu,
            ("relu6", None) => Elementwise::Relu6,
            ("relu" | "tanh" | "sigmoid" | "gelu" | "relu6", Some(_)) => {
                return Err(KernelError::InvalidParameter(
                    "this activation takes no parameter",
                ));
            }
            _ => return Err(KernelError::InvalidParameter("unknown activation")),
        };
        e.check()?;
        Ok(e)
    }

    /// A number for each function, for fingerprints of a network's geometry (stable: a
    /// new function takes the next one).
    pub const fn code(self) -> u64 {
        match self {
            Elementwise::Relu => 5,
            Elementwise::LeakyRelu(_) => 6,
            Elementwise::Tanh => 7,
            Elementwise::Sigmoid => 8,
            Elementwise::Gelu => 9,
            Elementwise::Relu6 => 10,
        }
    }

    /// About how many floating-point operations one element takes (for throughput
    /// figures in benches).
    pub const fn flops(self) -> u32 {
        match self {
            Elementwise::Relu => 1,
            Elementwise::LeakyRelu(_) | Elementwise::Relu6 => 2,
            Elementwise::Tanh | Elementwise::Sigmoid => 20,
            Elementwise::Gelu => 50,
        }
    }

    /// The largest error of its kernel against the correctly rounded result, in units in
    /// the last place (what tests and fuzzing hold it to).
    pub const fn max_ulps(self) -> u32 {
        match self {
            Elementwise::Relu | Elementwise::LeakyRelu(_) | Elementwise::Relu6 => 0,
            Elementwise::Tanh | Elementwise::Sigmoid => 3,
            Elementwise::Gelu => 7,
        }
    }

    /// Checks its parameter.
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] for a leaky ReLU slope that is not finite.
    pub const fn check(self) -> Result<(), KernelError> {
        match self {
            Elementwise::LeakyRelu(s) if !s.is_finite() => Err(KernelError::InvalidParameter(
                "leaky_relu slope is not finite",
            )),
            _ => Ok(()),
        }
    }
}

/// The clamp applied when results are stored (the fused epilogue), and an activation
/// in its own right.
///
/// NaN passes through every variant unchanged, as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// No clamp.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)`, for example ReLU6 = `Clamp { min: 0.0, max: 6.0 }`.
    Clamp {
        /// Lower bound (may be `-inf`).
        min: f32,
        /// Upper bound (may be `+inf`); must not be below `min`.
        max: f32,
    },
}

impl Activation {
    /// The `(min, max)` bounds of the clamp, after checking them.
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] if a bound is NaN or `min > max`.
    pub const fn bounds(self) -> Result<(f32, f32), KernelError> {
        match self {
            Self::None => Ok((f32::NEG_INFINITY, f32::INFINITY)),
            Self::Relu => Ok((0.0, f32::INFINITY)),
            Self::Clamp { min, max } => {
                if min.is_nan() || max.is_nan() {
                    Err(KernelError::InvalidParameter("clamp bound is NaN"))
                } else if min > max {
                    Err(KernelError::InvalidParameter("clamp min is above max"))
                } else {
                    Ok((min, max))
                }
            }
        }
    }
}

/// Geometry of a 2-D convolution (NCHW input, `[c_out, c_in / groups, kh, kw]` weights),
/// as PyTorch's `nn.Conv2d` describes it, with padding given per side.
///
/// ```
/// use cnnkit_kernels::Conv2dParams;
/// // LeNet-5 conv2: 6 -> 16 channels, 5x5, on 14x14 maps, batch 64
/// let p = Conv2dParams::new(64, 6, 14, 14, 16, 5, 5);
/// let d = p.dims().unwrap();
/// assert_eq!((d.out_h, d.out_w), (10, 10));
/// assert_eq!(d.weight_len, 16 * 6 * 25);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    /// Images in the batch (N).
    pub batch: usize,
    /// Input channels (C_in).
    pub in_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels (C_out).
    pub out_channels: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero rows added above the input.
    pub pad_top: usize,
    /// Zero rows added below the input.
    pub pad_bottom: usize,
    /// Zero columns added left of the input.
    pub pad_left: usize,
    /// Zero columns added right of the input.
    pub pad_right: usize,
    /// Vertical dilation (1 = dense kernel).
    pub dilation_h: usize,
    /// Horizontal dilation.
    pub dilation_w: usize,
    /// Channel groups; `groups == in_channels == out_channels` is a depthwise conv.
    pub groups: usize,
}

/// Every size derived from a valid [`Conv2dParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dDims {
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Input channels per group.
    pub in_per_group: usize,
    /// Output channels per group.
    pub out_per_group: usize,
    /// `batch * in_channels * in_h * in_w`.
    pub input_len: usize,
    /// `out_channels * in_per_group * kernel_h * kernel_w`.
    pub weight_len: usize,
    /// `out_channels` (the bias length).
    pub bias_len: usize,
    /// `batch * out_channels * out_h * out_w`.
    pub output_len: usize,
    /// Rows of one group's im2col matrix: `in_per_group * kernel_h * kernel_w` (GEMM K).
    pub col_rows: usize,
    /// Columns of the im2col matrix: `out_h * out_w` (GEMM N).
    pub col_cols: usize,
    /// Padded input height `pad_top + in_h + pad_bottom`.
    pub padded_h: usize,
    /// Padded input width.
    pub padded_w: usize,
    /// One input image: `in_channels * in_h * in_w`.
    pub image_len: usize,
    /// One output image: `out_channels * out_h * out_w`.
    pub out_image_len: usize,
    /// The im2col matrix of one image over all channels: `in_channels * kernel_h * kernel_w * out_h * out_w`.
    pub col_len: usize,
}

impl Conv2dParams {
    /// A dense convolution: stride 1, no padding, dilation 1, one group.
    pub const fn new(
        batch: usize,
        in_channels: usize,
        in_h: usize,
        in_w: usize,
        out_channels: usize,
        kernel_h: usize,
        kernel_w: usize,
    ) -> Self {
        Self {
            batch,
            in_channels,
            in_h,
            in_w,
            out_channels,
            kernel_h,
            kernel_w,
            stride_h: 1,
            stride_w: 1,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
            dilation_h: 1,
            dilation_w: 1,
            groups: 1,
        }
    }

    /// Sets the vertical and horizontal stride.
    #[must_use]
    pub const fn with_stride(mut self, h: usize, w: usize) -> Self {
        self.stride_h = h;
        self.stride_w = w;
        self
    }

    /// Sets the zero padding on each side.
    #[must_use]
    pub const fn with_padding(
        mut self,
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    ) -> Self {
        self.pad_top = top;
        self.pad_bottom = bottom;
        self.pad_left = left;
        self.pad_right = right;
        self
    }

    /// Sets the vertical and horizontal dilation.
    #[must_use]
    pub const fn with_dilation(mut self, h: usize, w: usize) -> Self {
        self.dilation_h = h;
        self.dilation_w = w;
        self
    }

    /// Sets the number of channel groups.
    #[must_use]
    pub const fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Checks every parameter and computes every derived size.
    ///
    /// # Errors
    /// [`KernelError::ZeroSize`], [`KernelError::ZeroStride`], [`KernelError::ZeroDilation`],
    /// [`KernelError::InvalidGroups`], [`KernelError::EmptyOutput`] or
    /// [`KernelError::Overflow`].
    pub const fn dims(&self) -> Result<Conv2dDims, KernelError> {
        ctry!(nonzero(self.batch, "batch"));
        ctry!(nonzero(self.in_channels, "in_channels"));
        ctry!(nonzero(self.out_channels, "out_channels"));
        let g = self.groups;
        if g == 0 || !self.in_channels.is_multiple_of(g) || !self.out_channels.is_multiple_of(g) {
            return Err(KernelError::InvalidGroups {
                groups: g,
                in_channels: self.in_channels,
                out_channels: self.out_channels,
            });
        }
        let [(out_h, padded_h), (out_w, padded_w)] = ctry!(window_of!(self));
        let in_per_group = self.in_channels / g;
        let out_per_group = self.out_channels / g;
        let col_rows = ctry!(mul(in_per_group, ctry!(mul(self.kernel_h, self.kernel_w))));
        let col_cols = ctry!(mul(out_h, out_w));
        Ok(Conv2dDims {
            out_h,
            out_w,
            in_per_group,
            out_per_group,
            input_len: ctry!(mul4(self.batch, self.in_channels, self.in_h, self.in_w)),
            weight_len: ctry!(mul(self.out_channels, col_rows)),
            bias_len: self.out_channels,
            output_len: ctry!(mul4(self.batch, self.out_channels, out_h, out_w)),
            col_rows,
            col_cols,
            padded_h,
            padded_w,
            image_len: ctry!(mul(self.in_channels, ctry!(mul(self.in_h, self.in_w)))),
            out_image_len: ctry!(mul(self.out_channels, col_cols)),
            col_len: ctry!(mul4(
                self.in_channels,
                self.kernel_h,
                self.kernel_w,
                col_cols
            )),
        })
    }

    /// `(out_h, out_w)`, after checking every parameter as [`Conv2dParams::dims`] does.
    ///
    /// # Errors
    /// As [`Conv2dParams::dims`].
    pub const fn output_dims(&self) -> Result<(usize, usize), KernelError> {
        match self.dims() {
            Ok(d) => Ok((d.out_h, d.out_w)),
            Err(e) => Err(e),
        }
    }

    /// Multiply-accumulates of one forward pass (FLOPs = 2 x this).
    ///
    /// # Errors
    /// As [`Conv2dParams::dims`].
    pub const fn macs(&self) -> Result<usize, KernelError> {
        let d = ctry!(self.dims());
        mul(d.output_len, d.col_rows)
    }
}

/// Geometry of a 2-D pooling window over NCHW data (PyTorch's `MaxPool2d`/`AvgPool2d`
/// with padding per side and dilation).
///
/// ```
/// use cnnkit_kernels::Pool2dParams;
/// let p = Pool2dParams::new(64, 16, 28, 28, 2, 2); // stride defaults to the kernel
/// assert_eq!(p.dims().unwrap().out_h, 14);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    /// Images in the batch.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Window height.
    pub kernel_h: usize,
    /// Window width.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Padding rows above.
    pub pad_top: usize,
    /// Padding rows below.
    pub pad_bottom: usize,
    /// Padding columns left.
    pub pad_left: usize,
    /// Padding columns right.
    pub pad_right: usize,
    /// Vertical dilation.
    pub dilation_h: usize,
    /// Horizontal dilation.
    pub dilation_w: usize,
}

/// Every size derived from a valid [`Pool2dParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dDims {
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// `batch * channels * in_h * in_w`.
    pub input_len: usize,
    /// `batch * channels * out_h * out_w` (also the length of the index slice).
    pub output_len: usize,
    /// `batch * channels`.
    pub planes: usize,
}

impl Pool2dParams {
    /// A window of `kernel_h x kernel_w` with stride equal to the kernel, no padding,
    /// no dilation (PyTorch's defaults).
    pub const fn new(
        batch: usize,
        channels: usize,
        in_h: usize,
        in_w: usize,
        kernel_h: usize,
        kernel_w: usize,
    ) -> Self {
        Self {
            batch,
            channels,
            in_h,
            in_w,
            kernel_h,
            kernel_w,
            stride_h: kernel_h,
            stride_w: kernel_w,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
            dilation_h: 1,
            dilation_w: 1,
        }
    }

    /// Sets the vertical and horizontal stride.
    #[must_use]
    pub const fn with_stride(mut self, h: usize, w: usize) -> Self {
        self.stride_h = h;
        self.stride_w = w;
        self
    }

    /// Sets the padding on each side.
    #[must_use]
    pub const fn with_padding(
        mut self,
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    ) -> Self {
        self.pad_top = top;
        self.pad_bottom = bottom;
        self.pad_left = left;
        self.pad_right = right;
        self
    }

    /// Sets the vertical and horizontal dilation.
    #[must_use]
    pub const fn with_dilation(mut self, h: usize, w: usize) -> Self {
        self.dilation_h = h;
        self.dilation_w = w;
        self
    }

    /// Checks every parameter and computes every derived size.
    ///
    /// # Errors
    /// [`KernelError::ZeroSize`], [`KernelError::ZeroStride`], [`KernelError::ZeroDilation`],
    /// [`KernelError::EmptyOutput`] or [`KernelError::Overflow`].
    pub const fn dims(&self) -> Result<Pool2dDims, KernelError> {
        ctry!(nonzero(self.batch, "batch"));
        ctry!(nonzero(self.channels, "channels"));
        let [(out_h, _), (out_w, _)] = ctry!(window_of!(self));
        let planes = ctry!(mul(self.batch, self.channels));
        Ok(Pool2dDims {
            out_h,
            out_w,
            input_len: ctry!(mul(planes, ctry!(mul(self.in_h, self.in_w)))),
            output_len: ctry!(mul(planes, ctry!(mul(out_h, out_w)))),
            planes,
        })
    }
}

/// Shape and options of `C = alpha * op(A) * op(B) + beta * C`, all matrices row-major.
///
/// `op(A)` is `m x k`: with `trans_a == false`, `A` is stored as `m` rows of `lda >= k`
/// elements; with `trans_a == true`, `A` is stored as `k` rows of `lda >= m` elements and
/// used transposed. Likewise `op(B)` is `k x n` and `C` is `m` rows of `ldc >= n`.
///
/// ```
/// use cnnkit_kernels::GemmParams;
/// // C (2x3) = A^T (2x4) * B (4x3), A stored 4x2
/// let p = GemmParams::new(2, 3, 4).transpose_a();
/// assert_eq!((p.lda, p.ldb, p.ldc), (2, 3, 3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmParams {
    /// Rows of `op(A)` and `C`.
    pub m: usize,
    /// Columns of `op(B)` and `C`.
    pub n: usize,
    /// Columns of `op(A)`, rows of `op(B)`.
    pub k: usize,
    /// Use `A` transposed.
    pub trans_a: bool,
    /// Use `B` transposed.
    pub trans_b: bool,
    /// Row stride of `A` as stored.
    pub lda: usize,
    /// Row stride of `B` as stored.
    pub ldb: usize,
    /// Row stride of `C`.
    pub ldc: usize,
    /// Scale of the product. With `alpha == 0`, `A` and `B` are not read.
    pub alpha: f32,
    /// Scale of the old `C`. With `beta == 0`, `C` is not read (NaN in it does not propagate).
    pub beta: f32,
}

impl GemmParams {
    /// `C = A * B`, dense: `lda = k`, `ldb = n`, `ldc = n`, `alpha = 1`, `beta = 0`.
    pub const fn new(m: usize, n: usize, k: usize) -> Self {
        Self {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            lda: k,
            ldb: n,
            ldc: n,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// Uses `A` transposed and sets the dense `lda = m`.
    #[must_use]
    pub const fn transpose_a(mut self) -> Self {
        self.trans_a = true;
        self.lda = self.m;
        self
    }

    /// Uses `B` transposed and sets the dense `ldb = k`.
    #[must_use]
    pub const fn transpose_b(mut self) -> Self {
        self.trans_b = true;
        self.ldb = self.k;
        self
    }

    /// Sets the three leading dimensions.
    #[must_use]
    pub const fn with_leading_dims(mut self, lda: usize, ldb: usize, ldc: usize) -> Self {
        self.lda = lda;
        self.ldb = ldb;
        self.ldc = ldc;
        self
    }

    /// Sets `alpha` and `beta`.
    #[must_use]
    pub const fn with_alpha_beta(mut self, alpha: f32, beta: f32) -> Self {
        self.alpha = alpha;
        self.beta = beta;
        self
    }

    /// `(rows, cols)` of `A` and `B` as stored.
    pub(crate) const fn stored_shapes(&self) -> ((usize, usize), (usize, usize)) {
        let a = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let b = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        (a, b)
    }

    /// The smallest slice lengths `(a, b, c)` these parameters accept:
    /// `(rows - 1) * ld + cols` for each matrix as stored.
    ///
    /// # Errors
    /// [`KernelError::ZeroSize`], [`KernelError::InvalidLeadingDimension`] or
    /// [`KernelError::Overflow`].
    pub const fn min_lens(&self) -> Result<(usize, usize, usize), KernelError> {
        ctry!(nonzero(self.m, "m"));
        ctry!(nonzero(self.n, "n"));
        ctry!(nonzero(self.k, "k"));
        let ((ar, ac), (br, bc)) = self.stored_shapes();
        if self.lda < ac {
            return Err(KernelError::InvalidLeadingDimension {
                arg: "lda",
                ld: self.lda,
                min: ac,
            });
        }
        if self.ldb < bc {
            return Err(KernelError::InvalidLeadingDimension {
                arg: "ldb",
                ld: self.ldb,
                min: bc,
            });
        }
        if self.ldc < self.n {
            return Err(KernelError::InvalidLeadingDimension {
                arg: "ldc",
                ld: self.ldc,
                min: self.n,
            });
        }
        let a = ctry!(add(ctry!(mul(ar - 1, self.lda)), ac));
        let b = ctry!(add(ctry!(mul(br - 1, self.ldb)), bc));
        let c = ctry!(add(ctry!(mul(self.m - 1, self.ldc)), self.n));
        Ok((a, b, c))
    }
}

/// Shape of a fully connected layer: `output[batch, out] = input[batch, in] * weight[out, in]^T + bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinearParams {
    /// Rows of the input.
    pub batch: usize,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
}

impl LinearParams {
    /// A layer of `in_features -> out_features` on `batch` rows.
    pub const fn new(batch: usize, in_features: usize, out_features: usize) -> Self {
        Self {
            batch,
            in_features,
            out_features,
        }
    }

    /// `(input_len, weight_len, output_len)` after checking for zero sizes and overflow.
    ///
    /// # Errors
    /// [`KernelError::ZeroSize`] or [`KernelError::Overflow`].
    pub const fn lens(&self) -> Result<(usize, usize, usize), KernelError> {
        ctry!(nonzero(self.batch, "batch"));
        ctry!(nonzero(self.in_features, "in_features"));
        ctry!(nonzero(self.out_features, "out_features"));
        Ok((
            ctry!(mul(self.batch, self.in_features)),
            ctry!(mul(self.out_features, self.in_features)),
            ctry!(mul(self.batch, self.out_features)),
        ))
    }
}

/// Checks `rows x cols` for zero sizes and overflow and returns `rows * cols`.
pub(crate) const fn matrix_len(rows: usize, cols: usize) -> Result<usize, KernelError> {
    ctry!(nonzero(rows, "rows"));
    ctry!(nonzero(cols, "cols"));
    mul(rows, cols)
}

/// The output positions `o` in `0..out` whose tap `o * stride + offset` (in padded
/// coordinates) falls inside the real input `[pad, pad + len)`, as a range `lo..hi`
/// (empty when `lo == hi`). `pad + len` must not overflow (it is at most the padded extent).
#[inline]
pub(crate) const fn valid_range(
    out: usize,
    stride: usize,
    offset: usize,
    pad: usize,
    len: usize,
) -> (usize, usize) {
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    let end = pad + len;
    let hi = if offset >= end {
        0
    } else {
        (end - offset).div_ceil(stride)
    };
    let lo = if lo < out { lo } else { out };
    let hi = if hi < out { hi } else { out };
    if hi < lo { (lo, lo) } else { (lo, hi) }
}

// ---- validation of convolution calls, shared by the kernels and the reference ----

/// Validates a forward call; returns the dims and the clamp bounds.
pub(crate) fn check_forward(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &[f32],
) -> Result<(Conv2dDims, f32, f32), KernelError> {
    let d = p.dims()?;
    let (lo, hi) = act.bounds()?;
    check_len("input", d.input_len, input.len())?;
    check_len("weight", d.weight_len, weight.len())?;
    if let Some(b) = bias {
        check_len("bias", d.bias_len, b.len())?;
    }
    check_len("output", d.output_len, output.len())?;
    Ok((d, lo, hi))
}

/// Validates a backward-input call.
pub(crate) fn check_backward_input(
    p: &Conv2dParams,
    weight: &[f32],
    grad_out: &[f32],
    grad_in: &[f32],
) -> Result<Conv2dDims, KernelError> {
    let d = p.dims()?;
    check_len("weight", d.weight_len, weight.len())?;
    check_len("grad_output", d.output_len, grad_out.len())?;
    check_len("grad_input", d.input_len, grad_in.len())?;
    Ok(d)
}

/// Validates a backward-weight call.
pub(crate) fn check_backward_weight(
    p: &Conv2dParams,
    input: &[f32],
    grad_out: &[f32],
    grad_weight: &[f32],
) -> Result<Conv2dDims, KernelError> {
    let d = p.dims()?;
    check_len("input", d.input_len, input.len())?;
    check_len("grad_output", d.output_len, grad_out.len())?;
    check_len("grad_weight", d.weight_len, grad_weight.len())?;
    Ok(d)
}

/// Validates a backward-bias call.
pub(crate) fn check_backward_bias(
    p: &Conv2dParams,
    grad_out: &[f32],
    grad_bias: &[f32],
) -> Result<Conv2dDims, KernelError> {
    let d = p.dims()?;
    check_len("grad_output", d.output_len, grad_out.len())?;
    check_len("grad_bias", d.bias_len, grad_bias.len())?;
    Ok(d)
}

/// Validates an im2col / col2im call (one image).
pub(crate) fn check_im2col(
    p: &Conv2dParams,
    image: &[f32],
    col: &[f32],
) -> Result<Conv2dDims, KernelError> {
    let d = p.dims()?;
    check_len("image", d.image_len, image.len())?;
    check_len("col", d.col_len, col.len())?;
    Ok(d)
}

/// Whether Winograd's F(2x2, 3x3) takes `p`: a 3x3 kernel at stride 1 without dilation.
pub(crate) const fn winograd_applies(p: &Conv2dParams) -> bool {
    p.kernel_h == 3
        && p.kernel_w == 3
        && p.stride_h == 1
        && p.stride_w == 1
        && p.dilation_h == 1
        && p.dilation_w == 1
}

/// The error of a Winograd call on a geometry it does not take.
pub(crate) const WINOGRAD_NOT_3X3: KernelError =
    KernelError::InvalidParameter("Winograd F(2x2, 3x3) needs a 3x3 kernel, stride 1, no dilation");

/// The geometry of a batch normalisation: `batch` samples of `channels` planes of
/// `plane` values (`h * w`; 1 after a linear layer), and `eps`, added to the variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormParams {
    /// Samples.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Values per channel per sample.
    pub plane: usize,
    /// Added to the variance (PyTorch's default: `1e-5`).
    pub eps: f32,
    /// The clamp the forward passes apply as they store (a ReLU after the normalisation,
    /// fused: one pass over the values instead of two). The backward pass takes the
    /// gradient of the normalisation alone: mask it by the clamped output first.
    pub act: Activation,
}

impl BatchNormParams {
    /// `batch` samples of `channels` planes of `plane` values, `eps = 1e-5`, no clamp.
    pub const fn new(batch: usize, channels: usize, plane: usize) -> Self {
        BatchNormParams {
            batch,
            channels,
            plane,
            eps: 1e-5,
            act: Activation::None,
        }
    }

    /// With another `eps`.
    pub const fn with_eps(self, eps: f32) -> Self {
        BatchNormParams { eps, ..self }
    }

    /// With a clamp applied by the forward passes (see [`BatchNormParams::act`]).
    ///
    /// ```
    /// use cnnkit_kernels::{Activation, BatchNormParams, batch_norm_forward};
    /// let p = BatchNormParams::new(2, 1, 1).with_activation(Activation::Relu);
    /// let (mut y, mut stats) = ([0.0; 2], [0.0; 3]);
    /// batch_norm_forward(&p, &[1.0, 3.0], &[1.0], &[0.0], &mut y, &mut stats).unwrap();
    /// assert_eq!(y[0], 0.0); // (1 - 2) / 1, clamped
    /// assert!((y[1] - 1.0).abs() < 1e-4);
    /// ```
    pub const fn with_activation(self, act: Activation) -> Self {
        BatchNormParams { act, ..self }
    }

    /// The elements of `x`, after checking the geometry.
    ///
    /// # Errors
    /// [`KernelError::ZeroSize`] for a zero dimension, [`KernelError::Overflow`],
    /// [`KernelError::InvalidParameter`] for an `eps` that is not finite and positive, or
    /// a clamp [`Activation::bounds`] refuses.
    pub const fn len(&self) -> Result<usize, KernelError> {
        ctry!(self.act.bounds());
        ctry!(nonzero(self.batch, "batch"));
        ctry!(nonzero(self.channels, "channels"));
        ctry!(nonzero(self.plane, "plane"));
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(KernelError::InvalidParameter(
                "batch norm eps must be positive and finite",
            ));
        }
        mul(ctry!(mul(self.batch, self.channels)), self.plane)
    }

    /// Whether the geometry holds no values (never, once [`BatchNormParams::len`] is Ok).
    pub const fn is_empty(&self) -> bool {
        self.batch == 0 || self.channels == 0 || self.plane == 0
    }
}

/// One step of SGD (`torch.optim.SGD`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdParams {
    /// Learning rate.
    pub lr: f32,
    /// Momentum (0: plain SGD, no buffer).
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay, added to the gradient.
    pub weight_decay: f32,
    /// The optimizer's first step: the momentum buffer starts as the gradient.
    pub first: bool,
}

/// One step of Adam or AdamW (`torch.optim.Adam`, `AdamW`), its bias corrections computed
/// once by [`AdamParams::new`] for every tensor of the step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// Weight decay: L2 in the gradient (Adam) or decoupled (AdamW).
    pub weight_decay: f32,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f32,
}

impl AdamParams {
    /// The parameters of step `t` (1 for the first): the bias corrections in `f64` (as
    /// PyTorch's Python floats), rounded once.
    pub fn new(
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        decoupled: bool,
        t: u64,
    ) -> Self {
        let bc = |beta: f32| (1.0 - libm::pow(f64::from(beta), t as f64)) as f32;
        AdamParams {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
            step_size: lr / bc(beta1),
            bc2_sqrt: libm::sqrtf(bc(beta2)),
        }
    }
}
