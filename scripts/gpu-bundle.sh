#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh carries to a lent GPU machine (no Rust, no network there):
# the `--features cuda` release binary and the step bench, linked on this machine against
# link-time stubs (scripts/cuda-link-stubs.sh) with the wheel toolchain
# (scripts/cuda-toolchain.sh), stripped into target-gpu/.
#
#   scripts/gpu-bundle.sh            # then, on the GPU machine: scripts/gpu-check.sh
#
# Env: CUDA_COMPUTE_CAP (default 90: H100/H200), CARGO_TARGET_DIR_CUDA (default
# ~/.cache/geoexp-target-cuda, apart from the CPU build's so both stay warm).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/cuda-toolchain.sh >/dev/null
eval "$(scripts/cuda-toolchain.sh --print-env)"
scripts/cuda-link-stubs.sh >/dev/null
eval "$(scripts/cuda-link-stubs.sh --print-env)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_CUDA:-$HOME/.cache/geoexp-target-cuda}"

cargo build --release --features cuda
step=$(cargo bench --bench step --features cuda --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "step" and m.get("executable"):
        print(m["executable"])')
[[ -x "$step" ]] || { echo "gpu-bundle: the step bench did not build" >&2; exit 1; }

rm -rf target-gpu
mkdir -p target-gpu
cp "$CARGO_TARGET_DIR/release/geoexp" target-gpu/geoexp
cp "$step" target-gpu/step
strip target-gpu/geoexp target-gpu/step
echo "gpu-bundle: $(du -sh target-gpu | cut -f1) in target-gpu/ (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP):"
readelf -d target-gpu/geoexp | awk '/NEEDED/ {print "  needs", $NF}'
