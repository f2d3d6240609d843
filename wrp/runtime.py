"""Where things live on disk, which device to run on, and seeding.

Every stage and notebook resolves paths through these functions, so a notebook opened in
JupyterLab (kernel started in ``notebooks/``), a papermill run from the repository root and a test
in a temporary folder all agree on where ``runs/`` and ``figures/`` are.

- ``WRP_HOME`` overrides the project root (default: the nearest folder above the working directory
  that holds both ``wrp/`` and ``notebooks/``; else the working directory).
- ``WRP_RUNS`` overrides the artefact folder (default ``<root>/runs``).
- ``WRP_HEADLESS=1`` (set by ``wrp reproduce`` for the notebooks it runs) turns progress bars
  into a plain line every 30 s, which ``wrp reproduce`` streams to its terminal.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np


def project_root() -> Path:
    """The repository root: ``$WRP_HOME``, else the nearest ancestor holding ``wrp/`` and ``notebooks/``."""
    if env := os.environ.get("WRP_HOME"):
        return Path(env).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "wrp").is_dir() and (folder / "notebooks").is_dir():
            return folder
    package_parent = Path(__file__).resolve().parent.parent  # an editable install
    if (package_parent / "notebooks").is_dir():
        return package_parent
    return here


def runs_dir() -> Path:
    """Root of every artefact a run writes (stages, executed notebooks, metrics)."""
    if env := os.environ.get("WRP_RUNS"):
        return Path(env).expanduser().resolve()
    return project_root() / "runs"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from one integer."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def torch_threads() -> int | None:
    """The threads torch computes with in this process (``torch.get_num_threads()``), or None when
    torch is not loaded. On the CPU a training's numbers depend on it: the same seed gives the same
    numbers only at the same thread count (``OMP_NUM_THREADS``), so every stage records it."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; anything else is checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was asked for but torch sees no CUDA device; "
            "use device='cpu' or device='auto'"
        )
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device={device!r} is not understood; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """``tqdm`` for long work: a live bar in a terminal or JupyterLab; in a headless notebook run
    (``WRP_HEADLESS=1``) a plain text bar on stdout updated at most every 30 s, so the cell's
    output — which ``wrp reproduce`` streams — shows how far training or propagation has got."""
    if os.environ.get("WRP_HEADLESS") == "1":
        from tqdm.std import tqdm

        kwargs.setdefault("mininterval", 30.0)
        kwargs.setdefault("file", sys.stdout)
        kwargs.setdefault("ascii", True)
        kwargs.pop("dynamic_ncols", None)
        return tqdm(iterable, ncols=100, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


# Run by a child before it becomes ``cmd``: ask the kernel for SIGTERM when the parent dies (Linux;
# it survives the exec), and stop at once if the parent is already gone.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(143)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def run_child(cmd: list[str], **kwargs: Any) -> int:
    """Run ``cmd`` to completion and return its exit code; the child (``torchrun``, the world's
    renderer) is told to stop when this process dies, however it dies (on Linux through the
    parent-death signal), so a killed run leaves no orphaned workers writing into its stage."""
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd], **kwargs)
    try:
        return child.wait()
    except BaseException:  # KeyboardInterrupt, SystemExit: stop the child before going
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        raise
