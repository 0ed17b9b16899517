//! Running a [`Model`]: its forward and backward passes through a [`Workspace`], the
//! per-thread buffers (every activation, every activation gradient, layer states and
//! kernel scratch) sized once so that a training step allocates nothing.

use cnnkit_kernels as k;

use crate::error::{Error, Result};
use crate::layers::{Layer, LayerState, Mode, Shape, two};
use crate::model::Model;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Per-thread buffers for running up to `capacity` samples through a model: every
/// activation, every activation gradient, layer states and kernel scratch. Sized once;
/// the training step allocates nothing.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub(crate) cap: usize,
    /// `acts[i]`: the input of layer `i` (the last: the model's output).
    pub(crate) acts: Vec<Vec<f32>>,
    /// `grads[i]`: the gradient of `acts[i]` (empty for the input and in inference).
    pub(crate) grads: Vec<Vec<f32>>,
    pub(crate) states: Vec<LayerState>,
    pub(crate) scratch: Vec<f32>,
    /// A layer's input gradient before it is added to another consumer's (graphs only).
    pub(crate) tmp: Vec<f32>,
    pub(crate) train: bool,
    /// Whether every layer writes its own output in inference (no ReLU in the store of
    /// the layer before): [`Workspace::keep_every_activation`].
    pub(crate) keep_all: bool,
}

impl Workspace {
    /// Buffers for batches of up to `capacity` samples.
    ///
    /// # Errors
    /// When `capacity` is 0 or the model's sizes overflow.
    pub fn new(model: &Model, capacity: usize) -> Result<Self> {
        Self::build(model, capacity, true)
    }

    /// Buffers for inference only ([`Model::forward_ws`] without `train`): no gradient
    /// buffers, forward scratch only.
    ///
    /// # Errors
    /// As [`Workspace::new`].
    pub fn inference(model: &Model, capacity: usize) -> Result<Self> {
        Self::build(model, capacity, false)
    }

    /// The bytes [`Workspace::new`] (`train`) or [`Workspace::inference`] would allocate
    /// for `capacity` samples, computed without allocating.
    ///
    /// # Errors
    /// When `capacity` is 0 or the sizes overflow.
    pub fn bytes(model: &Model, capacity: usize, train: bool) -> Result<u64> {
        if capacity == 0 {
            return Err(Error::invalid("workspace capacity must be at least 1"));
        }
        let cap = capacity as u64;
        let mut floats: u64 = 0;
        for (i, s) in model.shapes().iter().enumerate() {
            let n = s.len() as u64 * cap;
            floats += n;
            if train && i > 0 {
                floats += n;
            }
        }
        let mut scratch = 0;
        for (i, l) in model.layers().iter().enumerate() {
            let s = model.input_shape_of(i);
            scratch = scratch.max(Self::scratch_for(l, capacity, s, train)?);
            floats += l.state_floats(capacity, s)? as u64;
        }
        let tmp = Self::tmp_len(model, capacity, train) as u64;
        Ok((floats + scratch as u64 + tmp).saturating_mul(4))
    }

    /// Floats of the buffer in which a layer's input gradient waits to be added to the
    /// gradient another consumer of the same value wrote: the largest such value.
    fn tmp_len(model: &Model, capacity: usize, train: bool) -> usize {
        if !train {
            return 0;
        }
        (1..model.layers().len())
            .filter(|&v| model.consumers(v) > 1)
            .map(|v| model.shapes()[v].len().saturating_mul(capacity))
            .max()
            .unwrap_or(0)
    }

    /// Scratch for every batch up to `capacity` (scratch can depend on the batch in
    /// either direction).
    fn scratch_for(l: &Layer, capacity: usize, s: Shape, train: bool) -> Result<usize> {
        let mut scratch = 0;
        for b in 1..=capacity {
            scratch = scratch.max(l.scratch_len(b, s, train)?);
        }
        Ok(scratch)
    }

    fn build(model: &Model, capacity: usize, train: bool) -> Result<Self> {
        let bytes = Self::bytes(model, capacity, train)?;
        crate::budget::check(
            &format!("the buffers for {capacity} sample(s) of this model"),
            bytes,
        )?;
        let sizes: Vec<usize> = model
            .shapes()
            .iter()
            .map(|s| {
                s.len()
                    .checked_mul(capacity)
                    .ok_or_else(|| Error::invalid("model activations overflow usize"))
            })
            .collect::<Result<_>>()?;
        let mut scratch = 0;
        let mut states = Vec::with_capacity(model.layers().len());
        for (i, l) in model.layers().iter().enumerate() {
            let s = model.input_shape_of(i);
            scratch = scratch.max(Self::scratch_for(l, capacity, s, train)?);
            states.push(l.state(capacity, s)?);
        }
        // (within the budget, checked above; an allocation the machine cannot make is an
        // error, not an abort)
        let zeroed = |n| crate::budget::zeroed::<f32>(n, "a workspace buffer");
        Ok(Workspace {
            cap: capacity,
            acts: sizes.iter().map(|&n| zeroed(n)).collect::<Result<_>>()?,
            grads: sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| zeroed(if i == 0 || !train { 0 } else { n }))
                .collect::<Result<_>>()?,
            states,
            scratch: zeroed(scratch)?,
            tmp: zeroed(Self::tmp_len(model, capacity, train))?,
            train,
            keep_all: false,
        })
    }

    pub(crate) fn check(&self, b: usize) -> Result<()> {
        if b == 0 || b > self.cap {
            return Err(Error::invalid(format!(
                "batch of {b} does not fit a workspace of {}",
                self.cap
            )));
        }
        Ok(())
    }

    /// The most samples it takes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The model input of `b` samples, to fill before [`Model::forward_ws`].
    pub fn input_mut(&mut self, b: usize) -> &mut [f32] {
        let per = self.acts[0].len() / self.cap;
        &mut self.acts[0][..b * per]
    }

    /// Makes every layer write its own output in inference, for
    /// [`Workspace::activation`] to show (a ReLU after a convolution, linear layer or
    /// batch normalisation otherwise runs in that layer's store, as in training, and the
    /// layer's own output is not written).
    pub fn keep_every_activation(&mut self) {
        self.keep_all = true;
    }

    /// Output of layer `i` (`i = layers - 1` for the model output) for `b` samples. (A
    /// Conv2d, Linear or batch normalisation layer followed by a ReLU has left its output
    /// unwritten: the ReLU's output holds it, rectified; see [`Model::forward_layer`] and,
    /// to keep it, [`Workspace::keep_every_activation`].)
    pub fn activation(&self, model: &Model, i: usize, b: usize) -> &[f32] {
        &self.acts[i + 1][..b * model.shapes()[i + 1].len()]
    }

    /// The model output for `b` samples.
    pub fn output(&self, model: &Model, b: usize) -> &[f32] {
        self.activation(model, model.layers().len() - 1, b)
    }

    /// The model output (read) and the output gradient (to fill) for `b` samples.
    pub fn output_and_grad_mut(&mut self, model: &Model, b: usize) -> (&[f32], &mut [f32]) {
        let n = b * model.output_shape().len();
        let last = self.acts.len() - 1;
        (&self.acts[last][..n], &mut self.grads[last][..n])
    }

    /// Layer states (parameter gradients, batch statistics), one per layer.
    pub fn states(&self) -> &[LayerState] {
        &self.states
    }

    /// Layer states, mutable.
    pub fn states_mut(&mut self) -> &mut [LayerState] {
        &mut self.states
    }
}

/// Running the model through a workspace.
impl Model {
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
    /// A ReLU right after a Conv2d, Linear or batch normalisation layer runs in that
    /// layer's epilogue: the layer writes the ReLU's output, its own output is not kept,
    /// and the ReLU's forward pass does nothing (in inference too, unless
    /// [`Workspace::keep_every_activation`]).
    ///
    /// # Errors
    /// As [`Model::forward_ws`].
    pub fn forward_layer(&self, ws: &mut Workspace, i: usize, b: usize, mode: Mode) -> Result<()> {
        ws.check(b)?;
        if self.layers[i].is_merge() {
            let (before, after) = ws.acts.split_at_mut(i + 1);
            let y = &mut after[0][..b * self.shapes[i + 1].len()];
            return self.layers[i].merge_forward(b, &self.in_shapes[i], &self.inputs[i], before, y);
        }
        let v = self.inputs[i][0];
        // (in inference too, unless every activation is to be kept)
        if matches!(mode, Mode::Train { .. }) || !ws.keep_all {
            if self.relu_in_epilogue(i) {
                // done by layer i - 1
                return Ok(());
            }
            if self.relu_in_epilogue(i + 1) {
                // (layer i reads value v: the one before it, or at the start of a block's
                // branch the block's input)
                let (before, after) = ws.acts.split_at_mut(i + 1);
                let x = &before[v][..b * self.shapes[v].len()];
                let y = &mut after[1][..b * self.shapes[i + 2].len()];
                if let Layer::BatchNorm2d(bn) = &self.layers[i] {
                    let st = &mut ws.states[i];
                    return bn.forward(b, self.shapes[v], x, y, st, mode, k::Activation::Relu);
                }
                return self.layers[i].affine_forward(
                    b,
                    self.shapes[v],
                    x,
                    y,
                    &mut ws.scratch,
                    k::Activation::Relu,
                );
            }
        }
        let (before, after) = ws.acts.split_at_mut(i + 1);
        let x = &before[v][..b * self.shapes[v].len()];
        let y = &mut after[0][..b * self.shapes[i + 1].len()];
        let st = &mut ws.states[i];
        self.layers[i].forward(b, self.shapes[v], x, y, st, &mut ws.scratch, mode)
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
        let nout = b * self.shapes[i + 1].len();
        let adds = &self.adds[i];
        let (gbefore, gafter) = ws.grads.split_at_mut(i + 1);
        let gy = &gafter[0][..nout];
        if self.layers[i].is_merge() {
            let (shapes, ids) = (&self.in_shapes[i], &self.inputs[i]);
            return self.layers[i].merge_backward(b, shapes, ids, gy, gbefore, adds);
        }
        let v = self.inputs[i][0];
        let nin = b * self.shapes[v].len();
        let x = &ws.acts[v][..nin];
        let y = &ws.acts[i + 1][..nout];
        let st = &mut ws.states[i];
        if v == 0 {
            return self.layers[i].backward(b, self.shapes[v], x, y, gy, None, st, &mut ws.scratch);
        }
        if adds[0] {
            let tmp = &mut ws.tmp[..nin];
            self.layers[i].backward(b, self.shapes[v], x, y, gy, Some(tmp), st, &mut ws.scratch)?;
            crate::layers::accumulate(&mut gbefore[v][..nin], tmp, true);
            return Ok(());
        }
        let gx = Some(&mut gbefore[v][..nin]);
        self.layers[i].backward(b, self.shapes[v], x, y, gy, gx, st, &mut ws.scratch)
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
