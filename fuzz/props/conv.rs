//! Convolution (every algorithm: the dispatcher, direct with its depthwise path, im2col +
//! GEMM, implicit GEMM, Winograd; forward with bias and clamp, the three backward passes
//! and the sparse weight gradient) and im2col/col2im.

use cnnkit_kernels::{self as k, Activation, Conv2dParams, reference as r};

use super::{Bytes, abs, assert_same, assert_sum_close, for_each_isa};

/// Small geometry from 17 bytes; zero sizes, oversized windows, groups that do not divide
/// and dilations that overrun are all reachable.
fn params(b: &Bytes) -> Conv2dParams {
    let g = b.byte(15) % 5;
    // half the time, make the groups divide the channels (depthwise when equal)
    let (cin, cout) = if b.byte(0) & 0x80 != 0 && g > 0 {
        (g * (b.byte(1) % 2 + 1), g * (b.byte(4) % 3 + 1))
    } else {
        (b.byte(1) % 5, b.byte(4) % 9)
    };
    // batches of 0-2 images, and one time in 16 of 8-10 (a group of eight images in the
    // vector lanes, and a partial one: `conv::lanes`); byte 16's low nibble, 14, appears
    // in none of the regression inputs, which keep their shapes
    let lanes = if b.byte(16) % 16 == 14 { 8 } else { 0 };
    Conv2dParams::new(
        b.byte(0) % 3 + lanes,
        cin,
        b.byte(2) % 12,
        b.byte(3) % 12,
        cout,
        b.byte(5) % 5,
        b.byte(6) % 5,
    )
    .with_stride(b.byte(7) % 4, b.byte(8) % 4)
    .with_padding(
        b.byte(9) % 5,
        b.byte(10) % 5,
        b.byte(11) % 5,
        b.byte(12) % 5,
    )
    .with_dilation(b.byte(13) % 3, b.byte(14) % 3)
    .with_groups(g)
}

fn activation(b: &Bytes, i: usize, lo: f32, hi: f32) -> Activation {
    match b.byte(i) % 4 {
        0 => Activation::None,
        1 => Activation::Relu,
        _ => Activation::Clamp { min: lo, max: hi },
    }
}

/// conv2d forward and backward against the reference.
pub fn conv2d(data: &[u8]) {
    let mut b = Bytes::new(data, 18);
    let p = params(&b);
    let d = match p.dims() {
        Ok(d) => d,
        Err(e) => {
            let mut y = [0.0; 4];
            let mut s = [0.0; 4];
            assert_eq!(
                k::conv2d_direct(&p, &[], &[], None, Activation::None, &mut y),
                Err(e)
            );
            assert_eq!(
                k::conv2d_direct_scalar(&p, &[], &[], None, Activation::None, &mut y),
                Err(e)
            );
            assert_eq!(
                k::conv2d(&p, &[], &[], None, Activation::None, &mut y, &mut s),
                Err(e)
            );
            assert_eq!(
                k::conv2d_implicit(&p, &[], &[], None, Activation::None, &mut y, &mut s),
                Err(e)
            );
            assert_eq!(
                k::conv2d_winograd(&p, &[], &[], None, Activation::None, &mut y, &mut s),
                Err(e)
            );
            assert_eq!(k::conv2d_winograd_scratch_len(&p), Err(e));
            assert_eq!(
                r::conv2d_winograd_magnitude(&p, &[], &[], None, &mut y),
                Err(e)
            );
            assert_eq!(
                k::conv2d_backward_input(&p, &[], &[], &mut y, &mut s),
                Err(e)
            );
            assert_eq!(
                k::conv2d_backward_weight(&p, &[], &[], &mut y, &mut s),
                Err(e)
            );
            assert_eq!(
                k::conv2d_backward_weight_sparse(&p, &[], 1, &[], &[], &mut y, None, &mut s),
                Err(e)
            );
            assert_eq!(
                r::conv2d(&p, &[], &[], None, Activation::None, &mut y),
                Err(e)
            );
            return;
        }
    };
    let (lo, hi) = (b.float(), b.float());
    let act = activation(&b, 16, lo, hi);
    let with_bias = b.byte(17) & 1 == 1;
    let x = b.floats(d.input_len);
    let w = b.floats(d.weight_len);
    let bias = b.floats(d.bias_len);
    let gy = b.floats(d.output_len);
    let bias = with_bias.then_some(&bias[..]);

    let mut want = vec![0.0; d.output_len];
    let res = r::conv2d(&p, &x, &w, bias, act, &mut want);
    if let Err(e) = res {
        // only a clamp with NaN or crossed bounds is left to reject
        assert!(act.bounds().is_err(), "{e:?}");
        let mut y = vec![0.0; d.output_len];
        let mut s = vec![0.0; k::conv2d_scratch_len(&p).unwrap()];
        assert_eq!(k::conv2d(&p, &x, &w, bias, act, &mut y, &mut s), Err(e));
        let mut s = vec![0.0; k::conv2d_implicit_scratch_len(&p).unwrap()];
        assert_eq!(
            k::conv2d_implicit(&p, &x, &w, bias, act, &mut y, &mut s),
            Err(e)
        );
        assert_eq!(
            k::conv2d_direct_scalar(&p, &x, &w, bias, act, &mut y),
            Err(e)
        );
        assert_eq!(
            k::conv2d_winograd(&p, &x, &w, bias, act, &mut y, &mut []),
            Err(e)
        );
        return;
    }
    let mut mag = vec![0.0; d.output_len];
    let abias = bias.map(abs);
    r::conv2d(
        &p,
        &abs(&x),
        &abs(&w),
        abias.as_deref(),
        Activation::None,
        &mut mag,
    )
    .unwrap();
    let terms = d.col_rows + 1;
    // Winograd's F(2x2, 3x3) where it applies (3x3, stride 1, no dilation): its own
    // rounding bound, `(C + 14) eps` times `conv2d_winograd_magnitude`, with outputs whose
    // sums may overflow on the way (their f32 sum, rounded up by that much, passing MAX)
    // unbounded, as in `sum_must_fit`
    let wino_terms = d.in_per_group + 14;
    let wino_mag = k::conv2d_winograd_scratch_len(&p).ok().map(|len| {
        let mut m = vec![0.0; d.output_len];
        r::conv2d_winograd_magnitude(&p, &x, &w, bias, &mut m).unwrap();
        let grow = 1.0 + (wino_terms as f64 + 2.0) * f64::from(f32::EPSILON);
        for v in &mut m {
            if f64::from(*v) * grow > f64::from(f32::MAX) {
                *v = f32::INFINITY;
            }
        }
        (m, len)
    });
    let (ax, aw, agy) = (abs(&x), abs(&w), abs(&gy));
    let mut gx_ref = vec![0.0; d.input_len];
    let mut gx_mag = vec![0.0; d.input_len];
    r::conv2d_backward_input(&p, &w, &gy, &mut gx_ref).unwrap();
    r::conv2d_backward_input(&p, &aw, &agy, &mut gx_mag).unwrap();
    let mut gw_ref = vec![0.0; d.weight_len];
    let mut gw_mag = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(&p, &x, &gy, &mut gw_ref).unwrap();
    r::conv2d_backward_weight(&p, &ax, &agy, &mut gw_mag).unwrap();
    let mut gb_ref = vec![0.0; d.bias_len];
    let mut gb_mag = vec![0.0; d.bias_len];
    r::conv2d_backward_bias(&p, &gy, &mut gb_ref).unwrap();
    r::conv2d_backward_bias(&p, &agy, &mut gb_mag).unwrap();

    for_each_isa(|isa| {
        let name = isa.name();
        let mut got = vec![f32::NAN; d.output_len];
        k::conv2d_direct(&p, &x, &w, bias, act, &mut got).unwrap();
        assert_sum_close(&format!("direct ({name})"), &got, &want, &mag, terms);
        let mut got = vec![f32::NAN; d.output_len];
        k::conv2d_direct_scalar(&p, &x, &w, bias, act, &mut got).unwrap();
        assert_sum_close(&format!("direct scalar ({name})"), &got, &want, &mag, terms);
        let mut s = vec![f32::NAN; k::conv2d_im2col_scratch_len(&p).unwrap()];
        let mut got = vec![f32::NAN; d.output_len];
        k::conv2d_im2col(&p, &x, &w, bias, act, &mut got, &mut s).unwrap();
        assert_sum_close(&format!("im2col ({name})"), &got, &want, &mag, terms);
        let mut s = vec![f32::NAN; k::conv2d_implicit_scratch_len(&p).unwrap()];
        let mut got = vec![f32::NAN; d.output_len];
        k::conv2d_implicit(&p, &x, &w, bias, act, &mut got, &mut s).unwrap();
        assert_sum_close(&format!("implicit ({name})"), &got, &want, &mag, terms);
        let mut s = vec![f32::NAN; k::conv2d_scratch_len(&p).unwrap()];
        let mut got = vec![f32::NAN; d.output_len];
        k::conv2d(&p, &x, &w, bias, act, &mut got, &mut s).unwrap();
        assert_sum_close(&format!("conv2d ({name})"), &got, &want, &mag, terms);
        if let Some((wmag, len)) = &wino_mag {
            let mut s = vec![f32::NAN; *len];
            let mut got = vec![f32::NAN; d.output_len];
            k::conv2d_winograd(&p, &x, &w, bias, act, &mut got, &mut s).unwrap();
            let what = format!("winograd ({name})");
            assert_sum_close(&what, &got, &want, wmag, wino_terms);
        }

        let mut gx = vec![f32::NAN; d.input_len];
        let mut s = vec![f32::NAN; k::conv2d_backward_input_scratch_len(&p).unwrap()];
        k::conv2d_backward_input(&p, &w, &gy, &mut gx, &mut s).unwrap();
        let terms = d.out_per_group * p.kernel_h * p.kernel_w;
        assert_sum_close(
            &format!("grad_input ({name})"),
            &gx,
            &gx_ref,
            &gx_mag,
            terms,
        );
        let mut gw = vec![f32::NAN; d.weight_len];
        let mut s = vec![f32::NAN; k::conv2d_backward_weight_scratch_len(&p).unwrap()];
        k::conv2d_backward_weight(&p, &x, &gy, &mut gw, &mut s).unwrap();
        let terms = p.batch * d.col_cols;
        assert_sum_close(
            &format!("grad_weight ({name})"),
            &gw,
            &gw_ref,
            &gw_mag,
            terms,
        );
        let mut gb = vec![f32::NAN; d.bias_len];
        k::conv2d_backward_bias(&p, &gy, &mut gb).unwrap();
        assert_sum_close(&format!("grad_bias ({name})"), &gb, &gb_ref, &gb_mag, terms);

        // the sparse weight gradient with every position listed (last to first) is the
        // dense one, non-finite values included
        let plane = d.out_h * d.out_w;
        let pos: Vec<u32> = (0..gy.len())
            .map(|i| (plane - 1 - i % plane) as u32)
            .collect();
        let vals: Vec<f32> = pos
            .iter()
            .enumerate()
            .map(|(i, &q)| gy[i / plane * plane + q as usize])
            .collect();
        let mut gw = vec![f32::NAN; d.weight_len];
        let mut gb = vec![f32::NAN; d.bias_len];
        let mut s = vec![f32::NAN; k::conv2d_backward_weight_sparse_scratch_len(&p).unwrap()];
        k::conv2d_backward_weight_sparse(
            &p,
            &x,
            plane,
            &pos,
            &vals,
            &mut gw,
            Some(&mut gb),
            &mut s,
        )
        .unwrap();
        assert_sum_close(
            &format!("sparse grad_weight ({name})"),
            &gw,
            &gw_ref,
            &gw_mag,
            terms,
        );
        assert_sum_close(
            &format!("sparse grad_bias ({name})"),
            &gb,
            &gb_ref,
            &gb_mag,
            terms,
        );
    });
}

/// im2col (a copy: bit-equal) and col2im (a scatter-add: the sum bound).
pub fn im2col(data: &[u8]) {
    let mut b = Bytes::new(data, 16);
    let p = params(&b);
    let d = match p.dims() {
        Ok(d) => d,
        Err(e) => {
            let mut y = [0.0; 4];
            assert_eq!(k::im2col(&p, &[], &mut y), Err(e));
            assert_eq!(k::col2im(&p, &[], &mut y), Err(e));
            assert_eq!(r::im2col(&p, &[], &mut y), Err(e));
            return;
        }
    };
    // one image's channels (all groups): the col matrix is [c_in * kh * kw, out_h * out_w]
    let image = b.floats(d.image_len);
    let col_len = d.col_len;
    let col = b.floats(col_len);
    let mut want = vec![0.0; col_len];
    r::im2col(&p, &image, &mut want).unwrap();
    let mut want_img = vec![0.0; d.image_len];
    r::col2im(&p, &col, &mut want_img).unwrap();
    let mut mag = vec![0.0; d.image_len];
    r::col2im(&p, &abs(&col), &mut mag).unwrap();
    for_each_isa(|isa| {
        let mut got = vec![f32::NAN; col_len];
        k::im2col(&p, &image, &mut got).unwrap();
        assert_same(&format!("im2col ({})", isa.name()), &got, &want);
        let mut img = vec![f32::NAN; d.image_len];
        k::col2im(&p, &col, &mut img).unwrap();
        // the reference accumulates col2im in f32 too (it has no scratch for f64 sums),
        // so both sides carry a kh*kw-term rounding error
        let terms = 2 * p.kernel_h * p.kernel_w;
        assert_sum_close(
            &format!("col2im ({})", isa.name()),
            &img,
            &want_img,
            &mag,
            terms,
        );
    });
    // wrong lengths are errors, not panics
    let mut short = vec![0.0; col_len.saturating_sub(1)];
    if col_len > 0 {
        assert!(k::im2col(&p, &image, &mut short).is_err());
        assert!(k::col2im(&p, &short, &mut vec![0.0; d.image_len]).is_err());
    }
}
