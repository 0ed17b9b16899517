//! Activations, softmax, losses and linear layers against the reference, with ULP bounds
//! for the transcendental functions over the whole f32 range and finite-difference checks
//! of every backward pass.

mod common;

use cnnkit_kernels::{self as k, Activation, Elementwise, LinearParams, reference as r};
use common::{Rng, abs, assert_close, assert_sum_close, check, for_each_isa, ulps};

/// Every finite f32 reached by stepping through the bit patterns, plus a dense grid
/// over the interesting range and the specials.
fn sweep() -> Vec<f32> {
    let mut v: Vec<f32> = (0..=u32::MAX / 4099)
        .map(|i| f32::from_bits(i.wrapping_mul(4099)))
        .filter(|x| x.is_finite())
        .collect();
    v.extend((-40_000..=40_000).map(|i| i as f32 / 1000.0));
    v.extend([
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        1e-45,
        -1e-45,
        88.72,
        -103.9,
        9.01,
        -9.01,
        0.625,
        -0.625,
    ]);
    v
}

/// Every element-wise function the layer descriptions name (`Elementwise::ALL`), under
/// every variant, over the whole f32 range ([`sweep`]): within its stated accuracy
/// (`Elementwise::max_ulps`) of the reference, NaN giving NaN.
#[test]
fn every_function_is_accurate_over_the_whole_range() {
    let x = sweep();
    for e in Elementwise::ALL {
        let mut want = vec![0.0; x.len()];
        r::elementwise_forward(e, &x, &mut want).unwrap();
        common::for_each_isa(|isa| {
            let mut y = vec![0.0; x.len()];
            e.forward(&x, &mut y).unwrap();
            let mut worst = (0, 0.0);
            for ((&xi, &yi), &wi) in x.iter().zip(&y).zip(&want) {
                let u = ulps(yi, wi);
                if u > worst.0 {
                    worst = (u, xi);
                }
            }
            println!(
                "{} ({}): max {} ulp (at {})",
                e.name(),
                isa.name(),
                worst.0,
                worst.1
            );
            assert!(
                worst.0 <= e.max_ulps(),
                "{e:?} ({isa:?}): {} ulp at {}",
                worst.0,
                worst.1
            );
            let mut nan = [f32::NAN; 3];
            e.forward_inplace(&mut nan).unwrap();
            assert!(nan.iter().all(|v| v.is_nan()), "{e:?} ({isa:?}) of NaN");
        });
    }
}

#[test]
fn specials_saturate_and_propagate() {
    common::for_each_isa(|_| specials());
}

fn specials() {
    let x = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e30,
        -1e30,
        0.0,
        -0.0,
    ];
    let mut y = [0.0; 7];
    k::tanh(&x, &mut y).unwrap();
    assert!(y[0].is_nan());
    assert_eq!(&y[1..], &[1.0, -1.0, 1.0, -1.0, 0.0, -0.0]);
    assert!(y[6].is_sign_negative());
    k::sigmoid(&x, &mut y).unwrap();
    assert!(y[0].is_nan());
    assert_eq!(&y[1..], &[1.0, 0.0, 1.0, 0.0, 0.5, 0.5]);
    k::relu(&x, &mut y).unwrap();
    assert!(y[0].is_nan());
    assert_eq!(&y[1..6], &[f32::INFINITY, 0.0, 1e30, 0.0, 0.0]);
    k::leaky_relu(0.1, &x, &mut y).unwrap();
    assert!(y[0].is_nan());
    assert_eq!(
        &y[1..6],
        &[f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e29, 0.0]
    );
}

type Unary = fn(&[f32], &mut [f32]) -> Result<(), k::KernelError>;
type Binary = fn(&[f32], &[f32], &mut [f32]) -> Result<(), k::KernelError>;

fn leaky_fwd(x: &[f32], y: &mut [f32]) -> Result<(), k::KernelError> {
    k::leaky_relu(0.125, x, y)
}
fn leaky_fwd_ref(x: &[f32], y: &mut [f32]) -> Result<(), k::KernelError> {
    r::leaky_relu(0.125, x, y)
}
fn leaky_bwd(x: &[f32], g: &[f32], o: &mut [f32]) -> Result<(), k::KernelError> {
    k::leaky_relu_backward(0.125, x, g, o)
}
fn leaky_bwd_ref(x: &[f32], g: &[f32], o: &mut [f32]) -> Result<(), k::KernelError> {
    r::leaky_relu_backward(0.125, x, g, o)
}

/// (name, forward, reference forward, backward, reference backward, backward takes the output)
const ACTS: [(&str, Unary, Unary, Binary, Binary, bool); 4] = [
    (
        "relu",
        k::relu,
        r::relu,
        k::relu_backward,
        r::relu_backward,
        false,
    ),
    (
        "leaky_relu",
        leaky_fwd,
        leaky_fwd_ref,
        leaky_bwd,
        leaky_bwd_ref,
        false,
    ),
    (
        "sigmoid",
        k::sigmoid,
        r::sigmoid,
        k::sigmoid_backward,
        r::sigmoid_backward,
        true,
    ),
    (
        "tanh",
        k::tanh,
        r::tanh,
        k::tanh_backward,
        r::tanh_backward,
        true,
    ),
];

#[test]
fn activations_match_reference_at_every_length() {
    fn prop(seed: u64, len: u16) -> bool {
        let n = len as usize % 70 + 1; // lengths below, at and above the vector width
        let mut rng = Rng(seed);
        let x: Vec<f32> = rng.vec(n).iter().map(|v| v * 6.0).collect();
        let g = rng.vec(n);
        for (name, f, rf, b, rb, from_out) in ACTS {
            let mut want = vec![0.0; n];
            rf(&x, &mut want).unwrap();
            let mut got = vec![f32::NAN; n];
            f(&x, &mut got).unwrap();
            for (a, e) in got.iter().zip(&want) {
                assert!(ulps(*a, *e) <= 3, "{name}: {a} vs {e}");
            }
            // in place gives the same bits
            let mut inplace = x.clone();
            match name {
                "relu" => k::relu_inplace(&mut inplace).unwrap(),
                "leaky_relu" => k::leaky_relu_inplace(0.125, &mut inplace).unwrap(),
                "sigmoid" => k::sigmoid_inplace(&mut inplace).unwrap(),
                _ => k::tanh_inplace(&mut inplace).unwrap(),
            }
            assert_eq!(inplace, got, "{name} in place");
            let saved = if from_out { &want } else { &x };
            let mut wb = vec![0.0; n];
            rb(saved, &g, &mut wb).unwrap();
            let mut gb = vec![f32::NAN; n];
            b(saved, &g, &mut gb).unwrap();
            assert_close(name, &gb, &wb, 4.0 * f32::EPSILON, 1e-30);
            if name == "relu" {
                // in place gives the same bits
                let mut gi = g.clone();
                k::relu_backward_inplace(saved, &mut gi).unwrap();
                assert_eq!(gi, gb, "relu_backward in place");
            }
        }
        true
    }
    check(
        300,
        (|s, l| {
            let mut ok = true;
            common::for_each_isa(|_| ok &= prop(s, l));
            ok
        }) as fn(u64, u16) -> bool,
    );
}

/// Every element-wise function the layer descriptions name (`Elementwise::ALL`, so a new
/// one is covered here without a line of this file changing), under every variant: out of
/// place within its stated accuracy of the reference, in place to the same bits, and its
/// backward pass against the reference's and against finite differences.
#[test]
fn every_elementwise_function_matches_its_reference() {
    fn prop(seed: u64, len: u16) -> bool {
        let n = usize::from(len % 300) + 1;
        let mut rng = Rng(seed);
        // away from the kinks at 0 and 6 (ReLU6), over the range where the functions bend
        let x: Vec<f32> = rng
            .vec(n)
            .iter()
            .map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v } * 6.0)
            .map(|x| if (x - 6.0).abs() < 0.3 { x + 0.6 } else { x })
            .collect();
        let gy = rng.vec(n);
        for e in Elementwise::ALL {
            let (mut yr, mut gxr) = (vec![0.0; n], vec![0.0; n]);
            r::elementwise_forward(e, &x, &mut yr).unwrap();
            r::elementwise_backward(e, &x, &yr, &gy, &mut gxr).unwrap();
            for_each_isa(|isa| {
                let mut y = vec![0.0; n];
                e.forward(&x, &mut y).unwrap();
                for (i, (&a, &b)) in y.iter().zip(&yr).enumerate() {
                    let u = ulps(a, b);
                    assert!(
                        u <= e.max_ulps(),
                        "{e:?} ({isa:?}) at x = {}: {u} ulp",
                        x[i]
                    );
                }
                let mut inplace = x.clone();
                e.forward_inplace(&mut inplace).unwrap();
                assert_eq!(inplace, y, "{e:?} ({isa:?}) in place");
                let mut gx = vec![0.0; n];
                e.backward(&x, &y, &gy, &mut gx).unwrap();
                assert_close(&format!("{e:?} backward ({isa:?})"), &gx, &gxr, 1e-5, 2e-6);
            });
            let mut gx = vec![0.0; n];
            let mut y = vec![0.0; n];
            e.forward(&x, &mut y).unwrap();
            e.backward(&x, &y, &gy, &mut gx).unwrap();
            let m = n.min(24);
            let mut xs = x[..m].to_vec();
            common::fd_check(&format!("{e:?}"), &mut xs, &gx[..m], 1e-2, 2e-3, |xv| {
                let mut y = vec![0.0; m];
                e.forward(xv, &mut y).unwrap();
                common::dot(&y, &gy[..m])
            });
        }
        true
    }
    check(60, prop as fn(u64, u16) -> bool);
}

#[test]
fn activation_backwards_match_finite_differences() {
    fn prop(seed: u64) -> bool {
        let mut rng = Rng(seed);
        // keep away from the kink of (leaky) ReLU at 0
        let mut x: Vec<f32> = rng
            .vec(37)
            .iter()
            .map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v } * 3.0)
            .collect();
        let gy = rng.vec(37);
        for (name, f, _, b, _, from_out) in ACTS {
            let mut y = vec![0.0; x.len()];
            f(&x, &mut y).unwrap();
            let mut gx = vec![0.0; x.len()];
            b(if from_out { &y } else { &x }, &gy, &mut gx).unwrap();
            common::fd_check(name, &mut x, &gx, 1e-2, 2e-3, |x| {
                let mut y = vec![0.0; x.len()];
                f(x, &mut y).unwrap();
                common::dot(&y, &gy)
            });
        }
        true
    }
    check(50, prop as fn(u64) -> bool);
}

#[test]
fn activation_backward_of_the_epilogue_clamp() {
    fn prop(seed: u64) -> bool {
        let mut rng = Rng(seed);
        let n = 45;
        let y: Vec<f32> = rng.vec(n).iter().map(|v| (v * 4.0).round() / 4.0).collect(); // hits the bounds exactly
        let g = rng.vec(n);
        for act in [
            Activation::None,
            Activation::Relu,
            Activation::Clamp {
                min: -0.5,
                max: 0.5,
            },
            Activation::Clamp {
                min: f32::NEG_INFINITY,
                max: 0.25,
            },
        ] {
            let mut want = vec![0.0; n];
            r::activation_backward(act, &y, &g, &mut want).unwrap();
            let mut got = vec![f32::NAN; n];
            k::activation_backward(act, &y, &g, &mut got).unwrap();
            assert_eq!(got, want, "{act:?}");
        }
        // ReLU's backward through the fused clamp equals relu_backward on the output
        let mut a = vec![0.0; n];
        let mut b = vec![0.0; n];
        let yr: Vec<f32> = y.iter().map(|v| v.max(0.0)).collect();
        k::activation_backward(Activation::Relu, &yr, &g, &mut a).unwrap();
        k::relu_backward(&yr, &g, &mut b).unwrap();
        assert_eq!(a, b);
        true
    }
    check(100, prop as fn(u64) -> bool);
}

fn softmax_case(seed: u64, rows: u8, cols: u8) -> (usize, usize, Vec<f32>, Rng) {
    let (rows, cols) = (rows as usize % 5 + 1, cols as usize % 40 + 1);
    let mut rng = Rng(seed);
    let x = rng.vec(rows * cols).iter().map(|v| v * 20.0).collect();
    (rows, cols, x, rng)
}

#[test]
fn softmax_and_log_softmax_match_reference() {
    fn prop(seed: u64, rows: u8, cols: u8) -> bool {
        let (rows, cols, x, mut rng) = softmax_case(seed, rows, cols);
        let gy = rng.vec(rows * cols);
        let n = rows * cols;
        let mut want = vec![0.0; n];
        r::softmax(rows, cols, &x, &mut want).unwrap();
        let mut got = vec![f32::NAN; n];
        k::softmax(rows, cols, &x, &mut got).unwrap();
        // relative error: a few ulp per exp, the sum's rounding over `cols` terms, and the
        // rounding of `x - max` in f32, which exp amplifies by |x - max|
        for (row, (gr, wr)) in got.chunks(cols).zip(want.chunks(cols)).enumerate() {
            let xr = &x[row * cols..][..cols];
            let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            for j in 0..cols {
                let tol = (cols as f32 + 8.0 + (xr[j] - m).abs()) * f32::EPSILON * wr[j] + 1e-37;
                assert!(
                    (gr[j] - wr[j]).abs() <= tol,
                    "softmax[{row},{j}]: {} vs {}",
                    gr[j],
                    wr[j]
                );
            }
        }
        let mut lwant = vec![0.0; n];
        r::log_softmax(rows, cols, &x, &mut lwant).unwrap();
        let mut lgot = vec![f32::NAN; n];
        k::log_softmax(rows, cols, &x, &mut lgot).unwrap();
        // absolute error: the row's log-sum-exp (magnitude up to ~20) carries it
        assert_close(
            "log_softmax",
            &lgot,
            &lwant,
            4.0 * f32::EPSILON,
            64.0 * f32::EPSILON,
        );

        let mut bw = vec![0.0; n];
        r::softmax_backward(rows, cols, &want, &gy, &mut bw).unwrap();
        let mut bg = vec![f32::NAN; n];
        k::softmax_backward(rows, cols, &want, &gy, &mut bg).unwrap();
        let mag: Vec<f32> = want.iter().map(|y| y * 2.0).collect(); // |y| (|g| + |sum y g|), |g| <= 1
        assert_sum_close("softmax backward", &bg, &bw, &mag, cols + 2);
        let mut bw = vec![0.0; n];
        r::log_softmax_backward(rows, cols, &lwant, &gy, &mut bw).unwrap();
        let mut bg = vec![f32::NAN; n];
        k::log_softmax_backward(rows, cols, &lwant, &gy, &mut bg).unwrap();
        let mag = vec![(cols + 1) as f32; n]; // |g| + exp(y) sum |g|
        assert_sum_close("log_softmax backward", &bg, &bw, &mag, cols + 4);
        true
    }
    check(300, prop as fn(u64, u8, u8) -> bool);
}

#[test]
fn softmax_follows_pytorch_on_specials() {
    let x = [
        1.0,
        f32::NAN,
        2.0,
        1e30,
        -1e30,
        0.0,
        f32::INFINITY,
        0.0,
        1.0,
    ];
    let mut y = [0.0; 9];
    k::softmax(3, 3, &x, &mut y).unwrap();
    assert!(y[..3].iter().all(|v| v.is_nan()), "NaN poisons its row");
    assert_eq!(&y[3..6], &[1.0, 0.0, 0.0], "huge logits do not overflow");
    assert!(
        y[6..].iter().all(|v| v.is_nan()),
        "+inf gives NaN, as in PyTorch"
    );
    let mut r_ = [0.0; 9];
    r::softmax(3, 3, &x, &mut r_).unwrap();
    assert!(r_[..3].iter().all(|v| v.is_nan()) && r_[6..].iter().all(|v| v.is_nan()));
}

/// Found by fuzzing: `x - (max + ln(sum))` rounds `ln(sum)` away when the logits are
/// large; `(x - max) - ln(sum)` (PyTorch's order) keeps it.
#[test]
fn log_softmax_and_cross_entropy_keep_precision_at_large_logits() {
    let ln2 = core::f32::consts::LN_2;
    for big in [1e4_f32, 3e7, 1e30] {
        let x = [big, big, -big];
        let mut y = [0.0; 3];
        k::log_softmax(1, 3, &x, &mut y).unwrap();
        assert!((y[0] + ln2).abs() <= 2.0 * f32::EPSILON, "{big}: {y:?}");
        let loss = k::cross_entropy(1, 3, &x, &[1]).unwrap();
        assert!((loss - ln2).abs() <= 2.0 * f32::EPSILON, "{big}: {loss}");
        // the reference had the same fault in f64, from about 1e16
        let want = r::cross_entropy(1, 3, &x, &[1]).unwrap();
        assert!(
            (want - ln2).abs() <= f32::EPSILON,
            "reference at {big}: {want}"
        );
        let mut g = [0.0; 3];
        let fused = k::softmax_cross_entropy(1, 3, &x, &[1], &mut g).unwrap();
        assert_eq!(fused, loss);
    }
}

#[test]
fn softmax_backwards_match_finite_differences() {
    fn prop(seed: u64, rows: u8, cols: u8) -> bool {
        let (rows, cols, x, mut rng) = softmax_case(seed, rows, cols);
        let mut x: Vec<f32> = x.iter().map(|v| v / 8.0).collect();
        let gy = rng.vec(rows * cols);
        let n = rows * cols;
        for (name, f, b) in [
            (
                "softmax",
                k::softmax as fn(usize, usize, &[f32], &mut [f32]) -> Result<(), k::KernelError>,
                k::softmax_backward
                    as fn(usize, usize, &[f32], &[f32], &mut [f32]) -> Result<(), k::KernelError>,
            ),
            ("log_softmax", k::log_softmax, k::log_softmax_backward),
        ] {
            let mut y = vec![0.0; n];
            f(rows, cols, &x, &mut y).unwrap();
            let mut gx = vec![0.0; n];
            b(rows, cols, &y, &gy, &mut gx).unwrap();
            common::fd_check(name, &mut x, &gx, 1e-2, 2e-3, |x| {
                let mut y = vec![0.0; n];
                f(rows, cols, x, &mut y).unwrap();
                common::dot(&y, &gy)
            });
        }
        true
    }
    check(60, prop as fn(u64, u8, u8) -> bool);
}

#[test]
fn cross_entropy_matches_reference_and_finite_differences() {
    fn prop(seed: u64, rows: u8, cols: u8) -> bool {
        let (rows, cols, x, mut rng) = softmax_case(seed, rows, cols);
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(cols) as u32).collect();
        let n = rows * cols;
        let want = r::cross_entropy(rows, cols, &x, &labels).unwrap();
        let got = k::cross_entropy(rows, cols, &x, &labels).unwrap();
        let scale = x.iter().fold(1.0_f32, |m, v| m.max(v.abs()));
        assert!(
            (got - want).abs() <= 16.0 * f32::EPSILON * scale,
            "{got} vs {want}"
        );
        let mut gw = vec![0.0; n];
        let lw = r::softmax_cross_entropy(rows, cols, &x, &labels, &mut gw).unwrap();
        let mut gg = vec![f32::NAN; n];
        let lg = k::softmax_cross_entropy(rows, cols, &x, &labels, &mut gg).unwrap();
        assert_eq!(lg, got, "fused loss equals the plain one");
        assert_eq!(lw, want);
        assert_close(
            "ce grad",
            &gg,
            &gw,
            (cols as f32 + 8.0) * f32::EPSILON,
            4.0 * f32::EPSILON / rows as f32,
        );
        let mut x: Vec<f32> = x.iter().map(|v| v / 8.0).collect();
        let mut g = vec![0.0; n];
        k::softmax_cross_entropy(rows, cols, &x, &labels, &mut g).unwrap();
        common::fd_check("cross entropy", &mut x, &g, 1e-2, 2e-3, |x| {
            f64::from(k::cross_entropy(rows, cols, x, &labels).unwrap())
        });
        true
    }
    check(200, prop as fn(u64, u8, u8) -> bool);
}

#[test]
fn mse_matches_reference_and_finite_differences() {
    fn prop(seed: u64, len: u16) -> bool {
        let n = len as usize % 700 + 1;
        let mut rng = Rng(seed);
        let mut p = rng.vec(n);
        let t = rng.vec(n);
        let want = r::mse_loss(&p, &t).unwrap();
        let got = k::mse_loss(&p, &t).unwrap();
        assert!(
            (got - want).abs() <= (n as f32 + 4.0) * f32::EPSILON * want.abs() + 1e-30,
            "{got} vs {want}"
        );
        let mut gw = vec![0.0; n];
        r::mse_loss_backward(&p, &t, &mut gw).unwrap();
        let mut gg = vec![f32::NAN; n];
        k::mse_loss_backward(&p, &t, &mut gg).unwrap();
        assert_close("mse grad", &gg, &gw, 4.0 * f32::EPSILON, 1e-30);
        if n <= 100 {
            common::fd_check("mse", &mut p, &gg, 0.25, 1e-3, |p| {
                f64::from(k::mse_loss(p, &t).unwrap())
            });
        }
        true
    }
    check(200, prop as fn(u64, u16) -> bool);
}

#[test]
fn linear_matches_reference_and_finite_differences() {
    fn prop(seed: u64, b: u8, i: u16, o: u8, relu: bool, bias: bool) -> bool {
        let p = LinearParams::new(
            b as usize % 9 + 1,
            i as usize % 300 + 1,
            o as usize % 40 + 1,
        );
        let (li, lw, lo) = p.lens().unwrap();
        let mut rng = Rng(seed);
        let x = rng.vec(li);
        let w = rng.vec(lw);
        let bv = rng.vec(p.out_features);
        let gy = rng.vec(lo);
        let act = if relu {
            Activation::Relu
        } else {
            Activation::None
        };
        let bo = bias.then_some(&bv[..]);
        let mut want = vec![0.0; lo];
        r::linear(&p, &x, &w, bo, act, &mut want).unwrap();
        let mut got = vec![f32::NAN; lo];
        let mut s = vec![f32::NAN; k::linear_scratch_len(&p).unwrap()];
        k::linear(&p, &x, &w, bo, act, &mut got, &mut s).unwrap();
        let mut mag = vec![0.0; lo];
        let ab = abs(&bv);
        r::linear(
            &p,
            &abs(&x),
            &abs(&w),
            bias.then_some(&ab[..]),
            Activation::None,
            &mut mag,
        )
        .unwrap();
        assert_sum_close("linear", &got, &want, &mag, p.in_features + 1);

        let mut want = vec![0.0; li];
        r::linear_backward_input(&p, &gy, &w, &mut want).unwrap();
        let mut gx = vec![f32::NAN; li];
        let mut s = vec![f32::NAN; k::linear_backward_input_scratch_len(&p).unwrap()];
        k::linear_backward_input(&p, &gy, &w, &mut gx, &mut s).unwrap();
        let mut mag = vec![0.0; li];
        r::linear_backward_input(&p, &abs(&gy), &abs(&w), &mut mag).unwrap();
        assert_sum_close("linear grad input", &gx, &want, &mag, p.out_features);

        let mut want = vec![0.0; lw];
        r::linear_backward_weight(&p, &x, &gy, &mut want).unwrap();
        let mut gw = vec![f32::NAN; lw];
        let mut s = vec![f32::NAN; k::linear_backward_weight_scratch_len(&p).unwrap()];
        k::linear_backward_weight(&p, &x, &gy, &mut gw, &mut s).unwrap();
        let mut mag = vec![0.0; lw];
        r::linear_backward_weight(&p, &abs(&x), &abs(&gy), &mut mag).unwrap();
        assert_sum_close("linear grad weight", &gw, &want, &mag, p.batch);

        let mut want = vec![0.0; p.out_features];
        r::linear_backward_bias(&p, &gy, &mut want).unwrap();
        let mut gb = vec![f32::NAN; p.out_features];
        k::linear_backward_bias(&p, &gy, &mut gb).unwrap();
        let mut mag = vec![0.0; p.out_features];
        r::linear_backward_bias(&p, &abs(&gy), &mut mag).unwrap();
        assert_sum_close("linear grad bias", &gb, &want, &mag, p.batch);

        if li + lw <= 600 {
            let loss = |x: &[f32], w: &[f32], b: &[f32]| {
                let mut y = vec![0.0; lo];
                let mut s = vec![0.0; k::linear_scratch_len(&p).unwrap()];
                k::linear(&p, x, w, Some(b), Activation::None, &mut y, &mut s).unwrap();
                common::dot(&y, &gy)
            };
            let (mut xm, mut wm, mut bm) = (x.clone(), w.clone(), bv.clone());
            common::fd_check("linear d/dx", &mut xm, &gx, 0.5, 1e-4, |xx| {
                loss(xx, &w, &bv)
            });
            common::fd_check("linear d/dw", &mut wm, &gw, 0.5, 1e-4, |ww| {
                loss(&x, ww, &bv)
            });
            common::fd_check("linear d/db", &mut bm, &gb, 0.5, 1e-4, |bb| {
                loss(&x, &w, bb)
            });
        }
        true
    }
    check(300, prop as fn(u64, u8, u16, u8, bool, bool) -> bool);
}

#[test]
fn stream_copy_copies_every_bit_at_every_length_and_alignment() {
    // lengths 0..=70 into destinations starting at every float offset in a 16-byte
    // block: the unaligned head, the streamed body and the tail all carry exact bits
    // (NaN payloads, -0.0, subnormals included)
    let mut rng = Rng(17);
    for len in 0..=70usize {
        for offset in 0..4usize {
            let src: Vec<f32> = (0..len)
                .map(|_| f32::from_bits(rng.next_u64() as u32))
                .collect();
            let mut buf = vec![7.5f32; len + offset + 4];
            k::stream_copy(&src, &mut buf[offset..offset + len]).unwrap();
            let got: Vec<u32> = buf[offset..offset + len]
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let want: Vec<u32> = src.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "len {len} offset {offset}");
            assert!(
                buf[..offset].iter().all(|&v| v == 7.5),
                "wrote before the slice"
            );
            assert!(
                buf[offset + len..].iter().all(|&v| v == 7.5),
                "wrote past the slice"
            );
        }
    }
}

#[test]
fn stream_copy_rejects_mismatched_lengths() {
    let mut dst = [0.0f32; 3];
    assert_eq!(
        k::stream_copy(&[1.0, 2.0], &mut dst),
        Err(k::KernelError::LengthMismatch {
            arg: "dst",
            expected: 2,
            actual: 3
        })
    );
    assert_eq!(dst, [0.0; 3]);
}
