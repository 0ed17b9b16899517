//! Criterion benches of the kernels on shapes from real models.
//!
//! Throughput is reported as elements per second where one element is one FLOP
//! (2 per multiply-accumulate), so `Gelem/s` reads as GFLOPS.
//!
//! Run: `cargo bench --bench kernels` (add `-- conv2d` to filter).

use cnnkit::kernels::{self as k, Activation, GemmParams, Pool2dParams, arch};
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};

use cnnkit::bench::rand as data;

/// Our SGEMM in every variant this CPU runs, beside the `matrixmultiply` and `gemm`
/// crates (both dispatch at run time too), one thread, same operands.
fn sgemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("sgemm");
    for n in [64, 256, 512, 1024] {
        let p = GemmParams::new(n, n, n);
        let (a, b) = (data(n * n, 1), data(n * n, 2));
        let mut out = vec![0.0; n * n];
        let mut s = vec![0.0; k::sgemm_scratch_len(n, n, n)];
        g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        if n >= 512 {
            g.sample_size(10);
        }
        for isa in arch::supported() {
            arch::force(Some(isa)).unwrap();
            g.bench_function(
                BenchmarkId::new(format!("cnnkit-{}", isa.name()), n),
                |bch| {
                    bch.iter(|| {
                        k::sgemm(&p, black_box(&a), black_box(&b), &mut out, &mut s).unwrap()
                    })
                },
            );
        }
        arch::force(None).unwrap();
        g.bench_function(BenchmarkId::new("matrixmultiply", n), |bch| {
            bch.iter(|| {
                // SAFETY: the pointers cover n x n row-major matrices.
                unsafe {
                    matrixmultiply::sgemm(
                        n,
                        n,
                        n,
                        1.0,
                        a.as_ptr(),
                        n as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            })
        });
        g.bench_function(BenchmarkId::new("gemm", n), |bch| {
            bch.iter(|| {
                // SAFETY: the pointers cover n x n row-major matrices.
                unsafe {
                    gemm::gemm(
                        n,
                        n,
                        n,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        n as isize,
                        b.as_ptr(),
                        1,
                        n as isize,
                        0.0_f32,
                        1.0_f32,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            })
        });
    }
    g.finish();
}

/// Every convolution shape of `cnnkit bench`, both algorithms, every variant this CPU
/// runs: forward, and forward + backward (input, weight and bias gradients).
fn conv(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv2d");
    g.sample_size(10);
    for (name, p) in cnnkit::bench::conv_shapes() {
        let d = p.dims().unwrap();
        let (x, w, b) = (
            data(d.input_len, 3),
            data(d.weight_len, 4),
            data(d.bias_len, 5),
        );
        let gy = data(d.output_len, 6);
        let mut y = vec![0.0; d.output_len];
        let (mut gx, mut gw, mut gb) = (
            vec![0.0; d.input_len],
            vec![0.0; d.weight_len],
            vec![0.0; d.bias_len],
        );
        // (Winograd's length where it applies: a 3x3 kernel at stride 1)
        let winograd_len = k::conv2d_winograd_scratch_len(&p).ok();
        let scratch_len = [
            k::conv2d_scratch_len(&p).unwrap(),
            winograd_len.unwrap_or(0),
            k::conv2d_im2col_scratch_len(&p).unwrap(),
            k::conv2d_implicit_scratch_len(&p).unwrap(),
            k::conv2d_backward_input_scratch_len(&p).unwrap(),
            k::conv2d_backward_weight_scratch_len(&p).unwrap(),
        ];
        let mut s = vec![0.0; scratch_len.into_iter().max().unwrap()];
        let macs = p.macs().unwrap() as u64;
        for isa in arch::supported() {
            arch::force(Some(isa)).unwrap();
            g.throughput(Throughput::Elements(2 * macs));
            g.bench_function(
                BenchmarkId::new(format!("direct-{}/fwd", isa.name()), name),
                |bch| {
                    bch.iter(|| {
                        k::conv2d_direct(&p, black_box(&x), &w, Some(&b), Activation::Relu, &mut y)
                            .unwrap()
                    })
                },
            );
            g.bench_function(
                BenchmarkId::new(format!("im2col-{}/fwd", isa.name()), name),
                |bch| {
                    bch.iter(|| {
                        k::conv2d_im2col(
                            &p,
                            black_box(&x),
                            &w,
                            Some(&b),
                            Activation::Relu,
                            &mut y,
                            &mut s,
                        )
                        .unwrap()
                    })
                },
            );
            g.bench_function(
                BenchmarkId::new(format!("implicit-{}/fwd", isa.name()), name),
                |bch| {
                    bch.iter(|| {
                        k::conv2d_implicit(
                            &p,
                            black_box(&x),
                            &w,
                            Some(&b),
                            Activation::Relu,
                            &mut y,
                            &mut s,
                        )
                        .unwrap()
                    })
                },
            );
            if winograd_len.is_some() {
                g.bench_function(
                    BenchmarkId::new(format!("winograd-{}/fwd", isa.name()), name),
                    |bch| {
                        bch.iter(|| {
                            k::conv2d_winograd(
                                &p,
                                black_box(&x),
                                &w,
                                Some(&b),
                                Activation::Relu,
                                &mut y,
                                &mut s,
                            )
                            .unwrap()
                        })
                    },
                );
            }
            g.throughput(Throughput::Elements(6 * macs));
            g.bench_function(
                BenchmarkId::new(format!("{}/fwd+bwd", isa.name()), name),
                |bch| {
                    bch.iter(|| {
                        k::conv2d(
                            &p,
                            black_box(&x),
                            &w,
                            Some(&b),
                            Activation::Relu,
                            &mut y,
                            &mut s,
                        )
                        .unwrap();
                        k::conv2d_backward_input(&p, &w, &gy, &mut gx, &mut s).unwrap();
                        k::conv2d_backward_weight(&p, &x, &gy, &mut gw, &mut s).unwrap();
                        k::conv2d_backward_bias(&p, &gy, &mut gb).unwrap();
                    })
                },
            );
        }
        arch::force(None).unwrap();
    }
    g.finish();
}

fn pool_and_activations(c: &mut Criterion) {
    let p = Pool2dParams::new(64, 16, 28, 28, 2, 2);
    let d = p.dims().unwrap();
    let x = data(d.input_len, 6);
    let mut y = vec![0.0; d.output_len];
    let mut idx = vec![0; d.output_len];
    let mut g = c.benchmark_group("elementwise");
    g.throughput(Throughput::Bytes(4 * d.input_len as u64));
    g.bench_function("maxpool/2x2", |bch| {
        bch.iter(|| k::max_pool2d(&p, black_box(&x), &mut y, Some(&mut idx)).unwrap())
    });
    let n = 802_816;
    let x = data(n, 7);
    let mut y = vec![0.0; n];
    g.throughput(Throughput::Bytes(4 * n as u64));
    for e in k::Elementwise::ALL {
        g.bench_function(e.name(), |bch| {
            bch.iter(|| e.forward(black_box(&x), &mut y).unwrap())
        });
    }
    g.finish();
}

/// LeNet's first layer behind ReLU and a 2x2 max pool (64 images): its weight and bias
/// gradients by the pool's backward pass and the dense kernels, and from the pool's
/// indices directly (`conv2d_backward_weight_sparse`, what training runs), every variant.
fn pooled_weight_gradient(c: &mut Criterion) {
    let p = k::Conv2dParams::new(64, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2);
    let d = p.dims().unwrap();
    let pool = Pool2dParams::new(64, 6, 28, 28, 2, 2);
    let (x, w) = (data(d.input_len, 3), data(d.weight_len, 4));
    let mut y = vec![0.0; d.output_len];
    let mut s = vec![0.0; k::conv2d_scratch_len(&p).unwrap()];
    k::conv2d(&p, &x, &w, None, Activation::Relu, &mut y, &mut s).unwrap();
    let n = d.output_len / 4;
    let (mut py, mut idx) = (vec![0.0; n], vec![0; n]);
    k::max_pool2d(&pool, &y, &mut py, Some(&mut idx)).unwrap();
    let g = data(n, 5);
    let (mut gy, mut gw, mut gb) = (
        vec![0.0; d.output_len],
        vec![0.0; d.weight_len],
        vec![0.0; d.bias_len],
    );
    let mut s = vec![
        0.0;
        k::conv2d_backward_weight_scratch_len(&p)
            .unwrap()
            .max(k::conv2d_backward_weight_sparse_scratch_len(&p).unwrap())
    ];
    let mut grp = c.benchmark_group("pooled_weight_gradient");
    grp.throughput(Throughput::Elements(2 * p.macs().unwrap() as u64));
    for isa in arch::supported() {
        arch::force(Some(isa)).unwrap();
        grp.bench_function(
            BenchmarkId::new(format!("dense-{}", isa.name()), "lenet_c1"),
            |b| {
                b.iter(|| {
                    k::max_pool2d_backward(&pool, &idx, black_box(&g), &mut gy).unwrap();
                    k::conv2d_backward_weight(&p, &x, &gy, &mut gw, &mut s).unwrap();
                    k::conv2d_backward_bias(&p, &gy, &mut gb).unwrap();
                })
            },
        );
        grp.bench_function(
            BenchmarkId::new(format!("sparse-{}", isa.name()), "lenet_c1"),
            |b| {
                b.iter(|| {
                    k::conv2d_backward_weight_sparse(
                        &p,
                        &x,
                        14 * 14,
                        &idx,
                        black_box(&g),
                        &mut gw,
                        Some(&mut gb),
                        &mut s,
                    )
                    .unwrap()
                })
            },
        );
    }
    arch::force(None).unwrap();
    grp.finish();
}

criterion_group!(
    benches,
    sgemm,
    conv,
    pooled_weight_gradient,
    pool_and_activations
);
criterion_main!(benches);
