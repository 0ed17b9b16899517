//! int8 fully connected layer: each input row with the zero point subtracted (16-bit),
//! then one dot product per output, requantised as it is stored.

use super::{Int8Kernel, store};
use crate::arch;
use crate::error::KernelError;
use crate::params::LinearParams;
use crate::qparams::{QuantOutput, check_fully_connected_s8};

/// Scratch (16-bit elements) [`fully_connected_s8`] needs: one input row.
///
/// ```
/// use cnnkit_kernels::{fully_connected_s8_scratch_len, LinearParams};
/// assert_eq!(fully_connected_s8_scratch_len(&LinearParams::new(8, 400, 120)), 400);
/// ```
pub const fn fully_connected_s8_scratch_len(p: &LinearParams) -> usize {
    p.in_features
}

/// int8 fully connected layer: `input [batch, in]`, `weight [out, in]`, `output [batch,
/// out]`, each output as [`crate::conv2d_s8`]'s. Equals `reference::fully_connected_s8`
/// bit for bit.
///
/// # Errors
/// As `reference::fully_connected_s8`; [`KernelError::ScratchTooSmall`] below
/// [`fully_connected_s8_scratch_len`].
///
/// ```
/// use cnnkit_kernels::{fully_connected_s8, LinearParams, QuantOutput, Requant};
/// let p = LinearParams::new(1, 2, 1);
/// let r = [Requant::from_real(1.0).unwrap()];
/// let q = QuantOutput::new(0, 0, &r);
/// let mut y = [0i8; 1];
/// fully_connected_s8(&p, &q, &[3, 4], &[2, -1], Some(&[10]), &mut y, &mut [0; 2]).unwrap();
/// assert_eq!(y, [12]);
/// ```
pub fn fully_connected_s8(
    p: &LinearParams,
    q: &QuantOutput<'_>,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &mut [i8],
    scratch: &mut [i16],
) -> Result<(), KernelError> {
    check_fully_connected_s8(
        p,
        q,
        input.len(),
        weight.len(),
        bias.map(<[i32]>::len),
        output.len(),
    )?;
    let need = fully_connected_s8_scratch_len(p);
    if scratch.len() < need {
        return Err(KernelError::ScratchTooSmall {
            needed: need,
            actual: scratch.len(),
        });
    }
    arch::dispatch!(run(
        p: &LinearParams,
        q: &QuantOutput<'_>,
        input: &[i8],
        weight: &[i8],
        bias: Option<&[i32]>,
        output: &mut [i8],
        scratch: &mut [i16]
    ));
    Ok(())
}

#[inline(always)]
fn run<V: Int8Kernel>(
    p: &LinearParams,
    q: &QuantOutput<'_>,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &mut [i8],
    scratch: &mut [i16],
) {
    let k = p.in_features;
    let row = &mut scratch[..k];
    let zp = q.input_zero_point as i16;
    for (x, y) in input
        .chunks_exact(k)
        .zip(output.chunks_exact_mut(p.out_features))
    {
        V::widen(row, x, zp);
        V::prepare_row(row);
        // two outputs at a time: their weight rows pass over the input once
        let mut o = 0;
        for (w2, out2) in weight.chunks_exact(2 * k).zip(y.chunks_exact_mut(2)) {
            let mut acc = [bias.map_or(0, |b| b[o]), bias.map_or(0, |b| b[o + 1])];
            let (w0, w1) = w2.split_at(k);
            V::dot_rows2(row, w0, w1, &mut acc);
            out2[0] = store(acc[0], q.requant_of(o), q);
            out2[1] = store(acc[1], q.requant_of(o + 1), q);
            o += 2;
        }
        if o < p.out_features {
            // (the last of an odd count: its row twice)
            let b = bias.map_or(0, |b| b[o]);
            let mut acc = [b, b];
            let w = &weight[o * k..][..k];
            V::dot_rows2(row, w, w, &mut acc);
            y[o] = store(acc[0], q.requant_of(o), q);
        }
    }
}
