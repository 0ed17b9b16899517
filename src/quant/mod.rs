//! Post-training static quantisation: a trained [`Model`] to TFLite's int8 scheme, run by
//! [`cnnkit_kernels::qnet`].
//!
//! The model is first exported as [`crate::export`] does it (batch normalisation folded,
//! ReLU fused, flatten and dropout gone); calibration images then run through that f32
//! network one layer at a time, and every tensor gets its scale and zero point from the
//! smallest and largest value it took (asymmetric, per tensor, with 0 exactly
//! representable; a pooling layer keeps its input's). Weights are quantised per output
//! channel (symmetric, `max |w| / 127`), biases to int32 at `input_scale * weight_scale`,
//! and a fused ReLU becomes the clamp at the output's zero point. Activations are NHWC,
//! so the columns of a linear layer after a flatten are permuted from PyTorch's `(c, h,
//! w)` order to `(h, w, c)`.
//!
//! ```
//! use cnnkit::{Model, Normalize, Shape, quant::Quantized};
//! let m = Model::from_spec("conv(4,3,pad=1) relu maxpool(2) flatten linear(10)",
//!                          Shape::Image { c: 1, h: 8, w: 8 }, 1).unwrap();
//! let calib: Vec<f32> = (0..4 * 64).map(|i| (i % 17) as f32 / 8.0 - 1.0).collect();
//! let q = Quantized::new(&m, Normalize { mean: 0.5, std: 0.25 }, &calib).unwrap();
//! let logits = q.forward(&calib[..64]).unwrap();
//! assert_eq!(logits.len(), 10);
//! ```

mod export;
pub mod file;

pub use export::INT8_SOURCE_HEAD;

pub use file::AnyModel;

use cnnkit_kernels::net::{Layer as NetLayer, Network};
use cnnkit_kernels::qnet::{QLayer, QNetwork};
use cnnkit_kernels::{
    self as k, Activation, AddParams, Conv2dParams, Elementwise, LinearParams, Pool2dParams,
    QuantOutput, Requant, RequantizeParams,
};

use crate::data::Normalize;
use crate::error::{Error, Result};
use crate::export::Export;
use crate::model::Model;

/// A tensor's quantisation: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorQuant {
    /// The step between two int8 values.
    pub scale: f32,
    /// The int8 value of real 0.
    pub zero_point: i32,
}

impl TensorQuant {
    /// From the range a tensor took: widened to hold 0, spread over the 256 int8 values.
    pub fn from_range(min: f32, max: f32) -> Self {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
        Self { scale, zero_point }
    }

    /// The int8 value of `x` (TFLite's rounding: halves away from zero).
    pub fn quantize(self, x: f32) -> i32 {
        ((x / self.scale).round() as i32 + self.zero_point).clamp(-128, 127)
    }
}

/// One quantised layer with its own data (what a [`QLayer`] points into).
#[derive(Debug, Clone, PartialEq)]
pub enum QuantLayer {
    /// A convolution: OHWI int8 weights, int32 bias, per-channel multipliers.
    Conv2d {
        /// The geometry for one image.
        params: Conv2dParams,
        /// `[out, kh, kw, in / groups]`.
        weight: Vec<i8>,
        /// At `input_scale * weight_scale[c]`.
        bias: Vec<i32>,
        /// The scale of each output channel's weights.
        weight_scale: Vec<f32>,
        /// One per output channel.
        requant: Vec<Requant>,
        /// The input's quantisation.
        input: TensorQuant,
        /// The output's.
        output: TensorQuant,
        /// The clamp (a fused ReLU: the output's zero point).
        min: i8,
        /// The clamp's upper end (a fused ReLU6: the value of 6).
        max: i8,
    },
    /// A fully connected layer (columns in NHWC order after a flatten).
    Linear {
        /// The geometry for one image.
        params: LinearParams,
        /// `[out, in]`.
        weight: Vec<i8>,
        /// At `input_scale * weight_scale[o]`.
        bias: Vec<i32>,
        /// The scale of each output's weights.
        weight_scale: Vec<f32>,
        /// One per output.
        requant: Vec<Requant>,
        /// The input's quantisation.
        input: TensorQuant,
        /// The output's.
        output: TensorQuant,
        /// The clamp.
        min: i8,
        /// The clamp's upper end (a fused ReLU6: the value of 6).
        max: i8,
    },
    /// Max pooling (the input's quantisation).
    MaxPool2d(Pool2dParams),
    /// Average pooling without padding (TFLite's divides by the pixels inside the image,
    /// PyTorch's default by the whole window: they agree only without padding).
    AvgPool2d(Pool2dParams),
    /// A ReLU or ReLU6 in place, the quantisation kept: where the layer before cannot take
    /// it as its clamp.
    Clamp {
        /// The clamp's lower end (the zero point).
        min: i8,
        /// Its upper end.
        max: i8,
    },
    /// A ReLU or ReLU6 the layer before took as its clamp (nothing runs).
    Fused,
    /// Keeps the current activation: a block's input.
    Push,
    /// Brings back the value kept `depth` pushes ago.
    Load {
        /// Values kept after it.
        depth: u8,
    },
    /// The last kept value plus the current activation (TFLite's `ADD`).
    AddPop {
        /// The kept value's quantisation.
        kept: TensorQuant,
        /// The current activation's.
        current: TensorQuant,
        /// The sum's.
        output: TensorQuant,
        /// The clamp (a ReLU after the sum: the output's zero point).
        min: i8,
        /// Its upper end.
        max: i8,
    },
    /// The last kept value's channels, then the current activation's, each requantised.
    CatPop {
        /// Pixels of one image (`h * w`).
        pixels: usize,
        /// The kept value's quantisation.
        kept: TensorQuant,
        /// The current activation's.
        current: TensorQuant,
        /// The result's.
        output: TensorQuant,
    },
    /// Forgets the last kept value.
    Drop,
}

/// A quantised model: its layers, the input's and the output's quantisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// The layers, for one image.
    pub layers: Vec<QuantLayer>,
    /// The quantisation of the (normalised) input.
    pub input: TensorQuant,
    /// The quantisation of the logits.
    pub output: TensorQuant,
    /// The input normalisation (pixels to the model's input).
    pub norm: Normalize,
    /// The model's input shape `(c, h, w)`.
    pub shape: (usize, usize, usize),
    /// The spec of the f32 model it was made from ([`Model::spec`]): the layers' geometry.
    pub spec: String,
    /// How many images calibrated it.
    pub calibration_images: usize,
}

/// A layer's f32 weights (OIHW or `[out, in]`) per output channel, quantised: the int8
/// weights, the scale of each channel.
fn quantize_weights(w: &[f32], out: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / out;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(out);
    for row in w.chunks_exact(per) {
        let m = row.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1.0 };
        q.extend(
            row.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(s);
    }
    (q, scales)
}

/// `(bias, requant)` of a layer: the bias at `s_in * s_w[c]`, the multipliers.
fn bias_and_requant(
    bias: &[f32],
    s_in: f32,
    s_w: &[f32],
    s_out: f32,
) -> Result<(Vec<i32>, Vec<Requant>)> {
    let mut b = Vec::with_capacity(bias.len());
    let mut r = Vec::with_capacity(bias.len());
    for (&v, &sw) in bias.iter().zip(s_w) {
        let scale = f64::from(s_in) * f64::from(sw);
        b.push((f64::from(v) / scale).round().clamp(-2.1e9, 2.1e9) as i32);
        r.push(Requant::for_scales(s_in, sw, s_out)?);
    }
    Ok((b, r))
}

impl Quantized {
    /// Quantises `model` (normalised by `norm`) with the ranges its layers reach on
    /// `calibration`: whole input images, normalised, one after another.
    ///
    /// # Errors
    /// [`Error::Invalid`] for no calibration image, a partial one, an element-wise
    /// activation other than a fused ReLU (tanh, sigmoid, GELU, leaky ReLU have no int8
    /// kernel yet), an average pooling with padding, or a non-finite weight or value.
    pub fn new(model: &Model, norm: Normalize, calibration: &[f32]) -> Result<Self> {
        let e = Export::new(model, norm, 1)?;
        check_int8_form(&e.layers)?;
        let net = e.network()?;
        let per = net.input_len();
        if calibration.is_empty() || !calibration.len().is_multiple_of(per) {
            return Err(Error::invalid(format!(
                "calibration: a whole number of {per}-value images, at least one"
            )));
        }
        let ranges = calibrate(&e, per, calibration)?;
        let fused = fused_activations(&e.layers);
        let shape = match model.input_shape() {
            crate::layers::Shape::Image { c, h, w } => (c, h, w),
            crate::layers::Shape::Flat(n) => (n, 1, 1),
        };
        let input = TensorQuant::from_range(ranges[0].0, ranges[0].1);
        let mut w = Walk::new(input, shape);
        let mut offset = 0;
        let mut layers = Vec::with_capacity(e.layers.len());
        for (i, l) in e.layers.iter().enumerate() {
            // a layer's output: its own range, or its fused activation's (after it)
            let (out, clamp) = match fused_after(&e.layers, &fused, i) {
                Some((k, a)) => {
                    let r = ranges[k + 1];
                    let out = TensorQuant::from_range(r.0, r.1);
                    (out, act_clamp(a, out))
                }
                _ => {
                    let r = ranges[i + 1];
                    (TensorQuant::from_range(r.0, r.1), (-128, 127))
                }
            };
            let p = &e.params[offset..];
            offset += l.param_len()?;
            match *l {
                NetLayer::Conv2d { params, bias, act } => {
                    let d = params.dims()?;
                    let (wq, sw) = quantize_weights(&p[..d.weight_len], params.out_channels);
                    // OIHW to OHWI
                    let (cig, taps) = (d.in_per_group, params.kernel_h * params.kernel_w);
                    let mut ohwi = vec![0i8; wq.len()];
                    for (o, row) in wq.chunks_exact(cig * taps).enumerate() {
                        for c in 0..cig {
                            for t in 0..taps {
                                ohwi[o * cig * taps + t * cig + c] = row[c * taps + t];
                            }
                        }
                    }
                    let zero = vec![0.0; params.out_channels];
                    let b = if bias {
                        &p[d.weight_len..d.weight_len + params.out_channels]
                    } else {
                        &zero[..]
                    };
                    let (bq, rq) = bias_and_requant(b, w.cur.scale, &sw, out.scale)?;
                    let (min, max) = tighter(clamp, conv_clamp(act, out, i)?);
                    layers.push(QuantLayer::Conv2d {
                        params,
                        weight: ohwi,
                        bias: bq,
                        weight_scale: sw,
                        requant: rq,
                        input: w.cur,
                        output: out,
                        min,
                        max,
                    });
                    w.image = (params.out_channels, d.out_h, d.out_w);
                    w.cur = out;
                }
                NetLayer::Linear { params, bias, act } => {
                    let (_, wl, _) = params.lens()?;
                    let (mut wq, sw) = quantize_weights(&p[..wl], params.out_features);
                    let (c, h, iw) = w.image;
                    if h * iw > 1 {
                        // (c, h, w) columns to (h, w, c)
                        let n = params.in_features;
                        for row in wq.chunks_exact_mut(n) {
                            let src = row.to_vec();
                            for ci in 0..c {
                                for y in 0..h * iw {
                                    row[y * c + ci] = src[ci * h * iw + y];
                                }
                            }
                        }
                    }
                    let zero = vec![0.0; params.out_features];
                    let b = if bias {
                        &p[wl..wl + params.out_features]
                    } else {
                        &zero[..]
                    };
                    let (bq, rq) = bias_and_requant(b, w.cur.scale, &sw, out.scale)?;
                    let (min, max) = tighter(clamp, conv_clamp(act, out, i)?);
                    layers.push(QuantLayer::Linear {
                        params,
                        weight: wq,
                        bias: bq,
                        weight_scale: sw,
                        requant: rq,
                        input: w.cur,
                        output: out,
                        min,
                        max,
                    });
                    w.image = (params.out_features, 1, 1);
                    w.cur = out;
                }
                NetLayer::MaxPool2d(params) => {
                    let d = params.dims()?;
                    w.image = (params.channels, d.out_h, d.out_w);
                    layers.push(QuantLayer::MaxPool2d(params));
                }
                NetLayer::AvgPool2d { params, .. } => {
                    let d = params.dims()?;
                    w.image = (params.channels, d.out_h, d.out_w);
                    layers.push(QuantLayer::AvgPool2d(params));
                }
                NetLayer::Act(a) => layers.push(match fused[i] {
                    Some(_) => QuantLayer::Fused,
                    None => {
                        let (min, max) = act_clamp(a, w.cur);
                        QuantLayer::Clamp { min, max }
                    }
                }),
                NetLayer::Push
                | NetLayer::Load { .. }
                | NetLayer::AddPop
                | NetLayer::CatPop
                | NetLayer::Drop => {
                    layers.push(w.block(l, out, clamp)?);
                }
            }
        }
        let q = Quantized {
            layers,
            input,
            output: w.cur,
            norm,
            shape,
            spec: model.spec(),
            calibration_images: calibration.len() / per,
        };
        {
            let l = q.qlayers(1)?;
            QNetwork::new(&l)?;
        }
        Ok(q)
    }

    /// The [`QLayer`]s for a batch of `batch` images, pointing into `self` (a
    /// [`QuantLayer::Fused`] has none).
    fn qlayers(&self, batch: usize) -> Result<Vec<QLayer<'_>>> {
        Ok(self
            .qlayers_indexed(batch)?
            .into_iter()
            .map(|(_, l)| l)
            .collect())
    }

    /// As [`Quantized::qlayers`], each with the index of its [`QuantLayer`].
    pub(crate) fn qlayers_indexed(&self, batch: usize) -> Result<Vec<(usize, QLayer<'_>)>> {
        let mut v = Vec::with_capacity(self.layers.len());
        for (j, l) in self.layers.iter().enumerate() {
            v.push((
                j,
                match l {
                    QuantLayer::Conv2d {
                        params,
                        weight,
                        bias,
                        requant,
                        weight_scale: _,
                        input,
                        output,
                        min,
                        max,
                    } => QLayer::Conv2d {
                        params: Conv2dParams { batch, ..*params },
                        weight,
                        bias: Some(bias),
                        q: QuantOutput::new(input.zero_point, output.zero_point, requant)
                            .with_clamp(*min, *max),
                    },
                    QuantLayer::Linear {
                        params,
                        weight,
                        bias,
                        requant,
                        weight_scale: _,
                        input,
                        output,
                        min,
                        max,
                    } => QLayer::Linear {
                        params: LinearParams { batch, ..*params },
                        weight,
                        bias: Some(bias),
                        q: QuantOutput::new(input.zero_point, output.zero_point, requant)
                            .with_clamp(*min, *max),
                    },
                    QuantLayer::MaxPool2d(p) => QLayer::MaxPool2d {
                        params: Pool2dParams { batch, ..*p },
                        min: -128,
                        max: 127,
                    },
                    QuantLayer::AvgPool2d(p) => QLayer::AvgPool2d {
                        params: Pool2dParams { batch, ..*p },
                        min: -128,
                        max: 127,
                    },
                    &QuantLayer::Clamp { min, max } => QLayer::Clamp { min, max },
                    QuantLayer::Fused => continue,
                    QuantLayer::Push => QLayer::Push,
                    &QuantLayer::Load { depth } => QLayer::Load { depth },
                    QuantLayer::AddPop {
                        kept,
                        current,
                        output,
                        min,
                        max,
                    } => QLayer::AddPop {
                        q: AddParams::from_scales(
                            kept.scale,
                            kept.zero_point,
                            current.scale,
                            current.zero_point,
                            output.scale,
                            output.zero_point,
                        )?
                        .with_clamp(*min, *max),
                    },
                    QuantLayer::CatPop {
                        pixels,
                        kept,
                        current,
                        output,
                    } => QLayer::CatPop {
                        pixels: *pixels,
                        kept: RequantizeParams::from_scales(
                            kept.scale,
                            kept.zero_point,
                            output.scale,
                            output.zero_point,
                        )?,
                        current: RequantizeParams::from_scales(
                            current.scale,
                            current.zero_point,
                            output.scale,
                            output.zero_point,
                        )?,
                    },
                    QuantLayer::Drop => QLayer::Drop,
                },
            ));
        }
        Ok(v)
    }

    /// Logits (dequantised) of normalised NCHW images, one after another: quantised to
    /// the input's scale, made NHWC, run through the int8 network.
    ///
    /// # Errors
    /// [`Error::Invalid`] for no image or a partial one.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        let xq = self.to_nhwc(x, |v| self.input.quantize(v) as i8)?;
        self.run(&xq)
    }

    /// The int8 input of each 8-bit pixel value: normalised as in training
    /// ([`Normalize::table`]), then quantised (so [`Quantized::forward_u8`] equals
    /// [`Quantized::forward`] of the normalised images).
    pub fn input_table(&self) -> [i8; 256] {
        let t = self.norm.table();
        core::array::from_fn(|i| self.input.quantize(t[i]) as i8)
    }

    /// Logits (dequantised) of 8-bit NCHW images, one after another, as a data set or
    /// [`crate::pixels`] holds them.
    ///
    /// # Errors
    /// [`Error::Invalid`] for no image or a partial one.
    pub fn forward_u8(&self, pixels: &[u8]) -> Result<Vec<f32>> {
        let table = self.input_table();
        let xq = self.to_nhwc(pixels, |p| table[usize::from(p)])?;
        self.run(&xq)
    }

    /// NCHW images to int8 NHWC, value by value.
    fn to_nhwc<T: Copy>(&self, x: &[T], q: impl Fn(T) -> i8) -> Result<Vec<i8>> {
        let (c, h, w) = self.shape;
        let per = c * h * w;
        if x.is_empty() || !x.len().is_multiple_of(per) {
            return Err(Error::invalid(format!(
                "a whole number of {per}-value images, at least one"
            )));
        }
        let mut xq = vec![0i8; x.len()];
        for (img, out) in x.chunks_exact(per).zip(xq.chunks_exact_mut(per)) {
            for ci in 0..c {
                for y in 0..h * w {
                    out[y * c + ci] = q(img[ci * h * w + y]);
                }
            }
        }
        Ok(xq)
    }

    /// The int8 network on NHWC images; the logits dequantised.
    fn run(&self, xq: &[i8]) -> Result<Vec<f32>> {
        crate::detect_cpu();
        let (c, h, w) = self.shape;
        let n = xq.len() / (c * h * w);
        let layers = self.qlayers(n)?;
        let net = QNetwork::new(&layers)?;
        crate::budget::check(
            &format!("the int8 network for {n} image(s)"),
            net_bytes(&net),
        )?;
        let mut arena = vec![0i8; net.arena_len()];
        let mut scratch = vec![0i16; net.scratch_len()];
        let yq = net.run(xq, &mut arena, &mut scratch)?;
        let mut y = vec![0.0f32; yq.len()];
        k::dequantize_s8(yq, self.output.scale, self.output.zero_point, &mut y)?;
        Ok(y)
    }

    /// Bytes [`Quantized::forward_u8`] allocates for a batch of `batch` images (the
    /// int8 input, arena and scratch, the logits).
    ///
    /// # Errors
    /// For a batch of 0.
    pub fn workspace_bytes(&self, batch: usize) -> Result<u64> {
        let layers = self.qlayers(batch)?;
        Ok(net_bytes(&QNetwork::new(&layers)?))
    }

    /// Bytes of the weights and biases: `(int8, f32)`, the int8 model's (one byte a
    /// weight, four a bias) and the f32 model's it was made from (batch norm folded).
    pub fn weight_bytes(&self) -> (usize, usize) {
        let (mut w, mut b) = (0, 0);
        for l in &self.layers {
            if let QuantLayer::Conv2d { weight, bias, .. }
            | QuantLayer::Linear { weight, bias, .. } = l
            {
                w += weight.len();
                b += bias.len();
            }
        }
        (w + 4 * b, 4 * (w + b))
    }

    /// Logits per image.
    pub fn outputs(&self) -> usize {
        self.qlayers(1)
            .ok()
            .and_then(|l| QNetwork::new(&l).ok().map(|n| n.output_len()))
            .unwrap_or(0)
    }
}

/// `n` images of `split`, evenly spaced over it (image `i * len / n`), normalised by
/// `norm`, one after another: the calibration input of [`Quantized::new`] for a model
/// of `per` inputs.
///
/// # Errors
/// [`Error::Invalid`] for images that do not fit the model, `n` of 0 or more than the
/// split holds, or more than the memory budget.
pub fn calibration_images(
    split: &crate::data::Split,
    norm: Normalize,
    per: usize,
    n: usize,
) -> Result<Vec<f32>> {
    if split.pixels() != per {
        return Err(Error::invalid(format!(
            "images of {} do not fit the model's {per} inputs",
            split.shape()
        )));
    }
    if n == 0 || n > split.len() {
        return Err(Error::invalid(format!(
            "{n} calibration images: the training split holds {}",
            split.len()
        )));
    }
    crate::budget::check(
        &format!("{n} calibration images"),
        (n as u64).saturating_mul(per as u64 * 4),
    )?;
    let table = norm.table();
    let mut x = vec![0.0f32; n * per];
    for (i, dst) in x.chunks_exact_mut(per).enumerate() {
        crate::data::normalize_into(&table, split.image(i * split.len() / n), dst);
    }
    Ok(x)
}

/// Bytes a run of `net` allocates: the int8 input, arena and scratch, the logits.
fn net_bytes(net: &QNetwork<'_>) -> u64 {
    (net.input_len() + net.arena_len() + 2 * net.scratch_len() + 4 * net.output_len()) as u64
}

/// Refuses the exported layers that have no int8 form.
pub(crate) fn check_int8_form(layers: &[NetLayer]) -> Result<()> {
    for (i, l) in layers.iter().enumerate() {
        match *l {
            NetLayer::Act(Elementwise::Relu | Elementwise::Relu6) => {}
            NetLayer::Act(a) => {
                return Err(Error::invalid(format!(
                    "layer {i}: {} has no int8 kernel yet (ReLU and ReLU6 have: a clamp)",
                    a.name()
                )));
            }
            NetLayer::AvgPool2d { params: p, .. }
                if p.pad_top + p.pad_bottom + p.pad_left + p.pad_right > 0 =>
            {
                return Err(Error::invalid(format!(
                    "layer {i}: int8 average pooling with padding divides as TFLite \
                     does (by the pixels inside), not as the model was trained"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// For each exported layer, the activation it is if the layer before takes it as its
/// clamp: a ReLU or ReLU6 right after a convolution, a linear layer or a residual sum
/// (the block's input forgotten between them or not).
pub(crate) fn fused_activations(layers: &[NetLayer]) -> Vec<Option<Elementwise>> {
    let mut v = vec![None; layers.len()];
    for i in 1..layers.len() {
        let before = layers[..i]
            .iter()
            .rev()
            .find(|l| !matches!(l, NetLayer::Drop));
        if let NetLayer::Act(a @ (Elementwise::Relu | Elementwise::Relu6)) = layers[i]
            && matches!(
                before,
                Some(NetLayer::Conv2d { .. } | NetLayer::Linear { .. } | NetLayer::AddPop)
            )
        {
            v[i] = Some(a);
        }
    }
    v
}

/// The activation layer `i` takes as its clamp, and where it is (after layer `i` and
/// the block inputs forgotten after it).
fn fused_after(
    layers: &[NetLayer],
    fused: &[Option<Elementwise>],
    i: usize,
) -> Option<(usize, Elementwise)> {
    let k = i
        + 1
        + layers[i + 1..]
            .iter()
            .take_while(|l| matches!(l, NetLayer::Drop))
            .count();
    fused.get(k).copied().flatten().map(|a| (k, a))
}

/// The int8 clamp of a ReLU (from the zero point) or ReLU6 (to the value of 6) on a
/// tensor quantised by `q`.
pub(crate) fn act_clamp(a: Elementwise, q: TensorQuant) -> (i8, i8) {
    let min = q.zero_point as i8;
    match a {
        Elementwise::Relu6 => (min, q.quantize(6.0) as i8),
        _ => (min, 127),
    }
}

/// The tighter of two clamps.
fn tighter(a: (i8, i8), b: (i8, i8)) -> (i8, i8) {
    (a.0.max(b.0), a.1.min(b.1))
}

/// The clamp of a convolution's or linear layer's fused activation.
fn conv_clamp(act: Activation, out: TensorQuant, layer: usize) -> Result<(i8, i8)> {
    match act {
        Activation::None => Ok((-128, 127)),
        Activation::Relu => Ok((out.zero_point as i8, 127)),
        other => Err(Error::invalid(format!(
            "layer {layer}: the clamp {other:?} has no int8 form yet"
        ))),
    }
}

/// Every exported layer's output range over the calibration images (`per` values each),
/// the input's first: the f32 layers run one at a time, the kept values of blocks on a
/// stack.
fn calibrate(e: &Export, per: usize, calibration: &[f32]) -> Result<Vec<(f32, f32)>> {
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); e.layers.len() + 1];
    // one network per sized layer (to see every layer's output), built once
    let mut ones = Vec::with_capacity(e.layers.len());
    let mut at = 0;
    for l in &e.layers {
        let n = l.param_len()?;
        ones.push(if l.is_block_op() || matches!(l, NetLayer::Act(_)) {
            None
        } else {
            let one = Network::new(core::slice::from_ref(l))?;
            Some((one, at, vec![0.0f32; one.arena_len()]))
        });
        at += n;
    }
    let mut x = Vec::new();
    let mut kept: Vec<Vec<f32>> = Vec::new();
    for image in calibration.chunks_exact(per) {
        x.clear();
        x.extend_from_slice(image);
        widen(&mut ranges[0], &x)?;
        for (i, l) in e.layers.iter().enumerate() {
            let lost = || Error::invalid(format!("layer {i}: a block takes back nothing kept"));
            match (l, &mut ones[i]) {
                (_, Some((one, off, arena))) => {
                    let y = one.run(&e.params[*off..*off + one.param_len()], &x, arena)?;
                    x.clear();
                    x.extend_from_slice(y);
                }
                (NetLayer::Act(a), None) => a.forward_inplace(&mut x)?,
                (NetLayer::Push, _) => kept.push(x.clone()),
                (NetLayer::Load { depth }, _) => {
                    let k = kept.len().checked_sub(1 + usize::from(*depth));
                    x.clone_from(k.and_then(|k| kept.get(k)).ok_or_else(lost)?);
                }
                (NetLayer::AddPop, _) => {
                    let k = kept.pop().ok_or_else(lost)?;
                    for (a, b) in x.iter_mut().zip(&k) {
                        *a += b;
                    }
                }
                // (one image, NCHW: the kept value's channels first)
                (NetLayer::CatPop, _) => {
                    let mut k = kept.pop().ok_or_else(lost)?;
                    k.extend_from_slice(&x);
                    x = k;
                }
                (NetLayer::Drop, _) => {
                    kept.pop().ok_or_else(lost)?;
                }
                _ => {}
            }
            widen(&mut ranges[i + 1], &x)?;
        }
    }
    Ok(ranges)
}

/// The quantisation and `(c, h, w)` of the current activation and of the values kept
/// for blocks, followed through the layers (by the quantiser and the loader alike).
pub(crate) struct Walk {
    /// The current activation's quantisation.
    pub(crate) cur: TensorQuant,
    /// Its shape (a flat value: `(n, 1, 1)`).
    pub(crate) image: (usize, usize, usize),
    kept: Vec<(TensorQuant, (usize, usize, usize))>,
}

impl Walk {
    /// At the input.
    pub(crate) fn new(input: TensorQuant, shape: (usize, usize, usize)) -> Self {
        Self {
            cur: input,
            image: shape,
            kept: Vec::new(),
        }
    }

    /// The block operation `l` (`Push`, `Load`, `AddPop`, `CatPop` or `Drop`): a join's
    /// output quantised by `out` with `clamp`.
    pub(crate) fn block(
        &mut self,
        l: &NetLayer,
        out: TensorQuant,
        clamp: (i8, i8),
    ) -> Result<QuantLayer> {
        let lost = || Error::invalid("a block takes back a value never kept");
        Ok(match *l {
            NetLayer::Push => {
                self.kept.push((self.cur, self.image));
                QuantLayer::Push
            }
            NetLayer::Load { depth } => {
                let k = self.kept.len().checked_sub(1 + usize::from(depth));
                (self.cur, self.image) = *k.and_then(|k| self.kept.get(k)).ok_or_else(lost)?;
                QuantLayer::Load { depth }
            }
            NetLayer::AddPop => {
                let (kept, _) = self.kept.pop().ok_or_else(lost)?;
                let current = std::mem::replace(&mut self.cur, out);
                QuantLayer::AddPop {
                    kept,
                    current,
                    output: out,
                    min: clamp.0,
                    max: clamp.1,
                }
            }
            NetLayer::CatPop => {
                let (kept, (kc, _, _)) = self.kept.pop().ok_or_else(lost)?;
                let current = std::mem::replace(&mut self.cur, out);
                self.image.0 += kc;
                QuantLayer::CatPop {
                    pixels: self.image.1 * self.image.2,
                    kept,
                    current,
                    output: out,
                }
            }
            NetLayer::Drop => {
                self.kept.pop().ok_or_else(lost)?;
                QuantLayer::Drop
            }
            _ => return Err(Error::invalid("internal error: not a block operation")),
        })
    }
}

/// Widens `range` to hold every value of `x`.
fn widen(range: &mut (f32, f32), x: &[f32]) -> Result<()> {
    for &v in x {
        if !v.is_finite() {
            return Err(Error::invalid(
                "calibration: a value that is not finite (the model diverged?)",
            ));
        }
        range.0 = range.0.min(v);
        range.1 = range.1.max(v);
    }
    Ok(())
}
