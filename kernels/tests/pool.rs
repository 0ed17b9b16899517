//! Pooling against the reference: any window, stride, padding (up to the window size, so
//! some windows lie entirely in the padding), dilation; ties, NaN and infinities; indices;
//! finite-difference checks of the backward passes.

mod common;

use cnnkit_kernels::{self as k, NO_INDEX, Pool2dParams, reference as r};
use common::{Rng, abs, assert_sum_close, check, coin, for_each_isa, range};
use quickcheck::{Arbitrary, Gen};

#[derive(Clone, Debug)]
struct Case {
    p: Pool2dParams,
    include_pad: bool,
    specials: bool,
    seed: u64,
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Self {
        loop {
            let (kh, kw) = (range(g, 1, 4), range(g, 1, 4));
            let mut p = Pool2dParams::new(
                range(g, 1, 2),
                range(g, 1, 3),
                range(g, 1, 12),
                range(g, 1, 21),
                kh,
                kw,
            );
            if coin(g) {
                p = p.with_stride(range(g, 1, 5), range(g, 1, 5));
            }
            if coin(g) {
                p = p.with_padding(
                    range(g, 0, kh),
                    range(g, 0, kh),
                    range(g, 0, kw),
                    range(g, 0, kw),
                );
            }
            if range(g, 0, 3) == 0 {
                p = p.with_dilation(range(g, 1, 3), range(g, 1, 3));
            }
            if p.dims().is_ok() {
                return Case {
                    p,
                    include_pad: coin(g),
                    specials: range(g, 0, 3) == 0,
                    seed: u64::arbitrary(g),
                };
            }
        }
    }
}

/// Data with many ties (multiples of 1/4) and, sometimes, NaN and infinities.
fn data(c: &Case) -> Vec<f32> {
    let n = c.p.dims().unwrap().input_len;
    let mut rng = Rng(c.seed);
    let mut x: Vec<f32> = (0..n)
        .map(|_| (rng.uniform() * 8.0).round() / 4.0)
        .collect();
    if c.specials {
        for _ in 0..(n / 10).max(1) {
            let i = rng.below(n);
            x[i] = *[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]
                .get(rng.below(3))
                .unwrap();
        }
    }
    x
}

type Extreme =
    fn(&Pool2dParams, &[f32], &mut [f32], Option<&mut [u32]>) -> Result<(), k::KernelError>;

/// [`extreme_matches_on`] under every kernel variant this CPU runs.
fn extreme_matches(c: &Case, f: Extreme, rf: Extreme) {
    for_each_isa(|_| extreme_matches_on(c, f, rf));
}

fn extreme_matches_on(c: &Case, f: Extreme, rf: Extreme) {
    let d = c.p.dims().unwrap();
    let x = data(c);
    let (mut want, mut want_i) = (vec![0.0; d.output_len], vec![0; d.output_len]);
    rf(&c.p, &x, &mut want, Some(&mut want_i)).unwrap();
    let (mut got, mut got_i) = (vec![0.5; d.output_len], vec![7; d.output_len]);
    f(&c.p, &x, &mut got, Some(&mut got_i)).unwrap();
    for i in 0..d.output_len {
        assert!(
            got[i].to_bits() == want[i].to_bits() || (got[i].is_nan() && want[i].is_nan()),
            "value [{i}]: {} vs {}",
            got[i],
            want[i]
        );
    }
    assert_eq!(got_i, want_i, "indices");
    // without indices: the same values
    let mut got2 = vec![0.5; d.output_len];
    f(&c.p, &x, &mut got2, None).unwrap();
    assert_eq!(
        got2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // backward from the indices
    let mut rng = Rng(c.seed ^ 1);
    let gy = rng.vec(d.output_len);
    let mut want = vec![0.0; d.input_len];
    r::max_pool2d_backward(&c.p, &want_i, &gy, &mut want).unwrap();
    let mut got = vec![f32::NAN; d.input_len];
    k::max_pool2d_backward(&c.p, &got_i, &gy, &mut got).unwrap();
    let mut mag = vec![0.0; d.input_len];
    r::max_pool2d_backward(&c.p, &want_i, &abs(&gy), &mut mag).unwrap();
    let overlap = c.p.kernel_h * c.p.kernel_w;
    assert_sum_close("pool backward", &got, &want, &mag, overlap);
}

#[test]
fn max_pool_matches_reference() {
    check(
        500,
        (|c: Case| {
            extreme_matches(&c, k::max_pool2d, r::max_pool2d);
            true
        }) as fn(Case) -> bool,
    );
}

#[test]
fn min_pool_matches_reference() {
    check(
        300,
        (|c: Case| {
            extreme_matches(&c, k::min_pool2d, r::min_pool2d);
            true
        }) as fn(Case) -> bool,
    );
}

#[test]
fn avg_pool_matches_reference() {
    fn prop(c: Case) -> bool {
        let d = c.p.dims().unwrap();
        let taps = c.p.kernel_h * c.p.kernel_w;
        let x = data(&c);
        let mut want = vec![0.0; d.output_len];
        r::avg_pool2d(&c.p, c.include_pad, &x, &mut want).unwrap();
        let mut got = vec![f32::NAN; d.output_len];
        k::avg_pool2d(&c.p, c.include_pad, &x, &mut got).unwrap();
        let mut mag = vec![0.0; d.output_len];
        r::avg_pool2d(&c.p, c.include_pad, &abs(&x), &mut mag).unwrap();
        if c.specials {
            common::assert_close("avg_pool", &got, &want, 1e-6, 1e-6);
        } else {
            assert_sum_close("avg_pool", &got, &want, &mag, taps + 1);
        }
        let gy = Rng(c.seed ^ 2).vec(d.output_len);
        let mut want = vec![0.0; d.input_len];
        r::avg_pool2d_backward(&c.p, c.include_pad, &gy, &mut want).unwrap();
        let mut got = vec![f32::NAN; d.input_len];
        k::avg_pool2d_backward(&c.p, c.include_pad, &gy, &mut got).unwrap();
        let mut mag = vec![0.0; d.input_len];
        r::avg_pool2d_backward(&c.p, c.include_pad, &abs(&gy), &mut mag).unwrap();
        assert_sum_close("avg_pool backward", &got, &want, &mag, taps + 1);
        true
    }
    check(500, prop as fn(Case) -> bool);
}

#[test]
fn pytorch_conventions() {
    // 2x2 stride 2 max pool with a tie: the first position wins
    let p = Pool2dParams::new(1, 1, 2, 2, 2, 2);
    let (mut y, mut i) = ([0.0], [0]);
    k::max_pool2d(&p, &[1.0, 3.0, 3.0, 0.0], &mut y, Some(&mut i)).unwrap();
    assert_eq!((y[0], i[0]), (3.0, 1));
    // NaN wins over any number, and the first NaN is kept
    k::max_pool2d(&p, &[1.0, f32::NAN, 3.0, f32::NAN], &mut y, Some(&mut i)).unwrap();
    assert!(y[0].is_nan());
    assert_eq!(i[0], 1);
    k::min_pool2d(&p, &[1.0, f32::NAN, -3.0, 0.0], &mut y, Some(&mut i)).unwrap();
    assert!(y[0].is_nan());
    // a window entirely in the padding
    let p = Pool2dParams::new(1, 1, 1, 1, 2, 1)
        .with_stride(1, 1)
        .with_padding(2, 0, 0, 0);
    let mut y = [0.0; 2];
    let mut i = [0; 2];
    k::max_pool2d(&p, &[5.0], &mut y, Some(&mut i)).unwrap();
    assert_eq!(y[0], f32::NEG_INFINITY);
    assert_eq!(i[0], NO_INDEX);
    assert_eq!((y[1], i[1]), (5.0, 0));
    let mut g = [1.0];
    k::max_pool2d_backward(&p, &i, &[10.0, 1.0], &mut g).unwrap();
    assert_eq!(g, [1.0]);
    k::avg_pool2d(&p, false, &[5.0], &mut y).unwrap();
    assert_eq!(y, [0.0, 5.0]);
    k::avg_pool2d(&p, true, &[5.0], &mut y).unwrap();
    assert_eq!(y, [0.0, 2.5]);
}

#[test]
fn backward_matches_finite_differences() {
    fn prop(c: Case) -> bool {
        let d = c.p.dims().unwrap();
        if d.input_len > 400 {
            return true;
        }
        let mut rng = Rng(c.seed);
        let mut x = rng.distinct(d.input_len); // no ties: max/min are locally linear
        let gy = rng.vec(d.output_len);
        for (fwd, bwd) in [
            (
                k::max_pool2d as Extreme,
                k::max_pool2d_backward
                    as fn(&Pool2dParams, &[u32], &[f32], &mut [f32]) -> Result<(), k::KernelError>,
            ),
            (k::min_pool2d, k::min_pool2d_backward),
        ] {
            let mut y = vec![0.0; d.output_len];
            let mut idx = vec![0; d.output_len];
            fwd(&c.p, &x, &mut y, Some(&mut idx)).unwrap();
            let mut gx = vec![0.0; d.input_len];
            bwd(&c.p, &idx, &gy, &mut gx).unwrap();
            common::fd_check("max/min pool", &mut x, &gx, 1.0 / 512.0, 1e-3, |x| {
                let mut y = vec![0.0; d.output_len];
                fwd(&c.p, x, &mut y, None).unwrap();
                // windows with no input give +-inf: leave them out of the loss
                y.iter()
                    .zip(&gy)
                    .filter(|(v, _)| v.is_finite())
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum()
            });
        }
        let mut gx = vec![0.0; d.input_len];
        k::avg_pool2d_backward(&c.p, c.include_pad, &gy, &mut gx).unwrap();
        common::fd_check("avg pool", &mut x, &gx, 0.5, 1e-4, |x| {
            let mut y = vec![0.0; d.output_len];
            k::avg_pool2d(&c.p, c.include_pad, x, &mut y).unwrap();
            common::dot(&y, &gy)
        });
        true
    }
    check(100, prop as fn(Case) -> bool);
}

#[test]
fn global_avg_pool_matches_reference_and_finite_differences() {
    fn prop(seed: u64, n: u8, c: u8, h: u8, w: u8) -> bool {
        let (n, c, h, w) = (
            n as usize % 3 + 1,
            c as usize % 4 + 1,
            h as usize % 9 + 1,
            w as usize % 9 + 1,
        );
        let mut rng = Rng(seed);
        let mut x = rng.vec(n * c * h * w);
        let gy = rng.vec(n * c);
        let mut want = vec![0.0; n * c];
        r::global_avg_pool2d(n, c, h, w, &x, &mut want).unwrap();
        let mut got = vec![0.0; n * c];
        k::global_avg_pool2d(n, c, h, w, &x, &mut got).unwrap();
        let mut mag = vec![0.0; n * c];
        r::global_avg_pool2d(n, c, h, w, &abs(&x), &mut mag).unwrap();
        assert_sum_close("global avg", &got, &want, &mag, h * w + 1);
        let mut gx = vec![0.0; x.len()];
        k::global_avg_pool2d_backward(n, c, h, w, &gy, &mut gx).unwrap();
        let mut gw = vec![0.0; x.len()];
        r::global_avg_pool2d_backward(n, c, h, w, &gy, &mut gw).unwrap();
        common::assert_close("global avg backward", &gx, &gw, 2.0 * f32::EPSILON, 0.0);
        common::fd_check("global avg", &mut x, &gx, 0.5, 1e-4, |x| {
            let mut y = vec![0.0; n * c];
            k::global_avg_pool2d(n, c, h, w, x, &mut y).unwrap();
            common::dot(&y, &gy)
        });
        true
    }
    check(100, prop as fn(u64, u8, u8, u8, u8) -> bool);
}

/// The 2x2 stride-2 fast path: odd sizes (a column and row left over), rows wider and
/// narrower than a vector, ties, NaN and infinities, against the reference.
#[test]
fn fast_2x2_path_matches_reference() {
    for (i, (h, w)) in [
        (2, 2),
        (3, 5),
        (7, 29),
        (28, 28),
        (2, 32),
        (2, 31),
        (6, 48),
        (10, 34),
        (5, 16),
        (4, 17),
    ]
    .into_iter()
    .enumerate()
    {
        for specials in [false, true] {
            let c = Case {
                p: Pool2dParams::new(2, 3, h, w, 2, 2),
                include_pad: false,
                specials,
                seed: 900 + i as u64,
            };
            extreme_matches(&c, k::max_pool2d, r::max_pool2d);
            extreme_matches(&c, k::min_pool2d, r::min_pool2d);
        }
    }
}
