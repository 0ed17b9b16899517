//! int8 inference through a fixed sequence of layers (TFLite's scheme, NHWC), in memory
//! the caller provides: the int8 counterpart of [`crate::net::Network`].
//!
//! Each [`QLayer`] holds its geometry and references to its data (int8 weights, int32
//! bias, the per-channel requantisation of [`QuantOutput`]), so that a firmware keeps them
//! all in flash as `static` arrays; [`QNetwork::new`] is a `const fn` that checks the layers
//! and sizes the arena and the scratch:
//!
//! ```
//! use cnnkit_kernels::qnet::{QLayer, QNetwork};
//! use cnnkit_kernels::{Conv2dParams, LinearParams, Pool2dParams, QuantOutput, Requant};
//!
//! const R: [Requant; 1] = [Requant { multiplier: 1 << 30, shift: -4 }]; // 1/32
//! static W1: [i8; 18] = [1; 18];
//! static W2: [i8; 24] = [2; 24];
//! const LAYERS: [QLayer; 3] = [
//!     QLayer::Conv2d {
//!         params: Conv2dParams::new(1, 1, 6, 6, 2, 3, 3),
//!         weight: &W1,
//!         bias: None,
//!         q: QuantOutput::new(-128, -128, &R).with_clamp(-128, 127),
//!     },
//!     QLayer::MaxPool2d { params: Pool2dParams::new(1, 2, 4, 4, 2, 2), min: -128, max: 127 },
//!     QLayer::Linear {
//!         params: LinearParams::new(1, 8, 3),
//!         weight: &W2,
//!         bias: None,
//!         q: QuantOutput::new(-128, 0, &R),
//!     },
//! ];
//! const NET: QNetwork = match QNetwork::new(&LAYERS) {
//!     Ok(n) => n,
//!     Err(_) => panic!("the layers do not fit together"),
//! };
//! let mut arena = [0i8; NET.arena_len()];
//! let mut scratch = [0i16; NET.scratch_len()];
//! let out = NET.run(&[-128; 36], &mut arena, &mut scratch).unwrap();
//! assert_eq!(out.len(), 3);
//! ```
//!
//! Activations live in one arena, as in [`crate::net::Network`]: a layer reads its input
//! from one end and writes its output at the other. A linear layer reads the layer before
//! as `[batch, in]`: in NHWC a flatten is free, and its weights' columns are in `(h, w, c)`
//! order (a PyTorch model's `(c, h, w)` columns are permuted when it is quantised).

use crate::error::KernelError;
use crate::params::{Conv2dParams, LinearParams, Pool2dParams, add, check_len, ctry, mul};
use crate::qparams::QuantOutput;

/// One layer of a [`QNetwork`]: geometry and references to its data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QLayer<'a> {
    /// [`conv2d_s8`](crate::conv2d_s8): NHWC, OHWI weights, the clamp in `q`.
    Conv2d {
        /// The geometry (its batch is the network's).
        params: Conv2dParams,
        /// `[out, kh, kw, in / groups]`.
        weight: &'a [i8],
        /// One per output channel, at scale `input_scale * weight_scale`.
        bias: Option<&'a [i32]>,
        /// Zero points, requantisation, clamp.
        q: QuantOutput<'a>,
    },
    /// [`fully_connected_s8`](crate::fully_connected_s8) on the layer before read as
    /// `[batch, in]`.
    Linear {
        /// The geometry.
        params: LinearParams,
        /// `[out, in]`.
        weight: &'a [i8],
        /// One per output.
        bias: Option<&'a [i32]>,
        /// Zero points, requantisation, clamp.
        q: QuantOutput<'a>,
    },
    /// [`max_pool2d_s8`](crate::max_pool2d_s8) (input and output share scale and zero
    /// point).
    MaxPool2d {
        /// The geometry.
        params: Pool2dParams,
        /// The clamp's lower end.
        min: i8,
        /// The clamp's upper end.
        max: i8,
    },
    /// [`avg_pool2d_s8`](crate::avg_pool2d_s8).
    AvgPool2d {
        /// The geometry.
        params: Pool2dParams,
        /// The clamp's lower end.
        min: i8,
        /// The clamp's upper end.
        max: i8,
    },
}

/// A layer's sizes, once checked: `(input, output, scratch, batch)`.
const fn io(layer: &QLayer<'_>) -> Result<(usize, usize, usize, usize), KernelError> {
    match *layer {
        QLayer::Conv2d {
            params,
            weight,
            bias,
            q,
        } => {
            let d = ctry!(params.dims());
            ctry!(check_len("weight", d.weight_len, weight.len()));
            if let Some(b) = bias {
                ctry!(check_len("bias", d.bias_len, b.len()));
            }
            ctry!(q.check(params.out_channels));
            let s = ctry!(crate::conv2d_s8_scratch_len(&params));
            Ok((d.input_len, d.output_len, s, params.batch))
        }
        QLayer::Linear {
            params,
            weight,
            bias,
            q,
        } => {
            let (i, w, o) = ctry!(params.lens());
            ctry!(check_len("weight", w, weight.len()));
            if let Some(b) = bias {
                ctry!(check_len("bias", params.out_features, b.len()));
            }
            ctry!(q.check(params.out_features));
            let s = crate::fully_connected_s8_scratch_len(&params);
            Ok((i, o, s, params.batch))
        }
        QLayer::MaxPool2d { params, min, max } | QLayer::AvgPool2d { params, min, max } => {
            let d = ctry!(params.dims());
            if min > max {
                return Err(KernelError::InvalidParameter("clamp: min above max"));
            }
            Ok((d.input_len, d.output_len, 0, params.batch))
        }
    }
}

/// A checked sequence of int8 layers with every size it needs (see the [module
/// docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QNetwork<'a> {
    layers: &'a [QLayer<'a>],
    input_len: usize,
    output_len: usize,
    arena_len: usize,
    scratch_len: usize,
    shared_len: usize,
}

impl<'a> QNetwork<'a> {
    /// Checks every layer (geometry, data lengths, quantisation) and that each takes what
    /// the layer before gives; computes the sizes. A `const fn`: in a `const` item an
    /// error is a compile error.
    ///
    /// # Errors
    /// [`KernelError::ZeroSize`] for no layers; any error of a layer's parameters or data;
    /// [`KernelError::LayerMismatch`] where a layer's input length or batch differs from
    /// what the layer before gives; [`KernelError::Overflow`].
    pub const fn new(layers: &'a [QLayer<'a>]) -> Result<Self, KernelError> {
        if layers.is_empty() {
            return Err(KernelError::ZeroSize("layers"));
        }
        let (input_len, _, _, batch) = ctry!(io(&layers[0]));
        let (mut len, mut arena_len, mut scratch_len) = (input_len, input_len, 0);
        let mut shared_len = input_len;
        let mut i = 0;
        while i < layers.len() {
            let (inp, out, scratch, b) = ctry!(io(&layers[i]));
            if inp != len {
                return Err(KernelError::LayerMismatch {
                    layer: i,
                    what: "input length",
                    expected: inp,
                    actual: len,
                });
            }
            if b != batch {
                return Err(KernelError::LayerMismatch {
                    layer: i,
                    what: "batch",
                    expected: b,
                    actual: batch,
                });
            }
            let pair = ctry!(add(len, out));
            if pair > arena_len {
                arena_len = pair;
            }
            if scratch > scratch_len {
                scratch_len = scratch;
            }
            // (the scratch's 16-bit values, and a byte to align them)
            let with = if scratch > 0 {
                ctry!(add(pair, ctry!(add(ctry!(mul(scratch, 2)), 1))))
            } else {
                pair
            };
            if with > shared_len {
                shared_len = with;
            }
            len = out;
            i += 1;
        }
        Ok(QNetwork {
            layers,
            input_len,
            output_len: len,
            arena_len,
            scratch_len,
            shared_len,
        })
    }

    /// The layers.
    pub const fn layers(&self) -> &'a [QLayer<'a>] {
        self.layers
    }

    /// Elements of the input (the first layer's, batch included).
    pub const fn input_len(&self) -> usize {
        self.input_len
    }

    /// Elements of the output (the last layer's).
    pub const fn output_len(&self) -> usize {
        self.output_len
    }

    /// Bytes of the arena [`QNetwork::run`] needs: the largest input + output of a layer.
    pub const fn arena_len(&self) -> usize {
        self.arena_len
    }

    /// 16-bit elements of the scratch [`QNetwork::run`] needs: the largest any layer's
    /// kernel asks.
    pub const fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// Bytes of the one buffer [`QNetwork::run_shared`] needs: the largest sum of a layer's
    /// input, output and scratch (each layer's scratch lies between its input and its output,
    /// so a layer with a large scratch and small activations shares the room of one with
    /// large activations and none). At most [`QNetwork::arena_len`] + twice
    /// [`QNetwork::scratch_len`] + 1, often much less (LeNet-5: the arena alone).
    pub const fn shared_len(&self) -> usize {
        self.shared_len
    }

    /// As [`QNetwork::run_in_arena`], activations and scratch in one buffer of
    /// [`QNetwork::shared_len`] bytes, the input in place at its start
    /// ([`QNetwork::input_mut`] on it). For the smallest RAM: a firmware's one static.
    ///
    /// # Errors
    /// [`KernelError::ScratchTooSmall`] for a short buffer.
    pub fn run_shared<'m>(&self, buf: &'m mut [i8]) -> Result<&'m mut [i8], KernelError> {
        if buf.len() < self.shared_len {
            return Err(KernelError::ScratchTooSmall {
                needed: self.shared_len,
                actual: buf.len(),
            });
        }
        let n = buf.len();
        let (mut len, mut front) = (self.input_len, true);
        for layer in self.layers {
            let (_, out, scratch, _) = io(layer)?;
            // input at one end, output at the other, the scratch between them
            let (x, mid, y) = if front {
                let (a, b) = buf.split_at_mut(len);
                let (m, y) = b.split_at_mut(b.len() - out);
                (&*a, m, y)
            } else {
                let (a, b) = buf.split_at_mut(n - len);
                let (y, m) = a.split_at_mut(out);
                (&*b, m, y)
            };
            // SAFETY: i8 and i16 are plain integers (every bit pattern is a value);
            // `align_to_mut` gives the aligned middle part, the ends are left unused
            let (_, s, _) = unsafe { mid.align_to_mut::<i16>() };
            if s.len() < scratch {
                return Err(KernelError::ScratchTooSmall {
                    needed: self.shared_len,
                    actual: n,
                });
            }
            run_layer(layer, x, y, &mut s[..scratch])?;
            len = out;
            front = !front;
        }
        Ok(if front {
            &mut buf[..len]
        } else {
            &mut buf[n - len..]
        })
    }

    /// Runs the layers on `input` (NHWC int8 at the first layer's input quantisation) in
    /// `arena`, and returns the output (a slice of the arena). Nothing is allocated.
    ///
    /// # Errors
    /// [`KernelError::LengthMismatch`] for an input of the wrong length,
    /// [`KernelError::ScratchTooSmall`] for a short arena or scratch.
    pub fn run<'m>(
        &self,
        input: &[i8],
        arena: &'m mut [i8],
        scratch: &mut [i16],
    ) -> Result<&'m mut [i8], KernelError> {
        check_len("input", self.input_len, input.len())?;
        self.input_mut(arena)?.copy_from_slice(input);
        self.run_in_arena(arena, scratch)
    }

    /// Where [`QNetwork::run_in_arena`] reads its input: the arena's first
    /// [`QNetwork::input_len`] bytes (so a caller can quantise straight into it).
    ///
    /// # Errors
    /// [`KernelError::ScratchTooSmall`] for a short arena.
    pub fn input_mut<'m>(&self, arena: &'m mut [i8]) -> Result<&'m mut [i8], KernelError> {
        if arena.len() < self.arena_len {
            return Err(KernelError::ScratchTooSmall {
                needed: self.arena_len,
                actual: arena.len(),
            });
        }
        Ok(&mut arena[..self.input_len])
    }

    /// As [`QNetwork::run`], the input already in place ([`QNetwork::input_mut`]).
    ///
    /// # Errors
    /// [`KernelError::ScratchTooSmall`] for a short arena or scratch.
    pub fn run_in_arena<'m>(
        &self,
        arena: &'m mut [i8],
        scratch: &mut [i16],
    ) -> Result<&'m mut [i8], KernelError> {
        for (needed, actual) in [
            (self.arena_len, arena.len()),
            (self.scratch_len, scratch.len()),
        ] {
            if actual < needed {
                return Err(KernelError::ScratchTooSmall { needed, actual });
            }
        }
        let n = arena.len();
        let (mut len, mut front) = (self.input_len, true);
        for layer in self.layers {
            let (_, out, _, _) = io(layer)?;
            // `new` checked len + out <= arena_len <= n: the two never overlap
            let (x, y) = if front {
                let (a, b) = arena.split_at_mut(n - out);
                (&a[..len], b)
            } else {
                let (a, b) = arena.split_at_mut(out);
                (&b[b.len() - len..], a)
            };
            run_layer(layer, x, y, scratch)?;
            len = out;
            front = !front;
        }
        Ok(if front {
            &mut arena[..len]
        } else {
            &mut arena[n - len..]
        })
    }
}

/// One layer from `x` to `y`.
fn run_layer(
    layer: &QLayer<'_>,
    x: &[i8],
    y: &mut [i8],
    scratch: &mut [i16],
) -> Result<(), KernelError> {
    match *layer {
        QLayer::Conv2d {
            params,
            weight,
            bias,
            q,
        } => crate::conv2d_s8(&params, &q, x, weight, bias, y, scratch),
        QLayer::Linear {
            params,
            weight,
            bias,
            q,
        } => crate::fully_connected_s8(&params, &q, x, weight, bias, y, scratch),
        QLayer::MaxPool2d { params, min, max } => crate::max_pool2d_s8(&params, min, max, x, y),
        QLayer::AvgPool2d { params, min, max } => crate::avg_pool2d_s8(&params, min, max, x, y),
    }
}
