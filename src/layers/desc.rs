//! Layers described without their tensors ([`LayerSpec`]): their kinds and
//! hyperparameters, output shapes, and the shapes of the tensors they hold
//! ([`ParamSpec`]), all known before anything is allocated. A layer is built by handing
//! over each tensor once ([`LayerSpec::build`]): drawn from an initialisation or read
//! from a file, never both. The text form of a description is [`crate::spec`]'s.

use cnnkit_kernels::Conv2dParams;

use super::{BatchNorm2d, Conv2d, Elementwise, Layer, Linear, Pool, Shape};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Most elements one parameter tensor, or one sample's activation, may have (2^28,
/// 1 GiB of `f32`): a larger layer is taken for a typo rather than allocated.
pub const MAX_TENSOR: usize = 1 << 28;

/// One layer of a spec: its kind and hyperparameters, without tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerSpec {
    /// `conv(OUT,K,stride=S,pad=P,groups=G)`.
    Conv2d {
        /// Output channels.
        out: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding on every side.
        padding: usize,
        /// Channel groups (the input channels for a depthwise convolution).
        groups: usize,
    },
    /// `linear(OUT)`.
    Linear {
        /// Output features.
        out: usize,
    },
    /// `maxpool(...)`.
    MaxPool2d(Pool),
    /// `avgpool(...)`.
    AvgPool2d(Pool),
    /// An element-wise activation, named as [`Elementwise::name`] says (`relu`, ...).
    Act(Elementwise),
    /// `flatten`.
    Flatten,
    /// `dropout(P)`.
    Dropout(f32),
    /// `batchnorm`.
    BatchNorm2d,
    /// `gap`: the mean of each channel plane (`nn.AdaptiveAvgPool2d(1)`), `c x 1 x 1`.
    GlobalAvgPool,
    /// The sum of its inputs (the end of a `res[...]` block).
    Add,
    /// Its inputs' channels one after another (the end of a `cat[...]` block).
    Concat,
}

/// How a fresh parameter is filled (a loaded one is read instead).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// A weight, by the initialisation scheme, with these fans.
    Weight {
        /// Inputs per output.
        fan_in: usize,
        /// Outputs per input.
        fan_out: usize,
    },
    /// A bias: `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, as PyTorch.
    Bias {
        /// Inputs per output.
        fan_in: usize,
    },
    /// All ones (batch-norm scale and running variance).
    Ones,
    /// All zeros (batch-norm shift and running mean).
    Zeros,
}

/// One tensor a layer holds: its `state_dict` suffix, shape and fresh filling.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// `weight`, `bias`, `running_mean`, `running_var`.
    pub name: &'static str,
    /// Its shape.
    pub shape: Vec<usize>,
    /// How a fresh one is filled.
    pub fill: Fill,
    /// Trainable (a batch-norm running statistic is not).
    pub trainable: bool,
}

impl ParamSpec {
    /// Its elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when it has no elements (never, for a planned layer).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LayerSpec {
    /// The output shape for `input`, or why the layer cannot take it.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the mismatch.
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        Ok(match *self {
            LayerSpec::Conv2d {
                out,
                kernel,
                stride,
                padding,
                groups,
            } => {
                let p = conv_params(out, kernel, stride, padding, groups, input)?;
                let (h, w) = p.output_dims()?;
                Shape::Image { c: out, h, w }
            }
            LayerSpec::Linear { out } => match input {
                Shape::Flat(_) => Shape::Flat(out),
                Shape::Image { .. } => {
                    return Err(Error::invalid(format!(
                        "linear needs a flat input, got an image {input}: insert `flatten` before it"
                    )));
                }
            },
            LayerSpec::MaxPool2d(p) | LayerSpec::AvgPool2d(p) => {
                let d = p.params(1, input)?.dims()?;
                let Shape::Image { c, .. } = input else {
                    unreachable!("checked by Pool::params")
                };
                Shape::Image {
                    c,
                    h: d.out_h,
                    w: d.out_w,
                }
            }
            LayerSpec::BatchNorm2d => match input {
                Shape::Image { .. } => input,
                Shape::Flat(_) => {
                    return Err(Error::invalid(format!(
                        "batchnorm needs an image input, got {input} features"
                    )));
                }
            },
            LayerSpec::GlobalAvgPool => match input {
                Shape::Image { c, .. } => Shape::Image { c, h: 1, w: 1 },
                Shape::Flat(_) => {
                    return Err(Error::invalid(format!(
                        "gap needs an image input, got {input} features"
                    )));
                }
            },
            LayerSpec::Flatten => Shape::Flat(input.len()),
            LayerSpec::Act(_) | LayerSpec::Dropout(_) => input,
            LayerSpec::Add | LayerSpec::Concat => self.merge_shape(&[input, input])?,
        })
    }

    /// Whether it takes several inputs (the end of a block).
    pub fn is_merge(&self) -> bool {
        matches!(self, LayerSpec::Add | LayerSpec::Concat)
    }

    /// The output shape of a merge ([`LayerSpec::Add`], [`LayerSpec::Concat`]) of
    /// `inputs`, or of any other layer of the one input.
    ///
    /// # Errors
    /// [`Error::Invalid`] for inputs that do not fit together: shapes that differ for an
    /// add; for a concatenation, images of other sizes or a mix of images and vectors.
    pub fn merge_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let (&first, rest) = inputs
            .split_first()
            .ok_or_else(|| Error::invalid("a layer needs an input"))?;
        match self {
            LayerSpec::Add => {
                if let Some(s) = rest.iter().find(|&&s| s != first) {
                    return Err(Error::invalid(format!(
                        "res: the branches give {first} and {s}, which cannot be added \
                         (a shortcut branch must give the body's shape)"
                    )));
                }
                Ok(first)
            }
            LayerSpec::Concat => rest.iter().try_fold(first, |acc, &s| match (acc, s) {
                (
                    Shape::Image { c, h, w },
                    Shape::Image {
                        c: c2,
                        h: h2,
                        w: w2,
                    },
                ) if (h, w) == (h2, w2) => Ok(Shape::Image {
                    c: c.saturating_add(c2),
                    h,
                    w,
                }),
                (Shape::Flat(a), Shape::Flat(b)) => Ok(Shape::Flat(a.saturating_add(b))),
                _ => Err(Error::invalid(format!(
                    "cat: the branches give {acc} and {s}, which cannot be concatenated \
                     (images need the same height and width)"
                ))),
            }),
            _ if rest.is_empty() => self.output_shape(first),
            _ => Err(Error::invalid(
                "only res and cat blocks take several inputs",
            )),
        }
    }

    /// The tensors the layer holds for `input`, in `state_dict` order (parameters,
    /// then buffers), each at most [`MAX_TENSOR`] elements. Nothing is allocated.
    ///
    /// # Errors
    /// When the layer cannot take `input`, or a tensor would be too large.
    pub fn params(&self, input: Shape) -> Result<Vec<ParamSpec>> {
        let p = |name, shape: Vec<usize>, fill, trainable| -> Result<ParamSpec> {
            let n = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= MAX_TENSOR)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "a parameter of shape {shape:?} is larger than 2^28 elements"
                    ))
                })?;
            debug_assert!(n > 0);
            Ok(ParamSpec {
                name,
                shape,
                fill,
                trainable,
            })
        };
        Ok(match *self {
            LayerSpec::Conv2d {
                out,
                kernel,
                groups,
                ..
            } => {
                let Shape::Image { c, .. } = input else {
                    return Err(Error::invalid(format!(
                        "needs an image input, got {input} features"
                    )));
                };
                if groups == 0 || !c.is_multiple_of(groups) || !out.is_multiple_of(groups) {
                    return Err(Error::invalid(format!(
                        "groups = {groups} must divide the {c} input and {out} output channels"
                    )));
                }
                // (PyTorch's fans: per group)
                let fan_in = (c / groups).saturating_mul(kernel).saturating_mul(kernel);
                let fan_out = (out / groups).saturating_mul(kernel).saturating_mul(kernel);
                vec![
                    p(
                        "weight",
                        vec![out, c / groups, kernel, kernel],
                        Fill::Weight { fan_in, fan_out },
                        true,
                    )?,
                    p("bias", vec![out], Fill::Bias { fan_in }, true)?,
                ]
            }
            LayerSpec::Linear { out } => {
                let Shape::Flat(fan_in) = input else {
                    return Err(Error::invalid(format!(
                        "needs a flat input, got an image {input}: insert `flatten` before it"
                    )));
                };
                vec![
                    p(
                        "weight",
                        vec![out, fan_in],
                        Fill::Weight {
                            fan_in,
                            fan_out: out,
                        },
                        true,
                    )?,
                    p("bias", vec![out], Fill::Bias { fan_in }, true)?,
                ]
            }
            LayerSpec::BatchNorm2d => {
                let Shape::Image { c, .. } = input else {
                    return Err(Error::invalid(format!(
                        "needs an image input, got {input} features"
                    )));
                };
                vec![
                    p("weight", vec![c], Fill::Ones, true)?,
                    p("bias", vec![c], Fill::Zeros, true)?,
                    p("running_mean", vec![c], Fill::Zeros, false)?,
                    p("running_var", vec![c], Fill::Ones, false)?,
                ]
            }
            _ => Vec::new(),
        })
    }

    /// The layer for `input`, each tensor of [`LayerSpec::params`] taken from `tensor`
    /// in order (which must return a tensor of the shape asked for).
    ///
    /// # Errors
    /// What `tensor` returns; a tensor of another shape.
    pub fn build(
        &self,
        input: Shape,
        mut tensor: impl FnMut(&ParamSpec) -> Result<Tensor>,
    ) -> Result<Layer> {
        let specs = self.params(input)?;
        let mut ts = Vec::with_capacity(specs.len());
        for s in &specs {
            let t = tensor(s)?;
            if t.shape() != s.shape.as_slice() {
                return Err(Error::invalid(format!(
                    "{} of shape {:?}, the layer needs {:?}",
                    s.name,
                    t.shape(),
                    s.shape
                )));
            }
            ts.push(t);
        }
        let mut ts = ts.into_iter();
        let mut next = || ts.next().expect("one tensor per ParamSpec");
        Ok(match *self {
            LayerSpec::Conv2d {
                out,
                kernel,
                stride,
                padding,
                groups,
            } => Layer::Conv2d(Conv2d {
                in_channels: specs[0].shape[1] * groups,
                out_channels: out,
                kernel,
                stride,
                padding,
                groups,
                weight: next(),
                bias: next(),
            }),
            LayerSpec::Linear { out } => Layer::Linear(Linear {
                in_features: specs[0].shape[1],
                out_features: out,
                weight: next(),
                bias: next(),
            }),
            LayerSpec::BatchNorm2d => {
                let mut bn = BatchNorm2d::new(1)?;
                bn.weight = next();
                bn.bias = next();
                bn.running_mean = next();
                bn.running_var = next();
                Layer::BatchNorm2d(bn)
            }
            LayerSpec::MaxPool2d(p) => Layer::MaxPool2d(p),
            LayerSpec::AvgPool2d(p) => Layer::AvgPool2d(p),
            LayerSpec::Act(e) => Layer::Act(e),
            LayerSpec::Flatten => Layer::Flatten,
            LayerSpec::Dropout(p) => Layer::Dropout(p),
            LayerSpec::GlobalAvgPool => Layer::GlobalAvgPool,
            LayerSpec::Add => Layer::Add,
            LayerSpec::Concat => Layer::Concat,
        })
    }
}

fn conv_params(
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    groups: usize,
    input: Shape,
) -> Result<Conv2dParams> {
    let Shape::Image { c, h, w } = input else {
        return Err(Error::invalid(format!(
            "conv needs an image input, got {input} features"
        )));
    };
    let p = Conv2dParams::new(1, c, h, w, out, kernel, kernel)
        .with_stride(stride, stride)
        .with_padding(padding, padding, padding, padding)
        .with_groups(groups);
    p.dims()?;
    Ok(p)
}
