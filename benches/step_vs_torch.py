#!/usr/bin/env python3
"""geoexp's training step beside PyTorch's, on this machine, in one run (tracker issue 6).

For each model it runs `cargo bench --bench step` (geoexp's own step: GeoNet, the project's
loss and AdamW, see `benches/step.rs`) and then `benches/torch_step.py` (torchvision's
models, torch.optim.AdamW, in its own venv) with the same set-up: 8 locations × 4 views at
112 px, concat head to 55 classes, random inputs, 2 threads, frozen backbone and full
fine-tuning. It prints both times and their ratio (geoexp / PyTorch; the issue's goal is
≤ 1.5) from the fastest single step of each ("best", steadier when other work shares the
cores) and from the means, plus the load average when each measurement started.

    python3 benches/step_vs_torch.py [--models tiny-cnn,resnet18,resnet50,resnext50_32x4d]
        [--modes frozen,full] [--kernels fast|reference] [--steps N] [--warmup N]
        [--threads T] [--size S] [--batch B] [--classes K]

The ViTs run the same way (`--models clip-vit-b32,dinov2-s14`: transformers'
`CLIPVisionModel` / `Dinov2Model` with a linear head over the 4 views' `pooler_output`s, see
`torch_step.py`), at 224 px unless `--size` says otherwise (the CNNs at 112 px).

Only the standard library here; torch_step.py creates its venv on first use.

Measured on the 2-core development machine (AVX-512, quiet; s/step, fastest of 5–8
steps; PyTorch 2.15 CPU, whose own times vary by up to ±40 % from run to run here, so the
ratio column also gives the range over this and three earlier runs of the day):

    model            mode    first   second  now     PyTorch  ratio now (range)
    tiny-cnn         frozen  0.033   0.008   0.008   0.009    0.87 (0.23–0.91)
    tiny-cnn         full    0.128   0.036   0.027   0.024    1.13 (1.11–1.42)
    resnet18         frozen  0.499   0.155   0.135   0.131    1.03 (0.69–1.03)
    resnet18         full    1.658   0.665   0.503   0.412    1.22 (1.22–1.35)
    resnet50         frozen  1.113   0.334   0.299   0.322    0.93 (0.75–0.93)
    resnet50         full    4.259   1.844   1.331   1.107    1.20 (1.20–1.35)
    resnext50_32x4d  frozen  -       -       0.347   0.393    0.88
    resnext50_32x4d  full    -       -       1.650   1.353    1.22

"first" is candle's conv forward with a GEMM backward, fused batch norm and the max-pool
op; "second" adds the im2col + GEMM conv forward and gradients on AVX-512, batch norm
fused with its ReLU, add_relu, the fused Adam, fewer zero-fills and page faults; "now"
adds conv + batch norm as one op (the conv output's gradient skips candle's gradient
store), the max-pool's argmax recorded in the forward, the stride-1 input gradient as the
flipped conv's forward, a vectorised col2im, parallel zero-fills, one-pass batch-norm
statistics and Adam in place. The reference kernels (`--kernels reference`, plain candle
ops) take 0.204 s (tiny-cnn full) and 2.99 s (resnet18 full).
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def results(cmd, env=None):
    """Runs `cmd`, echoing its table, and returns {(model, mode): (mean, best)}."""
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["STEP"] and len(parts) == 5:
            found[(parts[1], parts[2])] = (float(parts[3]), float(parts[4]))
        else:
            print("  " + line, flush=True)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny-cnn,resnet18,resnet50")
    ap.add_argument("--modes", default="frozen,full")
    ap.add_argument("--kernels", default="fast", choices=["fast", "reference"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=None,
                    help="pixels (default 112 for the CNNs, 224 for the ViTs)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--classes", type=int, default=55)
    args = ap.parse_args()

    rows = []
    for model in args.models.split(","):
        vit = model.startswith(("clip-", "dinov2-"))
        size = args.size or (224 if vit else 112)
        env = dict(os.environ,
                   STEP_BACKBONES=model, STEP_MODES=args.modes, STEP_KERNELS=args.kernels,
                   STEP_STEPS=str(args.steps), STEP_WARMUP=str(args.warmup),
                   STEP_SIZE=str(size), STEP_BATCH=str(args.batch),
                   STEP_CLASSES=str(args.classes), RAYON_NUM_THREADS=str(args.threads))
        load_g = os.getloadavg()[0]
        ours = results(["cargo", "bench", "-q", "--bench", "step"], env)
        load_t = os.getloadavg()[0]
        theirs = results([sys.executable, os.path.join(HERE, "torch_step.py"),
                          "--models", model, "--modes", args.modes,
                          "--steps", str(args.steps), "--warmup", str(args.warmup),
                          "--threads", str(args.threads), "--size", str(size),
                          "--batch", str(args.batch), "--classes", str(args.classes)])
        for mode in args.modes.split(","):
            g, t = ours.get((model, mode)), theirs.get((model, mode))
            if g and t:
                rows.append((model, size, mode, g, t, load_g, load_t))

    print()
    print(f"{args.batch} locations × 4 views, {args.classes} classes, "
          f"{args.threads} threads, geoexp kernels: {args.kernels}; s/step as best (mean)")
    head = (f"{'model':<12} {'px':>4} {'mode':<7} {'geoexp':>16} {'PyTorch':>16} "
            f"{'ratio best':>10} {'ratio mean':>10} {'load g/t':>10}")
    print(head)
    print("-" * len(head))
    for model, size, mode, g, t, lg, lt in rows:
        print(f"{model:<12} {size:>4} {mode:<7} {g[1]:>7.3f} ({g[0]:>6.3f}) "
              f"{t[1]:>7.3f} ({t[0]:>6.3f}) "
              f"{g[1] / t[1]:>10.2f} {g[0] / t[0]:>10.2f} {lg:>4.1f}/{lt:<4.1f}")


if __name__ == "__main__":
    main()
