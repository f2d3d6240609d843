"""The ceiling of any label policy on the synthetic world: a Table 1 cell trained with the world's
true labels of the same ±k frames that propagation labels, beside Baseline and warp-refine.

    python benchmarks/true_labels.py --profile demo --seeds 0 1 2 --cell-iters 1000 --cell-crop 128 256

If true labels of the neighbouring frames do not raise validation mIoU over Baseline, no
propagation method can on that world and budget: the extra frames add no information the
segmenter lacks. Cells are cached stages (the Baseline and warp-refine cells are Table 1's).
Writes ``true_labels.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wrp.experiments import train_segmenter
from wrp.io import atomic_write_json
from wrp.profiles import get_profile
from wrp.tables import ARCHS, generated_pairs, mean_std, train_cell


def true_label_pairs(pairs: list[list[str]]) -> list[list[str]]:
    """(image, label) pairs of a policy with each label replaced by the world's true label file."""
    out = []
    for image, label in pairs:
        world = Path(image).parents[3]  # <world>/leftImg8bit_sequence/<split>/<city>/<file>
        truth = world / "gtFine" / Path(label).relative_to(Path(label).parents[2])
        if not truth.is_file():
            raise FileNotFoundError(f"{truth}: no true label for {image}; true labels exist only for "
                                    "the synthetic world (dataset 'synthetic')")
        out.append([image, str(truth)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", default="MSA-HRNet-OCR", choices=list(ARCHS))
    parser.add_argument("--k", type=int, help="true labels of frames within ±k (default: the profile's k)")
    parser.add_argument("--cell-iters", type=int, help="default: the profile's table_iters")
    parser.add_argument("--cell-crop", type=int, nargs=2, metavar=("H", "W"),
                        help="default: the profile's table_crop")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/benchmarks/true_labels")
    args = parser.parse_args()
    overrides = {**({"table_iters": args.cell_iters} if args.cell_iters else {}),
                 **({"table_crop": tuple(args.cell_crop)} if args.cell_crop else {})}
    prof = get_profile(args.profile, **overrides)
    if prof.dataset != "synthetic":
        parser.error(f"the {prof.name} profile reads {prof.dataset}: true labels of every frame exist "
                     "only for the synthetic world")
    k = args.k or prof.k
    arch = ARCHS[args.arch]
    cells: dict[str, list[float]] = {"baseline": [], "warp-refine": [], "true labels": []}
    for seed in args.seeds:
        cells["baseline"].append(train_cell(prof, seed, arch, None, device=args.device)["miou"])
        cells["warp-refine"].append(
            train_cell(prof, seed, arch, "warp-refine", k, device=args.device)["miou"])
        pairs = true_label_pairs(generated_pairs(prof, seed, "warp-refine", k, device=args.device))
        folder = train_segmenter(prof, seed, arch, device=args.device, generated=pairs, loss="ce",
                                 crop=list(prof.cell_crop), iters=prof.cell_iters)
        cells["true labels"].append(json.loads((folder / "metrics.json").read_text())["miou"])

    print(f"\n{args.arch}, {prof.name} profile, {prof.cell_iters} iterations per cell at "
          f"{prof.cell_crop[0]}×{prof.cell_crop[1]}, generated frames within ±{k}: validation mIoU")
    for name, values in cells.items():
        mean, std = mean_std(values)
        gains = "" if name == "baseline" else "  gain per seed " + " / ".join(
            f"{v - b:+.2f}" for v, b in zip(values, cells["baseline"], strict=True))
        print(f"  {name:<12} {mean:6.2f} ± {std:4.2f}  [{', '.join(f'{v:.2f}' for v in values)}]{gains}")
    path = atomic_write_json(Path(args.out) / "true_labels.json", {
        "profile": prof.name, "arch": args.arch, "seeds": args.seeds, "k": k,
        "cell_iters": prof.cell_iters, "cell_crop": list(prof.cell_crop), "cells": cells})
    print(f"→ {path}")


if __name__ == "__main__":
    main()
