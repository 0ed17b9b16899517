//! Per-thread buffers for running samples through a [`Model`]: every activation, every
//! activation gradient, layer states and kernel scratch, sized once so that a training
//! step allocates nothing.

use crate::error::{Error, Result};
use crate::layers::{Layer, LayerState, Shape};
use crate::model::Model;

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
    pub(crate) train: bool,
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
        for (l, &s) in model.layers().iter().zip(model.shapes()) {
            scratch = scratch.max(Self::scratch_for(l, capacity, s, train)?);
            floats += l.state_floats(capacity, s)? as u64;
        }
        Ok((floats + scratch as u64).saturating_mul(4))
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
        for (l, &s) in model.layers().iter().zip(model.shapes()) {
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
            train,
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

    /// Output of layer `i` (`i = layers - 1` for the model output) for `b` samples. (After
    /// a training forward pass, a Conv2d or Linear layer followed by a ReLU has left its
    /// output unwritten: the ReLU's output holds it, rectified; see
    /// [`Model::forward_layer`].)
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
