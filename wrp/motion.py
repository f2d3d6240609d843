"""Motion between frames and backward warping (METHOD.md §1, the geometric cue).

Convention everywhere in ``wrp``: a flow field of frame ``t`` has shape (H, W, 2), x then y, in
pixels, and takes each pixel ``p`` of frame ``t`` to its position ``p + flow(p)`` in the *source*
frame. Backward warping then reads the source there::

    warped_t(p) = source(p + flow(p))

so one function carries images (bilinear) and labels (nearest) from the source frame to frame t.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 2) pixel flow → the normalised sampling grid of ``grid_sample`` (align_corners)."""
    _, H, W, _ = flow.shape
    ys, xs = torch.meshgrid(torch.arange(H, device=flow.device, dtype=flow.dtype),
                            torch.arange(W, device=flow.device, dtype=flow.dtype), indexing="ij")
    gx = 2 * (xs + flow[..., 0]) / max(W - 1, 1) - 1
    gy = 2 * (ys + flow[..., 1]) / max(H - 1, 1) - 1
    return torch.stack([gx, gy], dim=-1)


def warp(source: torch.Tensor | np.ndarray, flow: torch.Tensor | np.ndarray, mode: str = "bilinear",
         padding: str = "border") -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-warp ``source`` onto the frame whose ``flow`` is given; images and labels alike.

    ``source``: (B, C, H, W) or (C, H, W) or (H, W) tensor/array (labels: integer ids with
    ``mode="nearest"``, or one-hot / probabilities with bilinear). ``flow``: (B, H, W, 2) or
    (H, W, 2). Returns the warped tensor (same layout and dtype as ``source``) and an (B, H, W) or
    (H, W) bool mask of pixels whose source position lies inside the image.
    ``padding="border"`` copies the edge (as the motion-only baseline does), ``"zeros"`` fills 0.
    """
    src = torch.as_tensor(source)
    fl = torch.as_tensor(flow)
    squeeze = src.dim()
    if src.dim() == 2:
        src = src[None, None]
    elif src.dim() == 3:
        src = src[None]
    if fl.dim() == 3:
        fl = fl[None]
    if fl.shape[0] != src.shape[0] or fl.shape[1:3] != src.shape[2:]:
        raise ValueError(f"flow of shape {tuple(fl.shape)} does not fit source of shape {tuple(src.shape)}")
    dtype = src.dtype
    work = src if src.is_floating_point() else src.to(torch.float32)
    fl = fl.to(device=work.device, dtype=torch.float32 if work.dtype == torch.float16 else work.dtype)
    grid = _grid(fl)
    out = F.grid_sample(work, grid.to(work.dtype), mode=mode, padding_mode=padding, align_corners=True)
    if not src.is_floating_point():
        out = out.round().to(dtype)
    px = grid[..., 0]
    py = grid[..., 1]
    inside = (px >= -1 - 1e-6) & (px <= 1 + 1e-6) & (py >= -1 - 1e-6) & (py <= 1 + 1e-6)
    if squeeze == 2:
        return out[0, 0], inside[0]
    if squeeze == 3:
        return out[0], inside[0]
    return out, inside


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        raise ValueError(f"optical flow needs 8-bit images, got {image.dtype}")
    return np.ascontiguousarray(image)


def forward_backward_valid(flow_back: torch.Tensor | np.ndarray,
                           flow_fwd: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The forward–backward consistency check (Meister et al., UnFlow) for backward warping.

    ``flow_back`` (H, W, 2) takes pixels of the target frame to the source frame; ``flow_fwd``
    takes pixels of the source back to the target. A target pixel is consistent when the round
    trip returns home: |f_f(x + f_b) + f_b|² < 0.01 (|f_f(x + f_b)|² + |f_b|²) + 0.5, with f_f
    sampled bilinearly at x + f_b. Occluded and mis-tracked pixels fail; so do pixels whose
    source position leaves the image. Returns an (H, W) or (B, H, W) bool tensor.
    """
    fb = torch.as_tensor(flow_back, dtype=torch.float32)
    ff = torch.as_tensor(flow_fwd, dtype=torch.float32, device=fb.device)
    batched = fb.dim() == 4
    if not batched:
        fb, ff = fb[None], ff[None]
    ff_at, inside = warp(ff.permute(0, 3, 1, 2), fb)
    ff_at = ff_at.permute(0, 2, 3, 1)  # f_f sampled at x + f_b
    mismatch = ((ff_at + fb) ** 2).sum(-1)
    bound = 0.01 * ((ff_at**2).sum(-1) + (fb**2).sum(-1)) + 0.5
    valid = (mismatch < bound) & inside
    return valid if batched else valid[0]


def followed(clip, k: int) -> dict[int, np.ndarray]:
    """Per frame within ±k of the clip's labelled frame: the (H, W) bool mask of pixels whose point
    the world's motion tracks from the labelled frame, seen in both frames of every step on the way
    (synthetic world: ``clip.true_flow``; what a label can be carried to, the rest having come into
    view on the way). The labelled frame's own mask is all True."""
    start = clip.labelled
    masks: dict[int, np.ndarray] = {}
    for step in (1, -1):
        for d in range(1, k + 1):
            pos = start + step * d
            if not 0 <= pos < len(clip):
                break
            flow, seen = clip.true_flow(pos, "backward" if step == 1 else "forward")
            before = masks.setdefault(start, np.ones(seen.shape, bool)) if d == 1 else masks[pos - step]
            carried, inside = warp(before.astype(np.uint8), flow, mode="nearest")
            masks[pos] = seen & inside.numpy() & carried.numpy().astype(bool)
    return masks


class FlowEstimator:
    """Dense motion between two frames, behind one interface (METHOD.md §1: the estimator is a
    swappable part).

    ``estimator(target, source)`` → (H, W, 2) float32 backward flow of ``target`` (where each of
    its pixels lies in ``source``), from RGB uint8 images. ``estimator.between(clip, target,
    source)`` does the same for two frames of a clip (the true-flow oracle needs to know which).
    """

    name = "flow"

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} estimates from frames of a clip only; "
                                  "use .between(clip, target, source)")

    def between(self, clip, target: int, source: int) -> np.ndarray:
        return self(clip.image(target), clip.image(source))

    def for_thread(self) -> FlowEstimator:
        """An estimator that another thread may use beside this one (the labelling pipeline's
        workers): this one when it keeps no state between calls, else an independent copy."""
        return self


DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


class DISFlow(FlowEstimator):
    """OpenCV's Dense Inverse Search optical flow (Kroeger et al. 2016), the default estimator.

    ``flow = DISFlow()(target, source)`` gives the backward flow of ``target``: where each of its
    pixels lies in ``source`` (RGB uint8 (H, W, 3) or grey (H, W)).
    """

    def __init__(self, preset: str = "medium") -> None:
        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {', '.join(DIS_PRESETS)}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    name = "dis"

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        return self._dis.calc(_grey(target), _grey(source), None)

    def for_thread(self) -> DISFlow:
        return DISFlow(self.preset)  # OpenCV's DIS object keeps buffers: one per thread


class FarnebackFlow(FlowEstimator):
    """OpenCV's Farnebäck polynomial-expansion flow: slower than DIS and weak on large motion."""

    name = "farneback"

    def __init__(self, levels: int = 4, winsize: int = 15, iterations: int = 3) -> None:
        self.params = dict(pyr_scale=0.5, levels=levels, winsize=winsize, iterations=iterations,
                           poly_n=5, poly_sigma=1.1, flags=0)

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(_grey(target), _grey(source), None, **self.params)


class TrueFlow(FlowEstimator):
    """The oracle: the exact flow the synthetic world wrote (only between neighbouring frames)."""

    name = "true"

    def between(self, clip, target: int, source: int) -> np.ndarray:
        if abs(target - source) != 1:
            raise ValueError(f"the true flow links neighbouring frames only, not {target} and {source}")
        return clip.true_flow(target, "backward" if source == target - 1 else "forward")[0]


class RAFTFlow(FlowEstimator):
    """torchvision's RAFT (Teed & Deng 2020) from a local weights file (nothing is downloaded).

    ``weights``: a ``state_dict`` file of ``raft_small`` or ``raft_large`` (e.g. torchvision's
    ``Raft_Small_Weights.C_T_V2`` saved with ``torch.save(model.state_dict(), path)``).
    """

    name = "raft"

    def __init__(self, weights: str, model: str = "raft_small", device: str = "cpu", iters: int = 12) -> None:
        from pathlib import Path

        from torchvision.models import optical_flow

        if model not in ("raft_small", "raft_large"):
            raise ValueError(f"model={model!r}; use 'raft_small' or 'raft_large'")
        if not Path(weights).is_file():
            raise FileNotFoundError(
                f"RAFT weights not found at {weights}: wrp never downloads weights at run time. On a "
                f"machine with internet, save torchvision.models.optical_flow.{model}(weights='DEFAULT')"
                ".state_dict() with torch.save and pass that file, or use DISFlow()"
            )
        self.net = getattr(optical_flow, model)(weights=None)
        self.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net.eval().to(device)
        self.device, self.iters = device, iters

    @torch.no_grad()
    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        H, W = target.shape[:2]
        pad_h, pad_w = (-H) % 8, (-W) % 8  # RAFT needs sizes divisible by 8

        def prep(image: np.ndarray) -> torch.Tensor:
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
            return (x / 127.5 - 1.0).to(self.device)  # the weights expect [-1, 1]

        flow = self.net(prep(target), prep(source), num_flow_updates=self.iters)[-1]
        return flow[0, :, :H, :W].permute(1, 2, 0).cpu().numpy()


class ClipFlowCache(FlowEstimator):
    """Remembers the flows between the frames of the clip it was last asked about, so chains that
    cross the same pair of frames again (the cyclic warps t → t±p → t for every p) estimate each
    flow once. A question about another clip forgets the previous one, which bounds the memory;
    results are those of the wrapped estimator."""

    def __init__(self, estimator: FlowEstimator) -> None:
        self.inner = estimator
        self.name = estimator.name
        self._clip: str | None = None
        self._flows: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        return self.inner(target, source)

    def for_thread(self) -> ClipFlowCache:
        return ClipFlowCache(self.inner.for_thread())

    def between(self, clip, target: int, source: int) -> np.ndarray:
        if clip.clip_id != self._clip:
            self._clip, self._flows = clip.clip_id, {}
        if (target, source) not in self._flows:
            self._flows[target, source] = self.inner.between(clip, target, source)
        return self._flows[target, source]


ESTIMATORS = {"dis": DISFlow, "farneback": FarnebackFlow, "true": TrueFlow, "raft": RAFTFlow}


def make_estimator(name: str, **kwargs) -> FlowEstimator:
    """``"dis"`` (default everywhere), ``"farneback"``, ``"true"`` (synthetic world), ``"raft"``."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown flow estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](**kwargs)
