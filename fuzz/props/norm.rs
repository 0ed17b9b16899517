//! Batch normalisation and the optimizer updates on fuzzed geometry and data: an invalid
//! call returns the reference's error; a valid one never panics, and on finite data of
//! moderate size it matches the reference within the bounds of `kernels/tests/norm.rs`
//! (forward: the sum bound of `x * scale + (beta - mean * scale)` over the `batch * plane`
//! values each channel's statistics sum).

use cnnkit_kernels::{self as k, AdamParams, BatchNormParams, SgdParams, reference as r};

use super::{Bytes, assert_sum_close};

/// Fuzz target `norm`.
pub fn norm(data: &[u8]) {
    let mut b = Bytes::new(data, 8);
    let p = BatchNormParams::new(b.byte(0) % 5, b.byte(1) % 7, b.byte(2) % 40).with_eps(
        match b.byte(3) % 8 {
            0 => 0.0,
            1 => f32::NAN,
            2 => -1e-5,
            3 => 1e-3,
            _ => 1e-5,
        },
    );
    let off = |i: usize| match b.byte(i) % 16 {
        0 => 1,
        1 => usize::MAX, // one short (wraps below)
        _ => 0,
    };
    let n = p.batch * p.channels * p.plane;
    let c = p.channels;
    let (nx, nc, ns) = (
        n.wrapping_add(off(4)).min(1 << 14),
        c.wrapping_add(off(5)).min(64),
        (3 * c).wrapping_add(off(6)).min(256),
    );
    let x = b.floats(nx);
    let gamma = b.floats(nc);
    let beta = b.floats(nc);
    let gy = b.floats(nx);
    let (mut y, mut st) = (vec![0.0; nx], vec![0.0; ns]);
    let (mut yr, mut sr) = (vec![0.0; nx], vec![0.0; ns]);
    let got = k::batch_norm_forward(&p, &x, &gamma, &beta, &mut y, &mut st);
    let want = r::batch_norm_forward(&p, &x, &gamma, &beta, &mut yr, &mut sr);
    assert_eq!(got, want, "forward: {p:?}");
    let tame = |v: &[f32]| v.iter().all(|x| x.is_finite() && x.abs() < 1e4);
    if got.is_ok()
        && tame(&x)
        && tame(&gamma)
        && tame(&beta)
        && sr[c..2 * c].iter().all(|v| *v < 1e4)
    {
        // the statistics' magnitudes, as the sum bound takes them: the mean sums `x - shift`
        // (`shift` the channel's first value), so its magnitude is the mean of `|x -
        // shift|` plus `|shift|`; the variance sums their squares (mean `q`), and its error
        // reaches the output through the inverse deviation, relatively `q / (var + eps)`
        let (a, q): (Vec<f64>, Vec<f64>) = (0..c)
            .map(|ch| {
                let vals = (0..p.batch).flat_map(|i| &x[(i * c + ch) * p.plane..][..p.plane]);
                let shift = f64::from(x[ch * p.plane]);
                let (mut s1, mut s2) = (0.0, 0.0);
                for &v in vals {
                    let d = f64::from(v) - shift;
                    s1 += d.abs();
                    s2 += d * d;
                }
                let count = (p.batch * p.plane) as f64;
                (s1 / count + shift.abs(), s2 / count)
            })
            .unzip();
        let mag: Vec<f32> = (0..nx)
            .map(|j| {
                let ch = (j / p.plane) % c;
                let scale = (gamma[ch] * sr[c + ch]).abs();
                let var = f64::from(sr[2 * c + ch]) + f64::from(p.eps);
                let carried = (x[j] - sr[ch]).abs() * scale * (q[ch] / var) as f32;
                x[j].abs() * scale + a[ch] as f32 * scale + beta[ch].abs() + carried
            })
            .collect();
        // (the statistics behind each output sum `batch * plane` values)
        assert_sum_close("batch norm forward", &y, &yr, &mag, p.batch * p.plane + 4);
    }
    // inference and backward: errors as the reference's, no panic
    let var: Vec<f32> = gamma.iter().map(|v| v.abs()).collect();
    let a = k::batch_norm_forward_inference(&p, &x, &gamma, &beta, &beta, &var, &mut y);
    let e = r::batch_norm_forward_inference(&p, &x, &gamma, &beta, &beta, &var, &mut yr);
    assert_eq!(a, e, "inference: {p:?}");
    let (mut gx, mut gg, mut gb) = (vec![0.0; nx], vec![0.0; nc], vec![0.0; nc]);
    let (mut hx, mut hg, mut hb) = (gx.clone(), gg.clone(), gb.clone());
    let a = k::batch_norm_backward(&p, &x, &gy, &gamma, &st, Some(&mut gx), &mut gg, &mut gb);
    let e = r::batch_norm_backward(&p, &x, &gy, &gamma, &st, Some(&mut hx), &mut hg, &mut hb);
    assert_eq!(a, e, "backward: {p:?}");
    let per = p.plane;
    let mut w = x.clone();
    let mut bias = beta.clone();
    let (mut w2, mut bias2) = (w.clone(), bias.clone());
    let a = k::batch_norm_fold(c, per, &mut w, &mut bias, &gamma, &beta, &beta, &var, p.eps);
    let e = r::batch_norm_fold(
        c, per, &mut w2, &mut bias2, &gamma, &beta, &beta, &var, p.eps,
    );
    assert_eq!(a, e, "fold");
    // optimizer steps on the same data
    let t = b.byte(7) as u64 + 1;
    let lr = [0.1, 1e-3, 10.0, 0.0][b.byte(7) % 4];
    let sp = SgdParams {
        lr,
        momentum: if b.byte(3).is_multiple_of(2) {
            0.0
        } else {
            0.9
        },
        nesterov: b.byte(3) % 4 == 3,
        weight_decay: 5e-4,
        first: t == 1,
    };
    let gl = nx.min(gy.len());
    let (mut w, mut m) = (x.clone(), gy.clone());
    let (mut w2, mut m2) = (w.clone(), m.clone());
    let buf = sp.momentum != 0.0;
    let a = k::sgd_step(&sp, &mut w, &gy[..gl], buf.then_some(&mut m[..]));
    let e = r::sgd_step(&sp, &mut w2, &gy[..gl], buf.then_some(&mut m2[..]));
    assert_eq!(a, e, "sgd");
    let ap = AdamParams::new(lr, 0.9, 0.999, 1e-8, 0.01, b.byte(3).is_multiple_of(2), t);
    let mut v: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let mut v2 = v.clone();
    let a = k::adam_step(&ap, &mut w, &gy[..gl], &mut m, &mut v);
    let e = r::adam_step(&ap, &mut w2, &gy[..gl], &mut m2, &mut v2);
    assert_eq!(a, e, "adam");
}
