"""The private venv the PyTorch comparison benchmarks run in (never the tests' Python).

`ensure_venv(script)` creates `~/.cache/geoexp-torch-venv` and installs torch, torchvision,
Pillow and numpy from PyPI once (the CUDA build, ~3 GB; it runs on the CPU), then re-executes
`script` inside it.
"""

import os
import sys

VENV = os.path.join(os.path.expanduser("~"), ".cache", "geoexp-torch-venv")
PACKAGES = ["torch", "torchvision", "pillow", "numpy"]


def ensure_venv(script):
    """Create the private venv and install the packages once, then re-exec inside it."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    import fcntl
    import subprocess

    python = os.path.join(VENV, "bin", "python")
    marker = os.path.join(VENV, ".geoexp-ready")
    os.makedirs(os.path.dirname(VENV), exist_ok=True)
    with open(VENV + ".lock", "w") as lock:  # serialise concurrent first runs
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(marker):
            if not os.path.exists(python):
                print(f"creating venv {VENV}", file=sys.stderr, flush=True)
                subprocess.check_call([sys.executable, "-m", "venv", VENV])
            print(
                f"installing {' '.join(PACKAGES)} into {VENV} (PyPI, ~3 GB, takes a while)",
                file=sys.stderr,
                flush=True,
            )
            subprocess.check_call([python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
            subprocess.check_call([python, "-m", "pip", "install", "-q", *PACKAGES])
            open(marker, "w").close()
    os.execv(python, [python, os.path.abspath(script), *sys.argv[1:]])


