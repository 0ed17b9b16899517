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
use crate::fusion::{Role, roles};
use crate::layers::{Elementwise, Init, Layer, Shape};
use crate::rng::Rng;
use crate::spec::{self, Fill, ParamSpec, check_shape};
use crate::tensor::Tensor;

pub use crate::spec::{FMNIST, LENET5, MAX_TENSOR, preset};

/// A sequential model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub(crate) layers: Vec<Layer>,
    /// `shapes[i]` is the input of layer `i`; the last is the model's output.
    pub(crate) shapes: Vec<Shape>,
    /// What each layer does in a training forward pass ([`crate::fusion::roles`]).
    train_roles: Vec<Role>,
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
        Ok(Model {
            train_roles: roles(&layers, false),
            layers,
            shapes,
        })
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
