//! SGEMM against the reference: transposes, leading dimensions, alpha/beta (BLAS rules
//! for 0), k below/at/above the K block, partial M and N tiles, M and N above one block.

mod common;

use cnnkit_kernels::{self as k, GemmParams, reference as r};
use common::{Rng, assert_sum_close, check, coin, range};
use quickcheck::{Arbitrary, Gen};

#[derive(Clone, Debug)]
struct Case {
    p: GemmParams,
    seed: u64,
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Self {
        let m = range(g, 1, 40);
        // (both sides of the widths whose A is read in place rather than packed: 128)
        let n = if coin(g) {
            range(g, 1, 70)
        } else {
            range(g, 120, 150)
        };
        let kk = if coin(g) {
            *g.choose(&[1, 2, 3, 5, 8, 16, 255, 256, 257, 300, 513])
                .unwrap()
        } else {
            range(g, 1, 64)
        };
        let mut p = GemmParams::new(m, n, kk);
        if coin(g) {
            p = p.transpose_a();
        }
        if coin(g) {
            p = p.transpose_b();
        }
        if coin(g) {
            p = p.with_leading_dims(
                p.lda + range(g, 0, 3),
                p.ldb + range(g, 0, 3),
                p.ldc + range(g, 0, 3),
            );
        }
        let alpha = *g.choose(&[1.0, 1.0, 0.0, -0.5, 2.0]).unwrap();
        let beta = *g.choose(&[0.0, 0.0, 1.0, 0.25]).unwrap();
        Case {
            p: p.with_alpha_beta(alpha, beta),
            seed: u64::arbitrary(g),
        }
    }
}

fn run(c: &Case) -> bool {
    let p = &c.p;
    let (la, lb, lc) = p.min_lens().unwrap();
    let mut rng = Rng(c.seed);
    let a = rng.vec(la);
    let b = rng.vec(lb);
    let mut c0 = rng.vec(lc);
    if p.beta == 0.0 {
        // C must not be read: NaN would leak through otherwise
        for i in 0..p.m {
            c0[i * p.ldc..][..p.n].fill(f32::NAN);
        }
    }
    let mut want = c0.clone();
    r::sgemm(p, &a, &b, &mut want).unwrap();
    common::for_each_isa(|isa| check_variant(p, &a, &b, &c0, &want, isa));
    true
}

fn check_variant(
    p: &GemmParams,
    a: &[f32],
    b: &[f32],
    c0: &[f32],
    want: &[f32],
    isa: cnnkit_kernels::arch::Isa,
) {
    let lc = c0.len();
    let mut got = c0.to_vec();
    let mut s = vec![f32::NAN; k::sgemm_scratch_len(p.m, p.n, p.k)];
    k::sgemm(p, a, b, &mut got, &mut s).unwrap();
    // magnitude: |alpha| |A| |B| + |beta| |C|
    let pa = GemmParams {
        alpha: p.alpha.abs(),
        beta: p.beta.abs(),
        ..*p
    };
    let mut mag = common::abs(c0);
    if p.beta == 0.0 {
        mag.fill(0.0);
    }
    r::sgemm(&pa, &common::abs(a), &common::abs(b), &mut mag).unwrap();
    // only the m x n window of C is compared; the gaps between rows must be untouched
    for i in 0..lc {
        if i % p.ldc >= p.n {
            assert!(
                got[i].to_bits() == c0[i].to_bits(),
                "{isa:?}: gap element {i} touched"
            );
        }
    }
    assert_sum_close(isa.name(), &got, want, &mag, p.k + 2);
}

#[test]
fn sgemm_matches_reference() {
    check(600, (|c: Case| run(&c)) as fn(Case) -> bool);
}

#[test]
fn alpha_zero_reads_neither_a_nor_b() {
    let p = GemmParams::new(5, 9, 3).with_alpha_beta(0.0, 2.0);
    let a = [f32::NAN; 15];
    let b = [f32::NAN; 27];
    let mut c = vec![1.5; 45];
    let mut s = vec![0.0; k::sgemm_scratch_len(5, 9, 3)];
    k::sgemm(&p, &a, &b, &mut c, &mut s).unwrap();
    assert!(c.iter().all(|&v| v == 3.0));
}

#[test]
fn large_blocks_match_reference() {
    // M above the M block, N above the N block, K over two K blocks; B read in place by
    // the AVX-512 variant up to n = 512, k = 1024 (whole slivers, the last partial one
    // packed) and just past that
    for (i, (m, n, kk)) in [
        (200, 33, 20),
        (7, 2100, 9),
        (19, 45, 700),
        (97, 130, 260),
        (20, 512, 1024),
        (9, 513, 30),
        (33, 300, 600),
        (10, 200, 1025),
    ]
    .into_iter()
    .enumerate()
    {
        for (ta, tb) in [(false, false), (true, true), (false, true), (true, false)] {
            let mut p = GemmParams::new(m, n, kk).with_alpha_beta(1.0, 0.5);
            if ta {
                p = p.transpose_a();
            }
            if tb {
                p = p.transpose_b();
            }
            run(&Case { p, seed: i as u64 });
        }
    }
}

/// Our cpuid detection agrees with std's.
#[test]
fn detection_matches_std() {
    use cnnkit_kernels::arch::{self, Isa};
    #[cfg(target_arch = "x86_64")]
    {
        let std_says =
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        assert_eq!(Isa::Avx2Fma.is_supported(), std_says);
        let avx512 = std_says
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl");
        assert_eq!(Isa::Avx512.is_supported(), avx512);
    }
    let list: Vec<Isa> = arch::supported().collect();
    println!("variants this CPU runs: {list:?}");
    assert!(list.contains(&Isa::Portable));
}

/// Our cpuid cache sizes agree with what Linux reports for cpu0 (sysfs, from the same
/// cpuid leaves or the firmware's tables), where both know a level.
#[test]
fn cache_sizes_match_linux() {
    let c = cnnkit_kernels::arch::caches();
    println!("caches: {c:?}");
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) || !dir.is_dir() {
        return;
    }
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let mut checked = 0;
    for i in 0..8 {
        let d = dir.join(format!("index{i}"));
        if !d.is_dir() {
            break;
        }
        let kind = read(d.join("type"));
        if kind.trim() == "Instruction" {
            continue;
        }
        let level: usize = read(d.join("level")).trim().parse().unwrap_or(0);
        let size = read(d.join("size"));
        let Some(kib) = size
            .trim()
            .strip_suffix('K')
            .and_then(|k| k.parse::<usize>().ok())
        else {
            continue;
        };
        let ours = match level {
            1 => c.l1d,
            2 => c.l2,
            3 => c.l3,
            _ => continue,
        };
        assert_eq!(
            ours,
            kib * 1024,
            "level {level}: {c:?}, sysfs {}",
            size.trim()
        );
        checked += 1;
    }
    assert!(
        checked > 0
            || c == cnnkit_kernels::arch::Caches {
                l1d: 0,
                l2: 0,
                l3: 0
            }
    );
}

#[test]
fn scratch_is_bounded() {
    let big = k::sgemm_scratch_len(1 << 20, 1 << 20, 1 << 20);
    assert!(big * 4 < 3 << 20, "{big} floats");
}
