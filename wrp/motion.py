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
    _, H, W, _ = fl.shape
    px = grid[..., 0]
    py = grid[..., 1]
    inside = (px >= -1 - 1e-6) & (px <= 1 + 1e-6) & (py >= -1 - 1e-6) & (py <= 1 + 1e-6)
    if squeeze == 2:
        return out[0, 0], inside[0]
    if squeeze == 3:
        return out[0], inside[0]
    return out, inside


DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


class DISFlow:
    """OpenCV's Dense Inverse Search optical flow (Kroeger et al. 2016), the default estimator.

    ``flow = DISFlow()(target, source)`` gives the backward flow of ``target``: where each of its
    pixels lies in ``source`` (RGB uint8 (H, W, 3) or grey (H, W)).
    """

    def __init__(self, preset: str = "medium") -> None:
        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {', '.join(DIS_PRESETS)}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        return self._dis.calc(_grey(target), _grey(source), None)


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        raise ValueError(f"optical flow needs 8-bit images, got {image.dtype}")
    return np.ascontiguousarray(image)
