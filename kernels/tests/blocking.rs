//! The GEMM's cache blocking: the model's picks on known CPUs, the forced blocking's
//! limits, and products and convolutions under blockings that cut every size into many
//! blocks, against the reference. (A binary of its own: forcing a blocking is
//! process-wide, and other tests compare runs bit for bit.)

mod common;

use cnnkit_kernels::arch::Caches;
use cnnkit_kernels::{
    self as k, Activation, Conv2dAlgo, Conv2dParams, ConvKernel, GemmParams, SgemmBlocking,
    reference as r,
};
use common::{Rng, abs, assert_sum_close};

const KIB: usize = 1024;

/// Held by every test that forces a blocking (the setting is process-wide).
static FORCING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn forcing() -> std::sync::MutexGuard<'static, ()> {
    FORCING.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn the_model_follows_the_caches_and_the_fma_rate() {
    let xeon = Caches {
        l1d: 48 * KIB,
        l2: 2048 * KIB,
        l3: 0,
    };
    let zen3 = Caches {
        l1d: 32 * KIB,
        l2: 512 * KIB,
        l3: 0,
    };
    // two FMAs per cycle: the B sliver in two thirds of L1d, C's strip in the rest
    for (c, nr) in [(xeon, 32), (xeon, 16), (zen3, 16), (zen3, 32)] {
        let b = SgemmBlocking::model(c, nr, true);
        assert!(b.kc * nr * 4 <= c.l1d * 2 / 3, "{c:?} {nr}: {b:?}");
        assert!(
            b.kc * nr * 4 > c.l1d * 2 / 3 - 32 * nr * 4,
            "{c:?} {nr}: {b:?}"
        );
        assert_eq!(b.mc, SgemmBlocking::DEFAULT.mc);
        assert!(b.check().is_ok());
    }
    assert_eq!(
        SgemmBlocking::model(xeon, 32, true),
        SgemmBlocking {
            mc: 96,
            kc: 256,
            nc: 1024
        }
    );
    assert_eq!(SgemmBlocking::model(xeon, 16, true).kc, 512);
    assert_eq!(SgemmBlocking::model(zen3, 16, true).kc, 320);
    // one FMA per cycle, or unknown caches: the default
    assert_eq!(
        SgemmBlocking::model(xeon, 32, false),
        SgemmBlocking::DEFAULT
    );
    let none = Caches {
        l1d: 0,
        l2: 0,
        l3: 0,
    };
    assert_eq!(SgemmBlocking::model(none, 32, true), SgemmBlocking::DEFAULT);
    // a tiny L1d still gives a valid blocking
    let tiny = Caches {
        l1d: 4 * KIB,
        l2: 64 * KIB,
        l3: 0,
    };
    assert!(SgemmBlocking::model(tiny, 32, true).check().is_ok());
}

#[test]
fn forcing_checks_the_limits_and_lifts() {
    let _lock = forcing();
    let isa = k::arch::active();
    let model = k::sgemm_blocking(isa);
    assert!(model.check().is_ok());
    let ok = SgemmBlocking {
        mc: 96,
        kc: 7,
        nc: 64,
    };
    for bad in [
        SgemmBlocking { mc: 0, ..ok },
        SgemmBlocking { mc: 50, ..ok },
        SgemmBlocking { mc: 432, ..ok },
        SgemmBlocking { kc: 0, ..ok },
        SgemmBlocking { kc: 513, ..ok },
        SgemmBlocking { nc: 0, ..ok },
        SgemmBlocking { nc: 48, ..ok },
        SgemmBlocking { nc: 1056, ..ok },
    ] {
        assert!(
            matches!(
                k::force_sgemm_blocking(Some(bad)),
                Err(k::KernelError::InvalidParameter(_))
            ),
            "{bad:?}"
        );
        assert_eq!(
            k::sgemm_blocking(isa),
            model,
            "a refused blocking took effect"
        );
    }
    k::force_sgemm_blocking(Some(ok)).unwrap();
    assert_eq!(k::sgemm_blocking(isa), ok);
    k::force_sgemm_blocking(None).unwrap();
    assert_eq!(k::sgemm_blocking(isa), model);
}

/// Blockings that cut the shapes below into many blocks (kc 1 included), the default,
/// and the largest allowed.
const BLOCKINGS: [SgemmBlocking; 5] = [
    SgemmBlocking {
        mc: 48,
        kc: 1,
        nc: 32,
    },
    SgemmBlocking {
        mc: 48,
        kc: 17,
        nc: 64,
    },
    SgemmBlocking {
        mc: 96,
        kc: 100,
        nc: 96,
    },
    SgemmBlocking::DEFAULT,
    SgemmBlocking {
        mc: 384,
        kc: 512,
        nc: 1024,
    },
];

/// Runs `f` under each of [`BLOCKINGS`] and on each variant, then lifts the forced one.
fn for_each_blocking(mut f: impl FnMut(&str)) {
    let _lock = forcing();
    for b in BLOCKINGS {
        k::force_sgemm_blocking(Some(b)).unwrap();
        let what = format!("{}/{}/{}", b.mc, b.kc, b.nc);
        common::for_each_isa(|isa| f(&format!("{what} {}", isa.name())));
    }
    k::force_sgemm_blocking(None).unwrap();
}

#[test]
fn sgemm_matches_reference_under_every_blocking() {
    // packed A and B, A or B read in place (narrow products), transposes
    for (i, (m, n, kk)) in [
        (100, 130, 70),
        (61, 1100, 40),
        (20, 200, 300),
        (130, 40, 33),
    ]
    .into_iter()
    .enumerate()
    {
        for (ta, tb) in [(false, false), (true, true)] {
            let mut p = GemmParams::new(m, n, kk).with_alpha_beta(1.0, 0.5);
            if ta {
                p = p.transpose_a();
            }
            if tb {
                p = p.transpose_b();
            }
            let (la, lb, lc) = p.min_lens().unwrap();
            let mut rng = Rng(i as u64);
            let (a, b, c0) = (rng.vec(la), rng.vec(lb), rng.vec(lc));
            let mut want = c0.clone();
            r::sgemm(&p, &a, &b, &mut want).unwrap();
            let mut mag = abs(&c0);
            let pa = GemmParams { beta: 0.5, ..p };
            r::sgemm(&pa, &abs(&a), &abs(&b), &mut mag).unwrap();
            let mut s = vec![f32::NAN; k::sgemm_scratch_len(m, n, kk)];
            for_each_blocking(|what| {
                let mut got = c0.clone();
                k::sgemm(&p, &a, &b, &mut got, &mut s).unwrap();
                assert_sum_close(what, &got, &want, &mag, kk + 2);
            });
        }
    }
}

/// The convolutions that run the packed GEMM (weights packed whole beforehand, read back
/// K block by K block): forward by im2col and Winograd, pointwise, the input gradient
/// by col2im and the weight gradient by im2col, with K from 9 to 576.
#[test]
fn convolutions_match_reference_under_every_blocking() {
    let shapes = [
        Conv2dParams::new(2, 64, 9, 11, 70, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(1, 16, 12, 12, 20, 3, 3).with_groups(2),
        Conv2dParams::new(3, 40, 7, 7, 50, 1, 1),
        Conv2dParams::new(2, 1, 30, 30, 60, 3, 3),
    ];
    for (i, p) in shapes.into_iter().enumerate() {
        let d = p.dims().unwrap();
        let mut rng = Rng(100 + i as u64);
        let (x, w, bias, gy) = (
            rng.vec(d.input_len),
            rng.vec(d.weight_len),
            rng.vec(d.bias_len),
            rng.vec(d.output_len),
        );
        let (ax, aw, ab, agy) = (abs(&x), abs(&w), abs(&bias), abs(&gy));
        let mut want = vec![0.0; d.output_len];
        r::conv2d(&p, &x, &w, Some(&bias), Activation::None, &mut want).unwrap();
        let mut mag = vec![0.0; d.output_len];
        r::conv2d(&p, &ax, &aw, Some(&ab), Activation::None, &mut mag).unwrap();
        let mut want_gx = vec![0.0; d.input_len];
        r::conv2d_backward_input(&p, &w, &gy, &mut want_gx).unwrap();
        let mut mag_gx = vec![0.0; d.input_len];
        r::conv2d_backward_input(&p, &aw, &agy, &mut mag_gx).unwrap();
        let mut want_gw = vec![0.0; d.weight_len];
        r::conv2d_backward_weight(&p, &x, &gy, &mut want_gw).unwrap();
        let mut mag_gw = vec![0.0; d.weight_len];
        r::conv2d_backward_weight(&p, &ax, &agy, &mut mag_gw).unwrap();

        let fwd: Vec<_> = [Conv2dAlgo::Im2col, Conv2dAlgo::Winograd]
            .into_iter()
            .filter_map(|a| k::Conv2dPlan::for_algo(&p, a).ok())
            .collect();
        let inp: Vec<_> = [ConvKernel::Col2im, ConvKernel::Pointwise]
            .into_iter()
            .filter_map(|kn| k::Conv2dInputGradPlan::for_kernel(&p, kn).ok())
            .collect();
        let wgt: Vec<_> = [ConvKernel::Im2col, ConvKernel::Pointwise]
            .into_iter()
            .filter_map(|kn| k::Conv2dWeightGradPlan::for_kernel(&p, kn).ok())
            .collect();
        assert!(
            !fwd.is_empty() && !inp.is_empty() && !wgt.is_empty(),
            "{p:?}"
        );
        let k_fwd = d.col_rows + 1;
        let k_in = d.out_per_group * p.kernel_h * p.kernel_w;
        let k_w = p.batch * d.col_cols;
        for_each_blocking(|what| {
            for plan in &fwd {
                let mut s = vec![f32::NAN; plan.scratch_len()];
                let mut got = vec![f32::NAN; d.output_len];
                plan.run(&x, &w, Some(&bias), Activation::None, &mut got, &mut s)
                    .unwrap();
                let what = format!("{what} forward {:?} {p:?}", plan.kernel());
                assert_sum_close(&what, &got, &want, &mag, k_fwd);
            }
            for plan in &inp {
                let mut s = vec![f32::NAN; plan.scratch_len()];
                let mut got = vec![f32::NAN; d.input_len];
                plan.run(&w, &gy, &mut got, &mut s).unwrap();
                let what = format!("{what} input grad {:?} {p:?}", plan.kernel());
                assert_sum_close(&what, &got, &want_gx, &mag_gx, k_in);
            }
            for plan in &wgt {
                let mut s = vec![f32::NAN; plan.scratch_len()];
                let mut got = vec![f32::NAN; d.weight_len];
                plan.run(&x, &gy, &mut got, &mut s).unwrap();
                let what = format!("{what} weight grad {:?} {p:?}", plan.kernel());
                assert_sum_close(&what, &got, &want_gw, &mag_gw, k_w);
            }
        });
    }
}
