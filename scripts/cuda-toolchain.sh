#!/usr/bin/env bash
# Install a pinned CUDA 13 *compiler* toolchain (nvcc, ptxas, cudafe++, NVVM,
# CRT/runtime headers, CCCL) from NVIDIA's PyPI wheels into a cache folder, so
# `cargo check/clippy/build --features cuda` can run candle-kernels' build
# script (nvcc via cudaforge) on a machine without a system CUDA toolkit or GPU.
#
#   scripts/cuda-toolchain.sh               # install if needed, then print exports
#   eval "$(scripts/cuda-toolchain.sh --print-env)"   # exports only (installs nothing;
#                                                     # fails if not installed yet)
#
# Cache: ${GEOEXP_CUDA_HOME:-$HOME/.cache/geoexp-cuda}/toolchain-<tag>/nvidia/cu13
# A marker file records the exact pin set; a different pin set installs side by
# side. Idempotent: a second run with the same pins downloads nothing.
#
# Why 13.4 and not the newest 13.5: cudarc 0.19.10 (pinned by candle 0.11.1)
# knows CUDA <= 13.4 and panics on `nvcc --version` = 13.5 unless
# CUDARC_CUDA_VERSION is set. We set CUDARC_CUDA_VERSION=13040 anyway. An older
# nvcc also emits PTX that older drivers can JIT (candle loads its kernels as
# PTX through the driver at run time; the driver must be >= the nvcc version).
#
# Only the toolchain is installed here. Linking a binary additionally needs
# libcuda/libcublas/libcublasLt/libcurand/libnvrtc/libcudart: see
# scripts/cuda-link-stubs.sh. Nothing here is needed at run time.
set -euo pipefail

# ---- pins (every version verified to exist on PyPI as a manylinux x86_64 wheel)
CUDA_TAG=13.4.92
PINS=(
  "nvidia-cuda-nvcc==13.4.92"      # nvcc, ptxas, cudafe++, fatbinary, nvlink, nvcc.profile
  "nvidia-cuda-crt==13.4.92"       # include/crt/* host_config.h etc. (required by nvcc)
  "nvidia-nvvm==13.4.92"           # nvvm/bin/cicc + libnvvm (required by nvcc)
  "nvidia-cuda-runtime==13.4.92"   # cuda_runtime.h, cuda_fp16.h, ..., libcudart.so.13
  "nvidia-cuda-cccl==13.3.4.3.1"   # CCCL 3.4.3 (cuda/std, cub, thrust): the CCCL of the 13.4 update
)
CUDARC_VERSION_DEFAULT=13040      # cudarc's `cuda-13040` API (newest it knows)
COMPUTE_CAP_DEFAULT=90            # H100/H200; override with CUDA_COMPUTE_CAP

CACHE="${GEOEXP_CUDA_HOME:-$HOME/.cache/geoexp-cuda}"
PIN_HASH="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)"
DEST="$CACHE/toolchain-$CUDA_TAG-$PIN_HASH"
ROOT="$DEST/nvidia/cu13"
MARKER="$DEST/.geoexp-installed"

print_env() {
  # Single-quoted where possible so the output is safe to eval.
  cat <<EOF
export PATH='$ROOT/bin':"\$PATH"
export CUDA_ROOT='$ROOT'
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-$COMPUTE_CAP_DEFAULT}"
export CUDARC_CUDA_VERSION=$CUDARC_VERSION_DEFAULT
EOF
}

installed() {
  [[ -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$(printf '%s\n' "${PINS[@]}")" ]] \
    && [[ -x "$ROOT/bin/nvcc" ]]
}

case "${1:-}" in
  --print-env)
    if ! installed; then
      echo "cuda-toolchain.sh: toolchain not installed at $DEST; run $0 first" >&2
      exit 1
    fi
    print_env
    exit 0
    ;;
  ""|--install) ;;
  -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--install|--print-env]" >&2; exit 2 ;;
esac

log() { echo "cuda-toolchain.sh: $*" >&2; }

if installed; then
  log "already installed: $DEST"
  print_env
  exit 0
fi

# ---- find a pip: python3 -m pip, else a private venv, else apt (root only)
find_pip() {
  if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
    PIP=(python3 -m pip); return 0
  fi
  local venv="$CACHE/pip-venv"
  if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    PIP=("$venv/bin/python" -m pip); return 0
  fi
  if command -v python3 >/dev/null && python3 -m venv "$venv" >/dev/null 2>&1 \
     && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    PIP=("$venv/bin/python" -m pip); return 0
  fi
  rm -rf "$venv"
  # Debian/Ubuntu without pip/venv: python3-venv brings ensurepip (and works
  # under PEP 668 "externally managed" system pythons, unlike a bare pip).
  if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    log "no pip found; installing python3-venv python3-pip with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv python3-pip >/dev/null
    if python3 -m venv "$venv" >/dev/null 2>&1 && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
      PIP=("$venv/bin/python" -m pip); return 0
    fi
    if python3 -m pip --version >/dev/null 2>&1; then PIP=(python3 -m pip); return 0; fi
  fi
  log "need python3 with pip (Debian: apt-get install python3-venv python3-pip)"
  return 1
}
find_pip

mkdir -p "$CACHE"
TMP="$(mktemp -d "$CACHE/.tmp-toolchain.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

log "installing ${PINS[*]} into $DEST (with ${PIP[*]})"
start=$(date +%s)
# --target: plain files, no environment touched, allowed under PEP 668.
# --no-deps: the wheels' own deps are unpinned; we pin the full set above.
PIP_ROOT_USER_ACTION=ignore nice -n 19 "${PIP[@]}" install --disable-pip-version-check --no-input --quiet \
  --no-deps --only-binary=:all: --no-compile --target "$TMP/t" "${PINS[@]}"
end=$(date +%s)

[[ -x "$TMP/t/nvidia/cu13/bin/nvcc" ]] || { log "nvcc missing after install"; exit 1; }
rm -rf "$DEST"
mv "$TMP/t" "$DEST"
printf '%s\n' "${PINS[@]}" >"$MARKER"
log "installed in $((end - start)) s; $(du -sh "$DEST" | cut -f1) on disk"

if ! "$ROOT/bin/nvcc" --version >/dev/null 2>&1; then
  log "WARNING: $ROOT/bin/nvcc --version failed"
fi
command -v g++ >/dev/null || log "WARNING: no g++ on PATH; nvcc needs a host C++ compiler (apt-get install g++)"

print_env
