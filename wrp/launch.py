"""Run a training :class:`~wrp.train.Job` in this process, or in N processes under ``torchrun``.

Notebooks never fork inside the kernel: for more than one process ``launch`` starts ``torchrun``
as a subprocess (``--standalone`` on one machine, rendezvous options across machines), streams its
log, and reads the result back from disk.

    python -m wrp.launch JOB_JSON OUT_DIR [--builder NAME=module:function ...]
                                                 # what every torchrun worker executes

A worker resolves the job's builders through :data:`wrp.train.BUILDERS` only; builders registered
in the launching process beyond wrp's own travel on the worker's command line, not in a file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrp.io import atomic_write_json
from wrp.runtime import run_child
from wrp.train import BUILDERS, Job, job_from_file, register_builder, train

_WRP_BUILDERS = dict(BUILDERS)  # wrp's own, as this module first saw them


@dataclass(frozen=True)
class Nodes:
    """The machines of a ``torchrun`` run: ``count`` nodes, this one ``rank`` (0: the first, which
    coordinates), meeting at ``rdzv_endpoint`` ``HOST:PORT`` (on the first node) when ``count`` > 1."""

    count: int = 1
    rank: int = 0
    rdzv_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.rank < self.count:
            raise ValueError(f"node rank {self.rank} of {self.count} nodes: need 0 ≤ rank < nodes")
        if self.count > 1:
            host, _, port = (self.rdzv_endpoint or "").rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"rdzv_endpoint={self.rdzv_endpoint!r}: several nodes meet at HOST:PORT, "
                                 "a free port on the first node (e.g. node0.cluster:29500)")


def torchrun_prefix(nproc: int, nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str | None = None,
                    rdzv_id: str = "wrp") -> list[str]:
    """``torchrun`` with ``nproc`` processes per node on ``nnodes`` nodes, before the module it runs."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        if not rdzv_endpoint:
            raise ValueError("several nodes need rdzv_endpoint='HOST:PORT' of the first node")
        # the first node may still be preparing (e.g. training the models a labelling run needs)
        # when the others arrive: they wait up to an hour for it, not torchrun's minute
        cmd += [f"--nnodes={nnodes}", f"--node_rank={node_rank}", "--rdzv_backend=c10d",
                f"--rdzv_endpoint={rdzv_endpoint}", f"--rdzv_id={rdzv_id}",
                "--rdzv_conf=join_timeout=3600,read_timeout=3600"]
    return cmd


def torchrun_command(job_file: Path, out_dir: Path, nproc: int, nnodes: int = 1, node_rank: int = 0,
                     rdzv_endpoint: str | None = None, rdzv_id: str = "wrp") -> list[str]:
    """The ``torchrun`` command line that trains ``job_file`` into ``out_dir``."""
    cmd = torchrun_prefix(nproc, nnodes, node_rank, rdzv_endpoint, rdzv_id)
    extra = [f"--builder={name}={target}" for name, target in BUILDERS.items()
             if _WRP_BUILDERS.get(name) != target]
    return cmd + ["-m", "wrp.launch", str(job_file), str(out_dir), *extra]


def launch(job: Job, out_dir: str | Path, nproc: int = 1, nnodes: int = 1, node_rank: int = 0,
           rdzv_endpoint: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``job`` into ``out_dir``: in-process for one process, else through ``torchrun``."""
    out = Path(out_dir)
    if nproc < 1 or nnodes < 1:
        raise ValueError(f"nproc={nproc} and nnodes={nnodes} must be ≥ 1")
    if nproc == 1 and nnodes == 1:
        result = train(job, out, progress=progress)
        atomic_write_json(out / "result.json", result)
        return result
    out.mkdir(parents=True, exist_ok=True)
    job_file = atomic_write_json(out / "job.json", job.to_json())
    cmd = torchrun_command(job_file, out, nproc, nnodes, node_rank, rdzv_endpoint)
    print("[wrp] " + " ".join(cmd), flush=True)
    code = run_child(cmd)
    if code != 0:
        raise RuntimeError(f"torchrun exited with {code}; its log is above. A rerun resumes "
                           f"from the last checkpoint in {out}")
    return json.loads((out / "result.json").read_text())


def _worker(job_file: str, out_dir: str) -> None:
    import os

    result = train(job_from_file(job_file), out_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json(Path(out_dir) / "result.json", result)


if __name__ == "__main__":
    args, extra = sys.argv[1:3], sys.argv[3:]
    if len(args) != 2 or not all(e.startswith("--builder=") and "=" in e[10:] for e in extra):
        sys.exit("usage: python -m wrp.launch JOB_JSON OUT_DIR [--builder=NAME=module:function ...]")
    for entry in extra:
        register_builder(*entry[len("--builder="):].split("=", 1))
    _worker(*args)
