#!/usr/bin/env bash
# One command on a lent NVIDIA GPU machine (H100/H200): does geoexp's CUDA build work there,
# and how does it compare with PyTorch on the same GPU? Exits non-zero when anything fails.
#
#   scripts/gpu-bundle.sh     # here, with Rust: builds target-gpu/{geoexp,step}
#   scripts/gpu-check.sh      # there, in a copy of this tree with target-gpu/ beside it
#
# The GPU machine needs no Rust and no network, but:
#   * the NVIDIA driver (libcuda.so.1, new enough for CUDA 13.4's PTX) and nvidia-smi;
#   * CUDA 13 libcublas/libcublasLt/libcurand/libnvrtc/libcudart: from a toolkit on the
#     loader's path, or PyTorch's nvidia-* wheels, which this script finds and adds;
#   * python3 with torch and torchvision (the PyTorch side of the step comparison).
#
# It prints the device; runs golf (experiments/golf.toml) on the CPU and with
# train.device=cuda and checks the test metrics agree (mean and median km within
# GPU_CHECK_REL_TOL, default 0.10 relative: the two round differently and 8 epochs of
# training carry the difference into the weights); runs the step bench on CUDA for resnet18,
# resnet50 and resnext50_32x4d at 224 px, batch 32 locations × 4 views, frozen and full,
# beside PyTorch's (benches/torch_step.py), with the time ratios and each process's peak GPU
# memory (the GPU's used memory sampled every 0.2 s, less what was in use before).
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLE="${GPU_CHECK_BUNDLE:-target-gpu}"
REL_TOL="${GPU_CHECK_REL_TOL:-0.10}"
BACKBONES="${GPU_CHECK_BACKBONES:-resnet18,resnet50,resnext50_32x4d}"
STEPS="${GPU_CHECK_STEPS:-10}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

say() { printf '\n== %s ==\n' "$*"; }
fail() { echo "gpu-check: FAIL: $*" >&2; exit 1; }

if [[ ! -x "$BUNDLE/geoexp" && -f "$BUNDLE/bundle.tar.xz" ]]; then
  tar -C "$WORK" -xJf "$BUNDLE/bundle.tar.xz" || fail "cannot unpack $BUNDLE/bundle.tar.xz"
  BUNDLE="$WORK"
fi
[[ -x "$BUNDLE/geoexp" && -x "$BUNDLE/step" ]] \
  || fail "no $BUNDLE/bundle.tar.xz: run scripts/gpu-bundle.sh on a machine with Rust first"
command -v nvidia-smi >/dev/null || fail "no nvidia-smi: is the NVIDIA driver installed?"

say "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
  || fail "nvidia-smi cannot query the GPU"

say "CUDA libraries"
missing() { ldd "$BUNDLE/geoexp" | awk '/not found/ {print $1}'; }
if [[ -n "$(missing)" ]]; then
  # PyTorch's CUDA wheels put the libraries under site-packages/nvidia/**/lib.
  extra=$(python3 - "$(missing)" <<'PY'
import glob, os, site, sys
want = set(sys.argv[1].split())
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = []
for root in roots:
    for lib in glob.glob(os.path.join(root, "nvidia", "**", "lib*.so*"), recursive=True):
        if os.path.basename(lib) in want and os.path.dirname(lib) not in dirs:
            dirs.append(os.path.dirname(lib))
print(":".join(dirs))
PY
)
  [[ -n "$extra" ]] && export LD_LIBRARY_PATH="$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if [[ -n "$(missing)" ]]; then
  fail "the CUDA build needs $(missing | tr '\n' ' ')(CUDA 13); neither the loader's path nor PyTorch's nvidia wheels have them"
fi
ldd "$BUNDLE/geoexp" | grep -E 'libcuda|libcublas|libcurand|libnvrtc|libcudart' | sed 's/^\s*/  /'

say "golf on the CPU and on CUDA"
golf() { # device
  local start end
  start=$(date +%s.%N)
  "$BUNDLE/geoexp" -v --runs-dir "$WORK/$1" run experiments/golf.toml --set "train.device=$1" \
    >"$WORK/golf-$1.log" 2>&1 || { tail -n 30 "$WORK/golf-$1.log" >&2; fail "golf on $1"; }
  end=$(date +%s.%N)
  grep -E '^(train|test|run) ' "$WORK/golf-$1.log" | grep -v epoch || true
  echo "golf on $1: $(python3 -c "print(f'{$end - $start:.1f}')") s"
}
golf cpu
golf cuda
python3 - "$WORK" "$REL_TOL" <<'PY' || fail "golf's test metrics on CUDA differ from the CPU's by more than the tolerance"
import glob, re, sys
work, tol = sys.argv[1], float(sys.argv[2])
def metrics(device):
    (path,) = glob.glob(f"{work}/{device}/golf/*/test_metrics.toml")
    out = {}
    for line in open(path):
        m = re.match(r"^(\w+)\s*=\s*(-?[0-9.eE+-]+)\s*$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out
cpu, cuda = metrics("cpu"), metrics("cuda")
bad = []
print(f"{'metric':<28} {'cpu':>12} {'cuda':>12} {'rel diff':>9}")
for key in sorted(set(cpu) & set(cuda)):
    a, b = cpu[key], cuda[key]
    rel = abs(a - b) / max(abs(a), 1e-12)
    checked = key in ("haversine_km_mean", "haversine_km_median")
    print(f"{key:<28} {a:>12.4f} {b:>12.4f} {rel:>9.4f}{'  (checked)' if checked else ''}")
    if checked and not rel <= tol:
        bad.append(key)
if not {"haversine_km_mean", "haversine_km_median"} <= set(cpu) & set(cuda):
    sys.exit("test_metrics.toml lacks haversine_km_mean / haversine_km_median")
if bad:
    sys.exit(f"beyond {tol:.0%}: {', '.join(bad)}")
print(f"mean and median km agree within {tol:.0%}")
PY

say "training step on CUDA: geoexp and PyTorch, 224 px, 32 locations × 4 views"
base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n1)
peak_run() { # log, command...: runs it, sampling the GPU's used memory; prints the peak MiB
  local log=$1 peak=0 used pid
  shift
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n1)
    (( used > peak )) && peak=$used
    sleep 0.2
  done
  wait "$pid" || { tail -n 30 "$log" >&2; return 1; }
  echo $(( peak > base ? peak - base : 0 ))
}
step_time() { awk -v b="$2" -v m="$3" '$1 == "STEP" && $2 == b && $3 == m {print $4}' "$1"; }
printf '%-16s %-7s %12s %12s %7s %11s %11s\n' backbone mode "geoexp s" "torch s" ratio "geoexp MiB" "torch MiB"
for b in ${BACKBONES//,/ }; do
  for mode in frozen full; do
    g=$WORK/step-$b-$mode.geoexp
    t=$WORK/step-$b-$mode.torch
    gm=$(peak_run "$g" env STEP_DEVICE=cuda STEP_BACKBONES="$b" STEP_MODES="$mode" STEP_SIZE=224 \
      STEP_BATCH=32 STEP_WARMUP=3 STEP_STEPS="$STEPS" "$BUNDLE/step") || fail "geoexp's step: $b $mode"
    tm=$(peak_run "$t" env GEOEXP_TORCH_SYSTEM=1 python3 benches/torch_step.py --device cuda \
      --models "$b" --modes "$mode" --size 224 --batch 32 --warmup 3 --steps "$STEPS") \
      || fail "PyTorch's step: $b $mode"
    gs=$(step_time "$g" "$b" "$mode")
    ts=$(step_time "$t" "$b" "$mode")
    [[ -n "$gs" && -n "$ts" ]] || fail "no STEP line for $b $mode"
    printf '%-16s %-7s %12.4f %12.4f %7.2f %11s %11s\n' "$b" "$mode" "$gs" "$ts" \
      "$(python3 -c "print($gs / $ts)")" "$gm" "$tm"
  done
done
echo "(s: mean per step over $STEPS steps after 3 warm-up; ratio: geoexp / PyTorch)"

say "passed"
