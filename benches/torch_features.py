#!/usr/bin/env python3
"""PyTorch feature-extraction throughput on the CPU, the baseline for `benches/features.rs`.

What it measures: images/s of a frozen backbone's forward — `eval()`, `torch.no_grad()`, on
random normalised views `[B, 3, S, S]` — and the copy of its features out to a Python list
of floats (geoexp's features stage copies them out to a `Vec<f32>` the same way), for the
same set-up as geoexp's Rust bench: 64 images per batch (16 locations × 4 views), 224 px,
2 threads (`torch.set_num_threads`), 1 warm-up + 5 timed batches. Backbones are
`benches/torch_step.py`'s: torchvision's `resnet50(weights=None)` with `fc = Identity`
(2048 features) and `transformers`' `CLIPVisionModel(CLIPVisionConfig())` (ViT-B/32,
random init, `pooler_output`, 768 features), and the others geoexp and that file share.

The table gives the mean s/batch and images/s over the timed batches, plus the fastest
single batch ("best"), steadier when something else is using the cores. Each result is
also printed as a line `FEATURES <model> <mean s/batch> <best s/batch>` for
`benches/features_vs_torch.py`.

How to run (from the repository root):

    python3 benches/torch_features.py [--models resnet50,clip-vit-b32] [--size S]
        [--batch IMAGES] [--iters N] [--warmup N] [--threads T]

It runs in the private venv of `benches/torch_venv.py` (created on first use) and never
touches the project's build or tests.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_venv import ensure_venv  # noqa: E402

ensure_venv(__file__)

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
import transformers  # noqa: E402
from torch_step import BACKBONES  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet50,clip-vit-b32")
    ap.add_argument("--size", type=int, default=224, help="pixels")
    ap.add_argument("--batch", type=int, default=64, help="images per batch")
    ap.add_argument("--iters", type=int, default=5, help="timed batches")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, transformers "
          f"{transformers.__version__}, {torch.get_num_threads()} threads (CPU)")
    print(f"{args.batch} images per batch, {args.size} px, {args.warmup} warm-up + "
          f"{args.iters} timed batches")
    print(f"{'model':<16} {'dim':>5} {'s/batch':>10} {'best s/batch':>12} {'images/s':>10} "
          f"{'best img/s':>12}", flush=True)

    x = torch.randn(args.batch, 3, args.size, args.size)
    for name in args.models.split(","):
        net, dim = BACKBONES[name]()
        net.eval()

        def forward():
            with torch.no_grad():
                return net(x).flatten().tolist()

        for _ in range(args.warmup):
            forward()
        times = []
        for _ in range(args.iters):
            t = time.perf_counter()
            values = forward()
            times.append(time.perf_counter() - t)
            assert len(values) == args.batch * dim
        mean = sum(times) / len(times)
        best = min(times)
        print(f"{name:<16} {dim:>5} {mean:>10.3f} {best:>12.3f} {args.batch / mean:>10.2f} "
              f"{args.batch / best:>12.2f}")
        print(f"FEATURES {name} {mean:.4f} {best:.4f}", flush=True)


if __name__ == "__main__":
    main()
