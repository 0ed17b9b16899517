//! SGEMM: transposes, leading dimensions, alpha/beta (BLAS's rules for 0), sizes across
//! the packing and blocking edges, scratch checks.

use cnnkit_kernels::{self as k, GemmParams, reference as r};

use super::{Bytes, abs, assert_sum_close_abs, for_each_isa};

/// Sizes: mostly small (every edge tile); a flag byte stretches one to cross the cache
/// blocks (KC, MC) at a few hundred.
fn dim(b: &Bytes, i: usize, big: bool) -> usize {
    if big { b.byte(i) * 3 } else { b.byte(i) % 40 }
}

pub fn sgemm(data: &[u8]) {
    let mut b = Bytes::new(data, 12);
    let big = if b.byte(9) >= 240 { b.byte(0) >> 6 } else { 0 };
    let (m, n, kk) = (
        dim(&b, 1, big == 1),
        dim(&b, 2, big == 2),
        dim(&b, 3, big == 3),
    );
    let mut p = GemmParams::new(m, n, kk);
    if b.byte(0) & 1 == 1 {
        p = p.transpose_a();
    }
    if b.byte(0) & 2 == 2 {
        p = p.transpose_b();
    }
    // leading dimensions: usually valid with slack, sometimes too small
    let ld = |base: usize, i: usize| {
        let v = b.byte(i);
        if v >= 250 {
            base.saturating_sub(v - 249)
        } else {
            base + v % 4
        }
    };
    p = p.with_leading_dims(ld(p.lda, 4), ld(p.ldb, 5), ld(p.ldc, 6));
    let (alpha, beta) = match b.byte(7) % 4 {
        0 => (1.0, 0.0),
        1 => (b.float(), b.float()),
        2 => (0.0, b.float()),
        _ => (b.float(), 0.0),
    };
    p = p.with_alpha_beta(alpha, beta);
    let lens = match p.min_lens() {
        Ok(l) => l,
        Err(e) => {
            let mut c = [0.0; 4];
            let mut s = [0.0; 4];
            assert_eq!(k::sgemm(&p, &[], &[], &mut c, &mut s), Err(e));
            assert_eq!(r::sgemm(&p, &[], &[], &mut c), Err(e));
            return;
        }
    };
    // operands may be longer than their minimum
    let extra = b.byte(8) % 3;
    let a = b.floats(lens.0 + extra);
    let bm = b.floats(lens.1 + extra);
    let c0 = b.floats(lens.2 + extra);
    let mut want = c0.clone();
    r::sgemm(&p, &a, &bm, &mut want).unwrap();
    // magnitude: |alpha| * (|A| |B|) + |beta| |C|; the unscaled product must be finite too
    // (the kernel scales each K block's partial sum)
    let mut prod = vec![0.0; c0.len()];
    r::sgemm(
        &GemmParams {
            alpha: 1.0,
            beta: 0.0,
            ..p
        },
        &abs(&a),
        &abs(&bm),
        &mut prod,
    )
    .unwrap();
    let mut mag = abs(&c0);
    r::sgemm(
        &GemmParams {
            alpha: alpha.abs(),
            beta: beta.abs(),
            ..p
        },
        &abs(&a),
        &abs(&bm),
        &mut mag,
    )
    .unwrap();
    for (m_, p_) in mag.iter_mut().zip(&prod) {
        if alpha != 0.0 && !p_.is_finite() {
            *m_ = f32::INFINITY;
        }
    }
    let need = k::sgemm_scratch_len(m, n, kk);
    for_each_isa(|isa| {
        let mut c = c0.clone();
        let mut s = vec![f32::NAN; need];
        k::sgemm(&p, &a, &bm, &mut c, &mut s).unwrap();
        // alpha scales the sum after the products, so their underflow (up to half the
        // smallest subnormal each) is scaled by it too
        // (a NaN or infinite alpha leaves no finite bound: NaN results are checked instead)
        let scale = if alpha.is_finite() { alpha.abs() } else { 0.0 };
        let atol = f32::MIN_POSITIVE + scale * kk as f32 * f32::from_bits(1);
        assert_sum_close_abs(
            &format!("sgemm {p:?} ({})", isa.name()),
            &c,
            &want,
            &mag,
            kk + 2,
            atol,
        );
        // C between the rows (columns n..ldc) and past the end is never touched
        for (i, (&g, &o)) in c.iter().zip(&c0).enumerate() {
            if i >= lens.2 || i % p.ldc >= n {
                assert!(
                    g.to_bits() == o.to_bits(),
                    "sgemm wrote C[{i}] outside the matrix"
                );
            }
        }
    });
    let mut s = vec![0.0; need - 1];
    let mut c = c0.clone();
    assert!(
        k::sgemm(&p, &a, &bm, &mut c, &mut s).is_err(),
        "scratch one short"
    );
    if lens.0 > 0 {
        assert!(k::sgemm(&p, &a[..lens.0 - 1], &bm, &mut c, &mut vec![0.0; need]).is_err());
    }
}
