#!/usr/bin/env python3
"""Times PyTorch on the shapes of `cnnkit bench`, one JSON object per row with the same
keys (name, variant, pass, threads, ms, gflops), so the two outputs can be joined on
(name, pass).

Not run in CI. Usage:

    pip install torch   # the CPU build
    python3 benches/peers/pytorch_bench.py [--threads N] [--filter TEXT] [--min-time-ms MS]

Every row runs once before any is timed (oneDNN is faster on some shapes once other
convolutions have run); each row is then the median of at least 5 calls and at least
--min-time-ms. Run it right after `cnnkit bench --json` on the same machine and compare
medians as ratios (benches/peers/compare.py does both): the machine is shared and noisy,
so absolute numbers drift between runs.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

# (name, N, C_in, H=W, C_out, kernel, stride, pad, groups): the shapes of cnnkit bench
CONV = [
    ("lenet_c1", 64, 1, 28, 6, 5, 1, 2, 1),
    ("lenet_c2", 64, 6, 14, 16, 5, 1, 0, 1),
    ("vgg3x3_64", 8, 64, 56, 64, 3, 1, 1, 1),
    ("res3x3_128", 8, 128, 28, 128, 3, 1, 1, 1),
    ("pw1x1_256", 8, 256, 14, 256, 1, 1, 0, 1),
    ("stem7x7s2", 8, 3, 224, 64, 7, 2, 3, 1),
    ("dw3x3_256", 8, 256, 28, 256, 3, 1, 1, 256),
    ("mbv2_stem3x3s2", 8, 3, 224, 32, 3, 2, 1, 1),
    ("mbv2_dw3x3s2", 8, 144, 56, 144, 3, 2, 1, 144),
    ("mbv2_pw16to96", 8, 16, 112, 96, 1, 1, 0, 1),
    ("mbv2_pw24to144", 8, 24, 56, 144, 1, 1, 0, 1),
    ("rgb3x3_320", 4, 3, 320, 32, 3, 1, 1, 1),
    ("conv5x5_32", 8, 32, 32, 64, 5, 1, 2, 1),
    ("res3x3_256", 8, 256, 14, 256, 3, 1, 1, 1),
    ("res3x3_512", 8, 512, 7, 512, 3, 1, 1, 1),
    ("fmnist_c1", 64, 1, 28, 32, 3, 1, 1, 1),
    ("fmnist_c2", 64, 32, 14, 64, 3, 1, 1, 1),
    ("fmnist_c3", 64, 64, 7, 128, 3, 1, 1, 1),
]


def median_ms(fn, min_time):
    fn()  # warm up
    samples = []
    start = time.perf_counter()
    while len(samples) < 5 or (time.perf_counter() - start < min_time and len(samples) < 200):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    samples.sort()
    return samples[len(samples) // 2]


def row(name, variant, pass_, threads, ms, flops):
    return {
        "name": name,
        "variant": variant,
        "pass": pass_,
        "threads": threads,
        "ms": round(ms, 4),
        "gflops": round(flops / (ms * 1e-3) / 1e9, 2),
    }


def jobs(filter_):
    """(name, pass, callable, flops) of every row whose name contains `filter_`."""
    out = []
    for name, n, cin, hw, cout, k, s, p, g in CONV:
        full = f"conv2d/{name}"
        if filter_ not in full:
            continue
        x = torch.randn(n, cin, hw, hw)
        w = torch.randn(cout, cin // g, k, k, requires_grad=True)
        b = torch.randn(cout, requires_grad=True)
        ho = (hw + 2 * p - k) // s + 1
        macs = n * cout * ho * ho * (cin // g) * k * k

        def fwd(x=x, w=w, b=b, s=s, p=p, g=g):
            with torch.no_grad():
                F.relu(F.conv2d(x, w, b, stride=s, padding=p, groups=g))

        xg = x.clone().requires_grad_(True)
        gy = torch.randn(n, cout, ho, ho)

        def fwd_bwd(xg=xg, w=w, b=b, s=s, p=p, g=g, gy=gy):
            y = F.relu(F.conv2d(xg, w, b, stride=s, padding=p, groups=g))
            y.backward(gy)

        out.append((full, "fwd", fwd, 2 * macs))
        out.append((full, "fwd+bwd", fwd_bwd, 6 * macs))
    # int8: the shapes cnnkit times as conv2d_s8/* (src/bench.rs INT8_SHAPES), on PyTorch's
    # quantised convolution with ReLU fused (fbgemm on x86: quint8 input in channels-last
    # layout, qint8 weights with one scale per output channel, as cnnkit's scheme)
    int8_shapes = ("lenet_c1", "lenet_c2", "res3x3_128", "res3x3_256", "res3x3_512",
                   "pw1x1_256", "dw3x3_256", "mbv2_dw3x3s2")
    for name, n, cin, hw, cout, k, s, p, g in CONV:
        full = f"conv2d_s8/{name}"
        if name not in int8_shapes or filter_ not in full:
            continue
        import torch.ao.nn.intrinsic.quantized as nniq

        ho = (hw + 2 * p - k) // s + 1
        macs = n * cout * ho * ho * (cin // g) * k * k
        conv = nniq.ConvReLU2d(cin, cout, k, stride=s, padding=p, groups=g)
        wf = torch.randn(cout, cin // g, k, k)
        wscale = wf.abs().amax(dim=(1, 2, 3)) / 127
        qw = torch.quantize_per_channel(wf, wscale, torch.zeros(cout, dtype=torch.long), 0,
                                        torch.qint8)
        conv.set_weight_bias(qw, torch.randn(cout))
        conv.scale, conv.zero_point = 0.05, 0
        xq = torch.quantize_per_tensor(torch.randn(n, cin, hw, hw), 0.02, 128, torch.quint8)
        xq = xq.contiguous(memory_format=torch.channels_last)

        def qfwd(conv=conv, xq=xq):
            with torch.no_grad():
                conv(xq)

        out.append((full, "fwd", qfwd, 2 * macs))
    for nn in (256, 512, 1024):
        full = f"sgemm/{nn}"
        if filter_ in full:
            A, B = torch.randn(nn, nn), torch.randn(nn, nn)
            C = torch.empty(nn, nn)
            out.append((full, "fwd", lambda A=A, B=B, C=C: torch.mm(A, B, out=C), 2 * nn**3))
    if filter_ in "maxpool/2x2":
        xp = torch.randn(64, 16, 28, 28)
        fn = lambda: F.max_pool2d(xp, 2, 2, return_indices=True)  # noqa: E731
        out.append(("maxpool/2x2", "fwd", fn, 3 * 64 * 16 * 14 * 14))
    x = torch.randn(802816) * 8
    y = torch.empty_like(x)
    # the element-wise functions, by the names cnnkit's `Elementwise` gives them
    ops = (
        ("relu", lambda: torch.clamp_min(x, 0.0, out=y), 1),
        ("leakyrelu", lambda: F.leaky_relu(x, 0.01), 2),
        ("tanh", lambda: torch.tanh(x, out=y), 20),
        ("sigmoid", lambda: torch.sigmoid(x, out=y), 20),
        ("gelu", lambda: F.gelu(x), 50),
    )
    for fname, fn, flops in ops:
        if filter_ in fname:
            out.append((fname, "fwd", fn, flops * x.numel()))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--filter", default="")
    ap.add_argument("--min-time-ms", type=float, default=300)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.backends.quantized.engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else torch.backends.quantized.engine
    min_time = a.min_time_ms / 1e3
    variant = f"pytorch-{torch.__version__}"
    todo = jobs(a.filter)
    # oneDNN runs some shapes several times faster once other convolutions have run (its
    # primitive caches and code generation): every row runs once before any is timed, so
    # each figure is PyTorch warm, its best
    for _, _, fn, _ in todo:
        fn()
    for name, pass_, fn, flops in todo:
        ms = median_ms(fn, min_time)
        print(json.dumps(row(name, variant, pass_, a.threads, ms, flops)), flush=True)


if __name__ == "__main__":
    main()
