"""Which generated labels to trust, without ground truth: the cycle-agreement estimate, and how
well the policies' confidence is calibrated.

**Cycle agreement.** Only the labelled frames of a user's video have labels. The method's own signal
(METHOD.md §3: cyclic warped labels) says how far a policy can be trusted: carry the human label of
frame t with the policy to t ± d, then — with the same policy — back to t, and compare with the
human label of t. A policy that keeps its labels right to t ± d and back agrees with the human
label; one that drifts does not. :func:`cycle_agreement` gives that estimate per labelled frame,
policy and distance (the frame's mIoU against its human label, and the share of its pixels that
agree), with no label beyond the labelled frames.

On the synthetic world, which labels every frame, the same pass also scores the carried labels at
t ± d against their true labels (the quantity the estimate stands for) and collects, per policy,
how often a pixel of each confidence is right (:class:`Reliability`: the reliability diagram and
the expected calibration error).

``wrp assess`` runs it over a split and writes ``quality.csv``, ``assess.json`` and
``quality.png`` (:mod:`wrp.viz`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wrp.cache import Stage
from wrp.data import IGNORE_INDEX, NUM_CLASSES, Manifest
from wrp.io import atomic_write_json, atomic_write_text, exclusive_folder
from wrp.metrics import confusion_matrix, mean_iou
from wrp.motion import ClipFlowCache, FlowEstimator
from wrp.paper import CARRIED_POLICIES
from wrp.pipeline import NEEDS, StageClock, confidence_png
from wrp.policies import NEEDS_SEGMENTER, STEPS, Propagator, StepBatch
from wrp.profiles import Run
from wrp.runtime import progress_bar
from wrp.stages import (
    every_frame_labelled,
    inpaint_for,
    manifest_for,
    propagator_for,
    teacher_segmenter,
    train_denoiser,
)
from wrp.viz import quality_figure, save_figure

CARRIED = CARRIED_POLICIES  # the policies whose label travels (the estimate carries it there and back)
BINS = 10  # confidence bins of the reliability diagram
QUALITY_FIELDS = ["record", "labelled_frame", "policy", "distance", "estimate_miou", "agreement", "true_miou"]


def check_policies(policies: Sequence[str]) -> None:
    """Refuse a policy whose label does not travel: ``copy`` always comes back unchanged, and
    ``semantic-only`` labels every frame on its own, so the cycle says nothing about distance."""
    wrong = [p for p in policies if p not in CARRIED]
    if wrong:
        raise ValueError(f"cannot assess {', '.join(map(repr, wrong))}: the cycle-agreement estimate "
                         f"carries a label there and back; choose from {', '.join(CARRIED)}")


def frame_scores(pred: np.ndarray, truth: np.ndarray, num_classes: int = NUM_CLASSES
                 ) -> tuple[float, float]:
    """mIoU (%) over the classes present in either label, and pixel agreement (%) over the labelled
    pixels of ``truth`` (an unlabelled prediction disagrees)."""
    conf = confusion_matrix(pred, truth, num_classes)
    total = conf.sum()
    agree = float(100 * np.trace(conf[:, :num_classes]) / total) if total else float("nan")
    return mean_iou(conf), agree


@dataclass
class Reliability:
    """How often a pixel of each confidence is right, for one policy: ``counts[b]`` pixels with a
    confidence in bin ``b`` of :data:`BINS` equal bins of [0, 1], ``correct[b]`` of them right,
    ``confidence[b]`` their summed confidence."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    correct: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.float64))
    # (confidence of a pixel, whether it is right) of a sample of pixels, for coverage–accuracy curves
    sample: list[np.ndarray] = field(default_factory=list)

    def add(self, conf: np.ndarray, right: np.ndarray, rng: np.random.Generator, keep: int = 4096) -> None:
        bins = np.minimum((conf * BINS).astype(np.int64), BINS - 1)
        self.counts += np.bincount(bins, minlength=BINS)
        self.correct += np.bincount(bins, weights=right, minlength=BINS).astype(np.int64)
        self.confidence += np.bincount(bins, weights=conf, minlength=BINS)
        pick = rng.choice(conf.size, min(keep, conf.size), replace=False)
        self.sample.append(np.stack([conf[pick], right[pick].astype(np.float64)], 1))

    @classmethod
    def merged(cls, parts: Sequence[Reliability]) -> Reliability:
        """The pixels of several reliabilities together (e.g. of every distance)."""
        out = cls()
        for part in parts:
            out.counts += part.counts
            out.correct += part.correct
            out.confidence += part.confidence
            out.sample += part.sample
        return out

    def ece(self) -> float:
        """Expected calibration error (%): Σ_b (n_b / n) · |accuracy_b − confidence_b|; NaN without pixels."""
        n = self.counts.sum()
        if n == 0:
            return float("nan")
        used = self.counts > 0
        acc = self.correct[used] / self.counts[used]
        mean_conf = self.confidence[used] / self.counts[used]
        return float(100 * np.sum(self.counts[used] / n * np.abs(acc - mean_conf)))

    def diagram(self) -> list[dict[str, float]]:
        """Per bin: its range, pixels, mean confidence and accuracy (for the reliability diagram)."""
        return [{"low": b / BINS, "high": (b + 1) / BINS, "pixels": int(self.counts[b]),
                 "confidence": round(float(self.confidence[b] / self.counts[b]), 4),
                 "accuracy": round(float(self.correct[b] / self.counts[b]), 4)}
                for b in range(BINS) if self.counts[b]]

    def coverage_accuracy(self, thresholds: Sequence[float]) -> list[dict[str, float]]:
        """Per threshold τ: the share of pixels whose confidence is ≥ τ (coverage) and how many of
        those are right, from the pixel sample."""
        pixels = np.concatenate(self.sample) if self.sample else np.zeros((0, 2))
        rows = []
        for tau in thresholds:
            kept = pixels[:, 0] >= tau
            rows.append({"threshold": round(float(tau), 4), "coverage": round(100 * float(kept.mean()), 2),
                         "accuracy": round(100 * float(pixels[kept, 1].mean()), 2) if kept.any() else None})
        return rows

    def threshold_keeping(self, share: float) -> float:
        """The confidence τ at which a share ``share`` of the pixels have confidence ≥ τ."""
        pixels = np.concatenate(self.sample)[:, 0]
        return float(np.quantile(pixels, 1 - share))


def carry(propagator: Propagator, policy: str, chains: list[tuple[Any, list[int], torch.Tensor]],
          batch: int = 8, clock: StageClock | None = None, flows: FlowEstimator | None = None
          ) -> list[list[tuple[torch.Tensor, torch.Tensor | None]]]:
    """Carry each chain's label along its frames with ``policy``: a chain ``(clip, [p0, p1, …],
    label of p0)`` gets the policy's label (and confidence) of p1, then p2 from p1's, and so on.
    Returns, per chain, the (label, confidence) of every frame after the first. ``flows`` estimates
    the motion (default the propagator's estimator; a :class:`~wrp.motion.ClipFlowCache` shared
    between calls estimates a flow between two frames of a clip once)."""
    clock = clock or StageClock()
    flows = flows or propagator.estimator
    needs = NEEDS[policy]
    states = [label.to(propagator.device) for _, _, label in chains]
    out: list[list[tuple[torch.Tensor, torch.Tensor | None]]] = [[] for _ in chains]
    step = 0
    while active := [i for i, (_, path, _) in enumerate(chains) if step + 1 < len(path)]:
        for start in range(0, len(active), batch):
            chunk = active[start:start + batch]
            inputs: dict[str, list[torch.Tensor]] = {name: [] for name in needs}
            for i in chunk:
                clip, path, _ = chains[i]
                for name in needs:
                    inputs[name].append(_prepared(name, clip, path[step], path[step + 1], flows))
            labels = torch.stack([states[i] for i in chunk])
            step_batch = StepBatch(labels, labels, **{k: torch.stack(v).to(propagator.device)
                                                      for k, v in inputs.items()})
            ids, conf = STEPS[policy](propagator, step_batch, clock)
            for n, i in enumerate(chunk):
                states[i] = ids[n]
                out[i].append((ids[n], None if conf is None else conf[n]))
        step += 1
    return out


def _prepared(name: str, clip, source: int, target: int, flows: FlowEstimator) -> torch.Tensor:
    """One input of a step (``wrp.pipeline.NEEDS``) for one clip, as :class:`wrp.pipeline.StepFrames`
    prepares it: a (3, H, W) uint8 frame or an (H, W, 2) flow."""
    if name in ("targets", "sources"):
        image = clip.image(target if name == "targets" else source)
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    a, b = (target, source) if name == "flow" else (source, target)
    return torch.from_numpy(flows.between(clip, a, b))


def cycle_agreement(clips, policies: Sequence[str], propagator: Propagator, k: int, ground_truth=None,
                    batch: int = 8, seed: int = 0, progress: bool = True
                    ) -> tuple[list[dict[str, Any]], dict[tuple[str, int], Reliability]]:
    """The cycle-agreement estimate of every (clip, policy, distance d = 1..k): the human label of
    the clip's labelled frame t carried with the policy to t ± d and back to t (both directions
    where the clip has the frames), scored against the human label — ``estimate_miou`` and
    ``agreement`` (pixels, %), the mean of the two directions.

    With ``ground_truth`` (a dataset labelling every frame) each row also has ``true_miou``: the
    carried labels at t ± d against their true labels — what the estimate stands for — and the
    second value returned holds, per policy with a confidence and distance, its
    :class:`Reliability` on those frames. Returns ``(rows, reliability)``."""
    check_policies(policies)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    reliability: dict[tuple[str, int], Reliability] = {}
    jobs = [(clip, policy) for clip in clips for policy in policies]
    with torch.inference_mode():
        for clip, policy in progress_bar(jobs, desc="cycle agreement", unit="clip·policy",
                                         disable=not progress):
            flows = ClipFlowCache(propagator.estimator)  # out and back cross the same frame pairs
            human = clip.label(clip.labelled)
            t = clip.labelled
            reach = {1: min(k, len(clip) - 1 - t), -1: min(k, t)}
            paths = [[t + direction * i for i in range(reach[direction] + 1)] for direction in (1, -1)
                     if reach[direction] > 0]
            start = torch.from_numpy(human)
            carried = carry(propagator, policy, [(clip, path, start) for path in paths], batch, flows=flows)
            backs = [(clip, path[d::-1], labels[d - 1][0])
                     for path, labels in zip(paths, carried, strict=True) for d in range(1, len(path))]
            returned = carry(propagator, policy, backs, batch, flows=flows)
            per_d: dict[int, list[tuple[float, float, float]]] = {}
            n = 0
            for path, labels in zip(paths, carried, strict=True):
                for d in range(1, len(path)):
                    back = returned[n][-1][0].cpu().numpy()
                    n += 1
                    estimate, agree = frame_scores(back, human)
                    true = float("nan")
                    if ground_truth is not None:
                        truth = ground_truth.label(clip.clip_id, path[d])
                        ids, conf = labels[d - 1]
                        ids = ids.cpu().numpy()
                        true = frame_scores(ids, truth)[0]
                        if conf is not None:  # as the confidence map holds it: 8 bits
                            scored = truth != IGNORE_INDEX
                            quantised = confidence_png(conf.float().cpu().numpy()) / 255
                            reliability.setdefault((policy, d), Reliability()).add(
                                quantised[scored], ids[scored] == truth[scored], rng)
                    per_d.setdefault(d, []).append((estimate, agree, true))
            for d, values in sorted(per_d.items()):
                est, agree, true = (float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                                    for v in np.array(values).T)
                rows.append({"record": clip.clip_id, "labelled_frame": clip.frames[t].stem,
                             "policy": policy, "distance": d, "estimate_miou": round(est, 2),
                             "agreement": round(agree, 2),
                             "true_miou": round(true, 2) if np.isfinite(true) else ""})
    return rows, reliability


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank) over the pairs where both are finite."""
    def ranks(values: Sequence[float]) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        out = np.empty(len(values))
        out[order] = np.arange(len(values), dtype=np.float64)
        for v in np.unique(values):  # ties: the mean of their ranks
            tied = values == v
            out[tied] = out[tied].mean()
        return out

    pairs = np.array([(a, b) for a, b in zip(x, y, strict=True) if np.isfinite(a) and np.isfinite(b)])
    if len(pairs) < 2:
        return float("nan")
    rx, ry = ranks(pairs[:, 0]), ranks(pairs[:, 1])
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def summarise(rows: list[dict[str, Any]], reliability: dict[tuple[str, int], Reliability], review: int = 5
              ) -> dict[str, Any]:
    """Per policy: the median estimate per distance, Spearman ρ between estimate and true mIoU over
    (record, distance) where the truth is known, the ECE and reliability diagram of its confidence
    (every distance together), what keeping its 90 % most confident pixels does — overall and at
    the largest distance (``keep_90``, ``keep_90_at_k``) — and the ``review`` records whose estimate
    drops most from d = 1 to the largest d (the frames a person should check first)."""
    out: dict[str, Any] = {}
    for policy in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == policy and np.isfinite(r["estimate_miou"])]
        distances = sorted({r["distance"] for r in mine})
        known = [r for r in mine if r["true_miou"] != ""]
        by_record: dict[str, dict[int, float]] = {}
        for r in mine:
            by_record.setdefault(r["record"], {})[r["distance"]] = r["estimate_miou"]
        drops = sorted(((v[min(v)] - v[max(v)], rec) for rec, v in by_record.items() if len(v) > 1),
                       reverse=True)
        summary = {
            "median_estimate": {d: round(float(np.median([r["estimate_miou"] for r in mine
                                                          if r["distance"] == d])), 2) for d in distances},
            "review": [{"record": rec, "drop": round(drop, 2),
                        "labelled_frame": next(r["labelled_frame"] for r in mine if r["record"] == rec)}
                       for drop, rec in drops[:review]],
        }
        if known:
            summary["spearman"] = round(spearman([r["estimate_miou"] for r in known],
                                                 [r["true_miou"] for r in known]), 3)
            summary["median_true"] = {
                d: round(float(np.median([r["true_miou"] for r in known if r["distance"] == d])), 2)
                for d in distances}
        parts = {d: r for (p, d), r in reliability.items() if p == policy and r.counts.sum()}
        if parts:
            rel = Reliability.merged(list(parts.values()))
            far = parts[max(parts)]
            tau = rel.threshold_keeping(0.9)
            curve = rel.coverage_accuracy([0.0, tau] + [round(0.05 * i, 2) for i in range(1, 20)])
            tau_k = far.threshold_keeping(0.9)
            at_k = far.coverage_accuracy([0.0, tau_k])
            summary.update({"ece": round(rel.ece(), 2), "reliability": rel.diagram(),
                            "keep_90": {"threshold": round(tau, 4), "all": curve[0], "kept": curve[1]},
                            "keep_90_at_k": {"distance": max(parts), "threshold": round(tau_k, 4),
                                             "all": at_k[0], "kept": at_k[1]},
                            "coverage_accuracy": sorted(curve[2:] + curve[:2], key=lambda c: c["threshold"])})
        out[policy] = summary
    return out


def write_quality_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """``quality.csv``: record, labelled frame, policy, distance, estimate (mIoU, agreement) and,
    where known, the true mIoU — atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=QUALITY_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())




# ---------------------------------------------------------------------------------------------
# A split of a run: wrp assess
# ---------------------------------------------------------------------------------------------
def assess(run: Run, split: str = "val", policies: Sequence[str] = ("motion-only", "warp-refine"),
           k: int | None = None, out: str | Path | None = None, batch: int = 8, flow: str = "dis",
           inpaint: str | None = None) -> Path:
    """Stage ``assessment`` (``wrp assess``): the cycle-agreement estimate of every labelled frame
    of ``split``, policy and distance d = 1..k (default the profile's k), training (or reusing)
    ``g_ψ`` and Ω as the policies need. Writes ``quality.csv`` (one row per record, policy and d),
    ``assess.json`` (:func:`summarise`) and ``quality.png``. On a dataset that labels every frame
    (the synthetic world) it also scores the estimate against the truth (Spearman ρ) and the
    policies' confidence (reliability, ECE, coverage–accuracy). ``out`` replaces the cached stage
    folder and is held for this run alone."""
    policies = list(dict.fromkeys(policies))
    check_policies(policies)
    if split not in ("train", "val"):
        raise ValueError(f"split={split!r}; use 'train' or 'val'")
    k = run.profile.k if k is None else k
    inpaint = inpaint_for(run, inpaint, policies)
    if k < 1:
        raise ValueError(f"k={k} must be ≥ 1")
    manifest = manifest_for(run)
    seg = teacher_segmenter(run) if set(policies) & NEEDS_SEGMENTER else None
    den = train_denoiser(run, inpaint=inpaint) if "warp-refine" in policies else None
    config = {"manifest": str(manifest), "split": split, "policies": policies, "k": k, "flow": flow,
              "inpaint": inpaint, "segmenter": str(seg) if seg else None,
              "denoiser": str(den) if den else None, "seed": run.seed}

    def build(folder: Path) -> dict[str, Any]:
        m = Manifest.load(manifest)
        clips = m.clips(split)
        if not clips:
            raise ValueError(f"the {split} split of {manifest} holds no partition to assess; choose the "
                             "other split (--split)")
        truth = m.ground_truth(split)
        truth = truth if every_frame_labelled(clips, truth) else None
        propagator = propagator_for(seg, den, flow, run.device, inpaint)
        rows, reliability = cycle_agreement(clips, policies, propagator, k, truth, batch, run.seed,
                                            run.progress)
        summary = summarise(rows, reliability)
        write_quality_csv(rows, folder / "quality.csv")
        atomic_write_json(folder / "assess.json", {"config": config, "policies": summary})
        where = (f"the synthetic world ({run.profile.style}, seed {run.seed})" if run.dataset is None
                 else str(run.dataset))
        save_figure(quality_figure(rows, summary, f"quality of generated labels on {where} ({split}), "
                                   "estimated without ground truth"), folder / "quality.png")
        return {"records": len(clips)}

    if out is None:
        return Stage("assessment", config).run(build, verbose=run.progress)
    folder = Path(out)
    with exclusive_folder(folder, "wrp assess"):
        folder.mkdir(parents=True, exist_ok=True)
        build(folder)
    return folder


def report(folder: str | Path) -> str:
    """The summary of an assessment folder as text: per policy the median estimate by distance (and
    the true mIoU and ρ where known), the calibration of its confidence, the frames to check."""
    data = json.loads((Path(folder) / "assess.json").read_text())["policies"]
    lines = []
    for policy, s in data.items():
        distances = list(s["median_estimate"])
        lines.append(f"{policy}: cycle-agreement estimate (median mIoU %) by distance "
                     + "  ".join(f"d={d}: {s['median_estimate'][d]:.1f}" for d in distances))
        if "median_true" in s:
            lines.append(f"{'':>{len(policy)}}  true mIoU of the carried labels             "
                         + "  ".join(f"d={d}: {s['median_true'][d]:.1f}" for d in distances)
                         + f"   Spearman ρ (record × distance) = {s['spearman']:.2f}")
        if "ece" in s:
            for name in ("keep_90", "keep_90_at_k"):
                keep = s[name]
                where = f"d = {keep['distance']}" if "distance" in keep else "all distances"
                kept, right = keep["kept"], f"{keep['all']['accuracy']:.1f} → {keep['kept']['accuracy']:.1f}"
                pad = " " * len(policy)
                lines.append(f"{pad}  {where}: --min-confidence {keep['threshold']:.4g} (nearest to keeping "
                             f"90 %) keeps {kept['coverage']:.1f} % of the pixels, right {right} %")
            lines.append(f"{'':>{len(policy)}}  confidence against the truth: ECE {s['ece']:.1f} %")
        lines.append(f"{'':>{len(policy)}}  check first: "
                     + ", ".join(f"{r['labelled_frame']} (−{r['drop']:.1f})" for r in s["review"]))
    return "\n".join(lines)


__all__ = ["CARRIED", "check_policies", "frame_scores", "Reliability", "carry", "cycle_agreement",
           "spearman", "summarise", "write_quality_csv", "assess", "report"]
