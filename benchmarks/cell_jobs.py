"""How fast a table's cells train one after another and side by side (``wrp table1 --jobs``).

    python benchmarks/cell_jobs.py --profile table --cell-iters 100 --cells 4 --jobs 1 --jobs 2

Trains ``--cells`` Baseline cells of the table's world at the profile's table budget (``--cell-iters``
shortens them: a cell's speed does not depend on how long it runs) with each ``--jobs`` value, and
times the whole batch: the wall time, the images per second of all cells together, and each
setting's speed-up over the first. Every measurement trains cells of its own training seeds, so none
is read back from the cache; the world is rendered once, before the first. ``--repeats`` gives
medians. Prints the table and writes ``<out>/cell_jobs.{json,md}`` (default ``--out``:
``figures/benchmarks``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from wrp.cli import add_run_options, add_table_options, table_run
from wrp.io import atomic_write_json, atomic_write_text
from wrp.paper import ARCHS
from wrp.runtime import usable_cores
from wrp.stages import manifest_for
from wrp.tables import train_cells


def time_cells(world, cells: int, jobs: int, first_seed: int) -> dict[str, Any]:
    """Wall seconds and images/s of ``cells`` Baseline cells on the run ``world`` (training seeds
    from ``first_seed``) trained ``jobs`` at a time."""
    specs = [{"run": world, "arch": ARCHS["DeepLabV3"], "policy": "baseline",
              "train_seed": first_seed + i} for i in range(cells)]
    started = time.perf_counter()
    train_cells(specs, jobs, f"{jobs} at a time")
    seconds = time.perf_counter() - started
    images = cells * world.profile.table_iters * world.profile.batch_size
    return {"seconds": round(seconds, 1), "images_per_s": round(images / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_table_options(parser)
    add_run_options(parser, seed=False)
    parser.add_argument("--cells", type=int, default=4, help="cells per measurement (default 4)")
    parser.add_argument("--jobs", type=int, action="append", dest="jobs_values",
                        help="cells trained at once (repeatable; default: 1 and the cores)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="figures/benchmarks")
    args = parser.parse_args()
    run = table_run(argparse.Namespace(**{**vars(args), "eval_frames": "labelled", "score_world": "none"}))
    cores = usable_cores()
    jobs_values = args.jobs_values or sorted({1, cores})
    world = run.with_seed(run.profile.table_world_seed or 0)
    manifest_for(world)  # the world, rendered before any timing
    rows, seed = [], 10_000
    for jobs in jobs_values:
        times = []
        for _ in range(args.repeats):
            times.append(time_cells(world, args.cells, jobs, seed))
            seed += args.cells
        rows.append({"jobs": jobs, "threads_per_cell": max(1, cores // jobs),
                     "seconds": statistics.median(t["seconds"] for t in times),
                     "images_per_s": statistics.median(t["images_per_s"] for t in times),
                     "runs": times})
    for row in rows:
        row["speedup"] = round(row["images_per_s"] / rows[0]["images_per_s"], 2)
    prof = run.profile
    height, width = prof.frame_crop(prof.table_crop)
    lines = [f"# Table cells one after another and side by side ({prof.name} profile, {cores} cores)",
             "", f"{args.cells} Baseline cells of DeepLabV3, {prof.table_iters} iterations of batch "
             f"{prof.batch_size} at {height}×{width} (each cell's wall time includes starting its process "
             f"and scoring its validation frames), median of {args.repeats} in one run.", "",
             "| cells at once | threads per cell | wall (s) | images/s, all cells | speed-up |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['jobs']} | {r['threads_per_cell']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | "
              f"{r['speedup']:.2f}× |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    atomic_write_text(out / "cell_jobs.md", text)
    atomic_write_json(out / "cell_jobs.json", {
        "profile": prof.name, "cores": cores, "cells": args.cells, "repeats": args.repeats,
        "table_iters": prof.table_iters, "batch": prof.batch_size, "crop": [height, width], "rows": rows})
    print(f"→ {out / 'cell_jobs.md'}, {out / 'cell_jobs.json'}")


if __name__ == "__main__":
    main()
