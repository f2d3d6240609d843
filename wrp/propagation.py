"""Warp-inpaint and cyclic warped labels — the geometric half of Warp-Refine (METHOD.md §1, §3).

- :func:`warp_inpaint` carries a label from frame t to frame t+1 along the motion between them;
  pixels that no valid motion explains (out of view, de-occluded, failing the forward–backward
  check) take the semantic prediction ``g_ψ(I_{t+1})`` — or stay unlabelled when there is none.
- :func:`cyclic_warped_labels` warp-inpaints a human label ``t → t±p`` frame by frame and back to
  ``t``. The result ``l°_t`` carries realistic warping noise, and its clean version ``L_t`` is
  known: the training pairs of the denoiser Ω_λ, with no extra labels (the paper's Figure 1).

The label policies that use these steps to label a whole dataset live in ``wrp.policies``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from wrp.data import IGNORE_INDEX, NUM_CLASSES
from wrp.motion import ClipFlowCache, DISFlow, FlowEstimator, forward_backward_valid, warp
from wrp.runtime import progress_bar

Segmenter = Callable[[np.ndarray], np.ndarray]  # RGB uint8 (H, W, 3) → (K, H, W) class scores


def one_hot(label: np.ndarray | torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(H, W) or (B, H, W) train ids → (K, H, W) or (B, K, H, W) float32 one-hot, on the label's
    device; ignore pixels get an all-zero vector."""
    ids = torch.as_tensor(label if isinstance(label, torch.Tensor) else np.asarray(label)).long()
    known = ids < num_classes
    shape = tuple(ids.shape[:-2]) + (num_classes,) + tuple(ids.shape[-2:])
    out = torch.zeros(shape, dtype=torch.float32, device=ids.device)
    out.scatter_(-3, torch.where(known, ids, 0).unsqueeze(-3), known.unsqueeze(-3).float())
    return out


def to_ids(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    """(K, H, W) one-hot or scores → (H, W) uint8 train ids; all-zero pixels → 255 (unlabelled)."""
    scores = torch.as_tensor(scores)
    ids = scores.argmax(0).to(torch.uint8)
    ids[scores.abs().sum(0) == 0] = IGNORE_INDEX
    return ids.cpu().numpy()


@dataclass
class WarpInpainted:
    """The output of warp-inpaint onto frame t+1, of one frame (or of a batch: fields with the batch
    dimension first)."""

    train_ids: torch.Tensor  # (H, W) uint8 L^w_t as train ids; 255 where nothing could be said
    image: torch.Tensor | None  # (3, H, W) float32 I^w_t: frame t warped onto frame t+1, 0..255
    valid: torch.Tensor  # (H, W) bool: the motion explains the pixel (in view, consistent)
    num_classes: int = NUM_CLASSES

    @property
    def label(self) -> torch.Tensor:
        """(K, H, W) float32 one-hot L^w_t, all-zero where nothing could be said (Ω's input)."""
        return one_hot(self.train_ids, self.num_classes)

    @property
    def ids(self) -> np.ndarray:
        return self.train_ids.cpu().numpy()


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
    One frame of :func:`warp_inpaint_batch`.
    """
    estimator = estimator or DISFlow()
    if flow is None:
        flow = estimator(image_next, image_t)
    if check and flow_reverse is None:
        flow_reverse = estimator(image_t, image_next)
    semantic = None
    if semantic_next is not None:
        sem = np.asarray(semantic_next)
        semantic = torch.as_tensor(sem if sem.ndim == 2 else to_ids(sem))[None]
    out = warp_inpaint_batch(
        torch.as_tensor(np.ascontiguousarray(label_t))[None],
        torch.from_numpy(np.ascontiguousarray(image_t.transpose(2, 0, 1)))[None],
        torch.as_tensor(flow)[None], None if flow_reverse is None else torch.as_tensor(flow_reverse)[None],
        semantic, check=check, fill=fill, num_classes=num_classes)
    return WarpInpainted(out.train_ids[0], out.image[0], out.valid[0], num_classes)


def warp_inpaint_batch(labels: torch.Tensor, images: torch.Tensor | None, flow: torch.Tensor,
                       flow_reverse: torch.Tensor | None = None, semantic: torch.Tensor | None = None, *,
                       check: bool = True, fill: str = "ignore", num_classes: int = NUM_CLASSES
                       ) -> WarpInpainted:
    """:func:`warp_inpaint` of a batch, on the tensors' device (the labelling pipeline's step).

    ``labels``: (B, H, W) train ids of the source frames; ``images``: (B, 3, H, W) source frames,
    0..255 (``None``: the warped image is not needed, and ``WarpInpainted.image`` is ``None``);
    ``flow``: (B, H, W, 2) backward flows of the targets, ``flow_reverse`` the forward ones (needed
    when ``check``); ``semantic``: (B, H, W) train ids that fill what motion cannot explain.
    Returns a :class:`WarpInpainted` whose fields carry the batch dimension first.
    """
    if fill not in ("ignore", "warped"):
        raise ValueError(f"fill={fill!r}; use 'ignore' or 'warped'")
    label_w, inside = warp(labels[:, None], flow, mode="nearest")  # labels: nearest
    image_w = warp(images.float(), flow)[0] if images is not None else None
    valid = inside
    if check:
        if flow_reverse is None:
            raise ValueError("the forward–backward check needs flow_reverse")
        valid = valid & forward_backward_valid(flow, flow_reverse)
    unlabelled = torch.tensor(IGNORE_INDEX, dtype=torch.uint8, device=label_w.device)

    def known(ids: torch.Tensor) -> torch.Tensor:  # ids of no class (e.g. 255) → 255
        return torch.where(ids < num_classes, ids.to(torch.uint8), unlabelled)

    ids = known(label_w[:, 0])
    if semantic is not None:
        ids = torch.where(valid, ids, known(semantic.to(ids.device)))
    elif fill == "ignore":
        ids = torch.where(valid, ids, unlabelled)
    return WarpInpainted(ids, image_w, valid, num_classes)


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
    estimator = ClipFlowCache(estimator or DISFlow())  # every p of a clip crosses the same frame pairs
    totals = {p: np.zeros(5) for p in ps}  # pixels, wrong, unlabelled, wrong at boundary, boundary
    jobs = [(clip, p, d) for clip in clips for p in ps for d in (1, -1)
            if 0 <= clip.labelled + d * p < len(clip)]
    for clip, p, d in progress_bar(jobs, desc="cyclic warped labels", disable=not progress):
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
