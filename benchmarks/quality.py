"""How well the label-free quality estimate (``wrp assess``) tracks the truth, world by world and
seed by seed: Spearman ρ between the cycle-agreement estimate and the true mIoU of the carried
labels over (record, distance) pairs, and the expected calibration error of each policy's
confidence, on the synthetic world, where every frame has its exact label.

    python benchmarks/quality.py --worlds street --seeds 0 1 2
    python benchmarks/quality.py --worlds suburb --seeds 1 --figure   # also the figure of figures/quality/

Each world and seed is assessed once (``<out>/seeds/<world>_s<seed>/``: ``assess.json``,
``quality.csv`` and ``quality.png``, training ``g_ψ`` and Ω first where they are not cached) and
the summary over every assessed seed goes to ``<out>/seeds.md`` and ``seeds.json`` (default ``--out``:
``figures/quality``). ``--figure`` copies the last assessed seed's ``quality.png``, ``quality.csv``
and ``assess.json`` into ``<out>`` itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from wrp.assess import assess
from wrp.io import atomic_write_json, atomic_write_text
from wrp.profiles import Run
from wrp.synthetic import HELD_OUT_STYLE, STYLES

TARGET_RHO, TARGET_ECE = 0.7, 5.0  # issue's bar: ρ ≥ 0.7 per policy, warp-refine ECE ≤ 5 %


def measured(folder: Path) -> dict[str, Any]:
    """ρ, ECE and the confident-pixel numbers of one assessment folder, per policy."""
    policies = json.loads((folder / "assess.json").read_text())["policies"]
    out = {}
    for policy, s in policies.items():
        keep = s.get("keep_90_at_k", {})
        out[policy] = {"spearman": s.get("spearman"), "ece": s.get("ece"),
                       "keep_at_k": {"distance": keep.get("distance"), "threshold": keep.get("threshold"),
                                     "coverage": keep.get("kept", {}).get("coverage"),
                                     "accuracy_all": keep.get("all", {}).get("accuracy"),
                                     "accuracy_kept": keep.get("kept", {}).get("accuracy")} if keep else None}
    return out


def write_summary(out: Path) -> Path:
    """``seeds.md`` / ``seeds.json``: every assessed world and seed, with the median per world."""
    records = []
    for path in sorted((out / "seeds").glob("*/assess.json")):
        world, _, seed = path.parent.name.rpartition("_s")
        records.append({"world": world, "seed": int(seed), "policies": measured(path.parent)})
    lines = ["# Label quality without ground truth, measured against it",
             "",
             "Per world and seed (validation records): Spearman ρ between the cycle-agreement estimate "
             "(`wrp assess`, no label beyond the labelled frames) and the true mIoU of the carried labels "
             "over (record, distance d = 1…k) pairs; expected calibration error (ECE) of each policy's "
             "per-pixel confidence; at d = k, the threshold τ nearest to keeping 90 % of the pixels and "
             f"what it keeps. Bar: ρ ≥ {TARGET_RHO} per policy, warp-refine ECE ≤ {TARGET_ECE:g} %. "
             f"Held-out style: `{HELD_OUT_STYLE}`.",
             "",
             "| world | seed | policy | Spearman ρ | ECE | d = k: τ | kept | accuracy all → kept |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for r in sorted(records, key=lambda r: (r["world"], r["seed"])):
        for policy, m in r["policies"].items():
            keep = m["keep_at_k"]
            tail = (f"{keep['threshold']:.3g} | {keep['coverage']:.1f} % | "
                    f"{keep['accuracy_all']:.1f} → {keep['accuracy_kept']:.1f} %") if keep else "— | — | —"
            lines.append(f"| {r['world']} | {r['seed']} | {policy} | {m['spearman']:.2f} | "
                         f"{m['ece']:.1f} % | {tail} |")
    lines += ["", "| world | policy | seeds | median ρ | min ρ | median ECE |",
              "|---|---|---|---:|---:|---:|"]
    medians: dict[str, Any] = {}
    for world in sorted({r["world"] for r in records}):
        runs = [r for r in records if r["world"] == world]
        for policy in runs[0]["policies"]:
            rho = [r["policies"][policy]["spearman"] for r in runs]
            ece = [r["policies"][policy]["ece"] for r in runs]
            medians.setdefault(world, {})[policy] = {
                "seeds": [r["seed"] for r in runs], "median_spearman": statistics.median(rho),
                "min_spearman": min(rho), "median_ece": statistics.median(ece)}
            lines.append(f"| {world} | {policy} | {', '.join(str(r['seed']) for r in runs)} | "
                         f"{statistics.median(rho):.2f} | {min(rho):.2f} | {statistics.median(ece):.1f} % |")
    atomic_write_json(out / "seeds.json", {"records": records, "medians": medians})
    return atomic_write_text(out / "seeds.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--worlds", nargs="*", default=[], choices=list(STYLES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="figures/quality")
    parser.add_argument("--figure", action="store_true",
                        help="copy the last assessed seed's figure and tables into --out")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    folder = None
    for world in args.worlds:
        for seed in args.seeds:
            folder = out / "seeds" / f"{world}_s{seed}"
            if (folder / "assess.json").is_file():
                continue
            print(f"== {world}, seed {seed}", flush=True)
            run = Run.create(args.profile, seed=seed, style=world, device=args.device,
                             progress=not args.no_progress)
            assess(run, out=folder)
    if args.figure and folder is not None:
        for name in ("quality.png", "quality.csv", "assess.json"):
            shutil.copyfile(folder / name, out / name)
    if not (out / "seeds").is_dir():
        parser.error(f"nothing assessed in {out / 'seeds'}; name --worlds")
    path = write_summary(out)
    print(path.read_text())


if __name__ == "__main__":
    main()
