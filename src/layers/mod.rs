//! Layers: each has a `forward` and a `backward` over flat NCHW slices and keeps in a
//! [`LayerState`] what its backward pass needs (pooling indices, dropout masks, batch
//! statistics). There is no autograd graph; a [`crate::Model`] runs the layers in order.
//!
//! Parameters live in the layer (shared by every thread); everything that changes during
//! a step lives in the caller's [`LayerState`], so several threads can run shards of a
//! batch through one model at the same time.

mod desc;
mod norm;

use std::fmt;

pub use cnnkit_kernels::Elementwise;
use cnnkit_kernels::{self as k, Activation, Conv2dParams, LinearParams, Pool2dParams};

pub use desc::{Fill, LayerSpec, MAX_TENSOR, ParamSpec};
pub use norm::BatchNorm2d;

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The shape of one sample flowing between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An image of `c` channels, `h x w`.
    Image {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// A feature vector.
    Flat(usize),
}

impl Shape {
    /// Elements per sample.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Image { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }

    /// True for a shape with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dimensions with a batch in front: `[n, c, h, w]` or `[n, f]`.
    pub fn batched(&self, n: usize) -> Vec<usize> {
        match *self {
            Shape::Image { c, h, w } => vec![n, c, h, w],
            Shape::Flat(f) => vec![n, f],
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Image { c, h, w } => write!(f, "{c}x{h}x{w}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// Weight initialisation schemes (PyTorch's `nn.init` names), drawn from a seeded [`Rng`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// `U(-b, b)`, `b = sqrt(6 / fan_in)` (He, for ReLU networks).
    KaimingUniform,
    /// `N(0, 2 / fan_in)`.
    KaimingNormal,
    /// `U(-b, b)`, `b = sqrt(6 / (fan_in + fan_out))` (Glorot).
    XavierUniform,
    /// `N(0, 2 / (fan_in + fan_out))`.
    XavierNormal,
}

impl Init {
    /// Parses `kaiming`, `kaiming-normal`, `xavier`, `xavier-normal`.
    pub fn from_name(s: &str) -> Option<Init> {
        Some(match s {
            "kaiming" | "kaiming-uniform" => Init::KaimingUniform,
            "kaiming-normal" => Init::KaimingNormal,
            "xavier" | "xavier-uniform" => Init::XavierUniform,
            "xavier-normal" => Init::XavierNormal,
            _ => return None,
        })
    }

    /// Fills `w` for a layer with the given fans.
    pub fn fill(self, w: &mut [f32], fan_in: usize, fan_out: usize, rng: &mut Rng) {
        let (fi, fo) = (fan_in as f32, fan_out as f32);
        match self {
            Init::KaimingUniform => uniform(w, (6.0 / fi).sqrt(), rng),
            Init::XavierUniform => uniform(w, (6.0 / (fi + fo)).sqrt(), rng),
            Init::KaimingNormal => normal(w, (2.0 / fi).sqrt(), rng),
            Init::XavierNormal => normal(w, (2.0 / (fi + fo)).sqrt(), rng),
        }
    }
}

fn uniform(w: &mut [f32], b: f32, rng: &mut Rng) {
    w.iter_mut().for_each(|v| *v = rng.uniform_in(-b, b));
}

fn normal(w: &mut [f32], sd: f32, rng: &mut Rng) {
    w.iter_mut().for_each(|v| *v = rng.normal() * sd);
}

/// A 2-D convolution with square kernel, stride and padding (PyTorch's `nn.Conv2d`).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Channel groups (`groups = in_channels`: a depthwise convolution).
    pub groups: usize,
    /// `[out, in / groups, k, k]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

impl Conv2d {
    /// The kernel geometry for a batch of `b` inputs of shape `input`.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `input` is not an image of `in_channels` channels, or the
    /// kernel does not fit it.
    pub fn params(&self, b: usize, input: Shape) -> Result<Conv2dParams> {
        let Shape::Image { c, h, w } = input else {
            return Err(Error::invalid(format!(
                "conv needs an image input, got {input} features"
            )));
        };
        if c != self.in_channels {
            return Err(Error::invalid(format!(
                "conv expects {} input channels, got {c}",
                self.in_channels
            )));
        }
        let p = Conv2dParams::new(b, c, h, w, self.out_channels, self.kernel, self.kernel)
            .with_stride(self.stride, self.stride)
            .with_padding(self.padding, self.padding, self.padding, self.padding)
            .with_groups(self.groups);
        p.dims()?;
        Ok(p)
    }
}

/// A fully connected layer (PyTorch's `nn.Linear`): `y = x W^T + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

/// A pooling window: square kernel, stride and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// Window size.
    pub kernel: usize,
    /// Stride (PyTorch's default: the window size).
    pub stride: usize,
    /// Padding on every side.
    pub padding: usize,
}

impl Pool {
    /// The kernel geometry for a batch of `b` inputs of shape `input`.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `input` is not an image, or the window does not fit it.
    pub fn params(&self, b: usize, input: Shape) -> Result<Pool2dParams> {
        let Shape::Image { c, h, w } = input else {
            return Err(Error::invalid(format!(
                "pooling needs an image input, got {input} features"
            )));
        };
        if 2 * self.padding > self.kernel {
            return Err(Error::invalid(format!(
                "pooling padding {} is more than half the window {}",
                self.padding, self.kernel
            )));
        }
        let p = Pool2dParams::new(b, c, h, w, self.kernel, self.kernel)
            .with_stride(self.stride, self.stride)
            .with_padding(self.padding, self.padding, self.padding, self.padding);
        p.dims()?;
        Ok(p)
    }
}

/// One layer of a [`crate::Model`].
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// `nn.Conv2d`.
    Conv2d(Conv2d),
    /// `nn.Linear`.
    Linear(Linear),
    /// `nn.MaxPool2d`.
    MaxPool2d(Pool),
    /// `nn.AvgPool2d` (padding counted in the divisor, as PyTorch's default).
    AvgPool2d(Pool),
    /// An element-wise activation (PyTorch's module: [`Elementwise::torch_name`]).
    Act(Elementwise),
    /// `nn.Flatten`.
    Flatten,
    /// `nn.Dropout(p)`: zeroes with probability `p` (resolved to 1/65536) in training,
    /// scales the rest by `1 / (1 - p)`; the identity in evaluation.
    Dropout(f32),
    /// `nn.BatchNorm2d`.
    BatchNorm2d(BatchNorm2d),
    /// `nn.AdaptiveAvgPool2d(1)`: each channel's mean, `c x 1 x 1`.
    GlobalAvgPool,
    /// The sum of its inputs (the end of a residual block; see [`crate::Model::graph`]).
    Add,
    /// Its inputs' channels one after another, sample by sample (`torch.cat(.., 1)`).
    Concat,
}

/// Whether a forward pass trains (batch statistics, dropout, saved state) or evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Inference: running statistics, no dropout.
    Eval,
    /// Training; `seed` seeds this layer's dropout mask for this step and shard.
    Train {
        /// Seed of the layer's random stream for this step.
        seed: u64,
    },
}

/// Per-thread state of one layer: what backward needs, and the parameter gradients.
#[derive(Debug, Default, Clone)]
pub struct LayerState {
    /// Max-pooling argmax per output.
    pub indices: Vec<u32>,
    /// Dropout scale per element (0 or `1 / (1 - p)`).
    pub mask: Vec<f32>,
    /// BatchNorm: per channel mean, 1/std and unbiased variance of the last batch.
    pub stats: Vec<f32>,
    /// Gradient of each parameter, in [`Layer::param`] order.
    pub grads: Vec<Vec<f32>>,
}

impl Layer {
    /// The PyTorch module name (`Conv2d`, `ReLU`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv2d(_) => "Conv2d",
            Layer::Linear(_) => "Linear",
            Layer::MaxPool2d(_) => "MaxPool2d",
            Layer::AvgPool2d(_) => "AvgPool2d",
            Layer::Act(e) => e.torch_name(),
            Layer::Flatten => "Flatten",
            Layer::Dropout(_) => "Dropout",
            Layer::BatchNorm2d(_) => "BatchNorm2d",
            Layer::GlobalAvgPool => "AdaptiveAvgPool2d",
            Layer::Add => "Add",
            Layer::Concat => "Concat",
        }
    }

    /// The output shape for `input`, or why the layer cannot take it.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the mismatch.
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        // what the tensors fix, then the shape arithmetic the spec shares
        match (self, input) {
            (Layer::Conv2d(c), _) => {
                c.params(1, input)?;
            }
            (Layer::Linear(l), Shape::Flat(n)) if n != l.in_features => {
                return Err(Error::invalid(format!(
                    "linear expects {} input features, got {n}",
                    l.in_features
                )));
            }
            (Layer::BatchNorm2d(bn), _) if !matches!(input, Shape::Image { c, .. } if c == bn.channels()) =>
            {
                return Err(Error::invalid(format!(
                    "batchnorm of {} channels cannot take {input}",
                    bn.channels()
                )));
            }
            _ => {}
        }
        self.to_spec().output_shape(input)
    }

    /// Number of trainable parameters tensors (0, or 2 for weight and bias).
    pub fn param_count(&self) -> usize {
        match self {
            Layer::Conv2d(_) | Layer::Linear(_) | Layer::BatchNorm2d(_) => 2,
            _ => 0,
        }
    }

    /// Trainable parameter `i`: its `state_dict` suffix (`weight`, `bias`) and tensor.
    ///
    /// # Panics
    /// When `i >= self.param_count()`.
    pub fn param(&self, i: usize) -> (&'static str, &Tensor) {
        match (self, i) {
            (Layer::Conv2d(c), 0) => ("weight", &c.weight),
            (Layer::Conv2d(c), 1) => ("bias", &c.bias),
            (Layer::Linear(l), 0) => ("weight", &l.weight),
            (Layer::Linear(l), 1) => ("bias", &l.bias),
            (Layer::BatchNorm2d(b), 0) => ("weight", &b.weight),
            (Layer::BatchNorm2d(b), 1) => ("bias", &b.bias),
            _ => panic!("{} has no parameter {i}", self.kind()),
        }
    }

    /// Trainable parameter `i`, mutable.
    ///
    /// # Panics
    /// When `i >= self.param_count()`.
    pub fn param_mut(&mut self, i: usize) -> &mut Tensor {
        match (self, i) {
            (Layer::Conv2d(c), 0) => &mut c.weight,
            (Layer::Conv2d(c), 1) => &mut c.bias,
            (Layer::Linear(l), 0) => &mut l.weight,
            (Layer::Linear(l), 1) => &mut l.bias,
            (Layer::BatchNorm2d(b), 0) => &mut b.weight,
            (Layer::BatchNorm2d(b), 1) => &mut b.bias,
            (l, _) => panic!("{} has no parameter {i}", l.kind()),
        }
    }

    /// A fresh state for shards of up to `batch` samples of `input`.
    pub fn state(&self, batch: usize, input: Shape) -> Result<LayerState> {
        let out = self.output_shape(input)?;
        let mut st = LayerState {
            grads: (0..self.param_count())
                .map(|i| vec![0.0; self.param(i).1.len()])
                .collect(),
            ..LayerState::default()
        };
        match self {
            Layer::MaxPool2d(_) => st.indices = vec![0; batch * out.len()],
            Layer::Dropout(_) => st.mask = vec![0.0; batch * out.len()],
            Layer::BatchNorm2d(bn) => st.stats = vec![0.0; 3 * bn.channels()],
            _ => {}
        }
        Ok(st)
    }

    /// The elements (`f32` or `u32`) [`Layer::state`] allocates for `batch` samples.
    ///
    /// # Errors
    /// When the layer cannot take `input`.
    pub fn state_floats(&self, batch: usize, input: Shape) -> Result<usize> {
        let out = self.output_shape(input)?.len();
        let grads: usize = (0..self.param_count()).map(|i| self.param(i).1.len()).sum();
        Ok(grads
            + match self {
                Layer::MaxPool2d(_) | Layer::Dropout(_) => batch.saturating_mul(out),
                Layer::BatchNorm2d(bn) => 3 * bn.channels(),
                _ => 0,
            })
    }

    /// Scratch (in floats) the forward pass, and with `train` the backward pass, need
    /// for `batch` samples.
    pub fn scratch_len(&self, batch: usize, input: Shape, train: bool) -> Result<usize> {
        Ok(match self {
            Layer::Conv2d(c) => {
                let p = c.params(batch, input)?;
                let f = k::conv2d_scratch_len(&p)?;
                if !train {
                    return Ok(f);
                }
                f.max(k::conv2d_backward_input_scratch_len(&p)?)
                    .max(k::conv2d_backward_weight_scratch_len(&p)?)
                    .max(k::conv2d_backward_weight_sparse_scratch_len(&p)?)
            }
            Layer::Linear(l) => {
                let p = LinearParams::new(batch, l.in_features, l.out_features);
                let f = k::linear_scratch_len(&p)?;
                if !train {
                    return Ok(f);
                }
                f.max(k::linear_backward_input_scratch_len(&p)?)
                    .max(k::linear_backward_weight_scratch_len(&p)?)
            }
            _ => 0,
        })
    }

    /// Forward pass of `b` samples: `x` is `b * input.len()` floats, `y` is
    /// `b * output.len()` floats and is overwritten.
    ///
    /// # Errors
    /// When the shapes or lengths do not fit (a bug in the caller).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        b: usize,
        input: Shape,
        x: &[f32],
        y: &mut [f32],
        st: &mut LayerState,
        scratch: &mut [f32],
        mode: Mode,
    ) -> Result<()> {
        match self {
            Layer::Conv2d(_) | Layer::Linear(_) => {
                self.affine_forward(b, input, x, y, scratch, Activation::None)?;
            }
            Layer::MaxPool2d(pool) => {
                let p = pool.params(b, input)?;
                let idx = match mode {
                    Mode::Train { .. } => Some(&mut st.indices[..y.len()]),
                    Mode::Eval => None,
                };
                k::max_pool2d(&p, x, y, idx)?;
            }
            Layer::AvgPool2d(pool) => k::avg_pool2d(&pool.params(b, input)?, true, x, y)?,
            Layer::Act(e) => e.forward(x, y)?,
            Layer::Flatten => y.copy_from_slice(x),
            Layer::Dropout(prob) => match mode {
                Mode::Eval => y.copy_from_slice(x),
                Mode::Train { seed } => {
                    let mut rng = Rng::new(seed);
                    let keep = 1.0 / (1.0 - prob);
                    // four 16-bit draws per 64 random bits: p is resolved to 1/65536
                    let threshold = (f64::from(*prob) * 65536.0).round() as u64;
                    let mask = &mut st.mask[..y.len()];
                    for ((m4, y4), x4) in mask.chunks_mut(4).zip(y.chunks_mut(4)).zip(x.chunks(4)) {
                        let r = rng.next_u64();
                        for (j, ((m, yv), xv)) in m4.iter_mut().zip(y4).zip(x4).enumerate() {
                            let draw = (r >> (16 * j)) & 0xffff;
                            *m = if draw < threshold { 0.0 } else { keep };
                            *yv = xv * *m;
                        }
                    }
                }
            },
            Layer::BatchNorm2d(bn) => bn.forward(b, input, x, y, st, mode, k::Activation::None)?,
            Layer::GlobalAvgPool => {
                let (c, h, w) = image(input)?;
                k::global_avg_pool2d(b, c, h, w, x, y)?;
            }
            Layer::Add | Layer::Concat => {
                return Err(Error::invalid(format!(
                    "{} takes several inputs: run it with Layer::merge_forward",
                    self.kind()
                )));
            }
        }
        Ok(())
    }

    /// The forward pass of a merge ([`Layer::Add`], [`Layer::Concat`]) of `b` samples:
    /// its inputs are `values[ids[j]]` (of shapes `shapes[j]`), its output `y`.
    ///
    /// # Errors
    /// For another layer, or lengths that do not fit.
    pub(crate) fn merge_forward(
        &self,
        b: usize,
        shapes: &[Shape],
        ids: &[usize],
        values: &[Vec<f32>],
        y: &mut [f32],
    ) -> Result<()> {
        let per: usize = shapes.iter().map(Shape::len).sum();
        let fits = shapes.len() == ids.len()
            && ids
                .iter()
                .zip(shapes)
                .all(|(&v, s)| values.get(v).is_some_and(|x| x.len() >= b * s.len()));
        let x = |j: usize| &values[ids[j]][..b * shapes[j].len()];
        match self {
            Layer::Add if fits && y.len() == b * shapes[0].len() => {
                y.copy_from_slice(x(0));
                for j in 1..ids.len() {
                    y.iter_mut().zip(x(j)).for_each(|(y, x)| *y += x);
                }
            }
            Layer::Concat if fits && y.len() == b * per => {
                let mut at = 0;
                for (j, sh) in shapes.iter().enumerate() {
                    let n = sh.len();
                    for (ys, xs) in y.chunks_exact_mut(per).zip(x(j).chunks_exact(n)) {
                        ys[at..at + n].copy_from_slice(xs);
                    }
                    at += n;
                }
            }
            _ => {
                return Err(Error::invalid(format!(
                    "merge_forward on {} with inputs that do not fit",
                    self.kind()
                )));
            }
        }
        Ok(())
    }

    /// The backward pass of a merge: the gradient of input `j` into `grads[ids[j]]`,
    /// added to what it holds where `add[j]` (another reader of that value wrote it
    /// first), else overwriting it; value 0 (the model's input) gets none.
    ///
    /// # Errors
    /// For another layer, or lengths that do not fit.
    pub(crate) fn merge_backward(
        &self,
        b: usize,
        shapes: &[Shape],
        ids: &[usize],
        gy: &[f32],
        grads: &mut [Vec<f32>],
        add: &[bool],
    ) -> Result<()> {
        let per: usize = shapes.iter().map(Shape::len).sum();
        let mut at = 0;
        for (j, (&v, sh)) in ids.iter().zip(shapes).enumerate() {
            let n = sh.len();
            if v == 0 {
                at += n;
                continue;
            }
            let gx = grads
                .get_mut(v)
                .and_then(|g| g.get_mut(..b * n))
                .ok_or_else(|| Error::invalid("merge_backward: gradient lengths do not fit"))?;
            match self {
                Layer::Add if gy.len() == b * n => accumulate(gx, gy, add[j]),
                Layer::Concat if gy.len() == b * per => {
                    for (g, gys) in gx.chunks_exact_mut(n).zip(gy.chunks_exact(per)) {
                        accumulate(g, &gys[at..at + n], add[j]);
                    }
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "merge_backward on {} with gradients that do not fit",
                        self.kind()
                    )));
                }
            }
            at += n;
        }
        Ok(())
    }

    /// The forward pass of a Conv2d or Linear layer with `act` applied in the kernel's
    /// epilogue (`Activation::Relu`: the layer and a ReLU after it in one pass).
    ///
    /// # Errors
    /// As [`Layer::forward`]; for any other layer.
    pub(crate) fn affine_forward(
        &self,
        b: usize,
        input: Shape,
        x: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
        act: Activation,
    ) -> Result<()> {
        match self {
            Layer::Conv2d(c) => {
                let p = c.params(b, input)?;
                let (w, bias) = (c.weight.data(), Some(c.bias.data()));
                k::conv2d(&p, x, w, bias, act, y, scratch)?;
            }
            Layer::Linear(l) => {
                let p = LinearParams::new(b, l.in_features, l.out_features);
                let (w, bias) = (l.weight.data(), Some(l.bias.data()));
                k::linear(&p, x, w, bias, act, y, scratch)?;
            }
            _ => return Err(Error::invalid("affine_forward on a layer without weights")),
        }
        Ok(())
    }

    /// Backward pass of the last training forward of `b` samples: from the layer's input
    /// `x`, output `y` and the output gradient `gy`, writes the input gradient into `gx`
    /// (when asked) and the parameter gradients into `st.grads` (overwritten).
    ///
    /// # Errors
    /// When the shapes or lengths do not fit (a bug in the caller).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        b: usize,
        input: Shape,
        x: &[f32],
        y: &[f32],
        gy: &[f32],
        gx: Option<&mut [f32]>,
        st: &mut LayerState,
        scratch: &mut [f32],
    ) -> Result<()> {
        match self {
            Layer::Conv2d(c) => {
                let p = c.params(b, input)?;
                if let Some(gx) = gx {
                    k::conv2d_backward_input(&p, c.weight.data(), gy, gx, scratch)?;
                }
                let (gw, gb) = two(&mut st.grads);
                k::conv2d_backward_weight(&p, x, gy, gw, scratch)?;
                k::conv2d_backward_bias(&p, gy, gb)?;
            }
            Layer::Linear(l) => {
                let p = LinearParams::new(b, l.in_features, l.out_features);
                if let Some(gx) = gx {
                    k::linear_backward_input(&p, gy, l.weight.data(), gx, scratch)?;
                }
                let (gw, gb) = two(&mut st.grads);
                k::linear_backward_weight(&p, x, gy, gw, scratch)?;
                k::linear_backward_bias(&p, gy, gb)?;
            }
            Layer::BatchNorm2d(bn) => bn.backward(b, input, x, gy, gx, st)?,
            Layer::Add | Layer::Concat => {
                return Err(Error::invalid(format!(
                    "{} takes several inputs: run it with Layer::merge_backward",
                    self.kind()
                )));
            }
            _ => {
                let Some(gx) = gx else { return Ok(()) };
                match self {
                    Layer::MaxPool2d(pool) => k::max_pool2d_backward(
                        &pool.params(b, input)?,
                        &st.indices[..gy.len()],
                        gy,
                        gx,
                    )?,
                    Layer::AvgPool2d(pool) => {
                        k::avg_pool2d_backward(&pool.params(b, input)?, true, gy, gx)?;
                    }
                    // (from the output: `y <= 0` exactly where `x <= 0`, NaN passing in
                    // both, so a ReLU folded into the layer before it needs no input;
                    // see `Model::forward_layer`)
                    Layer::Act(e) => e.backward(x, y, gy, gx)?,
                    Layer::Flatten => gx.copy_from_slice(gy),
                    Layer::GlobalAvgPool => {
                        let (c, h, w) = image(input)?;
                        k::global_avg_pool2d_backward(b, c, h, w, gy, gx)?;
                    }
                    Layer::Dropout(_) => {
                        for ((g, m), d) in gx.iter_mut().zip(&st.mask).zip(gy) {
                            *g = d * m;
                        }
                    }
                    _ => unreachable!("handled above"),
                }
            }
        }
        Ok(())
    }

    /// The layer as it is written in a model spec (see [`crate::spec`]).
    pub fn spec(&self) -> String {
        self.to_spec().to_string()
    }

    /// The layer's description without its tensors.
    pub fn to_spec(&self) -> LayerSpec {
        match self {
            Layer::Conv2d(c) => LayerSpec::Conv2d {
                out: c.out_channels,
                kernel: c.kernel,
                stride: c.stride,
                padding: c.padding,
                groups: c.groups,
            },
            Layer::Linear(l) => LayerSpec::Linear {
                out: l.out_features,
            },
            Layer::MaxPool2d(p) => LayerSpec::MaxPool2d(*p),
            Layer::AvgPool2d(p) => LayerSpec::AvgPool2d(*p),
            Layer::Act(e) => LayerSpec::Act(*e),
            Layer::Flatten => LayerSpec::Flatten,
            Layer::Dropout(p) => LayerSpec::Dropout(*p),
            Layer::BatchNorm2d(_) => LayerSpec::BatchNorm2d,
            Layer::GlobalAvgPool => LayerSpec::GlobalAvgPool,
            Layer::Add => LayerSpec::Add,
            Layer::Concat => LayerSpec::Concat,
        }
    }

    /// Whether it takes several inputs ([`Layer::Add`], [`Layer::Concat`]).
    pub fn is_merge(&self) -> bool {
        matches!(self, Layer::Add | Layer::Concat)
    }
}

/// `dst += src`, or `dst = src` when not `add`.
pub(crate) fn accumulate(dst: &mut [f32], src: &[f32], add: bool) {
    if add {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
    } else {
        dst.copy_from_slice(src);
    }
}

fn image(s: Shape) -> Result<(usize, usize, usize)> {
    match s {
        Shape::Image { c, h, w } => Ok((c, h, w)),
        Shape::Flat(_) => Err(Error::invalid(format!("needs an image, got {s} features"))),
    }
}

pub(crate) fn two(v: &mut [Vec<f32>]) -> (&mut [f32], &mut [f32]) {
    let (a, b) = v.split_at_mut(1);
    (&mut a[0], &mut b[0])
}
