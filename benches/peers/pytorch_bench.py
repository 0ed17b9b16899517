#!/usr/bin/env python3
"""Times PyTorch on the shapes of `cnnkit bench`, one JSON object per row with the same
keys (name, variant, pass, threads, ms, gflops), so the two outputs can be joined on
(name, pass).

Not run in CI. Usage:

    pip install torch   # the CPU build
    python3 benches/peers/pytorch_bench.py [--threads N] [--filter TEXT] [--min-time-ms MS]

Run it right after `cnnkit bench --json` on the same machine and compare medians as
ratios: the machine is shared and noisy, so absolute numbers drift between runs.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--filter", default="")
    ap.add_argument("--min-time-ms", type=float, default=300)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    min_time = a.min_time_ms / 1e3
    variant = f"pytorch-{torch.__version__}"
    out = []
    for name, n, cin, hw, cout, k, s, p, g in CONV:
        full = f"conv2d/{name}"
        if a.filter not in full:
            continue
        x = torch.randn(n, cin, hw, hw)
        w = torch.randn(cout, cin // g, k, k, requires_grad=True)
        b = torch.randn(cout, requires_grad=True)
        ho = (hw + 2 * p - k) // s + 1
        macs = n * cout * ho * ho * (cin // g) * k * k
        with torch.no_grad():
            fwd = lambda: F.relu(F.conv2d(x, w, b, stride=s, padding=p, groups=g))
            out.append(row(full, variant, "fwd", a.threads, median_ms(fwd, min_time), 2 * macs))
        xg = x.clone().requires_grad_(True)
        gy = torch.randn(n, cout, ho, ho)

        def fwd_bwd():
            y = F.relu(F.conv2d(xg, w, b, stride=s, padding=p, groups=g))
            y.backward(gy)

        out.append(row(full, variant, "fwd+bwd", a.threads, median_ms(fwd_bwd, min_time), 6 * macs))
    for nn in (256, 1024):
        full = f"sgemm/{nn}"
        if a.filter in full:
            A, B = torch.randn(nn, nn), torch.randn(nn, nn)
            C = torch.empty(nn, nn)
            ms = median_ms(lambda: torch.mm(A, B, out=C), min_time)
            out.append(row(full, variant, "fwd", a.threads, ms, 2 * nn**3))
    if a.filter in "maxpool/2x2":
        x = torch.randn(64, 16, 28, 28)
        ms = median_ms(lambda: F.max_pool2d(x, 2, 2, return_indices=True), min_time)
        out.append(row("maxpool/2x2", variant, "fwd", a.threads, ms, 3 * 64 * 16 * 14 * 14))
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
        if a.filter in fname:
            ms = median_ms(fn, min_time)
            out.append(row(fname, variant, "fwd", a.threads, ms, flops * x.numel()))
    for r in out:
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
