//! Batch normalisation and the optimizer updates against the reference: random shapes
//! (quickcheck), the backward pass by finite differences, the fold against the layer it
//! replaces, and every invalid call returning the reference's error.

mod common;

use cnnkit_kernels::{
    self as k, AdamParams, BatchNormParams, KernelError, SgdParams, reference as r,
};
use common::{Rng, assert_close, assert_sum_close, assert_within, check, fd_check, range};
use quickcheck::{Arbitrary, Gen};

#[derive(Clone, Debug)]
struct Case {
    p: BatchNormParams,
    seed: u64,
    /// Added to the input: a large mean tests the variance's shift.
    offset: f32,
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Self {
        // (now and then more channels than a pass gathers at once: 64)
        let channels = if range(g, 0, 7) == 0 {
            range(g, 60, 140)
        } else {
            range(g, 1, 6)
        };
        let act = [
            k::Activation::None,
            k::Activation::Relu,
            k::Activation::Clamp {
                min: -0.5,
                max: 0.7,
            },
        ][range(g, 0, 2)];
        let p =
            BatchNormParams::new(range(g, 1, 4), channels, range(g, 1, 37)).with_activation(act);
        let offset = [0.0, 3.0, -100.0, 1000.0][range(g, 0, 3)];
        Case {
            p,
            seed: u64::arbitrary(g),
            offset,
        }
    }
}

fn data(c: &Case) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = Rng(c.seed);
    let n = c.p.len().unwrap();
    let x: Vec<f32> = rng.vec(n).iter().map(|v| v + c.offset).collect();
    let gamma = rng.vec(c.p.channels).iter().map(|v| v + 1.5).collect();
    let beta = rng.vec(c.p.channels);
    (x, gamma, beta)
}

/// The sum bound's magnitude of each output (`kernels` forward: `x * scale + (beta - mean
/// * scale)` from statistics summed over `batch * plane` values): `|x * scale| + A * scale
/// + |beta|`, with `A` the statistics' own magnitude (the mean of `|x - shift|` plus
/// `|shift|`, `shift` the channel's first value), plus the variance's error carried
/// through the inverse deviation, `|x - mean| * scale * q / (var + eps)` with `q` the mean
/// of `(x - shift)^2`.
fn forward_magnitude(
    p: &BatchNormParams,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    stats: &[f32],
) -> Vec<f32> {
    let (c, hw) = (p.channels, p.plane);
    let count = (p.batch * hw) as f64;
    let (a, q): (Vec<f64>, Vec<f64>) = (0..c)
        .map(|ch| {
            let shift = f64::from(x[ch * hw]);
            let (mut s1, mut s2) = (0.0, 0.0);
            for i in 0..p.batch {
                for &v in &x[(i * c + ch) * hw..][..hw] {
                    let d = f64::from(v) - shift;
                    s1 += d.abs();
                    s2 += d * d;
                }
            }
            (s1 / count + shift.abs(), s2 / count)
        })
        .unzip();
    (0..x.len())
        .map(|j| {
            let ch = (j / hw) % c;
            let scale = (gamma[ch] * stats[c + ch]).abs();
            let var = f64::from(stats[2 * c + ch]) + f64::from(p.eps);
            let carried = (x[j] - stats[ch]).abs() * scale * (q[ch] / var) as f32;
            x[j].abs() * scale + a[ch] as f32 * scale + beta[ch].abs() + carried
        })
        .collect()
}

/// Bounds on the backward pass's error against the f64 reference, per element of the
/// gradients of `x`, `gamma` and `beta`. With `N = batch * plane`, `s` the inverse
/// deviation, `SG = sum(g)` and `SGX = sum(g * (x - mean))` (exact, f64), the pass computes
/// `gx = gamma * s * (g - SG / N - (x - mean) * s * SGX / N)`, `ggamma = s * SGX` and
/// `gbeta = SG` from the `f32` statistics it is handed: their own errors, the mean off by
/// `delta` and `s` off by `rho` relatively (both measured here against f64 moments), carry
/// through those formulas; its f32 sums over a plane add at most `(plane + 3) eps` times
/// the sum of their terms' magnitudes (`e1` for `SG`, `e2` for `SGX`), and the final
/// expressions a few `eps` of each term.
fn backward_bounds(
    p: &BatchNormParams,
    x: &[f32],
    gy: &[f32],
    gamma: &[f32],
    stats: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (c, hw) = (p.channels, p.plane);
    let count = (p.batch * hw) as f64;
    let u = f64::from(f32::EPSILON);
    let sum_eps = (hw + 3) as f64 * u;
    let idx = |ch: usize| (0..p.batch).flat_map(move |i| (i * c + ch) * hw..(i * c + ch + 1) * hw);
    let (mut bx, mut bg, mut bb) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let mu = idx(ch).map(|j| f64::from(x[j])).sum::<f64>() / count;
        let var = idx(ch).map(|j| (f64::from(x[j]) - mu).powi(2)).sum::<f64>() / count;
        let s = 1.0 / (var + f64::from(p.eps)).sqrt();
        let (m32, s32) = (f64::from(stats[ch]), f64::from(stats[c + ch]));
        let (delta, rho) = ((m32 - mu).abs(), (s32 - s).abs() / s);
        let (mut sg, mut sgx, mut e1, mut e2) = (0.0, 0.0, 0.0, 0.0);
        for j in idx(ch) {
            let g = f64::from(gy[j]);
            sg += g;
            sgx += g * (f64::from(x[j]) - mu);
            e1 += g.abs();
            e2 += g.abs() * (f64::from(x[j]) - m32).abs();
        }
        let (e1, e2) = (e1 * sum_eps, e2 * sum_eps);
        bb[ch] = e1;
        bg[ch] = s * (delta * sg.abs() + e2) + (rho + 2.0 * u) * s * sgx.abs();
        let k = f64::from(gamma[ch]).abs() * s;
        for j in idx(ch) {
            let d = (f64::from(x[j]) - mu).abs();
            // |gamma s g|, |gamma s SG / N|, |gamma s^2 (x - mean) SGX / N|
            let terms = k * f64::from(gy[j]).abs()
                + k * sg.abs() / count
                + k * s * s * d * sgx.abs() / count;
            bx[j] = (3.0 * rho + 10.0 * u) * terms
                + delta * k * s * s * (sgx.abs() + (d + delta) * sg.abs()) / count
                + k * (e1 + s * s * d * e2) / count;
        }
    }
    (bx, bg, bb)
}

#[test]
fn batch_norm_forward_matches_reference() {
    fn prop(c: Case) -> bool {
        let (x, gamma, beta) = data(&c);
        let (n, ch) = (x.len(), c.p.channels);
        let (mut y, mut st) = (vec![0.0; n], vec![0.0; 3 * ch]);
        let (mut yr, mut sr) = (vec![0.0; n], vec![0.0; 3 * ch]);
        k::batch_norm_forward(&c.p, &x, &gamma, &beta, &mut y, &mut st).unwrap();
        r::batch_norm_forward(&c.p, &x, &gamma, &beta, &mut yr, &mut sr).unwrap();
        // the statistics: the mean to the data's scale, invstd and the variance relatively
        let spread = 1.0 + c.offset.abs();
        assert_close("mean", &st[..ch], &sr[..ch], 0.0, 4e-6 * spread);
        assert_close("invstd", &st[ch..2 * ch], &sr[ch..2 * ch], 1e-4, 0.0);
        let mag = forward_magnitude(&c.p, &x, &gamma, &beta, &sr);
        let terms = c.p.batch * c.p.plane + 4;
        assert_sum_close("y", &y, &yr, &mag, terms);
        // inference with the batch's statistics as the running ones gives the same
        let var = &sr[2 * ch..];
        let mut yi = vec![0.0; n];
        let mut yir = vec![0.0; n];
        k::batch_norm_forward_inference(&c.p, &x, &gamma, &beta, &sr[..ch], var, &mut yi).unwrap();
        r::batch_norm_forward_inference(&c.p, &x, &gamma, &beta, &sr[..ch], var, &mut yir).unwrap();
        assert_sum_close("inference y", &yi, &yir, &mag, 4);
        true
    }
    check(300, prop as fn(Case) -> bool);
}

#[test]
fn batch_norm_backward_matches_reference_and_finite_differences() {
    fn prop(c: Case) -> bool {
        // the backward pass is the normalisation's alone (a fused clamp's mask is the
        // caller's to apply first)
        let c = Case {
            p: c.p.with_activation(k::Activation::None),
            ..c
        };
        let (x, gamma, beta) = data(&c);
        let (n, ch) = (x.len(), c.p.channels);
        let gy = Rng(c.seed ^ 7).vec(n);
        let (mut y, mut st) = (vec![0.0; n], vec![0.0; 3 * ch]);
        k::batch_norm_forward(&c.p, &x, &gamma, &beta, &mut y, &mut st).unwrap();
        let (mut gx, mut gg, mut gb) = (vec![0.0; n], vec![0.0; ch], vec![0.0; ch]);
        k::batch_norm_backward(&c.p, &x, &gy, &gamma, &st, Some(&mut gx), &mut gg, &mut gb)
            .unwrap();
        let (mut gxr, mut ggr, mut gbr) = (vec![0.0; n], vec![0.0; ch], vec![0.0; ch]);
        r::batch_norm_backward(
            &c.p,
            &x,
            &gy,
            &gamma,
            &st,
            Some(&mut gxr),
            &mut ggr,
            &mut gbr,
        )
        .unwrap();
        let (bx, bg, bb) = backward_bounds(&c.p, &x, &gy, &gamma, &st);
        assert_within("grad gamma", &gg, &ggr, &bg);
        assert_within("grad beta", &gb, &gbr, &bb);
        assert_within("grad x", &gx, &gxr, &bx);
        // L = sum(gy * y): its gradients by central differences (skip degenerate planes).
        // y from the reference (f64, rounded once): the kernels' forward is checked
        // above, and its f32 rounding at a mean of 1000 is larger than the differences.
        if c.p.batch * c.p.plane >= 4 {
            let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
                let (mut y, mut st) = (vec![0.0; n], vec![0.0; 3 * ch]);
                r::batch_norm_forward(&c.p, x, gamma, beta, &mut y, &mut st).unwrap();
                common::dot(&gy, &y)
            };
            // a step well inside the narrowest channel's spread (the loss bends on that
            // scale) and a few units in the last place of the largest input
            let spread = (0..ch)
                .map(|i| (st[2 * ch + i] + c.p.eps).sqrt())
                .fold(f32::INFINITY, f32::min);
            let big = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let h = (1e-2 * spread).max(8.0 * f32::EPSILON * big);
            fd_check("x", &mut x.clone(), &gx, h, 2e-2, |xv| {
                loss(xv, &gamma, &beta)
            });
            fd_check("gamma", &mut gamma.clone(), &gg, 1e-2, 2e-2, |g| {
                loss(&x, g, &beta)
            });
            fd_check("beta", &mut beta.clone(), &gb, 1e-2, 2e-2, |b| {
                loss(&x, &gamma, b)
            });
        }
        true
    }
    check(150, prop as fn(Case) -> bool);
}

#[test]
fn the_fold_equals_the_layer_then_batch_norm() {
    fn prop(seed: u64, channels: u8, per: u8) -> bool {
        let (c, per) = (usize::from(channels % 7) + 1, usize::from(per % 20) + 1);
        let mut rng = Rng(seed);
        let (w, b) = (rng.vec(c * per), rng.vec(c));
        let (gamma, beta, mean) = (rng.vec(c), rng.vec(c), rng.vec(c));
        let var: Vec<f32> = rng.vec(c).iter().map(|v| v.abs() + 0.1).collect();
        let x = rng.vec(per);
        // the layer: y[o] = w[o] . x + b[o], then batch norm in inference
        let y: Vec<f32> = (0..c)
            .map(|o| (common::dot(&w[o * per..][..per], &x) + f64::from(b[o])) as f32)
            .collect();
        let p = BatchNormParams::new(1, c, 1);
        let mut want = vec![0.0; c];
        r::batch_norm_forward_inference(&p, &y, &gamma, &beta, &mean, &var, &mut want).unwrap();
        let (mut wf, mut bf) = (w.clone(), b.clone());
        k::batch_norm_fold(c, per, &mut wf, &mut bf, &gamma, &beta, &mean, &var, 1e-5).unwrap();
        let (mut wr, mut br) = (w.clone(), b.clone());
        r::batch_norm_fold(c, per, &mut wr, &mut br, &gamma, &beta, &mean, &var, 1e-5).unwrap();
        assert_close("folded weights", &wf, &wr, 1e-6, 1e-7);
        assert_close("folded bias", &bf, &br, 1e-5, 1e-5);
        let got: Vec<f32> = (0..c)
            .map(|o| (common::dot(&wf[o * per..][..per], &x) + f64::from(bf[o])) as f32)
            .collect();
        assert_close("folded layer", &got, &want, 1e-4, 1e-4);
        true
    }
    check(200, prop as fn(u64, u8, u8) -> bool);
}

#[test]
fn optimizer_steps_match_reference_and_split_exactly() {
    fn prop(seed: u64, len: u16, kind: u8, step: u8) -> bool {
        let n = usize::from(len % 300) + 1;
        let mut rng = Rng(seed);
        let (w0, g) = (rng.vec(n), rng.vec(n));
        let (m0, v0): (Vec<f32>, Vec<f32>) =
            (rng.vec(n), rng.vec(n).iter().map(|v| v.abs()).collect());
        let t = u64::from(step % 50) + 1;
        let split = n / 3;
        match kind % 4 {
            k_ @ 0..=2 => {
                let sp = SgdParams {
                    lr: 0.05,
                    momentum: if k_ == 0 { 0.0 } else { 0.9 },
                    nesterov: k_ == 2,
                    weight_decay: 5e-4,
                    first: t == 1,
                };
                let (mut w, mut m) = (w0.clone(), m0.clone());
                let (mut wr, mut mr) = (w0.clone(), m0.clone());
                fn buf(on: bool, m: &mut [f32]) -> Option<&mut [f32]> {
                    on.then_some(m)
                }
                k::sgd_step(&sp, &mut w, &g, buf(k_ > 0, &mut m)).unwrap();
                r::sgd_step(&sp, &mut wr, &g, buf(k_ > 0, &mut mr)).unwrap();
                assert_close("sgd w", &w, &wr, 1e-6, 1e-7);
                assert_close("sgd momentum", &m, &mr, 1e-6, 1e-7);
                // a tensor stepped in two ranges is the same bits
                let (mut ws, mut ms) = (w0.clone(), m0.clone());
                let (wa, wb) = ws.split_at_mut(split);
                let (ma, mb) = ms.split_at_mut(split);
                if split > 0 {
                    k::sgd_step(&sp, wa, &g[..split], (k_ > 0).then_some(ma)).unwrap();
                }
                k::sgd_step(&sp, wb, &g[split..], (k_ > 0).then_some(mb)).unwrap();
                assert_eq!(ws, w);
            }
            k_ => {
                let ap = AdamParams::new(1e-3, 0.9, 0.999, 1e-8, 0.01, k_ == 3, t);
                let (mut w, mut m, mut v) = (w0.clone(), m0.clone(), v0.clone());
                let (mut wr, mut mr, mut vr) = (w0.clone(), m0.clone(), v0.clone());
                k::adam_step(&ap, &mut w, &g, &mut m, &mut v).unwrap();
                r::adam_step(&ap, &mut wr, &g, &mut mr, &mut vr).unwrap();
                assert_close("adam w", &w, &wr, 1e-6, 1e-7);
                assert_close("adam m", &m, &mr, 1e-6, 1e-7);
                assert_close("adam v", &v, &vr, 1e-5, 1e-7);
                let (mut ws, mut ms, mut vs) = (w0.clone(), m0.clone(), v0.clone());
                let (wa, wb) = ws.split_at_mut(split);
                let (ma, mb) = ms.split_at_mut(split);
                let (va, vb) = vs.split_at_mut(split);
                if split > 0 {
                    k::adam_step(&ap, wa, &g[..split], ma, va).unwrap();
                }
                k::adam_step(&ap, wb, &g[split..], mb, vb).unwrap();
                assert_eq!(ws, w);
            }
        }
        true
    }
    check(300, prop as fn(u64, u16, u8, u8) -> bool);
}

#[test]
fn invalid_calls_return_the_reference_error() {
    let ok = BatchNormParams::new(2, 3, 4);
    let n = 24;
    for p in [
        BatchNormParams::new(0, 3, 4),
        BatchNormParams::new(2, 0, 4),
        BatchNormParams::new(2, 3, 0),
        ok.with_eps(0.0),
        ok.with_eps(f32::NAN),
        ok.with_eps(-1.0),
        BatchNormParams::new(usize::MAX, 3, 4),
        ok.with_activation(k::Activation::Clamp { min: 1.0, max: 0.0 }),
        ok.with_activation(k::Activation::Clamp {
            min: f32::NAN,
            max: 0.0,
        }),
        ok,
    ] {
        for (xl, cl, sl) in [(n, 3, 9), (n - 1, 3, 9), (n, 2, 9), (n, 3, 8)] {
            let x = vec![0.5; xl];
            let cv = vec![1.0; cl];
            let mut y = vec![0.0; xl];
            let mut st = vec![0.0; sl];
            let (mut y2, mut st2) = (y.clone(), st.clone());
            let a = k::batch_norm_forward(&p, &x, &cv, &cv, &mut y, &mut st);
            let b = r::batch_norm_forward(&p, &x, &cv, &cv, &mut y2, &mut st2);
            assert_eq!(a, b, "forward {p:?} {xl} {cl} {sl}");
            let a = k::batch_norm_forward_inference(&p, &x, &cv, &cv, &cv, &cv, &mut y);
            let b = r::batch_norm_forward_inference(&p, &x, &cv, &cv, &cv, &cv, &mut y2);
            assert_eq!(a, b, "inference {p:?}");
            let (mut g1, mut g2, mut g3) = (vec![0.0; xl], vec![0.0; cl], vec![0.0; cl]);
            let (mut h1, mut h2, mut h3) = (g1.clone(), g2.clone(), g3.clone());
            let a = k::batch_norm_backward(&p, &x, &x, &cv, &st, Some(&mut g1), &mut g2, &mut g3);
            let b = r::batch_norm_backward(&p, &x, &x, &cv, &st, Some(&mut h1), &mut h2, &mut h3);
            assert_eq!(a, b, "backward {p:?}");
            if p.act != ok.act {
                assert!(matches!(a, Err(KernelError::InvalidParameter(_))), "{p:?}");
            }
            if p == ok && (xl, cl, sl) != (n, 3, 9) {
                assert!(matches!(a, Err(KernelError::LengthMismatch { .. })));
            }
        }
    }
    let mut w = vec![1.0; 6];
    let mut b = vec![0.0; 3];
    let c = [1.0; 3];
    for (ch, per, eps) in [
        (0, 2, 1e-5),
        (3, 0, 1e-5),
        (3, 2, 0.0),
        (3, 3, 1e-5),
        (2, 3, 1e-5),
    ] {
        let (mut w2, mut b2) = (w.clone(), b.clone());
        let a = k::batch_norm_fold(ch, per, &mut w, &mut b, &c, &c, &c, &c, eps);
        let r_ = r::batch_norm_fold(ch, per, &mut w2, &mut b2, &c, &c, &c, &c, eps);
        assert_eq!(a, r_, "fold {ch} {per} {eps}");
        assert!(a.is_err());
    }
    let sp = SgdParams {
        lr: 0.1,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        first: false,
    };
    let (mut w, g) = (vec![1.0; 4], vec![1.0; 4]);
    assert_eq!(
        k::sgd_step(&sp, &mut w, &g, None),
        r::sgd_step(&sp, &mut w.clone(), &g, None)
    );
    assert!(k::sgd_step(&sp, &mut w, &g[..3], Some(&mut [0.0; 4])).is_err());
    assert!(k::sgd_step(&sp, &mut [], &[], None).is_err());
    let ap = AdamParams::new(1e-3, 0.9, 0.999, 1e-8, 0.0, false, 1);
    let (mut m, mut v) = (vec![0.0; 4], vec![0.0; 3]);
    assert_eq!(
        k::adam_step(&ap, &mut w, &g, &mut m, &mut v),
        r::adam_step(&ap, &mut w.clone(), &g, &mut m.clone(), &mut v.clone())
    );
    assert!(k::adam_step(&ap, &mut w, &g, &mut m, &mut v).is_err());
}
