//! Inference through a fixed sequence of layers, in memory the caller provides.
//!
//! A [`Network`] is a list of [`Layer`]s (geometry only) checked once, in a `const fn`,
//! so that a firmware can size its buffers as static arrays at compile time:
//!
//! ```
//! use cnnkit_kernels::net::{Layer, Network};
//! use cnnkit_kernels::{Activation, Conv2dParams, LinearParams, Pool2dParams};
//!
//! const LAYERS: [Layer; 3] = [
//!     Layer::Conv2d { params: Conv2dParams::new(1, 1, 6, 6, 2, 3, 3), bias: true, act: Activation::Relu },
//!     Layer::MaxPool2d(Pool2dParams::new(1, 2, 4, 4, 2, 2)),
//!     Layer::Linear { params: LinearParams::new(1, 8, 3), bias: true, act: Activation::None },
//! ];
//! const NET: Network = match Network::new(&LAYERS) {
//!     Ok(n) => n,
//!     Err(_) => panic!("the layers do not fit together"), // a compile-time error
//! };
//! static PARAMS: [f32; NET.param_len()] = [0.1; NET.param_len()];
//! let mut arena = [0.0_f32; NET.arena_len()]; // or a `static`, or a `.bss` singleton
//! assert_eq!(NET.arena_len(), 36 + 32); // the input and the conv output, side by side
//!
//! let logits = NET.run(&PARAMS, &[1.0; 36], &mut arena).unwrap();
//! assert_eq!(logits.len(), 3);
//! ```
//!
//! # Memory
//!
//! [`Network::run`] needs no scratch: convolutions run [`conv2d_direct`](crate::conv2d_direct)
//! and linear layers [`linear_dot`](crate::linear_dot), neither of which needs one, and
//! activations run in place. Activations live in one *arena*: a layer reads its input from
//! one end and writes its output at the other, so the arena needs the largest sum of a
//! layer's input and output lengths ([`Network::arena_len`]), not one buffer per layer.
//!
//! # Blocks
//!
//! Residual and concatenation blocks run as operations on values kept at the front of
//! the arena, below the two working ends: [`Layer::Push`] keeps the block's input,
//! each branch runs in turn (the input brought back by [`Layer::Load`] for the next,
//! each result but the last kept), [`Layer::AddPop`] or [`Layer::CatPop`] joins the
//! results, and [`Layer::Drop`] forgets the input. `res[A | B]` is
//! `Push, A.., Push, Load { depth: 1 }, B.., AddPop, Drop`. The arena grows by the kept
//! values, and [`Network::new`] sizes it (a `const fn` as before), at most [`MAX_KEPT`]
//! values at once.
//!
//! # Parameters
//!
//! One flat `f32` slice holds every layer's weight then bias, in layer order: the order
//! of PyTorch's `state_dict` for the equivalent `nn.Sequential` with each activation
//! fused into the layer before it. [`Blob`] reads them from bytes in flash.

use crate::error::KernelError;
use crate::params::{Activation, Conv2dParams, LinearParams, Pool2dParams, add, check_len, ctry};

/// One layer of a [`Network`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    /// [`conv2d_direct`](crate::conv2d_direct) with the clamp `act` fused into the store;
    /// parameters: the weight, then the bias if `bias`.
    Conv2d {
        /// The geometry (its batch is the network's).
        params: Conv2dParams,
        /// Whether a bias follows the weight.
        bias: bool,
        /// The fused clamp.
        act: Activation,
    },
    /// [`linear_dot`](crate::linear_dot) with the clamp `act` fused; parameters: the
    /// weight `[out, in]`, then the bias if `bias`. Its input is the previous layer's
    /// output read as `[batch, in]` (a flatten is free in NCHW).
    Linear {
        /// The geometry.
        params: LinearParams,
        /// Whether a bias follows the weight.
        bias: bool,
        /// The fused clamp.
        act: Activation,
    },
    /// [`max_pool2d`](crate::max_pool2d).
    MaxPool2d(Pool2dParams),
    /// [`avg_pool2d`](crate::avg_pool2d).
    AvgPool2d {
        /// The geometry.
        params: Pool2dParams,
        /// Whether padding counts in the divisor (PyTorch's default: true).
        count_include_pad: bool,
    },
    /// An element-wise activation
    /// ([`Elementwise::forward_inplace`](crate::Elementwise::forward_inplace)), in place
    /// on the previous layer's output.
    Act(crate::Elementwise),
    /// Keeps a copy of the current activation for later: the input of a block (see
    /// [Blocks](self#blocks)).
    Push,
    /// Makes a copy of the value kept `depth` pushes ago (0: the last) the current
    /// activation: the start of a block's next branch.
    Load {
        /// How many values were kept after it.
        depth: u8,
    },
    /// Adds the last kept value to the current activation, and forgets it: the end of a
    /// residual block.
    AddPop,
    /// Puts the last kept value's elements before the current activation's, sample by
    /// sample (the channels of NCHW images), and forgets it: a concatenation.
    CatPop,
    /// Forgets the last kept value.
    Drop,
}

/// Most values a [`Network`] keeps at once ([`Layer::Push`]): nested blocks.
pub const MAX_KEPT: usize = 16;

/// What a layer takes and gives, once checked.
struct Io {
    /// Input elements (0 for an in-place layer: whatever the layer before gives).
    input: usize,
    /// Output elements (0 for an in-place layer).
    output: usize,
    /// Parameters (weight + bias).
    params: usize,
    /// The batch (0 for an in-place layer).
    batch: usize,
}

impl Layer {
    /// Checks the layer's own parameters and returns its sizes.
    const fn io(&self) -> Result<Io, KernelError> {
        match *self {
            Layer::Conv2d { params, bias, act } => {
                let d = ctry!(params.dims());
                ctry!(act.bounds());
                let b = if bias { d.bias_len } else { 0 };
                Ok(Io {
                    input: d.input_len,
                    output: d.output_len,
                    params: ctry!(add(d.weight_len, b)),
                    batch: params.batch,
                })
            }
            Layer::Linear { params, bias, act } => {
                let (i, w, o) = ctry!(params.lens());
                ctry!(act.bounds());
                let b = if bias { params.out_features } else { 0 };
                Ok(Io {
                    input: i,
                    output: o,
                    params: ctry!(add(w, b)),
                    batch: params.batch,
                })
            }
            Layer::MaxPool2d(params)
            | Layer::AvgPool2d {
                params,
                count_include_pad: _,
            } => {
                let d = ctry!(params.dims());
                Ok(Io {
                    input: d.input_len,
                    output: d.output_len,
                    params: 0,
                    batch: params.batch,
                })
            }
            Layer::Act(e) => match e.check() {
                Ok(()) => Ok(Io {
                    input: 0,
                    output: 0,
                    params: 0,
                    batch: 0,
                }),
                Err(err) => Err(err),
            },
            // (sized by `Network::new`, which follows what they keep)
            Layer::Push | Layer::Load { .. } | Layer::AddPop | Layer::CatPop | Layer::Drop => {
                Ok(Io {
                    input: 0,
                    output: 0,
                    params: 0,
                    batch: 0,
                })
            }
        }
    }

    /// Its parameters (weight + bias elements) in the flat slice [`Network::run`] takes.
    ///
    /// # Errors
    /// Any error of the layer's parameters.
    pub const fn param_len(&self) -> Result<usize, KernelError> {
        Ok(ctry!(self.io()).params)
    }

    /// Whether it has sizes of its own (a convolution, linear or pooling layer), not an
    /// activation in place or a block operation.
    pub const fn is_sized(&self) -> bool {
        matches!(
            self,
            Layer::Conv2d { .. }
                | Layer::Linear { .. }
                | Layer::MaxPool2d(_)
                | Layer::AvgPool2d { .. }
        )
    }

    /// Whether it is one of the block operations ([`Layer::Push`], ...).
    pub const fn is_block_op(&self) -> bool {
        matches!(
            self,
            Layer::Push | Layer::Load { .. } | Layer::AddPop | Layer::CatPop | Layer::Drop
        )
    }

    /// The block operation it is, for [`Kept::step`] (a concatenation joins samples of a
    /// batch of `batch`).
    const fn block_step(&self, batch: usize) -> Option<BlockStep> {
        match *self {
            Layer::Push => Some(BlockStep::Push),
            Layer::Load { depth } => Some(BlockStep::Load(depth)),
            Layer::AddPop => Some(BlockStep::Add),
            Layer::CatPop => Some(BlockStep::Cat(batch)),
            Layer::Drop => Some(BlockStep::Drop),
            _ => None,
        }
    }
}

/// A block operation as [`Network::new`] and [`crate::qnet::QNetwork::new`] size it.
#[derive(Clone, Copy)]
pub(crate) enum BlockStep {
    /// Keep the current value.
    Push,
    /// Bring back the value kept this many pushes ago.
    Load(u8),
    /// Add the last kept value.
    Add,
    /// Concatenate the last kept value in parts of this many (samples, or pixels).
    Cat(usize),
    /// Forget the last kept value.
    Drop,
}

/// The values a network keeps, as [`Network::new`] and [`Network::run_in_arena`] follow
/// them: each one's offset and length at the front of the arena.
#[derive(Clone, Copy)]
pub(crate) struct Kept {
    off: [usize; MAX_KEPT],
    len: [usize; MAX_KEPT],
    pub(crate) n: usize,
    /// Elements they take: the front of the arena up to here.
    pub(crate) top: usize,
}

impl Kept {
    pub(crate) const fn new() -> Self {
        Kept {
            off: [0; MAX_KEPT],
            len: [0; MAX_KEPT],
            n: 0,
            top: 0,
        }
    }

    /// The entry `depth` pushes back, if there is one.
    pub(crate) const fn at(&self, depth: usize) -> Option<(usize, usize)> {
        if depth < self.n {
            let k = self.n - 1 - depth;
            Some((self.off[k], self.len[k]))
        } else {
            None
        }
    }

    pub(crate) const fn push(mut self, len: usize) -> Result<Self, KernelError> {
        if self.n == MAX_KEPT {
            return Err(KernelError::InvalidParameter(
                "more than MAX_KEPT values kept at once",
            ));
        }
        self.off[self.n] = self.top;
        self.len[self.n] = len;
        self.n += 1;
        self.top = ctry!(add(self.top, len));
        Ok(self)
    }

    pub(crate) const fn pop(mut self) -> Self {
        self.n -= 1;
        self.top = self.off[self.n];
        self
    }

    /// Block operation `op` of layer `i` on a current value of `len` elements: the values
    /// kept after it, the current value's length after it, and the arena it needs (the
    /// kept values, the current value at the back and a copy or result at the front; a
    /// concatenation moves the current one to the back first and writes the result from
    /// the kept part on: twice the current one).
    ///
    /// # Errors
    /// [`KernelError::InvalidParameter`] for more than [`MAX_KEPT`] values kept, or a
    /// value taken back that was not kept; [`KernelError::LayerMismatch`] for a value
    /// added of another length, or concatenated of a length that is not a whole number
    /// of parts; [`KernelError::Overflow`].
    pub(crate) const fn step(
        self,
        i: usize,
        op: BlockStep,
        len: usize,
    ) -> Result<(Self, usize, usize), KernelError> {
        match op {
            BlockStep::Push => {
                let k = ctry!(self.push(len));
                Ok((k, len, ctry!(add(k.top, len))))
            }
            BlockStep::Load(depth) => match self.at(depth as usize) {
                Some((_, l)) => Ok((self, l, ctry!(add(self.top, l)))),
                None => Err(KernelError::InvalidParameter("Load of a value not kept")),
            },
            BlockStep::Add | BlockStep::Cat(_) | BlockStep::Drop => {
                let Some((_, l)) = self.at(0) else {
                    return Err(KernelError::InvalidParameter("nothing kept to take back"));
                };
                let mut need = ctry!(add(self.top, len));
                let mut out = len;
                if let BlockStep::Add = op {
                    if l != len {
                        return Err(KernelError::LayerMismatch {
                            layer: i,
                            what: "length of the value added",
                            expected: len,
                            actual: l,
                        });
                    }
                } else if let BlockStep::Cat(parts) = op {
                    need = ctry!(add(need, len));
                    if parts == 0 || !l.is_multiple_of(parts) || !len.is_multiple_of(parts) {
                        return Err(KernelError::LayerMismatch {
                            layer: i,
                            what: "length of the value concatenated (a whole number of \
                                   samples, or of pixels in int8)",
                            expected: len,
                            actual: l,
                        });
                    }
                    out = ctry!(add(len, l));
                }
                Ok((self.pop(), out, need))
            }
        }
    }
}

/// A checked sequence of layers with every size it needs (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Network<'a> {
    layers: &'a [Layer],
    /// Whether a layer is a block operation ([`Network::run_in_arena`] compiles their
    /// code apart).
    blocks: bool,
    batch: usize,
    input_len: usize,
    output_len: usize,
    param_len: usize,
    arena_len: usize,
}

impl<'a> Network<'a> {
    /// Checks that every layer is valid and takes what the layer before gives, and
    /// computes the sizes. A `const fn`: in a `const` item, an error becomes a compile
    /// error.
    ///
    /// # Errors
    /// [`KernelError::ZeroSize`] for no layer with a size of its own (in-place activations
    /// and block operations before the first one take its input's), or a concatenation
    /// before it; any error of a layer's parameters; [`KernelError::LayerMismatch`]
    /// where a layer's input length differs from the output before it, or its batch from
    /// the first layer's, or a kept value does not fit what takes it back;
    /// [`KernelError::InvalidParameter`] for more than [`MAX_KEPT`] values kept at once, a
    /// value taken back that was not kept, or one kept and never taken back;
    /// [`KernelError::Overflow`].
    pub const fn new(layers: &'a [Layer]) -> Result<Self, KernelError> {
        if layers.is_empty() {
            return Err(KernelError::ZeroSize("layers"));
        }
        // the first layer with sizes of its own gives the input (block operations before it
        // keep or add values of the input's size; a concatenation would change it)
        let mut f = 0;
        while f < layers.len() && ctry!(layers[f].io()).input == 0 {
            if let Layer::CatPop = layers[f] {
                return Err(KernelError::ZeroSize("the input before a concatenation"));
            }
            f += 1;
        }
        if f == layers.len() {
            return Err(KernelError::ZeroSize("the first layer's input"));
        }
        let first = ctry!(layers[f].io());
        let (input_len, batch) = (first.input, first.batch);
        let mut len = input_len;
        let mut param_len = 0;
        let mut arena_len = input_len;
        let mut kept = Kept::new();
        let mut i = 0;
        while i < layers.len() {
            let io = ctry!(layers[i].io());
            param_len = ctry!(add(param_len, io.params));
            // what the arena holds during the layer: the kept values, then (block
            // operations) the current activation at the back and a copy or result at the
            // front, or (other layers) the input and the output
            let need = match layers[i].block_step(batch) {
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
            if io.input != 0 {
                if io.input != len {
                    return Err(KernelError::LayerMismatch {
                        layer: i,
                        what: "input length",
                        expected: io.input,
                        actual: len,
                    });
                }
                if io.batch != batch {
                    return Err(KernelError::LayerMismatch {
                        layer: i,
                        what: "batch",
                        expected: io.batch,
                        actual: batch,
                    });
                }
                let pair = ctry!(add(ctry!(add(kept.top, len)), io.output));
                if pair > arena_len {
                    arena_len = pair;
                }
                len = io.output;
            }
            i += 1;
        }
        if kept.n != 0 {
            return Err(KernelError::InvalidParameter(
                "values kept (Push) and never taken back",
            ));
        }
        let mut blocks = false;
        let mut j = 0;
        while j < layers.len() {
            blocks |= layers[j].is_block_op();
            j += 1;
        }
        Ok(Network {
            layers,
            blocks,
            batch,
            input_len,
            output_len: len,
            param_len,
            arena_len,
        })
    }

    /// The layers.
    pub const fn layers(&self) -> &'a [Layer] {
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

    /// Parameters: the length of the flat weight-and-bias slice [`Network::run`] takes.
    pub const fn param_len(&self) -> usize {
        self.param_len
    }

    /// Elements of the arena [`Network::run`] needs: the largest input + output of one
    /// layer (the network's input counts as the first layer's input).
    pub const fn arena_len(&self) -> usize {
        self.arena_len
    }

    /// [`fingerprint`] of the layers: a hash of the geometry, which a [`Blob`] records
    /// so that weights are never read into a network of another shape.
    pub const fn fingerprint(&self) -> u32 {
        fingerprint(self.layers)
    }

    /// Runs the layers on `input`, in `arena`, and returns the output (a slice of the
    /// arena, at its front or its back).
    ///
    /// `params` holds every layer's weight then bias, in order ([`Network::param_len`]
    /// elements); `arena` at least [`Network::arena_len`] elements (more is fine). Nothing
    /// is allocated and no other memory is used.
    ///
    /// # Errors
    /// [`KernelError::LengthMismatch`] for `params` or `input` of the wrong length,
    /// [`KernelError::ScratchTooSmall`] for a short arena.
    pub fn run<'m>(
        &self,
        params: &[f32],
        input: &[f32],
        arena: &'m mut [f32],
    ) -> Result<&'m mut [f32], KernelError> {
        check_len("input", self.input_len, input.len())?;
        self.check(params, arena)?;
        arena[..input.len()].copy_from_slice(input);
        self.run_in_arena(params, arena)
    }

    /// [`Network::run`] on the input already in `arena[..input_len]` (the front of the
    /// arena), so that the input needs no buffer of its own: write the image there (see
    /// [`Network::input_mut`]), then call this.
    ///
    /// # Errors
    /// As [`Network::run`].
    #[inline]
    pub fn run_in_arena<'m>(
        &self,
        params: &[f32],
        arena: &'m mut [f32],
    ) -> Result<&'m mut [f32], KernelError> {
        if self.blocks {
            self.exec::<true>(params, arena)
        } else {
            self.exec::<false>(params, arena)
        }
    }

    /// [`Network::run_in_arena`]; `BLOCKS`: whether the layers have block operations
    /// (without, their code is not compiled in: a firmware's network is a `const`, and
    /// the choice above folds away with the code it does not take).
    fn exec<'m, const BLOCKS: bool>(
        &self,
        params: &[f32],
        arena: &'m mut [f32],
    ) -> Result<&'m mut [f32], KernelError> {
        self.check(params, arena)?;
        let n = arena.len();
        let input_len = self.input_len;
        // the current activation: `len` elements at the front of the arena (just after
        // the kept values), or at its back
        let (mut len, mut front) = (input_len, true);
        let mut kept = Kept::new();
        let mut params = params;
        for layer in self.layers {
            let io = layer.io()?;
            let (w, rest) = params.split_at(io.params);
            params = rest;
            if layer.is_block_op() {
                if !BLOCKS {
                    return Err(KernelError::InvalidParameter(
                        "a block operation in a network checked without",
                    ));
                }
                // `new` sized the arena for each of these moves (see its `need`)
                let s = kept.top;
                match *layer {
                    Layer::Push => {
                        if front {
                            // it is where the kept copy goes: the current one to the back
                            arena.copy_within(s..s + len, n - len);
                        } else {
                            arena.copy_within(n - len..n, s);
                        }
                        kept = kept.push(len)?;
                        front = false;
                    }
                    Layer::Load { depth } => {
                        let (off, l) = kept
                            .at(depth as usize)
                            .ok_or(KernelError::InvalidParameter("Load of a value not kept"))?;
                        arena.copy_within(off..off + l, n - l);
                        (len, front) = (l, false);
                    }
                    Layer::AddPop => {
                        let (off, l) = kept
                            .at(0)
                            .ok_or(KernelError::InvalidParameter("nothing kept"))?;
                        let (a, b) = arena.split_at_mut(s);
                        let bl = b.len();
                        let cur = if front {
                            &mut b[..len]
                        } else {
                            &mut b[bl - len..]
                        };
                        for (c, k) in cur.iter_mut().zip(&a[off..off + l]) {
                            *c += *k;
                        }
                        kept = kept.pop();
                        if front {
                            arena.copy_within(s..s + len, kept.top);
                        }
                    }
                    Layer::CatPop => {
                        let (off, l) = kept
                            .at(0)
                            .ok_or(KernelError::InvalidParameter("nothing kept"))?;
                        if front {
                            arena.copy_within(s..s + len, n - len);
                        }
                        // sample by sample from the last, each kept part moved right to its
                        // place, then the current part after it
                        let b = self.batch();
                        let (kp, cp) = (l / b, len / b);
                        for smp in (0..b).rev() {
                            let dst = off + smp * (kp + cp);
                            arena.copy_within(off + smp * kp..off + (smp + 1) * kp, dst);
                            let src = n - len + smp * cp;
                            arena.copy_within(src..src + cp, dst + kp);
                        }
                        kept = kept.pop();
                        (len, front) = (l + len, true);
                    }
                    Layer::Drop => {
                        kept = kept.pop();
                        if front {
                            arena.copy_within(s..s + len, kept.top);
                        }
                    }
                    _ => unreachable!("is_block_op"),
                }
                continue;
            }
            let s = kept.top;
            if io.input == 0 {
                let x = if front {
                    &mut arena[s..s + len]
                } else {
                    &mut arena[n - len..]
                };
                if let Layer::Act(e) = *layer {
                    e.forward_inplace(x)?;
                }
                continue;
            }
            // `new` checked top + len + io.output <= arena_len <= n: they never overlap
            let (x, y) = if front {
                let (a, b) = arena.split_at_mut(n - io.output);
                (&a[s..s + len], b)
            } else {
                let (a, b) = arena.split_at_mut(n - len);
                (&b[..], &mut a[s..s + io.output])
            };
            match *layer {
                Layer::Conv2d {
                    params: p,
                    bias,
                    act,
                } => {
                    let (wt, b) = split_bias(w, bias, p.out_channels);
                    crate::conv2d_direct(&p, x, wt, b, act, y)?;
                }
                Layer::Linear {
                    params: p,
                    bias,
                    act,
                } => {
                    let (wt, b) = split_bias(w, bias, p.out_features);
                    crate::linear_dot(&p, x, wt, b, act, y)?;
                }
                Layer::MaxPool2d(p) => crate::max_pool2d(&p, x, y, None)?,
                Layer::AvgPool2d {
                    params: p,
                    count_include_pad,
                } => crate::avg_pool2d(&p, count_include_pad, x, y)?,
                _ => {}
            }
            len = io.output;
            front = !front;
        }
        // (nothing is kept at the end: `new` checked it)
        Ok(if front {
            &mut arena[..len]
        } else {
            &mut arena[n - len..]
        })
    }

    /// The batch: the first sized layer's.
    fn batch(&self) -> usize {
        self.batch.max(1)
    }
}

impl Network<'_> {
    /// Where [`Network::run_in_arena`] reads its input: the first
    /// [`Network::input_len`] elements of `arena`.
    ///
    /// # Errors
    /// [`KernelError::ScratchTooSmall`] for an arena shorter than [`Network::arena_len`].
    pub fn input_mut<'m>(&self, arena: &'m mut [f32]) -> Result<&'m mut [f32], KernelError> {
        if arena.len() < self.arena_len {
            return Err(KernelError::ScratchTooSmall {
                needed: self.arena_len,
                actual: arena.len(),
            });
        }
        Ok(&mut arena[..self.input_len])
    }

    fn check(&self, params: &[f32], arena: &[f32]) -> Result<(), KernelError> {
        check_len("params", self.param_len, params.len())?;
        if arena.len() < self.arena_len {
            return Err(KernelError::ScratchTooSmall {
                needed: self.arena_len,
                actual: arena.len(),
            });
        }
        Ok(())
    }
}

/// Splits a layer's parameters into the weight and, if present, the `n`-element bias
/// (`w` holds exactly the weight plus the bias: [`Layer::io`] sized it).
fn split_bias(w: &[f32], bias: bool, n: usize) -> (&[f32], Option<&[f32]>) {
    if bias {
        let (wt, b) = w.split_at(w.len() - n);
        (wt, Some(b))
    } else {
        (w, None)
    }
}

/// A 32-bit FNV-1a hash of `layers`' geometry: the layer kinds, every parameter field
/// and the clamps (whether or not the layers fit together).
pub const fn fingerprint(layers: &[Layer]) -> u32 {
    let mut h = Fnv::new();
    let mut i = 0;
    while i < layers.len() {
        h = match layers[i] {
            Layer::Conv2d {
                params: p,
                bias,
                act,
            } => h.word(1).conv(&p).word(bias as u64).act(act),
            Layer::Linear {
                params: p,
                bias,
                act,
            } => h
                .word(2)
                .word(p.batch as u64)
                .word(p.in_features as u64)
                .word(p.out_features as u64)
                .word(bias as u64)
                .act(act),
            Layer::MaxPool2d(p) => h.word(3).pool(&p),
            Layer::AvgPool2d {
                params: p,
                count_include_pad,
            } => h.word(4).pool(&p).word(count_include_pad as u64),
            Layer::Act(e) => match e.param() {
                Some(v) => h.word(e.code()).word(v.to_bits() as u64),
                None => h.word(e.code()),
            },
            Layer::Push => h.word(20),
            Layer::Load { depth } => h.word(21).word(depth as u64),
            Layer::AddPop => h.word(22),
            Layer::CatPop => h.word(23),
            Layer::Drop => h.word(24),
        };
        i += 1;
    }
    h.0
}

/// 32-bit FNV-1a over 64-bit words (little-endian bytes).
#[derive(Clone, Copy)]
struct Fnv(u32);

impl Fnv {
    const fn new() -> Self {
        Fnv(0x811c_9dc5)
    }

    const fn word(self, w: u64) -> Self {
        let mut h = self.0;
        let mut i = 0;
        while i < 8 {
            h ^= ((w >> (8 * i)) & 0xff) as u32;
            h = h.wrapping_mul(0x0100_0193);
            i += 1;
        }
        Fnv(h)
    }

    const fn conv(self, p: &Conv2dParams) -> Self {
        self.word(p.batch as u64)
            .word(p.in_channels as u64)
            .word(p.in_h as u64)
            .word(p.in_w as u64)
            .word(p.out_channels as u64)
            .word(p.kernel_h as u64)
            .word(p.kernel_w as u64)
            .word(p.stride_h as u64)
            .word(p.stride_w as u64)
            .word(p.pad_top as u64)
            .word(p.pad_bottom as u64)
            .word(p.pad_left as u64)
            .word(p.pad_right as u64)
            .word(p.dilation_h as u64)
            .word(p.dilation_w as u64)
            .word(p.groups as u64)
    }

    const fn pool(self, p: &Pool2dParams) -> Self {
        self.word(p.batch as u64)
            .word(p.channels as u64)
            .word(p.in_h as u64)
            .word(p.in_w as u64)
            .word(p.kernel_h as u64)
            .word(p.kernel_w as u64)
            .word(p.stride_h as u64)
            .word(p.stride_w as u64)
            .word(p.pad_top as u64)
            .word(p.pad_bottom as u64)
            .word(p.pad_left as u64)
            .word(p.pad_right as u64)
            .word(p.dilation_h as u64)
            .word(p.dilation_w as u64)
    }

    const fn act(self, a: Activation) -> Self {
        match a {
            Activation::None => self.word(0),
            Activation::Relu => self.word(1),
            Activation::Clamp { min, max } => self
                .word(2)
                .word(min.to_bits() as u64)
                .word(max.to_bits() as u64),
        }
    }
}

/// The first bytes of a [`Blob`].
pub const BLOB_MAGIC: [u8; 4] = *b"CNKW";
/// The [`Blob`] layout version this crate reads and writes.
pub const BLOB_VERSION: u32 = 1;
/// Bytes of a [`Blob`]'s header; the parameters follow, 4-byte aligned if the blob is.
pub const BLOB_HEADER_LEN: usize = 32;

/// A network's parameters as a flat little-endian blob, for flash.
///
/// Layout (every field little-endian):
///
/// | offset | field |
/// |---|---|
/// | 0 | magic `CNKW` |
/// | 4 | version (`u32`, 1) |
/// | 8 | parameter count `n` (`u32`) |
/// | 12 | layer count (`u32`) |
/// | 16 | [`Network::fingerprint`] of the geometry (`u32`) |
/// | 20 | input normalisation: mean of the training pixels in `[0, 1]` (`f32`) |
/// | 24 | their standard deviation (`f32`) |
/// | 28 | reserved, 0 |
/// | 32 | `n` parameters (`f32`), as [`Network::run`] takes them |
///
/// Parsing borrows the parameters in place (no copy), so the bytes must be 4-byte
/// aligned and the target little-endian (every target this crate knows is).
///
/// ```
/// use cnnkit_kernels::net::Blob;
/// #[repr(C, align(4))]
/// struct Aligned<T: ?Sized>(T);
/// let mut bytes = Aligned([0_u8; 40]);
/// bytes.0[..32].copy_from_slice(&Blob::header(2, 1, 0xabcd, 0.5, 0.25));
/// bytes.0[32..36].copy_from_slice(&1.5_f32.to_le_bytes());
/// let blob = Blob::parse(&bytes.0).unwrap();
/// assert_eq!((blob.params, blob.layers, blob.fingerprint), (&[1.5, 0.0][..], 1, 0xabcd));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blob<'a> {
    /// The layers of the network the parameters belong to.
    pub layers: u32,
    /// [`Network::fingerprint`] of that network.
    pub fingerprint: u32,
    /// Mean of the training pixels (scaled to `[0, 1]`): inputs are `(p / 255 - mean) / std`.
    pub mean: f32,
    /// Standard deviation of the training pixels.
    pub std: f32,
    /// The parameters.
    pub params: &'a [f32],
}

impl<'a> Blob<'a> {
    /// The header for `n` parameters of a network of `layers` layers.
    pub fn header(n: u32, layers: u32, fingerprint: u32, mean: f32, std: f32) -> [u8; 32] {
        let mut h = [0; BLOB_HEADER_LEN];
        h[..4].copy_from_slice(&BLOB_MAGIC);
        let words = [
            BLOB_VERSION,
            n,
            layers,
            fingerprint,
            mean.to_bits(),
            std.to_bits(),
        ];
        for (i, w) in words.iter().enumerate() {
            h[4 + 4 * i..8 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        h
    }

    /// Reads a blob, borrowing its parameters.
    ///
    /// # Errors
    /// [`KernelError::InvalidBlob`] naming what is wrong: a short header, another magic or
    /// version, a length that disagrees with the count, bytes not 4-byte aligned, or a
    /// big-endian target.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, KernelError> {
        let Some((head, body)) = bytes.split_first_chunk::<BLOB_HEADER_LEN>() else {
            return Err(KernelError::InvalidBlob("shorter than its 32-byte header"));
        };
        if head[..4] != BLOB_MAGIC {
            return Err(KernelError::InvalidBlob(
                "no CNKW magic: not a cnnkit weight blob",
            ));
        }
        let word = |i: usize| {
            let mut b = [0; 4];
            b.copy_from_slice(&head[4 + 4 * i..8 + 4 * i]);
            u32::from_le_bytes(b)
        };
        if word(0) != BLOB_VERSION {
            return Err(KernelError::InvalidBlob("unsupported version"));
        }
        let n = word(1) as usize;
        if body.len() / 4 != n || body.len() % 4 != 0 {
            return Err(KernelError::InvalidBlob(
                "its length disagrees with its parameter count (truncated?)",
            ));
        }
        if cfg!(target_endian = "big") {
            return Err(KernelError::InvalidBlob(
                "parameters are little-endian; this target is big-endian",
            ));
        }
        // SAFETY: every bit pattern of 4 bytes is a valid `f32`, `u8` has no invalid
        // values either, and `align_to` returns a middle part only where it is aligned.
        let (pre, params, post) = unsafe { body.align_to::<f32>() };
        if !pre.is_empty() || !post.is_empty() {
            return Err(KernelError::InvalidBlob(
                "parameters are not 4-byte aligned in memory (align the bytes, see Blob)",
            ));
        }
        Ok(Blob {
            layers: word(2),
            fingerprint: word(3),
            mean: f32::from_bits(word(4)),
            std: f32::from_bits(word(5)),
            params,
        })
    }

    /// The parameters, after checking that they were written for `net`.
    ///
    /// # Errors
    /// [`KernelError::InvalidBlob`] if the layer count, the fingerprint or the parameter
    /// count differ from `net`'s.
    pub fn params_for(&self, net: &Network<'_>) -> Result<&'a [f32], KernelError> {
        if self.layers as usize != net.layers().len() || self.fingerprint != net.fingerprint() {
            return Err(KernelError::InvalidBlob(
                "written for a network of another geometry",
            ));
        }
        if self.params.len() != net.param_len() {
            return Err(KernelError::InvalidBlob(
                "its parameter count differs from the network's",
            ));
        }
        Ok(self.params)
    }

    /// The input value of pixel byte `p`: `(p / 255 - mean) / std`, as `cnnkit` normalises
    /// its training and test images.
    pub fn normalize(&self, p: u8) -> f32 {
        (f32::from(p) / 255.0 - self.mean) / self.std
    }
}
