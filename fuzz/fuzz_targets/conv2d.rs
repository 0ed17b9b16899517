//! conv2d (direct and im2col, forward; input and weight gradients) on fuzzer-chosen
//! geometry and data: either an error for invalid parameters, or the reference's answer
//! within the f32 summation bound.
#![no_main]

use cnnkit_kernels::{self as k, Activation, Conv2dParams, reference as r};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let b = |i: usize| data[i] as usize;
    // small geometry, zero allowed, so invalid parameters are reached too
    let p = Conv2dParams::new(b(0) % 3, b(1) % 5, b(2) % 9, b(3) % 9, b(4) % 7, b(5) % 5, b(6) % 5)
        .with_stride(b(7) % 4, b(8) % 4)
        .with_padding(b(9) % 5, b(10) % 5, b(11) % 5, b(12) % 5)
        .with_dilation(b(13) % 3, b(14) % 3)
        .with_groups(b(15) % 4);
    let floats: Vec<f32> = data[16..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let d = match p.dims() {
        Ok(d) => d,
        Err(e) => {
            let mut y = [0.0; 4];
            assert_eq!(k::conv2d_direct(&p, &[], &[], None, Activation::None, &mut y), Err(e));
            return;
        }
    };
    let take = |n: usize, off: usize| -> Vec<f32> {
        (0..n).map(|i| floats.get(off + i).copied().unwrap_or((i % 7) as f32 - 3.0)).collect()
    };
    let x = take(d.input_len, 0);
    let w = take(d.weight_len, d.input_len);
    let mut want = vec![0.0; d.output_len];
    r::conv2d(&p, &x, &w, None, Activation::None, &mut want).unwrap();
    let mut got = vec![0.0; d.output_len];
    k::conv2d_direct(&p, &x, &w, None, Activation::None, &mut got).unwrap();
    let mut got2 = vec![0.0; d.output_len];
    let mut s = vec![0.0; k::conv2d_im2col_scratch_len(&p).unwrap()];
    k::conv2d_im2col(&p, &x, &w, None, Activation::None, &mut got2, &mut s).unwrap();
    let ax: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let aw: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    let mut mag = vec![0.0; d.output_len];
    r::conv2d(&p, &ax, &aw, None, Activation::None, &mut mag).unwrap();
    let gamma = (d.col_rows as f32 + 2.0) * f32::EPSILON;
    for i in 0..d.output_len {
        for g in [got[i], got2[i]] {
            let e = want[i];
            if !mag[i].is_finite() || e.is_nan() {
                // overflow or NaN in the data: only agreement on "not a number" is meaningful
                assert!(!e.is_nan() || g.is_nan() || !mag[i].is_finite(), "{i}: {g} vs {e}");
                continue;
            }
            assert!((g - e).abs() <= gamma * mag[i] + f32::EPSILON * e.abs() + f32::MIN_POSITIVE, "{i}: {g} vs {e}");
        }
    }
    // backward passes, on finite data (NaN propagation is the forward checks' business)
    let gy = take(d.output_len, d.input_len + d.weight_len);
    if !x.iter().chain(&w).chain(&gy).all(|v| v.is_finite() && v.abs() < 1e15) {
        return;
    }
    let agy: Vec<f32> = gy.iter().map(|v| v.abs()).collect();
    let close = |got: &[f32], want: &[f32], mag: &[f32], terms: usize, what: &str| {
        let gamma = (terms as f32 + 2.0) * f32::EPSILON;
        for (i, ((&g, &e), &m)) in got.iter().zip(want).zip(mag).enumerate() {
            if !m.is_finite() {
                continue;
            }
            assert!((g - e).abs() <= gamma * m + f32::EPSILON * e.abs() + f32::MIN_POSITIVE, "{what} {i}: {g} vs {e}");
        }
    };
    let mut gx = vec![f32::NAN; d.input_len];
    let mut gx_ref = vec![0.0; d.input_len];
    let mut gx_mag = vec![0.0; d.input_len];
    let mut s = vec![0.0; k::conv2d_backward_input_scratch_len(&p).unwrap()];
    k::conv2d_backward_input(&p, &w, &gy, &mut gx, &mut s).unwrap();
    r::conv2d_backward_input(&p, &w, &gy, &mut gx_ref).unwrap();
    r::conv2d_backward_input(&p, &aw, &agy, &mut gx_mag).unwrap();
    close(&gx, &gx_ref, &gx_mag, d.out_per_group * p.kernel_h * p.kernel_w, "grad_input");
    let mut gw = vec![f32::NAN; d.weight_len];
    let mut gw_ref = vec![0.0; d.weight_len];
    let mut gw_mag = vec![0.0; d.weight_len];
    let mut s = vec![0.0; k::conv2d_backward_weight_scratch_len(&p).unwrap()];
    k::conv2d_backward_weight(&p, &x, &gy, &mut gw, &mut s).unwrap();
    r::conv2d_backward_weight(&p, &x, &gy, &mut gw_ref).unwrap();
    r::conv2d_backward_weight(&p, &ax, &agy, &mut gw_mag).unwrap();
    close(&gw, &gw_ref, &gw_mag, p.batch * d.col_cols, "grad_weight");
});
