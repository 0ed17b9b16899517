//! A small, fixed set of shapes through every kernel family against the reference:
//! the suite `.ci/run` runs under Miri (`cargo +nightly miri test -p cnnkit-kernels
//! --test miri --test errors`), which checks the portable path's `unsafe` code (unaligned
//! loads, raw-pointer GEMM packing and microkernel, partial vectors) for out-of-bounds
//! access and undefined behaviour. The shapes cover partial vectors and tiles, padding,
//! stride, dilation, groups and the depthwise path; the full property tests cover the
//! rest natively (they also run under Miri, with fewer and smaller cases, given time).

mod common;

use cnnkit_kernels::{self as k, Activation, Conv2dParams, GemmParams, LinearParams};
use cnnkit_kernels::{Pool2dParams, reference as r};
use common::{Rng, abs, assert_close, assert_sum_close};

#[test]
fn conv2d_forward_and_backward() {
    let shapes = [
        // direct (few outputs per group), partial tiles, padding, stride
        Conv2dParams::new(1, 2, 5, 9, 3, 3, 3)
            .with_padding(1, 2, 1, 0)
            .with_stride(1, 2),
        // im2col + GEMM (8+ outputs per group), dilation
        Conv2dParams::new(2, 3, 6, 5, 9, 2, 3).with_dilation(2, 1),
        // the same on several small images with padding and stride: column blocks span
        // images (im2col packed for the GEMM, col2im through the padding)
        Conv2dParams::new(3, 2, 5, 4, 9, 3, 3)
            .with_padding(1, 2, 0, 1)
            .with_stride(2, 1),
        // one input channel, rows of 18: the flat weight gradient (and the row-by-row one
        // for a non-finite input: `weight_gradient_non_finite_input`)
        Conv2dParams::new(2, 1, 3, 18, 3, 3, 3).with_padding(1, 1, 1, 1),
        // depthwise: stride 1 takes the flat kernels (but in `conv2d_direct`), strided the
        // row-by-row ones
        Conv2dParams::new(1, 4, 5, 5, 4, 3, 3)
            .with_groups(4)
            .with_padding(1, 1, 1, 1),
        Conv2dParams::new(1, 2, 5, 5, 2, 3, 3)
            .with_groups(2)
            .with_stride(2, 2),
        // pointwise, grouped
        Conv2dParams::new(1, 4, 3, 3, 8, 1, 1).with_groups(2),
        // implicit GEMM over two K blocks (260 taps: 64 + 1 channels) and, for the
        // portable 8-wide tile Miri runs, two channel blocks (9), padded (one output
        // pixel: Miri is slow)
        Conv2dParams::new(1, 65, 1, 1, 9, 2, 2).with_padding(1, 0, 1, 0),
        // implicit weight gradient (16-pixel planes): two channel blocks, a partial tap
        // tile (9 taps), padding
        Conv2dParams::new(1, 1, 4, 4, 17, 3, 3).with_padding(1, 1, 1, 1),
        // the flat forward pass (5 outputs at stride 1, in `conv2d_implicit`): padded
        // planes 9 wide, two strips of positions
        Conv2dParams::new(1, 2, 4, 6, 5, 3, 2).with_padding(1, 0, 2, 1),
        // the direct input gradient (stride 1, 35-pixel planes): two groups of three
        // input channels, asymmetric padding (flat rows of 7 for 6-pixel input rows)
        Conv2dParams::new(1, 6, 5, 6, 4, 3, 2)
            .with_groups(2)
            .with_padding(2, 0, 1, 1),
        // the batch-in-lanes input gradient: a group of eight images and one of one,
        // five input channels (tiles of 2, 2 and 1 in the portable variant), an odd row
        // (its last pixel alone), padding above and left (small: Miri is slow)
        Conv2dParams::new(9, 5, 2, 3, 2, 2, 2).with_padding(1, 0, 1, 0),
    ];
    let mut rng = Rng(7);
    for p in shapes {
        let d = p.dims().unwrap();
        let (x, w, b, gy) = (
            rng.vec(d.input_len),
            rng.vec(d.weight_len),
            rng.vec(d.bias_len),
            rng.vec(d.output_len),
        );
        let mut want = vec![0.0; d.output_len];
        r::conv2d(&p, &x, &w, Some(&b), Activation::Relu, &mut want).unwrap();
        let mut mag = vec![0.0; d.output_len];
        r::conv2d(
            &p,
            &abs(&x),
            &abs(&w),
            Some(&abs(&b)),
            Activation::None,
            &mut mag,
        )
        .unwrap();
        let mut got = vec![f32::NAN; d.output_len];
        k::conv2d_direct(&p, &x, &w, Some(&b), Activation::Relu, &mut got).unwrap();
        assert_sum_close("direct", &got, &want, &mag, d.col_rows + 1);
        k::conv2d_direct_scalar(&p, &x, &w, Some(&b), Activation::Relu, &mut got).unwrap();
        assert_sum_close("direct scalar", &got, &want, &mag, d.col_rows + 1);
        let mut s = vec![f32::NAN; k::conv2d_im2col_scratch_len(&p).unwrap()];
        k::conv2d_im2col(&p, &x, &w, Some(&b), Activation::Relu, &mut got, &mut s).unwrap();
        assert_sum_close("im2col", &got, &want, &mag, d.col_rows + 1);
        let mut s = vec![f32::NAN; k::conv2d_implicit_scratch_len(&p).unwrap()];
        k::conv2d_implicit(&p, &x, &w, Some(&b), Activation::Relu, &mut got, &mut s).unwrap();
        assert_sum_close("implicit", &got, &want, &mag, d.col_rows + 1);

        let mut gx = vec![f32::NAN; d.input_len];
        let mut s = vec![f32::NAN; k::conv2d_backward_input_scratch_len(&p).unwrap()];
        k::conv2d_backward_input(&p, &w, &gy, &mut gx, &mut s).unwrap();
        let (mut want, mut mag) = (vec![0.0; d.input_len], vec![0.0; d.input_len]);
        r::conv2d_backward_input(&p, &w, &gy, &mut want).unwrap();
        r::conv2d_backward_input(&p, &abs(&w), &abs(&gy), &mut mag).unwrap();
        assert_sum_close("grad input", &gx, &want, &mag, d.out_per_group * 9);
        let mut gw = vec![f32::NAN; d.weight_len];
        let mut s = vec![f32::NAN; k::conv2d_backward_weight_scratch_len(&p).unwrap()];
        k::conv2d_backward_weight(&p, &x, &gy, &mut gw, &mut s).unwrap();
        let (mut want, mut mag) = (vec![0.0; d.weight_len], vec![0.0; d.weight_len]);
        r::conv2d_backward_weight(&p, &x, &gy, &mut want).unwrap();
        r::conv2d_backward_weight(&p, &abs(&x), &abs(&gy), &mut mag).unwrap();
        assert_sum_close("grad weight", &gw, &want, &mag, p.batch * d.col_cols);

        let mut col = vec![f32::NAN; d.col_len];
        k::im2col(&p, &x[..d.image_len], &mut col).unwrap();
        let mut col_ref = vec![0.0; d.col_len];
        r::im2col(&p, &x[..d.image_len], &mut col_ref).unwrap();
        assert_eq!(col, col_ref);
        let mut img = vec![f32::NAN; d.image_len];
        k::col2im(&p, &col, &mut img).unwrap();
        let mut img_ref = vec![0.0; d.image_len];
        r::col2im(&p, &col, &mut img_ref).unwrap();
        let mut mag = vec![0.0; d.image_len];
        r::col2im(&p, &abs(&col), &mut mag).unwrap();
        assert_sum_close("col2im", &img, &img_ref, &mag, 2 * p.kernel_h * p.kernel_w);
    }
}

/// The row-by-row weight gradient, which the flat one hands inputs with an infinity or
/// NaN: the same values as the reference, non-finite exactly where it is.
#[test]
fn weight_gradient_non_finite_input() {
    let p = Conv2dParams::new(2, 1, 3, 18, 3, 3, 3).with_padding(1, 1, 1, 1);
    let d = p.dims().unwrap();
    let mut rng = Rng(9);
    let mut x = rng.vec(d.input_len);
    x[0] = f32::INFINITY; // a corner: taps of kernel row or column 2 never read it
    let gy = rng.vec(d.output_len);
    let mut gw = vec![f32::NAN; d.weight_len];
    let mut s = vec![f32::NAN; k::conv2d_backward_weight_scratch_len(&p).unwrap()];
    k::conv2d_backward_weight(&p, &x, &gy, &mut gw, &mut s).unwrap();
    let mut want = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(&p, &x, &gy, &mut want).unwrap();
    let mut mag = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(&p, &abs(&x), &abs(&gy), &mut mag).unwrap();
    assert!(want.iter().any(|v| !v.is_finite()) && want.iter().any(|v| v.is_finite()));
    for (i, (a, b)) in gw.iter().zip(&want).enumerate() {
        assert_eq!(a.is_finite(), b.is_finite(), "weight {i}: {a} against {b}");
        if b.is_finite() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + mag[i]),
                "weight {i}: {a} against {b}"
            );
        }
    }
}

/// The sparse weight gradient: a padded grouped layer whose last output position and a
/// NO_INDEX entry are listed (the vector loads reach the slack after the last plane), and
/// a 9-wide kernel (one tap at a time).
#[test]
fn sparse_weight_gradient() {
    for p in [
        Conv2dParams::new(2, 4, 3, 5, 2, 3, 2)
            .with_groups(2)
            .with_padding(1, 1, 0, 1),
        Conv2dParams::new(1, 1, 2, 9, 1, 2, 9),
    ] {
        let d = p.dims().unwrap();
        let plane = d.out_h * d.out_w;
        let mut rng = Rng(5);
        let x = rng.vec(d.input_len);
        let n = p.batch * p.out_channels * 3;
        let pos: Vec<u32> = (0..n)
            .map(|i| match i % 3 {
                0 => plane as u32 - 1,
                1 => k::NO_INDEX,
                _ => rng.below(plane) as u32,
            })
            .collect();
        let val = rng.vec(n);
        let mut gy = vec![0.0; d.output_len];
        for (i, (&q, &v)) in pos.iter().zip(&val).enumerate() {
            if q != k::NO_INDEX {
                gy[i / 3 * plane + q as usize] += v;
            }
        }
        let mut want = vec![0.0; d.weight_len];
        r::conv2d_backward_weight(&p, &x, &gy, &mut want).unwrap();
        let mut mag = vec![0.0; d.weight_len];
        r::conv2d_backward_weight(&p, &abs(&x), &abs(&gy), &mut mag).unwrap();
        let mut gw = vec![f32::NAN; d.weight_len];
        let mut gb = vec![f32::NAN; d.bias_len];
        let mut s = vec![f32::NAN; k::conv2d_backward_weight_sparse_scratch_len(&p).unwrap()];
        k::conv2d_backward_weight_sparse(&p, &x, 3, &pos, &val, &mut gw, Some(&mut gb), &mut s)
            .unwrap();
        assert_sum_close("sparse grad_weight", &gw, &want, &mag, 2 * p.batch * plane);
        let mut want_b = vec![0.0; d.bias_len];
        r::conv2d_backward_bias(&p, &gy, &mut want_b).unwrap();
        assert_close("sparse grad_bias", &gb, &want_b, 1e-5, 1e-5);
    }
}

#[test]
fn sgemm_edge_tiles() {
    let mut rng = Rng(3);
    for (m, n, kk, ta, tb) in [
        (7, 19, 5, false, false),
        (13, 9, 3, true, true),
        (1, 33, 2, false, true),
    ] {
        let mut p = GemmParams::new(m, n, kk).with_alpha_beta(0.5, 0.25);
        if ta {
            p = p.transpose_a();
        }
        if tb {
            p = p.transpose_b();
        }
        p = p.with_leading_dims(p.lda + 1, p.ldb, p.ldc + 2);
        let (la, lb, lc) = p.min_lens().unwrap();
        let (a, b, c0) = (rng.vec(la), rng.vec(lb), rng.vec(lc));
        let mut want = c0.clone();
        r::sgemm(&p, &a, &b, &mut want).unwrap();
        let mut got = c0.clone();
        let mut s = vec![f32::NAN; k::sgemm_scratch_len(m, n, kk)];
        k::sgemm(&p, &a, &b, &mut got, &mut s).unwrap();
        let mag = vec![kk as f32; lc];
        assert_sum_close("sgemm", &got, &want, &mag, kk + 2);
    }
}

#[test]
fn pooling() {
    let p = Pool2dParams::new(1, 2, 7, 9, 3, 2)
        .with_stride(2, 2)
        .with_padding(1, 1, 1, 0);
    let d = p.dims().unwrap();
    let x = Rng(5).distinct(d.input_len);
    let gy = Rng(6).vec(d.output_len);
    let (mut y, mut yr) = (vec![f32::NAN; d.output_len], vec![0.0; d.output_len]);
    let (mut i, mut ir) = (vec![0; d.output_len], vec![0; d.output_len]);
    k::max_pool2d(&p, &x, &mut y, Some(&mut i)).unwrap();
    r::max_pool2d(&p, &x, &mut yr, Some(&mut ir)).unwrap();
    assert_eq!((&y, &i), (&yr, &ir));
    let (mut g, mut gr) = (vec![f32::NAN; d.input_len], vec![0.0; d.input_len]);
    k::max_pool2d_backward(&p, &i, &gy, &mut g).unwrap();
    r::max_pool2d_backward(&p, &i, &gy, &mut gr).unwrap();
    assert_eq!(g, gr);
    k::avg_pool2d(&p, false, &x, &mut y).unwrap();
    r::avg_pool2d(&p, false, &x, &mut yr).unwrap();
    assert_close("avg", &y, &yr, 16.0 * f32::EPSILON, 1e-6);
    k::avg_pool2d_backward(&p, true, &gy, &mut g).unwrap();
    r::avg_pool2d_backward(&p, true, &gy, &mut gr).unwrap();
    assert_close("avg backward", &g, &gr, 16.0 * f32::EPSILON, 1e-6);
    // the 2x2 stride-2 path: rows of 8+ windows (the last tile overlapping) and fewer
    for (h, w) in [(4, 19), (3, 7)] {
        let p = Pool2dParams::new(1, 2, h, w, 2, 2);
        let d = p.dims().unwrap();
        let x = Rng(8).distinct(d.input_len);
        let (mut y, mut yr) = (vec![f32::NAN; d.output_len], vec![0.0; d.output_len]);
        let (mut i, mut ir) = (vec![0; d.output_len], vec![0; d.output_len]);
        k::min_pool2d(&p, &x, &mut y, Some(&mut i)).unwrap();
        r::min_pool2d(&p, &x, &mut yr, Some(&mut ir)).unwrap();
        assert_eq!((&y, &i), (&yr, &ir));
    }
}

#[test]
fn activations_softmax_losses_linear() {
    let mut rng = Rng(9);
    let x: Vec<f32> = rng.vec(21).iter().map(|v| v * 8.0).collect();
    let g = rng.vec(21);
    for (f, rf) in [
        (
            k::tanh as fn(&[f32], &mut [f32]) -> Result<(), k::KernelError>,
            r::tanh as fn(&[f32], &mut [f32]) -> Result<(), k::KernelError>,
        ),
        (k::sigmoid, r::sigmoid),
        (k::relu, r::relu),
    ] {
        let (mut y, mut yr) = (vec![f32::NAN; 21], vec![0.0; 21]);
        f(&x, &mut y).unwrap();
        rf(&x, &mut yr).unwrap();
        assert_close("activation", &y, &yr, 4.0 * f32::EPSILON, 1e-30);
    }
    let (mut y, mut yr) = (vec![f32::NAN; 21], vec![0.0; 21]);
    k::log_softmax(3, 7, &x, &mut y).unwrap();
    r::log_softmax(3, 7, &x, &mut yr).unwrap();
    assert_close(
        "log_softmax",
        &y,
        &yr,
        4.0 * f32::EPSILON,
        64.0 * f32::EPSILON,
    );
    let mut sm = vec![0.0; 21];
    r::softmax(3, 7, &x, &mut sm).unwrap();
    k::softmax_backward(3, 7, &sm, &g, &mut y).unwrap();
    r::softmax_backward(3, 7, &sm, &g, &mut yr).unwrap();
    // |y| (|g| + sum |y g|) <= 2 |y| with |g| <= 1: the sum bound over 7 + 2 terms
    let mag: Vec<f32> = sm.iter().map(|v| 2.0 * v).collect();
    assert_sum_close("softmax_backward", &y, &yr, &mag, 9);
    let labels = [1, 6, 0];
    let mut grad = vec![0.0; 21];
    let l = k::softmax_cross_entropy(3, 7, &x, &labels, &mut grad).unwrap();
    let lr = r::cross_entropy(3, 7, &x, &labels).unwrap();
    assert!((l - lr).abs() <= 64.0 * f32::EPSILON * lr.abs());

    let p = LinearParams::new(3, 11, 5);
    let (li, lw, lo) = p.lens().unwrap();
    let (xi, w, b) = (rng.vec(li), rng.vec(lw), rng.vec(5));
    let (mut y, mut yr) = (vec![f32::NAN; lo], vec![0.0; lo]);
    let mut s = vec![f32::NAN; k::linear_scratch_len(&p).unwrap()];
    k::linear(&p, &xi, &w, Some(&b), Activation::None, &mut y, &mut s).unwrap();
    r::linear(&p, &xi, &w, Some(&b), Activation::None, &mut yr).unwrap();
    assert_close("linear", &y, &yr, 0.0, 16.0 * 12.0 * f32::EPSILON);
}
