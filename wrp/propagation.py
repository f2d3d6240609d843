"""Warp-inpaint and cyclic warped labels — the geometric half of Warp-Refine (METHOD.md §1, §3).

- :func:`warp_inpaint` carries a label from frame t to frame t+1 along the motion between them;
  pixels that no valid motion explains (out of view, de-occluded, failing the forward–backward
  check) take the semantic prediction ``g_ψ(I_{t+1})`` — or stay unlabelled when there is none.
- :func:`cyclic_warped_labels` warp-inpaints a human label ``t → t±p`` frame by frame and back to
  ``t``. The result ``l°_t`` carries realistic warping noise, and its clean version ``L_t`` is
  known: the training pairs of the denoiser Ω_λ, with no extra labels (the paper's Figure 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wrp.data import IGNORE_INDEX, NUM_CLASSES
from wrp.motion import DISFlow, FlowEstimator, forward_backward_valid, warp

Segmenter = Callable[[np.ndarray], np.ndarray]  # RGB uint8 (H, W, 3) → (K, H, W) class scores


def one_hot(label: np.ndarray | torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(H, W) train ids → (K, H, W) float32 one-hot; ignore pixels get an all-zero vector."""
    ids = torch.as_tensor(np.asarray(label), dtype=torch.int64)
    known = ids < num_classes
    out = torch.zeros((num_classes,) + tuple(ids.shape), dtype=torch.float32)
    out.scatter_(0, torch.where(known, ids, 0)[None], known[None].float())
    return out


def to_ids(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    """(K, H, W) one-hot or scores → (H, W) uint8 train ids; all-zero pixels → 255 (unlabelled)."""
    scores = torch.as_tensor(scores)
    ids = scores.argmax(0).to(torch.uint8)
    ids[scores.abs().sum(0) == 0] = IGNORE_INDEX
    return ids.numpy()


@dataclass
class WarpInpainted:
    """The output of one warp-inpaint step onto frame t+1."""

    label: torch.Tensor  # (K, H, W) one-hot L^w_t; all-zero where nothing could be said
    image: torch.Tensor  # (3, H, W) float32 I^w_t: frame t warped onto frame t+1, 0..255
    valid: torch.Tensor  # (H, W) bool: the motion explains the pixel (in view, consistent)

    @property
    def ids(self) -> np.ndarray:
        return to_ids(self.label)


def warp_inpaint(
    label_t: np.ndarray,
    image_t: np.ndarray,
    image_next: np.ndarray,
    semantic_next: np.ndarray | None = None,
    *,
    flow: np.ndarray | None = None,
    flow_reverse: np.ndarray | None = None,
    estimator: FlowEstimator | None = None,
    check: bool = True,
    fill: str = "ignore",
    num_classes: int = NUM_CLASSES,
) -> WarpInpainted:
    """``L^w_t = Ψ(L_t)``: warp the label of frame t onto frame t+1, inpaint what motion cannot say.

    ``label_t``: (H, W) train ids. ``image_t``, ``image_next``: RGB uint8 (H, W, 3).
    ``semantic_next``: (K, H, W) scores of ``g_ψ(I_{t+1})`` or (H, W) train ids; ``None`` leaves
    invalid pixels unlabelled. ``flow``: backward flow of frame t+1 (to t), estimated with
    ``estimator`` (DIS by default) when not given; ``flow_reverse`` (t → t+1) likewise, for the
    forward–backward check (``check=False`` keeps only the out-of-view test).
    ``fill``: what invalid pixels get when there is no semantic prediction — ``"ignore"``
    (unlabelled) or ``"warped"`` (the motion's guess anyway, as the motion-only baseline does).
    """
    if fill not in ("ignore", "warped"):
        raise ValueError(f"fill={fill!r}; use 'ignore' or 'warped'")
    estimator = estimator or DISFlow()
    if flow is None:
        flow = estimator(image_next, image_t)
    label_w, inside = warp(np.ascontiguousarray(label_t), flow, mode="nearest")  # labels: nearest
    image_w, _ = warp(np.ascontiguousarray(image_t.transpose(2, 0, 1)).astype(np.float32), flow)
    valid = inside
    if check:
        if flow_reverse is None:
            flow_reverse = estimator(image_t, image_next)
        valid = valid & forward_backward_valid(flow, flow_reverse)
    hot = one_hot(label_w, num_classes)
    invalid = ~valid
    if semantic_next is None:
        if fill == "ignore":
            hot[:, invalid] = 0
    else:
        sem = np.asarray(semantic_next)
        fill = one_hot(sem if sem.ndim == 2 else to_ids(sem), num_classes)
        hot[:, invalid] = fill[:, invalid]
    return WarpInpainted(hot, image_w, valid)


def warp_inpaint_step(clip, source: int, target: int, label: np.ndarray, estimator: FlowEstimator,
                      segmenter: Segmenter | None = None, images: dict[int, np.ndarray] | None = None,
                      check: bool = True, fill: str = "ignore") -> WarpInpainted:
    """Warp-inpaint ``label`` of frame ``source`` of a clip onto its neighbour ``target``."""
    images = images if images is not None else {}
    for pos in (source, target):
        if pos not in images:
            images[pos] = clip.image(pos)
    flow = estimator.between(clip, target, source)
    flow_reverse = estimator.between(clip, source, target) if check else None
    semantic = segmenter(images[target]) if segmenter is not None else None
    return warp_inpaint(label, images[source], images[target], semantic, flow=flow,
                        flow_reverse=flow_reverse, estimator=estimator, check=check, fill=fill)


@dataclass
class CyclicSample:
    """A training example of Ω_λ: ``Ω(I_t, I°_t, l°_t) → L_t``."""

    t: int
    p: int
    direction: int  # +1: t → t+p → t; -1: t → t−p → t
    label: np.ndarray  # (H, W) L_t, the human label
    cyclic_label: torch.Tensor  # (K, H, W) one-hot l°_t
    cyclic_image: torch.Tensor  # (3, H, W) I°_t: frame t±1 warped onto t at the last step
    valid: torch.Tensor  # (H, W) validity of the last step

    @property
    def cyclic_ids(self) -> np.ndarray:
        return to_ids(self.cyclic_label)


def cyclic_warped_labels(clip, t: int, p: int, direction: int = 1,
                         estimator: FlowEstimator | None = None, segmenter: Segmenter | None = None,
                         check: bool = True, fill: str = "ignore") -> CyclicSample:
    """Supplementary §3 / Figure 1: warp-inpaint the human label ``L_t`` to ``t ± p``, frame by
    frame, and back to ``t``; returns ``l°_t`` and ``I°_t`` beside ``L_t``.

    Only the human label of frame ``t`` is read (``clip.label(t)`` refuses any other frame).
    """
    if p < 1:
        raise ValueError(f"cycle length p={p} must be ≥ 1")
    if direction not in (1, -1):
        raise ValueError(f"direction={direction}; use +1 (forward in time first) or -1")
    end = t + direction * p
    if not 0 <= end < len(clip):
        raise ValueError(f"a cycle of p={p} from frame {t} leaves the clip of {len(clip)} frames")
    estimator = estimator or DISFlow()
    human = clip.label(t)
    images: dict[int, np.ndarray] = {}
    path = [t + direction * i for i in range(p + 1)]
    path = path + path[-2::-1]  # t, t±1, …, t±p, …, t±1, t
    current = human
    step = None
    for source, target in zip(path[:-1], path[1:], strict=True):
        step = warp_inpaint_step(clip, source, target, current, estimator, segmenter, images, check, fill)
        current = step.ids
    return CyclicSample(t, p, direction, human, step.label, step.image, step.valid)


def label_boundaries(label: np.ndarray, radius: int = 2) -> np.ndarray:
    """(H, W) bool: pixels within ``radius`` of a change of class (thin structures are all boundary)."""
    import cv2

    size = 2 * radius + 1
    kernel = np.ones((size, size), np.uint8)
    high = cv2.dilate(label, kernel)
    low = cv2.erode(label, kernel)
    return high != low


def cyclic_noise(clips, ps: list[int], estimator: FlowEstimator | None = None,
                 segmenter: Segmenter | None = None, fill: str = "ignore",
                 progress: bool = True) -> dict[int, dict[str, float]]:
    """How wrong are cyclic warped labels, per cycle length p (the paper's Figure 1, in numbers)?

    Over the labelled frame of every clip and both time directions: ``wrong`` — share of pixels
    whose ``l°_t`` differs from ``L_t`` (unlabelled counts as wrong), ``unlabelled`` — share left
    without a label, ``at_boundaries`` — share of the wrong pixels lying within 2 px of a class
    boundary of ``L_t`` (versus ``boundary_area``, the share of all pixels lying there).
    """
    from tqdm.auto import tqdm

    from wrp.motion import ClipFlowCache

    estimator = ClipFlowCache(estimator or DISFlow())  # every p of a clip crosses the same frame pairs
    totals = {p: np.zeros(5) for p in ps}  # pixels, wrong, unlabelled, wrong at boundary, boundary
    jobs = [(clip, p, d) for clip in clips for p in ps for d in (1, -1)
            if 0 <= clip.labelled + d * p < len(clip)]
    for clip, p, d in tqdm(jobs, desc="cyclic warped labels", disable=not progress):
        sample = cyclic_warped_labels(clip, clip.labelled, p, d, estimator, segmenter, fill=fill)
        ids, truth = sample.cyclic_ids, sample.label
        scored = truth != IGNORE_INDEX
        wrong = (ids != truth) & scored
        edge = label_boundaries(truth) & scored
        totals[p] += [scored.sum(), wrong.sum(), ((ids == IGNORE_INDEX) & scored).sum(),
                      (wrong & edge).sum(), edge.sum()]
    out = {}
    for p, (n, wrong, unl, wrong_edge, edge) in totals.items():
        if n:
            out[p] = {"wrong": round(wrong / n, 4), "unlabelled": round(unl / n, 4),
                      "at_boundaries": round(wrong_edge / max(wrong, 1), 4),
                      "boundary_area": round(edge / n, 4)}
    return out


# ---------------------------------------------------------------------------------------------
# Propagation of a whole dataset (METHOD.md §4) and its evaluation
# ---------------------------------------------------------------------------------------------
POLICIES = ("copy", "motion-only", "semantic-only", "warp-inpaint", "warp-refine")
_NEEDS_SEGMENTER = {"semantic-only", "warp-inpaint", "warp-refine"}


def label_file(labels_root: Path, policy: str, frame) -> Path:
    """Where a policy's label of ``frame`` goes: ``<labels_root>/<policy>/gtFine/<split>/<city>/…``
    — the Cityscapes layout, so a policy's folder reads like a dataset's label tree."""
    return frame.label(Path(labels_root) / policy)


def _confidence_file(label: Path) -> Path:
    return label.with_name(label.name.replace("_gtFine_labelIds.png", "_confidence.png"))


@dataclass
class Propagator:
    """What the policies need: a motion estimator, ``g_ψ`` (a ``wrp.denoiser.CachedSegmenter``)
    and Ω (``wrp.denoiser.Denoiser``); the last two only for the policies that use them."""

    estimator: FlowEstimator
    segmenter: object | None = None
    denoiser: torch.nn.Module | None = None
    device: str = "cpu"
    inpaint: str = "motion"  # Ω's input where motion fails: "motion" guess or "semantic" (g_ψ)
    _targets: dict = field(default_factory=dict, init=False, repr=False)  # last step's target images

    def check(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
        if policy in _NEEDS_SEGMENTER and self.segmenter is None:
            raise ValueError(f"policy {policy!r} needs the segmenter g_ψ")
        if policy == "warp-refine" and self.denoiser is None:
            raise ValueError("policy 'warp-refine' needs the denoiser Ω")

    def step(self, policy: str, items: list[tuple]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """One propagation step for a batch: ``items`` = (clip, source, target, label of source,
        human label); returns (train ids of target, confidence 0..1 or None) per item."""
        from wrp.denoiser import pack_inputs, refine

        if policy == "copy":
            return [(human, None) for *_, human in items]
        # a step's source frame was the previous step's target: read each frame once
        images, read = [], {}
        for clip, s, t, _, _ in items:
            source = self._targets.get(clip.images[s])
            read[clip.images[t]] = target = clip.image(t)
            images.append((clip.image(s) if source is None else source, target))
        self._targets = read
        targets = torch.stack([torch.from_numpy(np.ascontiguousarray(t)).permute(2, 0, 1) for _, t in images])
        probs = ocr = None
        if policy in _NEEDS_SEGMENTER:
            probs, ocr = self.segmenter.outputs(targets)
            probs = probs.cpu()
        if policy == "semantic-only":
            conf, ids = probs.max(1)
            return [(ids[i].to(torch.uint8).numpy(), conf[i].numpy()) for i in range(len(items))]
        # motion-only: the motion's guess everywhere, no check; warp-inpaint: g_ψ where the check
        # fails; warp-refine: Ω's input, inpainted as ``self.inpaint`` says
        check = policy != "motion-only"
        inpaint = policy == "warp-inpaint" or (policy == "warp-refine" and self.inpaint == "semantic")
        steps = []
        for i, ((clip, s, t, label, _), (img_s, img_t)) in enumerate(zip(items, images, strict=True)):
            semantic = probs[i].argmax(0).to(torch.uint8).numpy() if inpaint else None
            steps.append(warp_inpaint(label, img_s, img_t, semantic, flow=self.estimator.between(clip, t, s),
                                      flow_reverse=self.estimator.between(clip, s, t) if check else None,
                                      estimator=self.estimator, check=check,
                                      fill="ignore" if inpaint else "warped"))
        if policy != "warp-refine":
            return [(st.ids, st.valid.float().numpy()) for st in steps]
        x = pack_inputs(targets, torch.stack([st.image for st in steps]),
                        torch.stack([st.label for st in steps]), torch.stack([st.valid for st in steps]))
        refined = refine(self.denoiser, x, ocr).cpu()
        conf, ids = refined.max(1)
        return [(ids[i].to(torch.uint8).numpy(), conf[i].numpy()) for i in range(len(items))]


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
    import time

    from tqdm.auto import tqdm

    from wrp.data import read_label, write_label_ids
    from wrp.io import atomic_write_png

    propagator.check(policy)
    root = Path(labels_root)
    total = sum(min(k, c.labelled) + min(k, len(c) - 1 - c.labelled) + 1 for c in clips)
    bar = tqdm(total=total, desc=f"propagate {policy}", unit="frame", disable=not progress)
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
    from wrp.data import CLASS_NAMES, read_label
    from wrp.metrics import confusion_matrix, coverage, iou, mean_iou

    rows = []
    for policy in policies:
        confs = {d: np.zeros((num_classes, num_classes + 1), np.int64) for d in range(1, k + 1)}
        for clip in clips:
            for pos in range(len(clip)):
                d = abs(pos - clip.labelled)
                if not 1 <= d <= k:
                    continue
                path = label_file(Path(labels_root), policy, clip.frames[pos])
                truth = ground_truth.label(clip.clip_id, pos)
                confs[d] += confusion_matrix(read_label(path), truth, num_classes)
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
    import csv
    import io

    from wrp.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def warp_refine_margin(miou: dict[tuple[str, int], float]) -> dict[int, float]:
    """Per distance: warp-refine's mIoU minus the best other policy's, from ``{(policy, d): mIoU}``."""
    others: dict[int, float] = {}
    for (policy, d), value in miou.items():
        if policy != "warp-refine":
            others[d] = max(others.get(d, value), value)
    return {d: round(v - others[d], 2) for (p, d), v in sorted(miou.items()) if p == "warp-refine"}
