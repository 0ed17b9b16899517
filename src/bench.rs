//! `cnnkit bench`: times the kernels on the shapes of real models and reports ms, GFLOPS
//! and the fraction of this CPU's measured FMA peak.
//!
//! **Not part of the library's API**: the harness behind `cnnkit bench` and the shapes the
//! criterion benches (`benches/kernels.rs`) share with it, public only so that they can.
//! It may change in any release.
//!
//! Each row is the median of repeated runs (at least 5, and at least `min_time` in all)
//! after one warm-up run. With more than one thread, the batch (or the rows of a GEMM,
//! or the elements of an element-wise kernel) is split across scoped threads, each with
//! its own scratch, as the training loop does.

use std::time::{Duration, Instant};

use cnnkit_kernels::{self as k, Activation, Conv2dParams, GemmParams, Pool2dParams, arch};
use serde::Serialize;

/// Which passes a row times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Pass {
    /// The forward pass.
    #[serde(rename = "fwd")]
    Fwd,
    /// Forward, then the input, weight and bias gradients.
    #[serde(rename = "fwd+bwd")]
    FwdBwd,
}

impl Pass {
    /// `"fwd"` or `"fwd+bwd"`.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Fwd => "fwd",
            Pass::FwdBwd => "fwd+bwd",
        }
    }
}

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Kernel and shape name, e.g. `conv2d/lenet_c1`, `sgemm/1024`, `maxpool/2x2`, `tanh`.
    pub name: String,
    /// Algorithm and instruction set, e.g. `direct/avx2`.
    pub variant: String,
    /// `fwd` or `fwd+bwd`.
    pub pass: Pass,
    /// Threads used.
    pub threads: usize,
    /// Median wall time of one call, milliseconds.
    pub ms: f64,
    /// Floating-point operations per second, 1e9 (0 for kernels that do no arithmetic to
    /// speak of, such as max pooling, whose `gbytes` says more).
    pub gflops: f64,
    /// Bytes read and written per second, 1e9.
    pub gbytes: f64,
    /// The shape, human-readable.
    pub shape: String,
    /// The measured FMA peak of one core on the instruction set the row ran
    /// ([`fma_peak_gflops`]), GFLOPS.
    pub peak_gflops: f64,
    /// `gflops` as a percentage of `peak_gflops` times the threads used.
    pub pct_peak: f64,
}

/// The convolution shapes of the benchmark: `(name, params)`, with the PyTorch layer
/// each stands for in its name.
pub fn conv_shapes() -> Vec<(&'static str, Conv2dParams)> {
    vec![
        (
            "lenet_c1",
            Conv2dParams::new(64, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2),
        ),
        ("lenet_c2", Conv2dParams::new(64, 6, 14, 14, 16, 5, 5)),
        (
            "vgg3x3_64",
            Conv2dParams::new(8, 64, 56, 56, 64, 3, 3).with_padding(1, 1, 1, 1),
        ),
        (
            "res3x3_128",
            Conv2dParams::new(8, 128, 28, 28, 128, 3, 3).with_padding(1, 1, 1, 1),
        ),
        ("pw1x1_256", Conv2dParams::new(8, 256, 14, 14, 256, 1, 1)),
        (
            "stem7x7s2",
            Conv2dParams::new(8, 3, 224, 224, 64, 7, 7)
                .with_stride(2, 2)
                .with_padding(3, 3, 3, 3),
        ),
        (
            "dw3x3_256",
            Conv2dParams::new(8, 256, 28, 28, 256, 3, 3)
                .with_padding(1, 1, 1, 1)
                .with_groups(256),
        ),
        // MobileNetV2: its first layer, a stride-2 depthwise layer, expansions from few
        // channels
        (
            "mbv2_stem3x3s2",
            Conv2dParams::new(8, 3, 224, 224, 32, 3, 3)
                .with_stride(2, 2)
                .with_padding(1, 1, 1, 1),
        ),
        (
            "mbv2_dw3x3s2",
            Conv2dParams::new(8, 144, 56, 56, 144, 3, 3)
                .with_stride(2, 2)
                .with_padding(1, 1, 1, 1)
                .with_groups(144),
        ),
        (
            "mbv2_pw16to96",
            Conv2dParams::new(8, 16, 112, 112, 96, 1, 1),
        ),
        (
            "mbv2_pw24to144",
            Conv2dParams::new(8, 24, 56, 56, 144, 1, 1),
        ),
        // a first layer from 3 channels on a large image, stride 1
        (
            "rgb3x3_320",
            Conv2dParams::new(4, 3, 320, 320, 32, 3, 3).with_padding(1, 1, 1, 1),
        ),
        // 5x5 kernels on 32 channels (CIFAR-sized)
        (
            "conv5x5_32",
            Conv2dParams::new(8, 32, 32, 32, 64, 5, 5).with_padding(2, 2, 2, 2),
        ),
        // ResNet-18's deep 3x3 layers
        (
            "res3x3_256",
            Conv2dParams::new(8, 256, 14, 14, 256, 3, 3).with_padding(1, 1, 1, 1),
        ),
        (
            "res3x3_512",
            Conv2dParams::new(8, 512, 7, 7, 512, 3, 3).with_padding(1, 1, 1, 1),
        ),
        // every convolution of the `fmnist` preset, at its training batch
        (
            "fmnist_c1",
            Conv2dParams::new(64, 1, 28, 28, 32, 3, 3).with_padding(1, 1, 1, 1),
        ),
        (
            "fmnist_c2",
            Conv2dParams::new(64, 32, 14, 14, 64, 3, 3).with_padding(1, 1, 1, 1),
        ),
        (
            "fmnist_c3",
            Conv2dParams::new(64, 64, 7, 7, 128, 3, 3).with_padding(1, 1, 1, 1),
        ),
    ]
}

/// Median milliseconds of `f` over at least 5 runs and at least `min_time`.
pub fn time_ms(min_time: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm up: first touch of buffers, caches, branch predictors
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed() < min_time && samples.len() < 200) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// This core's FP32 multiply-add peak in GFLOPS on `isa`'s widest vectors: independent
/// chains of fused multiply-adds, as many as the registers hold beside the two operands
/// (16 zmm of 32; 12 ymm of 16, which cover two 4-cycle FMA ports), on zmm for
/// [`arch::Isa::Avx512`], ymm for [`arch::Isa::Avx2Fma`], and for
/// [`arch::Isa::Portable`] the portable `f32x8` (6 chains; on a default x86-64 build two
/// SSE2 registers each, a multiply and an add per lane). A multiply-add counts as two
/// operations. 0 if this CPU does not run `isa`.
pub fn fma_peak_gflops(isa: arch::Isa) -> f64 {
    const ITERS: usize = 2_000_000;
    let gflops = |chains: usize, lanes: usize, ms: f64| {
        (ITERS * chains * 2 * lanes) as f64 / (ms * 1e-3) / 1e9
    };
    let min = Duration::from_millis(150);
    if !isa.is_supported() {
        return 0.0;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        arch::Isa::Avx512 => {
            const CHAINS: usize = 16;
            #[target_feature(enable = "avx512f")]
            fn peak() {
                use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_set1_ps};
                let mut acc = [_mm512_set1_ps(0.0); CHAINS];
                let (a, b) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(0.999_999));
                for _ in 0..ITERS {
                    for x in acc.iter_mut() {
                        *x = _mm512_fmadd_ps(*x, a, b);
                    }
                }
                std::hint::black_box(acc);
            }
            // SAFETY: the CPU supports AVX-512 F (checked above).
            gflops(CHAINS, 16, time_ms(min, || unsafe { peak() }))
        }
        #[cfg(target_arch = "x86_64")]
        arch::Isa::Avx2Fma => {
            const CHAINS: usize = 12;
            #[target_feature(enable = "avx2,fma")]
            fn peak() {
                use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_set1_ps};
                let mut acc = [_mm256_set1_ps(0.0); CHAINS];
                let (a, b) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(0.999_999));
                for _ in 0..ITERS {
                    for x in acc.iter_mut() {
                        *x = _mm256_fmadd_ps(*x, a, b);
                    }
                }
                std::hint::black_box(acc);
            }
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            gflops(CHAINS, 8, time_ms(min, || unsafe { peak() }))
        }
        _ => gflops(
            6,
            8,
            time_ms(min, || {
                let mut acc = [wide::f32x8::splat(0.0); 6];
                let a = wide::f32x8::splat(1.000_000_1);
                let b = wide::f32x8::splat(0.999_999);
                for _ in 0..ITERS {
                    for x in acc.iter_mut() {
                        *x = x.mul_add(a, b);
                    }
                }
                std::hint::black_box(acc);
            }),
        ),
    }
}

/// [`fma_peak_gflops`] of every variant this CPU runs, widest first.
pub fn fma_peaks() -> Vec<(arch::Isa, f64)> {
    let mut v: Vec<_> = arch::supported().map(|i| (i, fma_peak_gflops(i))).collect();
    v.reverse();
    v
}

/// `n` pseudo-random floats in `[-0.5, 0.5)` from `seed` (xorshift32): benchmark data
/// that is the same on every run.
pub fn rand(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

/// Splits `0..n` into at most `parts` contiguous ranges.
/// A kernel call for [`run_jobs`].
type Job<'a> = Box<dyn FnOnce() -> Result<(), k::KernelError> + Send + 'a>;

/// Runs the jobs, one thread each, and returns the first error. A single job runs on the
/// calling thread, so that one-thread rows time the kernel and not a thread's start.
fn run_jobs(jobs: Vec<Job<'_>>) -> Result<(), k::KernelError> {
    if jobs.len() == 1 {
        return jobs.into_iter().try_for_each(|j| j());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|j| s.spawn(j)).collect();
        let mut res = Ok(());
        for h in handles {
            if let Ok(Err(e)) = h.join() {
                res = Err(e);
            }
        }
        res
    })
}

fn split(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    let base = n / parts;
    let extra = n % parts;
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 0..parts {
        let len = base + usize::from(i < extra);
        out.push(start..start + len);
        start += len;
    }
    out
}

/// One thread's share of a convolution benchmark: its images and buffers.
struct ConvPart {
    p: Conv2dParams,
    x: Vec<f32>,
    y: Vec<f32>,
    /// The gradient at the ReLU's output, and (`gy`) at the convolution's.
    gy_out: Vec<f32>,
    gy: Vec<f32>,
    gx: Vec<f32>,
    gw: Vec<f32>,
    gb: Vec<f32>,
    scratch: Vec<f32>,
}

impl ConvPart {
    fn new(p: Conv2dParams, seed: u32) -> Result<Self, k::KernelError> {
        let d = p.dims()?;
        let scratch = [
            k::conv2d_scratch_len(&p)?,
            k::conv2d_backward_input_scratch_len(&p)?,
            k::conv2d_backward_weight_scratch_len(&p)?,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Ok(Self {
            p,
            x: rand(d.input_len, seed),
            y: vec![0.0; d.output_len],
            gy_out: rand(d.output_len, seed + 1),
            gy: vec![0.0; d.output_len],
            gx: vec![0.0; d.input_len],
            gw: vec![0.0; d.weight_len],
            gb: vec![0.0; d.bias_len],
            scratch: vec![0.0; scratch],
        })
    }

    fn run(&mut self, w: &[f32], b: &[f32], pass: Pass) -> Result<(), k::KernelError> {
        let p = &self.p;
        k::conv2d(
            p,
            &self.x,
            w,
            Some(b),
            Activation::Relu,
            &mut self.y,
            &mut self.scratch,
        )?;
        if pass == Pass::FwdBwd {
            // the ReLU's backward (PyTorch's `threshold_backward`): the gradient where y > 0
            k::activation_backward(Activation::Relu, &self.y, &self.gy_out, &mut self.gy)?;
            let gy = &self.gy;
            k::conv2d_backward_input(p, w, gy, &mut self.gx, &mut self.scratch)?;
            k::conv2d_backward_weight(p, &self.x, gy, &mut self.gw, &mut self.scratch)?;
            k::conv2d_backward_bias(p, gy, &mut self.gb)?;
        }
        Ok(())
    }
}

/// Times one convolution shape with `threads` threads splitting the batch. Weight and
/// bias gradients of the threads are summed at the end of each step, as training would.
pub fn bench_conv(
    name: &str,
    p: &Conv2dParams,
    pass: Pass,
    threads: usize,
    min_time: Duration,
) -> Result<Row, k::KernelError> {
    let d = p.dims()?;
    let w = rand(d.weight_len, 7);
    let b = rand(d.bias_len, 8);
    let mut parts = split(p.batch, threads)
        .into_iter()
        .map(|r| {
            ConvPart::new(
                Conv2dParams {
                    batch: r.len(),
                    ..*p
                },
                r.start as u32,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut gw_total = vec![0.0_f32; d.weight_len];
    let mut err = None;
    let ms = time_ms(min_time, || {
        if parts.len() == 1 {
            if let Err(e) = parts[0].run(&w, &b, pass) {
                err = Some(e);
            }
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = parts
                    .iter_mut()
                    .map(|part| s.spawn(|| part.run(&w, &b, pass)))
                    .collect();
                for h in handles {
                    if let Ok(Err(e)) = h.join() {
                        err = Some(e);
                    }
                }
            });
            if pass == Pass::FwdBwd {
                gw_total.copy_from_slice(&parts[0].gw);
                for part in &parts[1..] {
                    for (t, g) in gw_total.iter_mut().zip(&part.gw) {
                        *t += g;
                    }
                }
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let macs = p.macs()? as f64;
    let flops = match pass {
        Pass::Fwd => 2.0 * macs,
        Pass::FwdBwd => 6.0 * macs, // forward, input gradient, weight gradient
    };
    let bytes = 4.0 * (d.input_len + d.output_len + d.weight_len) as f64;
    // the kernels that really ran (per thread's share: the plans of its batch)
    let part = &parts[0].p;
    let fwd = k::Conv2dPlan::new(part)?.kernel().name();
    let algo = match pass {
        Pass::Fwd => fwd.to_string(),
        Pass::FwdBwd => format!(
            "{fwd}+{}+{}",
            k::Conv2dInputGradPlan::new(part)?.kernel().name(),
            k::Conv2dWeightGradPlan::new(part)?.kernel().name()
        ),
    };
    Ok(Row {
        name: format!("conv2d/{name}"),
        variant: format!("{algo}/{}", arch::active().name()),
        pass,
        threads,
        ms,
        gflops: flops / (ms * 1e-3) / 1e9,
        gbytes: bytes / (ms * 1e-3) / 1e9,
        shape: format!(
            "N{} C{} {}x{} -> {} k{}x{} s{} p{}{}",
            p.batch,
            p.in_channels,
            p.in_h,
            p.in_w,
            p.out_channels,
            p.kernel_h,
            p.kernel_w,
            p.stride_h,
            p.pad_top,
            if p.groups > 1 {
                format!(" g{}", p.groups)
            } else {
                String::new()
            }
        ),
        peak_gflops: 0.0,
        pct_peak: 0.0,
    })
}

/// The convolution shapes [`run`] also times in int8 (`conv2d_s8/NAME`): LeNet's, the
/// ResNet, pointwise and depthwise layers.
pub const INT8_SHAPES: [&str; 8] = [
    "lenet_c1",
    "lenet_c2",
    "res3x3_128",
    "res3x3_256",
    "res3x3_512",
    "pw1x1_256",
    "dw3x3_256",
    "mbv2_dw3x3s2",
];

/// Times the int8 forward convolution ([`k::conv2d_s8_prepacked`]: NHWC, per-channel
/// requantisation, ReLU clamp, the weights packed before timing) of one shape, `threads`
/// threads splitting the batch. GFLOPS counts two
/// operations per multiply-accumulate, as the f32 rows do.
pub fn bench_conv_s8(
    name: &str,
    p: &Conv2dParams,
    threads: usize,
    min_time: Duration,
) -> Result<Row, k::KernelError> {
    crate::detect_cpu();
    let d = p.dims()?;
    let bytes = |n: usize, seed: u32| -> Vec<i8> {
        rand(n, seed).iter().map(|v| (v * 127.0) as i8).collect()
    };
    let x = bytes(d.input_len, 1);
    let w = bytes(d.weight_len, 2);
    let bias: Vec<i32> = (0..d.bias_len).map(|i| (i as i32 % 17 - 8) * 300).collect();
    let rq: Vec<k::Requant> = (0..p.out_channels)
        .map(|i| k::Requant::from_real(0.0004 + 0.00001 * i as f64))
        .collect::<Result<_, _>>()?;
    let q = k::QuantOutput::new(-3, -128, &rq).with_clamp(-128, 127);
    let ranges = split(p.batch, threads);
    let parts: Vec<Conv2dParams> = ranges
        .iter()
        .map(|r| Conv2dParams {
            batch: r.len(),
            ..*p
        })
        .collect();
    let mut y = vec![0i8; d.output_len];
    let mut scratch: Vec<Vec<i16>> = parts
        .iter()
        .map(|pp| k::conv2d_s8_scratch_len(pp).map(|n| vec![0i16; n]))
        .collect::<Result<_, _>>()?;
    // the weights packed once for each part's kernel (as a model packs them when it is
    // loaded, and as fbgemm's module does when its weights are set)
    let packed: Vec<Vec<u8>> = parts
        .iter()
        .map(|pp| {
            let mut v = vec![0u8; k::conv2d_s8_packed_len(pp)?];
            k::conv2d_s8_pack(pp, &w, &mut v)?;
            Ok(v)
        })
        .collect::<Result<_, k::KernelError>>()?;
    let mut err = None;
    let ms = time_ms(min_time, || {
        let mut rest_y = &mut y[..];
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for (((r, pp), sc), pk) in ranges
            .iter()
            .zip(&parts)
            .zip(scratch.iter_mut())
            .zip(&packed)
        {
            let (mine, tail) = rest_y.split_at_mut(r.len() * d.out_image_len);
            rest_y = tail;
            let xs = &x[r.start * d.image_len..r.end * d.image_len];
            let (w, bias, q) = (&w, &bias, &q);
            jobs.push(Box::new(move || {
                k::conv2d_s8_prepacked(pp, q, xs, w, pk, Some(bias), mine, sc)
            }));
        }
        if let Err(e) = run_jobs(jobs) {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let macs = p.macs()? as f64;
    Ok(Row {
        name: format!("conv2d_s8/{name}"),
        // (on aarch64, `+sdot` where the dot product kernel ran)
        variant: format!(
            "int8/{}{}",
            arch::active().name(),
            if arch::aarch64_dotprod() { "+sdot" } else { "" }
        ),
        pass: Pass::Fwd,
        threads,
        ms,
        gflops: 2.0 * macs / (ms * 1e-3) / 1e9,
        gbytes: (d.input_len + d.output_len + d.weight_len) as f64 / (ms * 1e-3) / 1e9,
        shape: format!(
            "N{} C{} {}x{} -> {} k{}x{} s{} p{}{} NHWC",
            p.batch,
            p.in_channels,
            p.in_h,
            p.in_w,
            p.out_channels,
            p.kernel_h,
            p.kernel_w,
            p.stride_h,
            p.pad_top,
            if p.groups > 1 {
                format!(" g{}", p.groups)
            } else {
                String::new()
            }
        ),
        peak_gflops: 0.0,
        pct_peak: 0.0,
    })
}

/// Times `C = A B` for square `n` with the rows of C split across threads.
pub fn bench_sgemm(n: usize, threads: usize, min_time: Duration) -> Result<Row, k::KernelError> {
    let a = rand(n * n, 1);
    let b = rand(n * n, 2);
    let mut c = vec![0.0; n * n];
    let ranges = split(n, threads);
    let mut scratch: Vec<Vec<f32>> = ranges
        .iter()
        .map(|r| vec![0.0; k::sgemm_scratch_len(r.len(), n, n)])
        .collect();
    let mut err = None;
    let ms = time_ms(min_time, || {
        let mut rest = &mut c[..];
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for (r, sc) in ranges.iter().zip(scratch.iter_mut()) {
            let (mine, tail) = rest.split_at_mut(r.len() * n);
            rest = tail;
            let a = &a[r.start * n..r.end * n];
            let b = &b[..];
            let p = GemmParams::new(r.len(), n, n);
            jobs.push(Box::new(move || k::sgemm(&p, a, b, mine, sc)));
        }
        if let Err(e) = run_jobs(jobs) {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let flops = 2.0 * (n * n * n) as f64;
    Ok(Row {
        name: format!("sgemm/{n}"),
        variant: format!("packed/{}", arch::active().name()),
        pass: Pass::Fwd,
        threads,
        ms,
        gflops: flops / (ms * 1e-3) / 1e9,
        gbytes: 12.0 * (n * n) as f64 / (ms * 1e-3) / 1e9,
        shape: format!("{n}x{n}x{n}"),
        peak_gflops: 0.0,
        pct_peak: 0.0,
    })
}

/// Times an element-wise kernel `f(input, output)` over `n` floats, split across threads.
fn bench_map(
    name: &str,
    n: usize,
    flops_per_elem: f64,
    threads: usize,
    min_time: Duration,
    f: impl Fn(&[f32], &mut [f32]) -> Result<(), k::KernelError> + Copy + Send + 'static,
) -> Result<Row, k::KernelError> {
    let x: Vec<f32> = rand(n, 3).iter().map(|v| v * 8.0).collect();
    let mut y = vec![0.0; n];
    let ranges = split(n, threads);
    let mut err = None;
    let ms = time_ms(min_time, || {
        let mut rest = &mut y[..];
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for r in &ranges {
            let (mine, tail) = rest.split_at_mut(r.len());
            rest = tail;
            let xs = &x[r.clone()];
            jobs.push(Box::new(move || f(xs, mine)));
        }
        if let Err(e) = run_jobs(jobs) {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok(Row {
        name: name.to_string(),
        variant: format!("vector/{}", arch::active().name()),
        pass: Pass::Fwd,
        threads,
        ms,
        gflops: flops_per_elem * n as f64 / (ms * 1e-3) / 1e9,
        gbytes: 8.0 * n as f64 / (ms * 1e-3) / 1e9,
        shape: format!("{n} floats"),
        peak_gflops: 0.0,
        pct_peak: 0.0,
    })
}

/// Times 2x2 stride-2 max pooling (with indices, as training needs) on
/// `(64, 16, 28, 28)`, planes split across threads.
pub fn bench_maxpool(threads: usize, min_time: Duration) -> Result<Row, k::KernelError> {
    let full = Pool2dParams::new(64, 16, 28, 28, 2, 2);
    let d = full.dims()?;
    let x = rand(d.input_len, 4);
    let mut y = vec![0.0; d.output_len];
    let mut idx = vec![0_u32; d.output_len];
    let ranges = split(64, threads);
    let mut err = None;
    let ms = time_ms(min_time, || {
        let (mut ry, mut ri) = (&mut y[..], &mut idx[..]);
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for r in &ranges {
            let p = Pool2dParams {
                batch: r.len(),
                ..full
            };
            let per_in = 16 * 28 * 28;
            let per_out = 16 * 14 * 14;
            let (my, ty) = ry.split_at_mut(r.len() * per_out);
            let (mi, ti) = ri.split_at_mut(r.len() * per_out);
            ry = ty;
            ri = ti;
            let xs = &x[r.start * per_in..r.end * per_in];
            jobs.push(Box::new(move || k::max_pool2d(&p, xs, my, Some(mi))));
        }
        if let Err(e) = run_jobs(jobs) {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok(Row {
        name: "maxpool/2x2".into(),
        variant: format!("vector/{}", arch::active().name()),
        pass: Pass::Fwd,
        threads,
        ms,
        gflops: 3.0 * d.output_len as f64 / (ms * 1e-3) / 1e9,
        gbytes: 4.0 * (d.input_len + 2 * d.output_len) as f64 / (ms * 1e-3) / 1e9,
        shape: "64x16x28x28 k2 s2".into(),
        peak_gflops: 0.0,
        pct_peak: 0.0,
    })
}

/// One kernel timed on a layer's pass by [`tune_conv`].
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The kernel that ran (`implicit`, `im2col`, `winograd`, `col2im`...).
    pub kernel: &'static str,
    /// Median milliseconds of one call.
    pub ms: f64,
    /// Whether the planner picks it for this layer.
    pub chosen: bool,
}

/// Every kernel of each pass of a layer timed by [`tune_conv`].
#[derive(Debug, Clone, Serialize)]
pub struct Tuned {
    /// The forward algorithms (direct, implicit GEMM, im2col + GEMM, Winograd).
    pub forward: Vec<Candidate>,
    /// The input gradient's kernels.
    pub input_grad: Vec<Candidate>,
    /// The weight gradient's kernels.
    pub weight_grad: Vec<Candidate>,
}

/// Median milliseconds of each of `n` calls `run(i)`, called in turn, one of each per
/// round, until each has run at least 5 times and for `min_time` in all.
fn time_each(
    n: usize,
    min_time: Duration,
    mut run: impl FnMut(usize) -> Result<(), k::KernelError>,
) -> Result<Vec<f64>, k::KernelError> {
    let mut times = vec![Vec::new(); n];
    let start = Instant::now();
    while n > 0 && (times[0].len() < 5 || (start.elapsed() < min_time && times[0].len() < 200)) {
        for (i, t) in times.iter_mut().enumerate() {
            let t0 = Instant::now();
            run(i)?;
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

/// The candidates of one pass: each kernel's name and median, the planner's marked.
fn candidates(kernels: &[k::ConvKernel], ms: Vec<f64>, chosen: k::ConvKernel) -> Vec<Candidate> {
    kernels
        .iter()
        .zip(ms)
        .map(|(&kn, ms)| Candidate {
            kernel: kn.name(),
            ms,
            chosen: kn == chosen,
        })
        .collect()
}

/// Times every kernel that takes each pass of `p`: the forward algorithms (direct,
/// implicit GEMM, im2col + GEMM, Winograd) and each kernel of the input and weight
/// gradients; the planners' picks are marked. What `cnnkit bench --tune` prints, to check
/// the planners' thresholds on a new CPU.
///
/// # Errors
/// As [`Conv2dParams::dims`].
pub fn tune_conv(p: &Conv2dParams, min_time: Duration) -> Result<Tuned, k::KernelError> {
    let d = p.dims()?;
    let (x, w, gy) = (
        rand(d.input_len, 1),
        rand(d.weight_len, 2),
        rand(d.output_len, 3),
    );
    let mut scratch = Vec::new();

    let fwd: Vec<k::Conv2dPlan> = [
        k::Conv2dAlgo::Direct,
        k::Conv2dAlgo::Implicit,
        k::Conv2dAlgo::Im2col,
        k::Conv2dAlgo::Winograd,
    ]
    .into_iter()
    .filter_map(|a| k::Conv2dPlan::for_algo(p, a).ok())
    .collect();
    let mut y = vec![0.0; d.output_len];
    scratch.resize(fwd.iter().map(|q| q.scratch_len()).max().unwrap_or(0), 0.0);
    let ms = time_each(fwd.len(), min_time, |i| {
        fwd[i].run(&x, &w, None, Activation::Relu, &mut y, &mut scratch)
    })?;
    let kernels: Vec<_> = fwd.iter().map(k::Conv2dPlan::kernel).collect();
    let forward = candidates(&kernels, ms, k::Conv2dPlan::new(p)?.kernel());

    // every kernel a backward plan takes (for_kernel refuses the others)
    let inp: Vec<_> = k::ConvKernel::ALL
        .into_iter()
        .filter_map(|kn| k::Conv2dInputGradPlan::for_kernel(p, kn).ok())
        .collect();
    let mut gx = vec![0.0; d.input_len];
    scratch.resize(inp.iter().map(|q| q.scratch_len()).max().unwrap_or(0), 0.0);
    let ms = time_each(inp.len(), min_time, |i| {
        inp[i].run(&w, &gy, &mut gx, &mut scratch)
    })?;
    let kernels: Vec<_> = inp.iter().map(k::Conv2dInputGradPlan::kernel).collect();
    let input_grad = candidates(&kernels, ms, k::Conv2dInputGradPlan::new(p)?.kernel());

    let wgt: Vec<_> = k::ConvKernel::ALL
        .into_iter()
        .filter_map(|kn| k::Conv2dWeightGradPlan::for_kernel(p, kn).ok())
        .collect();
    let mut gw = vec![0.0; d.weight_len];
    scratch.resize(wgt.iter().map(|q| q.scratch_len()).max().unwrap_or(0), 0.0);
    let ms = time_each(wgt.len(), min_time, |i| {
        wgt[i].run(&x, &gy, &mut gw, &mut scratch)
    })?;
    let kernels: Vec<_> = wgt.iter().map(k::Conv2dWeightGradPlan::kernel).collect();
    let weight_grad = candidates(&kernels, ms, k::Conv2dWeightGradPlan::new(p)?.kernel());
    Ok(Tuned {
        forward,
        input_grad,
        weight_grad,
    })
}

/// One blocking of the packed GEMM timed by [`tune_sgemm`].
#[derive(Debug, Clone, Serialize)]
pub struct BlockingCandidate {
    /// Rows of A packed at once.
    pub mc: usize,
    /// Depth of a packed panel.
    pub kc: usize,
    /// Columns of B packed at once.
    pub nc: usize,
    /// Median milliseconds of one product.
    pub ms: f64,
    /// GFLOPS at that median.
    pub gflops: f64,
    /// Whether it is the model's blocking for this CPU ([`k::SgemmBlocking::model`]).
    pub chosen: bool,
}

/// The blockings [`tune_sgemm`] tries besides the model's: `kc` from 128 to 512, `mc`
/// from 48 to 384, `nc` 512 and 1024.
pub fn blocking_grid() -> Vec<k::SgemmBlocking> {
    let mut v = Vec::new();
    for kc in [128, 192, 256, 320, 384, 512] {
        for mc in [48, 96, 192, 384] {
            for nc in [512, 1024] {
                v.push(k::SgemmBlocking { mc, kc, nc });
            }
        }
    }
    v
}

/// Times `C = A B` (square `n`, one thread, the active variant) under each blocking of
/// `grid` and the model's own, in turn, and marks the model's: what `cnnkit bench --tune`
/// prints to check the blocking model on a new CPU. The forced blocking is lifted
/// afterwards, on error too.
///
/// # Errors
/// As [`k::sgemm`].
pub fn tune_sgemm(
    n: usize,
    grid: &[k::SgemmBlocking],
    min_time: Duration,
) -> Result<Vec<BlockingCandidate>, k::KernelError> {
    let model = k::sgemm_blocking(arch::active());
    let mut list: Vec<k::SgemmBlocking> = vec![model];
    list.extend(grid.iter().copied().filter(|b| *b != model));
    let (a, b) = (rand(n * n, 1), rand(n * n, 2));
    let mut c = vec![0.0; n * n];
    let mut scratch = vec![0.0; k::sgemm_scratch_len(n, n, n)];
    let p = GemmParams::new(n, n, n);
    let ms = time_each(list.len(), min_time, |i| {
        k::force_sgemm_blocking(Some(list[i]))?;
        k::sgemm(&p, &a, &b, &mut c, &mut scratch)
    });
    k::force_sgemm_blocking(None)?;
    let flops = 2.0 * (n * n * n) as f64;
    Ok(list
        .iter()
        .zip(ms?)
        .map(|(b, ms)| BlockingCandidate {
            mc: b.mc,
            kc: b.kc,
            nc: b.nc,
            ms,
            gflops: flops / (ms * 1e-3) / 1e9,
            chosen: *b == model,
        })
        .collect())
}

/// Runs every benchmark whose name contains `filter` and returns the rows, with
/// `peak_gflops` and `pct_peak` filled from `peaks` (per core, as [`fma_peaks`] gives):
/// the peak of the instruction set a row's variant names (`implicit/avx2` -> AVX2),
/// else of [`arch::active`].
pub fn run(
    filter: Option<&str>,
    threads: usize,
    min_time: Duration,
    peaks: &[(arch::Isa, f64)],
    mut progress: impl FnMut(&Row),
) -> Result<Vec<Row>, k::KernelError> {
    let want = |name: &str| filter.is_none_or(|f| name.contains(f));
    let mut rows = Vec::new();
    let mut push = |mut r: Row, rows: &mut Vec<Row>| {
        let isa = r
            .variant
            .rsplit('/')
            .next()
            .and_then(arch::Isa::from_name)
            .unwrap_or_else(arch::active);
        // (no int8 peak is measured: int8 rows stand beside the f32 rows of their shapes)
        r.peak_gflops = if r.variant.starts_with("int8/") {
            0.0
        } else {
            peaks.iter().find(|p| p.0 == isa).map_or(0.0, |p| p.1)
        };
        r.pct_peak = if r.peak_gflops > 0.0 {
            100.0 * r.gflops / (r.peak_gflops * threads as f64)
        } else {
            0.0
        };
        progress(&r);
        rows.push(r);
    };
    for (name, p) in conv_shapes() {
        if want(&format!("conv2d/{name}")) {
            for pass in [Pass::Fwd, Pass::FwdBwd] {
                push(bench_conv(name, &p, pass, threads, min_time)?, &mut rows);
            }
        }
    }
    for (name, p) in conv_shapes() {
        if INT8_SHAPES.contains(&name) && want(&format!("conv2d_s8/{name}")) {
            push(bench_conv_s8(name, &p, threads, min_time)?, &mut rows);
        }
    }
    for n in [256, 512, 1024] {
        if want(&format!("sgemm/{n}")) {
            push(bench_sgemm(n, threads, min_time)?, &mut rows);
        }
    }
    if want("maxpool/2x2") {
        push(bench_maxpool(threads, min_time)?, &mut rows);
    }
    // every element-wise function the layer descriptions name
    let n = 802_816;
    for e in k::Elementwise::ALL {
        if want(e.name()) {
            let f = move |x: &[f32], y: &mut [f32]| e.forward(x, y);
            push(
                bench_map(e.name(), n, f64::from(e.flops()), threads, min_time, f)?,
                &mut rows,
            );
        }
    }
    Ok(rows)
}
