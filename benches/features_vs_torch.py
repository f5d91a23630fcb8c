#!/usr/bin/env python3
"""geoexp's feature extraction beside PyTorch's, on this machine, in one run.

For each model it runs `cargo bench --bench features` (the frozen backbone forward of
geoexp's features stage, see `benches/features.rs`) and then `benches/torch_features.py`
(torchvision's ResNets, transformers' CLIP / DINOv2 vision models, in their own venv)
with the same set-up: 64 images per batch (16 locations × 4 views), 224 px, random
inputs, 2 threads on both sides (`RAYON_NUM_THREADS` for geoexp and candle,
`torch.set_num_threads` for PyTorch), 1 warm-up + 5 timed batches. It prints both
throughputs in images/s and their ratio as times, geoexp / PyTorch (above 1: geoexp is
slower), from the fastest single batch of each ("best", steadier when other work shares
the cores) and from the means, plus the load average when each measurement started.

    python3 benches/features_vs_torch.py [--models resnet50,clip-vit-b32] [--size S]
        [--batch IMAGES] [--iters N] [--warmup N] [--threads T] [--kernels fast|reference]

Only the standard library here; torch_features.py creates its venv on first use.
Figures measured with it are in `benches/README.md`.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def results(cmd, env=None):
    """Runs `cmd`, echoing its table, and returns {model: (mean s, best s)} per batch."""
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["FEATURES"] and len(parts) == 4:
            found[parts[1]] = (float(parts[2]), float(parts[3]))
        else:
            print("  " + line, flush=True)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet50,clip-vit-b32")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64, help="images per batch")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kernels", default="fast", choices=["fast", "reference"])
    args = ap.parse_args()

    rows = []
    for model in args.models.split(","):
        env = dict(os.environ,
                   GEOEXP_BENCH_BACKBONES=model, GEOEXP_BENCH_SIZE=str(args.size),
                   GEOEXP_BENCH_BATCH=str(args.batch), GEOEXP_BENCH_ITERS=str(args.iters),
                   GEOEXP_BENCH_WARMUP=str(args.warmup), GEOEXP_BENCH_KERNELS=args.kernels,
                   RAYON_NUM_THREADS=str(args.threads))
        load_g = os.getloadavg()[0]
        ours = results(["cargo", "bench", "-q", "--bench", "features"], env)
        load_t = os.getloadavg()[0]
        theirs = results([sys.executable, os.path.join(HERE, "torch_features.py"),
                          "--models", model, "--size", str(args.size),
                          "--batch", str(args.batch), "--iters", str(args.iters),
                          "--warmup", str(args.warmup), "--threads", str(args.threads)])
        g, t = ours.get(model), theirs.get(model)
        if g and t:
            rows.append((model, g, t, load_g, load_t))

    print()
    print(f"{args.batch} images per batch, {args.size} px, {args.threads} threads, geoexp "
          f"kernels: {args.kernels}; images/s as best (mean); ratio = geoexp time / PyTorch's")
    head = (f"{'model':<16} {'geoexp img/s':>16} {'PyTorch img/s':>16} "
            f"{'ratio best':>10} {'ratio mean':>10} {'load g/t':>10}")
    print(head)
    print("-" * len(head))
    b = args.batch
    for model, g, t, lg, lt in rows:
        print(f"{model:<16} {b / g[1]:>7.1f} ({b / g[0]:>6.1f}) "
              f"{b / t[1]:>7.1f} ({b / t[0]:>6.1f}) "
              f"{g[1] / t[1]:>10.2f} {g[0] / t[0]:>10.2f} {lg:>4.1f}/{lt:<4.1f}")


if __name__ == "__main__":
    main()
