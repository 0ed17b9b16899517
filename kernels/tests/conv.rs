//! Convolution, im2col and col2im against the scalar reference, on random shapes that
//! reach the edge cases (partial GEMM tiles, padding as large as the kernel, stride above
//! the kernel, dilation, groups, depthwise, batch 1, 1x1 images), plus finite-difference
//! checks of every backward pass and the im2col/col2im adjoint identity.

mod common;

use cnnkit_kernels::{self as k, Activation, Conv2dAlgo, Conv2dParams, reference as r};
use common::{Rng, abs, assert_sum_close, check, coin, range};
use quickcheck::{Arbitrary, Gen};

#[derive(Clone, Debug)]
struct Case {
    p: Conv2dParams,
    act: Activation,
    bias: bool,
    seed: u64,
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Self {
        loop {
            let groups = *g.choose(&[1, 1, 1, 2, 3]).unwrap();
            let depthwise = range(g, 0, 5) == 0;
            let (cin_g, cout_g) = if depthwise {
                (1, 1)
            } else {
                (range(g, 1, 4), range(g, 1, 14))
            };
            let (kh, kw) = (range(g, 1, 5), range(g, 1, 5));
            let mut p = Conv2dParams::new(
                range(g, 1, 3),
                cin_g * groups,
                range(g, 1, 13),
                range(g, 1, 19),
                cout_g * groups,
                kh,
                kw,
            )
            .with_groups(groups);
            if coin(g) {
                p = p.with_stride(range(g, 1, 6), range(g, 1, 6));
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
            if p.dims().is_err() {
                continue;
            }
            let act = match range(g, 0, 3) {
                0 => Activation::None,
                1 => Activation::Relu,
                2 => Activation::Clamp {
                    min: -0.5,
                    max: 0.75,
                },
                _ => Activation::Clamp {
                    min: f32::NEG_INFINITY,
                    max: 0.0,
                },
            };
            return Case {
                p,
                act,
                bias: coin(g),
                seed: u64::arbitrary(g),
            };
        }
    }
}

struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    gy: Vec<f32>,
}

fn data(p: &Conv2dParams, seed: u64) -> Data {
    let d = p.dims().unwrap();
    let mut rng = Rng(seed);
    Data {
        x: rng.vec(d.input_len),
        w: rng.vec(d.weight_len),
        b: rng.vec(d.bias_len),
        gy: rng.vec(d.output_len),
    }
}

/// The magnitude bound: the reference conv of |x|, |w|, |b| with no clamp.
fn magnitude(p: &Conv2dParams, dt: &Data, bias: bool) -> Vec<f32> {
    let mut m = vec![0.0; p.dims().unwrap().output_len];
    let ab = abs(&dt.b);
    r::conv2d(
        p,
        &abs(&dt.x),
        &abs(&dt.w),
        bias.then_some(&ab[..]),
        Activation::None,
        &mut m,
    )
    .unwrap();
    m
}

type Forward = fn(
    &Conv2dParams,
    &[f32],
    &[f32],
    Option<&[f32]>,
    Activation,
    &mut [f32],
) -> Result<(), k::KernelError>;

fn forward_matches(c: &Case, f: Forward) -> bool {
    let p = &c.p;
    let d = p.dims().unwrap();
    let dt = data(p, c.seed);
    let bias = c.bias.then_some(&dt.b[..]);
    let mut want = vec![0.0; d.output_len];
    r::conv2d(p, &dt.x, &dt.w, bias, c.act, &mut want).unwrap();
    let mag = magnitude(p, &dt, c.bias);
    common::for_each_isa(|isa| {
        // poison the output: kernels must overwrite it
        let mut got = vec![f32::NAN; d.output_len];
        f(p, &dt.x, &dt.w, bias, c.act, &mut got).unwrap();
        assert_sum_close(isa.name(), &got, &want, &mag, d.col_rows + 1);
    });
    true
}

fn direct(
    p: &Conv2dParams,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    a: Activation,
    y: &mut [f32],
) -> Result<(), k::KernelError> {
    k::conv2d_direct(p, x, w, b, a, y)
}

fn direct_scalar(
    p: &Conv2dParams,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    a: Activation,
    y: &mut [f32],
) -> Result<(), k::KernelError> {
    k::conv2d_direct_scalar(p, x, w, b, a, y)
}

fn im2col_gemm(
    p: &Conv2dParams,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    a: Activation,
    y: &mut [f32],
) -> Result<(), k::KernelError> {
    let mut s = vec![f32::NAN; k::conv2d_im2col_scratch_len(p)?];
    k::conv2d_im2col(p, x, w, b, a, y, &mut s)
}

fn implicit(
    p: &Conv2dParams,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    a: Activation,
    y: &mut [f32],
) -> Result<(), k::KernelError> {
    let mut s = vec![f32::NAN; k::conv2d_implicit_scratch_len(p)?];
    k::conv2d_implicit(p, x, w, b, a, y, &mut s)
}

fn winograd(
    p: &Conv2dParams,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    a: Activation,
    y: &mut [f32],
) -> Result<(), k::KernelError> {
    let mut s = vec![f32::NAN; k::conv2d_winograd_scratch_len(p)?];
    k::conv2d_winograd(p, x, w, b, a, y, &mut s)
}

fn dispatch(
    p: &Conv2dParams,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    a: Activation,
    y: &mut [f32],
) -> Result<(), k::KernelError> {
    let mut s = vec![f32::NAN; k::conv2d_scratch_len(p)?];
    k::conv2d(p, x, w, b, a, y, &mut s)
}

#[test]
fn direct_matches_reference() {
    check(
        400,
        (|c: Case| forward_matches(&c, direct)) as fn(Case) -> bool,
    );
}

#[test]
fn direct_scalar_matches_reference() {
    check(
        400,
        (|c: Case| forward_matches(&c, direct_scalar)) as fn(Case) -> bool,
    );
}

#[test]
fn im2col_matches_reference() {
    check(
        400,
        (|c: Case| forward_matches(&c, im2col_gemm)) as fn(Case) -> bool,
    );
}

#[test]
fn implicit_matches_reference() {
    check(
        400,
        (|c: Case| forward_matches(&c, implicit)) as fn(Case) -> bool,
    );
}

#[test]
fn dispatch_matches_reference() {
    check(
        200,
        (|c: Case| forward_matches(&c, dispatch)) as fn(Case) -> bool,
    );
}

/// 1x1 stride-1 unpadded convolutions take the no-im2col GEMM path.
#[test]
fn pointwise_matches_reference() {
    fn prop(c: Case) -> bool {
        let q = &c.p;
        let p = Conv2dParams::new(q.batch, q.in_channels, q.in_h, q.in_w, q.out_channels, 1, 1)
            .with_groups(q.groups);
        let c = Case { p, ..c };
        forward_matches(&c, im2col_gemm)
            && forward_matches(&c, direct)
            && forward_matches(&c, implicit)
    }
    check(200, prop as fn(Case) -> bool);
}

/// Shapes whose GEMM K exceeds one K block (256) and whose M exceeds one M block, so
/// the multi-pass epilogue (bias on the first pass, clamp on the last) is exercised.
#[test]
fn large_k_and_m_match_reference() {
    let shapes = [
        Conv2dParams::new(1, 32, 5, 6, 9, 3, 3).with_padding(1, 1, 1, 1), // K = 288
        Conv2dParams::new(2, 64, 4, 4, 7, 3, 3).with_stride(2, 1),        // K = 576
        Conv2dParams::new(1, 600, 2, 3, 5, 1, 1),                         // pointwise K = 600
        Conv2dParams::new(1, 3, 6, 6, 100, 3, 3).with_padding(1, 1, 1, 1), // M = 100 > MC
        Conv2dParams::new(1, 2, 50, 50, 8, 3, 3).with_dilation(2, 2),     // N = 2116
        Conv2dParams::new(1, 3, 1, 1, 5, 3, 3).with_padding(1, 1, 1, 1),  // 1x1 image, padded
        Conv2dParams::new(2, 3, 1, 1, 9, 1, 1),                           // 1x1 image, 1x1 kernel
        Conv2dParams::new(1, 4, 1, 1, 4, 1, 1).with_groups(4),            // 1x1 depthwise
        // 1225 taps per input channel: a K block of the implicit GEMM too long for its
        // offset table (the nested tap loops)
        Conv2dParams::new(1, 2, 36, 36, 9, 35, 35).with_padding(1, 1, 1, 1),
        // K = 1170 on a 144-pixel plane: the implicit GEMM in two K blocks
        Conv2dParams::new(1, 130, 12, 12, 9, 3, 3).with_padding(1, 1, 1, 1),
        // K = 2430 (270 channels of 3x3): three K blocks, the middle one neither first nor
        // last (it adds into the output and leaves the clamp to the last)
        Conv2dParams::new(1, 270, 11, 11, 18, 3, 3).with_padding(1, 1, 1, 1),
        // more than 16 output channels on planes of 49, 25 and 9 pixels: AVX-512's 7-row
        // tiles (one weight block partial; two K blocks)
        Conv2dParams::new(2, 5, 7, 7, 40, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(3, 130, 5, 5, 33, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(2, 4, 5, 5, 17, 3, 3),
        // found by fuzzing: the last output tile lies wholly in the right padding (its
        // first column is past the row's end); the direct kernel sliced out of bounds
        Conv2dParams::new(1, 2, 3, 11, 7, 4, 1)
            .with_stride(3, 1)
            .with_padding(3, 3, 4, 4),
    ];
    for (i, p) in shapes.into_iter().enumerate() {
        for act in [Activation::None, Activation::Relu] {
            let c = Case {
                p,
                act,
                bias: true,
                seed: i as u64,
            };
            for f in [direct as Forward, im2col_gemm, implicit, dispatch] {
                forward_matches(&c, f);
            }
        }
    }
}

#[test]
fn dispatch_picks_by_shape() {
    let _steady = common::isa_steady();
    let lenet_c1 = Conv2dParams::new(64, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2);
    // 6 outputs at stride 1: pixels in the lanes over one flat padded plane (32 x 32, plus
    // the last strip's overrun, 5 + 32) and six computed planes of 28 rows of 32
    assert_eq!(k::conv2d_algo(&lenet_c1).unwrap(), Conv2dAlgo::Implicit);
    assert_eq!(
        k::conv2d_scratch_len(&lenet_c1).unwrap(),
        (32 * 32 + 5 + 32) + 6 * 28 * 32
    );
    let strided = lenet_c1.with_stride(2, 2);
    assert_eq!(k::conv2d_algo(&strided).unwrap(), Conv2dAlgo::Direct);
    assert_eq!(k::conv2d_scratch_len(&strided).unwrap(), 0);
    // Winograd by the planner's cost model: from 128 channels on 28 x 28 and 256 on 14 x
    // 14 on any x86 CPU; 64 channels on 56 x 56 only where the GEMMs run at 32 flops a
    // cycle (AVX2, or AVX-512 with one 512-bit FMA unit), not 64 (two units)
    let res = Conv2dParams::new(8, 128, 28, 28, 128, 3, 3).with_padding(1, 1, 1, 1);
    assert_eq!(k::conv2d_algo(&res).unwrap(), Conv2dAlgo::Winograd);
    let wide = Conv2dParams::new(8, 256, 14, 14, 256, 3, 3).with_padding(1, 1, 1, 1);
    assert_eq!(k::conv2d_algo(&wide).unwrap(), Conv2dAlgo::Winograd);
    // 512 channels on 7 x 7: the batch's tiles share the GEMMs' columns
    let deep = Conv2dParams::new(8, 512, 7, 7, 512, 3, 3).with_padding(1, 1, 1, 1);
    assert_eq!(k::conv2d_algo(&deep).unwrap(), Conv2dAlgo::Winograd);
    let vgg = Conv2dParams::new(8, 64, 56, 56, 64, 3, 3).with_padding(1, 1, 1, 1);
    let two_units = k::arch::active() == k::arch::Isa::Avx512 && k::arch::zmm_fma_doubles();
    let expected = if two_units {
        Conv2dAlgo::Implicit
    } else {
        Conv2dAlgo::Winograd
    };
    assert_eq!(k::conv2d_algo(&vgg).unwrap(), expected);
    // few channels, or strided: the implicit GEMM
    let narrow = Conv2dParams::new(8, 32, 56, 56, 32, 3, 3).with_padding(1, 1, 1, 1);
    assert_eq!(k::conv2d_algo(&narrow).unwrap(), Conv2dAlgo::Implicit);
    let small = Conv2dParams::new(32, 32, 14, 14, 32, 3, 3).with_padding(1, 1, 1, 1);
    assert_eq!(k::conv2d_algo(&small).unwrap(), Conv2dAlgo::Implicit);
    assert_eq!(
        k::conv2d_algo(&vgg.with_stride(2, 2)).unwrap(),
        Conv2dAlgo::Implicit
    );
    // a small plane that no tile fills (25 pixels: 4 tiles of 7 or 8 compute 28 or 32, 5
    // of 6 30) with many output channels: im2col + GEMM across the batch, whose tiles
    // span images; with 128 channels the implicit GEMM (the GEMM's work per copied
    // element too small to pay for the copy)
    let deep5 = Conv2dParams::new(8, 512, 5, 5, 512, 5, 5).with_padding(2, 2, 2, 2);
    assert_eq!(k::conv2d_algo(&deep5).unwrap(), Conv2dAlgo::Im2col);
    let mid5 = Conv2dParams::new(8, 128, 7, 7, 128, 5, 5).with_padding(2, 2, 2, 2);
    assert_eq!(k::conv2d_algo(&mid5).unwrap(), Conv2dAlgo::Implicit);
    // the input gradient of the `fmnist` preset's last layer (64 -> 128 on 7 x 7): a
    // forward convolution of 128 -> 64 channels, the implicit GEMM's
    let back = Conv2dParams::new(64, 128, 7, 7, 64, 3, 3).with_padding(1, 1, 1, 1);
    let pick = k::conv2d_algo(&back).unwrap();
    assert!(
        matches!(pick, Conv2dAlgo::Implicit | Conv2dAlgo::Winograd),
        "{pick:?}"
    );
    let lenet_c2 = Conv2dParams::new(64, 6, 14, 14, 16, 5, 5);
    assert_eq!(k::conv2d_algo(&lenet_c2).unwrap(), Conv2dAlgo::Implicit);
    // unpadded: the packed weights only (16 channels x 150 taps)
    assert_eq!(k::conv2d_scratch_len(&lenet_c2).unwrap(), 16 * 150);
    // its input gradient goes flat (16 gradient planes with 60 zeros before and 196
    // positions rounded to 224, 6 computed planes of 224) when the weights are finite, by
    // W^T dY + col2im otherwise: the scratch covers both
    assert!(k::conv2d_backward_input_scratch_len(&lenet_c2).unwrap() >= 16 * (60 + 224) + 6 * 224);
    let stem = Conv2dParams::new(8, 3, 224, 224, 64, 7, 7)
        .with_stride(2, 2)
        .with_padding(3, 3, 3, 3);
    assert_eq!(k::conv2d_algo(&stem).unwrap(), Conv2dAlgo::Implicit);
    // padded: the weights and one zero-bordered image
    assert_eq!(
        k::conv2d_scratch_len(&stem).unwrap(),
        64 * 147 + 3 * 230 * 230
    );
    // depthwise at stride 1: flat planes in all three passes (forward: one padded plane of
    // 30 x 30 plus the overrun 3 + 32, and 28 rows of 30 rounded to 864; input gradient:
    // rows of 29, 60 + 832 + 30 and 832; weight gradient: 9 taps x 8 lanes per group, 900 + 3 + 16,
    // 28 rows of 30)
    let dw = Conv2dParams::new(8, 256, 28, 28, 256, 3, 3)
        .with_groups(256)
        .with_padding(1, 1, 1, 1);
    assert_eq!(k::conv2d_algo(&dw).unwrap(), Conv2dAlgo::Implicit);
    assert_eq!(k::conv2d_scratch_len(&dw).unwrap(), 935 + 864);
    // (on the x86 variants the forward convolution of dY: the flipped weights and that
    // convolution's scratch, the forward pass's)
    let dw_input = if k::arch::active() == k::arch::Isa::Portable {
        922 + 832
    } else {
        256 * 9 + 935 + 864
    };
    assert_eq!(k::conv2d_backward_input_scratch_len(&dw).unwrap(), dw_input);
    assert_eq!(
        k::conv2d_backward_weight_scratch_len(&dw).unwrap(),
        256 * 72 + 919 + 840
    );
    // strided: the row-by-row depthwise kernels, no scratch
    let dw2 = dw.with_stride(2, 2);
    assert_eq!(k::conv2d_algo(&dw2).unwrap(), Conv2dAlgo::Direct);
    assert_eq!(k::conv2d_backward_input_scratch_len(&dw2).unwrap(), 0);
    assert_eq!(k::conv2d_backward_weight_scratch_len(&dw2).unwrap(), 0);
    let pw = Conv2dParams::new(8, 256, 14, 14, 256, 1, 1);
    assert_eq!(k::conv2d_algo(&pw).unwrap(), Conv2dAlgo::Im2col);
    // the pointwise path needs no im2col buffer: the weights packed once (room for 256
    // rows plus a tile of up to 16, times 256 taps), and the GEMM's packing of each image
    assert_eq!(
        k::conv2d_im2col_scratch_len(&pw).unwrap(),
        272 * 256 + k::sgemm_scratch_len(256, 14 * 14, 256)
    );
}

fn backward_matches(c: Case) -> bool {
    let p = &c.p;
    let d = p.dims().unwrap();
    let dt = data(p, c.seed);
    common::for_each_isa(|_| backward_variant(p, &d, &dt));
    true
}

fn backward_variant(p: &Conv2dParams, d: &k::Conv2dDims, dt: &Data) {
    let k_in = d.out_per_group * p.kernel_h * p.kernel_w;
    let k_w = p.batch * d.col_cols;

    // grad input
    let mut want = vec![0.0; d.input_len];
    r::conv2d_backward_input(p, &dt.w, &dt.gy, &mut want).unwrap();
    let mut got = vec![f32::NAN; d.input_len];
    let mut s = vec![f32::NAN; k::conv2d_backward_input_scratch_len(p).unwrap()];
    k::conv2d_backward_input(p, &dt.w, &dt.gy, &mut got, &mut s).unwrap();
    let mut mag = vec![0.0; d.input_len];
    r::conv2d_backward_input(p, &abs(&dt.w), &abs(&dt.gy), &mut mag).unwrap();
    assert_sum_close("grad_input", &got, &want, &mag, k_in);

    // grad weight
    let mut want = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(p, &dt.x, &dt.gy, &mut want).unwrap();
    let mut got = vec![f32::NAN; d.weight_len];
    let mut s = vec![f32::NAN; k::conv2d_backward_weight_scratch_len(p).unwrap()];
    k::conv2d_backward_weight(p, &dt.x, &dt.gy, &mut got, &mut s).unwrap();
    let mut mag = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(p, &abs(&dt.x), &abs(&dt.gy), &mut mag).unwrap();
    assert_sum_close("grad_weight", &got, &want, &mag, k_w);

    // grad bias
    let mut want = vec![0.0; d.bias_len];
    r::conv2d_backward_bias(p, &dt.gy, &mut want).unwrap();
    let mut got = vec![f32::NAN; d.bias_len];
    k::conv2d_backward_bias(p, &dt.gy, &mut got).unwrap();
    let mut mag = vec![0.0; d.bias_len];
    r::conv2d_backward_bias(p, &abs(&dt.gy), &mut mag).unwrap();
    assert_sum_close("grad_bias", &got, &want, &mag, k_w);
}

#[test]
fn backward_matches_reference() {
    check(300, backward_matches as fn(Case) -> bool);
}

/// Every kernel the backward planners can pick, for [`each_backward_kernel`].
const KERNELS: [k::ConvKernel; 12] = k::ConvKernel::ALL;

/// Each backward kernel a geometry takes (`for_kernel`), not only the one the planner
/// picks, against the reference; the planner's own plan is `for_kernel` of its kernel,
/// and a kernel that does not take the geometry is refused. Also at a batch of 8 and 9
/// (the input gradient's eight images in the lanes), with 9 input channels per group and
/// with 17 to 40 output channels per group.
fn each_backward_kernel(c: Case) -> bool {
    let mut shapes = vec![c.p];
    if c.p.dims().unwrap().input_len <= 4096 {
        shapes.push(Conv2dParams {
            batch: 8 + (c.seed % 2) as usize,
            ..c.p
        });
        // 9 input channels per group: the forward convolution of dY
        shapes.push(Conv2dParams {
            in_channels: 9 * c.p.groups,
            ..c.p
        });
        // 17 to 40 output channels per group: the weight gradient's wide tiles (and a
        // last block of channels partly empty)
        let m = 17 + (c.seed % 24) as usize;
        shapes.push(Conv2dParams {
            out_channels: m * c.p.groups,
            ..c.p
        });
    }
    for p in &shapes {
        let d = p.dims().unwrap();
        let dt = data(p, c.seed);
        let mut want = vec![0.0; d.input_len];
        r::conv2d_backward_input(p, &dt.w, &dt.gy, &mut want).unwrap();
        let mut mag = vec![0.0; d.input_len];
        r::conv2d_backward_input(p, &abs(&dt.w), &abs(&dt.gy), &mut mag).unwrap();
        let mut taken = 0;
        for kernel in KERNELS {
            let Ok(plan) = k::Conv2dInputGradPlan::for_kernel(p, kernel) else {
                let e = k::Conv2dInputGradPlan::for_kernel(p, kernel).unwrap_err();
                assert!(matches!(e, k::KernelError::InvalidParameter(_)), "{e:?}");
                continue;
            };
            taken += 1;
            let mut got = vec![f32::NAN; d.input_len];
            let mut s = vec![f32::NAN; plan.scratch_len()];
            plan.run(&dt.w, &dt.gy, &mut got, &mut s).unwrap();
            let k_in = d.out_per_group * p.kernel_h * p.kernel_w;
            assert_sum_close(
                &format!("grad_input {kernel:?} {p:?}"),
                &got,
                &want,
                &mag,
                k_in,
            );
        }
        assert!(taken >= 1, "{p:?}: col2im takes every geometry");
        // (under each variant in turn, holding the lock that serialises forcing one: a
        // plan records the variant active when it was made, and another test forcing a
        // variant between the two plans made them differ: seen once in about twenty runs)
        common::for_each_isa(|_| {
            let chosen = k::Conv2dInputGradPlan::new(p).unwrap();
            assert_eq!(
                chosen,
                k::Conv2dInputGradPlan::for_kernel(p, chosen.kernel()).unwrap()
            );
        });

        let mut want = vec![0.0; d.weight_len];
        r::conv2d_backward_weight(p, &dt.x, &dt.gy, &mut want).unwrap();
        let mut mag = vec![0.0; d.weight_len];
        r::conv2d_backward_weight(p, &abs(&dt.x), &abs(&dt.gy), &mut mag).unwrap();
        for kernel in KERNELS {
            let Ok(plan) = k::Conv2dWeightGradPlan::for_kernel(p, kernel) else {
                let e = k::Conv2dWeightGradPlan::for_kernel(p, kernel).unwrap_err();
                assert!(matches!(e, k::KernelError::InvalidParameter(_)), "{e:?}");
                continue;
            };
            let mut got = vec![f32::NAN; d.weight_len];
            let mut s = vec![f32::NAN; plan.scratch_len()];
            plan.run(&dt.x, &dt.gy, &mut got, &mut s).unwrap();
            let k_w = p.batch * d.col_cols;
            assert_sum_close(
                &format!("grad_weight {kernel:?} {p:?}"),
                &got,
                &want,
                &mag,
                k_w,
            );
        }
        common::for_each_isa(|_| {
            let chosen = k::Conv2dWeightGradPlan::new(p).unwrap();
            assert_eq!(
                chosen,
                k::Conv2dWeightGradPlan::for_kernel(p, chosen.kernel()).unwrap()
            );
        });
    }
    true
}

/// The backward planners' picks, on every CPU (where they follow the FMA width,
/// `arch::zmm_fma_doubles`, as the test says).
#[test]
fn backward_planners_pick_by_shape() {
    use k::ConvKernel as K;
    let input = |p: &Conv2dParams| k::Conv2dInputGradPlan::new(p).unwrap().kernel();
    let weight = |p: &Conv2dParams| k::Conv2dWeightGradPlan::new(p).unwrap().kernel();
    // LeNet's first layer: one input channel, no forward convolution of dY; flat planes
    let lenet1 = Conv2dParams::new(64, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2);
    assert_eq!((input(&lenet1), weight(&lenet1)), (K::Flat, K::Flat));
    // LeNet's second layer: 6 input channels, eight images in the lanes
    let lenet2 = Conv2dParams::new(64, 6, 14, 14, 16, 5, 5);
    assert_eq!((input(&lenet2), weight(&lenet2)), (K::Lanes, K::Implicit));
    // 16 -> 32 channels 5x5 on 14 x 14: too wide for the lanes; the forward convolution
    // of dY before the flat planes
    let mid = Conv2dParams::new(64, 16, 14, 14, 32, 5, 5).with_padding(2, 2, 2, 2);
    assert_eq!(input(&mid), K::AsForward);
    // the fmnist preset's third layer: that forward convolution (128 -> 64 channels on
    // 7 x 7: the implicit GEMM's or Winograd's, by the planner's cost models)
    let c3 = Conv2dParams::new(64, 64, 7, 7, 128, 3, 3).with_padding(1, 1, 1, 1);
    assert_eq!((input(&c3), weight(&c3)), (K::AsForward, K::Implicit));
    // 512 channels 5x5 on 5 x 5: that forward convolution would be an im2col one (see
    // `dispatch_picks_by_shape`); W^T dY and col2im
    let deep5 = Conv2dParams::new(8, 512, 5, 5, 512, 5, 5).with_padding(2, 2, 2, 2);
    assert_eq!(input(&deep5), K::Col2im);
    // a depthwise layer: its input gradient the forward convolution of dY on the x86
    // variants, the flat planes on the portable one; a pointwise layer
    let dw = Conv2dParams::new(8, 32, 28, 28, 32, 3, 3)
        .with_padding(1, 1, 1, 1)
        .with_groups(32);
    let dw_input = if k::arch::active() == k::arch::Isa::Portable {
        K::Flat
    } else {
        K::AsForward
    };
    assert_eq!((input(&dw), weight(&dw)), (dw_input, K::Flat));
    let pw = Conv2dParams::new(8, 64, 14, 14, 128, 1, 1);
    assert_eq!((input(&pw), weight(&pw)), (K::Pointwise, K::Pointwise));
}

#[test]
fn each_backward_kernel_matches_reference() {
    check(200, each_backward_kernel as fn(Case) -> bool);
}

#[test]
fn backward_pointwise_and_large_match_reference() {
    let shapes = [
        Conv2dParams::new(2, 6, 3, 4, 4, 1, 1),
        Conv2dParams::new(1, 8, 5, 5, 8, 1, 1).with_groups(4),
        Conv2dParams::new(1, 32, 5, 6, 9, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(3, 2, 20, 20, 3, 3, 3).with_stride(2, 2),
    ];
    for (i, p) in shapes.into_iter().enumerate() {
        backward_matches(Case {
            p,
            act: Activation::None,
            bias: true,
            seed: 100 + i as u64,
        });
    }
}

/// Depthwise 3x3 layers at stride 1, whose weight gradient runs image by image over every
/// group's sums, and whose input gradient is the forward convolution of dY on x86: every
/// backward kernel they take, and the planners' picks, against the reference.
#[test]
fn depthwise_3x3_backward_matches_reference() {
    let shapes = [
        Conv2dParams::new(3, 5, 6, 7, 5, 3, 3)
            .with_groups(5)
            .with_padding(1, 1, 1, 1),
        Conv2dParams::new(2, 9, 9, 4, 9, 3, 3)
            .with_groups(9)
            .with_padding(0, 2, 1, 0),
        Conv2dParams::new(4, 3, 12, 12, 3, 3, 3).with_groups(3),
        Conv2dParams::new(2, 70, 5, 5, 70, 3, 3)
            .with_groups(70)
            .with_padding(1, 1, 1, 1),
    ];
    for (i, p) in shapes.into_iter().enumerate() {
        let c = Case {
            p,
            act: Activation::Relu,
            bias: true,
            seed: 200 + i as u64,
        };
        assert!(each_backward_kernel(c.clone()));
        backward_matches(c);
    }
}

/// Central differences of `L = sum(r * clamp(conv(x, w, b)))` for every coordinate of x,
/// w and b, against the backward passes chained after `activation_backward` (the
/// epilogue's clamp), as a training step uses them. Without a clamp the convolution is
/// linear in each argument and the only error is f32 rounding; with one, it is piecewise
/// linear, and coordinates whose perturbation moves an output across a clamp bound are
/// skipped.
fn finite_differences(c: Case) -> bool {
    // (a variant another test forces between sizing a scratch and using it could want
    // more: seen once in a full `cargo test --workspace`)
    let _steady = common::isa_steady();
    let p = &c.p;
    let d = p.dims().unwrap();
    if d.input_len + d.weight_len > 1500 {
        return true; // keep the O(n^2) check small
    }
    let dt = data(p, c.seed);
    let act = c.act;
    let forward = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = vec![0.0; d.output_len];
        let mut s = vec![0.0; k::conv2d_scratch_len(p).unwrap()];
        k::conv2d(p, x, w, Some(b), act, &mut y, &mut s).unwrap();
        y
    };
    let y = forward(&dt.x, &dt.w, &dt.b);
    let mut gz = vec![0.0; d.output_len];
    k::activation_backward(act, &y, &dt.gy, &mut gz).unwrap();
    let mut gx = vec![0.0; d.input_len];
    let mut s = vec![0.0; k::conv2d_backward_input_scratch_len(p).unwrap()];
    k::conv2d_backward_input(p, &dt.w, &gz, &mut gx, &mut s).unwrap();
    let mut gw = vec![0.0; d.weight_len];
    let mut s = vec![0.0; k::conv2d_backward_weight_scratch_len(p).unwrap()];
    k::conv2d_backward_weight(p, &dt.x, &gz, &mut gw, &mut s).unwrap();
    let mut gb = vec![0.0; d.bias_len];
    k::conv2d_backward_bias(p, &gz, &mut gb).unwrap();

    // piecewise linear: where no output crosses a clamp bound, the difference is exact
    // but for rounding, whatever the step
    let (h, tol) = (0.25, 1e-4);
    let (lo, hi) = act.bounds().unwrap();
    let crosses = |y0: &[f32], y1: &[f32]| {
        let side = |v: f32| u8::from(v <= lo) | (u8::from(v >= hi) << 1);
        y0.iter().zip(y1).any(|(&a, &b)| side(a) != side(b))
    };
    let unclamped = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = vec![0.0; d.output_len];
        r::conv2d(p, x, w, Some(b), Activation::None, &mut y).unwrap();
        y
    };
    let z0 = unclamped(&dt.x, &dt.w, &dt.b);
    let loss = |y: &[f32]| common::dot(y, &dt.gy);
    for (which, grad) in [(0, &gx), (1, &gw), (2, &gb)] {
        let mut v = [dt.x.clone(), dt.w.clone(), dt.b.clone()];
        for i in 0..grad.len() {
            let orig = v[which][i];
            let mut fd = [0.0; 2];
            let mut clean = true;
            for (j, delta) in [h, -h].into_iter().enumerate() {
                v[which][i] = orig + delta;
                if act != Activation::None {
                    clean &= !crosses(&z0, &unclamped(&v[0], &v[1], &v[2]));
                }
                fd[j] = loss(&forward(&v[0], &v[1], &v[2]));
            }
            v[which][i] = orig;
            if !clean {
                continue;
            }
            let fd = (fd[0] - fd[1]) / (2.0 * f64::from(h));
            let g = f64::from(grad[i]);
            assert!(
                (fd - g).abs() <= tol * (1.0 + g.abs()),
                "arg {which} [{i}] with {act:?}: finite difference {fd}, backward {g}"
            );
        }
    }
    true
}

#[test]
fn backward_matches_finite_differences() {
    // (a third as many off x86, under emulation in CI: 60 took 61 s there; the
    // gradients' kernels are checked against the reference on every target besides)
    let cases = if cfg!(target_arch = "x86_64") { 60 } else { 20 };
    check(cases, finite_differences as fn(Case) -> bool);
}

fn im2col_props(c: Case) -> bool {
    let p = &c.p;
    let d = p.dims().unwrap();
    let mut rng = Rng(c.seed);
    let x = rng.vec(d.image_len);
    let y = rng.vec(d.col_len);
    // im2col is a gather: exact
    let mut want = vec![0.0; d.col_len];
    r::im2col(p, &x, &mut want).unwrap();
    let mut got = vec![f32::NAN; d.col_len];
    k::im2col(p, &x, &mut got).unwrap();
    assert_eq!(got, want, "im2col");
    // col2im sums at most kernel_h * kernel_w entries per pixel
    let mut want = vec![0.0; d.image_len];
    r::col2im(p, &y, &mut want).unwrap();
    let mut got = vec![f32::NAN; d.image_len];
    k::col2im(p, &y, &mut got).unwrap();
    let mut mag = vec![0.0; d.image_len];
    r::col2im(p, &abs(&y), &mut mag).unwrap();
    assert_sum_close("col2im", &got, &want, &mag, p.kernel_h * p.kernel_w);
    // adjoint: <im2col(x), y> == <x, col2im(y)>
    let mut cx = vec![0.0; d.col_len];
    k::im2col(p, &x, &mut cx).unwrap();
    let lhs = common::dot(&cx, &y);
    let rhs = common::dot(&x, &got);
    let scale: f64 = common::dot(&abs(&cx), &abs(&y)) + 1e-30;
    let tol = (p.kernel_h * p.kernel_w + 2) as f64 * f64::from(f32::EPSILON) * scale;
    assert!(
        (lhs - rhs).abs() <= tol,
        "adjoint: {lhs} vs {rhs} (tol {tol})"
    );
    true
}

#[test]
fn im2col_col2im_match_reference_and_are_adjoint() {
    check(400, im2col_props as fn(Case) -> bool);
}

/// NaN and infinity in the data reach the output as the reference says.
#[test]
fn non_finite_values_propagate() {
    let p = Conv2dParams::new(1, 2, 5, 9, 9, 3, 3).with_padding(1, 1, 1, 1);
    let d = p.dims().unwrap();
    let mut dt = data(&p, 7);
    dt.x[3] = f32::NAN;
    dt.x[40] = f32::INFINITY;
    for f in [direct as Forward, im2col_gemm] {
        let mut want = vec![0.0; d.output_len];
        r::conv2d(&p, &dt.x, &dt.w, Some(&dt.b), Activation::Relu, &mut want).unwrap();
        let mut got = vec![0.0; d.output_len];
        f(&p, &dt.x, &dt.w, Some(&dt.b), Activation::Relu, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g.is_nan() == w.is_nan(), "[{i}] {g} vs {w}");
            assert!(
                w.is_nan() || w.is_finite() == g.is_finite(),
                "[{i}] {g} vs {w}"
            );
        }
        assert!(want.iter().any(|v| v.is_nan()));
    }
}

/// Padding and strides near `usize::MAX / 2` with a tiny output: no overflow, no panic,
/// the same answer as the reference.
#[test]
fn extreme_geometry_matches_reference() {
    let big = usize::MAX / 2;
    let shapes = [
        Conv2dParams::new(1, 2, 1, 3, 3, 1, 2)
            .with_padding(big, 0, 0, 0)
            .with_stride(big, 1),
        Conv2dParams::new(1, 1, 2, 2, 2, 2, 2)
            .with_padding(0, big, 0, big)
            .with_stride(big, big),
        Conv2dParams::new(1, 1, 3, 3, 1, 2, 2)
            .with_dilation(2, 2)
            .with_padding(1, 1, 1, 1),
    ];
    // each alone and in a batch of 3 (the batch-wide GEMM path computes positions in isize)
    let batches = shapes.map(|p| Conv2dParams { batch: 3, ..p });
    for (i, p) in shapes.into_iter().chain(batches).enumerate() {
        assert!(p.dims().unwrap().output_len < 100);
        let c = Case {
            p,
            act: Activation::None,
            bias: true,
            seed: i as u64,
        };
        for f in [direct as Forward, im2col_gemm, dispatch] {
            forward_matches(&c, f);
        }
        backward_matches(c);
    }
}

/// Depthwise rows at stride 2 (their even and odd columns split apart; the row-by-row
/// kernels) on every width up to the stack buffer's limit and past it, odd and even
/// paddings and kernel widths, dilation 1 and 2: as the reference, on every variant,
/// forward and backward.
#[test]
fn depthwise_stride_two_rows_match_reference() {
    let mut seed = 0;
    for w in (1..=20).chain([31, 32, 33, 63, 64, 65, 120, 225, 238, 239, 240, 241, 250]) {
        for (kw, pad, dil) in [(3, 1, 1), (3, 0, 2), (5, 2, 1), (2, 1, 1), (1, 0, 1)] {
            let p = Conv2dParams::new(1, 3, 3, w, 3, 3, kw)
                .with_groups(3)
                .with_stride(2, 2)
                .with_padding(1, 1, pad, pad.saturating_sub(1))
                .with_dilation(1, dil);
            if p.dims().is_err() {
                continue;
            }
            seed += 1;
            let c = Case {
                p,
                act: Activation::None,
                bias: seed % 2 == 0,
                seed,
            };
            for f in [direct as Forward, dispatch] {
                forward_matches(&c, f);
            }
            backward_matches(c);
        }
    }
}

/// Found by fuzzing: an infinite weight on a padded tap. Padding is an explicit 0.0 in
/// every variant, so `0 * inf = NaN` reaches the same outputs everywhere.
#[test]
fn non_finite_weights_meet_padding_the_same_way_everywhere() {
    let p = Conv2dParams::new(1, 1, 3, 9, 2, 3, 3).with_padding(2, 1, 1, 2);
    let d = p.dims().unwrap();
    let mut dt = data(&p, 9);
    dt.w[0] = f32::INFINITY;
    dt.w[13] = f32::NAN;
    let mut want = vec![0.0; d.output_len];
    r::conv2d(&p, &dt.x, &dt.w, None, Activation::None, &mut want).unwrap();
    assert!(want.iter().any(|v| v.is_nan()));
    for f in [direct as Forward, im2col_gemm, dispatch] {
        let mut got = vec![0.0; d.output_len];
        f(&p, &dt.x, &dt.w, None, Activation::None, &mut got).unwrap();
        let nan = |v: &[f32]| v.iter().map(|x| x.is_nan()).collect::<Vec<_>>();
        assert_eq!(nan(&got), nan(&want));
    }
    // and the weight gradient sees an infinite output gradient against padding as NaN
    let mut gy = dt.gy.clone();
    gy[0] = f32::INFINITY;
    let mut want = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(&p, &dt.x, &gy, &mut want).unwrap();
    let mut got = vec![0.0; d.weight_len];
    let mut s = vec![0.0; k::conv2d_backward_weight_scratch_len(&p).unwrap()];
    k::conv2d_backward_weight(&p, &dt.x, &gy, &mut got, &mut s).unwrap();
    let nan = |v: &[f32]| v.iter().map(|x| x.is_nan()).collect::<Vec<_>>();
    assert_eq!(nan(&got), nan(&want));
    assert!(want.iter().any(|v| v.is_nan()));
}

/// Non-finite inputs in the weight gradient: every path (the direct one for few input
/// channels, with rows that end mid-vector, and im2col + GEMM) gives NaN exactly where the
/// reference does, on every variant; the missing lanes past a row never meet an infinity.
#[test]
fn weight_gradient_with_non_finite_inputs_matches_reference() {
    let shapes = [
        // direct: 1 and 3 input channels, rows of 21 and 17 outputs
        Conv2dParams::new(2, 1, 6, 21, 3, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(1, 3, 5, 19, 2, 2, 3),
        // im2col + GEMM
        Conv2dParams::new(2, 6, 5, 11, 4, 3, 3).with_padding(0, 1, 1, 0),
    ];
    for p in shapes {
        let d = p.dims().unwrap();
        let mut dt = data(&p, 31);
        // an infinity and a NaN at the right end of rows (read by the lanes past a row)
        let plane = p.in_h * p.in_w;
        dt.x[p.in_w - 1] = f32::INFINITY;
        dt.x[plane - 1] = f32::NAN;
        dt.x[d.input_len - p.in_w - 2] = f32::NEG_INFINITY;
        let mut want = vec![0.0; d.weight_len];
        r::conv2d_backward_weight(&p, &dt.x, &dt.gy, &mut want).unwrap();
        assert!(want.iter().any(|v| v.is_nan()));
        common::for_each_isa(|isa| {
            let mut got = vec![0.0; d.weight_len];
            let mut s = vec![f32::NAN; k::conv2d_backward_weight_scratch_len(&p).unwrap()];
            k::conv2d_backward_weight(&p, &dt.x, &dt.gy, &mut got, &mut s).unwrap();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                let same = (a.is_nan() && b.is_nan())
                    || (a.is_infinite() && a == b)
                    || (a.is_finite() && b.is_finite());
                assert!(same, "{p:?} {isa:?} [{i}]: {a} vs {b}");
            }
        });
    }
}

/// The input gradient with infinite and NaN weights (which the flat input gradient hands
/// to `W^T * dY` + col2im: its zero borders would meet them) gives NaN exactly where the
/// reference does, on every variant.
#[test]
fn input_gradient_with_non_finite_weights_matches_reference() {
    let shapes = [
        // the flat input gradient's shapes: LeNet's conv2, and padded
        Conv2dParams::new(2, 6, 14, 14, 16, 5, 5),
        Conv2dParams::new(1, 3, 6, 9, 5, 3, 3).with_padding(1, 1, 2, 0),
    ];
    for p in shapes {
        let d = p.dims().unwrap();
        let mut dt = data(&p, 37);
        // a corner tap of one filter, and the centre of another
        dt.w[0] = f32::INFINITY;
        dt.w[d.weight_len - 1 - p.kernel_w - 1] = f32::NAN;
        let mut want = vec![0.0; d.input_len];
        r::conv2d_backward_input(&p, &dt.w, &dt.gy, &mut want).unwrap();
        assert!(want.iter().any(|v| v.is_finite()) && want.iter().any(|v| !v.is_finite()));
        common::for_each_isa(|isa| {
            let mut got = vec![0.0; d.input_len];
            let mut s = vec![f32::NAN; k::conv2d_backward_input_scratch_len(&p).unwrap()];
            k::conv2d_backward_input(&p, &dt.w, &dt.gy, &mut got, &mut s).unwrap();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                let same = (a.is_nan() && b.is_nan())
                    || (a.is_infinite() && a == b)
                    || (a.is_finite() && b.is_finite());
                assert!(same, "{p:?} {isa:?} [{i}]: {a} vs {b}");
            }
        });
    }
}

/// Shapes whose im2col matrix is split into several column blocks (K * N above the
/// ~48K-float block), with the last block partial and blocks starting mid output row.
#[test]
fn column_blocks_match_reference() {
    let shapes = [
        Conv2dParams::new(1, 64, 21, 21, 8, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(2, 48, 23, 19, 7, 3, 3)
            .with_stride(2, 1)
            .with_padding(1, 0, 2, 1),
        Conv2dParams::new(1, 40, 25, 25, 9, 3, 3)
            .with_dilation(2, 2)
            .with_padding(2, 2, 2, 2),
        Conv2dParams::new(1, 64, 18, 17, 6, 3, 3)
            .with_groups(2)
            .with_padding(1, 1, 1, 1),
        Conv2dParams::new(1, 3, 64, 64, 10, 7, 7)
            .with_stride(2, 2)
            .with_padding(3, 3, 3, 3),
    ];
    for (i, p) in shapes.into_iter().enumerate() {
        let d = p.dims().unwrap();
        assert!(d.col_rows * d.col_cols > 60_000, "shape {i} fits one block");
        let c = Case {
            p,
            act: Activation::Relu,
            bias: true,
            seed: 500 + i as u64,
        };
        forward_matches(&c, im2col_gemm);
        backward_matches(c);
    }
}

/// Small images whose columns share blocks across the batch, with block boundaries
/// falling inside images (LeNet's second layer on a batch of 20, and a padded one).
#[test]
fn batched_column_blocks_match_reference() {
    let shapes = [
        Conv2dParams::new(20, 6, 14, 14, 16, 5, 5),
        Conv2dParams::new(20, 16, 9, 11, 10, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(30, 4, 7, 7, 12, 3, 3)
            .with_stride(2, 1)
            .with_groups(2),
    ];
    for (i, p) in shapes.into_iter().enumerate() {
        let c = Case {
            p,
            act: Activation::Clamp {
                min: -0.5,
                max: 0.5,
            },
            bias: true,
            seed: 700 + i as u64,
        };
        forward_matches(&c, im2col_gemm);
        forward_matches(&c, dispatch);
        backward_matches(c);
    }
}

/// Depthwise forward and backward passes with infinities and NaN in the input, the weights
/// and the output gradient: the same NaN pattern as the reference, on every variant.
#[test]
fn depthwise_backward_non_finite() {
    for (i, p) in [
        Conv2dParams::new(2, 3, 6, 13, 3, 3, 3).with_groups(3),
        Conv2dParams::new(1, 2, 7, 9, 2, 3, 3)
            .with_groups(2)
            .with_padding(1, 1, 1, 1),
        Conv2dParams::new(1, 2, 9, 11, 2, 3, 2)
            .with_groups(2)
            .with_stride(2, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let d = p.dims().unwrap();
        let mut dt = data(&p, 40 + i as u64);
        let nan = |v: &[f32]| v.iter().map(|x| x.is_nan()).collect::<Vec<_>>();
        // finite weights and inputs take the flat kernels at stride 1, non-finite ones the
        // row-by-row kernels: both meet the infinities of the output gradient
        for (w_bad, x_bad) in [(false, false), (false, true), (true, true)] {
            if x_bad {
                dt.x[d.input_len - 1] = f32::INFINITY; // a column only lanes past the row read
                dt.x[5] = f32::NAN;
            }
            let mut w = dt.w.clone();
            if w_bad {
                w[0] = f32::INFINITY;
            }
            let mut gy = dt.gy.clone();
            gy[1] = f32::NEG_INFINITY;
            let mut want = vec![0.0; d.weight_len];
            r::conv2d_backward_weight(&p, &dt.x, &gy, &mut want).unwrap();
            let mut want_x = vec![0.0; d.input_len];
            r::conv2d_backward_input(&p, &w, &gy, &mut want_x).unwrap();
            let mut want_y = vec![0.0; d.output_len];
            r::conv2d(&p, &dt.x, &w, None, Activation::None, &mut want_y).unwrap();
            common::for_each_isa(|isa| {
                let mut got_y = vec![0.0; d.output_len];
                k::conv2d_direct(&p, &dt.x, &w, None, Activation::None, &mut got_y).unwrap();
                assert_eq!(nan(&got_y), nan(&want_y), "{isa:?} forward, shape {i}");
                let mut s = vec![0.0; k::conv2d_scratch_len(&p).unwrap()];
                k::conv2d(&p, &dt.x, &w, None, Activation::None, &mut got_y, &mut s).unwrap();
                assert_eq!(nan(&got_y), nan(&want_y), "{isa:?} conv2d, shape {i}");
                k::conv2d_direct_scalar(&p, &dt.x, &w, None, Activation::None, &mut got_y).unwrap();
                assert_eq!(nan(&got_y), nan(&want_y), "scalar forward, shape {i}");
                let mut got = vec![0.0; d.weight_len];
                let mut s = vec![0.0; k::conv2d_backward_weight_scratch_len(&p).unwrap()];
                k::conv2d_backward_weight(&p, &dt.x, &gy, &mut got, &mut s).unwrap();
                assert_eq!(nan(&got), nan(&want), "{isa:?} grad weight, shape {i}");
                let mut got_x = vec![0.0; d.input_len];
                let mut s = vec![0.0; k::conv2d_backward_input_scratch_len(&p).unwrap()];
                k::conv2d_backward_input(&p, &w, &gy, &mut got_x, &mut s).unwrap();
                assert_eq!(nan(&got_x), nan(&want_x), "{isa:?} grad input, shape {i}");
            });
        }
    }
}

/// Stride-1 shapes with 8 to 20 images, which take the batch-in-lanes input gradient
/// (groups of eight images per vector, the last partial): odd and even widths (the last
/// pixel of an odd row alone), padding on either side up to the kernel's size (tap ranges
/// cut at both ends), 1 to 13 input channels per group (tiles of 6, 4, 2 and 1), groups.
#[derive(Clone, Debug)]
struct LanesCase(Case);

impl Arbitrary for LanesCase {
    fn arbitrary(g: &mut Gen) -> Self {
        loop {
            let groups = *g.choose(&[1, 1, 2, 3]).unwrap();
            let (kh, kw) = (range(g, 1, 5), range(g, 1, 5));
            let mut p = Conv2dParams::new(
                range(g, 8, 20),
                range(g, 1, 13) * groups,
                range(g, 1, 12),
                range(g, 1, 15),
                range(g, 1, 6) * groups,
                kh,
                kw,
            )
            .with_groups(groups);
            if coin(g) {
                p = p.with_padding(
                    range(g, 0, kh),
                    range(g, 0, kh),
                    range(g, 0, kw),
                    range(g, 0, kw),
                );
            }
            let d = match p.dims() {
                Ok(d) => d,
                Err(_) => continue,
            };
            // (1x1 unpadded is a plain GEMM, depthwise the flat kernel)
            if (kh == 1 && kw == 1 && d.padded_h == p.in_h && d.padded_w == p.in_w)
                || (d.in_per_group == 1 && d.out_per_group == 1)
            {
                continue;
            }
            return LanesCase(Case {
                p,
                act: Activation::None,
                bias: false,
                seed: u64::arbitrary(g),
            });
        }
    }
}

#[test]
fn batch_in_lanes_input_gradient_matches_reference() {
    check(
        if cfg!(miri) { 1 } else { 150 },
        (|c: LanesCase| backward_matches(c.0)) as fn(LanesCase) -> bool,
    );
}

/// A convolution with a sparse output gradient: `per_plane` entries per output plane,
/// positions anywhere in the plane (repeats and `NO_INDEX` included), and one time in
/// three a kernel of up to 9 x 10 taps (past the vector path's 8 x 8).
#[derive(Clone, Debug)]
struct SparseCase {
    p: Conv2dParams,
    per_plane: usize,
    seed: u64,
}

impl Arbitrary for SparseCase {
    fn arbitrary(g: &mut Gen) -> Self {
        loop {
            let mut p = Case::arbitrary(g).p;
            if range(g, 0, 2) == 0 {
                p.kernel_h = range(g, 1, 9);
                p.kernel_w = range(g, 1, 10);
                p.in_h += range(g, 0, 9);
                p.in_w += range(g, 0, 10);
            }
            let Ok(d) = p.dims() else { continue };
            let per_plane = range(g, 1, d.out_h * d.out_w + 2);
            return SparseCase {
                p,
                per_plane,
                seed: u64::arbitrary(g),
            };
        }
    }
}

fn sparse_matches(c: SparseCase) -> bool {
    let p = &c.p;
    let d = p.dims().unwrap();
    let plane = d.out_h * d.out_w;
    let mut rng = Rng(c.seed);
    let x = rng.vec(d.input_len);
    let entries = p.batch * p.out_channels * c.per_plane;
    let pos: Vec<u32> = (0..entries)
        .map(|_| match rng.below(8) {
            0 => k::NO_INDEX,
            _ => rng.below(plane) as u32,
        })
        .collect();
    let val = rng.vec(entries);
    // the dense gradient the entries add up to, and the reference on it
    let mut gy = vec![0.0; d.output_len];
    let mut terms = vec![0usize; d.output_len];
    for (i, (&q, &v)) in pos.iter().zip(&val).enumerate() {
        if q != k::NO_INDEX {
            let at = i / c.per_plane * plane + q as usize;
            gy[at] += v;
            terms[at] += 1;
        }
    }
    let mut want_w = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(p, &x, &gy, &mut want_w).unwrap();
    let mut want_b = vec![0.0; d.bias_len];
    r::conv2d_backward_bias(p, &gy, &mut want_b).unwrap();
    // magnitudes from |entries|, each summed on its own
    let mut agy = vec![0.0; d.output_len];
    for (i, (&q, &v)) in pos.iter().zip(&val).enumerate() {
        if q != k::NO_INDEX {
            agy[i / c.per_plane * plane + q as usize] += v.abs();
        }
    }
    let mut mag_w = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(p, &abs(&x), &agy, &mut mag_w).unwrap();
    let mut mag_b = vec![0.0; d.bias_len];
    r::conv2d_backward_bias(p, &agy, &mut mag_b).unwrap();
    let most = terms.iter().max().copied().unwrap_or(0) + 1;
    let k_w = p.batch * d.col_cols * most;
    let scratch_len = k::conv2d_backward_weight_sparse_scratch_len(p).unwrap();
    common::for_each_isa(|isa| {
        let (mut gw, mut gb) = (vec![f32::NAN; d.weight_len], vec![f32::NAN; d.bias_len]);
        let mut s = vec![f32::NAN; scratch_len];
        k::conv2d_backward_weight_sparse(
            p,
            &x,
            c.per_plane,
            &pos,
            &val,
            &mut gw,
            Some(&mut gb),
            &mut s,
        )
        .unwrap();
        assert_sum_close(
            &format!("{} grad_weight", isa.name()),
            &gw,
            &want_w,
            &mag_w,
            k_w,
        );
        assert_sum_close(
            &format!("{} grad_bias", isa.name()),
            &gb,
            &want_b,
            &mag_b,
            k_w,
        );
        // without the bias: the same weight gradient, bit for bit
        let mut gw2 = vec![f32::NAN; d.weight_len];
        k::conv2d_backward_weight_sparse(p, &x, c.per_plane, &pos, &val, &mut gw2, None, &mut s)
            .unwrap();
        assert_eq!(
            gw.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            gw2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    });
    true
}

#[test]
fn sparse_weight_gradient_matches_reference() {
    check(300, sparse_matches as fn(SparseCase) -> bool);
}

/// The use it is made for: a 2x2 max pool after the convolution, its indices and
/// gradient in place of the pool's backward pass and the dense weight gradient.
#[test]
fn sparse_weight_gradient_from_a_max_pool() {
    let p = Conv2dParams::new(16, 1, 28, 28, 6, 5, 5).with_padding(2, 2, 2, 2);
    let d = p.dims().unwrap();
    let pool = k::Pool2dParams::new(16, 6, 28, 28, 2, 2);
    let mut rng = Rng(7);
    let (x, w) = (rng.vec(d.input_len), rng.vec(d.weight_len));
    let mut y = vec![0.0; d.output_len];
    r::conv2d(&p, &x, &w, None, Activation::Relu, &mut y).unwrap();
    let pooled_len = d.output_len / 4;
    let (mut py, mut idx) = (vec![0.0; pooled_len], vec![0u32; pooled_len]);
    k::max_pool2d(&pool, &y, &mut py, Some(&mut idx)).unwrap();
    let mut g = rng.vec(pooled_len);
    k::relu_backward_inplace(&py, &mut g).unwrap();
    let mut gy = vec![0.0; d.output_len];
    k::max_pool2d_backward(&pool, &idx, &g, &mut gy).unwrap();
    let mut want = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(&p, &x, &gy, &mut want).unwrap();
    let mut mag = vec![0.0; d.weight_len];
    r::conv2d_backward_weight(&p, &abs(&x), &abs(&gy), &mut mag).unwrap();
    let mut s = vec![0.0; k::conv2d_backward_weight_sparse_scratch_len(&p).unwrap()];
    common::for_each_isa(|isa| {
        let mut gw = vec![f32::NAN; d.weight_len];
        k::conv2d_backward_weight_sparse(&p, &x, 14 * 14, &idx, &g, &mut gw, None, &mut s).unwrap();
        assert_sum_close(isa.name(), &gw, &want, &mag, 16 * 28 * 28);
    });
}

/// Unlisted positions contribute nothing, not `0 * x`: an infinite input under a zero
/// gradient leaves the result finite; under a listed value it gives infinity or NaN as
/// the dense pass does.
#[test]
fn sparse_weight_gradient_skips_unlisted_positions() {
    let p = Conv2dParams::new(1, 1, 4, 4, 1, 3, 3).with_padding(1, 1, 1, 1);
    let mut x = [1.0; 16];
    x[15] = f32::INFINITY;
    let mut s = vec![0.0; k::conv2d_backward_weight_sparse_scratch_len(&p).unwrap()];
    common::for_each_isa(|isa| {
        let mut gw = [f32::NAN; 9];
        // output (0, 0): its taps cover rows and columns -1..=1, not the infinity at (3, 3)
        k::conv2d_backward_weight_sparse(&p, &x, 1, &[0], &[2.0], &mut gw, None, &mut s).unwrap();
        assert_eq!(gw, [0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 2.0, 2.0], "{isa:?}");
        // output (3, 3): its centre tap is the infinity
        k::conv2d_backward_weight_sparse(&p, &x, 1, &[15], &[2.0], &mut gw, None, &mut s).unwrap();
        assert_eq!(gw[4], f32::INFINITY, "{isa:?}");
        assert_eq!(gw[8], 0.0, "{isa:?}");
    });
}

/// Winograd's forward pass against the reference within its own rounding bound
/// (`reference::conv2d_winograd_magnitude`: `(C + 14) * eps` times it), on every variant.
fn winograd_matches(c: &Case) -> bool {
    let p = &c.p;
    let d = p.dims().unwrap();
    let dt = data(p, c.seed);
    let bias = c.bias.then_some(&dt.b[..]);
    let mut want = vec![0.0; d.output_len];
    r::conv2d(p, &dt.x, &dt.w, bias, c.act, &mut want).unwrap();
    let mut mag = vec![0.0; d.output_len];
    r::conv2d_winograd_magnitude(p, &dt.x, &dt.w, bias, &mut mag).unwrap();
    // (at least the direct sum's magnitude, as documented)
    let direct = magnitude(p, &dt, c.bias);
    assert!(mag.iter().zip(&direct).all(|(w, d)| w >= d));
    common::for_each_isa(|isa| {
        let mut got = vec![f32::NAN; d.output_len];
        winograd(p, &dt.x, &dt.w, bias, c.act, &mut got).unwrap();
        assert_sum_close(isa.name(), &got, &want, &mag, d.in_per_group + 14);
    });
    true
}

/// 3x3 stride-1 shapes for Winograd: 1 to 40 channels in and out per group (partial
/// microkernel tiles and slivers), padding 0 to 3 on each side, odd and even outputs,
/// groups, images of 1 to 20 x 24 (up to 195 tiles: two blocks), one or two of them, or
/// 3 to 24 images of up to 9 x 9 (blocks holding several images' tiles).
#[derive(Clone, Debug)]
struct WinoCase(Case);

impl Arbitrary for WinoCase {
    fn arbitrary(g: &mut Gen) -> Self {
        loop {
            let groups = *g.choose(&[1, 1, 2, 3]).unwrap();
            let many = bool::arbitrary(g);
            let (batch, side) = if many {
                (range(g, 3, 24), 9)
            } else {
                (range(g, 1, 2), 0)
            };
            let p = Conv2dParams::new(
                batch,
                range(g, 1, 40) * groups,
                range(g, 1, if many { side } else { 20 }),
                range(g, 1, if many { side } else { 24 }),
                range(g, 1, 40) * groups,
                3,
                3,
            )
            .with_groups(groups)
            .with_padding(
                range(g, 0, 3),
                range(g, 0, 3),
                range(g, 0, 3),
                range(g, 0, 3),
            );
            if p.dims().is_err() {
                continue;
            }
            let c = Case::arbitrary(g);
            return WinoCase(Case { p, ..c });
        }
    }
}

#[test]
fn winograd_matches_reference() {
    // (a third as many random shapes off x86: CI runs the other targets' tests under
    // emulation, where 150 took 78 s of its 25 minutes)
    let cases = if cfg!(target_arch = "x86_64") {
        150
    } else {
        50
    };
    check(
        cases,
        (|c: WinoCase| winograd_matches(&c.0)) as fn(WinoCase) -> bool,
    );
}

/// Several blocks of 128 tiles with the last partial and blocks starting mid row of
/// tiles; more input channels than one GEMM K block (512); odd output sizes; groups;
/// padding wider than the kernel's reach; the ResNet layer's geometry on one image.
#[test]
fn winograd_large_shapes_match_reference() {
    let shapes = [
        Conv2dParams::new(2, 40, 30, 27, 33, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(1, 600, 5, 6, 40, 3, 3).with_padding(1, 0, 2, 1),
        Conv2dParams::new(1, 64, 35, 9, 70, 3, 3).with_groups(2),
        Conv2dParams::new(3, 8, 17, 40, 12, 3, 3).with_padding(4, 2, 0, 5),
        // 16 tiles an image: blocks of eight images, the last of one
        Conv2dParams::new(9, 70, 7, 7, 40, 3, 3).with_padding(1, 1, 1, 1),
        // 6 tiles an image, each run rounded up to 8 columns: 16 runs a block
        Conv2dParams::new(37, 8, 5, 7, 9, 3, 3).with_padding(1, 1, 1, 1),
        // 49 tiles an image: runs that cross the blocks' ends
        Conv2dParams::new(5, 24, 13, 14, 17, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(1, 128, 28, 28, 128, 3, 3).with_padding(1, 1, 1, 1),
    ];
    // (the ResNet geometry, 10^9 operations of reference and bound, on x86 only: CI runs
    // the other targets' tests under emulation)
    let n = if cfg!(target_arch = "x86_64") { 8 } else { 7 };
    for (i, p) in shapes.into_iter().take(n).enumerate() {
        let c = Case {
            p,
            act: Activation::Clamp {
                min: -3.0,
                max: 3.0,
            },
            bias: true,
            seed: 900 + i as u64,
        };
        winograd_matches(&c);
        if k::conv2d_algo(&p).unwrap() == Conv2dAlgo::Winograd {
            forward_matches(&Case { p, ..c }, dispatch);
        }
    }
}

/// NaN and infinities in the input and the weights (at the image's edge too, where they
/// meet the padding): an output is finite exactly where the reference's is, and NaN
/// wherever the reference's is (an infinity may come out as NaN: the transforms subtract).
#[test]
fn winograd_non_finite_reaches_the_same_outputs() {
    let p = Conv2dParams::new(2, 3, 9, 10, 4, 3, 3).with_padding(1, 2, 1, 0);
    let d = p.dims().unwrap();
    for (i, (xi, wi)) in [
        (Some(0), None),
        (Some(47), None),
        (None, Some(4)),
        (Some(200), Some(30)),
    ]
    .into_iter()
    .enumerate()
    {
        for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            let mut dt = data(&p, 40 + i as u64);
            if let Some(xi) = xi {
                dt.x[xi] = bad;
            }
            if let Some(wi) = wi {
                dt.w[wi] = bad;
            }
            let mut want = vec![0.0; d.output_len];
            r::conv2d(&p, &dt.x, &dt.w, Some(&dt.b), Activation::None, &mut want).unwrap();
            assert!(want.iter().any(|v| !v.is_finite()));
            common::for_each_isa(|isa| {
                let mut got = vec![0.0; d.output_len];
                winograd(&p, &dt.x, &dt.w, Some(&dt.b), Activation::None, &mut got).unwrap();
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.is_finite(),
                        w.is_finite(),
                        "{} [{j}] {g} vs {w}",
                        isa.name()
                    );
                    assert!(!w.is_nan() || g.is_nan(), "{} [{j}] {g} vs {w}", isa.name());
                }
            });
        }
    }
}

/// The input gradient of a 3x3 stride-1 layer runs as a forward convolution of `dY` with
/// the flipped kernel, which `conv2d` gives to Winograd's algorithm for wide layers: it
/// matches the reference within Winograd's bound for that forward convolution, on every
/// variant (two images of 128 channels on 28 x 28; 256 channels in two groups with uneven
/// padding).
#[test]
fn input_gradient_through_winograd_matches_reference() {
    let shapes = [
        Conv2dParams::new(2, 128, 28, 28, 128, 3, 3).with_padding(1, 1, 1, 1),
        Conv2dParams::new(2, 256, 28, 29, 256, 3, 3)
            .with_groups(2)
            .with_padding(1, 0, 2, 1),
    ];
    // (the second on x86 only: CI runs the other targets' tests under emulation)
    let n = if cfg!(target_arch = "x86_64") { 2 } else { 1 };
    for (i, p) in shapes.into_iter().take(n).enumerate() {
        let d = p.dims().unwrap();
        let dt = data(&p, 1100 + i as u64);
        // the forward convolution it runs: dY's channels in, the kernel flipped, padding
        // 2 - pad on each side
        let q = Conv2dParams::new(
            p.batch,
            p.out_channels,
            d.out_h,
            d.out_w,
            p.in_channels,
            3,
            3,
        )
        .with_groups(p.groups)
        .with_padding(
            2 - p.pad_top,
            2 - p.pad_bottom,
            2 - p.pad_left,
            2 - p.pad_right,
        );
        assert_eq!(
            k::conv2d_algo(&q).unwrap(),
            Conv2dAlgo::Winograd,
            "shape {i}"
        );
        let (cg, mg) = (d.in_per_group, d.out_per_group);
        let mut flipped = vec![0.0; d.weight_len];
        for g in 0..p.groups {
            for o in 0..mg {
                for c in 0..cg {
                    for t in 0..9 {
                        flipped[((g * cg + c) * mg + o) * 9 + 8 - t] =
                            dt.w[((g * mg + o) * cg + c) * 9 + t];
                    }
                }
            }
        }
        let mut mag = vec![0.0; d.input_len];
        r::conv2d_winograd_magnitude(&q, &dt.gy, &flipped, None, &mut mag).unwrap();
        let mut want = vec![0.0; d.input_len];
        r::conv2d_backward_input(&p, &dt.w, &dt.gy, &mut want).unwrap();
        common::for_each_isa(|isa| {
            let mut got = vec![f32::NAN; d.input_len];
            let mut s = vec![f32::NAN; k::conv2d_backward_input_scratch_len(&p).unwrap()];
            k::conv2d_backward_input(&p, &dt.w, &dt.gy, &mut got, &mut s).unwrap();
            assert_sum_close(isa.name(), &got, &want, &mag, mg + 14);
        });
    }
}
