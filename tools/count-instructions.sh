#!/bin/sh
# Instructions the Cortex-M4 firmware executes per image under QEMU (mps2-an386):
# builds it with N images baked in and with none, runs each with every instruction
# translated alone (`-singlestep -d exec,nochain`: one log line per executed instruction)
# and prints (count(N) - count(0)) / N.
#
#   tools/count-instructions.sh [N] [cargo features]     e.g. tools/count-instructions.sh 3 int8
set -eu
n=${1:-3}
features=${2:-}
fw=target/thumbv7em-none-eabihf/firmware/lenet5-firmware
count() {
    CNNKIT_FIRMWARE_COUNT=$1 cargo build -q -p lenet5-firmware --profile firmware \
        --target thumbv7em-none-eabihf ${features:+--features "$features"}
    log=$(mktemp)
    timeout 900 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
        -semihosting-config enable=on,target=native -kernel "$fw" \
        -singlestep -d exec,nochain -D "$log" >/dev/null
    grep -c '^Trace' "$log"
    rm -f "$log"
}
a=$(count "$n")
b=$(count 0)
echo "features '${features}': $a instructions for $n images, $b for none: $(( (a - b) / n )) per image"
