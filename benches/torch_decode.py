#!/usr/bin/env python3
"""PyTorch DataLoader decode baseline, to compare with `benches/decode.rs`.

What it measures: images/s of a plain `torch.utils.data.DataLoader` that reads 640×640
quality-90 JPEG views and turns them into 112-px tensors the usual torchvision way:
`PIL.Image.open(p).convert("RGB")` → `Compose([Resize(112), CenterCrop(112), ToTensor()])`,
batch_size 32, with num_workers 0 and 2 (best of 3 passes after one warm-up pass, so the
files are in the page cache).

The N (default 200, `--views`) synthetic views are street-view-ish pictures like the ones
`benches/decode.rs` writes (sky gradient with cloud texture, rectangular "buildings" with
window grids and textured walls, textured ground, ±3 levels of per-pixel noise; ~100 KiB
each), generated with PIL + numpy into `--dir` (default: a folder in the system temp dir,
reused between runs if it already holds the files).

How to run (from the repository root):

    python3 benches/torch_decode.py [--views N] [--repeats R] [--dir PATH]

It installs torch + torchvision into its OWN virtual environment at
`$HOME/.cache/geoexp-torch-venv` (shared with `benches/torch_step.py`; PyPI's torch is the
CUDA build, ~3 GB, and runs fine on the CPU) and re-executes itself with that environment's
python. It never installs into the system Python, and it is not part of, and never
touches, the project's build or tests.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_venv import ensure_venv  # noqa: E402

ensure_venv(__file__)

import argparse  # noqa: E402
import glob  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

SOURCE = 640
SIDE = 112


def value_noise(rng):
    """Smooth texture in 0..1: octaves of bilinearly interpolated random grids (64/16/4 px)."""
    out = np.zeros((SOURCE, SOURCE), np.float32)
    coords = np.arange(SOURCE)
    for cell, weight in ((64, 0.5), (16, 0.3), (4, 0.2)):
        n = SOURCE // cell + 2
        grid = rng.random((n, n), dtype=np.float32)
        g = coords // cell
        f = (coords % cell).astype(np.float32) / cell
        gy, gx = g[:, None], g[None, :]
        fy, fx = f[:, None], f[None, :]
        top = grid[gy, gx] * (1 - fx) + grid[gy, gx + 1] * fx
        bottom = grid[gy + 1, gx] * (1 - fx) + grid[gy + 1, gx + 1] * fx
        out += (top * (1 - fy) + bottom * fy) * weight
    return out


def synthetic(seed, noise=3):
    """A street-view-ish 640×640 RGB picture, varying with `seed` (cf. decode.rs)."""
    rng = np.random.default_rng(seed)
    horizon = int(rng.integers(200, 400))
    tint = rng.random(3, dtype=np.float32)
    t = value_noise(rng)
    fy = (np.arange(SOURCE, dtype=np.float32) / SOURCE)[:, None]
    img = np.empty((SOURCE, SOURCE, 3), np.float32)
    cloud = 60.0 * t
    img[..., 0] = (90 + 80 * fy) * (0.7 + 0.3 * tint[0]) + cloud
    img[..., 1] = (140 + 60 * fy) * (0.7 + 0.3 * tint[1]) + cloud
    img[..., 2] = 230 - 40 * fy + cloud * 0.3
    ground = 120.0 * t[horizon:]
    img[horizon:, :, 0] = 40 + ground + 60 * tint[0]
    img[horizon:, :, 1] = 40 + ground + 40 * tint[1]
    img[horizon:, :, 2] = 30 + ground
    for _ in range(12):
        x0 = int(rng.integers(0, SOURCE))
        w = int(rng.integers(30, 160))
        top = int(rng.integers(60, horizon))
        colour = rng.integers(0, 256, 3).astype(np.float32)
        x1 = min(x0 + w, SOURCE)
        ys = np.arange(top, horizon)[:, None]
        xs = np.arange(x0, x1)[None, :]
        window = ((xs - x0) % 14 < 7) & ((ys - top) % 18 < 9)
        k = np.where(window, 0.5, 0.7 + 0.6 * t[top:horizon, x0:x1])
        img[top:horizon, x0:x1] = colour * k[..., None]
    if noise > 0:
        img += rng.integers(-noise, noise + 1, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def write_views(folder, n):
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"{k}.jpg") for k in range(n)]
    missing = [(k, p) for k, p in enumerate(paths) if not os.path.exists(p)]
    t = time.perf_counter()
    for k, p in missing:
        synthetic(k).save(p + ".tmp", "JPEG", quality=90)
        os.replace(p + ".tmp", p)
    size = sum(os.path.getsize(p) for p in paths) / n / 1024
    verb = f"wrote {len(missing)} of" if missing else "reused"
    print(f"{verb} {n} synthetic {SOURCE}×{SOURCE} q90 JPEGs in {folder} "
          f"({size:.0f} KiB each) in {time.perf_counter() - t:.1f} s")
    return paths


class Views(Dataset):
    def __init__(self, paths):
        self.paths = paths
        self.tf = transforms.Compose(
            [transforms.Resize(SIDE), transforms.CenterCrop(SIDE), transforms.ToTensor()]
        )

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.tf(Image.open(self.paths[i]).convert("RGB"))


def time_loader(paths, workers, repeats):
    loader = DataLoader(Views(paths), batch_size=32, shuffle=False, num_workers=workers)
    best = float("inf")
    for r in range(repeats + 1):  # pass 0 is the warm-up
        t = time.perf_counter()
        count = 0
        for batch in loader:
            count += batch.shape[0]
        d = time.perf_counter() - t
        assert count == len(paths)
        if r > 0:
            best = min(best, d)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--views", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "geoexp-torch-decode"))
    args = ap.parse_args()

    import PIL

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"Pillow {PIL.__version__}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}")
    paths = write_views(args.dir, args.views)
    print(f"\nDataLoader, {args.views} views, {SOURCE} px → Resize({SIDE}) + "
          f"CenterCrop({SIDE}) + ToTensor, batch 32, best of {args.repeats} (after a warm-up)")
    print(f"{'':<16} {'seconds':>10} {'images/s':>10}")
    for workers in (0, 2):
        d = time_loader(paths, workers, args.repeats)
        print(f"{f'num_workers={workers}':<16} {d:>10.3f} {args.views / d:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
