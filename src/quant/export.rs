//! An int8 model as Rust source for a firmware: every layer's data as `static` arrays
//! (flash), the layer list, the input table and the output's quantisation.

use std::fmt::Write as _;

use cnnkit_kernels::qnet::{QLayer, QNetwork};
use cnnkit_kernels::{Requant, RequantizeParams};

use super::Quantized;
use crate::error::{Error, Result};
use crate::export::{conv_source, pool_source};

/// How the Rust source of an int8 model begins.
pub const INT8_SOURCE_HEAD: &str = "// Written by `cnnkit export` from an int8 model";

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    let mut s = String::with_capacity(5 * v.len());
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push_str(if i % 32 == 0 { ",\n    " } else { ", " });
        }
        let _ = write!(s, "{x}");
    }
    s
}

impl Quantized {
    /// Rust source, self-contained, for a firmware to `include!` beside
    /// `cnnkit-kernels`: `LAYERS: [QLayer; N]` for a batch of `batch` images, every
    /// layer's weights (`Wj`), biases (`Bj`) and multipliers (`Rj`), `INPUT_TABLE` (an
    /// 8-bit pixel to the int8 input, [`Quantized::input_table`]), `OUTPUT_SCALE` and
    /// `OUTPUT_ZERO_POINT` (to dequantise the logits), `ARENA` (the arena [`QNetwork`]
    /// needs), `INPUT` and `OUTPUT`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a batch of 0; [`Error::Kernel`] if the layers do not fit
    /// together (they always do for a loaded or new model).
    pub fn rust_source(&self, batch: usize) -> Result<String> {
        if batch == 0 {
            return Err(Error::invalid("export needs a batch of at least 1"));
        }
        let layers = self.qlayers_indexed(batch)?;
        let list_only: Vec<QLayer<'_>> = layers.iter().map(|(_, l)| *l).collect();
        let net = QNetwork::new(&list_only)?;
        let mut s = format!(
            "{INT8_SOURCE_HEAD}: the layers, their data and the quantisation of its edges.\n\
             // Model: `{}`, calibrated on {} images.\n\
             #[allow(unused_imports)]\n\
             use cnnkit_kernels::{{AddParams, Conv2dParams, LinearParams, Pool2dParams, QuantOutput, Requant, RequantizeParams, qnet::QLayer}};\n\n",
            self.spec, self.calibration_images
        );
        let mut items = Vec::new();
        let req = |r: &Requant| {
            format!(
                "Requant {{ multiplier: {}, shift: {} }}",
                r.multiplier, r.shift
            )
        };
        for (j, l) in &layers {
            match l {
                QLayer::Conv2d {
                    weight, bias, q, ..
                }
                | QLayer::Linear {
                    weight, bias, q, ..
                } => {
                    let bias = bias.unwrap_or_default();
                    let (what, geometry) = match l {
                        QLayer::Conv2d { params: p, .. } => (
                            "`[out, kh, kw, in / groups]`",
                            format!("QLayer::Conv2d {{ params: {}", conv_source(p)),
                        ),
                        QLayer::Linear { params: p, .. } => (
                            "`[out, in]`",
                            format!(
                                "QLayer::Linear {{ params: LinearParams::new({}, {}, {})",
                                p.batch, p.in_features, p.out_features
                            ),
                        ),
                        _ => unreachable!(),
                    };
                    let _ = writeln!(
                        s,
                        "/// Layer {j}: weights {what}.\npub static W{j}: [i8; {}] = [\n    {}\n];\n\
                         /// Layer {j}: biases.\npub static B{j}: [i32; {}] = [\n    {}\n];\n\
                         /// Layer {j}: requantisation per output channel.\npub const R{j}: [Requant; {}] = [\n    {}\n];\n",
                        weight.len(),
                        list(weight),
                        bias.len(),
                        list(bias),
                        q.requant.len(),
                        list(&q.requant.iter().map(req).collect::<Vec<_>>()),
                    );
                    items.push(format!(
                        "{geometry}, weight: &W{j}, bias: Some(&B{j}), q: QuantOutput::new({}, {}, &R{j}).with_clamp({}, {}) }}",
                        q.input_zero_point, q.output_zero_point, q.min, q.max
                    ));
                }
                QLayer::MaxPool2d { params, min, max } => items.push(format!(
                    "QLayer::MaxPool2d {{ params: {}, min: {min}, max: {max} }}",
                    pool_source(params)
                )),
                QLayer::AvgPool2d { params, min, max } => items.push(format!(
                    "QLayer::AvgPool2d {{ params: {}, min: {min}, max: {max} }}",
                    pool_source(params)
                )),
                QLayer::Clamp { min, max } => {
                    items.push(format!("QLayer::Clamp {{ min: {min}, max: {max} }}"));
                }
                QLayer::Push => items.push("QLayer::Push".into()),
                QLayer::Load { depth } => items.push(format!("QLayer::Load {{ depth: {depth} }}")),
                QLayer::Drop => items.push("QLayer::Drop".into()),
                QLayer::AddPop { q } => items.push(format!(
                    "QLayer::AddPop {{ q: AddParams {{ a_zero_point: {}, b_zero_point: {}, \
                     output_zero_point: {}, a: {}, b: {}, output: {}, min: {}, max: {} }} }}",
                    q.a_zero_point,
                    q.b_zero_point,
                    q.output_zero_point,
                    req(&q.a),
                    req(&q.b),
                    req(&q.output),
                    q.min,
                    q.max
                )),
                QLayer::CatPop {
                    pixels,
                    kept,
                    current,
                } => {
                    let rq = |r: &RequantizeParams| {
                        format!(
                            "RequantizeParams {{ input_zero_point: {}, output_zero_point: {}, \
                             requant: {} }}",
                            r.input_zero_point,
                            r.output_zero_point,
                            req(&r.requant)
                        )
                    };
                    items.push(format!(
                        "QLayer::CatPop {{ pixels: {pixels}, kept: {}, current: {} }}",
                        rq(kept),
                        rq(current)
                    ));
                }
            }
        }
        let _ = writeln!(
            s,
            "/// The layers (batch {batch}).\npub const LAYERS: [QLayer<'static>; {}] = [\n    {}\n];\n",
            items.len(),
            items.join(",\n    ")
        );
        let _ = writeln!(
            s,
            "/// The int8 input of each 8-bit pixel value (normalised by mean {:?} and std {:?}, \
             then quantised).\npub const INPUT_TABLE: [i8; 256] = [\n    {}\n];\n\n\
             /// The logits' scale: `logit = OUTPUT_SCALE * (q - OUTPUT_ZERO_POINT)`.\n\
             pub const OUTPUT_SCALE: f32 = {:?};\n/// The logits' zero point.\n\
             pub const OUTPUT_ZERO_POINT: i32 = {};\n\n\
             /// Int8 elements of the input (NHWC).\npub const INPUT: usize = {};\n\
             /// Int8 elements of the output.\npub const OUTPUT: usize = {};\n\
             /// Bytes of the arena `QNetwork::run` needs (its scratch depends on the \
             target's kernels: `QNetwork::new(&LAYERS)` computes it).\npub const ARENA: usize = {};",
            self.norm.mean,
            self.norm.std,
            list(&self.input_table()),
            self.output.scale,
            self.output.zero_point,
            net.input_len(),
            net.output_len(),
            net.arena_len(),
        );
        Ok(s)
    }
}
