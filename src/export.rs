//! Export a trained [`Model`] for inference without `std`: the layer list of a
//! [`cnnkit_kernels::net::Network`], its parameters as a flat little-endian
//! [`Blob`], and the layer list as Rust source for a firmware
//! to `include!`.
//!
//! Activations that follow a convolution or a linear layer are fused into it (as the
//! clamp of its store), batch normalisation is folded into the convolution or linear
//! layer before it (with its running statistics, as in evaluation), and flatten and
//! dropout vanish (both are the identity in evaluation).
//!
//! ```
//! use cnnkit::{Model, Normalize, Shape, export::Export};
//! let m = Model::from_spec("conv(4,3,pad=1) batchnorm relu maxpool(2) flatten linear(10)",
//!                          Shape::Image { c: 1, h: 8, w: 8 }, 1).unwrap();
//! let e = Export::new(&m, Normalize { mean: 0.5, std: 0.25 }, 1).unwrap();
//! assert_eq!(e.layers.len(), 3); // conv (+ batchnorm + relu), max-pool, linear
//! let net = e.network().unwrap();
//! assert_eq!(net.param_len(), 4 * 9 + 4 + 64 * 10 + 10);
//! assert_eq!(e.blob().unwrap().len(), 32 + 4 * net.param_len());
//! assert!(e.rust_source().unwrap().contains("pub const LAYERS"));
//! ```

use std::fmt::Write as _;

use cnnkit_kernels::net::{
    BLOB_HEADER_LEN, Blob, Layer as NetLayer, MAX_KEPT as NET_MAX_KEPT, Network,
};
use cnnkit_kernels::{Activation, Elementwise, LinearParams, Pool2dParams};

use crate::data::Normalize;
use crate::error::{Error, Result};
use crate::fusion::{self, Role};
use crate::layers::{BatchNorm2d, Layer, Shape};
use crate::model::Model;

/// A model in the form [`cnnkit_kernels::net`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// The layers, with activations fused and batch normalisation folded.
    pub layers: Vec<NetLayer>,
    /// Every layer's weight then bias, in order.
    pub params: Vec<f32>,
    /// The input normalisation.
    pub norm: Normalize,
}

impl Export {
    /// The layers and parameters of `model` for a batch of `batch` images.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a batch normalisation that does not directly follow a
    /// convolution or linear layer (nothing to fold it into), or a batch of 0.
    pub fn new(model: &Model, norm: Normalize, batch: usize) -> Result<Export> {
        if batch == 0 {
            return Err(Error::invalid("export needs a batch of at least 1"));
        }
        let specs: Vec<_> = model.layers().iter().map(Layer::to_spec).collect();
        let inputs: Vec<Vec<usize>> = (0..specs.len()).map(|i| model.inputs(i).to_vec()).collect();
        let mut em = Emitter {
            model,
            batch,
            roles: fusion::roles(model, true),
            forks: crate::spec::block_forks(&specs, &inputs),
            layers: Vec::new(),
            params: Vec::new(),
        };
        em.range(0, specs.len(), 0, 0)?;
        let (layers, params) = (em.layers, em.params);
        let e = Export {
            layers,
            params,
            norm,
        };
        e.network()?;
        Ok(e)
    }

    /// The checked network.
    ///
    /// # Errors
    /// [`Error::Kernel`] if the layers do not fit together (they always do for a
    /// [`Model`]'s export).
    pub fn network(&self) -> Result<Network<'_>> {
        Ok(Network::new(&self.layers)?)
    }

    /// The flat blob: the 32-byte header, then the parameters, little-endian.
    ///
    /// # Errors
    /// [`Error::Kernel`] if the layers (public, so perhaps edited) no longer fit together;
    /// [`Error::Invalid`] if the parameter count differs from theirs or does not fit the
    /// header's `u32`.
    pub fn blob(&self) -> Result<Vec<u8>> {
        let net = self.network()?;
        if self.params.len() != net.param_len() {
            return Err(Error::invalid(format!(
                "{} parameters for layers that take {}",
                self.params.len(),
                net.param_len()
            )));
        }
        let (Ok(n), Ok(layers)) = (
            u32::try_from(self.params.len()),
            u32::try_from(self.layers.len()),
        ) else {
            return Err(Error::invalid("too many parameters for a weight blob"));
        };
        let mut v = Vec::with_capacity(BLOB_HEADER_LEN + 4 * self.params.len());
        v.extend_from_slice(&Blob::header(
            n,
            layers,
            net.fingerprint(),
            self.norm.mean,
            self.norm.std,
        ));
        for p in &self.params {
            v.extend_from_slice(&p.to_le_bytes());
        }
        Ok(v)
    }

    /// Rust source defining `LAYERS: [cnnkit_kernels::net::Layer; N]`, `PARAMS` (the
    /// parameter count) and `ARENA` (the arena length), for a firmware to `include!`.
    ///
    /// # Errors
    /// [`Error::Kernel`] if the layers no longer fit together.
    pub fn rust_source(&self) -> Result<String> {
        let net = self.network()?;
        let mut s = String::from(
            "// Written by `cnnkit export`: the geometry of an exported model.\n\
             #[allow(unused_imports)]\n\
             use cnnkit_kernels::{Activation, Conv2dParams, Elementwise, LinearParams, Pool2dParams, net::Layer};\n\n",
        );
        let _ = writeln!(
            s,
            "/// The layers (batch {}).\npub const LAYERS: [Layer; {}] = [",
            self.batch(),
            self.layers.len()
        );
        for l in &self.layers {
            let _ = writeln!(s, "    {},", layer_source(l));
        }
        let _ = writeln!(
            s,
            "];\n\n/// Parameters (f32) the weight blob holds.\npub const PARAMS: usize = {};\n\n\
             /// Arena elements `Network::run` needs.\npub const ARENA: usize = {};\n\n\
             /// `Network::fingerprint` of the layers.\npub const FINGERPRINT: u32 = {:#010x};",
            net.param_len(),
            net.arena_len(),
            net.fingerprint()
        );
        Ok(s)
    }

    /// The batch the layers were exported for.
    fn batch(&self) -> usize {
        match self.layers.first() {
            Some(NetLayer::Conv2d { params, .. }) => params.batch,
            Some(NetLayer::Linear { params, .. }) => params.batch,
            Some(NetLayer::MaxPool2d(params) | NetLayer::AvgPool2d { params, .. }) => params.batch,
            _ => 1,
        }
    }
}

/// Folds evaluation-mode batch normalisation into the `out`-channel layer whose weight
/// (`wlen` elements) and bias end `params`: `w' = w * s`, `b' = b * s + (beta - mean * s)`
/// with `s = gamma / sqrt(var + eps)`, the scale and shift [`BatchNorm2d`]'s forward pass
/// applies in evaluation.
fn fold(bn: &BatchNorm2d, out: usize, wlen: usize, params: &mut [f32]) -> Result<()> {
    if bn.channels() != out || params.len() < out + wlen {
        return Err(Error::invalid(format!(
            "batchnorm over {} channels follows a layer of {out}",
            bn.channels()
        )));
    }
    let n = params.len();
    let (weight, bias) = params[n - out - wlen..].split_at_mut(wlen);
    cnnkit_kernels::batch_norm_fold(
        out,
        wlen / out,
        weight,
        bias,
        bn.weight.data(),
        bn.bias.data(),
        bn.running_mean.data(),
        bn.running_var.data(),
        bn.eps,
    )?;
    Ok(())
}

fn f32_source(x: f32) -> String {
    if x == f32::INFINITY {
        "f32::INFINITY".into()
    } else if x == f32::NEG_INFINITY {
        "f32::NEG_INFINITY".into()
    } else if x.is_nan() {
        "f32::NAN".into()
    } else {
        format!("{x:?}")
    }
}

fn act_source(a: Activation) -> String {
    match a {
        Activation::None => "Activation::None".into(),
        Activation::Relu => "Activation::Relu".into(),
        Activation::Clamp { min, max } => format!(
            "Activation::Clamp {{ min: {}, max: {} }}",
            f32_source(min),
            f32_source(max)
        ),
    }
}

/// The source of an element-wise layer: its `Debug` form is its Rust expression
/// (`LeakyRelu(0.01)`; parameters are finite, checked by the network).
fn elementwise_source(e: Elementwise) -> String {
    format!("Elementwise::{e:?}")
}

/// The Rust expression of pooling parameters.
pub(crate) fn pool_source(p: &cnnkit_kernels::Pool2dParams) -> String {
    format!(
        "Pool2dParams::new({}, {}, {}, {}, {}, {}).with_stride({}, {}).with_padding({}, {}, {}, {}).with_dilation({}, {})",
        p.batch,
        p.channels,
        p.in_h,
        p.in_w,
        p.kernel_h,
        p.kernel_w,
        p.stride_h,
        p.stride_w,
        p.pad_top,
        p.pad_bottom,
        p.pad_left,
        p.pad_right,
        p.dilation_h,
        p.dilation_w
    )
}

/// The Rust expression of convolution parameters.
pub(crate) fn conv_source(p: &cnnkit_kernels::Conv2dParams) -> String {
    format!(
        "Conv2dParams::new({}, {}, {}, {}, {}, {}, {}).with_stride({}, {}).with_padding({}, {}, {}, {}).with_dilation({}, {}).with_groups({})",
        p.batch,
        p.in_channels,
        p.in_h,
        p.in_w,
        p.out_channels,
        p.kernel_h,
        p.kernel_w,
        p.stride_h,
        p.stride_w,
        p.pad_top,
        p.pad_bottom,
        p.pad_left,
        p.pad_right,
        p.dilation_h,
        p.dilation_w,
        p.groups
    )
}

fn layer_source(l: &NetLayer) -> String {
    let pool = pool_source;
    match l {
        NetLayer::Push => "Layer::Push".into(),
        NetLayer::Load { depth } => format!("Layer::Load {{ depth: {depth} }}"),
        NetLayer::AddPop => "Layer::AddPop".into(),
        NetLayer::CatPop => "Layer::CatPop".into(),
        NetLayer::Drop => "Layer::Drop".into(),
        NetLayer::Conv2d {
            params: p,
            bias,
            act,
        } => format!(
            "Layer::Conv2d {{ params: {}, bias: {bias}, act: {} }}",
            conv_source(p),
            act_source(*act)
        ),
        NetLayer::Linear {
            params: p,
            bias,
            act,
        } => format!(
            "Layer::Linear {{ params: LinearParams::new({}, {}, {}), bias: {bias}, act: {} }}",
            p.batch,
            p.in_features,
            p.out_features,
            act_source(*act)
        ),
        NetLayer::MaxPool2d(p) => format!("Layer::MaxPool2d({})", pool(p)),
        NetLayer::AvgPool2d {
            params: p,
            count_include_pad,
        } => format!(
            "Layer::AvgPool2d {{ params: {}, count_include_pad: {count_include_pad} }}",
            pool(p)
        ),
        NetLayer::Act(e) => format!("Layer::Act({})", elementwise_source(*e)),
        // (`net::Layer` is exhaustive today; a new kind must be added here)
    }
}

/// Writes a model's layers as [`NetLayer`]s: each block as block operations around its
/// branches ([`NetLayer::Push`] its input, each branch, [`NetLayer::Load`] the input
/// back for the next, then [`NetLayer::AddPop`] or [`NetLayer::CatPop`] the branches'
/// results together and [`NetLayer::Drop`] the input).
struct Emitter<'a> {
    model: &'a Model,
    batch: usize,
    roles: Vec<Role>,
    forks: Vec<Option<usize>>,
    layers: Vec<NetLayer>,
    /// The parameters of the layers so far (the last one's may still take a fold).
    params: Vec<f32>,
}

impl Emitter<'_> {
    /// Layers `lo..hi`, blocks as their operations; layer `lo` reads value `from`.
    fn range(&mut self, lo: usize, hi: usize, from: usize, depth: usize) -> Result<()> {
        if depth > NET_MAX_KEPT {
            return Err(Error::invalid(format!(
                "blocks nested deeper than the firmware network keeps ({NET_MAX_KEPT})"
            )));
        }
        let mut j = lo;
        while j < hi {
            let f = if j == lo { from } else { j };
            match crate::spec::block_at(&self.forks, j, hi, f) {
                Some(m) => {
                    self.block(j, f, m, depth)?;
                    j = m + 1;
                }
                None => {
                    self.layer(j)?;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// The block of layers `j..=m` from value `f` (layer `m` joins it).
    fn block(&mut self, j: usize, f: usize, m: usize, depth: usize) -> Result<()> {
        let ends = self.model.inputs(m).to_vec();
        self.layers.push(NetLayer::Push);
        if let ([v, id], Layer::Add) = (ends.as_slice(), &self.model.layers()[m])
            && *id == f
        {
            // `res[A]`: A, then its input added straight from where it was kept
            self.range(j, *v, f, depth + 1)?;
            self.layers.push(NetLayer::AddPop);
            return Ok(());
        }
        let (mut start, mut kept) = (j, 0u8);
        for (k, &v) in ends.iter().enumerate() {
            if k > 0 {
                self.layers.push(NetLayer::Load { depth: kept });
            }
            if v != f {
                self.range(start, v, f, depth + 1)?;
                start = v;
            }
            if k + 1 < ends.len() {
                self.layers.push(NetLayer::Push);
                kept += 1;
            }
        }
        let join = match self.model.layers()[m] {
            Layer::Add => NetLayer::AddPop,
            _ => NetLayer::CatPop,
        };
        for _ in 0..kept {
            self.layers.push(join);
        }
        self.layers.push(NetLayer::Drop);
        Ok(())
    }

    /// Layer `i` on its own (fused, folded or skipped as the inference roles say).
    fn layer(&mut self, i: usize) -> Result<()> {
        let (model, batch) = (self.model, self.batch);
        let (l, input) = (&model.layers()[i], model.input_shape_of(i));
        let (layers, params) = (&mut self.layers, &mut self.params);
        match (self.roles[i], l) {
            (Role::Identity, _) => {}
            // (the fused layer is the last one pushed: the pass keeps a layer open only
            // until another one runs, along a chain, where no block operation comes between)
            (Role::Epilogue { .. }, _) => match layers.last_mut() {
                Some(NetLayer::Conv2d { act, .. } | NetLayer::Linear { act, .. }) => {
                    *act = Activation::Relu;
                }
                _ => return Err(Error::invalid(format!("layer {i}: nothing to fuse into"))),
            },
            (Role::Folded { .. }, Layer::BatchNorm2d(bn)) => {
                // (out channels, weight elements) of the layer to fold into
                let (out, wlen) = match layers.last() {
                    Some(NetLayer::Conv2d { params: p, .. }) => {
                        (p.out_channels, p.dims()?.weight_len)
                    }
                    Some(NetLayer::Linear { params: p, .. }) => (p.out_features, p.lens()?.1),
                    _ => {
                        return Err(Error::invalid(format!("layer {i}: nothing to fold into")));
                    }
                };
                fold(bn, out, wlen, params)?;
            }
            (_, Layer::Conv2d(c)) => {
                layers.push(NetLayer::Conv2d {
                    params: c.params(batch, input)?,
                    bias: true,
                    act: Activation::None,
                });
                params.extend_from_slice(c.weight.data());
                params.extend_from_slice(c.bias.data());
            }
            (_, Layer::Linear(f)) => {
                layers.push(NetLayer::Linear {
                    params: LinearParams::new(batch, f.in_features, f.out_features),
                    bias: true,
                    act: Activation::None,
                });
                params.extend_from_slice(f.weight.data());
                params.extend_from_slice(f.bias.data());
            }
            (_, Layer::MaxPool2d(p)) => {
                layers.push(NetLayer::MaxPool2d(p.params(batch, input)?));
            }
            (_, Layer::AvgPool2d(p)) => layers.push(NetLayer::AvgPool2d {
                params: p.params(batch, input)?,
                count_include_pad: true,
            }),
            (_, Layer::Act(e)) => layers.push(NetLayer::Act(*e)),
            (_, Layer::GlobalAvgPool) => {
                let Shape::Image { c, h, w } = input else {
                    return Err(Error::invalid(format!("layer {i} (gap) needs an image")));
                };
                layers.push(NetLayer::AvgPool2d {
                    params: Pool2dParams::new(batch, c, h, w, h, w),
                    count_include_pad: true,
                });
            }
            (_, Layer::Add | Layer::Concat) => {
                return Err(Error::invalid(format!(
                    "layer {i} joins a block that is not in spec order"
                )));
            }
            (_, Layer::BatchNorm2d(_)) => {
                return Err(Error::invalid(format!(
                    "layer {i} (batchnorm) does not follow a convolution or linear \
                     layer directly, so it cannot be folded for export"
                )));
            }
            // (the identity in inference: the fusion pass gave them `Role::Identity`)
            (_, Layer::Flatten | Layer::Dropout(_)) => {}
        }
        Ok(())
    }
}
