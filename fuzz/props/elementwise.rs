//! Activations, softmax and losses, and the fully connected layer.

use cnnkit_kernels::{
    self as k, Activation, Elementwise, KernelError, LinearParams, reference as r,
};

use super::{Bytes, abs, assert_sum_close, assert_sum_close_abs, for_each_isa, ulps};

/// `got` within `tol(i)` of `want`, NaN exactly where the reference has NaN and equal
/// infinities; where `tol(i)` is `None` (an f32 intermediate may overflow where the f64
/// reference does not) only a NaN result is checked.
fn assert_within(what: &str, got: &[f32], want: &[f32], tol: impl Fn(usize) -> Option<f32>) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        let Some(t) = tol(i).filter(|t| t.is_finite()) else {
            assert!(!e.is_nan() || g.is_nan(), "{what}[{i}]: got {g}, want NaN");
            continue;
        };
        if e.is_nan() || g.is_nan() || e.is_infinite() || g.is_infinite() {
            assert!(
                g == e || (g.is_nan() && e.is_nan()),
                "{what}[{i}]: got {g}, want {e}"
            );
            continue;
        }
        assert!(
            (g - e).abs() <= t,
            "{what}[{i}]: got {g}, want {e}, diff {} > {t}",
            (g - e).abs()
        );
    }
}

fn finite(v: f64) -> Option<f32> {
    let f = v as f32;
    f.is_finite().then_some(f)
}

const EPS: f32 = f32::EPSILON;
const TINY: f32 = f32::MIN_POSITIVE;

type Unary = fn(&[f32], &mut [f32]) -> Result<(), KernelError>;
type Binary = fn(&[f32], &[f32], &mut [f32]) -> Result<(), KernelError>;
type Rows = fn(usize, usize, &[f32], &mut [f32]) -> Result<(), KernelError>;

/// Activations (forward, in place, backward), softmax, log-softmax, cross-entropy and
/// MSE on any data, including lengths 0 and the vector remainders.
pub fn activations(data: &[u8]) {
    let mut b = Bytes::new(data, 4);
    let n = b.byte(0) % 80 + b.byte(1) % 2 * 100; // 0 is an error
    let slope = b.float();
    let x = b.floats(n);
    let g = b.floats(n);

    // ReLU and leaky ReLU: exact (one compare, one product)
    let leaky = |x: &[f32], y: &mut [f32]| k::leaky_relu(slope, x, y);
    let leaky_ref = |x: &[f32], y: &mut [f32]| r::leaky_relu(slope, x, y);
    for_each_isa(|isa| {
        let name = isa.name();
        for (what, f, rf) in [
            ("relu", k::relu as Unary, r::relu as Unary),
            ("sigmoid", k::sigmoid, r::sigmoid),
            ("tanh", k::tanh, r::tanh),
        ] {
            let mut want = vec![0.0; n];
            let res = rf(&x, &mut want);
            let mut got = vec![f32::NAN; n];
            assert_eq!(f(&x, &mut got), res, "{what}");
            if res.is_err() {
                continue;
            }
            let bound = if what == "relu" { 0 } else { 3 }; // the documented accuracy
            for (i, (&a, &e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    ulps(a, e) <= bound,
                    "{what} ({name}) [{i}] of {}: {a} vs {e}",
                    x[i]
                );
            }
            let mut inplace = x.clone();
            match what {
                "relu" => k::relu_inplace(&mut inplace).unwrap(),
                "sigmoid" => k::sigmoid_inplace(&mut inplace).unwrap(),
                _ => k::tanh_inplace(&mut inplace).unwrap(),
            }
            super::assert_same(&format!("{what} in place ({name})"), &inplace, &got);
        }
        let mut want = vec![0.0; n];
        let res = leaky_ref(&x, &mut want);
        let mut got = vec![f32::NAN; n];
        assert_eq!(leaky(&x, &mut got), res, "leaky_relu");
        if res.is_ok() {
            assert_within(&format!("leaky_relu ({name})"), &got, &want, |_| Some(0.0));
            let mut inplace = x.clone();
            k::leaky_relu_inplace(slope, &mut inplace).unwrap();
            super::assert_same(&format!("leaky_relu in place ({name})"), &inplace, &got);
        }
    });
    // every function the layer descriptions name, through its description: the same as
    // its own kernel, to the documented accuracy of the reference, in place to the same
    // bits (a function added to `Elementwise::ALL` is fuzzed here without a change)
    for e in Elementwise::ALL {
        let mut want = vec![0.0; n];
        let res = r::elementwise_forward(e, &x, &mut want);
        for_each_isa(|isa| {
            let mut got = vec![f32::NAN; n];
            assert_eq!(e.forward(&x, &mut got), res, "{e:?}");
            if res.is_err() {
                return;
            }
            for (i, (&a, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    ulps(a, w) <= e.max_ulps(),
                    "{e:?} ({}) [{i}] of {}: {a} vs {w}",
                    isa.name(),
                    x[i]
                );
            }
            let mut inplace = x.clone();
            e.forward_inplace(&mut inplace).unwrap();
            super::assert_same(&format!("{e:?} in place"), &inplace, &got);
            let (mut gx, mut gxr) = (vec![0.0; n], vec![0.0; n]);
            let a = e.backward(&x, &got, &g, &mut gx);
            let w = r::elementwise_backward(e, &x, &got, &g, &mut gxr);
            assert_eq!(a, w, "{e:?} backward");
        });
    }
    if n == 0 {
        return;
    }
    // backward passes: exact selections and products, and the sigmoid/tanh derivatives
    // from the outputs their forward passes give (y in [0, 1] and [-1, 1]): a few
    // roundings, relative to the result
    let mut ys = vec![0.0; n];
    r::sigmoid(&x, &mut ys).unwrap();
    let mut yt = vec![0.0; n];
    r::tanh(&x, &mut yt).unwrap();
    let (lo, hi) = (b.float(), b.float());
    let act = if b.byte(2) & 1 == 0 {
        Activation::Relu
    } else {
        Activation::Clamp { min: lo, max: hi }
    };
    for_each_isa(|isa| {
        let name = isa.name();
        for (what, f, rf, saved, rtol) in [
            (
                "relu_backward",
                k::relu_backward as Binary,
                r::relu_backward as Binary,
                &x,
                0.0,
            ),
            (
                "sigmoid_backward",
                k::sigmoid_backward,
                r::sigmoid_backward,
                &ys,
                4.0 * EPS,
            ),
            (
                "tanh_backward",
                k::tanh_backward,
                r::tanh_backward,
                &yt,
                4.0 * EPS,
            ),
        ] {
            let mut want = vec![0.0; n];
            rf(saved, &g, &mut want).unwrap();
            let mut got = vec![f32::NAN; n];
            f(saved, &g, &mut got).unwrap();
            assert_within(&format!("{what} ({name})"), &got, &want, |i| {
                Some(rtol * want[i].abs() + TINY * rtol)
            });
        }
        let mut want = vec![0.0; n];
        let res = r::leaky_relu_backward(slope, &x, &g, &mut want);
        let mut got = vec![f32::NAN; n];
        assert_eq!(k::leaky_relu_backward(slope, &x, &g, &mut got), res);
        if res.is_ok() {
            assert_within(
                &format!("leaky_relu_backward ({name})"),
                &got,
                &want,
                |_| Some(0.0),
            );
        }
        let mut want = vec![0.0; n];
        let res = r::activation_backward(act, &x, &g, &mut want);
        let mut got = vec![f32::NAN; n];
        assert_eq!(k::activation_backward(act, &x, &g, &mut got), res);
        if res.is_ok() {
            assert_within(
                &format!("activation_backward {act:?} ({name})"),
                &got,
                &want,
                |_| Some(0.0),
            );
        }
    });
    softmax_and_losses(&mut b, n, &x, &g);
}

fn softmax_and_losses(b: &mut Bytes, n: usize, x: &[f32], g: &[f32]) {
    // rows x cols over the same data (a row count that does not divide n is an error)
    let rows = b.byte(3) % 6 + 1;
    let cols = n / rows + usize::from(b.byte(3) >= 250);
    // usually exactly rows * cols of the data; sometimes all of it (then a length error)
    let (x, g) = if b.byte(3) >= 240 {
        (x, g)
    } else {
        (&x[..(rows * cols).min(n)], &g[..(rows * cols).min(n)])
    };
    let n = x.len();
    let labels: Vec<u32> = (0..rows)
        .map(|_| b.float().to_bits() % (cols as u32 + 1))
        .collect();
    let mut want = vec![0.0; n];
    let res = r::softmax(rows, cols, x, &mut want);
    let mut got = vec![f32::NAN; n];
    assert_eq!(
        k::softmax(rows, cols, x, &mut got),
        res,
        "softmax {rows}x{cols} of {n}"
    );
    if res.is_err() || cols == 0 {
        return;
    }
    let n = rows * cols;
    let (x, g) = (&x[..n], &g[..n]);
    let row_max: Vec<f32> = x
        .chunks(cols)
        .map(|r| r.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)))
        .collect();
    // |x - max| in f32 carries an error that exp turns relative
    let shift = |i: usize| (x[i] - row_max[i / cols]).abs();
    let mut lwant = vec![0.0; n];
    r::log_softmax(rows, cols, x, &mut lwant).unwrap();
    for_each_isa(|isa| {
        let name = isa.name();
        let mut got = vec![f32::NAN; n];
        k::softmax(rows, cols, x, &mut got).unwrap();
        assert_within(&format!("softmax ({name})"), &got, &want, |i| {
            Some((cols as f32 + 8.0 + shift(i)) * EPS * want[i] + TINY)
        });
        let mut got = vec![f32::NAN; n];
        k::log_softmax(rows, cols, x, &mut got).unwrap();
        // (x - max) - ln(sum): the shift's rounding, ln of a sum of cols terms each a few
        // ulp off (the shift's error inside exp adds at most eps * |x - max| exp(x - max)
        // <= eps / e per term), the difference's rounding
        assert_within(&format!("log_softmax ({name})"), &got, &lwant, |i| {
            Some(EPS * (shift(i) + 2.0 * cols as f32 + 8.0 + 2.0 * lwant[i].abs()))
        });

        // backward from the forward's outputs
        let mut bw = vec![0.0; n];
        r::softmax_backward(rows, cols, &want, g, &mut bw).unwrap();
        let mut bg = vec![f32::NAN; n];
        k::softmax_backward(rows, cols, &want, g, &mut bg).unwrap();
        let dots: Vec<f64> = (0..rows)
            .map(|r| {
                (0..cols)
                    .map(|j| f64::from(want[r * cols + j]) * f64::from(g[r * cols + j]).abs())
                    .sum()
            })
            .collect();
        // |y| (|g| + sum |y g|); the f32 dot and g - dot must not overflow (y may be 0)
        let mag: Vec<f32> = (0..n)
            .map(|i| {
                let inner = f64::from(g[i]).abs() + dots[i / cols];
                if (inner as f32).is_finite() {
                    (f64::from(want[i]) * inner) as f32
                } else {
                    f32::INFINITY
                }
            })
            .collect();
        assert_sum_close(
            &format!("softmax_backward ({name})"),
            &bg,
            &bw,
            &mag,
            cols + 2,
        );
        let mut bw = vec![0.0; n];
        r::log_softmax_backward(rows, cols, &lwant, g, &mut bw).unwrap();
        let mut bg = vec![f32::NAN; n];
        k::log_softmax_backward(rows, cols, &lwant, g, &mut bg).unwrap();
        let sums: Vec<f64> = g
            .chunks(cols)
            .map(|r| r.iter().map(|&v| f64::from(v).abs()).sum())
            .collect();
        let mag: Vec<f32> = (0..n)
            .map(|i| {
                // the f32 sum of g must not overflow (exp(y) may be 0)
                if !(sums[i / cols] as f32).is_finite() {
                    return f32::INFINITY;
                }
                (f64::from(g[i]).abs() + f64::from(lwant[i]).exp() * sums[i / cols]) as f32
            })
            .collect();
        // the sum of cols terms, then exp (3 ulp), a product and a difference; exp(y) in
        // f32 is also off by up to half the smallest subnormal (0 below y = -103.3),
        // which the sum scales
        let s_max = sums.iter().fold(0.0_f64, |a, &b| a.max(b)) as f32;
        let atol = TINY + s_max * f32::from_bits(1);
        assert_sum_close_abs(
            &format!("log_softmax_backward ({name})"),
            &bg,
            &bw,
            &mag,
            cols + 6,
            atol,
        );

        // cross-entropy: rows * (max + lse - x[label]), averaged
        let res = r::cross_entropy(rows, cols, x, &labels);
        assert_eq!(
            k::cross_entropy(rows, cols, x, &labels).map(|_| ()),
            res.map(|_| ()),
            "cross_entropy"
        );
        let mut gw = vec![0.0; n];
        let mut gg = vec![f32::NAN; n];
        let fused_ref = r::softmax_cross_entropy(rows, cols, x, &labels, &mut gw);
        let fused = k::softmax_cross_entropy(rows, cols, x, &labels, &mut gg);
        assert_eq!(
            fused.map(|_| ()),
            fused_ref.map(|_| ()),
            "softmax_cross_entropy"
        );
        if let Ok(want_loss) = res {
            let got = k::cross_entropy(rows, cols, x, &labels).unwrap();
            let fused = fused.unwrap();
            assert!(
                fused == got || (fused.is_nan() && got.is_nan()),
                "fused loss {fused} vs {got}"
            );
            // each row's (max - x[label]) + ln(sum): ln(sum) as in log_softmax, the rest
            // in f64; the mean in f64, rounded once
            let tol = Some(EPS * (2.0 * cols as f32 + 8.0 + 2.0 * want_loss.abs()));
            assert_within(
                &format!("cross_entropy ({name})"),
                &[got],
                &[want_loss],
                |_| tol,
            );
            // grad = (softmax - onehot) / rows
            assert_within(
                &format!("softmax_cross_entropy grad ({name})"),
                &gg,
                &gw,
                |i| {
                    Some(
                        ((cols as f32 + 8.0 + shift(i)) * EPS * want[i] + EPS + TINY) / rows as f32
                            + EPS * gw[i].abs(),
                    )
                },
            );
        }
    });
    mse(x, g);
}

fn mse(p: &[f32], t: &[f32]) {
    let n = p.len();
    let want = r::mse_loss(p, t).unwrap();
    let mut gw = vec![0.0; n];
    r::mse_loss_backward(p, t, &mut gw).unwrap();
    // (p - t) in f32 must not overflow, nor the f32 sum of squares
    let diffs: Vec<f64> = p
        .iter()
        .zip(t)
        .map(|(&a, &b)| f64::from(a) - f64::from(b))
        .collect();
    let sq: f64 = diffs.iter().map(|d| d * d).sum();
    let ok_sum = diffs.iter().all(|d| finite(2.0 * d).is_some()) && finite(sq).is_some();
    for_each_isa(|isa| {
        let name = isa.name();
        let got = k::mse_loss(p, t).unwrap();
        let tol = ok_sum.then(|| (n + 4) as f32 * EPS * want.abs() + TINY);
        assert_within(&format!("mse_loss ({name})"), &[got], &[want], |_| tol);
        let mut gg = vec![f32::NAN; n];
        k::mse_loss_backward(p, t, &mut gg).unwrap();
        assert_within(&format!("mse_loss_backward ({name})"), &gg, &gw, |i| {
            finite(2.0 * diffs[i]).map(|_| 4.0 * EPS * gw[i].abs() + TINY)
        });
    });
    assert!(k::mse_loss(p, &t[..n - 1]).is_err());
}

/// The fully connected layer, forward with bias and clamp (GEMM and dot-product
/// variants), and its three backward passes.
pub fn linear(data: &[u8]) {
    let mut b = Bytes::new(data, 6);
    let big = b.byte(5) & 3 == 3;
    let p = LinearParams::new(
        b.byte(0) % 9,
        b.byte(1) % 40 * if big { 8 } else { 1 },
        b.byte(2) % 30,
    );
    let (li, lw, lo_len) = match p.lens() {
        Ok(l) => l,
        Err(e) => {
            let mut y = [0.0; 4];
            let mut s = [0.0; 4];
            assert_eq!(
                k::linear(&p, &[], &[], None, Activation::None, &mut y, &mut s),
                Err(e)
            );
            assert_eq!(
                k::linear_backward_input(&p, &[], &[], &mut y, &mut s),
                Err(e)
            );
            assert_eq!(
                k::linear_backward_weight(&p, &[], &[], &mut y, &mut s),
                Err(e)
            );
            assert_eq!(k::linear_backward_bias(&p, &[], &mut y), Err(e));
            assert_eq!(
                k::linear_dot(&p, &[], &[], None, Activation::None, &mut y),
                Err(e)
            );
            return;
        }
    };
    let (lo, hi) = (b.float(), b.float());
    let act = match b.byte(3) % 3 {
        0 => Activation::None,
        1 => Activation::Relu,
        _ => Activation::Clamp { min: lo, max: hi },
    };
    let x = b.floats(li);
    let w = b.floats(lw);
    let bias = b.floats(p.out_features);
    let gy = b.floats(lo_len);
    let bias = (b.byte(4) & 1 == 1).then_some(&bias[..]);
    let mut want = vec![0.0; lo_len];
    let res = r::linear(&p, &x, &w, bias, act, &mut want);
    let mut s = vec![f32::NAN; k::linear_scratch_len(&p).unwrap()];
    let mut got = vec![f32::NAN; lo_len];
    assert_eq!(k::linear(&p, &x, &w, bias, act, &mut got, &mut s), res);
    assert_eq!(k::linear_dot(&p, &x, &w, bias, act, &mut got), res);
    if res.is_err() {
        return;
    }
    let (ax, aw, agy) = (abs(&x), abs(&w), abs(&gy));
    let abias = bias.map(abs);
    let mut mag = vec![0.0; lo_len];
    r::linear(&p, &ax, &aw, abias.as_deref(), Activation::None, &mut mag).unwrap();
    let mut gx_ref = vec![0.0; li];
    let mut gx_mag = vec![0.0; li];
    r::linear_backward_input(&p, &gy, &w, &mut gx_ref).unwrap();
    r::linear_backward_input(&p, &agy, &aw, &mut gx_mag).unwrap();
    let mut gw_ref = vec![0.0; lw];
    let mut gw_mag = vec![0.0; lw];
    r::linear_backward_weight(&p, &x, &gy, &mut gw_ref).unwrap();
    r::linear_backward_weight(&p, &ax, &agy, &mut gw_mag).unwrap();
    let mut gb_ref = vec![0.0; p.out_features];
    let mut gb_mag = vec![0.0; p.out_features];
    r::linear_backward_bias(&p, &gy, &mut gb_ref).unwrap();
    r::linear_backward_bias(&p, &agy, &mut gb_mag).unwrap();
    for_each_isa(|isa| {
        let name = isa.name();
        let mut got = vec![f32::NAN; lo_len];
        k::linear(&p, &x, &w, bias, act, &mut got, &mut s).unwrap();
        assert_sum_close(
            &format!("linear ({name})"),
            &got,
            &want,
            &mag,
            p.in_features + 1,
        );
        let mut got = vec![f32::NAN; lo_len];
        k::linear_dot(&p, &x, &w, bias, act, &mut got).unwrap();
        assert_sum_close(
            &format!("linear_dot ({name})"),
            &got,
            &want,
            &mag,
            p.in_features + 1,
        );
        let mut gx = vec![f32::NAN; li];
        let mut s = vec![f32::NAN; k::linear_backward_input_scratch_len(&p).unwrap()];
        k::linear_backward_input(&p, &gy, &w, &mut gx, &mut s).unwrap();
        assert_sum_close(
            &format!("linear grad input ({name})"),
            &gx,
            &gx_ref,
            &gx_mag,
            p.out_features,
        );
        let mut gw = vec![f32::NAN; lw];
        let mut s = vec![f32::NAN; k::linear_backward_weight_scratch_len(&p).unwrap()];
        k::linear_backward_weight(&p, &x, &gy, &mut gw, &mut s).unwrap();
        assert_sum_close(
            &format!("linear grad weight ({name})"),
            &gw,
            &gw_ref,
            &gw_mag,
            p.batch,
        );
        let mut gb = vec![f32::NAN; p.out_features];
        k::linear_backward_bias(&p, &gy, &mut gb).unwrap();
        assert_sum_close(
            &format!("linear grad bias ({name})"),
            &gb,
            &gb_ref,
            &gb_mag,
            p.batch,
        );
    });
}
