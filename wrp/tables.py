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

from wrp.data import Manifest
from wrp.experiments import BASE_LR, dataset_name, manifest_for, propagate, train_segmenter
from wrp.io import atomic_write_text
from wrp.profiles import Profile, get_profile
from wrp.propagation import label_file

ARCHS = {"DeepLabV3": "deeplabv3", "OCRNet": "ocrnet", "MSA-HRNet-OCR": "msa_hrnet_ocr"}
TABLE1_POLICIES = ("baseline", "motion-only", "semantic-only", "warp-refine")
MOTION_ONLY_K = 2  # Table 1's note: motion-only labels use frames ±2

# Table 2's rows: (loss, generated policy, ±k of the generated labels, iteration share, LR factor)
TABLE2_ROWS: dict[str, dict[str, Any]] = {
    "Baseline B, under-trained (1/3 iterations, LR / 8)": {"loss": "ce", "policy": None, "k": None,
                                                          "iters_share": 1 / 3, "lr_factor": 1 / 8},
    "Baseline B": {"loss": "ce", "policy": None, "k": None, "iters_share": 1.0, "lr_factor": 1.0},
    "B + RLL": {"loss": "rll", "policy": None, "k": None, "iters_share": 1.0, "lr_factor": 1.0},
    "B + RLL + D^m_3": {"loss": "rll", "policy": "motion-only", "k": 3, "iters_share": 1.0,
                        "lr_factor": 1.0},
}


def generated_pairs(profile: str | Profile, seed: int, policy: str, k: int | None = None,
                    device: str = "auto", progress: bool = True) -> list[list[str]]:
    """(image, label) paths of a policy's labels for the training frames within ±k (default the
    profile's k) of their labelled frame, propagated first if needed (``wrp propagate``)."""
    prof = get_profile(profile)
    k = prof.k if k is None else k
    if not 1 <= k <= prof.k:
        raise ValueError(f"k={k} must lie in 1..{prof.k} (the profile's propagation range)")
    folder = propagate(prof, seed, "train", (policy,), device=device, progress=progress)
    clips = Manifest.load(manifest_for(prof, seed)).clips("train")
    return [[str(clip.images[pos]), str(label_file(folder / "labels", policy, clip.frames[pos]))]
            for clip in clips for pos in range(len(clip)) if 1 <= abs(pos - clip.labelled) <= k]


def train_cell(profile: str | Profile, seed: int, arch: str = "msa_hrnet_ocr", policy: str | None = None,
               k: int | None = None, loss: str = "ce", iters_share: float = 1.0, lr_factor: float = 1.0,
               nproc: int = 1, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """One table cell: a segmenter trained on the human labels (+ ``policy``'s generated labels),
    with ``iters_share`` of the profile's iterations and ``lr_factor`` × the dataset's base LR.
    Returns its ``metrics.json`` (validation mIoU, per-class IoU) with the stage folder."""
    prof = get_profile(profile)
    generated = None
    if policy not in (None, "baseline"):
        k = k if k is not None else (MOTION_ONLY_K if policy == "motion-only" else None)
        generated = generated_pairs(prof, seed, policy, k, device, progress)
    overrides: dict[str, Any] = {"loss": loss}
    if iters_share != 1.0:
        overrides["iters"] = max(1, round(prof.seg_iters * iters_share))
    if lr_factor != 1.0:
        overrides["base_lr"] = BASE_LR.get(dataset_name(prof), 0.01) * lr_factor
    folder = train_segmenter(prof, seed, arch, nproc=nproc, device=device, progress=progress,
                             generated=generated, **overrides)
    return {**json.loads((folder / "metrics.json").read_text()), "stage": str(folder)}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table1(profile: str | Profile, archs: list[str] | None = None, policies: list[str] | None = None,
           seeds: list[int] | None = None, nproc: int = 1, device: str = "auto",
           progress: bool = True) -> dict[str, dict[str, list[float]]]:
    """mIoU per seed of every (architecture, policy) cell: ``{arch name: {policy: [mIoU, …]}}``."""
    prof = get_profile(profile)
    out: dict[str, dict[str, list[float]]] = {}
    for name in archs or list(ARCHS):
        if name not in ARCHS:
            raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHS)}")
        for policy in policies or list(TABLE1_POLICIES):
            if policy not in TABLE1_POLICIES:
                raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(TABLE1_POLICIES)}")
            out.setdefault(name, {})[policy] = [
                train_cell(prof, seed, ARCHS[name], policy, nproc=nproc, device=device,
                           progress=progress)["miou"]
                for seed in (seeds if seeds is not None else prof.seeds)]
    return out


def table2(profile: str | Profile, rows: list[str] | None = None, seeds: list[int] | None = None,
           arch: str = "msa_hrnet_ocr", nproc: int = 1, device: str = "auto",
           progress: bool = True) -> dict[str, list[float]]:
    """mIoU per seed of every Table 2 row: ``{row: [mIoU, …]}``."""
    prof = get_profile(profile)
    out = {}
    for row in rows or list(TABLE2_ROWS):
        if row not in TABLE2_ROWS:
            raise ValueError(f"unknown Table 2 row {row!r}; choose from {', '.join(TABLE2_ROWS)}")
        spec = TABLE2_ROWS[row]
        out[row] = [train_cell(prof, seed, arch, spec["policy"], spec["k"], spec["loss"],
                               spec["iters_share"], spec["lr_factor"], nproc, device, progress)["miou"]
                    for seed in (seeds if seeds is not None else prof.seeds)]
    return out


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
