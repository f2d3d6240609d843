"""Propagation of a dataset in N processes under ``torchrun``: the same files as one process.

``wrp propagate --nproc N`` (``wrp.stages.propagate(..., procs=N)``) writes a shard job into its
output folder and starts ``torchrun``; every worker runs this module::

    python -m wrp.shards SHARD_JOB_JSON        # what each torchrun worker executes

**Shards.** One process labels the clips of a split ``batch`` at a time (one ``g_ψ`` / Ω forward
per step for the batch). Here those same batches — ``clips[0:batch]``, ``clips[batch:2·batch]``, … —
are dealt to the ranks in turn (batch ``i`` to rank ``i mod N``), so every batch is computed exactly
as one process computes it and the label files are byte-identical whatever N is. Ranks write
disjoint files (a clip belongs to one batch), each atomically.

**Resume.** A frame whose label file exists is read back instead of recomputed
(:func:`wrp.policies.propagate_clips`), so a run whose rank was killed ends, when started again,
with the same files. Each rank records what it did in ``shards/<policy>/rank<r>.json`` (beside the
job, ``shards/<policy>.json``); the
launching process merges the speeds and scores the labels once all ranks are done.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from wrp.data import Manifest
from wrp.io import atomic_write_json
from wrp.policies import propagate_clips
from wrp.runtime import resolve_device
from wrp.stages import propagator_for


def batches_of(count: int, batch: int, rank: int, world: int) -> list[range]:
    """The clip index ranges rank ``rank`` of ``world`` labels: the one-process run's batches
    ``[i·batch, (i+1)·batch)`` for every ``i ≡ rank (mod world)``."""
    starts = range(0, count, batch)
    return [range(s, min(s + batch, count)) for i, s in enumerate(starts) if i % world == rank]


def run_shard(job: dict[str, Any], rank: int, world: int, local_rank: int = 0) -> dict[str, Any]:
    """Label this rank's batches of the job's clips with the job's policy; returns what it did."""
    device = resolve_device(job["device"])
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
    clips = Manifest.load(job["manifest"]).clips(job["split"])
    propagator = propagator_for(Path(job["segmenter"]) if job["segmenter"] else None,
                                Path(job["denoiser"]) if job["denoiser"] else None, job["flow"], device,
                                job["inpaint"])
    done = {"frames": 0, "skipped": 0, "seconds": 0.0, "rank": rank, "world": world}
    tic = time.perf_counter()
    for indices in batches_of(len(clips), job["batch"], rank, world):
        result = propagate_clips([clips[i] for i in indices], job["policy"], job["labels"], propagator,
                                 job["k"], job["batch"], job["confidence"], progress=False)
        done["frames"] += result["frames"]
        done["skipped"] += result["skipped"]
    done["seconds"] = round(time.perf_counter() - tic, 3)
    return done


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m wrp.shards SHARD_JOB_JSON")
    job_file = Path(sys.argv[1])
    job = json.loads(job_file.read_text())
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    report = run_shard(job, rank, world, int(os.environ.get("LOCAL_RANK", "0")))
    atomic_write_json(job_file.parent / job["policy"] / f"rank{rank}.json", report)  # beside the job
