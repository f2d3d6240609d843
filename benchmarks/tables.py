"""Tables 1 and 2 over several seeds, with the quality checks of the paper's pattern.

    python benchmarks/tables.py --profile demo --seeds 0 1 2 --out runs/benchmarks

Trains (or reuses — every cell is a cached stage) the Table 1 cells of the profile's table
architectures (or ``--arch``) and the Table 2 rows for each seed, then prints both tables (mean ±
std over seeds, every seed's value, seconds per cell) and checks the paper's pattern:

- warp-refine labels raise validation mIoU over Baseline by ≥ 1.5, and by more than 2 × the larger
  std of the two cells;
- motion-only labels stay within ±1 of Baseline.

Writes ``tables.json`` and ``table1.md`` / ``table2.md`` into ``--out``. ``--cell-iters`` trains
every cell longer or shorter than the profile says, ``--policy`` picks Table 1's columns: how the
gaps move with the training budget, e.g.

    python benchmarks/tables.py --seeds 0 1 2 --cell-iters 400 --policy baseline \
        --policy motion-only --policy warp-refine --no-table2 --out runs/benchmarks/iters400

``--cell-crop`` sets every cell's crop (with ``--arch MSA-HRNet-OCR --cell-iters 1000 --cell-crop
128 256`` the demo's cells train as its ``g_ψ`` does), ``--k`` how far from their labelled frame
warp-refine and semantic-only labels are taken, and ``--world-seed W`` trains every cell on world
W with ``--seeds`` as training seeds: how much of the spread is the segmenter's own seed, and
``--world-fps FPS`` renders the synthetic world at another frame rate (every stage is rebuilt on
it): at 10 instead of 35 a partition's frames show more street the labelled one does not. Each
gain is printed with its per-seed (paired) values beside the mean.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wrp.io import atomic_write_json
from wrp.tables import (
    ARCHS,
    TABLE1_POLICIES,
    TABLE2_ROWS,
    add_budget_arguments,
    budget_from_arguments,
    gains_over,
    gains_report,
    grid_note,
    mean_std,
    table1,
    table2,
    table2_arch,
    write_table1,
    write_table2,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", action="append", choices=list(ARCHS), help="default: the profile's")
    parser.add_argument("--policy", action="append", choices=list(TABLE1_POLICIES),
                        help="Table 1 columns (repeatable; default all; the checks need baseline, "
                             "motion-only and warp-refine)")
    add_budget_arguments(parser)
    parser.add_argument("--world-seed", type=int,
                        help="train every cell on this seed's world and labels, --seeds then being the "
                             "segmenters' training seeds (the paper's protocol); default: each seed "
                             "its own world")
    parser.add_argument("--k", type=int,
                        help="semantic-only and warp-refine labels from frames within ±k of their "
                             "labelled frame (default: the profile's k; motion-only keeps ±2)")
    parser.add_argument("--no-table2", action="store_true", help="Table 1 only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    prof = budget_from_arguments(parser, args)
    out = Path(args.out)
    archs = args.arch or list(prof.table_archs)

    if args.policy and "baseline" not in args.policy:
        parser.error("--policy needs baseline among the columns: every gain is measured against it")
    if args.k is not None and not 1 <= args.k <= prof.k:
        parser.error(f"--k {args.k} must lie in 1..{prof.k}, the {prof.name} profile's propagation range")
    if args.world_seed is not None and not args.no_table2:
        parser.error("--world-seed applies to Table 1 only: add --no-table2")
    started = time.time()
    t1 = table1(prof, archs, args.policy, args.seeds, device=args.device, world_seed=args.world_seed,
                k=args.k)
    t1_seconds = time.time() - started
    write_table1(t1, out / "table1", grid_note(prof, args.seeds, archs, world_seed=args.world_seed))
    started = time.time()
    t2 = {} if args.no_table2 else table2(prof, None, args.seeds, device=args.device)
    t2_seconds = time.time() - started
    if t2:
        write_table2(t2, out / "table2", grid_note(prof, args.seeds, table=2))

    seeds_said = (f"seeds {args.seeds}" if args.world_seed is None
                  else f"world of seed {args.world_seed}, training seeds {args.seeds}")
    if prof.fps:
        seeds_said += f", world at {prof.fps:g} frames/s"
    print(f"\nTable 1 ({prof.name} profile, {seeds_said}, {prof.cell_iters} iterations per cell, "
          f"crop {prof.cell_crop[0]}×{prof.cell_crop[1]}): "
          "validation mIoU, mean ± std [per seed]")
    for arch, cells in t1.items():
        for policy in cells:
            mean, std = mean_std(cells[policy])
            print(f"  {arch:<14} {policy:<14} {mean:6.2f} ± {std:4.2f}  "
                  f"[{', '.join(f'{v:.2f}' for v in cells[policy])}]")
    gains = {arch: gains_over(cells, "baseline") for arch, cells in t1.items()}
    checks = {}
    for arch, rows in gains.items():
        by = {g["column"]: g for g in rows}
        if "warp-refine" in by:
            wr = by["warp-refine"]
            checks[f"{arch}: warp-refine ≥ Baseline + 1.5"] = wr["gain"] >= 1.5
            checks[f"{arch}: warp-refine gain > 2 std"] = wr["gain"] > wr["two_std"]
        if "motion-only" in by:
            checks[f"{arch}: motion-only within ±1 of Baseline"] = abs(by["motion-only"]["gain"]) <= 1.0
        print(gains_report(rows, "Baseline", label=f"  {arch}: "))
    if t2:
        print(f"\nTable 2 ({table2_arch(prof)}): validation mIoU, mean ± std [per seed]")
        for row in TABLE2_ROWS:
            mean, std = mean_std(t2[row])
            print(f"  {row:<52} {mean:6.2f} ± {std:4.2f}  [{', '.join(f'{v:.2f}' for v in t2[row])}]")
    print("\nchecks:")
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'MISS'}  {name}")
    print(f"\nseconds: Table 1 {t1_seconds:.0f}, Table 2 {t2_seconds:.0f} (cached cells cost ~0)")
    path = atomic_write_json(out / "tables.json", {
        "profile": prof.name, "world_fps": prof.fps, "seeds": args.seeds, "world_seed": args.world_seed,
        "k": args.k or prof.k,
        "cell_iters": prof.cell_iters,
        "cell_crop": list(prof.cell_crop), "table1": t1, "table2": t2,
        "gains": gains,
        "checks": checks, "seconds": {"table1": round(t1_seconds, 1), "table2": round(t2_seconds, 1)},
    })
    print(f"→ {path}")


if __name__ == "__main__":
    main()
