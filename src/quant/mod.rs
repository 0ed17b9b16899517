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
    self as k, Activation, Conv2dParams, LinearParams, Pool2dParams, QuantOutput, Requant,
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
    },
    /// Max pooling (the input's quantisation).
    MaxPool2d(Pool2dParams),
    /// Average pooling without padding (TFLite's divides by the pixels inside the image,
    /// PyTorch's default by the whole window: they agree only without padding).
    AvgPool2d(Pool2dParams),
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
        // every layer's output range over the calibration images (the input's first)
        let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); e.layers.len() + 1];
        // one network per layer (to see every layer's output), built once
        let mut offsets = Vec::with_capacity(e.layers.len());
        let mut ones = Vec::with_capacity(e.layers.len());
        let mut at = 0;
        for l in &e.layers {
            let one = Network::new(core::slice::from_ref(l))?;
            offsets.push(at);
            at += one.param_len();
            ones.push(one);
        }
        let mut arenas: Vec<Vec<f32>> = ones.iter().map(|n| vec![0.0; n.arena_len()]).collect();
        let mut x = Vec::new();
        for image in calibration.chunks_exact(per) {
            x.clear();
            x.extend_from_slice(image);
            widen(&mut ranges[0], &x)?;
            for (i, one) in ones.iter().enumerate() {
                let p = &e.params[offsets[i]..offsets[i] + one.param_len()];
                let y = one.run(p, &x, &mut arenas[i])?;
                widen(&mut ranges[i + 1], y)?;
                x.clear();
                x.extend_from_slice(y);
            }
        }
        let shape = match model.input_shape() {
            crate::layers::Shape::Image { c, h, w } => (c, h, w),
            crate::layers::Shape::Flat(n) => (n, 1, 1),
        };
        let input = TensorQuant::from_range(ranges[0].0, ranges[0].1);
        let mut cur = input;
        // the (c, h, w) of the activation before a linear layer, while it is an image
        let mut image = Some(shape);
        let mut layers = Vec::with_capacity(e.layers.len());
        for (i, l) in e.layers.iter().enumerate() {
            let p = &e.params[offsets[i]..];
            match *l {
                NetLayer::Conv2d { params, bias, act } => {
                    let d = params.dims()?;
                    let out = TensorQuant::from_range(ranges[i + 1].0, ranges[i + 1].1);
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
                    let (bq, rq) = bias_and_requant(b, cur.scale, &sw, out.scale)?;
                    layers.push(QuantLayer::Conv2d {
                        params,
                        weight: ohwi,
                        bias: bq,
                        weight_scale: sw,
                        requant: rq,
                        input: cur,
                        output: out,
                        min: clamp_min(act, out, i)?,
                    });
                    image = Some((params.out_channels, d.out_h, d.out_w));
                    cur = out;
                }
                NetLayer::Linear { params, bias, act } => {
                    let (_, wl, _) = params.lens()?;
                    let out = TensorQuant::from_range(ranges[i + 1].0, ranges[i + 1].1);
                    let (mut wq, sw) = quantize_weights(&p[..wl], params.out_features);
                    if let Some((c, h, w)) = image.filter(|&(_, h, w)| h * w > 1) {
                        // (c, h, w) columns to (h, w, c)
                        let n = params.in_features;
                        for row in wq.chunks_exact_mut(n) {
                            let src = row.to_vec();
                            for ci in 0..c {
                                for y in 0..h * w {
                                    row[y * c + ci] = src[ci * h * w + y];
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
                    let (bq, rq) = bias_and_requant(b, cur.scale, &sw, out.scale)?;
                    layers.push(QuantLayer::Linear {
                        params,
                        weight: wq,
                        bias: bq,
                        weight_scale: sw,
                        requant: rq,
                        input: cur,
                        output: out,
                        min: clamp_min(act, out, i)?,
                    });
                    image = None;
                    cur = out;
                }
                NetLayer::MaxPool2d(params) => {
                    let d = params.dims()?;
                    image = Some((params.channels, d.out_h, d.out_w));
                    layers.push(QuantLayer::MaxPool2d(params));
                }
                NetLayer::AvgPool2d { params, .. } => {
                    let d = params.dims()?;
                    image = Some((params.channels, d.out_h, d.out_w));
                    layers.push(QuantLayer::AvgPool2d(params));
                }
                // (refused above)
                NetLayer::Act(_)
                | NetLayer::Push
                | NetLayer::Load { .. }
                | NetLayer::AddPop
                | NetLayer::CatPop
                | NetLayer::Drop => {}
            }
        }
        let q = Quantized {
            layers,
            input,
            output: cur,
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

    /// The [`QLayer`]s for a batch of `batch` images, pointing into `self`.
    fn qlayers(&self, batch: usize) -> Result<Vec<QLayer<'_>>> {
        let mut v = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            v.push(match l {
                QuantLayer::Conv2d {
                    params,
                    weight,
                    bias,
                    requant,
                    weight_scale: _,
                    input,
                    output,
                    min,
                } => QLayer::Conv2d {
                    params: Conv2dParams { batch, ..*params },
                    weight,
                    bias: Some(bias),
                    q: QuantOutput::new(input.zero_point, output.zero_point, requant)
                        .with_clamp(*min, 127),
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
                } => QLayer::Linear {
                    params: LinearParams { batch, ..*params },
                    weight,
                    bias: Some(bias),
                    q: QuantOutput::new(input.zero_point, output.zero_point, requant)
                        .with_clamp(*min, 127),
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
            });
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
            NetLayer::Act(a) => {
                return Err(Error::invalid(format!(
                    "layer {i}: {} has no int8 kernel yet (only a ReLU fused into a \
                     convolution or linear layer)",
                    a.name()
                )));
            }
            l if l.is_block_op() => {
                return Err(Error::invalid(format!(
                    "layer {i}: int8 models are plain stacks of layers so far, not yet \
                     residual or concatenation blocks"
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

/// The clamp's lower end of a layer's output: its zero point under a fused ReLU.
fn clamp_min(act: Activation, out: TensorQuant, layer: usize) -> Result<i8> {
    match act {
        Activation::None => Ok(-128),
        Activation::Relu => Ok(out.zero_point as i8),
        other => Err(Error::invalid(format!(
            "layer {layer}: the clamp {other:?} has no int8 form yet"
        ))),
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
