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
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from wrp.data import Manifest
from wrp.experiments import BASE_LR, dataset_name, manifest_for, propagate, train_segmenter
from wrp.io import atomic_write_text
from wrp.profiles import Profile, get_profile
from wrp.propagation import label_file

ARCHS = {"DeepLabV3": "deeplabv3", "OCRNet": "ocrnet", "MSA-HRNet-OCR": "msa_hrnet_ocr"}
TABLE1_POLICIES = ("baseline", "motion-only", "semantic-only", "warp-refine")
MOTION_ONLY_K = 2  # Table 1's note: motion-only labels use frames ±2
TRUE_LABELS = "true-labels"  # not a column: the dataset's own labels of the generated frames

# Table 2's rows: (loss, generated policy, ±k of the generated labels, iteration share, LR factor)
TABLE2_ROWS: dict[str, dict[str, Any]] = {
    "Baseline B, under-trained (1/3 iterations, LR / 8)": {"loss": "ce", "policy": None, "k": None,
                                                          "iters_share": 1 / 3, "lr_factor": 1 / 8},
    "Baseline B": {"loss": "ce", "policy": None, "k": None, "iters_share": 1.0, "lr_factor": 1.0},
    "B + RLL": {"loss": "rll", "policy": None, "k": None, "iters_share": 1.0, "lr_factor": 1.0},
    "B + RLL + D^m_3": {"loss": "rll", "policy": "motion-only", "k": 3, "iters_share": 1.0,
                        "lr_factor": 1.0},
}


def cell_budget(profile: str | Profile, iters: int | None = None,
                crop: tuple[int, int] | list[int] | None = None, fps: float | None = None) -> Profile:
    """``profile`` with every table cell trained for ``iters`` iterations on ``crop`` crops, on a
    synthetic world rendered at ``fps`` frames per second (None keeps the profile's ``table_iters``
    / ``table_crop`` / ``fps``): how the gaps move with a cell's budget and the world's motion."""
    return get_profile(profile, **({"table_iters": iters} if iters is not None else {}),
                       **({"table_crop": tuple(crop)} if crop is not None else {}),
                       **({"fps": fps} if fps is not None else {}))


def add_budget_arguments(parser: Any) -> None:
    """``--cell-iters``, ``--cell-crop`` and ``--world-fps`` of an ``argparse`` parser: the budget of
    every cell and the world's motion, read back by :func:`budget_from_arguments`."""
    parser.add_argument("--cell-iters", type=int,
                        help="iterations of every cell (default: the profile's table_iters) — how "
                             "the gaps change with the training budget")
    parser.add_argument("--cell-crop", type=int, nargs=2, metavar=("H", "W"),
                        help="training crop of every cell (default: the profile's table_crop); "
                             "with --arch MSA-HRNet-OCR --cell-iters 1000 --cell-crop 128 256 the "
                             "demo's cells train exactly as its g_ψ does")
    parser.add_argument("--world-fps", type=float, metavar="FPS",
                        help="render the synthetic world at FPS frames per second (default: the "
                             "profile's, 35): at 10 the car drives 3.5× further between frames, so "
                             "a partition's other frames show more street the labelled one does not")


def budget_from_arguments(parser: Any, args: Any) -> Profile:
    """The profile of ``args.profile`` with the budget of :func:`add_budget_arguments` applied; a
    bad value is the parser's error (the profile checks every field)."""
    try:
        return cell_budget(args.profile, args.cell_iters, args.cell_crop, args.world_fps)
    except ValueError as exc:
        parser.error(str(exc))


def generated_pairs(profile: str | Profile, seed: int, policy: str, k: int | None = None,
                    device: str = "auto", progress: bool = True) -> list[list[str]]:
    """(image, label) paths of a policy's labels for the training frames within ±k (default the
    profile's k) of their labelled frame, propagated first if needed (``wrp propagate``).

    ``TRUE_LABELS`` gives the dataset's own label of each of those frames instead: what a flawless
    propagation would give, the ceiling of every policy (the synthetic world labels every frame)."""
    prof = get_profile(profile)
    k = prof.k if k is None else k
    if not 1 <= k <= prof.k:
        raise ValueError(f"k={k} must lie in 1..{prof.k} (the profile's propagation range)")
    manifest = Manifest.load(manifest_for(prof, seed))
    frames = [(clip, pos) for clip in manifest.clips("train") for pos in range(len(clip))
              if 1 <= abs(pos - clip.labelled) <= k]
    if policy == TRUE_LABELS:
        truth = manifest.ground_truth("train")
        labels = [_true_label(truth, clip.clip_id, pos, prof, repr(policy)) for clip, pos in frames]
    else:
        folder = propagate(prof, seed, "train", (policy,), device=device, progress=progress)
        labels = [label_file(folder / "labels", policy, clip.frames[pos]) for clip, pos in frames]
    return [[str(clip.images[pos]), str(label)] for (clip, pos), label in zip(frames, labels, strict=True)]


def _true_label(truth: Any, clip_id: str, position: int, prof: Profile, needed_by: str) -> Path:
    """The dataset's own label of a frame, or an error naming the file when it has none."""
    path = truth.label_path(clip_id, position)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no true label of this frame in {prof.dataset}; {needed_by} "
                                "needs a dataset that labels every frame (the synthetic world)")
    return path


def neighbour_change(profile: str | Profile, seed: int,
                     distances: list[int] | None = None) -> dict[int, float]:
    """How much of a labelled frame its neighbours repeat: the share (%) of pixels whose true label
    at ±d frames differs from the labelled frame's, averaged over the training partitions (both
    sides), for each d in ``distances`` (default 1, 2, 5 and the profile's k). Needs every frame's
    label (the synthetic world). Near 0, the generated frames add little a segmenter has not seen."""
    from wrp.data import read_label

    prof = get_profile(profile)
    distances = sorted(set(distances or [1, 2, 5, prof.k]) & set(range(1, prof.k + 1)))
    manifest = Manifest.load(manifest_for(prof, seed))
    truth = manifest.ground_truth("train")
    shares: dict[int, list[float]] = {d: [] for d in distances}
    for clip in manifest.clips("train"):
        labelled = read_label(clip.human_label)
        for d in distances:
            for pos in (clip.labelled - d, clip.labelled + d):
                path = _true_label(truth, clip.clip_id, pos, prof, "neighbour_change")
                shares[d].append(float((read_label(path) != labelled).mean()))
    return {d: round(100 * float(np.mean(v)), 2) for d, v in shares.items()}


def train_cell(profile: str | Profile, seed: int, arch: str = "msa_hrnet_ocr", policy: str | None = None,
               k: int | None = None, loss: str = "ce", iters_share: float = 1.0, lr_factor: float = 1.0,
               nproc: int = 1, device: str = "auto", progress: bool = True,
               train_seed: int | None = None) -> dict[str, Any]:
    """One table cell: a segmenter trained on the human labels (+ ``policy``'s generated labels),
    with ``iters_share`` of the profile's cell iterations (``Profile.cell_iters``, at
    ``Profile.cell_crop``) and ``lr_factor`` × the dataset's base LR. ``seed`` picks the world, its
    split and the models that generate its labels; ``train_seed`` (default ``seed``) only the
    segmenter's own initialisation and sampling — the paper's protocol of one dataset, one set of
    generated labels and several training seeds.
    Returns its ``metrics.json`` (validation mIoU, per-class IoU) with the stage folder."""
    prof = get_profile(profile)
    generated = None
    if policy not in (None, "baseline"):
        k = k if k is not None else (MOTION_ONLY_K if policy == "motion-only" else None)
        generated = generated_pairs(prof, seed, policy, k, device, progress)
    overrides: dict[str, Any] = {"loss": loss, "crop": list(prof.cell_crop),
                                 "iters": max(1, round(prof.cell_iters * iters_share))}
    if lr_factor != 1.0:
        overrides["base_lr"] = BASE_LR.get(dataset_name(prof), 0.01) * lr_factor
    folder = train_segmenter(prof, seed, arch, nproc=nproc, device=device, progress=progress,
                             generated=generated, train_seed=train_seed, **overrides)
    return {**json.loads((folder / "metrics.json").read_text()), "stage": str(folder)}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table1(profile: str | Profile, archs: list[str] | None = None, policies: list[str] | None = None,
           seeds: list[int] | None = None, nproc: int = 1, device: str = "auto",
           progress: bool = True, world_seed: int | None = None,
           k: int | None = None) -> dict[str, dict[str, list[float]]]:
    """mIoU per seed of every (architecture, policy) cell: ``{arch name: {policy: [mIoU, …]}}``.

    Each seed is its own world, split, ``g_ψ``, Ω and segmenter; with ``world_seed`` every cell
    uses that one world and its labels, and ``seeds`` are the segmenters' training seeds. ``k``
    (default: the profile's) is how far from their labelled frame semantic-only and warp-refine
    labels are taken; motion-only keeps ±2."""
    prof = get_profile(profile)
    out: dict[str, dict[str, list[float]]] = {}
    for name in archs or list(prof.table_archs):
        if name not in ARCHS:
            raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHS)}")
        for policy in policies or list(TABLE1_POLICIES):
            if policy not in TABLE1_POLICIES:
                raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(TABLE1_POLICIES)}")
            out.setdefault(name, {})[policy] = [
                train_cell(prof, seed if world_seed is None else world_seed, ARCHS[name], policy,
                           None if policy == "motion-only" else k, nproc=nproc, device=device,
                           progress=progress, train_seed=None if world_seed is None else seed)["miou"]
                for seed in (seeds if seeds is not None else prof.cell_seeds)]
    return out


def table2(profile: str | Profile, rows: list[str] | None = None, seeds: list[int] | None = None,
           arch: str | None = None, nproc: int = 1, device: str = "auto",
           progress: bool = True) -> dict[str, list[float]]:
    """mIoU per seed of every Table 2 row: ``{row: [mIoU, …]}``. ``arch`` defaults to the first
    of the profile's ``table_archs``, so Baseline B is Table 1's Baseline cell (trained once)."""
    prof = get_profile(profile)
    arch = arch or ARCHS[table2_arch(prof)]
    out = {}
    for row in rows or list(TABLE2_ROWS):
        if row not in TABLE2_ROWS:
            raise ValueError(f"unknown Table 2 row {row!r}; choose from {', '.join(TABLE2_ROWS)}")
        spec = TABLE2_ROWS[row]
        out[row] = [train_cell(prof, seed, arch, spec["policy"], spec["k"], spec["loss"],
                               spec["iters_share"], spec["lr_factor"], nproc, device, progress)["miou"]
                    for seed in (seeds if seeds is not None else prof.cell_seeds)]
    return out


def gains_over(cells: dict[str, list[float]], reference: str) -> list[dict[str, Any]]:
    """Every column's gain over ``reference`` (mean of seeds), beside the seed spread it must beat:
    2 × the larger std of the two cells. ``verdict`` says where the gain lies (one seed: no spread).
    ``per_seed`` pairs the cells seed by seed (same world, split and labels' models): the gain each
    seed saw, ``None`` when the cells hold different numbers of seeds."""
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
        out.append({"column": column, "gain": round(gain, 2), "two_std": round(spread, 2),
                    "verdict": verdict,
                    "per_seed": [round(v - r, 2) for v, r in zip(values, cells[reference], strict=True)]
                    if paired else None})
    return out


def gains_report(gains: list[dict[str, Any]], reference: str, label: str = "") -> str:
    """Rows of :func:`gains_over` as aligned text, one line per column, prefixed with ``label``."""
    width = max((len(g["column"]) for g in gains), default=0)
    return "\n".join(f"{label}{g['column']:<{width}}  {g['gain']:+6.2f} mIoU over {reference} "
                     f"(2 std = {g['two_std']:.2f}: {g['verdict']})"
                     + (f"; per seed {' / '.join(f'{d:+.2f}' for d in g['per_seed'])}"
                        if g["per_seed"] and len(g["per_seed"]) > 1 else "") for g in gains)


def table2_arch(profile: str | Profile) -> str:
    """Table 2's architecture (a name of ``ARCHS``): the first of the profile's ``table_archs``."""
    return get_profile(profile).table_archs[0]


def grid_note(profile: str | Profile, seeds: list[int] | None = None, archs: list[str] | None = None,
              table: int = 1, world_seed: int | None = None) -> str:
    """What a table's numbers are, for the line under it: the profile, the seeds (training seeds
    on one world with ``world_seed``), the budget of a cell, and — where the grid is smaller than
    the paper's — what was left out."""
    prof = get_profile(profile)
    seeds = list(seeds if seeds is not None else prof.cell_seeds)
    archs = list(archs or (prof.table_archs if table == 1 else [table2_arch(prof)]))
    crop = "×".join(map(str, prof.cell_crop))
    over = ("seed(s) " if world_seed is None
            else f"the world of seed {world_seed} and its labels, training seed(s) ")
    world = f"{prof.dataset} at {prof.fps:g} frames/s" if prof.fps else prof.dataset
    text = (f"ours: {prof.name} profile ({world}), mean ± std over {over}"
            f"{', '.join(map(str, seeds))}; every cell {prof.cell_iters} iterations of batch "
            f"{prof.batch_size} at {crop} crops; the paper's numbers are Cityscapes val.")
    reduced = []
    if table == 1 and len(archs) < len(ARCHS):
        reduced.append(f"{len(archs)} of the {len(ARCHS)} architectures ({', '.join(archs)})")
    if len(seeds) < 3:
        reduced.append(f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} instead of 3 "
                       "(± is 0 for one seed)")
    if reduced:
        text += (" **Reduced grid**: " + "; ".join(reduced) + f". `wrp table{table} --profile "
                 f"{prof.name} --seeds 0 1 2` runs more; the `paper` profile runs the full grid.")
    return text


def _cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f} ± {std:.2f}"


def write_table1(results: dict[str, dict[str, list[float]]], stem: str | Path, note: str = "") -> list[Path]:
    """``<stem>.csv`` (one row per architecture, one column per policy, ``mean ± std``) and
    ``<stem>.md`` with the paper's Cityscapes numbers beside ours, labelled as the paper's."""
    from wrp.paper import TABLE1

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
    from wrp.paper import TABLE2

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


def fig3_rows(profile: str | Profile, seed: int = 0, arch: str | None = None, policy: str = "warp-refine",
              count: int = 3, device: str = "auto", progress: bool = True) -> list[dict[str, Any]]:
    """The rows of supplementary Figure 3 (``wrp.viz.with_without_figure``): the validation frames on
    which the Baseline cell and the ``policy`` cell of Table 1 (architecture ``arch``, default the
    first of the profile's) disagree most on the confusable classes, with both predictions."""
    from wrp.runtime import resolve_device
    from wrp.train import job_from_file, load_model, predict
    from wrp.viz import confusable_changes

    prof = get_profile(profile)
    arch = arch or ARCHS[prof.table_archs[0]]
    device = resolve_device(device)
    models = {}
    for name, pol in (("baseline", None), ("refined", policy)):
        stage = Path(train_cell(prof, seed, arch, pol, device=device, progress=progress)["stage"])
        models[name] = load_model(job_from_file(stage / "job.json"), stage, device)
    clips = Manifest.load(manifest_for(prof, seed)).clips("val")
    rows = []
    for clip in clips:
        image, truth = clip.image(clip.labelled), clip.label(clip.labelled)
        row = {"image": image, "truth": truth, "name": f"{clip.clip_id}, labelled frame"}
        for name, model in models.items():
            row[name] = predict(model, image, device).argmax(0).numpy().astype(np.uint8)
        change = confusable_changes(row["baseline"], row["refined"], truth)
        row.update({key: int(mask.sum()) for key, mask in change.items()})
        rows.append(row)
    return sorted(rows, key=lambda r: -(r["fixed"] + r["broken"] + r["both_wrong"]))[:count]
