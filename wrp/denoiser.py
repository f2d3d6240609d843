"""The denoiser Ω_λ and how it learns from cycles alone (METHOD.md §2–§3, supplementary Figure 2).

``L^R_{t+1} = Ω_λ(I_{t+1}, I^w_t, L^w_t)``: the target image, the previous image warped onto it
and the warp-inpainted one-hot label (plus the mask of pixels the motion explains) are stacked on
channels and run through a pix2pix-style encoder / decoder. At the bottleneck the encoder's code
is concatenated with the OCR features of ``I_{t+1}`` from the frozen segmenter ``g_ψ`` — the
semantic cue that lets Ω label objects the motion never saw.

Ω never sees an unlabelled frame's ground truth: its training pairs are *cyclic warped labels*
``(I_t, I°_t, l°_t) → L_t`` of the human-labelled frames (``wrp.propagation.cyclic_warped_labels``),
gathered by :func:`make_cyclic_samples`, served by :class:`CyclicDataset` and trained with RMI by
the shared engine (the ``cyclic`` and ``denoiser`` stages of ``wrp.stages``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wrp.data import IGNORE_INDEX, NUM_CLASSES
from wrp.metrics import confusion_matrix, mean_iou
from wrp.models import normalise, ocr_features
from wrp.motion import ClipFlowCache
from wrp.propagation import cyclic_warped_labels, one_hot
from wrp.runtime import progress_bar
from wrp.train import FINAL, SNAPSHOTS, Job, job_from_file, load_model, load_state


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _ResBlock(nn.Module):
    """pix2pixHD's residual block at the bottleneck."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch),
                                  nn.ReLU(inplace=True), nn.Conv2d(ch, ch, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(ch))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class Denoiser(nn.Module):
    """Ω_λ: encoder (``n_down`` stride-2 convolutions) → residual bottleneck fused with OCR
    features → decoder (transposed convolutions with U-Net skips) → class logits.

    Input ``x``: (B, 6 + K + 1, H, W) from :func:`pack_inputs` — the normalised target image, the
    normalised warped image, the one-hot warp-inpainted label and the validity mask. ``ocr``:
    (B, C, h, w) OCR features of the target image; when ``None`` they are computed by the frozen
    ``semantic`` model (``g_ψ``) held inside. Output: ``{"out": (B, K, H, W) logits}``.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ngf: int = 32, n_down: int = 3, n_res: int = 2,
                 ocr_channels: int = 512, ocr_proj: int = 64, semantic: nn.Module | None = None) -> None:
        super().__init__()
        self.num_classes, self.n_down = num_classes, n_down
        self.in_channels = 3 + 3 + num_classes + 1
        widths = [ngf * 2 ** i for i in range(n_down + 1)]  # e.g. 32, 64, 128, 256
        self.stem = _conv_bn(self.in_channels, widths[0], k=7)
        self.down = nn.ModuleList(_conv_bn(widths[i], widths[i + 1], stride=2) for i in range(n_down))
        self.bottleneck = nn.Sequential(*[_ResBlock(widths[-1]) for _ in range(n_res)])
        self.ocr_proj = _conv_bn(ocr_channels, ocr_proj, k=1)
        self.fuse = _conv_bn(widths[-1] + ocr_proj, widths[-1])
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(widths[i + 1], widths[i], 3, 2, 1, output_padding=1, bias=False),
                          nn.BatchNorm2d(widths[i]), nn.ReLU(inplace=True))
            for i in reversed(range(n_down)))
        self.merge = nn.ModuleList(_conv_bn(2 * widths[i], widths[i]) for i in reversed(range(n_down)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.ocr_channels = ocr_channels
        # g_ψ stays frozen: no gradients, always evaluated in eval mode (see ``train``)
        self.semantic = semantic
        if semantic is not None:
            semantic.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> Denoiser:
        super().train(mode)
        if self.semantic is not None:
            self.semantic.eval()
        return self

    def semantic_features(self, images: Tensor) -> Tensor:
        """OCR features of normalised images (B, 3, H, W) from the frozen ``g_ψ``."""
        if self.semantic is None:
            raise ValueError("this Denoiser holds no segmenter; pass the OCR features as `ocr`")
        return ocr_features(self.semantic, images)

    def forward(self, x: Tensor, ocr: Tensor | None = None) -> dict[str, Tensor]:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Ω expects {self.in_channels} input channels (image, warped image, "
                             f"{self.num_classes} one-hot classes, validity), got {x.shape[1]}")
        H, W = x.shape[-2:]
        if ocr is None:
            ocr = self.semantic_features(x[:, :3])
        step = 2 ** self.n_down
        pad_h, pad_w = (-H) % step, (-W) % step
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        code = self.bottleneck(skips.pop())
        sem = F.interpolate(ocr.to(code.dtype), size=code.shape[-2:], mode="bilinear", align_corners=False)
        y = self.fuse(torch.cat([code, self.ocr_proj(sem)], 1))
        for up, merge in zip(self.up, self.merge, strict=True):
            y = merge(torch.cat([up(y), skips.pop()], 1))
        return {"out": self.head(y)[..., :H, :W]}

    def layer_shapes(self, height: int, width: int) -> list[tuple[str, tuple[int, ...]]]:
        """(name, (C, h, w)) of every stage for one input of ``height × width`` — the schematic
        of Figure 2 (``wrp.viz.denoiser_figure``) is drawn from these."""
        x = torch.zeros(1, self.in_channels, height, width)
        ocr = torch.zeros(1, self.ocr_channels, max(1, height // 4), max(1, width // 4))
        shapes: list[tuple[str, tuple[int, ...]]] = [("input", tuple(x.shape[1:])),
                                                     ("OCR features", tuple(ocr.shape[1:]))]
        hooks = []
        named = [("stem", self.stem)] + [(f"down {i + 1}", m) for i, m in enumerate(self.down)]
        named += [("bottleneck", self.bottleneck), ("fuse", self.fuse)]
        named += [(f"up {i + 1}", m) for i, m in enumerate(self.merge)] + [("logits", self.head)]
        for name, module in named:
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: shapes.append((name, tuple(out.shape[1:])))))
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                self(x, ocr)
        finally:
            self.train(was)
            for h in hooks:
                h.remove()
        return shapes


def pack_inputs(image: Tensor, warped_image: Tensor, warped_label: Tensor, valid: Tensor) -> Tensor:
    """Stack Ω's inputs on channels: (B, 3, H, W) RGB 0..255 target and warped images, (B, K, H, W)
    one-hot label, (B, H, W) validity → (B, 6 + K + 1, H, W) float32, images normalised as for
    ``g_ψ`` (the first three channels are what ``g_ψ`` sees)."""
    return torch.cat([normalise(image), normalise(warped_image), warped_label.float(),
                      valid[:, None].float()], 1)


def build_denoiser(segmenter: str | None = None, num_classes: int = NUM_CLASSES, ngf: int = 32,
                   n_down: int = 3, n_res: int = 2, ocr_proj: int = 64) -> Denoiser:
    """Ω with the frozen ``g_ψ`` of a finished segmenter stage folder (``wrp.stages``)."""
    semantic, channels = None, 512
    if segmenter is not None:
        folder = Path(segmenter)
        semantic = load_model(job_from_file(folder / "job.json"), folder)
        if not hasattr(semantic, "ocr_channels"):
            raise ValueError(f"the segmenter in {folder} has no OCR head; Ω needs OCRNet or MSA-HRNet-OCR")
        channels = semantic.ocr_channels
    return Denoiser(num_classes, ngf, n_down, n_res, channels, ocr_proj, semantic)


# ----------------------------------------------------------------------------------------------
# Training pairs: cyclic warped labels of the human-labelled frames
# ----------------------------------------------------------------------------------------------
def make_cyclic_samples(clips, ps: tuple[int, ...], estimator, segmenter=None, progress: bool = True
                        ) -> dict[str, np.ndarray]:
    """Every cyclic warped label ``l°_t`` of the labelled frame of ``clips``, for each p in ``ps`` and
    both time directions (where the cycle fits in the clip): arrays ``image`` (N, H, W, 3) = I_t,
    ``cyclic_image`` = I°_t, ``cyclic_label`` = l°_t, ``valid``, ``label`` = L_t and
    ``meta`` = (clip index, p, direction)."""
    jobs = [(ci, p, d) for ci, clip in enumerate(clips) for p in ps for d in (1, -1)
            if 0 <= clip.labelled + d * p < len(clip)]
    if not jobs:
        raise ValueError(f"no cycle of length {ps} fits in the clips given; use shorter cycle lengths")
    estimator = ClipFlowCache(estimator)  # every p of a clip crosses the same frame pairs
    keys = ("image", "cyclic_image", "cyclic_label", "valid", "label", "meta")
    out: dict[str, list] = {k: [] for k in keys}
    for ci, p, d in progress_bar(jobs, desc="cyclic warped labels", disable=not progress):
        clip = clips[ci]
        s = cyclic_warped_labels(clip, clip.labelled, p, d, estimator, segmenter,
                                 fill="ignore" if segmenter is not None else "warped")
        out["image"].append(clip.image(clip.labelled))
        warped = s.cyclic_image.round().clamp(0, 255).to(torch.uint8)
        out["cyclic_image"].append(warped.permute(1, 2, 0).numpy())
        out["cyclic_label"].append(s.cyclic_ids)
        out["valid"].append(s.valid.numpy())
        out["label"].append(s.label)
        out["meta"].append((ci, p, d))
    return {k: np.stack(v) for k, v in out.items()}


class CyclicDataset(torch.utils.data.Dataset):
    """Training pairs of Ω: ``(pack_inputs(I_t, I°_t, l°_t, valid), L_t)``, flipped and cropped
    to ``crop`` (h, w) at random, seeded by ``seed``, epoch and index (a resumed run sees the same
    batches).

    With ``segmenter`` (a ``g_ψ``), the OCR features of every distinct target frame and of its
    mirror image are computed once, on the whole frame — as Ω sees them when it propagates — and a
    pair is ``((x, ocr), L_t)`` with the features cropped to the same window; crops then start on
    the features' grid. Without it, Ω's frozen ``g_ψ`` computes the features of each crop during
    training (for datasets whose features do not fit in memory).
    """

    def __init__(self, samples: str | Path, seed: int = 0, hflip: bool = True,
                 crop: tuple[int, int] | None = None, num_classes: int = NUM_CLASSES,
                 segmenter: nn.Module | None = None, held_out: Sequence[int] | None = None) -> None:
        with np.load(samples) as data:
            self.arrays = {k: data[k] for k in data.files}
        # the samples of the clips in ``held_out`` are left out (they choose among Ω's snapshots)
        skip = set(held_out or ())
        self.rows = [i for i, m in enumerate(self.arrays["meta"]) if int(m[0]) not in skip]
        if not self.rows:
            raise ValueError(f"{samples}: every cyclic sample belongs to a held-out clip; "
                             "nothing to train on")
        height, width = self.arrays["label"].shape[1:]
        if crop is not None and not (0 < crop[0] <= height and 0 < crop[1] <= width):
            raise ValueError(f"crop {tuple(crop)} does not fit the samples' frames ({height}, {width})")
        self.crop = tuple(crop) if crop is not None else None
        self.seed, self.hflip, self.num_classes, self.epoch = seed, hflip, num_classes, 0
        self.features: dict[bool, Tensor] | None = None
        self.stride = 1
        if segmenter is not None:
            self._frame_features(segmenter)

    def _frame_features(self, segmenter: nn.Module) -> None:
        """OCR features (F, C, h, w) of the distinct target frames, as shot and (with ``hflip``)
        mirrored; ``frame`` maps every sample to its row."""
        images = self.arrays["image"]
        height, width = images.shape[1:3]
        _, first, frame = np.unique(images.reshape(len(images), -1), axis=0, return_index=True,
                                    return_inverse=True)
        views = (False, True) if self.hflip else (False,)

        def of(row: int) -> list[Tensor]:
            x = normalise(torch.from_numpy(images[row]).permute(2, 0, 1)[None])
            return [ocr_features(segmenter, x.flip(-1) if mirrored else x)[0] for mirrored in views]

        rows = [of(first[0])]  # the feature grid is known after the first frame
        h, w = rows[0][0].shape[-2:]
        if height % h or width % w or height // h != width // w:
            warnings.warn(f"g_ψ's features ({h}×{w}) are not an integer stride of the frames "
                          f"({height}×{width}); Ω computes them on every crop instead", stacklevel=3)
            return
        stride = height // h
        if self.crop is not None and (self.crop[0] % stride or self.crop[1] % stride):
            raise ValueError(f"Ω's crop {self.crop} must be a multiple of g_ψ's feature stride "
                             f"{stride} to crop cached features; change denoiser_crop")
        rows += [of(row) for row in first[1:]]
        self.frame, self.stride = frame.reshape(-1), stride
        self.features = {m: torch.stack([r[i] for r in rows]) for i, m in enumerate(views)}  # (F, C, h, w)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, row: int) -> tuple[Tensor | tuple[Tensor, Tensor], Tensor]:
        a = self.arrays
        i = self.rows[row]
        height, width = a["label"].shape[1:]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        flip = self.hflip and rng.random() < 0.5
        rows, cols = slice(0, height), slice(0, width)
        if self.crop is not None:  # the window in the flipped frame, mirrored back: crop, then flip
            s = self.stride  # crops start on the cached features' grid
            top = s * int(rng.integers(0, (height - self.crop[0]) // s + 1))
            left = s * int(rng.integers(0, (width - self.crop[1]) // s + 1))
            if flip:
                left = width - left - self.crop[1]
            rows, cols = slice(top, top + self.crop[0]), slice(left, left + self.crop[1])
        image = torch.from_numpy(a["image"][i, rows, cols]).permute(2, 0, 1)[None]
        warped = torch.from_numpy(a["cyclic_image"][i, rows, cols]).permute(2, 0, 1)[None]
        x = pack_inputs(image, warped, one_hot(np.ascontiguousarray(a["cyclic_label"][i, rows, cols]),
                                               self.num_classes)[None],
                        torch.from_numpy(np.ascontiguousarray(a["valid"][i, rows, cols]))[None])[0]
        y = torch.from_numpy(a["label"][i, rows, cols].astype(np.int64))
        if flip:
            x, y = x.flip(-1), y.flip(-1)
        if self.features is None:
            return x.contiguous(), y.contiguous()
        s = self.stride  # the mirrored frame's features are already in flipped coordinates
        left = cols.start if not flip else width - cols.stop
        ocr = self.features[flip][self.frame[i], :, rows.start // s:rows.stop // s,
                                  left // s:(left + cols.stop - cols.start) // s]
        return (x.contiguous(), ocr.contiguous()), y.contiguous()


def cyclic_dataset(samples: str, seed: int = 0, crop: list[int] | None = None,
                   segmenter: str | None = None, held_out: list[int] | None = None) -> CyclicDataset:
    """Builder target of the denoiser's training job; ``segmenter`` (a stage folder) caches the
    whole-frame OCR features of ``g_ψ``; the samples of the clips ``held_out`` are left out."""
    model = None
    if segmenter is not None:
        model = load_model(job_from_file(Path(segmenter) / "job.json"), Path(segmenter))
    return CyclicDataset(samples, seed, crop=tuple(crop) if crop else None, segmenter=model,
                         held_out=held_out)


@torch.no_grad()
def refine(denoiser: Denoiser, x: Tensor, ocr: Tensor | None = None) -> Tensor:
    """Class probabilities (B, K, H, W) of Ω for packed inputs ``x``."""
    denoiser.eval()
    param = next(denoiser.parameters())
    return denoiser(x.to(param.device), None if ocr is None else ocr.to(param.device))["out"].softmax(1)


# ----------------------------------------------------------------------------------------------
# Safe refinement: Ω changes a label only where it is sure enough, and how sure is chosen without
# ground truth, on cyclic labels of held-out records
# ----------------------------------------------------------------------------------------------
#: Candidate thresholds of the gate; 1.0 never lets Ω change a label (a probability is never > 1).
GATE_THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)


#: A class is judged only where the selection records show enough of it (a share of their scored
#: pixels, per half: motion explains the pixel or not); on a rarer class both its gates stay closed —
#: Ω neither erases it from its input nor writes it — since a handful of pixels cannot show whether
#: Ω knows it (a class almost absent from the training records is the one Ω is likely to erase).
MIN_SUPPORT = 5e-4


@dataclass(frozen=True)
class Gate:
    """Where Ω's label replaces its input label: where Ω's probability of its own label ``c``
    exceeds both the threshold of ``c`` (``valid[c]`` on pixels the motion explains,
    ``unexplained[c]`` on the others) and the threshold of the input's label ``i``
    (``input_valid[i]``, ``input_unexplained[i]``). The first keeps Ω from writing a class it gets
    wrong, the second from erasing one it does not know. ``Gate()`` is Ω alone (the paper);
    :meth:`closed` leaves every input label as it is."""

    valid: tuple[float, ...] = (0.0,) * NUM_CLASSES
    unexplained: tuple[float, ...] = (0.0,) * NUM_CLASSES
    input_valid: tuple[float, ...] = (0.0,) * NUM_CLASSES
    input_unexplained: tuple[float, ...] = (0.0,) * NUM_CLASSES

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, tuple(float(t) for t in getattr(self, f.name)))

    @classmethod
    def closed(cls, num_classes: int = NUM_CLASSES) -> Gate:
        return cls(*[(1.0,) * num_classes for _ in fields(cls)])

    def groups(self) -> list[float]:
        """Every threshold: Ω's class (motion explains, not), then the input's class (same)."""
        return [t for f in fields(self) for t in getattr(self, f.name)]

    def apply(self, probs: Tensor, labels: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """(B, K, H, W) Ω probabilities, (B, H, W) input train ids and validity → the gated train
        ids and Ω's probability of each (B, H, W). Input pixels without a label (255) take Ω's."""
        conf, ids = probs.max(1)
        K = probs.shape[1]
        half = (~valid.to(probs.device).bool()).long()
        labels = labels.to(probs.device).long()
        tables = torch.tensor(astuple(self), dtype=conf.dtype, device=probs.device)  # the 4 fields, in order
        threshold = torch.maximum(tables[half, ids], tables[2 + half, labels.clamp(max=K - 1)])
        keep = (conf <= threshold) & (labels < K)
        out = torch.where(keep, labels, ids)
        return out, probs.gather(1, out[:, None].clamp(max=K - 1))[:, 0]


def _predictions(denoiser: Denoiser, data: CyclicDataset, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Ω's labels (N, H, W) uint8 and their probabilities (N, H, W) float32 for every sample of ``data``."""
    ids, conf = [], []
    for start in range(0, len(data), batch):
        x = torch.stack([data[j][0] for j in range(start, min(start + batch, len(data)))])
        c, i = refine(denoiser, x).max(1)
        ids.append(i.to(torch.uint8).cpu().numpy())
        conf.append(c.cpu().numpy())
    return np.concatenate(ids), np.concatenate(conf)


def _choose_gate(pred: np.ndarray, conf: np.ndarray, inputs: np.ndarray, valid: np.ndarray,
                 truth: np.ndarray, thresholds: Sequence[float], K: int,
                 min_support: float = MIN_SUPPORT) -> tuple[Gate, float]:
    """The gate that maximises the mIoU of the gated labels against ``truth``. A pixel's fate
    depends on its (half, input class, Ω's class) triple and the higher of its two groups'
    thresholds, so each triple's confusion matrix is tabled once per threshold and the 4K group
    thresholds are chosen by coordinate ascent; groups without :data:`MIN_SUPPORT` stay closed.
    The ascent starts twice — from the best single threshold, and from the best gate on Ω's class
    alone (the input's class open) — and the better end is kept, so the gate scores at least as
    well as the best gate on Ω's class alone. ``thresholds`` must ascend (the last closes a group)."""
    keep = truth != IGNORE_INDEX
    pred, inputs = pred[keep].astype(np.int64), inputs[keep].astype(np.int64)
    conf, truth = conf[keep], truth[keep]
    half = np.where(valid[keep], 0, 1)
    missing = inputs >= K  # an input without a label always takes Ω's
    fixed = confusion_matrix(pred[missing], truth[missing], K)
    pred, conf, inputs, truth, half = (a[~missing] for a in (pred, conf, inputs, truth, half))
    n = 2 * K * K
    triple = (half * K + inputs) * K + pred
    cell = truth.astype(np.int64) * (K + 1)
    tables = np.zeros((n, len(thresholds), K, K + 1), np.int64)
    for t, threshold in enumerate(thresholds):
        out = np.where(conf > threshold, pred, inputs)
        counts = np.bincount(triple * (K * (K + 1)) + cell + out, minlength=n * K * (K + 1))
        tables[:, t] = counts.reshape(n, K, K + 1)
    j = np.arange(n)
    of_omega = (j // (K * K)) * K + j % K  # the triple's group on Ω's class ...
    of_input = 2 * K + j // K  # ... and on the input's class (groups 2K..4K)
    scored = max(int(keep.sum()), 1)
    support = np.concatenate([np.bincount(half * K + truth, minlength=2 * K),
                              np.bincount(half * K + inputs, minlength=2 * K)])
    frozen = support < min_support * scored
    closed = len(thresholds) - 1

    def score(choice: np.ndarray) -> float:
        level = np.maximum(choice[of_omega], choice[of_input])
        return mean_iou(tables[j, level].sum(0) + fixed)

    def ascend(choice: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, float]:
        """Coordinate ascent over ``groups`` (at most 3 sweeps); a tie moves towards closing."""
        best = score(choice)
        for _ in range(3):
            improved = False
            for g in groups:
                for t in range(len(thresholds)):
                    trial = choice.copy()
                    trial[g] = t
                    value = score(trial)
                    if value > best + 1e-9 or (abs(value - best) <= 1e-9 and t > choice[g]):
                        improved |= value > best + 1e-9
                        choice, best = trial, max(best, value)
            if not improved:
                break
        return choice, best

    def uniform(t: int, inputs_too: bool) -> np.ndarray:
        choice = np.full(4 * K, t) if inputs_too else np.r_[np.full(2 * K, t), np.zeros(2 * K, int)]
        return np.where(frozen, closed, choice)

    def best_uniform(inputs_too: bool) -> np.ndarray:  # a tie: the surer threshold
        return max((uniform(t, inputs_too) for t in range(len(thresholds))),
                   key=lambda c: (round(score(c), 4), int(c[0])))

    groups = np.flatnonzero(~frozen)
    omega_only = ascend(best_uniform(False), groups[groups < 2 * K])[0]
    (single, single_score), (choice, best) = ascend(best_uniform(True), groups), ascend(omega_only, groups)
    if single_score > best + 1e-9:
        choice, best = single, single_score
    levels = [float(thresholds[t]) for t in choice]
    return Gate(*(levels[i:i + K] for i in range(0, 4 * K, K))), best


def select_refinement(job: Job, folder: str | Path, samples: str | Path, clips: Sequence[int],
                      thresholds: Sequence[float] = GATE_THRESHOLDS, batch: int = 8,
                      progress: bool = True, device: str = "cpu") -> tuple[dict[str, Any], Path]:
    """Choose Ω's weights and :class:`Gate` on cyclic labels of held-out training records — no
    label beyond the human-labelled frames — among the weights of the training run in ``folder``.

    Every snapshot of the training run (``snapshots/``) is scored on the cyclic samples of
    ``clips`` with the gate that suits it best; the closed gate — no label changed, Ω only filling
    pixels its input leaves without a label — is always a candidate, so the choice is never worse
    than Ω's input on these records wherever the input has a label. A class these records show too
    little of (:data:`MIN_SUPPORT`) stays closed both ways. Returns the choice with every snapshot's
    score (for ``metrics.json``), and the file of the chosen weights."""
    folder = Path(folder)
    data = CyclicDataset(samples, hflip=False)
    wanted = set(int(c) for c in clips)
    data.rows = [i for i in data.rows if int(data.arrays["meta"][i][0]) in wanted]
    if not data.rows:
        raise ValueError(f"{samples}: no cyclic sample of the selection clips {sorted(wanted)}")
    a, K = data.arrays, NUM_CLASSES
    truth, inputs = a["label"][data.rows], a["cyclic_label"][data.rows]
    valid = a["valid"][data.rows].astype(bool)
    before = mean_iou(confusion_matrix(inputs, truth, K))
    snapshots = sorted((folder / SNAPSHOTS).glob("*.pt")) or [folder / FINAL]
    scores, best, model = [], None, None
    for path in progress_bar(snapshots, desc="choose Ω's snapshot and gate", disable=not progress):
        if model is None:  # Ω (and the frozen g_ψ inside it) is built once; each snapshot is weights
            model = load_model(job, folder, device, weights=path)
        else:
            model.load_state_dict(load_state(path, device))
        pred, conf = _predictions(model, data, batch)
        gate, value = _choose_gate(pred, conf, inputs, valid, truth, thresholds, K)
        alone = mean_iou(confusion_matrix(pred, truth, K))
        scores.append({"snapshot": path.name, "gated_miou": round(value, 3), "alone_miou": round(alone, 3)})
        if best is None or value >= best[1] - 1e-9:  # a tie: the longer-trained snapshot
            best = (path, value, gate)
    path, value, gate = best
    return {"snapshot": path.name, "gate": {name: list(t) for name, t in asdict(gate).items()},
            "clips": sorted(wanted), "samples": len(data), "input_miou": round(before, 3),
            "chosen_miou": round(value, 3), "snapshots": scores}, path


def score_cyclic(denoiser: Denoiser, samples: str | Path, gate: Gate | None = None, batch: int = 8
                 ) -> dict[str, Any]:
    """mIoU of ``l°_t`` and of the refined label (``gate`` applied; default Ω alone) against
    ``L_t`` on cyclic samples (e.g. the held-out records'), per cycle length — does Ω undo the
    cycle's noise? Unlabelled pixels count wrong."""
    gate = gate or Gate()
    data = CyclicDataset(samples, hflip=False, num_classes=denoiser.num_classes)
    meta = data.arrays["meta"]
    K = denoiser.num_classes
    before: dict[int, np.ndarray] = {}
    after: dict[int, np.ndarray] = {}
    for start in range(0, len(data), batch):
        idx = list(range(start, min(start + batch, len(data))))
        x = torch.stack([data[i][0] for i in idx])
        inputs = torch.from_numpy(data.arrays["cyclic_label"][idx])
        valid = torch.from_numpy(data.arrays["valid"][idx])
        pred = gate.apply(refine(denoiser, x), inputs, valid)[0].cpu().numpy()
        for j, i in enumerate(idx):
            p = int(meta[i][1])
            truth = data.arrays["label"][i]
            before[p] = before.get(p, 0) + confusion_matrix(data.arrays["cyclic_label"][i], truth, K)
            after[p] = after.get(p, 0) + confusion_matrix(pred[j], truth, K)
    return {"per_p": {int(p): {"cyclic": round(mean_iou(before[p]), 2),
                               "refined": round(mean_iou(after[p]), 2)} for p in sorted(before)},
            "cyclic": round(mean_iou(sum(before.values())), 2),
            "refined": round(mean_iou(sum(after.values())), 2)}


def refinement_warning(held_out: dict[str, Any]) -> str | None:
    """The warning users must see when Ω does not improve the held-out cyclic labels (overall or
    at some cycle length p) — a label-free sign that warp-refine labels are no better than the
    warped ones on this data — or ``None`` when it does everywhere."""
    worse = [f"p={p}: {v['cyclic']:.2f} → {v['refined']:.2f}" for p, v in held_out["per_p"].items()
             if v["refined"] <= v["cyclic"]]
    improved = held_out["refined"] > held_out["cyclic"]
    if improved and not worse:
        return None
    overall = f"mIoU {held_out['cyclic']:.2f} before Ω, {held_out['refined']:.2f} after"
    if improved:
        finding = (f"Ω improves the held-out cyclic labels overall ({overall}) but not at every cycle "
                   f"length ({', '.join(worse)}). At those distances its labels are no better than the "
                   "warped ones")
    else:
        finding = (f"Ω does not improve the held-out cyclic labels ({overall}"
                   + (f"; {', '.join(worse)}" if worse else "") + "). Its labels are then no better than "
                   "the warped ones")
    return (finding + ": compare warp-refine with motion-only before using them, and give Ω more "
            "labelled records, more iterations (--iters) or another learning rate (--lr).")


__all__ = ["Denoiser", "pack_inputs", "build_denoiser", "make_cyclic_samples", "CyclicDataset",
           "cyclic_dataset", "refine", "GATE_THRESHOLDS", "MIN_SUPPORT", "Gate", "select_refinement",
           "score_cyclic", "refinement_warning"]
