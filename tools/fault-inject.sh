#!/usr/bin/env bash
# Fault injection into the real binary: `cnnkit train --resume` saving a checkpoint is
# crashed (SIGKILL) or given a full disk (ENOSPC) at its Nth write, fsync and rename, for
# every N, by strace. After each run, whatever pair of files is left must load and resume
# to exactly the bytes an undisturbed run gives: proof that every crash point leaves the
# old pair or the new pair (a model with the wrong optimizer state resumes differently).
#
#   tools/fault-inject.sh [path/to/cnnkit]      (default: target/release/cnnkit)
set -euo pipefail
bin=$(realpath "${1:-target/release/cnnkit}")
command -v strace >/dev/null || { echo "strace is needed (apt-get install strace)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

python3 - <<'PY'
import os, random, struct
def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)
os.makedirs("data")
random.seed(1)
for name, n in [("train", 512), ("t10k", 128)]:
    img, lab = [], []
    for _ in range(n):
        c = random.randrange(10)
        for y in range(28):
            img += [200 if y == 3 + 2 * c else random.randrange(40) for _ in range(28)]
        lab.append(c)
    open(f"data/{name}-images-idx3-ubyte", "wb").write(idx([n, 28, 28], img))
    open(f"data/{name}-labels-idx1-ubyte", "wb").write(idx([n], lab))
PY

train() { "$bin" train --data "$work/data" --json "$@" >/dev/null; }
# the old pair (epoch 1), the new pair (epoch 2), and where each resumes to at epoch 3
# (the cosine schedule's length is --epochs, so the two differ)
mkdir old new ref_old ref_new
(cd old && train --epochs 1 --save m.safetensors)
cp old/m.safetensors* new/ && (cd new && train --resume m.safetensors --epochs 2)
cp old/m.safetensors* ref_old/ && (cd ref_old && train --resume m.safetensors --epochs 3)
cp new/m.safetensors* ref_new/ && (cd ref_new && train --resume m.safetensors --epochs 3)

runs=0 crashes=0 olds=0 news=0
for call in write fsync rename renameat; do
    for how in signal=KILL error=ENOSPC; do
        n=1
        while :; do
            rm -rf run check && mkdir run && cp old/m.safetensors* run/
            (cd run && strace -f -o ../strace.log -e trace="$call" \
                -e inject="$call:$how:when=$n" \
                "$bin" train --data "$work/data" --resume m.safetensors --epochs 2 --json \
                >/dev/null 2>&1) 2>/dev/null || true
            # past the last such call (nothing injected, nothing killed): done
            grep -q -e INJECTED -e 'killed by SIGKILL' strace.log || break
            runs=$((runs + 1))
            if [ "$how" = signal=KILL ]; then crashes=$((crashes + 1)); fi
            if cmp -s run/m.safetensors old/m.safetensors; then
                olds=$((olds + 1)) ref=ref_old
            elif cmp -s run/m.safetensors new/m.safetensors; then
                news=$((news + 1)) ref=ref_new
            else
                echo "FAIL: $call $how #$n left a model file that is neither old nor new"; exit 1
            fi
            # what is left loads, and resumes to exactly the undisturbed bytes
            cp -r run check
            if ! (cd check && train --resume m.safetensors --epochs 3 2>../err.txt); then
                echo "FAIL: after $call $how #$n the pair does not load:"; cat err.txt; exit 1
            fi
            if ! cmp -s check/m.safetensors $ref/m.safetensors \
                || ! cmp -s check/m.safetensors.optim $ref/m.safetensors.optim; then
                echo "FAIL: after $call $how #$n the pair resumes to other bytes"; exit 1
            fi
            n=$((n + 1))
        done
    done
done
echo "fault injection: $runs runs ($crashes crashes, $((runs - crashes)) ENOSPC) at every" \
     "write, fsync and rename of a save: $olds left the old pair, $news the new;" \
     "every one loaded and resumed to the undisturbed bytes"
