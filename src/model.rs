//! A model: layers in order, built in code, from a preset, or from a short text spec; a
//! plain stack, or a graph with residual (`res[...]`) and concatenation (`cat[...]`)
//! blocks.
//!
//! See [`crate::spec`] for the spec language. Every layer's output is a *value*: value 0
//! is the model's input, value `i + 1` the output of layer `i`; layer `i` of a stack reads
//! value `i`, and the `add` or `cat` that ends a block reads the value each branch ends
//! with ([`Model::inputs`]).
//!
//! ```
//! use cnnkit::{Model, Shape};
//! let m = Model::from_spec("conv(4,3,pad=1) relu maxpool(2) flatten linear(10)",
//!                          Shape::Image { c: 1, h: 8, w: 8 }, 1).unwrap();
//! assert_eq!(m.output_shape(), Shape::Flat(10));
//! assert_eq!(m.num_params(), 4 * 9 + 4 + 64 * 10 + 10);
//! assert!(Model::from_spec("conv(4,3) linear(10)", Shape::Image { c: 1, h: 8, w: 8 }, 1)
//!     .unwrap_err().to_string().contains("flatten"));
//!
//! let r = Model::from_spec("conv(4,3,pad=1) relu res[conv(4,3,pad=1) relu] gap flatten linear(2)",
//!                          Shape::Image { c: 1, h: 8, w: 8 }, 1).unwrap();
//! assert_eq!(r.inputs(4), &[4, 2]); // the add: the body's output and the block's input
//! assert_eq!(r.spec(), "conv(4,3,pad=1) relu res[conv(4,3,pad=1) relu] gap flatten linear(2)");
//! ```

use crate::error::{Error, Result};
use crate::fusion::{Role, roles};
use crate::layers::LayerSpec;
use crate::layers::{Elementwise, Init, Layer, Shape};
use crate::rng::Rng;
use crate::spec::{self, Fill, ParamSpec, check_shape};
use crate::tensor::Tensor;

pub use crate::spec::{FMNIST, LENET5, MAX_TENSOR, MOBILENET, RESNET8, preset};

/// A model: a stack of layers, or a graph of them (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub(crate) layers: Vec<Layer>,
    /// `inputs[i]`: the values layer `i` reads.
    pub(crate) inputs: Vec<Vec<usize>>,
    /// `shapes[v]`: the shape of value `v` (0: the input; the last: the model's output).
    pub(crate) shapes: Vec<Shape>,
    /// `in_shapes[i]`: the shapes of the values layer `i` reads.
    pub(crate) in_shapes: Vec<Vec<Shape>>,
    /// `adds[i][j]`: whether the backward pass adds layer `i`'s gradient for its input `j`
    /// to what another reader of that value, later in the graph, wrote first.
    pub(crate) adds: Vec<Vec<bool>>,
    /// How many layers read each value.
    consumers: Vec<usize>,
    /// What each layer does in a training forward pass ([`crate::fusion::roles`]).
    train_roles: Vec<Role>,
}

impl Model {
    /// A stack of layers, checking that each takes the output of the one before.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first layer that does not fit.
    pub fn new(input: Shape, layers: Vec<Layer>) -> Result<Self> {
        let inputs = (0..layers.len()).map(|i| vec![i]).collect();
        Self::graph(input, layers, inputs)
    }

    /// A graph of layers: layer `i` reads the values `inputs[i]` (0 the model's input,
    /// `j + 1` the output of layer `j`, so `j < i`). The add or concatenation that ends a
    /// block takes several; every other layer one. The graph must be in the order a spec
    /// gives ([`crate::spec::plan`]: a block's branches one after another, each from the
    /// block's input, then the layer that joins them), so that [`Model::spec`] writes it.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a layer that does not fit its inputs, a value no layer reads,
    /// a reference forward, or a graph no spec writes.
    pub fn graph(input: Shape, layers: Vec<Layer>, inputs: Vec<Vec<usize>>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::invalid("a model needs at least one layer"));
        }
        if inputs.len() != layers.len() {
            return Err(Error::invalid(format!(
                "{} layers but inputs for {}",
                layers.len(),
                inputs.len()
            )));
        }
        check_shape(input, "the input")?;
        let mut shapes = vec![input];
        let mut consumers = vec![0usize; layers.len() + 1];
        for (i, (l, ins)) in layers.iter().zip(&inputs).enumerate() {
            let at = |e: String| Error::invalid(format!("layer {i} ({}): {e}", l.spec()));
            let want = if l.is_merge() { 2..=usize::MAX } else { 1..=1 };
            if !want.contains(&ins.len()) {
                return Err(at(format!("takes {want:?} inputs, not {}", ins.len())));
            }
            if let Some(v) = ins.iter().find(|&&v| v > i) {
                return Err(at(format!("reads value {v}, which comes later")));
            }
            ins.iter().for_each(|&v| consumers[v] += 1);
            let s = if l.is_merge() {
                let ss: Vec<Shape> = ins.iter().map(|&v| shapes[v]).collect();
                l.to_spec().merge_shape(&ss)
            } else {
                l.output_shape(shapes[ins[0]])
            }
            .map_err(|e| at(e.to_string()))?;
            check_shape(s, &format!("the output of layer {i} ({})", l.spec()))?;
            shapes.push(s);
        }
        if let Some(v) = (0..layers.len()).find(|&v| consumers[v] == 0) {
            return Err(Error::invalid(format!(
                "value {v} (the {}) is never read",
                if v == 0 {
                    "model's input".to_string()
                } else {
                    format!("output of layer {}", v - 1)
                }
            )));
        }
        let in_shapes = inputs
            .iter()
            .map(|ins| ins.iter().map(|&v| shapes[v]).collect())
            .collect();
        let adds = (0..layers.len())
            .map(|i| {
                let ins = &inputs[i];
                (0..ins.len())
                    .map(|k| {
                        inputs[i + 1..].iter().any(|later| later.contains(&ins[k]))
                            || ins[..k].contains(&ins[k])
                    })
                    .collect()
            })
            .collect();
        let mut m = Model {
            layers,
            inputs,
            shapes,
            in_shapes,
            adds,
            consumers,
            train_roles: Vec::new(),
        };
        if !m.is_stack() {
            // a graph is kept only if its spec rebuilds it (checkpoints store the spec)
            let specs: Vec<LayerSpec> = m.layers.iter().map(Layer::to_spec).collect();
            let text = spec::write_graph(&specs, &m.inputs).ok_or_else(|| {
                Error::invalid(
                    "the graph is not in spec order (a block's branches one after another, \
                     each from the block's input, then the layer that joins them)",
                )
            })?;
            let again = spec::plan(&text, input)?;
            if again.len() != m.layers.len()
                || again
                    .iter()
                    .zip(&m.inputs)
                    .zip(&specs)
                    .any(|((p, ins), l)| p.inputs != *ins || p.layer != *l)
            {
                return Err(Error::invalid(format!(
                    "the graph is not in spec order (its spec `{text}` builds another graph)"
                )));
            }
        }
        m.train_roles = roles(&m, false);
        Ok(m)
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
        Model::graph(input, layers, plan.into_iter().map(|p| p.inputs).collect())
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

    /// The shape of each value: `shapes()[0]` the input, `shapes()[i + 1]` the output of
    /// layer `i` (the last: the model's output). In a stack `shapes()[i]` is the input of
    /// layer `i`; in general it is `shapes()[inputs(i)[0]]` ([`Model::input_shape_of`]).
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// The values layer `i` reads (see the module docs): `[i]` in a stack.
    ///
    /// # Panics
    /// When there is no layer `i`.
    pub fn inputs(&self, i: usize) -> &[usize] {
        &self.inputs[i]
    }

    /// The shape of (the first) input of layer `i`.
    ///
    /// # Panics
    /// When there is no layer `i`.
    pub fn input_shape_of(&self, i: usize) -> Shape {
        self.shapes[self.inputs[i][0]]
    }

    /// Whether it is a plain stack: each layer reads the output of the one before.
    pub fn is_stack(&self) -> bool {
        self.inputs.iter().enumerate().all(|(i, v)| v == &[i])
    }

    /// How many layers read value `v` (one, but two or more at a block's input).
    ///
    /// # Panics
    /// When there is no value `v`.
    pub fn consumers(&self, v: usize) -> usize {
        self.consumers[v]
    }

    /// Whether layer `i` reads only the output of the layer before it, and is the only
    /// layer to read it: where a layer may run in the one before it ([`crate::fusion`]).
    pub fn chained(&self, i: usize) -> bool {
        self.inputs[i] == [i] && self.consumers[i] == 1
    }

    /// The spec that rebuilds this model's architecture.
    pub fn spec(&self) -> String {
        let specs: Vec<LayerSpec> = self.layers.iter().map(Layer::to_spec).collect();
        spec::write_graph(&specs, &self.inputs).expect("checked by Model::graph")
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
}

impl Model {
    /// Whether layer `i` is a ReLU that a training forward pass applies in the epilogue of
    /// the layer before it ([`crate::fusion`]). The backward pass needs nothing of that
    /// layer's own output: the ReLU takes its mask from its output, and the layer's
    /// gradients come from its input.
    pub(crate) fn relu_in_epilogue(&self, i: usize) -> bool {
        matches!(self.train_roles.get(i), Some(Role::Epilogue { .. }))
    }

    /// Whether layer `i` is a ReLU (not the first layer) whose output a max-pool takes:
    /// their backward passes run as one ([`Model::relu_pool_backward`]).
    pub(crate) fn relu_into_pool(&self, i: usize) -> bool {
        i > 0
            && matches!(self.layers[i], Layer::Act(Elementwise::Relu))
            && matches!(self.layers.get(i + 1), Some(Layer::MaxPool2d(_)))
            && self.chained(i)
            && self.chained(i + 1)
    }

    /// Whether layer `i` is the first layer, a Conv2d whose output goes through a ReLU into
    /// a max-pool: with no input gradient to compute, its parameter gradients come from
    /// the pool's gradient and indices directly ([`Model::relu_pool_backward`],
    /// [`k::conv2d_backward_weight_sparse`]): a quarter of the work behind a 2x2 pool, and
    /// neither the pool's backward pass nor the full-size gradient.
    pub(crate) fn conv_from_pool(&self, i: usize) -> bool {
        i == 0
            && matches!(self.layers[0], Layer::Conv2d(_))
            && self.layers.len() > 2
            && self.relu_into_pool(1)
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
