#!/usr/bin/env python3
"""cnnkit beside PyTorch: `cnnkit bench --json` and `pytorch_bench.py`, alternately, in
pairs, joined on (name, pass); prints the Markdown table of docs/performance.md (medians
of the runs; a speedup is PyTorch's time over cnnkit's, the median of the per-run ratios,
each run's in brackets).

Not run in CI. Usage (the Python from ../shared/tools/peers-venv.sh, or any with torch):

    python3 benches/peers/compare.py [--cnnkit target/release/cnnkit] [--pairs 3]
        [--min-time-ms 1000] [--filter TEXT] [--threads N]
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys


def rows(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {(r["name"], r["pass"]): r for r in map(json.loads, out.splitlines())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnkit", default="target/release/cnnkit")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--min-time-ms", type=int, default=1000)
    ap.add_argument("--filter", default="")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    common = ["--min-time-ms", str(a.min_time_ms), "--threads", str(a.threads)]
    if a.filter:
        common += ["--filter", a.filter]
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pytorch_bench.py")
    runs = []
    for i in range(a.pairs):
        ours = rows([a.cnnkit, "bench", "--json"] + common)
        theirs = rows([sys.executable, peer] + common)
        runs.append((ours, theirs))
        print(f"pair {i + 1} of {a.pairs} done", file=sys.stderr)
    print("| kernel | pass | variant | cnnkit ms | GFLOPS | PyTorch ms | speedup (per run) |")
    print("|---|---|---|---|---|---|---|")
    conv = []
    for key, r in runs[0][0].items():
        if key not in runs[0][1]:
            continue
        ms = statistics.median(o[key]["ms"] for o, _ in runs)
        pt = statistics.median(t[key]["ms"] for _, t in runs)
        ratios = [t[key]["ms"] / o[key]["ms"] for o, t in runs]
        gf = statistics.median(o[key]["gflops"] for o, _ in runs)
        sp = statistics.median(ratios)
        if key[0].startswith("conv2d/"):
            conv.append(ratios)
        per = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"| {key[0]} | {key[1]} | {r['variant']} | {ms:.3f} | {gf:.1f} | {pt:.3f} "
              f"| {sp:.2f}x ({per}) |")
    if conv:
        per_run = [math.exp(statistics.mean(math.log(c[i]) for c in conv))
                   for i in range(a.pairs)]
        low = min(min(c) for c in conv)
        print(f"\nConvolution geometric mean {statistics.median(per_run):.2f}x (per run "
              + ", ".join(f"{x:.2f}" for x in per_run)
              + f"); the lowest convolution row in any run {low:.2f}x.")


if __name__ == "__main__":
    main()
