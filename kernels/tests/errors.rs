//! Every invalid input returns the matching error, leaves the outputs untouched, and
//! never panics: zero sizes, zero strides and dilations, bad groups, sizes that overflow
//! usize, slices too short or too long, too little scratch, bad clamps, labels, indices
//! and leading dimensions.

use cnnkit_kernels::{
    self as k, Activation, Conv2dParams, GemmParams, KernelError as E, LinearParams, Pool2dParams,
    reference as r,
};

const BIG: usize = usize::MAX / 2 + 1;

fn conv_ok() -> Conv2dParams {
    Conv2dParams::new(2, 4, 6, 7, 6, 3, 3)
        .with_groups(2)
        .with_padding(1, 0, 1, 2)
}

/// Runs every conv entry point (optimized and reference) on `p` with slices sized for
/// `q` (a valid geometry) and returns each one's error.
fn conv_errors(p: &Conv2dParams, q: &Conv2dParams) -> Vec<(&'static str, Result<(), E>)> {
    let d = q.dims().unwrap();
    let x = vec![0.0; d.input_len];
    let w = vec![0.0; d.weight_len];
    let b = vec![0.0; d.bias_len];
    let mut y = vec![0.0; d.output_len];
    let mut gx = vec![0.0; d.input_len];
    let mut gw = vec![0.0; d.weight_len];
    let mut gb = vec![0.0; d.bias_len];
    let mut col = vec![0.0; d.col_len];
    let img = vec![0.0; d.image_len];
    let mut img2 = vec![0.0; d.image_len];
    let mut s = vec![0.0; 1 << 16];
    let a = Activation::Relu;
    vec![
        ("conv2d", k::conv2d(p, &x, &w, Some(&b), a, &mut y, &mut s)),
        ("direct", k::conv2d_direct(p, &x, &w, Some(&b), a, &mut y)),
        (
            "direct scalar",
            k::conv2d_direct_scalar(p, &x, &w, Some(&b), a, &mut y),
        ),
        (
            "im2col conv",
            k::conv2d_im2col(p, &x, &w, Some(&b), a, &mut y, &mut s),
        ),
        (
            "implicit conv",
            k::conv2d_implicit(p, &x, &w, Some(&b), a, &mut y, &mut s),
        ),
        (
            "winograd conv",
            k::conv2d_winograd(p, &x, &w, Some(&b), a, &mut y, &mut s),
        ),
        ("ref conv", r::conv2d(p, &x, &w, Some(&b), a, &mut y)),
        (
            "ref winograd magnitude",
            r::conv2d_winograd_magnitude(p, &x, &w, Some(&b), &mut y),
        ),
        (
            "bwd input",
            k::conv2d_backward_input(p, &w, &y.clone(), &mut gx, &mut s),
        ),
        (
            "ref bwd input",
            r::conv2d_backward_input(p, &w, &y.clone(), &mut gx),
        ),
        (
            "bwd weight",
            k::conv2d_backward_weight(p, &x, &y.clone(), &mut gw, &mut s),
        ),
        (
            "ref bwd weight",
            r::conv2d_backward_weight(p, &x, &y.clone(), &mut gw),
        ),
        ("bwd bias", k::conv2d_backward_bias(p, &y.clone(), &mut gb)),
        (
            "ref bwd bias",
            r::conv2d_backward_bias(p, &y.clone(), &mut gb),
        ),
        ("im2col", k::im2col(p, &img, &mut col)),
        ("ref im2col", r::im2col(p, &img, &mut col)),
        ("col2im", k::col2im(p, &col.clone(), &mut img2)),
        ("ref col2im", r::col2im(p, &col.clone(), &mut img2)),
        ("algo", k::conv2d_algo(p).map(|_| ())),
        ("scratch len", k::conv2d_scratch_len(p).map(|_| ())),
        (
            "im2col scratch len",
            k::conv2d_im2col_scratch_len(p).map(|_| ()),
        ),
        (
            "implicit scratch len",
            k::conv2d_implicit_scratch_len(p).map(|_| ()),
        ),
        (
            "winograd scratch len",
            k::conv2d_winograd_scratch_len(p).map(|_| ()),
        ),
        (
            "bwd input scratch len",
            k::conv2d_backward_input_scratch_len(p).map(|_| ()),
        ),
        (
            "bwd weight scratch len",
            k::conv2d_backward_weight_scratch_len(p).map(|_| ()),
        ),
        (
            "sparse bwd weight",
            k::conv2d_backward_weight_sparse(
                p,
                &x,
                1,
                &vec![0; q.batch * q.out_channels],
                &vec![0.0; q.batch * q.out_channels],
                &mut gw,
                Some(&mut gb),
                &mut s,
            ),
        ),
        (
            "sparse bwd weight scratch len",
            k::conv2d_backward_weight_sparse_scratch_len(p).map(|_| ()),
        ),
    ]
}

/// Every argument of the sparse weight gradient checked, nothing written on error.
#[test]
fn sparse_weight_gradient_errors() {
    let p = conv_ok();
    let d = p.dims().unwrap();
    let n = p.batch * p.out_channels * 2;
    let x = vec![0.0; d.input_len];
    let (pos, val) = (vec![0u32; n], vec![1.0; n]);
    let mut gw = vec![7.0; d.weight_len];
    let mut gb = vec![7.0; d.bias_len];
    let need = k::conv2d_backward_weight_sparse_scratch_len(&p).unwrap();
    let mut s = vec![0.0; need];
    let mm = |arg, expected, actual| {
        Err(E::LengthMismatch {
            arg,
            expected,
            actual,
        })
    };
    let f = k::conv2d_backward_weight_sparse;
    assert_eq!(
        f(&p, &x, 0, &[], &[], &mut gw, Some(&mut gb), &mut s),
        Err(E::ZeroSize("per_plane"))
    );
    assert_eq!(
        f(&p, &x[1..], 2, &pos, &val, &mut gw, None, &mut s),
        mm("input", d.input_len, d.input_len - 1)
    );
    assert_eq!(
        f(&p, &x, 2, &pos[1..], &val, &mut gw, None, &mut s),
        mm("positions", n, n - 1)
    );
    assert_eq!(
        f(&p, &x, 3, &pos, &val, &mut gw, None, &mut s),
        mm("positions", n / 2 * 3, n)
    );
    assert_eq!(
        f(&p, &x, 2, &pos, &val[1..], &mut gw, None, &mut s),
        mm("values", n, n - 1)
    );
    assert_eq!(
        f(&p, &x, 2, &pos, &val, &mut gw[1..], None, &mut s),
        mm("grad_weight", d.weight_len, d.weight_len - 1)
    );
    assert_eq!(
        f(&p, &x, 2, &pos, &val, &mut gw, Some(&mut gb[1..]), &mut s),
        mm("grad_bias", d.bias_len, d.bias_len - 1)
    );
    assert_eq!(
        f(&p, &x, 2, &pos, &val, &mut gw, None, &mut s[..need - 1]),
        Err(E::ScratchTooSmall {
            needed: need,
            actual: need - 1
        })
    );
    let mut bad = pos.clone();
    let plane = (d.out_h * d.out_w) as u32;
    bad[5] = plane;
    bad[7] = plane + 1;
    assert_eq!(
        f(&p, &x, 2, &bad, &val, &mut gw, Some(&mut gb), &mut s),
        Err(E::InvalidIndex {
            index: 5,
            value: plane
        })
    );
    assert!(
        gw.iter().chain(&gb).all(|&v| v == 7.0),
        "nothing written on error"
    );
    // the largest position and NO_INDEX are fine
    bad[5] = plane - 1;
    bad[7] = k::NO_INDEX;
    assert_eq!(
        f(&p, &x, 2, &bad, &val, &mut gw, Some(&mut gb), &mut s),
        Ok(())
    );
}

fn all_conv_fail(p: Conv2dParams, want: E) {
    for (name, res) in conv_errors(&p, &conv_ok()) {
        assert_eq!(res, Err(want), "{name} on {p:?}");
    }
}

#[test]
fn conv_geometry_errors() {
    let q = conv_ok();
    all_conv_fail(Conv2dParams { batch: 0, ..q }, E::ZeroSize("batch"));
    all_conv_fail(
        Conv2dParams {
            in_channels: 0,
            ..q
        },
        E::ZeroSize("in_channels"),
    );
    all_conv_fail(Conv2dParams { in_h: 0, ..q }, E::ZeroSize("in_h"));
    all_conv_fail(Conv2dParams { in_w: 0, ..q }, E::ZeroSize("in_w"));
    all_conv_fail(
        Conv2dParams {
            out_channels: 0,
            ..q
        },
        E::ZeroSize("out_channels"),
    );
    all_conv_fail(Conv2dParams { kernel_h: 0, ..q }, E::ZeroSize("kernel_h"));
    all_conv_fail(Conv2dParams { kernel_w: 0, ..q }, E::ZeroSize("kernel_w"));
    all_conv_fail(q.with_stride(0, 1), E::ZeroStride);
    all_conv_fail(q.with_stride(1, 0), E::ZeroStride);
    all_conv_fail(q.with_dilation(0, 1), E::ZeroDilation);
    all_conv_fail(q.with_dilation(2, 0), E::ZeroDilation);
    for g in [0, 3, 4] {
        all_conv_fail(
            q.with_groups(g),
            E::InvalidGroups {
                groups: g,
                in_channels: 4,
                out_channels: 6,
            },
        );
    }
    // kernel larger than the padded input
    all_conv_fail(q.with_dilation(4, 1), E::EmptyOutput);
    all_conv_fail(Conv2dParams { kernel_w: 11, ..q }, E::EmptyOutput);
    // sizes that overflow usize
    all_conv_fail(Conv2dParams { batch: BIG, ..q }, E::Overflow);
    all_conv_fail(q.with_padding(usize::MAX, 1, 0, 0), E::Overflow);
    all_conv_fail(q.with_dilation(BIG, 1), E::Overflow);
    all_conv_fail(
        Conv2dParams {
            in_channels: BIG,
            out_channels: BIG,
            groups: 1,
            ..q
        },
        E::Overflow,
    );
    all_conv_fail(
        Conv2dParams {
            in_h: BIG,
            in_w: BIG,
            ..q
        },
        E::Overflow,
    );
    // huge but representable geometry: refused by the slice lengths, not by a panic
    let huge = q.with_padding(BIG - 100, 0, 0, 0).with_stride(BIG / 4, 1);
    for (name, res) in conv_errors(&huge, &q) {
        assert!(
            res.is_err() || name.contains("len") || name == "algo",
            "{name}: {res:?}"
        );
    }
}

#[test]
fn conv_slice_and_scratch_errors() {
    let p = conv_ok();
    let d = p.dims().unwrap();
    let x = vec![0.0; d.input_len];
    let w = vec![0.0; d.weight_len];
    let b = vec![0.0; d.bias_len];
    let mut y = vec![7.0; d.output_len];
    let scratch_len = k::conv2d_im2col_scratch_len(&p)
        .unwrap()
        .max(k::conv2d_implicit_scratch_len(&p).unwrap());
    let mut s = vec![0.0; scratch_len];
    let a = Activation::None;
    for delta in [-1_isize, 1] {
        let len = |n: usize| (n as isize + delta) as usize;
        let xb = vec![0.0; len(d.input_len)];
        let wb = vec![0.0; len(d.weight_len)];
        let bb = vec![0.0; len(d.bias_len)];
        let mut yb = vec![0.0; len(d.output_len)];
        let mm = |arg, exp: usize, act: usize| {
            Err(E::LengthMismatch {
                arg,
                expected: exp,
                actual: act,
            })
        };
        for f in [
            |p: &Conv2dParams,
             x: &[f32],
             w: &[f32],
             b: Option<&[f32]>,
             a,
             y: &mut [f32],
             s: &mut [f32]| k::conv2d_im2col(p, x, w, b, a, y, s),
            |p: &Conv2dParams,
             x: &[f32],
             w: &[f32],
             b: Option<&[f32]>,
             a,
             y: &mut [f32],
             s: &mut [f32]| k::conv2d_implicit(p, x, w, b, a, y, s),
            |p: &Conv2dParams,
             x: &[f32],
             w: &[f32],
             b: Option<&[f32]>,
             a,
             y: &mut [f32],
             _: &mut [f32]| k::conv2d_direct(p, x, w, b, a, y),
            |p: &Conv2dParams,
             x: &[f32],
             w: &[f32],
             b: Option<&[f32]>,
             a,
             y: &mut [f32],
             _: &mut [f32]| k::conv2d_direct_scalar(p, x, w, b, a, y),
            |p: &Conv2dParams,
             x: &[f32],
             w: &[f32],
             b: Option<&[f32]>,
             a,
             y: &mut [f32],
             _: &mut [f32]| r::conv2d(p, x, w, b, a, y),
        ] {
            assert_eq!(
                f(&p, &xb, &w, Some(&b), a, &mut y, &mut s),
                mm("input", d.input_len, xb.len())
            );
            assert_eq!(
                f(&p, &x, &wb, Some(&b), a, &mut y, &mut s),
                mm("weight", d.weight_len, wb.len())
            );
            assert_eq!(
                f(&p, &x, &w, Some(&bb), a, &mut y, &mut s),
                mm("bias", d.bias_len, bb.len())
            );
            assert_eq!(
                f(&p, &x, &w, Some(&b), a, &mut yb, &mut s),
                mm("output", d.output_len, yb.len())
            );
        }
    }
    assert!(y.iter().all(|&v| v == 7.0), "nothing written on error");
    let need = k::conv2d_im2col_scratch_len(&p).unwrap();
    assert_eq!(
        k::conv2d_im2col(&p, &x, &w, Some(&b), a, &mut y, &mut s[..need - 1]),
        Err(E::ScratchTooSmall {
            needed: need,
            actual: need - 1
        })
    );
    let need = k::conv2d_implicit_scratch_len(&p).unwrap();
    assert_eq!(
        k::conv2d_implicit(&p, &x, &w, Some(&b), a, &mut y, &mut s[..need - 1]),
        Err(E::ScratchTooSmall {
            needed: need,
            actual: need - 1
        })
    );
    let mut gx = vec![0.0; d.input_len];
    let need = k::conv2d_backward_input_scratch_len(&p).unwrap();
    let mut s2 = vec![0.0; need - 1];
    assert_eq!(
        k::conv2d_backward_input(&p, &w, &y.clone(), &mut gx, &mut s2),
        Err(E::ScratchTooSmall {
            needed: need,
            actual: need - 1
        })
    );
    let mut gw = vec![0.0; d.weight_len];
    let need = k::conv2d_backward_weight_scratch_len(&p).unwrap();
    let mut s3 = vec![0.0; need - 1];
    assert_eq!(
        k::conv2d_backward_weight(&p, &x, &y.clone(), &mut gw, &mut s3),
        Err(E::ScratchTooSmall {
            needed: need,
            actual: need - 1
        })
    );
    assert!(y.iter().all(|&v| v == 7.0), "nothing written on error");
    // bad clamps
    for act in [
        Activation::Clamp { min: 1.0, max: 0.0 },
        Activation::Clamp {
            min: f32::NAN,
            max: 0.0,
        },
        Activation::Clamp {
            min: 0.0,
            max: f32::NAN,
        },
    ] {
        assert!(matches!(
            k::conv2d_direct(&p, &x, &w, None, act, &mut y),
            Err(E::InvalidParameter(_))
        ));
        assert!(matches!(
            k::conv2d_direct_scalar(&p, &x, &w, None, act, &mut y),
            Err(E::InvalidParameter(_))
        ));
        assert!(matches!(
            k::conv2d_im2col(&p, &x, &w, None, act, &mut y, &mut s),
            Err(E::InvalidParameter(_))
        ));
        assert!(matches!(
            k::conv2d_implicit(&p, &x, &w, None, act, &mut y, &mut s),
            Err(E::InvalidParameter(_))
        ));
        assert!(matches!(
            k::activation_backward(act, &x, &x, &mut gx),
            Err(E::InvalidParameter(_))
        ));
    }
}

#[test]
fn gemm_errors() {
    let p = GemmParams::new(3, 4, 5);
    let (a, b) = (vec![0.0; 15], vec![0.0; 20]);
    let mut c = vec![1.0; 12];
    let mut s = vec![0.0; k::sgemm_scratch_len(3, 4, 5)];
    let cases = [
        (GemmParams { m: 0, ..p }, E::ZeroSize("m")),
        (GemmParams { n: 0, ..p }, E::ZeroSize("n")),
        (GemmParams { k: 0, ..p }, E::ZeroSize("k")),
        (
            p.with_leading_dims(4, 4, 4),
            E::InvalidLeadingDimension {
                arg: "lda",
                ld: 4,
                min: 5,
            },
        ),
        (
            p.with_leading_dims(5, 3, 4),
            E::InvalidLeadingDimension {
                arg: "ldb",
                ld: 3,
                min: 4,
            },
        ),
        (
            p.with_leading_dims(5, 4, 3),
            E::InvalidLeadingDimension {
                arg: "ldc",
                ld: 3,
                min: 4,
            },
        ),
        (
            p.transpose_a().with_leading_dims(2, 4, 4),
            E::InvalidLeadingDimension {
                arg: "lda",
                ld: 2,
                min: 3,
            },
        ),
        (p.with_leading_dims(BIG, 4, 4), E::Overflow),
        (GemmParams::new(BIG, 4, 5), E::Overflow),
        (
            p.with_leading_dims(6, 4, 4),
            E::LengthMismatch {
                arg: "a",
                expected: 17,
                actual: 15,
            },
        ),
        (
            p.with_leading_dims(5, 5, 4),
            E::LengthMismatch {
                arg: "b",
                expected: 24,
                actual: 20,
            },
        ),
        (
            p.with_leading_dims(5, 4, 5),
            E::LengthMismatch {
                arg: "c",
                expected: 14,
                actual: 12,
            },
        ),
    ];
    for (q, e) in cases {
        assert_eq!(k::sgemm(&q, &a, &b, &mut c, &mut s), Err(e), "{q:?}");
        assert_eq!(r::sgemm(&q, &a, &b, &mut c), Err(e), "ref {q:?}");
    }
    assert_eq!(
        k::sgemm(&p, &a[..14], &b, &mut c, &mut s),
        Err(E::LengthMismatch {
            arg: "a",
            expected: 15,
            actual: 14
        })
    );
    let n = s.len();
    assert_eq!(
        k::sgemm(&p, &a, &b, &mut c, &mut s[..n - 1]),
        Err(E::ScratchTooSmall {
            needed: n,
            actual: n - 1
        })
    );
    assert!(c.iter().all(|&v| v == 1.0));
    // longer operands are views into larger buffers, and fine
    assert_eq!(k::sgemm(&p, &[0.0; 40], &b, &mut c, &mut s), Ok(()));
}

#[test]
fn pool_errors() {
    let q = Pool2dParams::new(2, 3, 8, 8, 2, 2);
    let d = q.dims().unwrap();
    let x = vec![0.0; d.input_len];
    let mut y = vec![0.0; d.output_len];
    let mut idx = vec![0_u32; d.output_len];
    type Run = fn(&Pool2dParams, &[f32], &mut [f32], &mut [u32]) -> Result<(), E>;
    let runs: [(&str, Run); 10] = [
        ("max", |p, x, y, i| k::max_pool2d(p, x, y, Some(i))),
        ("max no idx", |p, x, y, _| k::max_pool2d(p, x, y, None)),
        ("min", |p, x, y, i| k::min_pool2d(p, x, y, Some(i))),
        ("ref max", |p, x, y, i| r::max_pool2d(p, x, y, Some(i))),
        ("ref min", |p, x, y, i| r::min_pool2d(p, x, y, Some(i))),
        ("avg", |p, x, y, _| k::avg_pool2d(p, true, x, y)),
        ("ref avg", |p, x, y, _| r::avg_pool2d(p, false, x, y)),
        ("max bwd", |p, x, y, i| {
            k::max_pool2d_backward(p, i, y, &mut x.to_vec())
        }),
        ("avg bwd", |p, x, y, _| {
            k::avg_pool2d_backward(p, true, y, &mut x.to_vec())
        }),
        ("ref avg bwd", |p, x, y, _| {
            r::avg_pool2d_backward(p, true, y, &mut x.to_vec())
        }),
    ];
    let cases = [
        (Pool2dParams { batch: 0, ..q }, E::ZeroSize("batch")),
        (Pool2dParams { channels: 0, ..q }, E::ZeroSize("channels")),
        (Pool2dParams { in_h: 0, ..q }, E::ZeroSize("in_h")),
        (Pool2dParams { kernel_w: 0, ..q }, E::ZeroSize("kernel_w")),
        (q.with_stride(0, 2), E::ZeroStride),
        (q.with_dilation(1, 0), E::ZeroDilation),
        (Pool2dParams { kernel_h: 9, ..q }, E::EmptyOutput),
        (Pool2dParams { batch: BIG, ..q }, E::Overflow),
        (q.with_padding(0, 0, usize::MAX, 1), E::Overflow),
    ];
    for (p, e) in cases {
        for (name, f) in runs {
            assert_eq!(f(&p, &x, &mut y, &mut idx), Err(e), "{name} {p:?}");
        }
    }
    for (name, f) in runs {
        let mut short = vec![0.0; d.output_len - 1];
        let mut ishort = vec![0; d.output_len - 1];
        assert!(
            matches!(
                f(&q, &x, &mut short, &mut ishort),
                Err(E::LengthMismatch { .. })
            ),
            "{name}"
        );
        let mut long = vec![0.0; d.output_len + 1];
        let mut ilong = vec![0; d.output_len + 1];
        assert!(
            matches!(
                f(&q, &x, &mut long, &mut ilong),
                Err(E::LengthMismatch { .. })
            ),
            "{name}"
        );
        assert!(
            matches!(
                f(&q, &x[1..], &mut y, &mut idx),
                Err(E::LengthMismatch { .. })
            ),
            "{name}"
        );
    }
    // indices shorter than the output
    assert_eq!(
        k::max_pool2d(&q, &x, &mut y, Some(&mut idx[1..])),
        Err(E::LengthMismatch {
            arg: "indices",
            expected: d.output_len,
            actual: d.output_len - 1
        })
    );
    // an index outside the plane, checked before anything is written
    let mut bad = vec![0_u32; d.output_len];
    bad[5] = 64;
    let mut gx = vec![3.0; d.input_len];
    assert_eq!(
        k::max_pool2d_backward(&q, &bad, &y, &mut gx),
        Err(E::InvalidIndex {
            index: 5,
            value: 64
        })
    );
    assert_eq!(
        r::max_pool2d_backward(&q, &bad, &y, &mut gx),
        Err(E::InvalidIndex {
            index: 5,
            value: 64
        })
    );
    assert_eq!(
        k::min_pool2d_backward(&q, &bad, &y, &mut gx),
        Err(E::InvalidIndex {
            index: 5,
            value: 64
        })
    );
    assert!(gx.iter().all(|&v| v == 3.0));
    // indices cannot represent planes of 2^32 - 1 elements or more
    let wide = Pool2dParams::new(1, 1, 1 << 16, 1 << 16, 1 << 16, 1 << 16);
    #[cfg(target_pointer_width = "64")]
    assert_eq!(
        k::max_pool2d(&wide, &[], &mut [0.0], Some(&mut [0])),
        Err(E::LengthMismatch {
            arg: "input",
            expected: 1 << 32,
            actual: 0
        })
    );
    // (on 32-bit targets, wasm32 say, the plane's size overflows usize first)
    #[cfg(not(target_pointer_width = "64"))]
    assert_eq!(
        k::max_pool2d(&wide, &[], &mut [0.0], Some(&mut [0])),
        Err(E::Overflow)
    );
    // a huge window with huge padding neither panics nor loops
    let huge = Pool2dParams::new(1, 1, 2, 2, BIG / 2 + 1, BIG / 2 + 1).with_padding(
        BIG / 2,
        0,
        BIG / 2,
        0,
    );
    let (mut y1, mut i1) = ([0.0], [0]);
    assert_eq!(
        k::max_pool2d(&huge, &[1.0, 2.0, 3.0, 4.0], &mut y1, Some(&mut i1)),
        Ok(())
    );
    assert_eq!((y1[0], i1[0]), (1.0, 0));
    assert_eq!(
        k::avg_pool2d(&huge, false, &[1.0, 2.0, 3.0, 4.0], &mut y1),
        Ok(())
    );
    assert_eq!(y1[0], 1.0);
    // global pooling
    assert_eq!(
        k::global_avg_pool2d(0, 1, 1, 1, &[], &mut []),
        Err(E::ZeroSize("batch"))
    );
    assert_eq!(
        k::global_avg_pool2d(1, 1, 2, 2, &[0.0; 4], &mut []),
        Err(E::LengthMismatch {
            arg: "output",
            expected: 1,
            actual: 0
        })
    );
    assert_eq!(
        k::global_avg_pool2d_backward(1, 1, BIG, 4, &[0.0], &mut []),
        Err(E::Overflow)
    );
}

#[test]
fn elementwise_errors() {
    let x = [1.0_f32; 9];
    let mut y = [0.0_f32; 9];
    let mut y8 = [0.0_f32; 8];
    assert_eq!(k::relu(&[], &mut []), Err(E::ZeroSize("input")));
    assert_eq!(
        k::relu(&x, &mut y8),
        Err(E::LengthMismatch {
            arg: "output",
            expected: 9,
            actual: 8
        })
    );
    assert_eq!(
        r::relu(&x, &mut y8),
        Err(E::LengthMismatch {
            arg: "output",
            expected: 9,
            actual: 8
        })
    );
    assert_eq!(
        k::tanh(&x, &mut [0.0; 10]),
        Err(E::LengthMismatch {
            arg: "output",
            expected: 9,
            actual: 10
        })
    );
    assert_eq!(
        k::sigmoid(&x[..8], &mut y),
        Err(E::LengthMismatch {
            arg: "output",
            expected: 8,
            actual: 9
        })
    );
    assert_eq!(k::relu_inplace(&mut []), Err(E::ZeroSize("input")));
    assert_eq!(k::tanh_inplace(&mut []), Err(E::ZeroSize("input")));
    assert_eq!(k::sigmoid_inplace(&mut []), Err(E::ZeroSize("input")));
    assert_eq!(
        k::tanh_backward(&x, &x[1..], &mut y),
        Err(E::LengthMismatch {
            arg: "grad_output",
            expected: 9,
            actual: 8
        })
    );
    assert_eq!(
        k::sigmoid_backward(&x, &x, &mut y8),
        Err(E::LengthMismatch {
            arg: "grad_input",
            expected: 9,
            actual: 8
        })
    );
    assert_eq!(
        k::relu_backward(&[], &[], &mut []),
        Err(E::ZeroSize("input"))
    );
    assert_eq!(
        k::relu_backward_inplace(&[], &mut []),
        Err(E::ZeroSize("input"))
    );
    assert_eq!(
        k::relu_backward_inplace(&x, &mut y8),
        Err(E::LengthMismatch {
            arg: "grad",
            expected: 9,
            actual: 8
        })
    );
    for s in [f32::NAN, f32::INFINITY] {
        assert!(matches!(
            k::leaky_relu(s, &x, &mut y),
            Err(E::InvalidParameter(_))
        ));
        assert!(matches!(
            k::leaky_relu_inplace(s, &mut y),
            Err(E::InvalidParameter(_))
        ));
        assert!(matches!(
            k::leaky_relu_backward(s, &x, &x, &mut y),
            Err(E::InvalidParameter(_))
        ));
        assert!(matches!(
            r::leaky_relu(s, &x, &mut y),
            Err(E::InvalidParameter(_))
        ));
    }
    // softmax family
    assert_eq!(k::softmax(0, 3, &[], &mut []), Err(E::ZeroSize("rows")));
    assert_eq!(k::log_softmax(3, 0, &[], &mut []), Err(E::ZeroSize("cols")));
    assert_eq!(k::softmax(BIG, 4, &[], &mut []), Err(E::Overflow));
    assert_eq!(
        k::softmax(3, 3, &x[..8], &mut y),
        Err(E::LengthMismatch {
            arg: "input",
            expected: 9,
            actual: 8
        })
    );
    assert_eq!(
        k::log_softmax(3, 3, &x, &mut y8),
        Err(E::LengthMismatch {
            arg: "output",
            expected: 9,
            actual: 8
        })
    );
    assert_eq!(
        k::softmax_backward(3, 3, &x, &x[1..], &mut y),
        Err(E::LengthMismatch {
            arg: "grad_output",
            expected: 9,
            actual: 8
        })
    );
    assert_eq!(
        k::log_softmax_backward(3, 3, &x, &x, &mut y8),
        Err(E::LengthMismatch {
            arg: "grad_input",
            expected: 9,
            actual: 8
        })
    );
    // losses
    assert_eq!(
        k::cross_entropy(3, 3, &x, &[0, 3, 1]),
        Err(E::InvalidLabel {
            index: 1,
            label: 3,
            classes: 3
        })
    );
    assert_eq!(
        r::cross_entropy(3, 3, &x, &[0, 3, 1]),
        Err(E::InvalidLabel {
            index: 1,
            label: 3,
            classes: 3
        })
    );
    assert_eq!(
        k::cross_entropy(3, 3, &x, &[0, 1]),
        Err(E::LengthMismatch {
            arg: "labels",
            expected: 3,
            actual: 2
        })
    );
    assert_eq!(k::cross_entropy(0, 3, &[], &[]), Err(E::ZeroSize("rows")));
    assert_eq!(
        k::cross_entropy(3, 3, &x[1..], &[0, 1, 2]),
        Err(E::LengthMismatch {
            arg: "logits",
            expected: 9,
            actual: 8
        })
    );
    let mut g = [5.0; 9];
    assert_eq!(
        k::softmax_cross_entropy(3, 3, &x, &[0, 1, 9], &mut g),
        Err(E::InvalidLabel {
            index: 2,
            label: 9,
            classes: 3
        })
    );
    assert_eq!(
        k::softmax_cross_entropy(3, 3, &x, &[0, 1, 2], &mut y8),
        Err(E::LengthMismatch {
            arg: "grad",
            expected: 9,
            actual: 8
        })
    );
    assert!(g.iter().all(|&v| v == 5.0));
    assert_eq!(k::mse_loss(&[], &[]), Err(E::ZeroSize("pred")));
    assert_eq!(
        k::mse_loss(&x, &x[1..]),
        Err(E::LengthMismatch {
            arg: "target",
            expected: 9,
            actual: 8
        })
    );
    assert_eq!(
        k::mse_loss_backward(&x, &x, &mut y8),
        Err(E::LengthMismatch {
            arg: "grad",
            expected: 9,
            actual: 8
        })
    );
    assert_eq!(
        r::mse_loss(&x, &x[1..]),
        Err(E::LengthMismatch {
            arg: "target",
            expected: 9,
            actual: 8
        })
    );
}

#[test]
fn linear_errors() {
    let p = LinearParams::new(2, 3, 4);
    let (x, w, b) = (vec![0.0; 6], vec![0.0; 12], vec![0.0; 4]);
    let mut y = vec![0.0; 8];
    let mut s = vec![0.0; 4096];
    let a = Activation::None;
    assert_eq!(
        k::linear(&LinearParams::new(0, 3, 4), &x, &w, None, a, &mut y, &mut s),
        Err(E::ZeroSize("batch"))
    );
    assert_eq!(
        k::linear(&LinearParams::new(2, 0, 4), &x, &w, None, a, &mut y, &mut s),
        Err(E::ZeroSize("in_features"))
    );
    assert_eq!(
        k::linear(&LinearParams::new(2, 3, 0), &x, &w, None, a, &mut y, &mut s),
        Err(E::ZeroSize("out_features"))
    );
    assert_eq!(
        k::linear(
            &LinearParams::new(BIG, 3, 4),
            &x,
            &w,
            None,
            a,
            &mut y,
            &mut s
        ),
        Err(E::Overflow)
    );
    assert_eq!(
        k::linear(&p, &x[1..], &w, None, a, &mut y, &mut s),
        Err(E::LengthMismatch {
            arg: "input",
            expected: 6,
            actual: 5
        })
    );
    assert_eq!(
        k::linear(&p, &x, &w[1..], None, a, &mut y, &mut s),
        Err(E::LengthMismatch {
            arg: "weight",
            expected: 12,
            actual: 11
        })
    );
    assert_eq!(
        k::linear(&p, &x, &w, Some(&b[1..]), a, &mut y, &mut s),
        Err(E::LengthMismatch {
            arg: "bias",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        k::linear(&p, &x, &w, None, a, &mut y[1..], &mut s),
        Err(E::LengthMismatch {
            arg: "output",
            expected: 8,
            actual: 7
        })
    );
    assert_eq!(
        r::linear(&p, &x, &w, None, a, &mut y[1..]),
        Err(E::LengthMismatch {
            arg: "output",
            expected: 8,
            actual: 7
        })
    );
    let need = k::linear_scratch_len(&p).unwrap();
    assert_eq!(
        k::linear(&p, &x, &w, None, a, &mut y, &mut s[..need - 1]),
        Err(E::ScratchTooSmall {
            needed: need,
            actual: need - 1
        })
    );
    assert!(matches!(
        k::linear(
            &p,
            &x,
            &w,
            None,
            Activation::Clamp { min: 2.0, max: 1.0 },
            &mut y,
            &mut s
        ),
        Err(E::InvalidParameter(_))
    ));
    let mut gx = vec![0.0; 6];
    let mut gw = vec![0.0; 12];
    let mut gb = [0.0; 4];
    assert_eq!(
        k::linear_backward_input(&p, &y[1..], &w, &mut gx, &mut s),
        Err(E::LengthMismatch {
            arg: "grad_output",
            expected: 8,
            actual: 7
        })
    );
    assert_eq!(
        k::linear_backward_input(&p, &y, &w, &mut gx[1..], &mut s),
        Err(E::LengthMismatch {
            arg: "grad_input",
            expected: 6,
            actual: 5
        })
    );
    let need = k::linear_backward_input_scratch_len(&p).unwrap();
    assert_eq!(
        k::linear_backward_input(&p, &y, &w, &mut gx, &mut s[..need - 1]),
        Err(E::ScratchTooSmall {
            needed: need,
            actual: need - 1
        })
    );
    assert_eq!(
        k::linear_backward_weight(&p, &x, &y, &mut gw[1..], &mut s),
        Err(E::LengthMismatch {
            arg: "grad_weight",
            expected: 12,
            actual: 11
        })
    );
    let need = k::linear_backward_weight_scratch_len(&p).unwrap();
    assert_eq!(
        k::linear_backward_weight(&p, &x, &y, &mut gw, &mut s[..need - 1]),
        Err(E::ScratchTooSmall {
            needed: need,
            actual: need - 1
        })
    );
    assert_eq!(
        k::linear_backward_bias(&p, &y, &mut gb[1..]),
        Err(E::LengthMismatch {
            arg: "grad_bias",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        r::linear_backward_bias(&p, &y, &mut gb[1..]),
        Err(E::LengthMismatch {
            arg: "grad_bias",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        r::linear_backward_weight(&p, &x, &y, &mut gw[1..]),
        Err(E::LengthMismatch {
            arg: "grad_weight",
            expected: 12,
            actual: 11
        })
    );
    assert_eq!(
        r::linear_backward_input(&p, &y, &w, &mut gx[1..]),
        Err(E::LengthMismatch {
            arg: "grad_input",
            expected: 6,
            actual: 5
        })
    );
}

#[test]
fn errors_display_a_message() {
    let e = E::LengthMismatch {
        arg: "weight",
        expected: 3,
        actual: 2,
    };
    assert_eq!(e.to_string(), "weight has 2 elements, expected 3");
    assert!(
        E::InvalidGroups {
            groups: 3,
            in_channels: 4,
            out_channels: 6
        }
        .to_string()
        .contains("groups = 3")
    );
}

/// Winograd's pass: any kernel but 3x3, any stride or dilation is refused (the pass and
/// its scratch length), as are slices of the wrong length, a short scratch and a bad
/// clamp; nothing is written on error.
#[test]
fn winograd_errors() {
    let p = Conv2dParams::new(2, 4, 6, 7, 6, 3, 3)
        .with_groups(2)
        .with_padding(1, 0, 1, 2);
    let d = p.dims().unwrap();
    let x = vec![0.0; d.input_len];
    let w = vec![0.0; d.weight_len];
    let b = vec![0.0; d.bias_len];
    let mut y = vec![7.0; d.output_len];
    let need = k::conv2d_winograd_scratch_len(&p).unwrap();
    let mut s = vec![0.0; need];
    let a = Activation::None;
    for q in [
        Conv2dParams::new(2, 4, 6, 7, 6, 3, 2).with_groups(2),
        Conv2dParams::new(2, 4, 6, 7, 6, 5, 5).with_groups(2),
        p.with_stride(2, 1),
        p.with_stride(1, 2),
        p.with_dilation(2, 1),
        p.with_dilation(1, 2),
    ] {
        let dq = q.dims().unwrap();
        let (xq, wq) = (vec![0.0; dq.input_len], vec![0.0; dq.weight_len]);
        let mut yq = vec![7.0; dq.output_len];
        assert!(matches!(
            k::conv2d_winograd(&q, &xq, &wq, None, a, &mut yq, &mut s),
            Err(E::InvalidParameter(_))
        ));
        assert!(matches!(
            k::conv2d_winograd_scratch_len(&q),
            Err(E::InvalidParameter(_))
        ));
        assert!(matches!(
            r::conv2d_winograd_magnitude(&q, &xq, &wq, None, &mut yq),
            Err(E::InvalidParameter(_))
        ));
        assert!(yq.iter().all(|&v| v == 7.0), "nothing written on error");
        // a call wrong in its own arguments too reports those first, as every other
        // variant does (fuzz/regressions/conv2d/crash-9616a5a2...)
        let nan = Activation::Clamp {
            min: f32::NAN,
            max: 1.0,
        };
        assert_eq!(
            k::conv2d_winograd(&q, &xq, &wq, None, nan, &mut yq, &mut s),
            Err(nan.bounds().unwrap_err())
        );
        assert!(matches!(
            k::conv2d_winograd(&q, &xq[1..], &wq, None, a, &mut yq, &mut s),
            Err(E::LengthMismatch { .. })
        ));
    }
    assert_eq!(
        k::conv2d_winograd(&p, &x, &w, Some(&b), a, &mut y, &mut s[..need - 1]),
        Err(E::ScratchTooSmall {
            needed: need,
            actual: need - 1
        })
    );
    assert_eq!(
        k::conv2d_winograd(&p, &x[1..], &w, Some(&b), a, &mut y, &mut s),
        Err(E::LengthMismatch {
            arg: "input",
            expected: d.input_len,
            actual: d.input_len - 1
        })
    );
    assert_eq!(
        k::conv2d_winograd(&p, &x, &w, Some(&b[1..]), a, &mut y, &mut s),
        Err(E::LengthMismatch {
            arg: "bias",
            expected: d.bias_len,
            actual: d.bias_len - 1
        })
    );
    let bad = Activation::Clamp { min: 1.0, max: 0.0 };
    assert!(matches!(
        k::conv2d_winograd(&p, &x, &w, None, bad, &mut y, &mut s),
        Err(E::InvalidParameter(_))
    ));
    assert!(y.iter().all(|&v| v == 7.0), "nothing written on error");
    k::conv2d_winograd(&p, &x, &w, Some(&b), a, &mut y, &mut s).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}
