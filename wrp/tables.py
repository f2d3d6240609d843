"""Tables 1 and 2 of the supplementary: segmenters trained with each label policy, over seeds.

Every cell is one segmenter trained by the shared engine on the human labels mixed 30/70 with a
policy's generated labels (``wrp.mixing``), for the profile's fixed number of iterations — every
row gets the same budget — and scored on the held-out records' labelled frames. A cell is a cached
stage (``segmenter``): a finished cell is never recomputed, a killed one resumes.

- **Table 1**: architectures × label policies (Baseline = human labels only; motion-only labels
  from frames ±2, as the paper's note says; semantic-only and warp-refine from ±k).
- **Table 2**: the relaxed label loss ablation: an under-trained baseline (a third of the
  iterations, the LR / 8 — how Zhu et al.'s baseline compares with the others), Baseline B trained
  as long as the rest, B + RLL, and B + RLL + motion-only labels from ±3 (``D^m_3``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from wrp.data import Manifest, read_label
from wrp.io import atomic_write_text
from wrp.metrics import mean_std, paired_interval
from wrp.paper import ARCHS, TABLE1, TABLE1_POLICIES, TABLE2, TABLE2_ROWS
from wrp.profiles import Profile, Run
from wrp.stages import MOTION_ONLY_K, manifest_for, train_cell, true_label
from wrp.train import job_from_file, load_model, predict
from wrp.viz import confusable_changes


def neighbour_change(run: Run, distances: list[int] | None = None) -> dict[int, float]:
    """How much of a labelled frame its neighbours repeat: the share (%) of pixels whose true label
    at ±d frames differs from the labelled frame's, averaged over the training partitions (both
    sides), for each d in ``distances`` (default 1, 2, 5 and the profile's k). Needs every frame's
    label (the synthetic world). Near 0, the generated frames add little a segmenter has not seen."""
    k = run.profile.k
    distances = sorted(set(distances or [1, 2, 5, k]) & set(range(1, k + 1)))
    manifest = Manifest.load(manifest_for(run))
    truth = manifest.ground_truth("train")
    shares: dict[int, list[float]] = {d: [] for d in distances}
    for clip in manifest.clips("train"):
        labelled = read_label(clip.human_label)
        for d in distances:
            for pos in (clip.labelled - d, clip.labelled + d):
                path = true_label(truth, clip.clip_id, pos, "neighbour_change")
                shares[d].append(float((read_label(path) != labelled).mean()))
    return {d: round(100 * float(np.mean(v)), 2) for d, v in shares.items()}


def _check_names(given: list[str], known: Any, what: str) -> None:
    unknown = [name for name in given if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")


def table1(run: Run, archs: list[str] | None = None, policies: list[str] | None = None,
           seeds: list[int] | None = None, world_seed: int | None = None,
           k: int | None = None) -> dict[str, dict[str, list[float]]]:
    """mIoU per seed of every (architecture, policy) cell: ``{arch name: {policy: [mIoU, …]}}``.

    Each seed (default: the profile's ``table_seeds``) is its own world, split, ``g_ψ``, Ω and
    segmenter; with ``world_seed`` every cell uses that one world and its labels, and ``seeds``
    are the segmenters' training seeds (on a prepared dataset, which has one split, both are the
    models' seeds). ``k`` (default: the profile's) is how far from their labelled frame
    semantic-only and warp-refine labels are taken; motion-only keeps ±2."""
    archs = list(archs or run.profile.table_archs)
    policies = list(policies or TABLE1_POLICIES)
    _check_names(archs, ARCHS, "architecture")
    _check_names(policies, TABLE1_POLICIES, "policy")
    seeds = list(seeds if seeds is not None else run.profile.table_seeds)
    out: dict[str, dict[str, list[float]]] = {}
    for name in archs:
        for policy in policies:
            cell_k = MOTION_ONLY_K if policy == "motion-only" else k
            out.setdefault(name, {})[policy] = [
                train_cell(run.with_seed(seed if world_seed is None else world_seed), ARCHS[name], policy,
                           cell_k, train_seed=None if world_seed is None else seed)["miou"]
                for seed in seeds]
    return out


def table2(run: Run, rows: list[str] | None = None, seeds: list[int] | None = None,
           arch: str | None = None) -> dict[str, list[float]]:
    """mIoU per seed of every Table 2 row: ``{row: [mIoU, …]}``. ``arch`` (a name of
    :data:`ARCHS`) defaults to the first of the profile's ``table_archs``, so Baseline B is
    Table 1's Baseline cell (trained once)."""
    rows = list(rows or TABLE2_ROWS)
    _check_names(rows, TABLE2_ROWS, "Table 2 row")
    arch = ARCHS[arch or table2_arch(run.profile)]
    seeds = list(seeds if seeds is not None else run.profile.table_seeds)
    out = {}
    for row in rows:
        spec = TABLE2_ROWS[row]
        out[row] = [train_cell(run.with_seed(seed), arch, spec["policy"], spec["k"], spec["loss"],
                               spec["iters_share"], spec["lr_factor"])["miou"] for seed in seeds]
    return out


def gains_over(cells: dict[str, list[float]], reference: str) -> list[dict[str, Any]]:
    """Every column's gain over ``reference`` (mean of seeds), beside the seed spread it must beat:
    2 × the larger std of the two cells. ``verdict`` says where the gain lies (one seed: no spread).
    ``per_seed`` pairs the cells seed by seed (same world, split and labels' models): the gain each
    seed saw, ``None`` when the cells hold different numbers of seeds; ``paired_ci95`` the 95 %
    t-interval of the mean paired gain (two or more paired seeds)."""
    ref_mean, ref_std = mean_std(cells[reference])
    out = []
    for column, values in cells.items():
        if column == reference:
            continue
        mean, std = mean_std(values)
        gain, spread = mean - ref_mean, 2 * max(ref_std, std)
        seeded = min(len(values), len(cells[reference])) > 1
        verdict = ("one seed: no spread to compare with" if not seeded else
                   "above the seed spread" if gain > spread else
                   "below the seed spread" if gain < -spread else "within the seed spread")
        paired = len(values) == len(cells[reference])
        per_seed = [v - r for v, r in zip(values, cells[reference], strict=True)] if paired else None
        interval = paired_interval(per_seed)[1:] if paired and len(per_seed) > 1 else None
        out.append({"column": column, "gain": round(gain, 2), "two_std": round(spread, 2),
                    "verdict": verdict, "per_seed": [round(d, 2) for d in per_seed] if paired else None,
                    "paired_ci95": [round(v, 2) for v in interval] if interval else None})
    return out


def gains_report(gains: list[dict[str, Any]], reference: str, label: str = "") -> str:
    """Rows of :func:`gains_over` as aligned text, one line per column, prefixed with ``label``."""
    width = max((len(g["column"]) for g in gains), default=0)
    return "\n".join(f"{label}{g['column']:<{width}}  {g['gain']:+6.2f} mIoU over {reference} "
                     f"(2 std = {g['two_std']:.2f}: {g['verdict']})"
                     + (f"; per seed {' / '.join(f'{d:+.2f}' for d in g['per_seed'])}"
                        if g["per_seed"] and len(g["per_seed"]) > 1 else "")
                     + (f"; paired 95 % CI [{g['paired_ci95'][0]:+.2f}, {g['paired_ci95'][1]:+.2f}]"
                        if g.get("paired_ci95") else "") for g in gains)


def table1_checks(gains: dict[str, list[dict[str, Any]]]) -> dict[str, bool]:
    """The paper's pattern in Table 1, per architecture, from :func:`gains_over` against Baseline:
    warp-refine labels gain ≥ 1.5 mIoU and more than 2 × the larger std of the two cells;
    motion-only labels stay within ±1."""
    checks = {}
    for arch, rows in gains.items():
        by = {g["column"]: g for g in rows}
        if "warp-refine" in by:
            refine = by["warp-refine"]
            checks[f"{arch}: warp-refine ≥ Baseline + 1.5"] = refine["gain"] >= 1.5
            checks[f"{arch}: warp-refine gain > 2 std"] = refine["gain"] > refine["two_std"]
            if refine.get("paired_ci95"):
                name = f"{arch}: warp-refine − Baseline, paired 95 % CI above 0"
                checks[name] = refine["paired_ci95"][0] > 0
        if "motion-only" in by:
            checks[f"{arch}: motion-only within ±1 of Baseline"] = abs(by["motion-only"]["gain"]) <= 1.0
    return checks


def table2_arch(profile: Profile) -> str:
    """Table 2's architecture (a name of ``ARCHS``): the first of the profile's ``table_archs``."""
    return profile.table_archs[0]


def grid_note(run: Run, seeds: list[int] | None = None, archs: list[str] | None = None,
              table: int = 1, world_seed: int | None = None, k: int | None = None) -> str:
    """What a table's numbers are, for the line under it: the profile and data, the seeds (training
    seeds on one world with ``world_seed``), the budget of a cell, and — where the grid is smaller
    than the paper's — what was left out."""
    prof = run.profile
    seeds = list(seeds if seeds is not None else prof.table_seeds)
    archs = list(archs or (prof.table_archs if table == 1 else [table2_arch(prof)]))
    crop = "×".join(map(str, prof.frame_crop(prof.table_crop)))
    over = ("seed(s) " if world_seed is None
            else f"the world of seed {world_seed} and its labels, training seed(s) ")
    if run.dataset is not None:
        data = f"the prepared dataset {run.dataset}"
    else:
        data = f"the synthetic world at {prof.fps:g} frames/s" if prof.fps else "the synthetic world"
    reach = f"; generated labels from ±{k if k is not None else prof.k} frames" if table == 1 else ""
    text = (f"ours: {prof.name} profile on {data}, mean ± std over {over}"
            f"{', '.join(map(str, seeds))}; every cell {prof.table_iters} iterations of batch "
            f"{prof.batch_size} at {crop} crops{reach}; the paper's numbers are Cityscapes val.")
    reduced = []
    if table == 1 and len(archs) < len(ARCHS):
        reduced.append(f"{len(archs)} of the {len(ARCHS)} architectures ({', '.join(archs)})")
    if len(seeds) < 3:
        reduced.append(f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} instead of 3 "
                       "(± is 0 for one seed)")
    if reduced:
        text += (" **Reduced grid**: " + "; ".join(reduced) + f". `wrp table{table} --profile "
                 f"{prof.name} --seeds 0 1 2` runs more; `--profile paper --dataset DIR` the paper's grid.")
    return text


def _cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f} ± {std:.2f}"


def write_table1(results: dict[str, dict[str, list[float]]], stem: str | Path, note: str = "") -> list[Path]:
    """``<stem>.csv`` (one row per architecture, one column per policy, ``mean ± std``) and
    ``<stem>.md`` with the paper's Cityscapes numbers beside ours, labelled as the paper's."""
    policies = list(dict.fromkeys(p for cells in results.values() for p in cells))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "source", *policies])
    for name, cells in results.items():
        writer.writerow([name, "ours", *[_cell(cells[p]) if p in cells else "" for p in policies]])
        paper = TABLE1.get(name, {})
        writer.writerow([name, "paper (Cityscapes val, mean of 3 seeds)",
                         *[f"{paper[p]:.2f}" if p in paper else "" for p in policies]])
    md = ["| model | source | " + " | ".join(policies) + " |", "|---|---|" + "---:|" * len(policies)]
    for name, cells in results.items():
        ours = [_cell(cells[p]) if p in cells else "" for p in policies]
        md.append(f"| {name} | ours | " + " | ".join(ours) + " |")
        paper = TABLE1.get(name, {})
        md.append(f"| {name} | *paper, Cityscapes* | "
                  + " | ".join(f"*{paper[p]:.2f}*" if p in paper else "" for p in policies) + " |")
    text = "\n".join(md) + ("\n\n" + note if note else "") + "\n"
    stem = Path(stem)
    return [atomic_write_text(stem.with_suffix(".csv"), buffer.getvalue()),
            atomic_write_text(stem.with_suffix(".md"), text)]


def write_table2(results: dict[str, list[float]], stem: str | Path, note: str = "") -> list[Path]:
    """``<stem>.csv`` / ``.md``: one row per setting, ``mean ± std``, beside the paper's numbers
    (no extra data) where the paper has a matching row."""
    def paper(row: str) -> str:
        cell = TABLE2.get(row, {}).get("none")  # our row names match the paper's own rows
        return f"{cell[0]:.2f} ± {cell[1]:.2f}" if isinstance(cell, tuple) and cell[1] is not None else ""

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["setting", "ours", "paper (Cityscapes val, no extra data)"])
    md = ["| setting | ours | *paper, Cityscapes, no extra data* |", "|---|---:|---:|"]
    for row, values in results.items():
        writer.writerow([row, _cell(values), paper(row)])
        theirs = f"*{paper(row)}*" if paper(row) else ""
        md.append(f"| {row} | {_cell(values)} | {theirs} |")
    text = "\n".join(md) + ("\n\n" + note if note else "") + "\n"
    stem = Path(stem)
    return [atomic_write_text(stem.with_suffix(".csv"), buffer.getvalue()),
            atomic_write_text(stem.with_suffix(".md"), text)]


def fig3_rows(run: Run, arch: str | None = None, policy: str = "warp-refine",
              count: int = 3) -> list[dict[str, Any]]:
    """The rows of supplementary Figure 3 (``wrp.viz.with_without_figure``): the validation frames on
    which the Baseline cell and the ``policy`` cell of Table 1 (architecture ``arch``, a name of
    :data:`ARCHS`, default the first of the profile's) disagree most on the confusable classes,
    with both predictions."""
    arch = ARCHS[arch or run.profile.table_archs[0]]
    models = {}
    for name, pol in (("baseline", None), ("refined", policy)):
        stage = Path(train_cell(run, arch, pol)["stage"])
        models[name] = load_model(job_from_file(stage / "job.json"), stage, run.device)
    clips = Manifest.load(manifest_for(run)).clips("val")
    rows = []
    for clip in clips:
        image, truth = clip.image(clip.labelled), clip.label(clip.labelled)
        row = {"image": image, "truth": truth, "name": f"{clip.clip_id}, labelled frame"}
        for name, model in models.items():
            row[name] = predict(model, image, run.device).argmax(0).numpy().astype(np.uint8)
        change = confusable_changes(row["baseline"], row["refined"], truth)
        row.update({key: int(mask.sum()) for key, mask in change.items()})
        rows.append(row)
    return sorted(rows, key=lambda r: -(r["fixed"] + r["broken"] + r["both_wrong"]))[:count]
