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
frame against a dataset that labels every frame, and :func:`label_errors` says where each
class's pixels go.
"""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from wrp.data import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, DatasetError, read_label, write_label_ids
from wrp.denoiser import Gate, pack_inputs, refine
from wrp.io import atomic_write_text
from wrp.metrics import confusion_matrix, coverage, iou, mean_iou
from wrp.models import CachedSegmenter
from wrp.motion import FlowEstimator
from wrp.paper import DEFAULT_INPAINT, INPAINT, POLICIES
from wrp.pipeline import NEEDS, LabelWriter, PlannedStep, StageClock, StepFrames, confidence_file, step_inputs
from wrp.propagation import warp_inpaint_batch
from wrp.runtime import progress_bar

NEEDS_SEGMENTER = frozenset({"semantic-only", "warp-inpaint", "warp-refine"})

def check_inpaint(inpaint: str) -> None:
    """Refuse an ``inpaint`` that is not one of :data:`INPAINT`, naming the choices."""
    if inpaint not in INPAINT:
        raise ValueError(f"inpaint={inpaint!r}; use one of {INPAINT}")


@dataclass
class Propagator:
    """The cues a policy may use: a motion estimator, ``g_ψ`` (a
    :class:`~wrp.models.CachedSegmenter`) and Ω (a :class:`~wrp.denoiser.Denoiser`) — the last two
    only for the policies that use them — and the device the labels are computed on.

    ``inpaint`` — what Ω's input label holds where motion cannot explain a pixel (out of view,
    failed forward–backward check): ``"motion"``, the motion's own guess, with the validity
    channel telling Ω which pixels those are and ``g_ψ``'s knowledge reaching Ω through its OCR
    features only; or ``"semantic"``, ``g_ψ``'s prediction (the warp-inpaint of METHOD.md §1).

    ``gate`` — where Ω's label may replace its input (:class:`~wrp.denoiser.Gate`, chosen with Ω
    on held-out records by ``wrp.stages.train_denoiser``); ``None``: everywhere, as in the paper.

    ``amp`` — on a CUDA device, ``g_ψ`` and Ω run under automatic mixed precision (float16); the
    CPU always computes in float32.
    """

    estimator: FlowEstimator
    segmenter: CachedSegmenter | None = None
    denoiser: torch.nn.Module | None = None
    device: str = "cpu"
    inpaint: str = DEFAULT_INPAINT
    gate: Gate | None = None
    amp: bool = True

    def __post_init__(self) -> None:
        check_inpaint(self.inpaint)

    def check(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
        if policy in NEEDS_SEGMENTER and self.segmenter is None:
            raise ValueError(f"policy {policy!r} needs the segmenter g_ψ")
        if policy == "warp-refine" and self.denoiser is None:
            raise ValueError("policy 'warp-refine' needs the denoiser Ω")

    def precision(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the networks on a CUDA device (``amp``), float32 elsewhere."""
        cuda = torch.device(self.device).type == "cuda"
        return torch.autocast("cuda", dtype=torch.float16) if cuda and self.amp else contextlib.nullcontext()


@dataclass
class StepBatch:
    """One propagation step of some clips, on the propagation device: ``labels`` (B, H, W) train
    ids of the source frames (the previous step's labels), ``humans`` the labelled frames' human
    labels, and the prepared inputs the policy needs (``wrp.pipeline.NEEDS``): ``targets`` /
    ``sources`` (B, 3, H, W) uint8 frames, ``flow`` / ``flow_reverse`` (B, H, W, 2)."""

    labels: torch.Tensor
    humans: torch.Tensor
    targets: torch.Tensor | None = None
    sources: torch.Tensor | None = None
    flow: torch.Tensor | None = None
    flow_reverse: torch.Tensor | None = None


Labels = tuple[torch.Tensor, torch.Tensor | None]  # (B, H, W) uint8 train ids, (B, H, W) confidence or None
# A policy's step: (cues, batch, clock) → the labels of the batch's target frames
Step = Callable[[Propagator, StepBatch, StageClock], Labels]


def _semantic(cues: Propagator, batch: StepBatch, clock: StageClock
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    with clock("g_ψ"), cues.precision():
        probs, ocr = cues.segmenter.outputs(batch.targets)  # (B, K, H, W), (B, C, h, w)
    return probs.float(), ocr


def copy_label(cues: Propagator, batch: StepBatch, clock: StageClock) -> Labels:
    """Every neighbour gets the human label of its labelled frame, unchanged."""
    return batch.humans, None


def motion_only(cues: Propagator, batch: StepBatch, clock: StageClock) -> Labels:
    """Zhu et al.'s propagation: the previous label warped along the motion (nearest), with no
    occlusion handling; confidence 1 where the motion is consistent, 0 elsewhere."""
    with clock("warp"):
        st = warp_inpaint_batch(batch.labels, None, batch.flow, check=False, fill="warped")
        return st.train_ids, st.valid.float()


def semantic_only(cues: Propagator, batch: StepBatch, clock: StageClock) -> Labels:
    """Self-training: ``g_ψ``'s prediction of the frame, with its probability as confidence."""
    conf, ids = _semantic(cues, batch, clock)[0].max(1)
    return ids.to(torch.uint8), conf


def warp_inpaint_only(cues: Propagator, batch: StepBatch, clock: StageClock) -> Labels:
    """METHOD.md §1 alone: ``L^w_t`` — the warped label where motion explains the pixel, ``g_ψ``'s
    prediction where it does not."""
    probs, _ = _semantic(cues, batch, clock)
    with clock("warp"):
        st = warp_inpaint_batch(batch.labels, None, batch.flow, batch.flow_reverse,
                                probs.argmax(1).to(torch.uint8), check=True)
        return st.train_ids, st.valid.float()


def warp_refine(cues: Propagator, batch: StepBatch, clock: StageClock) -> Labels:
    """Warp-Refine Propagation, one step (METHOD.md §4, supplementary eq. (1)):
    ``L^w = Ψ(L^R_prev)`` warp-inpainted onto the next frame, then
    ``L^R = Ω_λ(I_next, I^w_prev, L^w)`` with ``g_ψ``'s OCR features of ``I_next`` at Ω's
    bottleneck. ``L^R`` (and Ω's probability as confidence) is what the next step warps on.
    With a gate, ``L^R`` keeps ``L^w`` wherever Ω is not sure enough to change it."""
    probs, ocr = _semantic(cues, batch, clock)
    semantic = probs.argmax(1).to(torch.uint8) if cues.inpaint == "semantic" else None
    with clock("warp"):
        st = warp_inpaint_batch(batch.labels, batch.sources, batch.flow, batch.flow_reverse, semantic,
                                check=True, fill="ignore" if semantic is not None else "warped")
    with clock("Ω"), cues.precision():
        refined = refine(cues.denoiser, pack_inputs(batch.targets, st.image, st.label, st.valid), ocr).float()
        if cues.gate is None:
            conf, ids = refined.max(1)
            return ids.to(torch.uint8), conf
        ids, conf = cues.gate.apply(refined, st.train_ids, st.valid)
        return ids.to(torch.uint8), conf


STEPS: dict[str, Step] = {"copy": copy_label, "motion-only": motion_only, "semantic-only": semantic_only,
                          "warp-inpaint": warp_inpaint_only, "warp-refine": warp_refine}


# ---------------------------------------------------------------------------------------------
# A whole dataset, and how right its labels are
# ---------------------------------------------------------------------------------------------
def label_file(labels_root: Path, policy: str, frame) -> Path:
    """Where a policy's label of ``frame`` goes: ``<labels_root>/<policy>/gtFine/<split>/<city>/…``
    — the Cityscapes layout, so a policy's folder reads like a dataset's label tree."""
    return frame.label(Path(labels_root) / policy)


def propagate_clips(clips, policy: str, labels_root: str | Path, propagator: Propagator, k: int,
                    batch: int = 8, confidence: bool = False, progress: bool = True, *, workers: int = 0,
                    groups: Sequence[int] | None = None, clock: StageClock | None = None) -> dict[str, Any]:
    """Write ``policy``'s label of every frame within ±``k`` of each clip's labelled frame.

    From the labelled frame outwards, in both time directions, each step starts from the label
    the policy gave the previous frame (warp-refine recurses on its own refined output). Clips are
    processed ``batch`` at a time (one ``g_ψ`` / Ω forward per step for the batch); ``groups``
    selects some of those batches by index (``wrp.shards`` deals them to processes), all by default.

    ``workers`` > 0 runs the labelling as a pipeline (``wrp.pipeline``): that many threads read
    the frames and estimate the flows ahead of the device, and another writes the files; 0 does
    everything in this thread, in order. The files are the same either way.

    Every file is written atomically; a frame whose file exists when the call starts is read back
    instead of recomputed, so a killed run resumes where it stopped and ends with the same files. Returns
    ``{"frames": written, "skipped": found, "seconds": …, "stages": {stage: seconds}}`` (the
    stages of ``wrp.pipeline.STAGES`` and ``wait``, the time spent waiting for prepared inputs, as
    measured by ``clock``; the workers' stages are summed over the workers).
    """
    propagator.check(policy)
    if workers < 0:
        raise ValueError(f"workers={workers} must be ≥ 0")
    root = Path(labels_root)
    clock = clock or StageClock()
    device = propagator.device
    cuda = torch.device(device).type == "cuda"
    all_groups = [clips[start:start + batch] for start in range(0, len(clips), batch)]
    chosen = list(range(len(all_groups))) if groups is None else sorted(set(groups))
    if chosen and not 0 <= chosen[0] <= chosen[-1] < len(all_groups):
        raise ValueError(f"groups {chosen} must lie in 0..{len(all_groups) - 1} (batches of {batch} clips)")
    plan, exists = _plan(all_groups, chosen, k, lambda clip, pos: label_file(root, policy, clip.frames[pos]))
    if not NEEDS[policy]:
        plan = []  # copy reads no frame
    frames = StepFrames(all_groups, plan, propagator.estimator, NEEDS[policy], pin=cuda and workers > 0)
    inputs = step_inputs(frames, workers)
    bar = progress_bar(total=len(exists), desc=f"propagate {policy}", unit="frame", disable=not progress)
    written = skipped = 0
    tic = time.perf_counter()
    writer = LabelWriter(confidence, clock, threaded=workers > 0)
    with contextlib.closing(inputs), contextlib.closing(bar), writer, torch.inference_mode():
        def save(clip, pos: int, ids: torch.Tensor, conf: torch.Tensor | None) -> None:
            writer.put(label_file(root, policy, clip.frames[pos]), ids.cpu().numpy(),
                       conf.cpu().numpy() if confidence and conf is not None else None)

        for g in chosen:
            group = all_groups[g]
            humans = [torch.from_numpy(c.label(c.labelled)) for c in group]
            for j, (clip, human) in enumerate(zip(group, humans, strict=True)):
                if exists[g, j, clip.labelled]:
                    skipped += 1
                else:
                    save(clip, clip.labelled, human, torch.ones(human.shape))
                    written += 1
                bar.update()
            humans = [h.to(device) for h in humans]
            for direction in (1, -1):
                current = list(humans)
                for d in range(1, k + 1):
                    todo = []
                    for j, clip in enumerate(group):
                        pos = clip.labelled + direction * d
                        if not 0 <= pos < len(clip):
                            continue
                        if exists[g, j, pos]:  # an earlier run's label: the next step starts from it
                            path = label_file(root, policy, clip.frames[pos])
                            current[j] = torch.from_numpy(read_label(path)).to(device)
                            if current[j].shape != humans[j].shape:
                                have, want = current[j].shape, humans[j].shape
                                raise DatasetError(f"{path} is {have[1]}×{have[0]} but the label it "
                                                   f"continues is {want[1]}×{want[0]}: delete it and "
                                                   "propagate again")
                            skipped += 1
                            bar.update()
                        else:
                            todo.append(j)
                    if not todo:
                        continue
                    step = StepBatch(torch.stack([current[j] for j in todo]),
                                     torch.stack([humans[j] for j in todo]))
                    if plan:
                        with clock("wait"):
                            item = next(inputs)
                        if "error" in item:
                            raise DatasetError(item["error"])
                        if plan[item["index"]] != PlannedStep(g, direction, d, tuple(todo)):
                            raise RuntimeError(f"prepared step {plan[item['index']]} is not the step at hand")
                        _check_size(group[todo[0]], item, tuple(step.labels.shape[-2:]))
                        for name in NEEDS[policy]:
                            setattr(step, name, item[name].to(device, non_blocking=True))
                        for stage, seconds in item["seconds"].items():
                            clock.add(stage, seconds)
                    ids, conf = STEPS[policy](propagator, step, clock)
                    for i, j in enumerate(todo):
                        save(group[j], group[j].labelled + direction * d, ids[i],
                             None if conf is None else conf[i])
                        current[j] = ids[i]
                        written += 1
                        bar.update()
    return {"frames": written, "skipped": skipped, "seconds": round(time.perf_counter() - tic, 3),
            "stages": clock.report()}


def _check_size(clip, item: dict[str, Any], shape: tuple[int, int]) -> None:
    """Refuse a clip whose frames are not the size of its human label, naming both files."""
    tensor = item.get("flow", item.get("targets"))
    size = tuple(tensor.shape[1:3]) if "flow" in item else tuple(tensor.shape[-2:])
    if size != shape:
        raise DatasetError(f"the frames of {clip.clip_id} (e.g. {clip.images[clip.labelled]}) are "
                           f"{size[1]}×{size[0]} but its label {clip.human_label} is {shape[1]}×{shape[0]}; "
                           "a label must have its frame's size")


def _plan(groups, chosen: list[int], k: int, path_of) -> tuple[list[PlannedStep], dict[tuple, bool]]:
    """The steps to compute — per batch of clips, direction and distance, the clips whose label
    file does not exist yet — and, for every frame within ±k, whether its file exists."""
    plan, exists = [], {}
    for g in chosen:
        for j, clip in enumerate(groups[g]):
            for pos in range(max(0, clip.labelled - k), min(len(clip), clip.labelled + k + 1)):
                exists[g, j, pos] = path_of(clip, pos).is_file()
        for direction in (1, -1):
            for d in range(1, k + 1):
                todo = tuple(j for j, clip in enumerate(groups[g])
                             if 0 <= (pos := clip.labelled + direction * d) < len(clip)
                             and not exists[g, j, pos])
                if todo:
                    plan.append(PlannedStep(g, direction, d, todo))
    return plan, exists


def confident_labels(clips, policy: str, labels_root: str | Path, threshold: float, k: int,
                     out_root: str | Path | None = None) -> str:
    """Write the variant ``<policy>@<τ>`` beside a policy's labels (or under ``out_root``): the same
    labels with every pixel whose confidence is below ``threshold`` left unlabelled (255, ignored by
    training) — from the ``*_confidence.png`` maps the policy wrote (``propagate_clips(...,
    confidence=True)``). The propagated labels themselves stay whole: each step starts from them,
    and a resumed run from the files. A variant file that exists is kept (a killed run resumes).
    Returns the variant's name."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"min-confidence {threshold} must lie in (0, 1]")
    if policy == "copy":
        raise ValueError("the copy policy has no confidence: --min-confidence applies to the others")
    root, name = Path(labels_root), f"{policy}@{threshold:g}"
    out = Path(out_root) if out_root is not None else root
    for clip in clips:
        for pos in range(max(0, clip.labelled - k), min(len(clip), clip.labelled + k + 1)):
            target = label_file(out, name, clip.frames[pos])
            if target.is_file():
                continue
            source = label_file(root, policy, clip.frames[pos])
            conf_path = confidence_file(source)
            if not conf_path.is_file():
                raise FileNotFoundError(f"{conf_path} is missing: --min-confidence needs the confidence "
                                        "maps of the labels (propagate with --confidence)")
            ids = read_label(source)
            confidence = read_confidence(conf_path)
            ids[confidence < threshold] = IGNORE_INDEX
            write_label_ids(target, ids)
    return name


def read_confidence(path: str | Path) -> np.ndarray:
    """(H, W) float32 confidence 0..1 of a ``*_confidence.png`` map."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise DatasetError(f"{path} is not a single-channel confidence map; propagate again with "
                           "--confidence")
    return raw.astype(np.float32) / 255.0


PIXELS = ("all", "new", "seen")  # which pixels of a frame distance_confusions counts


def distance_confusions(clips, ground_truth, labels_root: str | Path, policy: str, k: int,
                        num_classes: int = NUM_CLASSES, pixels: str = "all") -> dict[int, np.ndarray]:
    """Per distance d = 1..k from the labelled frame: the confusion of a policy's labels against every
    frame's ground truth, (K, K+1) counts — rows the true class, columns the label, the last column
    the pixels left unlabelled (:func:`~wrp.metrics.confusion_matrix`). A distance no clip reaches
    keeps an all-zero matrix.

    ``pixels``: ``"all"``; ``"new"``, only the pixels whose true class differs from the labelled
    frame's true class at the same place — what a neighbour shows that its labelled frame does not,
    the only pixels where a generated label can teach a segmenter something new; or ``"seen"``, the
    others."""
    if pixels not in PIXELS:
        raise ValueError(f"pixels={pixels!r}: choose from {', '.join(PIXELS)}")
    confs = {d: np.zeros((num_classes, num_classes + 1), np.int64) for d in range(1, k + 1)}
    for clip in clips:
        labelled = ground_truth.label(clip.clip_id, clip.labelled) if pixels != "all" else None
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
            if labelled is not None:
                changed = truth != labelled
                truth = np.where(changed if pixels == "new" else ~changed, truth, IGNORE_INDEX)
            confs[d] += confusion_matrix(ids, truth, num_classes)
    return confs


def propagation_accuracy(clips, ground_truth, labels_root: str | Path, policies, k: int,
                         num_classes: int = NUM_CLASSES) -> list[dict]:
    """mIoU, coverage and per-class IoU of each policy's labels per distance d = 1..k from the
    labelled frame, against every frame's ground truth. Unlabelled pixels count as wrong in ``miou``
    and the per-class IoU; ``miou_labelled`` scores the labelled pixels alone."""
    rows = []
    for policy in policies:
        confs = distance_confusions(clips, ground_truth, labels_root, policy, k, num_classes)
        for d, conf in confs.items():
            if conf.sum() == 0:
                continue
            per_class = iou(conf)
            rows.append({"policy": policy, "distance": d, "miou": round(mean_iou(conf), 2),
                         "coverage": round(coverage(conf), 2),
                         "miou_labelled": round(mean_iou(conf[:, :num_classes]), 2),
                         **{f"iou_{CLASS_NAMES[c].replace(' ', '_')}": (round(float(v) * 100, 2)
                                                                         if np.isfinite(v) else "")
                            for c, v in enumerate(per_class)}})
    return rows


def label_errors(conf: np.ndarray, top: int = 2) -> list[dict[str, Any]]:
    """Where each class's pixels go in a confusion of labels against the truth ((K, K+1), as
    :func:`distance_confusions` gives): for every class with true pixels, the share of them its label
    gets right (``recall``, %), the share of the pixels labelled as it that are it (``precision``, %;
    NaN when nothing is), its ``iou`` (%, unlabelled pixels counted wrong) and the ``top`` other
    labels its true pixels get, largest first, as ``(name, share %)`` — ``"unlabelled"`` for pixels
    a policy left without a label."""
    k = conf.shape[0]
    names = [*CLASS_NAMES[:k], "unlabelled"]
    per_class = iou(conf)
    rows = []
    for c in range(k):
        total = conf[c].sum()
        if total == 0:
            continue
        labelled_as = conf[:, c].sum()
        others = [(j, conf[c, j]) for j in np.argsort(-conf[c], kind="stable") if j != c and conf[c, j] > 0]
        rows.append({"class": CLASS_NAMES[c], "pixels": int(total),
                     "recall": round(float(100.0 * conf[c, c] / total), 1),
                     "precision": (round(float(100.0 * conf[c, c] / labelled_as), 1) if labelled_as
                                   else float("nan")),
                     "iou": round(float(100.0 * per_class[c]), 1),
                     "mistaken_for": [(names[j], round(float(100.0 * n / total), 1))
                                      for j, n in others[:top]]})
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
