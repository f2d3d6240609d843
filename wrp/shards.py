"""Propagation of a dataset in N processes, on one machine or several, under ``torchrun``: the same
files as one process.

``wrp propagate --nproc N`` (``wrp.stages.propagate(..., procs=N)``) writes a shard job into its
output folder and starts ``torchrun``; every worker runs this module::

    python -m wrp.shards SHARD_JOB_JSON        # what each torchrun worker of the first node runs
    python -m wrp.shards                       # ... of every other node (``--node-rank`` ≥ 1)

**Shards.** One process labels the clips of a split ``batch`` at a time (one ``g_ψ`` / Ω forward
per step for the batch). Here those same batches — ``clips[0:batch]``, ``clips[batch:2·batch]``, … —
are dealt to the ranks in turn (batch ``i`` to rank ``i mod N``), so every batch is computed exactly
as one process computes it and the label files are byte-identical whatever N is. Ranks write
disjoint files (a clip belongs to one batch), each atomically.

**Several nodes.** Only the first node's launcher resolves the models and writes the job; its
workers hand it to every rank over the process group (gloo), so the other nodes' commands need no
options but the rendezvous. Every path in the job — the manifest, the models, the labels and the
reports — must resolve on every node: shared storage (a shared ``WRP_RUNS`` and ``--out``). Every
rank waits for the others before it exits, so when the first node's ``torchrun`` returns, every
shard is written.

**Resume.** A frame whose label file exists is read back instead of recomputed
(:func:`wrp.policies.propagate_clips`), so a run whose rank was killed ends, when started again,
with the same files. Each rank records what it did per policy in
``<reports>/<policy>/rank<r>.json``; the launching process merges the speeds and scores the labels
once all ranks are done.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from wrp.data import Manifest
from wrp.io import atomic_write_json
from wrp.policies import propagate_clips
from wrp.runtime import resolve_device
from wrp.stages import propagator_for


def groups_of(count: int, batch: int, rank: int, world: int) -> list[int]:
    """The batches of clips rank ``rank`` of ``world`` labels: the one-process run's batches
    ``[i·batch, (i+1)·batch)`` of ``count`` clips for every ``i ≡ rank (mod world)``."""
    return list(range(rank, -(-count // batch), world))


def run_shard(job: dict[str, Any], rank: int, world: int, local_rank: int = 0) -> None:
    """Label this rank's batches of the job's clips with each of the job's policies, recording
    per policy what it did (frames written and found, seconds, stages)."""
    device = resolve_device(job["device"])
    if device.startswith("cuda"):
        import torch

        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    clips = Manifest.load(job["manifest"]).clips(job["split"])
    propagator = propagator_for(Path(job["segmenter"]) if job["segmenter"] else None,
                                Path(job["denoiser"]) if job["denoiser"] else None, job["flow"], device,
                                job["inpaint"])
    groups = groups_of(len(clips), job["batch"], rank, world)
    for policy in job["policies"]:
        result = propagate_clips(clips, policy, job["labels"], propagator, job["k"], job["batch"],
                                 job["confidence"], progress=False, workers=job["workers"], groups=groups)
        atomic_write_json(Path(job["reports"]) / policy / f"rank{rank}.json",
                          {**result, "rank": rank, "world": world})


def _shared_job(path: str | None) -> dict[str, Any]:
    """The job, from the file of whichever rank was given one (the first node's), to every rank."""
    import torch.distributed as dist

    job = json.loads(Path(path).read_text()) if path else None
    holders: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(holders, job is not None)
    if not any(holders):
        raise SystemExit("no rank was given the shard job: start the first node (--node-rank 0) with "
                         "the full wrp propagate command")
    box = [job]
    dist.broadcast_object_list(box, src=holders.index(True))
    return box[0]


def main(argv: list[str]) -> None:
    import torch.distributed as dist

    if len(argv) > 1:
        sys.exit("usage: python -m wrp.shards [SHARD_JOB_JSON]")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    # control only — the job out, the end in; labels go to files. A rank may wait long for the
    # slowest shard at the end: the timeout is a day, not the default half hour
    dist.init_process_group("gloo", timeout=timedelta(days=1))
    try:
        run_shard(_shared_job(argv[0] if argv else None), rank, world, int(os.environ.get("LOCAL_RANK", "0")))
        dist.barrier()  # the first node's torchrun returns once every rank has written its shard
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
