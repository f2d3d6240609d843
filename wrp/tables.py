"""Tables 1 and 2 of the supplementary: segmenters trained with each label policy, over seeds.

Every cell is one segmenter trained by the shared engine on the human labels mixed 30/70 with a
policy's generated labels (``wrp.mixing``), for the profile's fixed number of iterations — every
row gets the same budget — and scored on the held-out records' labelled frames, or on all their
frames (the profile's ``table_eval``). A cell is a cached stage (``segmenter``): a finished cell
is never recomputed, a killed one resumes. On one world (the profile's ``table_world_seed``) the
seeds are the segmenters' own: every column of a seed starts from the same weights, and each
column's gain over Baseline pairs seed by seed (:func:`gains_over`: mean and 95 % t-interval).
Every cell of every seed is also written in long form (:func:`write_runs`).

- **Table 1**: architectures × label policies (Baseline = human labels only; motion-only labels
  from frames ±2, as the paper's note says; semantic-only and warp-refine from ±k), then the
  ceiling (the world's true labels of the same frames) and warp-refine's confident pixels.
- **Table 2**: the relaxed label loss ablation: an under-trained baseline (a third of the
  iterations, the LR / 8 — how Zhu et al.'s baseline compares with the others), Baseline B trained
  as long as the rest, B + RLL, and B + RLL + motion-only labels from ±3 (``D^m_3``).
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from wrp.data import Manifest, read_label
from wrp.io import atomic_write_text
from wrp.metrics import mean_std, paired_interval
from wrp.paper import ARCHS, CONFIDENT, TABLE1, TABLE1_COLUMNS, TABLE2, TABLE2_ROWS, TRUE_LABELS
from wrp.profiles import Profile, Run
from wrp.runtime import usable_cores
from wrp.stages import (
    MOTION_ONLY_K,
    PRETRAIN_SEED,
    cell_inputs,
    every_frame_samples,
    manifest_for,
    train_cell,
    true_label,
)
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


def neighbour_examples(run: Run, frame_rates: list[float], d: int | None = None) -> list[dict[str, Any]]:
    """For each frame rate, the first training partition of the world rendered at that rate: its
    labelled frame and the frame ``d`` (default: the profile's k) after it, with their true labels
    and the share of pixels that differ over all training partitions (:func:`neighbour_change`) —
    what :func:`wrp.viz.neighbour_change_figure` draws."""
    d = d or run.profile.k
    if not 1 <= d <= run.profile.k:
        raise ValueError(f"d={d} must lie in 1..{run.profile.k} (the profile's propagation range)")
    out = []
    for fps in frame_rates:
        world = run.with_profile(fps=float(fps))
        manifest = Manifest.load(manifest_for(world))
        clip = manifest.clips("train")[0]
        truth = manifest.ground_truth("train")
        later = true_label(truth, clip.clip_id, clip.labelled + d, "neighbour_examples")
        out.append({"fps": float(fps), "d": d, "image": clip.image(clip.labelled),
                    "label": read_label(clip.human_label), "image_d": clip.image(clip.labelled + d),
                    "label_d": read_label(later), "share": neighbour_change(world, [d])[d]})
    return out


def _check_names(given: list[str], known: Any, what: str) -> None:
    unknown = [name for name in given if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")


COLUMNS = TABLE1_COLUMNS  # the paper's four, the ceiling and the confident-pixels variant
#: One row of ``table{1,2}_runs.csv``: a cell of one seed (``policy``: Table 1's column or
#: Table 2's row), the world its labels came from, its mIoU and the frames that scored it
RUN_FIELDS = ("arch", "policy", "seed", "world_seed", "miou", "eval_frames")


def default_columns(run: Run) -> list[str]:
    """Table 1's columns for this run: all of :data:`COLUMNS` on data that labels every frame
    (the synthetic world), the ceiling left out elsewhere."""
    return [c for c in COLUMNS if run.synthetic or c != TRUE_LABELS]


def _world_seed(run: Run, world_seed: int | None) -> int | None:
    return world_seed if world_seed is not None else run.profile.table_world_seed


def _check_scoring(run: Run, seeds: list[int], world_seed: int | None) -> None:
    """Before any cell trains: every frame can score the cells where the profile asks for it, and
    a scoring world (``table_score_world``) is one no cell learns from."""
    trained = [world_seed] if world_seed is not None else seeds
    if run.profile.table_score_world is not None:
        check_score_world(run, run.profile.table_score_world, trained)
    elif run.profile.table_eval == "every":
        for seed in trained:
            every_frame_samples(run.with_seed(seed))


def check_score_world(run: Run, world: int, trained: list[int]) -> None:
    """An error unless synthetic world ``world`` can score the cells trained on the worlds of
    ``trained``: the run reads the synthetic world, and ``world`` is neither one of those nor the
    world pretraining reads (its frames are rendered here, before any cell trains)."""
    if run.dataset is not None:
        raise ValueError(f"a score world ({world}) scores every cell on a synthetic world, and this run "
                         f"reads {run.dataset}, whose validation records score it; give --score-world none")
    if world in (*trained, PRETRAIN_SEED):
        role = "a world the cells train on" if world in trained else "the world pretraining reads"
        raise ValueError(f"score world {world} is {role}; score on another seed (--score-world SEED)")
    every_frame_samples(run.with_seed(world), ("train", "val"))


def _run_row(arch: str, column: str, seed: int, world_seed: int | None,
             cell: dict[str, Any]) -> dict[str, Any]:
    record = Path(cell["stage"]) / "stage.json" if cell.get("stage") else None
    threads = json.loads(record.read_text()).get("threads") if record and record.is_file() else None
    return {"arch": arch, "policy": column, "seed": seed,
            "world_seed": seed if world_seed is None else world_seed,
            "miou": cell["miou"], "eval_frames": cell["eval_frames"],
            "per_class_iou": cell.get("per_class_iou", {}),  # not in the csv: read by class_gains
            "threads": threads}  # not in the csv: the note says it (_write)


def table1_runs(run: Run, archs: list[str] | None = None, policies: list[str] | None = None,
                seeds: list[int] | None = None, world_seed: int | None = None,
                k: int | None = None, jobs: int = 1) -> list[dict[str, Any]]:
    """Every (architecture, column, seed) cell of Table 1 as one row of :data:`RUN_FIELDS`.

    Each seed (default: the profile's ``table_seeds``) is its own world, split, ``g_ψ``, Ω and
    segmenter; with ``world_seed`` (default: the profile's ``table_world_seed``) every cell uses
    that one world and its labels, and ``seeds`` are the segmenters' training seeds — the same
    initial weights for every column of a seed, so their gains pair (on a prepared dataset, which
    has one split, both are the models' seeds). ``policies`` default to :func:`default_columns`.
    ``k`` (default: the profile's) is how far from their labelled frame semantic-only, warp-refine
    and the true labels are taken; motion-only keeps ±2. ``jobs``: cells trained at once
    (:func:`train_cells`)."""
    archs = list(dict.fromkeys(archs or run.profile.table_archs))
    policies = list(dict.fromkeys(policies or default_columns(run)))
    _check_names(archs, ARCHS, "architecture")
    _check_names(policies, COLUMNS, "policy")
    if TRUE_LABELS in policies and not run.synthetic:
        raise ValueError(f"the {TRUE_LABELS} column trains on the true label of every generated frame, and "
                         f"{run.dataset} labels only the labelled frames; leave it out (--policy …)")
    seeds = list(seeds if seeds is not None else run.profile.table_seeds)
    world_seed = _world_seed(run, world_seed)
    _check_scoring(run, seeds, world_seed)
    grid = [(name, policy, seed) for name in archs for policy in policies for seed in seeds]
    specs = [{"run": run.with_seed(seed if world_seed is None else world_seed), "arch": ARCHS[name],
              "policy": policy, "k": MOTION_ONLY_K if policy == "motion-only" else k,
              "train_seed": None if world_seed is None else seed} for name, policy, seed in grid]
    cells = train_cells(specs, jobs, "Table 1", [f"{n} · {policy} · seed {seed}" for n, policy, seed in grid])
    return [_run_row(name, policy, seed, world_seed, cell)
            for (name, policy, seed), cell in zip(grid, cells, strict=True)]


def _cell_worker(threads: int, cell: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """One cell in a process of :func:`train_cells`' pool, computing with ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    started = time.time()
    return train_cell(**cell), time.time() - started


def train_cells(cells: list[dict[str, Any]], jobs: int = 1, title: str = "cells",
                names: list[str] | None = None) -> list[dict[str, Any]]:
    """Train the table cells ``cells`` (keyword arguments of :func:`~wrp.stages.train_cell`, each with
    its ``run``) and return what each returns, in order.

    ``jobs`` > 1 trains that many cells at once, each in its own process computing with
    ``cores // jobs`` threads (at least one): on two CPU cores, two cells of one thread each train
    more images per second than one cell of two threads (``benchmarks/cell_jobs.py``). What the
    cells share — the world, ``g_ψ``, Ω, the generated labels, the pretrained weights
    (:func:`~wrp.stages.cell_inputs`) — is built first, here, so no cell waits on another's labels
    and every shared stage is built at this process's thread count whatever ``jobs`` is. A cell's
    numbers depend on the threads it trained with (its ``stage.json`` records them), not on
    ``jobs`` as such: ``--jobs 2`` on two cores gives the numbers of ``OMP_NUM_THREADS=1`` one cell
    after another (a single cell too). A finished cell is reused whatever trained it; when one
    fails, the cells already running finish (and are kept), the rest are not started, and the error
    is raised. ``title`` and ``names`` (one per cell) label the line printed as each cell finishes."""
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be ≥ 1")
    if jobs == 1:
        return [train_cell(**cell) for cell in cells]
    progress = any(cell["run"].progress for cell in cells)
    shared = dict.fromkeys((cell["run"], cell.get("arch", "msa_hrnet_ocr"), cell.get("policy"), cell.get("k"),
                            cell.get("labels")) for cell in cells)  # the seeds of a column share them
    for inputs in shared:  # built once, here, before the pool
        cell_inputs(*inputs)
    threads = max(1, usable_cores() // jobs)
    quiet = [{**cell, "run": replace(cell["run"], progress=False)} for cell in cells]  # one line per cell
    if progress:
        print(f"[wrp] {title}: {len(cells)} cells, {jobs} at a time, {threads} thread(s) each", flush=True)
    out: list[dict[str, Any] | None] = [None] * len(cells)
    started = time.time()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_cell_worker, threads, cell): i for i, cell in enumerate(quiet)}
        try:
            for done, future in enumerate(as_completed(futures), 1):
                i = futures[future]
                out[i], seconds = future.result()
                if progress:
                    print(f"[wrp] {title}: {done}/{len(cells)} {names[i] if names else f'cell {i}'} → "
                          f"{out[i]['miou']:.2f} mIoU ({seconds / 60:.1f} min; "
                          f"{(time.time() - started) / 60:.0f} min so far)", flush=True)
        except BaseException as exc:
            pool.shutdown(wait=True, cancel_futures=True)  # the running cells finish and are kept
            if isinstance(exc, BrokenProcessPool):
                raise RuntimeError(f"a process training {title} died (out of memory, killed, or it could not "
                                   "start: its error is printed above); the cells it finished are kept and "
                                   "a rerun resumes the others") from None
            raise
    return out  # type: ignore[return-value]


def cells_of(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """``{arch: {column: [mIoU per seed]}}`` of :func:`table1_runs` / :func:`table2_runs` rows,
    seeds in the order run (so two columns' lists pair seed by seed)."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        out.setdefault(row["arch"], {}).setdefault(row["policy"], []).append(row["miou"])
    return out


def table1(run: Run, archs: list[str] | None = None, policies: list[str] | None = None,
           seeds: list[int] | None = None, world_seed: int | None = None,
           k: int | None = None) -> dict[str, dict[str, list[float]]]:
    """mIoU per seed of every (architecture, column) cell: ``{arch name: {policy: [mIoU, …]}}``
    (:func:`table1_runs` grouped by :func:`cells_of`)."""
    return cells_of(table1_runs(run, archs, policies, seeds, world_seed, k))


def table2_runs(run: Run, rows: list[str] | None = None, seeds: list[int] | None = None,
                arch: str | None = None, world_seed: int | None = None,
                jobs: int = 1) -> list[dict[str, Any]]:
    """Every (row, seed) cell of Table 2 as one row of :data:`RUN_FIELDS` (``policy``: the Table 2
    row). ``arch`` (a name of :data:`ARCHS`) defaults to the first of the profile's
    ``table_archs``, so Baseline B is Table 1's Baseline cell (trained once); ``world_seed`` as in
    :func:`table1_runs`, ``jobs`` too."""
    names = list(dict.fromkeys(rows or TABLE2_ROWS))
    _check_names(names, TABLE2_ROWS, "Table 2 row")
    arch = arch or table2_arch(run.profile)
    seeds = list(seeds if seeds is not None else run.profile.table_seeds)
    world_seed = _world_seed(run, world_seed)
    _check_scoring(run, seeds, world_seed)
    grid = [(row, seed) for row in names for seed in seeds]
    specs = [{"run": run.with_seed(seed if world_seed is None else world_seed), "arch": ARCHS[arch],
              **{key: TABLE2_ROWS[row][key] for key in ("policy", "k", "loss", "iters_share", "lr_factor")},
              "train_seed": None if world_seed is None else seed} for row, seed in grid]
    cells = train_cells(specs, jobs, "Table 2", [f"{row} · seed {seed}" for row, seed in grid])
    return [_run_row(arch, row, seed, world_seed, cell)
            for (row, seed), cell in zip(grid, cells, strict=True)]


def table2(run: Run, rows: list[str] | None = None, seeds: list[int] | None = None,
           arch: str | None = None, world_seed: int | None = None) -> dict[str, list[float]]:
    """mIoU per seed of every Table 2 row: ``{row: [mIoU, …]}`` (:func:`table2_runs`)."""
    return rows_of(table2_runs(run, rows, seeds, arch, world_seed))


def rows_of(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``{row: [mIoU per seed]}`` of :func:`table2_runs` rows (Table 2 has one architecture)."""
    return next(iter(cells_of(runs).values()))


def write_runs(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """``table{1,2}_runs.csv``: one line per cell and seed, in long form (:data:`RUN_FIELDS`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RUN_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(Path(path), buffer.getvalue())


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``table{1,2}_runs.csv`` that :func:`write_runs` wrote, typed again (seeds and
    frame counts as ints, mIoU as float). A file that is not one names itself and the fix."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != RUN_FIELDS:
                raise ValueError(f"{path}: columns {reader.fieldnames} are not {list(RUN_FIELDS)}; "
                                 "write it again with `wrp table1` / `wrp table2`")
            return [{"arch": r["arch"], "policy": r["policy"], "seed": int(r["seed"]),
                     "world_seed": int(r["world_seed"]), "miou": float(r["miou"]),
                     "eval_frames": int(r["eval_frames"])} for r in reader]
    except (TypeError, KeyError) as exc:  # a short row: DictReader fills it with None
        raise ValueError(f"{path}: a row is incomplete ({exc}); write it again with `wrp table1` / "
                         "`wrp table2`") from exc


def published_runs(folder: str | Path, table: int = 1) -> list[dict[str, Any]]:
    """Every run of Table ``table`` written under ``folder``: its ``table{n}_runs.csv`` and those of
    its subfolders (a second world seed written with ``--out figures/table1_world_seed1``), each
    (architecture, column, seed, world seed) once. Empty when none was written."""
    folder, seen, rows = Path(folder), set(), []
    for path in [folder / f"table{table}_runs.csv", *sorted(folder.glob(f"*/table{table}_runs.csv"))]:
        if not path.is_file():
            continue
        for row in read_runs(path):
            key = (row["arch"], row["policy"], row["seed"], row["world_seed"])
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return rows


def gains_by_world(rows: list[dict[str, Any]],
                   reference: str = "baseline") -> dict[tuple[str, int], list[dict[str, Any]]]:
    """:func:`gains_over` ``reference`` for each (architecture, world seed) of a runs file's rows:
    within one world the cells differ by their labels and the segmenter's seed only, so their gains
    pair seed by seed. A column that lacks one of the reference's seeds is compared unpaired."""
    groups: dict[tuple[str, int], dict[str, dict[int, float]]] = {}
    for row in rows:
        cells = groups.setdefault((row["arch"], row["world_seed"]), {})
        cells.setdefault(row["policy"], {})[row["seed"]] = row["miou"]
    out = {}
    for key, cells in groups.items():
        if reference not in cells:
            continue
        seeds = sorted(cells[reference])
        columns = {column: ([by_seed[s] for s in seeds] if set(seeds) <= set(by_seed)
                            else list(by_seed.values()))
                   for column, by_seed in cells.items()}
        out[key] = gains_over(columns, reference)
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


def class_gains(runs: list[dict[str, Any]], reference: str = "baseline") -> dict[str, dict[str, Any]]:
    """Where each column's gain over ``reference`` comes from, per architecture:
    ``{arch: {"classes": n, "gains": {column: {class: mean IoU change}}}}``, each change the mean
    over the seeds (and worlds) that have both cells of the class's IoU difference — paired as
    :func:`gains_over` pairs the mIoU. A class's share of the mIoU gain is its change / ``n``, the
    number of classes the reference cells' mIoU averages. Rows without per-class IoU (a runs file
    read back) are left out; an architecture with none is absent."""
    cells = {(row["arch"], row["policy"], row["seed"], row["world_seed"]): row["per_class_iou"]
             for row in runs if row.get("per_class_iou")}
    classes: dict[str, int] = {}
    diffs: dict[str, dict[str, dict[str, list[float]]]] = {}  # arch → column → class → per seed
    for (arch, policy, seed, world), ious in cells.items():
        ref = cells.get((arch, reference, seed, world))
        if policy == reference or ref is None:
            continue
        classes.setdefault(arch, len(ref))
        per_class = diffs.setdefault(arch, {}).setdefault(policy, {})
        for name in ref.keys() & ious.keys():
            per_class.setdefault(name, []).append(ious[name] - ref[name])
    return {arch: {"classes": classes[arch],
                   "gains": {policy: {name: float(np.mean(d)) for name, d in per.items()}
                             for policy, per in columns.items()}}
            for arch, columns in diffs.items()}


def class_gains_markdown(entry: dict[str, Any], reference: str, top: int = 8) -> list[str]:
    """Markdown rows of one architecture's :func:`class_gains`: the ``top`` classes whose IoU any
    column changed most, each change with its share of the mIoU gain in brackets."""
    gains, n = entry["gains"], entry["classes"]
    names = sorted({c for per in gains.values() for c in per},
                   key=lambda c: -max(abs(per.get(c, 0.0)) for per in gains.values()))[:top]
    columns = list(gains)
    lines = ["| class | " + " | ".join(HEADINGS.get(c, c) for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name in names:
        cells = [f"{gains[c][name]:+.1f} ({gains[c][name] / n:+.2f})" if name in gains[c] else ""
                 for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"IoU change over {reference}, mean over the paired seeds; in brackets its share of the "
              f"mIoU gain (the change / {n} classes scored). The {len(names)} classes changed most."]
    return lines


def _class_sections(runs: list[dict[str, Any]] | None, reference: str) -> list[str]:
    md: list[str] = []
    for arch, entry in class_gains(runs or [], reference).items():
        md += ["", f"**{arch}**: where the gain comes from, per class", ""]
        md += class_gains_markdown(entry, HEADINGS.get(reference, reference))
    return md


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
    warp-refine labels gain ≥ 1.5 mIoU, resolved — the lower end of the 95 % interval of the gain
    paired by seed above 0 (with one seed, or cells holding different numbers of seeds: the gain
    above 2 × the larger std of the two cells) — and motion-only labels gain less than warp-refine's."""
    checks = {}
    for arch, rows in gains.items():
        by = {g["column"]: g for g in rows}
        if "warp-refine" in by:
            refine = by["warp-refine"]
            checks[f"{arch}: warp-refine ≥ Baseline + 1.5"] = refine["gain"] >= 1.5
            if refine.get("paired_ci95"):
                name = f"{arch}: warp-refine − Baseline, paired 95 % CI above 0"
                checks[name] = refine["paired_ci95"][0] > 0
            else:
                checks[f"{arch}: warp-refine gain > 2 std"] = refine["gain"] > refine["two_std"]
            if "motion-only" in by:
                checks[f"{arch}: motion-only gains less than warp-refine"] = (
                    by["motion-only"]["gain"] < refine["gain"])
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
    world_seed = _world_seed(run, world_seed)
    archs = list(archs or (prof.table_archs if table == 1 else [table2_arch(prof)]))
    crop = "×".join(map(str, prof.frame_crop(prof.table_crop)))
    over = ("seed(s) " if world_seed is None
            else f"one world (seed {world_seed}) and its labels, training seed(s) ")
    if run.dataset is not None:
        data = f"the prepared dataset {run.dataset}"
    else:
        data = f"the synthetic world at {prof.fps:g} frames/s" if prof.fps else "the synthetic world"
        if prof.density is not None:
            data += f" with {prof.density:g}× its vehicles, persons and riders"
        data += (f" ({prof.train_records * prof.partitions_per_record} labelled frames: "
                 f"{prof.train_records} training records × {prof.partitions_per_record} partition"
                 f"{'s' if prof.partitions_per_record > 1 else ''})")
    reach = (f"; generated labels from ±{k if k is not None else prof.k} frames, motion-only's from "
             f"±{MOTION_ONLY_K} (warp-refine's confident pixels: confidence ≥ {prof.table_min_confidence:g})"
             ) if table == 1 else ""
    if prof.table_min_class_pixels != 1:
        reach += (f"; class-uniform sampling counts a class of the generated labels in a tile from "
                  f"{prof.table_min_class_pixels} pixels on")
    start = (f"fine-tuned from its architecture pretrained on the `{prof.table_pretrain}` style's world "
             f"(seed {PRETRAIN_SEED}), " if prof.table_pretrain else "from random weights, ")
    if table == 1 and prof.teacher_pretrain:
        reach += (f"; g_ψ fine-tuned from MSA-HRNet-OCR pretrained on the `{prof.teacher_pretrain}` "
                  f"style's world (seed {PRETRAIN_SEED})")
    if table == 1 and prof.inpaint == "semantic":
        reach += f"; Ω reads g_ψ's label where the motion fails (inpaint={prof.inpaint})"
    scored = (f"every frame of every record of world {prof.table_score_world} (seen by no cell)"
              if prof.table_score_world is not None else
              "every frame of the held-out records" if prof.table_eval == "every"
              else "the held-out records' labelled frames")
    text = (f"ours: {prof.name} profile on {data}, mean ± std over {over}"
            f"{', '.join(map(str, seeds))}; every cell {start}{prof.table_iters} iterations of batch "
            f"{prof.batch_size} at {crop} crops{reach}; scored on {scored}; the paper's numbers are "
            "Cityscapes val.")
    reduced, more = [], []
    if table == 1 and len(archs) < len(ARCHS):
        reduced.append(f"{len(archs)} of the {len(ARCHS)} architectures ({', '.join(archs)})")
        more.append(" ".join(f"--arch {a}" for a in ARCHS))
    if len(seeds) < 3:
        reduced.append(f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} instead of 3 "
                       "(± is 0 for one seed)")
        more.append("--seeds 0 1 2")
    if reduced:
        text += (" **Reduced grid**: " + "; ".join(reduced) + f". `wrp table{table} --profile "
                 f"{prof.name} {' '.join(more)}` runs more; `--profile paper --dataset DIR` the paper's "
                 "grid.")
    return text


def score_name(profile: Profile) -> str:
    """What a cell's mIoU was measured on, in a few words (a figure's axis and title)."""
    if profile.table_score_world is not None:
        return f"mIoU on world {profile.table_score_world}"
    return "validation mIoU"


def figure_title(run: Run, table: int, seeds: list[int]) -> str:
    """The title of a table's bar figure: which table, profile and — on one world — the world the
    cells trained on, what scored them, and over which seeds."""
    world = run.profile.table_world_seed if run.synthetic else None
    where = f", trained on world {world}" if world is not None else ""
    kind = "training seeds" if world is not None else "seeds"
    return (f"Table {table} ({run.profile.name} profile{where}): {score_name(run.profile)}, "
            f"mean ± std over {kind} {list(seeds)}, dots = single seeds")


def _cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f} ± {std:.2f}"


#: How a column is headed in ``table1.md`` (the csv keeps the names ``--policy`` takes)
HEADINGS = {"baseline": "Baseline", TRUE_LABELS: "true labels (ceiling)",
            CONFIDENT: "warp-refine, confident pixels"}


def gains_markdown(gains: list[dict[str, Any]], reference: str) -> list[str]:
    """Markdown rows of :func:`gains_over`: each column's mean gain over ``reference``, its 95 %
    interval paired by seed and the gain of every seed."""
    lines = [f"| over {reference} | mean gain | paired 95 % CI | per seed |", "|---|---:|---:|---|"]
    for g in gains:
        ci = f"[{g['paired_ci95'][0]:+.2f}, {g['paired_ci95'][1]:+.2f}]" if g.get("paired_ci95") else "—"
        seeds = " / ".join(f"{d:+.2f}" for d in g["per_seed"]) if g.get("per_seed") else "—"
        lines.append(f"| {HEADINGS.get(g['column'], g['column'])} | {g['gain']:+.2f} | {ci} | {seeds} |")
    return lines


def write_table1(results: dict[str, dict[str, list[float]]], stem: str | Path, note: str = "",
                 runs: list[dict[str, Any]] | None = None) -> list[Path]:
    """``<stem>.csv`` (one row per architecture, one column per policy, ``mean ± std``) and
    ``<stem>.md`` with the paper's Cityscapes numbers beside ours, labelled as the paper's, and
    every column's gain over Baseline paired by seed; with ``runs`` (:func:`table1_runs`) also
    ``<stem>_runs.csv``, every cell of every seed in long form."""
    policies = list(dict.fromkeys(p for cells in results.values() for p in cells))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "source", *policies])
    for name, cells in results.items():
        writer.writerow([name, "ours", *[_cell(cells[p]) if p in cells else "" for p in policies]])
        paper = TABLE1.get(name, {})
        writer.writerow([name, "paper (Cityscapes val, mean of 3 seeds)",
                         *[f"{paper[p]:.2f}" if p in paper else "" for p in policies]])
    md = ["| model | source | " + " | ".join(HEADINGS.get(p, p) for p in policies) + " |",
          "|---|---|" + "---:|" * len(policies)]
    for name, cells in results.items():
        ours = [_cell(cells[p]) if p in cells else "" for p in policies]
        md.append(f"| {name} | ours | " + " | ".join(ours) + " |")
        paper = TABLE1.get(name, {})
        md.append(f"| {name} | *paper, Cityscapes* | "
                  + " | ".join(f"*{paper[p]:.2f}*" if p in paper else "" for p in policies) + " |")
    for name, cells in results.items():
        if "baseline" in cells and len(cells) > 1:
            md += ["", f"**{name}**: gain of each column over Baseline (ours), paired by seed", ""]
            md += gains_markdown(gains_over(cells, "baseline"), "Baseline")
    md += _class_sections(runs, "baseline")
    return _write(stem, buffer.getvalue(), "\n".join(md), note, runs)


def _write(stem: str | Path, table_csv: str, table_md: str, note: str,
           runs: list[dict[str, Any]] | None) -> list[Path]:
    stem = Path(stem)
    threads = sorted({row["threads"] for row in runs or [] if row.get("threads")})
    if threads:  # a CPU cell repeats its numbers only at the thread count it trained with
        said = " or ".join(map(str, threads))
        note += (" " if note else "") + f"Cells trained with {said} torch thread(s) each."
    paths = [atomic_write_text(stem.with_suffix(".csv"), table_csv),
             atomic_write_text(stem.with_suffix(".md"), table_md + ("\n\n" + note if note else "") + "\n")]
    runs_path = stem.with_name(stem.name + "_runs.csv")
    if runs is not None:
        paths.append(write_runs(runs, runs_path))
    else:  # a runs file of an earlier grid must not stand beside this table
        runs_path.unlink(missing_ok=True)
    return paths


def write_table2(results: dict[str, list[float]], stem: str | Path, note: str = "",
                 runs: list[dict[str, Any]] | None = None) -> list[Path]:
    """``<stem>.csv`` / ``.md``: one row per setting, ``mean ± std``, beside the paper's numbers
    (no extra data) where the paper has a matching row, and every row's gain over Baseline B
    paired by seed; with ``runs`` (:func:`table2_runs`) also ``<stem>_runs.csv``."""
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
    if "Baseline B" in results and len(results) > 1:
        md += ["", "Gain of each row over Baseline B (ours), paired by seed", ""]
        md += gains_markdown(gains_over(results, "Baseline B"), "Baseline B")
        md += _class_sections(runs, "Baseline B")
    return _write(stem, buffer.getvalue(), "\n".join(md), note, runs)


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
