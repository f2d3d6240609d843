"""The ceiling of any label policy on the synthetic world: a Table 1 cell trained with the world's
true labels of the same ±k frames that propagation labels, beside Baseline and warp-refine.

    python benchmarks/true_labels.py --profile demo --seeds 0 1 2 --cell-iters 1000 --cell-crop 128 256

If true labels of the neighbouring frames do not raise validation mIoU over Baseline, no
propagation method can on that world and budget: the extra frames add no information the
segmenter lacks; the printed share of pixels whose true label differs from the labelled frame's
(``wrp.tables.neighbour_change``) says how much there is to add. ``--world-fps 10`` renders a
world whose frames move 3.5× further apart. Cells are cached stages (the Baseline and warp-refine
cells are Table 1's).
Writes ``true_labels.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wrp.cli import add_run_options, table_run
from wrp.io import atomic_write_json
from wrp.metrics import mean_std
from wrp.stages import TRUE_LABELS, train_cell
from wrp.tables import ARCHS, gains_over, gains_report, neighbour_change

COLUMNS = ("baseline", "warp-refine", TRUE_LABELS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", default="MSA-HRNet-OCR", choices=list(ARCHS))
    parser.add_argument("--k", type=int, help="labels of frames within ±k (default: the profile's k)")
    parser.add_argument("--cell-iters", type=int, help="iterations of every cell (default: table_iters)")
    parser.add_argument("--cell-crop", type=int, nargs=2, metavar=("H", "W"), help="crop of every cell")
    parser.add_argument("--world-fps", type=float, metavar="FPS", help="the synthetic world's frame rate")
    add_run_options(parser, seed=False)
    parser.add_argument("--out", default="runs/benchmarks/true_labels")
    args = parser.parse_args()
    try:
        run = table_run(args)
    except ValueError as exc:
        parser.error(str(exc))
    prof = run.profile
    k = args.k or prof.k
    if not 1 <= k <= prof.k:
        parser.error(f"--k {k} must lie in 1..{prof.k}, the {prof.name} profile's propagation range")
    cells = {policy: [train_cell(run.with_seed(seed), ARCHS[args.arch], policy, k)["miou"]
                      for seed in args.seeds] for policy in COLUMNS}
    crop = prof.frame_crop(prof.table_crop)

    world = f" (world at {prof.fps:g} frames/s)" if prof.fps else ""
    print(f"\n{args.arch}, {prof.name} profile{world}, {prof.table_iters} iterations per cell at "
          f"{crop[0]}×{crop[1]}, generated frames within ±{k}: validation mIoU")
    for name, values in cells.items():
        mean, std = mean_std(values)
        print(f"  {name:<12} {mean:6.2f} ± {std:4.2f}  [{', '.join(f'{v:.2f}' for v in values)}]")
    print(gains_report(gains_over(cells, "baseline"), "Baseline", label="  "))
    change = {seed: neighbour_change(run.with_seed(seed)) for seed in args.seeds}
    print("  pixels whose true label differs from the labelled frame's, by distance (%): "
          + "; ".join(f"seed {seed}: " + " / ".join(f"±{d} {v:.1f}" for d, v in c.items())
                      for seed, c in change.items()))
    path = atomic_write_json(Path(args.out) / "true_labels.json", {
        "profile": prof.name, "world_fps": prof.fps, "arch": args.arch, "seeds": args.seeds, "k": k,
        "table_iters": prof.table_iters, "table_crop": list(crop), "cells": cells,
        "neighbour_change": change})
    print(f"→ {path}")


if __name__ == "__main__":
    main()
