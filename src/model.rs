//! A sequential model: layers in order, built in code, from a preset, or from a short
//! text spec.
//!
//! See [`crate::spec`] for the spec language.
//!
//! ```
//! use cnnkit::{Model, Shape};
//! let m = Model::from_spec("conv(4,3,pad=1) relu maxpool(2) flatten linear(10)",
//!                          Shape::Image { c: 1, h: 8, w: 8 }, 1).unwrap();
//! assert_eq!(m.output_shape(), Shape::Flat(10));
//! assert_eq!(m.num_params(), 4 * 9 + 4 + 64 * 10 + 10);
//! assert!(Model::from_spec("conv(4,3) linear(10)", Shape::Image { c: 1, h: 8, w: 8 }, 1)
//!     .unwrap_err().to_string().contains("flatten"));
//! ```

use crate::error::{Error, Result};
use crate::layers::{Init, Layer, Mode, Shape, two};
use crate::rng::Rng;
use crate::spec::{self, Fill, ParamSpec, check_shape};
use crate::tensor::Tensor;
pub use crate::workspace::Workspace;
use cnnkit_kernels as k;

pub use crate::spec::{FMNIST, LENET5, MAX_TENSOR, preset};

/// A sequential model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    layers: Vec<Layer>,
    /// `shapes[i]` is the input of layer `i`; the last is the model's output.
    shapes: Vec<Shape>,
}

impl Model {
    /// A model from layers, checking that each takes the output of the one before.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first layer that does not fit.
    pub fn new(input: Shape, layers: Vec<Layer>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::invalid("a model needs at least one layer"));
        }
        check_shape(input, "the input")?;
        let mut shapes = vec![input];
        for (i, l) in layers.iter().enumerate() {
            let s = l
                .output_shape(shapes[i])
                .map_err(|e| Error::invalid(format!("layer {i} ({}): {e}", l.spec())))?;
            check_shape(s, &format!("the output of layer {i} ({})", l.spec()))?;
            shapes.push(s);
        }
        Ok(Model { layers, shapes })
    }

    /// A model from a spec (see the module docs) or preset name, initialised with
    /// Kaiming-uniform weights from `seed`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a spec that does not parse or does not fit `input`.
    pub fn from_spec(spec: &str, input: Shape, seed: u64) -> Result<Self> {
        Self::from_spec_with(spec, input, Init::KaimingUniform, seed)
    }

    /// As [`Model::from_spec`] with a chosen initialisation. Biases are drawn from
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` as PyTorch does.
    ///
    /// # Errors
    /// As [`Model::from_spec`].
    pub fn from_spec_with(spec: &str, input: Shape, init: Init, seed: u64) -> Result<Self> {
        let plan = spec::plan(spec, input)?;
        crate::budget::check(
            "the parameters of this model",
            spec::param_elements(&plan).saturating_mul(4),
        )?;
        let mut rng = Rng::new(seed);
        let layers = plan
            .iter()
            .map(|p| p.layer.build(p.input, |ps| fresh(ps, init, &mut rng)))
            .collect::<Result<Vec<_>>>()?;
        Model::new(input, layers)
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The layers, mutable (their shapes must not change).
    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// The input shape of one sample.
    pub fn input_shape(&self) -> Shape {
        self.shapes[0]
    }

    /// The output shape of one sample.
    pub fn output_shape(&self) -> Shape {
        *self.shapes.last().expect("at least one layer")
    }

    /// `shapes()[i]` is the input shape of layer `i`; the last entry is the output.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// The spec that rebuilds this model's architecture.
    pub fn spec(&self) -> String {
        self.layers
            .iter()
            .map(Layer::spec)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| (0..l.param_count()).map(move |i| l.param(i).1.len()))
            .sum()
    }

    /// Every tensor of the model with the name PyTorch's `state_dict()` of the equivalent
    /// `nn.Sequential` gives it (`0.weight`, `1.running_mean`, ...). Batch-norm buffers
    /// are included; `num_batches_tracked` is an int64 scalar, returned by
    /// [`Model::int_buffers`].
    pub fn state_dict(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for p in 0..l.param_count() {
                let (name, t) = l.param(p);
                out.push((format!("{i}.{name}"), t));
            }
            if let Layer::BatchNorm2d(bn) = l {
                out.push((format!("{i}.running_mean"), &bn.running_mean));
                out.push((format!("{i}.running_var"), &bn.running_var));
            }
        }
        out
    }

    /// The int64 scalars of the state dict (`N.num_batches_tracked`).
    pub fn int_buffers(&self) -> Vec<(String, i64)> {
        self.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l {
                Layer::BatchNorm2d(bn) => {
                    Some((format!("{i}.num_batches_tracked"), bn.num_batches_tracked))
                }
                _ => None,
            })
            .collect()
    }

    /// Inference on a batch `[n, ...input shape]`; returns `[n, ...output shape]`.
    ///
    /// # Errors
    /// When `x` does not have the model's input shape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let per = self.input_shape().len();
        let n = x.shape().first().copied().unwrap_or(0);
        if n == 0 || x.shape()[1..].iter().product::<usize>() != per {
            return Err(Error::invalid(format!(
                "input of shape {:?} does not fit the model's input {}",
                x.shape(),
                self.input_shape()
            )));
        }
        let mut ws = Workspace::inference(self, n.min(64))?;
        let out_len = self.output_shape().len();
        let mut out = Vec::with_capacity(n * out_len);
        for chunk in x.data().chunks(ws.capacity() * per) {
            let b = chunk.len() / per;
            ws.input_mut(b).copy_from_slice(chunk);
            self.forward_ws(&mut ws, b, None)?;
            out.extend_from_slice(ws.output(self, b));
        }
        Tensor::from_vec(self.output_shape().batched(n), out)
    }

    /// Logits for images given as `u8` pixels (image after image), normalised with
    /// `norm` as in training: what `cnnkit predict` computes once it has decoded its images.
    ///
    /// # Errors
    /// When the pixel count is not a positive multiple of the model's input.
    pub fn predict_u8(&self, norm: &crate::data::Normalize, pixels: &[u8]) -> Result<Tensor> {
        let per = self.input_shape().len();
        if pixels.is_empty() || !pixels.len().is_multiple_of(per) {
            return Err(Error::invalid(format!(
                "{} pixels are not a whole number of {per}-pixel inputs",
                pixels.len()
            )));
        }
        let table = norm.table();
        let mut x = vec![0.0; pixels.len()];
        crate::data::normalize_into(&table, pixels, &mut x);
        self.forward(&Tensor::from_vec(
            self.input_shape().batched(pixels.len() / per),
            x,
        )?)
    }

    /// Forward pass of the `b` samples in `ws.input_mut(b)`, keeping every activation.
    /// With `train = Some(seed)`, training mode (batch statistics, dropout seeded from
    /// `seed` and the layer index).
    ///
    /// # Errors
    /// When `b` exceeds the workspace, or a kernel refuses (a bug).
    pub fn forward_ws(&self, ws: &mut Workspace, b: usize, train: Option<u64>) -> Result<()> {
        for i in 0..self.layers.len() {
            let mode = match train {
                None => Mode::Eval,
                Some(seed) => Mode::Train {
                    seed: Rng::derive(seed, &[i as u64]).next_u64(),
                },
            };
            self.forward_layer(ws, i, b, mode)?;
        }
        Ok(())
    }

    /// Forward pass of layer `i` alone, from its input activation in `ws`.
    ///
    /// In training mode a ReLU right after a Conv2d or Linear layer runs in that layer's
    /// epilogue: the layer writes the ReLU's output, its own output is not kept, and the
    /// ReLU's forward pass does nothing.
    ///
    /// # Errors
    /// As [`Model::forward_ws`].
    pub fn forward_layer(&self, ws: &mut Workspace, i: usize, b: usize, mode: Mode) -> Result<()> {
        ws.check(b)?;
        if let Mode::Train { .. } = mode {
            if self.relu_in_epilogue(i) {
                // done by layer i - 1
                return Ok(());
            }
            if self.relu_in_epilogue(i + 1) {
                let (before, after) = ws.acts.split_at_mut(i + 1);
                let x = &before[i][..b * self.shapes[i].len()];
                let y = &mut after[1][..b * self.shapes[i + 2].len()];
                return self.layers[i].affine_forward(
                    b,
                    self.shapes[i],
                    x,
                    y,
                    &mut ws.scratch,
                    k::Activation::Relu,
                );
            }
        }
        let (before, after) = ws.acts.split_at_mut(i + 1);
        let x = &before[i][..b * self.shapes[i].len()];
        let y = &mut after[0][..b * self.shapes[i + 1].len()];
        let st = &mut ws.states[i];
        self.layers[i].forward(b, self.shapes[i], x, y, st, &mut ws.scratch, mode)
    }

    /// Backward pass after a training [`Model::forward_ws`]: reads the output gradient
    /// from `ws.output_grad_mut(b)` and leaves every parameter gradient in `ws`. The input
    /// gradient of the first layer is not computed.
    ///
    /// # Errors
    /// As [`Model::forward_ws`].
    pub fn backward_ws(&self, ws: &mut Workspace, b: usize) -> Result<()> {
        for i in (0..self.layers.len()).rev() {
            self.backward_layer(ws, i, b)?;
        }
        Ok(())
    }

    /// Backward pass of layer `i` alone, from its output gradient in `ws` (the input
    /// gradient of layer 0 is not computed).
    ///
    /// # Errors
    /// As [`Model::forward_ws`].
    pub fn backward_layer(&self, ws: &mut Workspace, i: usize, b: usize) -> Result<()> {
        ws.check(b)?;
        if !ws.train {
            return Err(Error::invalid("backward pass on an inference workspace"));
        }
        if self.relu_into_pool(i) || self.conv_from_pool(i) {
            // done by the pool's backward (below)
            return Ok(());
        }
        if i >= 2 && self.relu_into_pool(i - 1) {
            return self.relu_pool_backward(ws, i, b);
        }
        let nin = b * self.shapes[i].len();
        let nout = b * self.shapes[i + 1].len();
        let (gbefore, gafter) = ws.grads.split_at_mut(i + 1);
        let gy = &gafter[0][..nout];
        let gx = if i == 0 {
            None
        } else {
            Some(&mut gbefore[i][..nin])
        };
        let x = &ws.acts[i][..nin];
        let y = &ws.acts[i + 1][..nout];
        let st = &mut ws.states[i];
        self.layers[i].backward(b, self.shapes[i], x, y, gy, gx, st, &mut ws.scratch)
    }
}

impl Model {
    /// Whether layer `i` is a ReLU right after a Conv2d or Linear layer, which a training
    /// forward pass applies in that layer's kernel epilogue (one pass over the output
    /// instead of two). The backward pass needs nothing of the layer's own output: the
    /// ReLU takes its mask from its output, and the layer's gradients come from its input.
    fn relu_in_epilogue(&self, i: usize) -> bool {
        i > 0
            && matches!(self.layers.get(i), Some(Layer::Relu))
            && matches!(self.layers[i - 1], Layer::Conv2d(_) | Layer::Linear(_))
    }

    /// Whether layer `i` is a ReLU (not the first layer) whose output a max-pool takes:
    /// their backward passes run as one ([`Model::relu_pool_backward`]).
    fn relu_into_pool(&self, i: usize) -> bool {
        i > 0
            && matches!(self.layers[i], Layer::Relu)
            && matches!(self.layers.get(i + 1), Some(Layer::MaxPool2d(_)))
    }

    /// Whether layer `i` is the first layer, a Conv2d whose output goes through a ReLU into
    /// a max-pool: with no input gradient to compute, its parameter gradients come from
    /// the pool's gradient and indices directly ([`Model::relu_pool_backward`],
    /// [`k::conv2d_backward_weight_sparse`]): a quarter of the work behind a 2x2 pool, and
    /// neither the pool's backward pass nor the full-size gradient.
    fn conv_from_pool(&self, i: usize) -> bool {
        i == 0
            && matches!(self.layers[0], Layer::Conv2d(_))
            && self.layers.len() > 2
            && self.relu_into_pool(1)
    }

    /// The backward pass of the max-pool `i` and the ReLU `i - 1` before it, at the
    /// pool's size: ReLU's mask applied to the pooled gradient (the pooled value is the
    /// ReLU output at the position the window chose, the only position that gets a
    /// gradient), then the pool's backward straight into the ReLU's input gradient. The
    /// same numbers as the two layers' backward passes one after the other, on a quarter
    /// of the elements (2x2 windows), without the ReLU's full-size pass.
    fn relu_pool_backward(&self, ws: &mut Workspace, i: usize, b: usize) -> Result<()> {
        let Layer::MaxPool2d(pool) = &self.layers[i] else {
            unreachable!("relu_into_pool checked the layer");
        };
        let nin = b * self.shapes[i].len();
        let nout = b * self.shapes[i + 1].len();
        let (before, after) = ws.grads.split_at_mut(i);
        let gy = &mut after[1][..nout];
        let y = &ws.acts[i + 1][..nout];
        // relu_backward's rule, from the ReLU output: no gradient where it is <= 0
        k::relu_backward_inplace(y, gy)?;
        let pp = pool.params(b, self.shapes[i])?;
        if self.conv_from_pool(i - 2) {
            let Layer::Conv2d(c) = &self.layers[0] else {
                unreachable!("conv_from_pool checked the layer");
            };
            let p = c.params(b, self.shapes[0])?;
            let x = &ws.acts[0][..b * self.shapes[0].len()];
            let (first, rest) = ws.states.split_at_mut(1);
            let indices = &rest[i - 1].indices[..nout];
            let (gw, gb) = two(&mut first[0].grads);
            let pd = pp.dims()?;
            let per_plane = pd.out_h * pd.out_w;
            k::conv2d_backward_weight_sparse(
                &p,
                x,
                per_plane,
                indices,
                gy,
                gw,
                Some(gb),
                &mut ws.scratch,
            )?;
            return Ok(());
        }
        let gx = &mut before[i - 1][..nin];
        k::max_pool2d_backward(&pp, &ws.states[i].indices[..nout], gy, gx)?;
        Ok(())
    }
}

/// A fresh tensor for `p`, filled by `init` (weights) or PyTorch's rule (the rest).
fn fresh(p: &ParamSpec, init: Init, rng: &mut Rng) -> Result<Tensor> {
    let mut t = Tensor::zeros(p.shape.clone())?;
    match p.fill {
        Fill::Weight { fan_in, fan_out } => init.fill(t.data_mut(), fan_in, fan_out, rng),
        Fill::Bias { fan_in } => {
            let bb = 1.0 / (fan_in as f32).sqrt();
            t.data_mut()
                .iter_mut()
                .for_each(|v| *v = rng.uniform_in(-bb, bb));
        }
        Fill::Ones => t.data_mut().fill(1.0),
        Fill::Zeros => {}
    }
    Ok(t)
}
