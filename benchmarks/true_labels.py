"""The ceiling of any label policy, regime by regime: Table 1 cells trained with the world's true
labels of the same ±k frames that propagation labels, beside Baseline (and any other column).

    python benchmarks/true_labels.py --profile demo --arch DeepLabV3 --world-fps 10 --world-seed 0 \\
        --seeds 0 1 2 3 4 --eval-frames every --cell-iters 400 --cell-crop 64 128
    python benchmarks/true_labels.py --profile demo --arch MSA-HRNet-OCR --seeds 0 1 2 \\
        --cell-iters 1000 --cell-crop 128 256          # one world per seed, labelled frames only

If the true labels of the neighbouring frames do not raise validation mIoU over Baseline, no
propagation method can on that world and budget: the extra frames add nothing the segmenter
lacks. The printed share of pixels whose true label differs from the labelled frame's
(``wrp.tables.neighbour_change``) says how much there is to add. A regime is the world (frame rate
``--world-fps``, traffic ``--world-density``, labelled records ``--train-records``,
their partitions ``--partitions``), the student
(``--arch``, ``--cell-iters``, ``--cell-crop``, its start ``--pretrain`` / ``--pretrain-labels``) and
the measurement (``--world-seed``: one world, training seeds paired;
``--eval-frames every``: every frame of the held-out records scores a cell). Add columns with
``--policy`` (``warp-refine``, ``motion-only``, …): their labels are propagated first.
``--score-world SEED`` also scores every cell on another world; ``--fit`` on its own training
records (their labelled frames and their other frames, per class too): a student that does not
fit what it learns from cannot gain from the labels of more frames of the same records.

Each regime is written to ``<out>/regimes/<key>.json`` as it finishes; ``<out>/regimes.md`` lists
every regime measured so far, with the ceiling's paired gain and interval (default ``--out``:
``figures/table1_regimes``). Cells are cached stages, shared with ``wrp table1``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from wrp.cache import config_hash
from wrp.cli import add_jobs_option, add_run_options, add_table_options, table_run
from wrp.data import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, read_label
from wrp.io import atomic_write_json, atomic_write_text
from wrp.metrics import confusion_matrix, mean_iou, mean_std
from wrp.paper import ARCHS, DEFAULT_INPAINT, TRUE_LABELS
from wrp.stages import (
    MOTION_ONLY_K,
    every_frame_samples,
    generated_frames,
    generated_pairs,
    score_every_frame,
    train_cell,
)
from wrp.tables import cells_of, check_score_world, gains_over, gains_report, neighbour_change, table1_runs
from wrp.train import evaluate, job_from_file, load_model

DEFAULT_COLUMNS = ("baseline", TRUE_LABELS)


def regime_of(run, args: argparse.Namespace) -> dict[str, Any]:
    """What a measurement depends on, beside its seeds: the world, the student, the scoring."""
    prof = run.profile
    return {"profile": prof.name, "style": prof.style, "world_fps": prof.fps or 35.0,
            "train_records": prof.train_records, "partitions_per_record": prof.partitions_per_record,
            "k": args.k or prof.k, "arch": args.arch[0], "cell_iters": prof.table_iters,
            "cell_crop": list(prof.frame_crop(prof.table_crop)), "world_seed": prof.table_world_seed,
            "eval_frames": prof.table_eval, "min_confidence": prof.table_min_confidence,
            "pretrain": prof.table_pretrain, "dataset": str(run.dataset) if run.dataset else None,
            **({"world_density": prof.density} if prof.density is not None else {}),
            **({"teacher_pretrain": prof.teacher_pretrain} if prof.teacher_pretrain else {}),
            **({"inpaint": prof.inpaint} if prof.inpaint != DEFAULT_INPAINT else {}),
            **({"pretrain_labels": prof.table_pretrain_labels}
               if prof.table_pretrain and prof.table_pretrain_labels != "classes" else {})}


def table_world(run, option: str) -> int:
    """The one world every cell of the regime trains on, or an error: ``option`` needs one."""
    if run.profile.table_world_seed is None:
        raise ValueError(f"{option} needs the one world every cell trains on: give --world-seed too")
    return run.profile.table_world_seed


def _score_cells(run, arch: str, columns: list[str], seeds: list[int], k: int | None,
                 sets: dict[str, list]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every cell of the regime (trained on ``run``'s table world) scored on each set of
    (image, label) samples, and (set ``"held-out"``) its own table score:
    ``{set: {column: [{"miou", "per_class_iou"} per seed]}}``; each cell is loaded once."""
    world = run.with_seed(run.profile.table_world_seed)
    scores: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in (*sets, "held-out")}
    for column in columns:
        for seed in seeds:
            cell_k = MOTION_ONLY_K if column == "motion-only" else k
            cell = train_cell(world, ARCHS[arch], column, cell_k, train_seed=seed)
            stage = Path(cell["stage"])
            job = job_from_file(stage / "job.json")
            model = load_model(job, stage, run.device)
            label_set = job.data.kwargs.get("label_set")
            for name, samples in sets.items():
                scores[name].setdefault(column, []).append(
                    evaluate(model, samples, run.device, progress=run.progress, label_set=label_set))
            scores["held-out"].setdefault(column, []).append(cell)
    return scores


def _miou(scores: dict[str, list[dict[str, Any]]]) -> dict[str, list[float]]:
    """``{column: [mIoU per seed]}`` of :func:`_score_cells`' scores on one set."""
    return {column: [s["miou"] for s in per_seed] for column, per_seed in scores.items()}


def _class_means(scores: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """``{column: {class: mean IoU over the seeds}}`` of :func:`_score_cells`' scores on one set
    (a class missing from a seed's frames is left out of that seed's mean)."""
    means: dict[str, dict[str, float]] = {}
    for column, per_seed in scores.items():
        values: dict[str, list[float]] = {}
        for seed_scores in per_seed:
            for name, value in seed_scores["per_class_iou"].items():
                values.setdefault(name, []).append(value)
        means[column] = {name: round(mean_std(v)[0], 2) for name, v in values.items()}
    return means


def score_on_world(run, arch: str, columns: list[str], seeds: list[int], k: int | None,
                   world: int) -> dict[str, Any]:
    """Every cell of the regime (trained on ``run``'s table world) scored on every frame of every
    record of another world, seed ``world``, of the same style, frame rate and traffic: a held-out
    set 3.5 times the regime's own, drawn independently of the world the cells learnt from, so a
    gain that belongs to the table world's few validation records shows as such — the score
    ``wrp table1`` gives a cell where the profile names a ``table_score_world`` (the same cached
    stage). ``per_class``: each column's IoU per class there, mean over the seeds."""
    check_score_world(run, world, [table_world(run, "--score-world")])
    home = run.with_seed(run.profile.table_world_seed)
    scores: dict[str, list[dict[str, Any]]] = {}
    for column in columns:
        for seed in seeds:
            cell_k = MOTION_ONLY_K if column == "motion-only" else k
            cell = train_cell(home, ARCHS[arch], column, cell_k, train_seed=seed)
            folder = score_every_frame(home, Path(cell["stage"]), world)
            scores.setdefault(column, []).append(json.loads((folder / "metrics.json").read_text()))
    cells = _miou(scores)
    return {"seed": world, "frames": scores["baseline"][0]["images"], "cells": cells,
            "gains": gains_over(cells, "baseline"), "per_class": _class_means(scores)}


def cue_headroom(run, k: int | None) -> dict[str, dict[str, float]]:
    """Per distance d from the labelled frame, over the training frames the cells learn from: the
    share of pixels warp-refine labels right, that ``g_ψ`` alone (semantic-only) labels right, and
    that either does, with the mIoU of each and of the better of the two per pixel — how much of
    what the teacher knows Ω's labels use. Of the one world every cell of the regime trains on."""
    run = run.with_seed(table_world(run, "--cues"))
    _, frames = generated_frames(run, k)
    pairs = {name: generated_pairs(run, name, k) for name in ("warp-refine", "semantic-only", TRUE_LABELS)}
    counts: dict[int, dict[str, Any]] = {}
    for i, (clip, pos) in enumerate(frames):
        truth = read_label(pairs[TRUE_LABELS][i][1])
        refined, semantic = (read_label(pairs[name][i][1]) for name in ("warp-refine", "semantic-only"))
        valid = truth != IGNORE_INDEX
        refined_right, semantic_right = (refined == truth) & valid, (semantic == truth) & valid
        better = np.where(refined_right, refined, semantic)
        c = counts.setdefault(abs(pos - clip.labelled), {
            "pixels": 0, "right": np.zeros(3, np.int64),
            "confusion": [np.zeros((NUM_CLASSES, NUM_CLASSES + 1), np.int64) for _ in range(3)]})
        c["pixels"] += int(valid.sum())
        c["right"] += [int(refined_right.sum()), int(semantic_right.sum()),
                       int((refined_right | semantic_right).sum())]
        for j, label in enumerate((refined, semantic, better)):
            c["confusion"][j] += confusion_matrix(label[valid], truth[valid])
    return {str(d): {"warp_refine_right": round(100 * c["right"][0] / c["pixels"], 2),
                     "semantic_right": round(100 * c["right"][1] / c["pixels"], 2),
                     "either_right": round(100 * c["right"][2] / c["pixels"], 2),
                     **{f"miou_{name}": round(mean_iou(conf), 2)
                        for name, conf in zip(("warp_refine", "semantic", "better_of_two"), c["confusion"],
                                              strict=True)}}
            for d, c in sorted(counts.items())}


def score_fit(run, arch: str, columns: list[str], seeds: list[int], k: int | None) -> dict[str, Any]:
    """Every cell of the regime scored on the records it trains on: their human-labelled frames
    (what every column learns from) and their other frames (what only the generated labels show;
    Baseline never sees them), in mIoU and per class (mean over seeds; ``"held-out"``: the table's
    own score). A student short of views scores far higher on what it learnt from than on the
    held-out records; one that scores the same everywhere is limited by what it can fit, and more
    labels of the same records cannot raise it."""
    world = run.with_seed(table_world(run, "--fit"))
    sets = {name: every_frame_samples(world, ("train",), frames=name) for name in ("labelled", "unlabelled")}
    scores = _score_cells(run, arch, columns, seeds, k, sets)
    return {"frames": {name: len(samples) for name, samples in sets.items()},
            "cells": {name: _miou(scores[name]) for name in sets},
            "per_class": {name: _class_means(by) for name, by in scores.items()}}


def _gain(by: dict[str, dict[str, Any]], column: str) -> str:
    """A column's paired gain over Baseline as ``+m [lo, hi]``."""
    x = by.get(column)
    if not x:
        return "—"
    ci = f" [{x['paired_ci95'][0]:+.2f}, {x['paired_ci95'][1]:+.2f}]" if x.get("paired_ci95") else ""
    return f"{x['gain']:+.2f}{ci}"


def _start(regime: dict[str, Any]) -> str:
    """How a regime's cells start: pretrained on a style's world, or (nothing said) from random weights."""
    if not regime.get("pretrain"):
        return ", from scratch"
    labels = " categories" if regime.get("pretrain_labels") == "categories" else ""
    return f", pretrained on {regime['pretrain']}{labels}"


def _teacher(regime: dict[str, Any]) -> str:
    """How the regime's g_ψ starts and what its Ω reads where the motion fails, where not the defaults
    (random weights, the motion's guess: nothing said)."""
    teacher = f"; g_ψ pretrained on {regime['teacher_pretrain']}" if regime.get("teacher_pretrain") else ""
    return teacher + (f"; Ω inpaint={regime['inpaint']}" if regime.get("inpaint") else "")


def _density(regime: dict[str, Any]) -> str:
    """A world denser in vehicles, persons and riders than its style's (nothing said: as the style)."""
    return f", {regime['world_density']:g}× traffic" if regime.get("world_density") else ""


def _streets(regime: dict[str, Any]) -> str:
    """Where a regime's labelled frames lie: ``records × partitions`` (one street per record)."""
    return f"{regime['train_records']} × {regime['partitions_per_record']}"


def write_summary(out: Path) -> Path:
    """``regimes.md``: one row per measured regime (its ceiling and every other column's paired gain)."""
    records = [json.loads(p.read_text()) for p in sorted((out / "regimes").glob("*.json"))]
    records.sort(key=lambda r: (r["regime"]["world_fps"], r["regime"]["train_records"],
                                r["regime"]["arch"], r["regime"].get("pretrain") or "",
                                r["regime"]["cell_iters"], -1 if r["regime"]["world_seed"] is None
                                else r["regime"]["world_seed"]))
    lines = ["# Table 1 regimes: how much the neighbouring frames' labels can add",
             "",
             "Each row: one world and student; cells trained with the human labels only (Baseline) and "
             "with the world's **true labels** of the ±k frames too (the ceiling of every label "
             "policy), over training seeds. Gains over Baseline are paired by seed: mean "
             "[95 % t-interval]. `new pixels`: share of pixels whose true label at ±k differs from "
             "the labelled frame's. `fps`: the world's frame rate (`N× traffic`: N times its vehicles, "
             "persons and riders). `minutes`: the run's wall time; cells an earlier row trained are "
             "reused, not counted again. `python benchmarks/true_labels.py --help` says how to add a row.",
             "",
             "| fps | labelled frames (records × partitions) | ±k (s) | new pixels at ±k | student | "
             "iters × crop | scored on | "
             "seeds | Baseline | ceiling gain | other columns | minutes |",
             "|---:|---:|---:|---:|---|---|---|---|---:|---:|---|---:|"]
    for r in records:
        g, by = r["regime"], {x["column"]: x for x in r["gains"]}
        base = mean_std(r["cells"]["baseline"])
        others = "; ".join(f"{c} {_gain(by, c)}" for c in by if c != TRUE_LABELS) or "—"
        if r.get("score_world"):
            w = r["score_world"]
            at = {x["column"]: x for x in w["gains"]}
            there = ", ".join(f"{c} {_gain(at, c)}" for c in at)
            at_base = mean_std(w["cells"]["baseline"])[0]
            others = (f"scored on world {w['seed']} ({w['frames']} frames): Baseline {at_base:.2f}, {there}"
                      + ("" if others == "—" else f"; {others}"))
        world = (f"world {g['world_seed']}, training seeds" if g["world_seed"] is not None
                 else "a world per seed")
        change = r["neighbour_change"][str(g["k"])]
        lines.append(
            f"| {g['world_fps']:g}{_density(g)} | {r['labelled_frames']} ({_streets(g)}) | "
            f"±{g['k']} ({g['k'] / g['world_fps']:.2f} s) | "
            f"{change:.1f} % | {g['arch']}{_start(g)}{_teacher(g)} | "
            f"{g['cell_iters']} × {g['cell_crop'][0]}×{g['cell_crop'][1]} | "
            f"{'every frame' if g['eval_frames'] == 'every' else 'labelled frames'} | "
            f"{world}: {', '.join(map(str, r['seeds']))} | {base[0]:.2f} ± {base[1]:.2f} | "
            f"{_gain(by, TRUE_LABELS)} | "
            f"{others} | {r['seconds'] / 60:.0f} |")
    return atomic_write_text(out / "regimes.md",
                             "\n".join(lines + _fit_lines(records) + _world_class_lines(records)) + "\n")


def _trio(mean: dict[tuple[str, str], float], column: str) -> str:
    """A column's mean mIoU on the labelled, the other and the held-out frames, as ``a / b / c``."""
    return " / ".join(f"{mean[part, column]:.2f}" for part in ("labelled", "unlabelled", "held-out"))


def _fit_lines(records: list[dict[str, Any]]) -> list[str]:
    """The section of ``regimes.md`` on the regimes measured with ``--fit`` (none: no section)."""
    fitted = [r for r in records if r.get("fit")]
    if not fitted:
        return []
    lines = ["", "## Do the students fit what they learn from?", "",
             "Regimes measured with `--fit`: mean mIoU over the seeds on the training records' "
             "human-labelled frames (every column learns from them), on their other frames (only the "
             "generated labels show them; Baseline never sees them) and on the held-out frames (the "
             "table's score). A student short of views scores far above its held-out score on what it "
             "learnt from, and there the labels of more frames can help; a student that scores alike "
             "on all three is limited by what it can fit. `ceiling − Baseline on other frames`: what "
             "training on those very frames' true labels taught the student about them.",
             "",
             "| regime | frames: labelled / other | Baseline: labelled / other / held-out | "
             "ceiling: labelled / other / held-out | ceiling − Baseline on other frames |",
             "|---|---:|---:|---:|---:|"]
    for r in fitted:
        g, fit = r["regime"], r["fit"]
        mean = {(part, column): mean_std(values)[0] for part, cells in fit["cells"].items()
                for column, values in cells.items()}
        for column, values in r["cells"].items():
            mean["held-out", column] = mean_std(values)[0]

        lines.append(
            f"| {g['world_fps']:g} frames/s{_density(g)}, {g['arch']}{_start(g)}{_teacher(g)}, "
            f"{g['cell_iters']} × {g['cell_crop'][0]}×{g['cell_crop'][1]}, world {g['world_seed']} | "
            f"{fit['frames']['labelled']} / {fit['frames']['unlabelled']} | {_trio(mean, 'baseline')} | "
            f"{_trio(mean, TRUE_LABELS)} | "
            f"{mean['unlabelled', TRUE_LABELS] - mean['unlabelled', 'baseline']:+.2f} |")
    return lines + _per_class_lines([r for r in fitted if r["fit"].get("per_class")])


def _world_class_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per class, for each regime scored on another world with its per-class IoU: Baseline's IoU
    there and, in brackets, every other column's change of it (none scored so: no lines)."""
    records = [r for r in records if r.get("score_world", {}).get("per_class")]
    if not records:
        return []
    per_class = [r["score_world"]["per_class"] for r in records]
    # every column but Baseline, the ceiling first
    columns = [sorted((c for c in pc if c != "baseline"), key=lambda c: c != TRUE_LABELS) for pc in per_class]
    heads = [f"{_short(r)}, on world {r['score_world']['seed']}: Baseline ({' / '.join(cols)})"
             for r, cols in zip(records, columns, strict=True)]
    lines = ["", "Per class on the scoring world (mean IoU over the seeds): Baseline, and in brackets each "
             "other column's change of it. Where the neighbours' labels help, and whether it is the same "
             "classes on every world.", "",
             "| class | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(records)]
    seen = {c for pc in per_class for c in pc["baseline"]}
    for name in [c for c in CLASS_NAMES if c in seen]:
        cells = []
        for pc, cols in zip(per_class, columns, strict=True):
            base = pc["baseline"].get(name)
            if base is None:
                cells.append("—")
                continue
            changes = " / ".join(f"{round(pc[c][name] - base):+d}" if name in pc[c] else "—" for c in cols)
            cells.append(f"{base:.0f}" + (f" ({changes})" if changes else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _short(record: dict[str, Any]) -> str:
    """A regime in a few words: its labelled frames, student, start, iterations and world."""
    g = record["regime"]
    return (f"{record['labelled_frames']} labelled, {g['arch']}{_start(g)}{_teacher(g)}{_density(g)}, "
            f"{g['cell_iters']} it, world {g['world_seed']}")


def _per_class_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per class, for each regime measured with ``--fit``: Baseline's IoU on its labelled frames → on
    the held-out frames, and the ceiling's change of the held-out IoU (none measured: no lines)."""
    if not records:
        return []
    lines = ["", "Per class (mean IoU over the seeds): Baseline on its own labelled frames → on the held-out "
             "frames, and in brackets what the true labels of the ±k frames changed on the held-out frames. "
             "A class far better on the labelled frames than held out is one the student has seen too few "
             "instances of; the bracket says whether more views of the same records supplied them.", "",
             "| class | " + " | ".join(_short(r) for r in records) + " |",
             "|---|" + "---:|" * len(records)]
    per_class = [r["fit"]["per_class"] for r in records]
    seen = {c for pc in per_class for c in pc["held-out"]["baseline"]}
    for name in [c for c in CLASS_NAMES if c in seen]:  # in the train ids' order
        cells = []
        for pc in per_class:
            fitted, held = pc["labelled"]["baseline"].get(name), pc["held-out"]["baseline"].get(name)
            ceiling = pc["held-out"].get(TRUE_LABELS, {}).get(name)
            change = "" if ceiling is None or held is None else f" ({round(ceiling - held):+d})"
            cells.append("—" if fitted is None or held is None else f"{fitted:.0f} → {held:.0f}{change}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_table_options(parser, table=1)
    parser.add_argument("--train-records", type=int, metavar="N",
                        help="training records of the world (default: the profile's): fewer labelled "
                             "frames leave the student shorter of views")
    parser.add_argument("--partitions", type=int, metavar="N",
                        help="partitions (labelled frames) per record (default: the profile's): with "
                             "--train-records, how many streets the labelled frames come from")
    add_run_options(parser, seed=False)
    parser.add_argument("--fit", action="store_true",
                        help="also score every cell on its own training records (their labelled frames "
                             "and their other frames; needs --world-seed): does the student fit what it "
                             "learns from, and what did the neighbours' labels teach it")
    parser.add_argument("--cues", action="store_true",
                        help="also compare warp-refine's labels of the training frames with g_ψ's own "
                             "(semantic-only) per distance: pixels either labels right, and the mIoU of "
                             "the better of the two per pixel — what of the teacher Ω's labels use")
    add_jobs_option(parser)
    parser.add_argument("--out", default="figures/table1_regimes")
    args = parser.parse_args()
    args.arch = args.arch or ["DeepLabV3"]
    if len(args.arch) > 1:
        parser.error("one --arch per regime")
    try:
        run = table_run(args)
        # a regime's cells keep their own validation score; a score world scores them besides
        score_world, run = run.profile.table_score_world, run.with_profile(table_score_world=None)
        layout = {"train_records": args.train_records, "partitions_per_record": args.partitions}
        if any(layout.values()):
            run = run.with_profile(**{name: n for name, n in layout.items() if n})
        if score_world is not None:  # refused before any cell trains
            check_score_world(run, score_world, [table_world(run, "--score-world")])
        for option in ("fit", "cues"):
            if getattr(args, option):
                table_world(run, f"--{option}")  # refused before any cell trains
    except ValueError as exc:
        parser.error(str(exc))
    if not run.synthetic:
        parser.error("the ceiling trains on the true label of every generated frame: a regime is "
                     "measured on the synthetic world (leave out --dataset)")
    columns = list(dict.fromkeys([*DEFAULT_COLUMNS, *(args.policy or [])]))
    seeds = list(args.seeds or run.profile.table_seeds)
    started = time.time()
    runs = table1_runs(run, args.arch, columns, seeds, k=args.k, jobs=args.jobs)
    cells = cells_of(runs)[args.arch[0]]
    regime = regime_of(run, args)
    worlds = [regime["world_seed"]] if regime["world_seed"] is not None else seeds
    change = {seed: neighbour_change(run.with_seed(seed), [1, regime["k"]]) for seed in worlds}
    mean_change = {d: round(sum(c[d] for c in change.values()) / len(change), 2) for d in (1, regime["k"])}
    gains = gains_over(cells, "baseline")
    prof = run.profile
    print(f"\n{regime['arch']}, {prof.name} profile, world at {regime['world_fps']:g} frames/s with "
          f"{prof.train_records} training records, {prof.table_iters} iterations per cell at "
          f"{'×'.join(map(str, regime['cell_crop']))}, generated frames within ±{regime['k']}; "
          f"scored on {'every frame' if prof.table_eval == 'every' else 'the labelled frames'}")
    for name, values in cells.items():
        mean, std = mean_std(values)
        print(f"  {name:<22} {mean:6.2f} ± {std:4.2f}  [{', '.join(f'{v:.2f}' for v in values)}]")
    print(gains_report(gains, "Baseline", label="  "))
    print("  pixels whose true label differs from the labelled frame's: "
          + " / ".join(f"±{d} {v:.1f} %" for d, v in mean_change.items()))
    elsewhere = None
    if score_world is not None:
        elsewhere = score_on_world(run, args.arch[0], columns, seeds, args.k, score_world)
        for name, values in elsewhere["cells"].items():
            mean, std = mean_std(values)
            print(f"  on world {score_world}: {name:<12} {mean:6.2f} ± {std:4.2f}  "
                  f"[{', '.join(f'{v:.2f}' for v in values)}]")
        print(gains_report(elsewhere["gains"], "Baseline", label=f"  on world {score_world}: "))
    fit = None
    if args.fit:
        fit = score_fit(run, args.arch[0], columns, seeds, args.k)
        for part, cells_there in fit["cells"].items():
            for name, values in cells_there.items():
                mean, std = mean_std(values)
                print(f"  on the training records' {part} frames ({fit['frames'][part]}): {name:<12} "
                      f"{mean:6.2f} ± {std:4.2f}")
        fitted, held = fit["per_class"]["labelled"]["baseline"], fit["per_class"]["held-out"]["baseline"]
        print("  Baseline per class, its labelled frames → held-out: "
              + ", ".join(f"{c} {fitted[c]:.0f} → {held[c]:.0f}" for c in CLASS_NAMES
                          if c in held and c in fitted))
    cues = None
    if args.cues:
        cues = cue_headroom(run, args.k)
        print("  labels of the training frames, warp-refine / g_ψ alone / either right (pixels %), "
              "mIoU of warp-refine / g_ψ alone / the better of the two per pixel:")
        for d, c in cues.items():
            print(f"    d={d:>2}: {c['warp_refine_right']:.1f} / {c['semantic_right']:.1f} / "
                  f"{c['either_right']:.1f}   {c['miou_warp_refine']:.1f} / {c['miou_semantic']:.1f} / "
                  f"{c['miou_better_of_two']:.1f}")
    out = Path(args.out)
    key = {**regime, "columns": sorted(columns), "seeds": seeds,
           **({"score_world": score_world} if elsewhere else {})}
    target = out / "regimes" / f"{config_hash(key)}.json"
    seconds = round(time.time() - started, 1)
    before = json.loads(target.read_text()) if target.is_file() else {}
    if before:  # measured before: its cells were reused now, the first run's time is the cost
        seconds = max(seconds, before["seconds"])
    fit = fit or before.get("fit")  # a run without --fit keeps what an earlier one measured
    cues = cues or before.get("cues")
    path = atomic_write_json(target, {
        "regime": regime, "seeds": seeds, "labelled_frames": prof.train_records * prof.partitions_per_record,
        "cells": cells, "runs": runs, "gains": gains, "neighbour_change": mean_change, "seconds": seconds,
        **({"score_world": elsewhere} if elsewhere else {}), **({"fit": fit} if fit else {}),
        **({"cues": cues} if cues else {})})
    print(f"→ {path}, {write_summary(out)}")


if __name__ == "__main__":
    main()
