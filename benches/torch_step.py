#!/usr/bin/env python3
"""PyTorch training-step throughput on the CPU, the baseline for `benches/step.rs`.

What it measures: seconds per optimiser step and locations/s (one location = 4 views) for
the same set-up as geoexp's Rust bench: batch 8 locations × 4 views at 112 px, 55 classes,
random inputs, 2 threads (`torch.set_num_threads(2)`), for these backbones:

* `tiny-cnn`: 4 × [Conv2d 3×3 stride 2 padding 1 (no bias) + BatchNorm2d + ReLU],
  channels 3→16→32→64→128, then global average pool → 128 features (replica of geoexp's);
* `resnet18`, `resnet50`, `resnext50_32x4d`: torchvision's `(weights=None)` with
  `fc = Identity` → 512 / 2048 / 2048 features;
* the ViTs of geoexp's `vocab::BACKBONES` (`clip-vit-b32`, `-b16`, `-l14`, `-l14-336`,
  `dinov2-s14`, `-b14`): `transformers`' `CLIPVisionModel` / `Dinov2Model`, randomly
  initialised from a config of the same shape (`CLIPVisionConfig()`'s defaults are ViT-B/32),
  their `pooler_output` (the final LayerNorm of the class token, geoexp's default `cls`
  pooling) → 768 / 768 / 1024 / 1024 / 384 / 768 features; transformers' default attention
  (SDPA). ViTs default to 224 px (`--size` must be a multiple of the patch).

The wrapper runs the backbone on all 4 views as one batch ([B,4,3,S,S] → [4B,3,S,S]),
concatenates the features per location ([B, 4·D]), applies a Linear head to 55 classes,
cross entropy, AdamW (lr 1e-3). Two modes:

* `frozen`: backbone in eval() under `torch.no_grad()`, only the head in the optimiser;
* `full`: everything in train(), all parameters in the optimiser.

Warm-up 3 steps, then `--steps` timed steps (default 10). The table gives the mean s/step and
locations/s over the timed steps, plus the fastest single step ("best"), which is steadier
when something else is using the cores. Each result is also printed as a line
`STEP <model> <mode> <mean s> <best s>` for `benches/step_vs_torch.py`.

How to run (from the repository root):

    python3 benches/torch_step.py [--steps N] [--batch B] [--size S] [--threads T]
                                  [--models tiny-cnn,resnet18,resnet50]
                                  [--modes frozen,full] [--classes K]

It installs torch + torchvision + transformers into its OWN virtual environment at
`$HOME/.cache/geoexp-torch-venv` (created on first run; PyPI's torch is the CUDA build,
~3 GB with the nvidia-* wheels, and runs fine on the CPU) and re-executes itself with that
environment's python. It never installs into the system Python, and it is not part of, and
never touches, the project's build or tests (`cargo test` does not see it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_venv import ensure_venv  # noqa: E402

ensure_venv(__file__)

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402

CLASSES = 55
VIEWS = 4


def tiny_cnn():
    layers = []
    chans = [3, 16, 32, 64, 128]
    for cin, cout in zip(chans, chans[1:]):
        layers += [
            nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), 128


def resnet18():
    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Identity()
    return net, 512


def resnet50():
    net = torchvision.models.resnet50(weights=None)
    net.fc = nn.Identity()
    return net, 2048


def resnext50_32x4d():
    net = torchvision.models.resnext50_32x4d(weights=None)
    net.fc = nn.Identity()
    return net, 2048


class Pooled(nn.Module):
    """A transformers vision model → its `pooler_output` `[N, hidden]`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(pixel_values=x).pooler_output


def clip(hidden, layers, heads, patch, image):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=hidden, intermediate_size=4 * hidden,
                              num_hidden_layers=layers, num_attention_heads=heads,
                              patch_size=patch, image_size=image)
    return lambda: (Pooled(CLIPVisionModel(config)), hidden)


def dinov2(hidden, heads):
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=hidden, num_hidden_layers=12, num_attention_heads=heads,
                          mlp_ratio=4, patch_size=14, image_size=518)
    return lambda: (Pooled(Dinov2Model(config)), hidden)


BACKBONES = {
    "tiny-cnn": tiny_cnn,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnext50_32x4d": resnext50_32x4d,
    # geoexp's `vocab::BACKBONES` shapes; `CLIPVisionConfig()`'s defaults are clip-vit-b32's.
    "clip-vit-b32": clip(768, 12, 12, 32, 224),
    "clip-vit-b16": clip(768, 12, 12, 16, 224),
    "clip-vit-l14": clip(1024, 24, 16, 14, 224),
    "clip-vit-l14-336": clip(1024, 24, 16, 14, 336),
    "dinov2-s14": dinov2(384, 6),
    "dinov2-b14": dinov2(768, 12),
}


def is_vit(name):
    return name.startswith(("clip-", "dinov2-"))


def default_size(name):
    """geoexp's step bench's default: 112 px for the CNNs, 224 for the ViTs."""
    return 224 if is_vit(name) else 112


class GeoNet(nn.Module):
    def __init__(self, backbone, dim, classes):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(VIEWS * dim, classes)

    def forward(self, x, frozen):
        b, v = x.shape[:2]
        flat = x.reshape(b * v, *x.shape[2:])
        if frozen:
            with torch.no_grad():
                feats = self.backbone(flat)
        else:
            feats = self.backbone(flat)
        return self.head(feats.reshape(b, -1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="locations per step")
    ap.add_argument("--size", type=int, default=None,
                    help="pixels (default 112 for the CNNs, 224 for the ViTs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="tiny-cnn,resnet18")
    ap.add_argument("--modes", default="frozen,full")
    ap.add_argument("--classes", type=int, default=CLASSES)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (scripts/gpu-check.sh)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    where = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
             else f"{torch.get_num_threads()} threads (CPU)")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {where}")
    print(f"batch {args.batch} locations × {VIEWS} views, {args.classes} classes, "
          f"{args.warmup} warmup + {args.steps} timed steps")
    # s/step and locations/s are means over the timed steps; the "best" columns use the
    # fastest single step, which is steadier when other work shares the cores.
    print(f"{'model':<12} {'px':>4} {'mode':<10} {'s/step':>10} {'locations/s':>12} "
          f"{'best s/step':>12} {'best loc/s':>14}", flush=True)

    y = (torch.arange(args.batch) % args.classes).to(dev)
    loss_fn = nn.CrossEntropyLoss()
    for name in args.models.split(","):
        size = args.size or default_size(name)
        x = torch.randn(args.batch, VIEWS, 3, size, size).to(dev)
        for mode in args.modes.split(","):
            backbone, dim = BACKBONES[name]()
            net = GeoNet(backbone, dim, args.classes).to(dev)
            frozen = mode == "frozen"
            net.train()
            if frozen:
                net.backbone.eval()
                params = list(net.head.parameters())
            else:
                params = list(net.parameters())
            opt = torch.optim.AdamW(params, lr=1e-3)

            def step():
                opt.zero_grad(set_to_none=True)
                logits = net(x, frozen)
                logits.argmax(1).tolist()  # geoexp's step reads the accuracy's argmax
                loss = loss_fn(logits, y)
                loss.backward()
                opt.step()
                return loss.item()  # and the loss, which waits for the step to finish

            for _ in range(args.warmup):
                step()
            times = []
            for _ in range(args.steps):
                t = time.perf_counter()
                step()
                times.append(time.perf_counter() - t)
            per_step = sum(times) / len(times)
            best = min(times)
            print(f"{name:<12} {size:>4} {mode:<10} {per_step:>10.3f} "
                  f"{args.batch / per_step:>12.2f} "
                  f"{best:>12.3f} {args.batch / best:>14.2f}")
            print(f"STEP {name} {mode} {per_step:.4f} {best:.4f}", flush=True)


if __name__ == "__main__":
    main()
