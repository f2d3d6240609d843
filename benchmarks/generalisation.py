"""Does warp-refine hold on worlds it was not tuned on? Every label policy on every world of the
family, through the stages a user runs.

    python benchmarks/generalisation.py --worlds street grainy verge suburb --seeds 0 1 2
    python benchmarks/generalisation.py --dataset street-prepared=data/street --seeds 0

A *world* is a style of the synthetic world (``wrp.synthetic.STYLES``; ``suburb`` is the held-out
style, kept out of every choice of the method's settings) or a prepared tree given with
``--dataset NAME=DIR`` (the ``--dataset`` route: e.g. a synthetic world written out with
``wrp synth --as-frames`` and prepared with ``wrp prepare-frames``). For each world and seed it asks
the stages for g_ψ, Ω (with its snapshot and gate chosen on held-out training records) and the
validation labels of every policy — all cached, so a rerun only reports — and also propagates
with **Ω alone**: Ω's last snapshot with no gate, as the method ran before the gate existed, and
**before refit**: the chosen snapshot and gate of Ω trained without the selection records, as the
method labelled before Ω was refitted on every training record. Where the validation records'
cyclic labels score the refit lower, the chosen Ω labels (``labels_with``: ``chosen``; warp-refine
is then ``before refit``) and the run also propagates with the refit it did not use (**refit, not
used**). Ω alone is always the refit's last snapshot.

Each world and seed is written to ``<out>/worlds/<world>_s<seed>.json`` as it finishes, and the
report always covers every such file in ``<out>`` (worlds may be run by separate invocations, e.g.
with another ``WRP_RUNS``): ``generalisation.csv`` (long form: world, seed, policy, distance,
mIoU), ``generalisation.md`` (median over seeds, with the checks), ``generalisation.json`` and
``generalisation.png``.

Checks per world (median over its seeds): warp-refine ≥ motion-only − 0.5 mIoU at every d;
warp-refine − best other policy at d = k ≥ 5; no class loses more than 10 IoU to motion-only at
d = 1; Ω improves the held-out cyclic labels overall and at every p (every seed). Retention is
warp-refine's mIoU(k) / mIoU(1).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from wrp.cache import config_hash  # noqa: E402
from wrp.data import Manifest  # noqa: E402
from wrp.denoiser import Gate  # noqa: E402
from wrp.io import atomic_write_json, atomic_write_text  # noqa: E402
from wrp.policies import (  # noqa: E402
    POLICIES,
    Propagator,
    propagate_clips,
    propagation_accuracy,
    read_accuracy,
)
from wrp.profiles import Run  # noqa: E402
from wrp.runtime import runs_dir  # noqa: E402
from wrp.stages import (  # noqa: E402
    REFINEMENT_VERSION,
    manifest_for,
    propagate,
    propagator_for,
    teacher_segmenter,
    train_denoiser,
)
from wrp.synthetic import HELD_OUT_STYLE, STYLES  # noqa: E402
from wrp.train import SNAPSHOTS, job_from_file, load_model  # noqa: E402

ALONE = "Ω alone"  # warp-refine with Ω's last snapshot and no gate
BEFORE_REFIT = "before refit"  # warp-refine with the chosen snapshot of Ω's run without the selection records
REFIT = "refit, not used"  # warp-refine with the refit's twin snapshot where the chosen Ω labels instead


def _warp_refine_with(run: Run, name: str, trained: Path, weights: Path, gate: Gate | None
                      ) -> list[dict[str, Any]]:
    """Accuracy rows (policy ``name``) of warp-refine labelling with ``weights`` of the training
    run in ``trained`` under ``gate`` (``None``: no gate), cached by the three."""
    key = {"denoiser": str(trained), "weights": weights.name, "gate": asdict(gate) if gate else None}
    folder = runs_dir() / "benchmarks" / "warp-refine-with" / config_hash(key)
    done = folder / "accuracy.json"
    if done.is_file():
        return json.loads(done.read_text())
    job = job_from_file(trained / "job.json")
    cues = propagator_for(teacher_segmenter(run), None, device=run.device)
    propagator = Propagator(cues.estimator, cues.segmenter, load_model(job, trained, run.device, weights),
                            run.device, run.profile.inpaint, gate)
    manifest = Manifest.load(manifest_for(run))
    clips = manifest.clips("val")
    propagate_clips(clips, "warp-refine", folder / "labels", propagator, run.profile.k, progress=run.progress)
    rows = propagation_accuracy(clips, manifest.ground_truth("val"), folder / "labels", ["warp-refine"],
                                run.profile.k)
    for row in rows:
        row["policy"] = name
    atomic_write_json(done, rows)
    return rows


def measure(run: Run, world: str) -> dict[str, Any]:
    denoiser = train_denoiser(run)
    folder = propagate(run, "val", POLICIES)
    if not (folder / "accuracy.csv").is_file():
        raise SystemExit(f"{world}: {run.dataset} has no label for every frame of its validation records; "
                         "this benchmark scores every propagated frame and needs them")
    omega = json.loads((denoiser / "metrics.json").read_text())
    omega["selection"].pop("snapshots", None)
    trained = Path(omega["trained"])
    refit = Path(omega["refit"])  # Ω on every training record, as before the gate existed
    last = sorted((refit / SNAPSHOTS).glob("*.pt"))[-1]
    rows = read_accuracy(folder) + _warp_refine_with(run, ALONE, refit, last, None)
    if refit != trained:
        weights, gate = omega["selection"]["weights"], Gate(**omega["selection"]["gate"])
        rows += _warp_refine_with(run, BEFORE_REFIT, trained, trained / weights, gate)
        if omega["labels_with"] == "chosen":  # what labelling with the refit would have given
            rows += _warp_refine_with(run, REFIT, refit, refit / weights, gate)
    return {"world": world, "seed": run.seed, "refinement_version": REFINEMENT_VERSION,
            "dataset": str(run.dataset) if run.dataset else None,
            "style": None if run.dataset else run.profile.style, "k": run.profile.k, "accuracy": rows,
            "omega": {k: omega[k] for k in ("selection", "labels_with", "held_out", "held_out_before_refit",
                                            "held_out_refit", "warning", "iterations") if k in omega},
            "stages": {"denoiser": omega["trained"], "refit": omega.get("refit"), "refinement": str(denoiser),
                       "propagation": str(folder)}}


# ---------------------------------------------------------------------------------------------
# The report over every measured world and seed
# ---------------------------------------------------------------------------------------------
def _gate(r: dict[str, Any]) -> str:
    """Which gate chose the run's refinement, told by its record: the gate on Ω's class alone
    (2 thresholds per class, as before ``REFINEMENT_VERSION`` 1) or on Ω's and the input's class (4)."""
    gate = r["omega"]["selection"]["gate"]
    opened = sum(t < 1 for values in gate.values() for t in values)
    total = sum(len(values) for values in gate.values())
    kind = "Ω's and the input's class" if "input_valid" in gate else "Ω's class only"
    return f"on {kind}, {opened} of {total} groups open"


def check_versions(results: list[dict[str, Any]]) -> str | None:
    """Why ``results`` cannot share one report — measured under different ways of choosing Ω
    (``REFINEMENT_VERSION``; a record without one predates the refit, version 2) — or ``None``."""
    versions: dict[int, list[str]] = {}
    for r in results:
        versions.setdefault(r.get("refinement_version", 2), []).append(f"{r['world']}_s{r['seed']}")
    if len(versions) < 2:
        return None
    groups = "; ".join(f"refinement version {v}: {', '.join(names)}" for v, names in sorted(versions.items()))
    return (f"the worlds measured here chose Ω in different ways and cannot share medians: {groups} — "
            "measure into another --out, or remove the older records")


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    worlds: dict[str, list[dict[str, Any]]] = {}
    order = list(STYLES)  # the styles in the family's order, then the prepared trees
    for r in sorted(results, key=lambda r: (r["world"] not in order,
                                            order.index(r["world"]) if r["world"] in order else 0,
                                            r["world"], r["seed"])):
        worlds.setdefault(r["world"], []).append(r)
    out = {}
    for world, runs in worlds.items():
        k = runs[0]["k"]
        # the policies every run of the world has (a row some runs lack would take a partial median)
        have = [{row["policy"] for row in r["accuracy"]} for r in runs]
        policies = [p for p in dict.fromkeys(row["policy"] for row in runs[0]["accuracy"])
                    if all(p in h for h in have)]
        cell = {(p, d): _median([row["miou"] for r in runs for row in r["accuracy"]
                                 if row["policy"] == p and int(row["distance"]) == d])
                for p in policies for d in range(1, k + 1)}
        ours = [p for p in POLICIES if p in policies and p != "warp-refine"]
        ds = range(1, k + 1)
        margin = {d: round(cell["warp-refine", d] - max(cell[p, d] for p in ours), 2) for d in ds}
        vs_motion = {d: round(cell["warp-refine", d] - cell["motion-only", d], 2) for d in ds}
        alone = ({d: round(cell[ALONE, d] - cell["motion-only", d], 2) for d in ds}
                 if ALONE in policies else {})
        classes = [c for c in runs[0]["accuracy"][0] if c.startswith("iou_")]

        def iou(policy: str, c: str, runs: list[dict[str, Any]] = runs) -> float | None:
            values = [row[c] for r in runs for row in r["accuracy"] if row["policy"] == policy
                      and int(row["distance"]) == 1 and row[c] == row[c]]
            return _median(values) if len(values) == len(runs) else None

        class_loss = {c[4:]: round(iou("motion-only", c) - iou("warp-refine", c), 2) for c in classes
                      if iou("motion-only", c) is not None and iou("warp-refine", c) is not None}
        worst = max(class_loss.items(), key=lambda kv: kv[1])
        cyclic_ok = all(r["omega"]["held_out"]["refined"] > r["omega"]["held_out"]["cyclic"]
                        and all(v["refined"] > v["cyclic"] for v in r["omega"]["held_out"]["per_p"].values())
                        for r in runs)
        out[world] = {
            "seeds": sorted(r["seed"] for r in runs), "k": k, "policies": policies,
            "miou": {f"{p}|{d}": v for (p, d), v in cell.items()},
            "warp_refine_minus_best_other": margin, "warp_refine_minus_motion_only": vs_motion,
            "omega_alone_minus_motion_only": alone,
            "retention": round(cell["warp-refine", k] / cell["warp-refine", 1], 3),
            "worst_class_loss_d1": {"class": worst[0], "iou": worst[1]},
            "held_out_cyclic": [{"seed": r["seed"], "cyclic": r["omega"]["held_out"]["cyclic"],
                                 "refined": r["omega"]["held_out"]["refined"],
                                 "per_p": r["omega"]["held_out"]["per_p"]} for r in runs],
            "warnings": [r["omega"]["warning"] for r in runs if r["omega"]["warning"]],
            "gate": {str(r["seed"]): _gate(r) for r in runs},
            "checks": {
                "warp-refine ≥ motion-only − 0.5 at every d": min(vs_motion.values()) >= -0.5,
                f"warp-refine − best other at d={k} ≥ 5": margin[k] >= 5,
                "no class loses > 10 IoU to motion-only at d=1": worst[1] <= 10,
                "Ω improves held-out cyclic labels overall and at every p": cyclic_ok,
            },
        }
    return out


def write_report(results: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    summary = summarise(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["world", "seed", "policy", "distance", "miou"])
    for r in sorted(results, key=lambda r: (r["world"], r["seed"])):
        for row in r["accuracy"]:
            writer.writerow([r["world"], r["seed"], row["policy"], int(row["distance"]), row["miou"]])
    atomic_write_text(out / "generalisation.csv", buffer.getvalue())

    lines = ["# Warp-refine on worlds it was not tuned on",
             "",
             "mIoU (%) of the propagated validation labels by distance d from the labelled frame, median "
             "over seeds; every frame scored against its exact label, unlabelled pixels wrong. "
             f"`{ALONE}`: warp-refine with the last snapshot of Ω trained on every training record (its "
             f"refit; before the refit existed, of its run without the selection records) and no gate; "
             f"`{BEFORE_REFIT}`: with the chosen "
             "snapshot and gate of Ω trained without the selection records (before the refit on every "
             "training record). Warp-refine labels with the refit unless the validation records' cyclic "
             "labels score it below the chosen Ω (`REFINEMENT_VERSION` 4; the per-seed table says which). "
             f"Held-out style: `{HELD_OUT_STYLE}`.",
             ""]
    for world, s in summary.items():
        k = s["k"]
        shown = sorted({d for d in (1, 2, 3, 5, 8) if d < k} | {k})
        about = STYLES[world].description if world in STYLES else "a prepared tree (--dataset)"
        held = " — **held-out style**" if world == HELD_OUT_STYLE else ""
        lines += [f"## {world}{held}", "", f"{about}; seeds {s['seeds']}.", "",
                  "| policy | " + " | ".join(f"d={d}" for d in shown) + " |",
                  "|---|" + "---:|" * len(shown)]
        for p in s["policies"]:
            lines.append(f"| {p} | " + " | ".join(f"{s['miou'][f'{p}|{d}']:.1f}" for d in shown) + " |")
        cyc = "; ".join(f"seed {c['seed']}: {c['cyclic']:.1f} → {c['refined']:.1f}"
                        for c in s["held_out_cyclic"])
        lines += ["", f"- warp-refine − best other: {s['warp_refine_minus_best_other'][k]:+.2f} at d={k}; "
                      f"− motion-only: min {min(s['warp_refine_minus_motion_only'].values()):+.2f} over d; "
                      f"retention mIoU({k})/mIoU(1) = {s['retention']:.2f}",
                  f"- worst class at d=1 against motion-only: {s['worst_class_loss_d1']['class']} "
                  f"({-s['worst_class_loss_d1']['iou']:+.1f} IoU)",
                  f"- held-out cyclic labels before → after Ω: {cyc}",
                  "- gate: " + "; ".join(f"seed {seed} {g}" for seed, g in s["gate"].items())]
        lines += [f"- {'PASS' if ok else 'MISS'} {check}" for check, ok in s["checks"].items()]
        lines += [f"- warning: {w}" for w in s["warnings"]] + [""]
    lines += _per_seed_table(results)
    atomic_write_text(out / "generalisation.md", "\n".join(lines))
    atomic_write_json(out / "generalisation.json", {"summary": summary, "results": results})
    _figure(summary, out / "generalisation.png")
    return summary


def _at_1_and_k(summary: dict[str, Any], policy: str) -> str:
    """``policy``'s mIoU at d = 1 and d = k of one run's summary, or — where it was not measured."""
    at = [summary["miou"].get(f"{policy}|{d}") for d in (1, summary["k"])]
    return "—" if None in at else f"{at[0]:.2f} / {at[1]:.2f}"


def _refined(held_out: dict[str, Any] | None) -> str:
    """The held-out cyclic labels' mIoU after an Ω, or — (no such Ω: nothing refitted; before the refit)."""
    return "—" if held_out is None else f"{held_out['refined']:.2f}"


def _per_seed_table(results: list[dict[str, Any]]) -> list[str]:
    """Every world and seed on one row: :func:`summarise` of that run alone."""
    lines = ["## Per world and seed", "",
             "| world | seed | wr − motion-only, worst d | wr − best other, d=k | Ω alone − motion-only, "
             "worst d | retention | worst class at d=1 (IoU vs motion-only) | held-out cyclic before → "
             "after (worst p gain) | gate | snapshot (Ω that labels) | "
             "warp-refine, d=1 / d=k (before refit) | held-out cyclic after the chosen Ω / the refit |",
             "|---|---|---:|---:|---:|---:|---|---|---|---|---:|---|"]
    for r in results:
        (s,) = summarise([r]).values()
        omega = r["omega"]
        k, vs_motion, alone = s["k"], s["warp_refine_minus_motion_only"], s["omega_alone_minus_motion_only"]
        worst_d = min(vs_motion, key=lambda d: vs_motion[d])
        (c,) = s["held_out_cyclic"]
        gain = min(v["refined"] - v["cyclic"] for v in c["per_p"].values())
        alone_worst = f"{min(alone.values()):+.2f}" if alone else "—"
        lines.append(f"| {r['world']} | {r['seed']} | {vs_motion[worst_d]:+.2f} (d={worst_d}) | "
                     f"{s['warp_refine_minus_best_other'][k]:+.2f} | {alone_worst} | {s['retention']:.2f} | "
                     f"{s['worst_class_loss_d1']['class']} {-s['worst_class_loss_d1']['iou']:+.1f} | "
                     f"{c['cyclic']:.1f} → {c['refined']:.1f} ({gain:+.2f}) | {s['gate'][str(r['seed'])]} | "
                     f"{omega['selection']['snapshot']} ({omega.get('labels_with', '—')}) | "
                     f"{_at_1_and_k(s, 'warp-refine')} ({_at_1_and_k(s, BEFORE_REFIT)}) | "
                     f"{_refined(omega.get('held_out_before_refit'))} / "
                     f"{_refined(omega.get('held_out_refit'))} |")
    return lines + [""]


def _figure(summary: dict[str, Any], path: Path) -> None:
    worlds = list(summary)
    cols = min(3, len(worlds))
    rows = -(-len(worlds) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.4 * cols, 6.6), 3.5 * rows + 0.9), squeeze=False,
                             sharey=True)
    colours = {"copy": "#999999", "motion-only": "#1f77b4", "semantic-only": "#9467bd",
               "warp-inpaint": "#2ca02c", "warp-refine": "#d62728", ALONE: "#d62728", BEFORE_REFIT: "#7f0000",
               REFIT: "#ff9896"}
    styles = {ALONE: "--", BEFORE_REFIT: ":", REFIT: "-."}
    for ax, world in zip(axes.flat, worlds, strict=False):
        s = summary[world]
        ds = list(range(1, s["k"] + 1))
        for p in s["policies"]:
            ax.plot(ds, [s["miou"][f"{p}|{d}"] for d in ds], label=p, color=colours.get(p, "black"),
                    lw=2.2 if p == "warp-refine" else 1.2, ls=styles.get(p, "-"),
                    marker="o" if p == "warp-refine" else None, ms=3)
        held = " (held-out style)" if world == HELD_OUT_STYLE else ""
        ax.set_title(f"{world}{held}, seed{'s' if len(s['seeds']) > 1 else ''} "
                     f"{', '.join(map(str, s['seeds']))}", fontsize=10)
        ax.set_xlabel("distance d from the labelled frame")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(worlds):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("mIoU (%) of propagated labels")
    axes.flat[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Accuracy of propagated labels on every world of the family (median over seeds)\n"
                 "dashed: Ω alone — its last snapshot, no gate\n"
                 "dotted: before Ω's refit on every training record", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--worlds", nargs="*", default=[], choices=list(STYLES),
                        help="styles of the synthetic world to measure")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=DIR",
                        help="a prepared tree to measure as world NAME (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="figures/generalisation",
                        help="where the report goes (default: figures/generalisation/)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    worlds: list[tuple[str, dict[str, Any]]] = [(w, {"style": w}) for w in args.worlds]
    for spec in args.dataset:
        name, sep, folder = spec.partition("=")
        if not (name and sep and folder):
            parser.error(f"--dataset {spec!r}: write NAME=DIR")
        if name in STYLES:
            parser.error(f"--dataset {spec!r}: {name} is a style of the synthetic world; name it otherwise")
        worlds.append((name, {"dataset": folder}))
    for world, where in worlds:
        for seed in args.seeds:
            run = Run.create(args.profile, seed=seed, device=args.device, progress=not args.no_progress,
                             **where)
            print(f"== {world}, seed {seed}", flush=True)
            atomic_write_json(out / "worlds" / f"{world}_s{seed}.json", measure(run, world))
    results = [json.loads(p.read_text()) for p in sorted((out / "worlds").glob("*.json"))]
    if not results:
        parser.error(f"nothing measured in {out / 'worlds'}; name --worlds or --dataset")
    if mixed := check_versions(results):
        parser.error(mixed)
    summary = write_report(results, out)
    print((out / "generalisation.md").read_text())
    print(f"→ {out / 'generalisation.md'}, .csv, .json, .png ({len(summary)} worlds)")


if __name__ == "__main__":
    main()
