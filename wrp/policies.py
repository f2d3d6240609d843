"""Label policies: how a labelled frame's label reaches its ±k neighbours (METHOD.md §4, §6).

Each policy is one function of a batch of propagation steps (frame ``s`` → its neighbour ``t``):

- :func:`copy_label` — the human label, unchanged (how much of a frame its neighbours repeat);
- :func:`motion_only` — warp the previous step's label along the motion, no check, no repair
  (Zhu et al.);
- :func:`semantic_only` — ``g_ψ(I_t)``, no motion at all (self-training);
- :func:`warp_inpaint_only` — warp, and let ``g_ψ`` fill the pixels motion cannot explain (§1);
- :func:`warp_refine` — the paper's method: warp-inpaint, then the denoiser Ω_λ repairs the label
  with the semantic cue (§2), recursively from its own refined output.

:func:`propagate_clips` runs a policy over every clip of a dataset, outwards from each labelled
frame in both time directions, writing the Cityscapes label layout atomically (a killed run
resumes); :func:`propagation_accuracy` scores the written labels by distance from the labelled
frame against a dataset that labels every frame.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wrp.data import CLASS_NAMES, NUM_CLASSES, DatasetError, read_label, write_label_ids
from wrp.denoiser import Gate, pack_inputs, refine
from wrp.io import atomic_write_png, atomic_write_text
from wrp.metrics import confusion_matrix, coverage, iou, mean_iou
from wrp.models import CachedSegmenter
from wrp.motion import FlowEstimator
from wrp.paper import POLICIES
from wrp.propagation import WarpInpainted, warp_inpaint
from wrp.runtime import progress_bar

NEEDS_SEGMENTER = frozenset({"semantic-only", "warp-inpaint", "warp-refine"})
INPAINT = ("motion", "semantic")  # what Ω's input holds where motion fails (see ``Propagator``)

def check_inpaint(inpaint: str) -> None:
    """Refuse an ``inpaint`` that is not one of :data:`INPAINT`, naming the choices."""
    if inpaint not in INPAINT:
        raise ValueError(f"inpaint={inpaint!r}; use one of {INPAINT}")


Labelled = tuple[np.ndarray, np.ndarray | None]  # (H, W) train ids, (H, W) confidence 0..1 or None


@dataclass
class Propagator:
    """The cues a policy may use: a motion estimator, ``g_ψ`` (a
    :class:`~wrp.models.CachedSegmenter`) and Ω (a :class:`~wrp.denoiser.Denoiser`) — the last two
    only for the policies that use them.

    ``inpaint`` — what Ω's input label holds where motion cannot explain a pixel (out of view,
    failed forward–backward check): ``"motion"``, the motion's own guess, with the validity
    channel telling Ω which pixels those are and ``g_ψ``'s knowledge reaching Ω through its OCR
    features only; or ``"semantic"``, ``g_ψ``'s prediction (the warp-inpaint of METHOD.md §1).

    ``gate`` — where Ω's label may replace its input (:class:`~wrp.denoiser.Gate`, chosen with Ω
    on held-out records by ``wrp.stages.train_denoiser``); ``None``: everywhere, as in the paper.
    """

    estimator: FlowEstimator
    segmenter: CachedSegmenter | None = None
    denoiser: torch.nn.Module | None = None
    device: str = "cpu"
    inpaint: str = "motion"
    gate: Gate | None = None
    _targets: dict = field(default_factory=dict, init=False, repr=False)  # last step's target images

    def __post_init__(self) -> None:
        check_inpaint(self.inpaint)

    def check(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
        if policy in NEEDS_SEGMENTER and self.segmenter is None:
            raise ValueError(f"policy {policy!r} needs the segmenter g_ψ")
        if policy == "warp-refine" and self.denoiser is None:
            raise ValueError("policy 'warp-refine' needs the denoiser Ω")

    def step(self, policy: str, items: list[tuple]) -> list[Labelled]:
        """One propagation step for a batch: ``items`` = (clip, source, target, label of source,
        human label); returns (train ids of target, confidence 0..1 or None) per item."""
        if policy == "copy":
            return copy_label(self, items, [], None)
        images, read = [], {}  # a step's source frame was the previous step's target: read each once
        for clip, s, t, label, _ in items:
            source = self._targets.get(clip.images[s])
            read[clip.images[t]] = target = clip.image(t)
            source = clip.image(s) if source is None else source
            for path, shape in ((clip.images[s], source.shape[:2]), (clip.images[t], target.shape[:2])):
                if shape != label.shape:  # e.g. a frame replaced after the manifest was cached
                    raise DatasetError(f"{path} is {shape[1]}×{shape[0]} but the label it propagates is "
                                       f"{label.shape[1]}×{label.shape[0]}; every frame of {clip.clip_id} "
                                       "must have its labelled frame's size")
            images.append((source, target))
        self._targets = read
        targets = torch.stack([torch.from_numpy(np.ascontiguousarray(t)).permute(2, 0, 1) for _, t in images])
        return STEPS[policy](self, items, images, targets)


# A policy's step: (cues, items, [(source image, target image)], (B, 3, H, W) target batch) → labels
Step = Callable[[Propagator, list[tuple], list[tuple[np.ndarray, np.ndarray]], torch.Tensor | None],
                list[Labelled]]


def _warped(cues: Propagator, items: list[tuple], images: list[tuple[np.ndarray, np.ndarray]],
            check: bool, semantic: torch.Tensor | None = None) -> list[WarpInpainted]:
    """Warp each item's label onto its target frame (:func:`~wrp.propagation.warp_inpaint`);
    ``semantic`` (B, K, H, W) probabilities fill what motion cannot explain, else the motion's guess
    stays there (``check=False``: motion-only, no forward–backward check at all)."""
    steps = []
    for i, ((clip, s, t, label, _), (img_s, img_t)) in enumerate(zip(items, images, strict=True)):
        fill = semantic[i].argmax(0).to(torch.uint8).numpy() if semantic is not None else None
        steps.append(warp_inpaint(label, img_s, img_t, fill, flow=cues.estimator.between(clip, t, s),
                                  flow_reverse=cues.estimator.between(clip, s, t) if check else None,
                                  estimator=cues.estimator, check=check,
                                  fill="ignore" if semantic is not None else "warped"))
    return steps


def _most_likely(probs: torch.Tensor) -> list[Labelled]:
    conf, ids = probs.max(1)
    return [(ids[i].to(torch.uint8).numpy(), conf[i].numpy()) for i in range(len(probs))]


def copy_label(cues: Propagator, items: list[tuple], images: list, targets: torch.Tensor | None
               ) -> list[Labelled]:
    """Every neighbour gets the human label of its labelled frame, unchanged."""
    return [(human, None) for *_, human in items]


def motion_only(cues: Propagator, items: list[tuple], images: list, targets: torch.Tensor | None
                ) -> list[Labelled]:
    """Zhu et al.'s propagation: the previous label warped along the motion (nearest), with no
    occlusion handling; confidence 1 where the motion is consistent, 0 elsewhere."""
    return [(st.ids, st.valid.float().numpy()) for st in _warped(cues, items, images, check=False)]


def semantic_only(cues: Propagator, items: list[tuple], images: list, targets: torch.Tensor
                  ) -> list[Labelled]:
    """Self-training: ``g_ψ``'s prediction of the frame, with its probability as confidence."""
    probs, _ = cues.segmenter.outputs(targets)
    return _most_likely(probs.cpu())


def warp_inpaint_only(cues: Propagator, items: list[tuple], images: list, targets: torch.Tensor
                      ) -> list[Labelled]:
    """METHOD.md §1 alone: ``L^w_t`` — the warped label where motion explains the pixel, ``g_ψ``'s
    prediction where it does not."""
    probs, _ = cues.segmenter.outputs(targets)
    return [(st.ids, st.valid.float().numpy())
            for st in _warped(cues, items, images, check=True, semantic=probs.cpu())]


def warp_refine(cues: Propagator, items: list[tuple], images: list, targets: torch.Tensor
                ) -> list[Labelled]:
    """Warp-Refine Propagation, one step (METHOD.md §4, supplementary eq. (1)):
    ``L^w = Ψ(L^R_prev)`` warp-inpainted onto the next frame, then
    ``L^R = Ω_λ(I_next, I^w_prev, L^w)`` with ``g_ψ``'s OCR features of ``I_next`` at Ω's
    bottleneck. ``L^R`` (and Ω's probability as confidence) is what the next step warps on.
    With a gate, ``L^R`` keeps ``L^w`` wherever Ω is not sure enough to change it."""
    probs, ocr = cues.segmenter.outputs(targets)  # (B, K, H, W), (B, C, h, w)
    semantic = probs.cpu() if cues.inpaint == "semantic" else None
    steps = _warped(cues, items, images, check=True, semantic=semantic)
    labels, valid = torch.stack([st.label for st in steps]), torch.stack([st.valid for st in steps])
    refined = refine(cues.denoiser, pack_inputs(targets, torch.stack([st.image for st in steps]), labels,
                                                valid), ocr).cpu()
    if cues.gate is None:
        return _most_likely(refined)
    inputs = torch.from_numpy(np.stack([st.ids for st in steps]))
    ids, conf = cues.gate.apply(refined, inputs, valid)
    return [(ids[i].to(torch.uint8).numpy(), conf[i].numpy()) for i in range(len(refined))]


STEPS: dict[str, Step] = {"copy": copy_label, "motion-only": motion_only, "semantic-only": semantic_only,
                          "warp-inpaint": warp_inpaint_only, "warp-refine": warp_refine}


# ---------------------------------------------------------------------------------------------
# A whole dataset, and how right its labels are
# ---------------------------------------------------------------------------------------------
def label_file(labels_root: Path, policy: str, frame) -> Path:
    """Where a policy's label of ``frame`` goes: ``<labels_root>/<policy>/gtFine/<split>/<city>/…``
    — the Cityscapes layout, so a policy's folder reads like a dataset's label tree."""
    return frame.label(Path(labels_root) / policy)


def _confidence_file(label: Path) -> Path:
    return label.with_name(label.name.replace("_gtFine_labelIds.png", "_confidence.png"))


def propagate_clips(clips, policy: str, labels_root: str | Path, propagator: Propagator, k: int,
                    batch: int = 8, confidence: bool = False, progress: bool = True) -> dict[str, float]:
    """Write ``policy``'s label of every frame within ±``k`` of each clip's labelled frame.

    From the labelled frame outwards, in both time directions, each step starts from the label
    the policy gave the previous frame (warp-refine recurses on its own refined output). Every
    file is written atomically; a frame whose file exists is read back instead of recomputed, so
    a killed run resumes where it stopped and ends with the same files. Clips are processed
    ``batch`` at a time (one ``g_ψ`` / Ω forward per step for the batch).
    Returns ``{"frames": written, "skipped": found, "seconds": …}``.
    """
    propagator.check(policy)
    root = Path(labels_root)
    total = sum(min(k, c.labelled) + min(k, len(c) - 1 - c.labelled) + 1 for c in clips)
    bar = progress_bar(total=total, desc=f"propagate {policy}", unit="frame", disable=not progress)
    written = skipped = 0
    tic = time.perf_counter()

    def save(clip, pos: int, ids: np.ndarray, conf: np.ndarray | None) -> None:
        path = label_file(root, policy, clip.frames[pos])
        if confidence and conf is not None:
            atomic_write_png(_confidence_file(path), np.clip(np.rint(conf * 255), 0, 255).astype(np.uint8))
        write_label_ids(path, ids)  # the label last: its presence marks the frame done

    for start in range(0, len(clips), batch):
        group = clips[start:start + batch]
        humans = [c.label(c.labelled) for c in group]
        for clip, human in zip(group, humans, strict=True):
            path = label_file(root, policy, clip.frames[clip.labelled])
            if path.is_file():
                skipped += 1
            else:
                save(clip, clip.labelled, human, np.ones(human.shape, np.float32))
                written += 1
            bar.update()
        for direction in (1, -1):
            current = list(humans)
            for d in range(1, k + 1):
                todo = []
                for j, clip in enumerate(group):
                    pos = clip.labelled + direction * d
                    if not 0 <= pos < len(clip) or current[j] is None:
                        current[j] = None
                        continue
                    path = label_file(root, policy, clip.frames[pos])
                    if path.is_file():
                        current[j] = read_label(path)
                        skipped += 1
                        bar.update()
                    else:
                        todo.append((j, (clip, pos - direction, pos, current[j], humans[j])))
                if todo:
                    for (j, (clip, _, pos, _, _)), (ids, conf) in zip(
                            todo, propagator.step(policy, [item for _, item in todo]), strict=True):
                        save(clip, pos, ids, conf)
                        current[j] = ids
                        written += 1
                        bar.update()
    bar.close()
    return {"frames": written, "skipped": skipped, "seconds": round(time.perf_counter() - tic, 3)}


def propagation_accuracy(clips, ground_truth, labels_root: str | Path, policies, k: int,
                         num_classes: int = NUM_CLASSES) -> list[dict]:
    """mIoU, coverage and per-class IoU of each policy's labels per distance d = 1..k from the
    labelled frame, against every frame's ground truth. Unlabelled pixels count as wrong."""
    rows = []
    for policy in policies:
        confs = {d: np.zeros((num_classes, num_classes + 1), np.int64) for d in range(1, k + 1)}
        for clip in clips:
            for pos in range(len(clip)):
                d = abs(pos - clip.labelled)
                if not 1 <= d <= k:
                    continue
                path = label_file(Path(labels_root), policy, clip.frames[pos])
                truth, ids = ground_truth.label(clip.clip_id, pos), read_label(path)
                if truth.shape != ids.shape:
                    raise DatasetError(f"the true label of {clip.frames[pos].stem} is {truth.shape[1]}×"
                                       f"{truth.shape[0]} but {path} is {ids.shape[1]}×{ids.shape[0]}; "
                                       "the dataset changed after propagating: propagate again")
                confs[d] += confusion_matrix(ids, truth, num_classes)
        for d, conf in confs.items():
            if conf.sum() == 0:
                continue
            per_class = iou(conf)
            rows.append({"policy": policy, "distance": d, "miou": round(mean_iou(conf), 2),
                         "coverage": round(coverage(conf), 2),
                         **{f"iou_{CLASS_NAMES[c].replace(' ', '_')}": (round(float(v) * 100, 2)
                                                                         if np.isfinite(v) else "")
                            for c, v in enumerate(per_class)}})
    return rows


def write_accuracy_csv(rows: list[dict], path: str | Path) -> Path:
    """Rows of :func:`propagation_accuracy` as a long-form CSV (policy, distance, miou, …), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def read_accuracy(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of a propagation folder's ``accuracy.csv`` (numbers as floats)."""
    with open(Path(folder) / "accuracy.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: (v if k == "policy" else (float(v) if v != "" else float("nan"))) for k, v in row.items()}
            for row in rows]


def warp_refine_margin(miou: dict[tuple[str, int], float]) -> dict[int, float]:
    """Per distance: warp-refine's mIoU minus the best other policy's, from ``{(policy, d): mIoU}``."""
    others: dict[int, float] = {}
    for (policy, d), value in miou.items():
        if policy != "warp-refine":
            others[d] = max(others.get(d, value), value)
    return {d: round(v - others[d], 2) for (p, d), v in sorted(miou.items()) if p == "warp-refine"}
