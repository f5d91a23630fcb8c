#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh carries to a lent GPU machine (no Rust, no network there):
# the `--features cuda` release binary and the step bench, linked on this machine against
# link-time stubs (scripts/cuda-link-stubs.sh) with the wheel toolchain
# (scripts/cuda-toolchain.sh), stripped and packed into target-gpu/bundle.tar.xz (the device
# tool carries at most 64 MiB; the stripped CUDA binary alone is ~80 MB).
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

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
strip -o "$staging/geoexp" "$CARGO_TARGET_DIR/release/geoexp"
strip -o "$staging/step" "$step"
rm -rf target-gpu
mkdir -p target-gpu
XZ_OPT="-T0 -6" tar -C "$staging" -cJf target-gpu/bundle.tar.xz geoexp step
echo "gpu-bundle: target-gpu/bundle.tar.xz, $(du -h target-gpu/bundle.tar.xz | cut -f1) (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP); the binary needs:"
readelf -d "$staging/geoexp" | awk '/NEEDED/ {print "  ", $NF}'
