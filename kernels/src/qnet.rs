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
//!
//! # Blocks
//!
//! Residual and concatenation blocks run as in [`crate::net`]: [`QLayer::Push`] keeps a
//! block's input at the front of the arena, [`QLayer::Load`] brings it back for the next
//! branch, [`QLayer::AddPop`] (TFLite's `ADD`, [`add_s8`](crate::add_s8): each input at
//! its own scale) or [`QLayer::CatPop`] (channels concatenated pixel by pixel, each part
//! requantised to the output's scale, as TFLite's concatenation with scaling) joins, and
//! [`QLayer::Drop`] forgets. `res[A]` is `Push, A.., AddPop`. [`QNetwork::new`] sizes the
//! arena for the kept values, at most [`MAX_KEPT`] at once. [`QLayer::Clamp`] is an
//! activation (ReLU, ReLU6) in place where no layer before can take it as its clamp.

use crate::error::KernelError;
use crate::int8::quantize::{add_one, requantize_one};
pub use crate::net::MAX_KEPT;
use crate::net::{BlockStep, Kept};
use crate::params::{Conv2dParams, LinearParams, Pool2dParams, add, check_len, ctry, mul};
use crate::qparams::{AddParams, QuantOutput, RequantizeParams};

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
    /// Clamps the current activation to `[min, max]` in place, its quantisation kept (a
    /// ReLU: `min` the zero point; a ReLU6: `max` the value of 6 too).
    Clamp {
        /// The clamp's lower end.
        min: i8,
        /// The clamp's upper end.
        max: i8,
    },
    /// Keeps a copy of the current activation for later: a block's input (see
    /// [Blocks](self#blocks)).
    Push,
    /// Makes a copy of the value kept `depth` pushes ago (0: the last) the current
    /// activation: the start of a block's next branch.
    Load {
        /// How many values were kept after it.
        depth: u8,
    },
    /// `add_s8(q, kept, current)`: the last kept value (`a` of `q`) plus the current
    /// activation (`b`), and forgets the kept one: the end of a residual block.
    AddPop {
        /// The scales, zero points and clamp (`a`: the kept value).
        q: AddParams,
    },
    /// Pixel by pixel, the last kept value's channels then the current activation's
    /// (NHWC channels concatenated), each requantised to the output's quantisation; the
    /// kept value forgotten.
    CatPop {
        /// Pixels of one sample (`h * w`; 1 for flat values).
        pixels: usize,
        /// The kept value to the output's quantisation.
        kept: RequantizeParams,
        /// The current activation to the output's quantisation.
        current: RequantizeParams,
    },
    /// Forgets the last kept value.
    Drop,
}

impl QLayer<'_> {
    /// Whether it is one of the block operations ([`QLayer::Push`], ...).
    pub const fn is_block_op(&self) -> bool {
        matches!(
            self,
            QLayer::Push
                | QLayer::Load { .. }
                | QLayer::AddPop { .. }
                | QLayer::CatPop { .. }
                | QLayer::Drop
        )
    }
}

/// A layer's sizes, once checked: `(input, output, scratch, batch)`; an input of 0 for
/// the block operations and the in-place clamp (whatever the layer before gives).
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
        QLayer::Clamp { min, max } => {
            if min > max {
                return Err(KernelError::InvalidParameter("clamp: min above max"));
            }
            Ok((0, 0, 0, 0))
        }
        QLayer::AddPop { q } => {
            ctry!(q.check());
            Ok((0, 0, 0, 0))
        }
        QLayer::CatPop {
            pixels,
            kept,
            current,
        } => {
            if pixels == 0 {
                return Err(KernelError::ZeroSize("pixels of a concatenation"));
            }
            ctry!(kept.check());
            ctry!(current.check());
            Ok((0, 0, 0, 0))
        }
        QLayer::Push | QLayer::Load { .. } | QLayer::Drop => Ok((0, 0, 0, 0)),
    }
}

/// A checked sequence of int8 layers with every size it needs (see the [module
/// docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QNetwork<'a> {
    layers: &'a [QLayer<'a>],
    /// Whether a layer is a block operation or a clamp (else their code is left out of
    /// the run: a firmware's network is a `const`, and the choice folds away with the
    /// code it does not take).
    blocks: bool,
    batch: usize,
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
    /// [`KernelError::ZeroSize`] for no layer with a size of its own (clamps and block
    /// operations before the first one take its input's), or a concatenation before it;
    /// any error of a layer's parameters or data; [`KernelError::LayerMismatch`] where a
    /// layer's input length or batch differs from what the layer before gives, or a kept
    /// value does not fit what takes it back; [`KernelError::InvalidParameter`] for more
    /// than [`MAX_KEPT`] values kept at once, a value taken back that was not kept, or one
    /// kept and never taken back; [`KernelError::Overflow`].
    pub const fn new(layers: &'a [QLayer<'a>]) -> Result<Self, KernelError> {
        if layers.is_empty() {
            return Err(KernelError::ZeroSize("layers"));
        }
        // the first layer with sizes of its own gives the input (as in `net::Network`)
        let mut f = 0;
        while f < layers.len() && ctry!(io(&layers[f])).0 == 0 {
            if let QLayer::CatPop { .. } = layers[f] {
                return Err(KernelError::ZeroSize("the input before a concatenation"));
            }
            f += 1;
        }
        if f == layers.len() {
            return Err(KernelError::ZeroSize("the first layer's input"));
        }
        let (input_len, _, _, batch) = ctry!(io(&layers[f]));
        let (mut len, mut arena_len, mut scratch_len) = (input_len, input_len, 0);
        let mut shared_len = input_len;
        let mut kept = Kept::new();
        let mut blocks = false;
        let mut i = 0;
        while i < layers.len() {
            let (inp, out, scratch, b) = ctry!(io(&layers[i]));
            blocks |= inp == 0;
            // what the arena holds during a block operation: the kept values, the current
            // activation at the back and a copy or result at the front
            let step = match layers[i] {
                QLayer::Push => Some(BlockStep::Push),
                QLayer::Load { depth } => Some(BlockStep::Load(depth)),
                QLayer::AddPop { .. } => Some(BlockStep::Add),
                QLayer::CatPop { pixels, .. } => Some(BlockStep::Cat(ctry!(mul(batch, pixels)))),
                QLayer::Drop => Some(BlockStep::Drop),
                _ => None,
            };
            let need = match step {
                Some(op) => {
                    let (k, l, need) = ctry!(kept.step(i, op, len));
                    (kept, len) = (k, l);
                    need
                }
                None => 0,
            };
            if need > arena_len {
                arena_len = need;
            }
            if need > shared_len {
                shared_len = need;
            }
            if inp != 0 {
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
                let pair = ctry!(add(ctry!(add(kept.top, len)), out));
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
            }
            i += 1;
        }
        if kept.n != 0 {
            return Err(KernelError::InvalidParameter(
                "values kept (Push) and never taken back",
            ));
        }
        Ok(QNetwork {
            layers,
            blocks,
            batch,
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

    /// Bytes of the arena [`QNetwork::run`] needs: the largest input + output of a layer,
    /// with the values kept for blocks.
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
    /// large activations and none), with the values kept for blocks. At most
    /// [`QNetwork::arena_len`] + twice [`QNetwork::scratch_len`] + 1, often much less
    /// (LeNet-5: the arena alone).
    pub const fn shared_len(&self) -> usize {
        self.shared_len
    }

    /// As [`QNetwork::run_in_arena`], activations and scratch in one buffer of
    /// [`QNetwork::shared_len`] bytes, the input in place at its start
    /// ([`QNetwork::input_mut`] on it). For the smallest RAM: a firmware's one static.
    ///
    /// # Errors
    /// [`KernelError::ScratchTooSmall`] for a short buffer.
    #[inline]
    pub fn run_shared<'m>(&self, buf: &'m mut [i8]) -> Result<&'m mut [i8], KernelError> {
        if buf.len() < self.shared_len {
            return Err(KernelError::ScratchTooSmall {
                needed: self.shared_len,
                actual: buf.len(),
            });
        }
        if self.blocks {
            self.exec::<true>(buf, None)
        } else {
            self.exec::<false>(buf, None)
        }
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
        if self.blocks {
            self.exec::<true>(arena, Some(scratch))
        } else {
            self.exec::<false>(arena, Some(scratch))
        }
    }

    /// The layers in `arena` (the input at its front): the current activation at the
    /// front (after the kept values) or at the back, each layer's output at the other end;
    /// the scratch given, or (`None`) in the room between a layer's input and output.
    /// `BLOCKS`: whether the layers have block operations or clamps (without, their code
    /// is not compiled in).
    fn exec<'m, const BLOCKS: bool>(
        &self,
        arena: &'m mut [i8],
        mut scratch: Option<&mut [i16]>,
    ) -> Result<&'m mut [i8], KernelError> {
        let n = arena.len();
        let (mut len, mut front) = (self.input_len, true);
        let mut kept = Kept::new();
        for layer in self.layers {
            // `new` sized the arena for each of these moves (see its `need`)
            let s = kept.top;
            if !BLOCKS && (layer.is_block_op() || matches!(layer, QLayer::Clamp { .. })) {
                return Err(KernelError::InvalidParameter(
                    "a block operation in a network checked without",
                ));
            }
            match *layer {
                QLayer::Push => {
                    if front {
                        // it is where the kept copy goes: the current one to the back
                        arena.copy_within(s..s + len, n - len);
                    } else {
                        arena.copy_within(n - len..n, s);
                    }
                    kept = kept.push(len)?;
                    front = false;
                    continue;
                }
                QLayer::Load { depth } => {
                    let (off, l) = kept
                        .at(depth as usize)
                        .ok_or(KernelError::InvalidParameter("Load of a value not kept"))?;
                    arena.copy_within(off..off + l, n - l);
                    (len, front) = (l, false);
                    continue;
                }
                QLayer::AddPop { q } => {
                    let (off, l) = kept
                        .at(0)
                        .ok_or(KernelError::InvalidParameter("nothing kept"))?;
                    let (a, b) = arena.split_at_mut(s);
                    let k = &mut a[off..off + l];
                    if front {
                        // the sum over the kept value: where the front is once it is gone
                        for (x, &y) in k.iter_mut().zip(&b[..len]) {
                            *x = add_one(&q, *x, y);
                        }
                    } else {
                        let bl = b.len();
                        for (y, &x) in b[bl - len..].iter_mut().zip(&*k) {
                            *y = add_one(&q, x, *y);
                        }
                    }
                    kept = kept.pop();
                    continue;
                }
                QLayer::CatPop {
                    pixels,
                    kept: rk,
                    current: rc,
                } => {
                    let (off, l) = kept
                        .at(0)
                        .ok_or(KernelError::InvalidParameter("nothing kept"))?;
                    if front {
                        arena.copy_within(s..s + len, n - len);
                    }
                    // pixel by pixel from the last, each kept part moved right to its place
                    // (never over a kept value not yet moved), then the current part
                    let p = self.batch.max(1) * pixels;
                    let (ck, cc) = (l / p, len / p);
                    let (same_k, same_c) = (is_identity(&rk), is_identity(&rc));
                    for px in (0..p).rev() {
                        let dst = off + px * (ck + cc);
                        let src = off + px * ck;
                        if same_k {
                            arena.copy_within(src..src + ck, dst);
                        } else {
                            for c in (0..ck).rev() {
                                arena[dst + c] = requantize_one(&rk, arena[src + c]);
                            }
                        }
                        let src = n - len + px * cc;
                        if same_c {
                            arena.copy_within(src..src + cc, dst + ck);
                        } else {
                            for c in 0..cc {
                                arena[dst + ck + c] = requantize_one(&rc, arena[src + c]);
                            }
                        }
                    }
                    kept = kept.pop();
                    (len, front) = (l + len, true);
                    continue;
                }
                QLayer::Drop => {
                    kept = kept.pop();
                    if front {
                        arena.copy_within(s..s + len, kept.top);
                    }
                    continue;
                }
                QLayer::Clamp { min, max } => {
                    let x = if front {
                        &mut arena[s..s + len]
                    } else {
                        &mut arena[n - len..]
                    };
                    for v in x {
                        *v = (*v).max(min).min(max);
                    }
                    continue;
                }
                _ => {}
            }
            let (_, out, need, _) = io(layer)?;
            // input at one end, output at the other, the room between them (`new` checked
            // top + len + out <= arena_len <= n: they never overlap)
            let (x, mid, y) = if front {
                let (a, b) = arena.split_at_mut(n - out);
                let (x, m) = a[s..].split_at_mut(len);
                (&*x, m, b)
            } else {
                let (a, b) = arena.split_at_mut(n - len);
                let (y, m) = a[s..].split_at_mut(out);
                (&*b, m, y)
            };
            match scratch.as_deref_mut() {
                Some(sc) => run_layer(layer, x, y, sc)?,
                None => {
                    // SAFETY: i8 and i16 are plain integers (every bit pattern is a value);
                    // `align_to_mut` gives the aligned middle part, the ends are left unused
                    let (_, sc, _) = unsafe { mid.align_to_mut::<i16>() };
                    if sc.len() < need {
                        return Err(KernelError::ScratchTooSmall {
                            needed: self.shared_len,
                            actual: n,
                        });
                    }
                    run_layer(layer, x, y, &mut sc[..need])?;
                }
            }
            len = out;
            front = !front;
        }
        // (nothing is kept at the end: `new` checked it)
        Ok(if front {
            &mut arena[..len]
        } else {
            &mut arena[n - len..]
        })
    }
}

/// Whether `q` maps every value to itself (the same scale and zero point).
fn is_identity(q: &RequantizeParams) -> bool {
    // (`Requant::from_real(1.0)`, written out: no f64 arithmetic in every run)
    const ONE: crate::Requant = crate::Requant {
        multiplier: 1 << 30,
        shift: 1,
    };
    q.input_zero_point == q.output_zero_point && q.requant == ONE
}

/// One sized layer from `x` to `y`.
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
        _ => Ok(()),
    }
}
