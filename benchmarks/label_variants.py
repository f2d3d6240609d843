"""Which pixels of warp-refine's labels teach a student: Table 1 cells trained on variants of them.

    python benchmarks/label_variants.py --profile table --world-seed 3 --seeds 0 1 2 3
    python benchmarks/label_variants.py --profile table --world-seed 3 --variant ungated --seeds 0 1

Each variant relabels the training frames a warp-refine cell learns from (±k around every labelled
frame), and trains the cells of ``--seeds`` on them, paired with Baseline, warp-refine and the
world's true labels of the same frames (the ceiling) — the cells ``wrp table1`` trains, reused
from the cache:

- ``ungated``: Ω's labels without its gate (the paper's Ω, applied everywhere) — what the gate
  that the held-out cyclic labels chose does to the labels a student learns from;
- ``agree``: warp-refine's label where ``g_ψ``'s agrees, the other pixels unlabelled — a filter that
  needs no ground truth;
- ``oracle``: warp-refine's label where it is right, the other pixels unlabelled (needs every
  frame's true label: the synthetic world) — what the labels' errors cost, were every one found
  and dropped;
- ``true-motion``: warp-refine run again with the world's own motion in place of DIS (the
  synthetic world's oracle flow), the same ``g_ψ``, Ω and gate — what a perfect flow estimator
  would give the student;
- ``true-followed`` and ``true-unfollowed`` split the true labels' lead over warp-refine's in two.
  A pixel is *followed* when the world's motion tracks its point from the labelled frame through
  every step, the point seen in both frames of each (its label can be carried); the others came
  into view on the way (only a semantic cue can label them). ``true-followed`` gives the followed
  pixels their true label and keeps warp-refine's elsewhere (perfect carrying); ``true-unfollowed``
  the reverse (perfect labels of what comes into view). Both need the synthetic world.
- ``teacher-unfollowed``: ``g_ψ``'s own label (the semantic-only column's) on the pixels that came
  into view, warp-refine's on the followed ones — whether the teacher's view of what the labelled
  frame did not show is what its own labels teach (synthetic world: the world's motion);
- ``semantic-inpaint``: warp-refine run again with ``g_ψ``'s label in Ω's input wherever the
  motion cannot explain a pixel (``inpaint="semantic"``, the warp-inpaint of METHOD.md §1), Ω and
  its gate trained on cyclic labels inpainted the same way — the paper's own input to Ω, which
  hands Ω more of the teacher's view.

``--jobs N`` trains N cells at once (``wrp.tables.train_cells``).

Prints each column's paired gain over Baseline and writes ``<out>/world<W>_<hash>.{json,md,png}``
(default ``--out``: ``figures/label_variants``): the cells' mIoU per seed, the paired gains with their
95 % t-intervals, the share of pixels each variant labels and labels right, and (synthetic world)
the label mIoU of the variants and of warp-refine's own labels at d = 7..k.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from wrp.cache import Stage, config_hash
from wrp.cli import add_jobs_option, add_run_options, add_table_options, table_run
from wrp.data import IGNORE_INDEX, read_label, write_label_ids
from wrp.io import atomic_write_json, atomic_write_text
from wrp.metrics import iou
from wrp.motion import followed
from wrp.paper import ARCHS, TRUE_LABELS
from wrp.policies import distance_confusions, label_file, propagate_clips
from wrp.stages import (
    every_frame_labelled,
    generated_frames,
    manifest_for,
    propagator_for,
    teacher_segmenter,
    train_denoiser,
    training_labels,
)
from wrp.tables import cells_of, gains_markdown, gains_over, gains_report, table1_runs, train_cells
from wrp.viz import paired_gains_figure, save_figure

VARIANTS = ("ungated", "agree", "oracle", "true-motion", "true-followed", "true-unfollowed",
            "teacher-unfollowed", "semantic-inpaint")
# need every frame's true label or the world's motion
SYNTHETIC_ONLY = ("oracle", "true-motion", "true-followed", "true-unfollowed", "teacher-unfollowed")
# another label on one side of wrp.motion.followed: (whose, on the followed pixels or the others)
SPLIT = {"true-followed": ("truth", True), "true-unfollowed": ("truth", False),
         "teacher-unfollowed": ("teacher", False)}
# propagated again (not a filter of warp-refine's labels), with this motion
RELABEL = {"ungated": "dis", "true-motion": "true", "semantic-inpaint": "dis"}
POLICY = "warp-refine"
REFERENCES = ("baseline", POLICY, TRUE_LABELS)


def followed_masks(frames, k: int):
    """(clip, position, mask) per generated frame, the mask of the pixels the world's motion follows
    from its labelled frame (:func:`wrp.motion.followed`), each clip's masks computed once (the
    frames come clip by clip)."""
    current, masks = None, {}
    for clip, pos in frames:
        if clip.clip_id != current:
            current, masks = clip.clip_id, followed(clip, k)
        yield clip, pos, masks[pos]


def teacher_label(semantic: Path, frame) -> np.ndarray:
    """``g_ψ``'s own label of ``frame``: the semantic-only propagation stage ``semantic``'s."""
    return read_label(label_file(semantic / "labels", "semantic-only", frame))


def variant_labels(run, variant: str) -> tuple[Path, dict[str, Any]]:
    """Stage ``label-variant``: warp-refine's labels of the training frames within ±k, as
    ``variant`` makes them (module docstring), in ``labels/warp-refine/``. Returns the folder and
    the share of pixels labelled (``labelled``) and labelled right (``right``, where every frame has
    a true label; else None), in %."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    manifest, frames = generated_frames(run)
    clips, truth = manifest.clips("train"), manifest.ground_truth("train")
    known = every_frame_labelled(clips, truth)  # the synthetic world: every frame's true label
    if variant == "semantic-inpaint" and run.profile.inpaint == "semantic":
        raise ValueError("the semantic-inpaint variant is warp-refine's own column when the run already "
                         "reads g_ψ's label where the motion fails (--inpaint semantic); leave one out")
    if variant in SYNTHETIC_ONLY and not known:
        raise ValueError(f"the {variant} variant needs the synthetic world (every frame's true label and "
                         f"motion), and {run.dataset} is not it; leave it out (--variant …)")
    source = training_labels(run, POLICY)
    config: dict[str, Any] = {"variant": variant, "source": str(source), "manifest": str(manifest_for(run)),
                              "k": run.profile.k}
    if variant == "agree" or SPLIT.get(variant, ("",))[0] == "teacher":
        semantic = training_labels(run, "semantic-only")
        config["semantic"] = str(semantic)
    relabel = variant in RELABEL
    inpaint = "semantic" if variant == "semantic-inpaint" else run.profile.inpaint
    if relabel:
        segmenter, denoiser = teacher_segmenter(run), train_denoiser(run, inpaint=inpaint)
        config |= {"segmenter": str(segmenter), "denoiser": str(denoiser)}

    def build(out: Path) -> dict[str, Any]:
        if relabel:
            propagator = propagator_for(segmenter, denoiser, flow=RELABEL[variant], device=run.device,
                                        inpaint=inpaint)
            if variant == "ungated":
                propagator = replace(propagator, gate=None)
            propagate_clips(clips, POLICY, out / "labels", propagator, run.profile.k, progress=run.progress)
        labelled = right = total = kept = 0
        walk = followed_masks(frames, run.profile.k) if variant in SPLIT else ((*f, None) for f in frames)
        for clip, pos, mask in walk:
            path = label_file(out / "labels", POLICY, clip.frames[pos])
            ids = read_label(path if relabel else label_file(source / "labels", POLICY, clip.frames[pos]))
            true = truth.label(clip.clip_id, pos) if known else None
            if variant == "agree":
                ids[ids != teacher_label(semantic, clip.frames[pos])] = IGNORE_INDEX
            elif variant == "oracle":
                ids[ids != true] = IGNORE_INDEX
            elif variant in SPLIT:
                kept += int(mask.sum())
                whose, side = SPLIT[variant]
                mask = mask if side else ~mask
                other = true if whose == "truth" else teacher_label(semantic, clip.frames[pos])
                ids[mask] = other[mask]
            if not relabel:
                write_label_ids(path, ids)
            total += ids.size
            labelled += int((ids != IGNORE_INDEX).sum())
            if known:
                right += int(((ids == true) & (ids != IGNORE_INDEX)).sum())
        shares = {"labelled": round(100.0 * labelled / max(total, 1), 2),
                  "right": round(100.0 * right / max(total, 1), 2) if known else None}
        if variant in SPLIT:
            shares["followed"] = round(100.0 * kept / max(total, 1), 2)
        return shares

    stage = Stage("label-variant", config)
    return stage.run(build, verbose=run.progress), stage.record()["result"]


def far_label_miou(run, folder: Path, first: int = 7) -> float:
    """mIoU (%) of the warp-refine labels in ``folder`` against every frame's true label, over the
    frames d = ``first``..k from their labelled frame (the classes with true pixels there)."""
    manifest, _ = generated_frames(run)
    k = run.profile.k
    confs = distance_confusions(manifest.clips("train"), manifest.ground_truth("train"), folder / "labels",
                                POLICY, k)
    conf = sum(confs[d] for d in range(min(first, k), k + 1))
    per_class = iou(conf)[conf.sum(axis=1) > 0]
    return round(100.0 * float(np.mean(per_class)), 1)


def split_shares(run, folders: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Per label set (``{name: folder}`` of warp-refine-layout labels; synthetic world): the share of
    pixels labelled right on the pixels the world's motion follows from the labelled frame
    (``right_followed``) and on those that came into view (``right_new``), and how often it agrees
    with ``g_ψ``'s own label (the semantic-only column's) where they came into view
    (``teacher_new``), in %."""
    manifest, frames = generated_frames(run)
    truth = manifest.ground_truth("train")
    semantic = training_labels(run, "semantic-only")
    counts = {name: np.zeros(5) for name in folders}  # right followed, followed, right new, new, = g_ψ new
    for clip, pos, mask in followed_masks(frames, run.profile.k):
        true, teacher = truth.label(clip.clip_id, pos), teacher_label(semantic, clip.frames[pos])
        for name, folder in folders.items():
            ids = read_label(label_file(folder / "labels", POLICY, clip.frames[pos]))
            right = ids == true
            counts[name] += [right[mask].sum(), mask.sum(), right[~mask].sum(), (~mask).sum(),
                             (ids[~mask] == teacher[~mask]).sum()]
    return {name: {"right_followed": round(100.0 * c[0] / max(c[1], 1), 1),
                   "right_new": round(100.0 * c[2] / max(c[3], 1), 1),
                   "teacher_new": round(100.0 * c[4] / max(c[3], 1), 1)} for name, c in counts.items()}


def variant_rows(run, arch: str, folders: dict[str, Path], seeds: list[int], world: int,
                 jobs: int = 1) -> list[dict[str, Any]]:
    """One ``table1_runs``-style row per variant and seed: the cell of ``arch`` trained on the labels
    of ``folders`` (``{variant: its folder}``, :func:`variant_labels`); ``jobs`` cells at once
    (:func:`wrp.tables.train_cells`)."""
    grid = [(variant, seed) for variant in folders for seed in seeds]
    specs = [{"run": run.with_seed(world), "arch": ARCHS[arch], "policy": POLICY, "train_seed": seed,
              "labels": folders[variant]} for variant, seed in grid]
    names = [f"{arch} · {variant} · seed {seed}" for variant, seed in grid]
    cells = train_cells(specs, jobs, "label variants", names)
    return [{"arch": arch, "policy": variant, "seed": seed, "world_seed": world, "miou": cell["miou"],
             "eval_frames": cell["eval_frames"]} for (variant, seed), cell in zip(grid, cells, strict=True)]


def variants_markdown(title: str, cells: dict[str, list[float]], gains: list[dict[str, Any]],
                      shares: dict[str, dict[str, Any]], seeds: list[int]) -> str:
    """The cells' mIoU per seed with the share of pixels each variant labels (and labels right),
    then each column's paired gain over Baseline (:func:`wrp.tables.gains_markdown`)."""
    head = " | ".join(f"seed {s}" for s in seeds)
    split = any("right_new" in share for share in shares.values())
    extra = " right: followed / came into view (%) | = g_ψ where it came into view (%) |" if split else ""
    lines = [f"# {title}", "",
             f"| column | {head} | pixels labelled / right (%) | label mIoU, d ≥ 7 |{extra}",
             "|---|" + "---:|" * (len(seeds) + 2 + 2 * split)]
    for column, values in cells.items():
        share = shares.get(column, {})
        pixels = " / ".join(f"{share[key]:.1f}" for key in ("labelled", "right")
                            if share.get(key) is not None)
        far = f"{share['far_miou']:.1f}" if share.get("far_miou") is not None else ""
        row = f"| {column} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {pixels} | {far} |"
        if split:
            values = [share.get(k) for k in ("right_followed", "right_new", "teacher_new")]
            row += " {:.1f} / {:.1f} | {:.1f} |".format(*values) if None not in values else " | |"
        lines.append(row)
    lines += ["", *gains_markdown(gains, "Baseline"), "",
              "Variants of warp-refine's labels: ungated — Ω without its gate; agree — warp-refine's "
              "label where g_ψ's agrees, the rest unlabelled; oracle — where it is right, the rest "
              "unlabelled; true-motion — warp-refine with the world's own motion in place of DIS; "
              "true-followed / true-unfollowed — the true label on the pixels the world's motion "
              "follows from the labelled frame / on the others, warp-refine's elsewhere; "
              "teacher-unfollowed — g_ψ's label on the pixels the world's motion does not follow, "
              "warp-refine's elsewhere; semantic-inpaint — warp-refine with g_ψ's label in Ω's input "
              "where the motion fails, Ω trained so. "
              "Cells paired by training seed."]
    return "\n".join(lines) + "\n"


def variants_figure(path: Path, title: str, gains: list[dict[str, Any]]) -> Path:
    """``path``: each column's gain over Baseline paired by seed (dots per seed, the mean, its 95 %
    interval; :func:`wrp.viz.paired_gains_figure`), the bar's +1.5 marked."""
    fig = paired_gains_figure({"": gains}, "Baseline", title=f"{title}; dashed: a gain of +1.5 mIoU",
                              target=1.5)
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_table_options(parser, table=1)
    add_run_options(parser, seed=False)
    parser.add_argument("--variant", action="append", choices=VARIANTS,
                        help="repeatable; default all")
    add_jobs_option(parser)
    parser.add_argument("--out", default="figures/label_variants")
    args = parser.parse_args()
    variants = list(dict.fromkeys(args.variant or VARIANTS))
    unused = [flag for flag, value in (("--policy", args.policy), ("--k", args.k),
                                       ("--min-confidence", args.min_confidence)) if value]
    if unused:
        parser.error(f"{', '.join(unused)}: the columns here are Baseline, warp-refine and the true labels "
                     "of the profile's ±k, beside the variants; choose those with --variant")
    try:
        run = table_run(args)
        world = run.profile.table_world_seed
        if world is None:
            raise ValueError("--world-seed: give the world whose warp-refine labels to vary")
        if not run.synthetic:
            variants = [v for v in variants if v not in SYNTHETIC_ONLY]
    except ValueError as exc:
        parser.error(str(exc))
    seeds = list(args.seeds or run.profile.table_seeds)
    arch = (args.arch or list(run.profile.table_archs))[0]
    started = time.time()
    references = [r for r in REFERENCES if r != TRUE_LABELS or run.synthetic]
    world_run = run.with_seed(world)
    built = {variant: variant_labels(world_run, variant) for variant in variants}
    folders = {variant: folder for variant, (folder, _) in built.items()}
    rows = table1_runs(run, [arch], references, seeds, world, jobs=args.jobs)
    rows += variant_rows(run, arch, folders, seeds, world, args.jobs)
    shares = {variant: share for variant, (_, share) in built.items()}
    if run.synthetic:
        folders = {POLICY: training_labels(world_run, POLICY), **folders}
        for name, split in split_shares(world_run, folders).items():
            far = far_label_miou(world_run, folders[name])
            shares[name] = shares.get(name, {}) | {"far_miou": far} | split
    cells = cells_of(rows)[arch]
    gains = gains_over(cells, "baseline")
    print(gains_report(gains, "Baseline", label=f"{arch}, world {world}: "))
    prof = run.profile
    title = (f"Variants of warp-refine's labels, world {world} ({prof.name} profile, {arch}, "
             f"{prof.table_iters} iterations, scored on " + (f"world {prof.table_score_world})"
                                                              if prof.table_score_world is not None
                                                              else "its validation records)"))
    key = f"world{world}_{config_hash({'profile': prof.key_dict(), 'arch': arch, 'seeds': seeds})[:8]}"
    out = Path(args.out)
    atomic_write_json(out / f"{key}.json", {"title": title, "world_seed": world, "arch": arch, "seeds": seeds,
                                             "cells": cells, "gains": gains, "pixels": shares,
                                             "seconds": round(time.time() - started, 1)})
    markdown = variants_markdown(title, cells, gains, shares, seeds)
    atomic_write_text(out / f"{key}.md", markdown)
    variants_figure(out / f"{key}.png", title, gains)
    print(markdown)
    print(f"→ {out / key}.{{json,md,png}}")


if __name__ == "__main__":
    main()
