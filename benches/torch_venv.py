"""The private venv the PyTorch comparison benchmarks run in (never the tests' Python).

`ensure_venv(script)` creates `~/.cache/geoexp-torch-venv` and installs torch, torchvision,
transformers, Pillow and numpy from PyPI once (the CUDA build, ~3 GB; it runs on the CPU),
then re-executes `script` inside it. The marker file `.geoexp-ready` lists what was
installed; a venv made before a package joined `PACKAGES` gets just the missing ones.
`GEOEXP_TORCH_SYSTEM=1` skips all that and uses the running Python's own torch (a lent GPU
machine has PyTorch but no network: `scripts/gpu-check.sh`).
"""

import os
import sys

VENV = os.path.join(os.path.expanduser("~"), ".cache", "geoexp-torch-venv")
PACKAGES = ["torch", "torchvision", "transformers", "pillow", "numpy"]


def _installed(marker):
    """The packages the marker lists (an empty marker: the first `PACKAGES`, which had no
    list), or None when there is no marker."""
    try:
        with open(marker) as f:
            listed = f.read().split()
    except FileNotFoundError:
        return None
    return listed or ["torch", "torchvision", "pillow", "numpy"]


def ensure_venv(script):
    """Create the private venv and install the packages once, then re-exec inside it."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if os.environ.get("GEOEXP_TORCH_SYSTEM") == "1":
        return
    import fcntl
    import subprocess

    python = os.path.join(VENV, "bin", "python")
    marker = os.path.join(VENV, ".geoexp-ready")
    os.makedirs(os.path.dirname(VENV), exist_ok=True)
    with open(VENV + ".lock", "w") as lock:  # serialise concurrent first runs
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = _installed(marker)
        missing = [p for p in PACKAGES if p not in (installed or [])]
        if missing:
            if installed is None:
                if not os.path.exists(python):
                    print(f"creating venv {VENV}", file=sys.stderr, flush=True)
                    subprocess.check_call([sys.executable, "-m", "venv", VENV])
                subprocess.check_call(
                    [python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
            print(
                f"installing {' '.join(missing)} into {VENV} (PyPI; torch is ~3 GB)",
                file=sys.stderr,
                flush=True,
            )
            subprocess.check_call([python, "-m", "pip", "install", "-q", *missing])
            with open(marker, "w") as f:
                f.write("\n".join(PACKAGES) + "\n")
    os.execv(python, [python, os.path.abspath(script), *sys.argv[1:]])
