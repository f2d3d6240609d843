"""The epoch mixer for training segmenters on human + generated labels (supplementary 3.1).

Every segmenter in the comparison (Table 1) is trained the same way:

- a **fixed epoch size** (≈3× the human-labelled set) for every run, so that a policy with more
  labels never wins merely by training longer (supplementary 2.3);
- **mixing**: 30 % of each epoch's samples come from human labels, 70 % from generated ones
  (the Baseline policy has no generated labels and draws everything from the human set);
- **class-uniform sampling** (Zhu et al., CVPR 2019) for half of each epoch: the classes present
  in a source are visited in turn, and each item is a random image holding that class with the
  crop placed around one of the class's tile centroids — rare classes (train, bus, rider) are seen
  as often as road;
- **augmentation**: random scale 0.5–2.0, random crop, horizontal flip, Gaussian blur and colour
  jitter, with image and label sharing the same geometry.

The plan of an epoch depends only on ``(seed, epoch)`` and the augmentation of item ``i`` only on
``(seed, epoch, i)``, so a run is reproducible whatever the number of data-loader workers.

Example::

    index = CentroidIndex.build([lab for _, lab in human], cache_path="runs/cache/centroids.json")
    data = MixedDataset(human, generated, MixConfig(epoch_size=3 * len(human), seed=0),
                        AugmentConfig(crop=(512, 1024)), centroids_human=index)
    for epoch in range(epochs):
        data.set_epoch(epoch)
        for images, labels in DataLoader(data, batch_size=8, shuffle=False, num_workers=4): ...
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from wrp.data import IGNORE_INDEX, NUM_CLASSES, read_image, read_label
from wrp.io import atomic_write_json
from wrp.models import IMAGENET_MEAN, normalise
from wrp.runtime import progress_bar

Sample = tuple[str | os.PathLike[str], str | os.PathLike[str]]  # (image_path, label_path)
Point = tuple[int, int]  # (y, x) in pixels
Centroids = dict[int, list[Point]]

_MEAN_UINT8 = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)  # zero after normalisation
CENTROID_CACHE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig:
    """Joint image/label augmentation of supplementary 3.1.

    The paper names the transforms (random scale 0.5–2.0, flip, Gaussian blur, colour jitter) but
    not the blur and jitter amounts; the defaults below are moderate, torchvision-style settings.
    ``image_pad`` fills the image where the scaled image is smaller than the crop (the ImageNet
    mean, i.e. zero after normalisation); the label is filled with ``ignore_index`` there.
    """

    crop: tuple[int, int] = (512, 1024)  # (h, w)
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip_prob: float = 0.5
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.15, 1.15)
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.05
    ignore_index: int = IGNORE_INDEX
    image_pad: tuple[int, int, int] = _MEAN_UINT8

    def __post_init__(self) -> None:
        for name in ("crop", "scale_range", "blur_sigma", "image_pad"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.crop) != 2 or not all(_is_int(v) and v > 0 for v in self.crop):
            raise ValueError(f"AugmentConfig.crop must be two positive ints (h, w), got {self.crop!r}")
        lo, hi = _pair("scale_range", self.scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"AugmentConfig.scale_range must satisfy 0 < low <= high, "
                             f"got {self.scale_range!r}")
        lo, hi = _pair("blur_sigma", self.blur_sigma)
        if not 0 < lo <= hi:
            raise ValueError(f"AugmentConfig.blur_sigma must satisfy 0 < low <= high, "
                             f"got {self.blur_sigma!r}")
        for name in ("hflip_prob", "blur_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {value!r}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {value!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"AugmentConfig.hue must lie in [0, 0.5] (a fraction of the hue circle), "
                             f"got {self.hue!r}")
        if not (_is_int(self.ignore_index) and 0 <= self.ignore_index <= 255):
            raise ValueError(f"AugmentConfig.ignore_index must be an int in 0..255, "
                             f"got {self.ignore_index!r}")
        if len(self.image_pad) != 3 or not all(_is_int(v) and 0 <= v <= 255 for v in self.image_pad):
            raise ValueError(f"AugmentConfig.image_pad must be three ints in 0..255, got {self.image_pad!r}")


def augment(
    image: np.ndarray,
    label: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    centre: Point | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly scale, crop, flip, blur and colour-jitter an (image, label) pair (supplementary 3.1).

    ``image`` is (H, W, 3) uint8 RGB, ``label`` (H, W) uint8 train ids. The geometry (scale, crop
    window, flip) is identical for both: the image is resized bilinearly and the label with
    centre-aligned nearest neighbour (``cv2.INTER_NEAREST_EXACT``, the same pixel-centre convention as
    ``INTER_LINEAR``; plain ``INTER_NEAREST`` is shifted by half a source pixel), so labels are never
    interpolated. Where the scaled image is smaller than ``cfg.crop`` the crop is padded (image with
    ``cfg.image_pad``, label with ``cfg.ignore_index``). Blur and colour jitter touch the image only.

    ``centre`` — a (y, x) point in the *original* image (class-uniform sampling, Zhu et al.): the
    crop window is placed so that this point, scaled with the image, lies inside the crop.

    The geometry is drawn from ``rng`` before the photometric transforms, so switching blur or
    jitter off does not change it. Returns (crop_h, crop_w, 3) uint8 and (crop_h, crop_w) uint8.
    """
    image = np.asarray(image)
    label = np.asarray(label)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"augment: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if label.ndim != 2 or label.shape != image.shape[:2]:
        raise ValueError(f"augment: label shape {label.shape} does not match image shape {image.shape[:2]}")
    h, w = label.shape
    if centre is not None and not (0 <= centre[0] < h and 0 <= centre[1] < w):
        raise ValueError(f"augment: centre {centre} lies outside the {h}x{w} image")

    # Geometry: scale, crop window, flip.
    scale = float(rng.uniform(*cfg.scale_range))
    sh, sw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (sh, sw) != (h, w):
        image = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, (sw, sh), interpolation=cv2.INTER_NEAREST_EXACT)
    ch, cw = cfg.crop
    point = None
    if centre is not None:
        point = (min(int((centre[0] + 0.5) * sh / h), sh - 1), min(int((centre[1] + 0.5) * sw / w), sw - 1))
    y0 = _crop_offset(sh, ch, None if point is None else point[0], rng)
    x0 = _crop_offset(sw, cw, None if point is None else point[1], rng)
    image = _window(image, y0, x0, ch, cw, np.asarray(cfg.image_pad, dtype=np.uint8))
    label = _window(label, y0, x0, ch, cw, np.uint8(cfg.ignore_index))
    if rng.random() < cfg.hflip_prob:
        image, label = image[:, ::-1], label[:, ::-1]

    # Photometric, image only.
    if rng.random() < cfg.blur_prob:
        sigma = float(rng.uniform(*cfg.blur_sigma))
        image = cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), sigmaX=sigma, sigmaY=sigma)
    image = _colour_jitter(image, cfg, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def _crop_offset(size: int, crop: int, point: int | None, rng: np.random.Generator) -> int:
    """Top (or left) of the crop window; negative offsets / overhangs are padding.

    Without padding the window lies inside the image; when the image is smaller than the crop the
    image lies at a random place inside the window. With ``point`` the window also contains it.
    """
    lo, hi = min(0, size - crop), max(0, size - crop)
    if point is not None:
        lo, hi = max(lo, point - crop + 1), min(hi, point)
    return int(rng.integers(lo, hi + 1))


def _window(array: np.ndarray, y0: int, x0: int, h: int, w: int, fill: Any) -> np.ndarray:
    """``array[y0:y0+h, x0:x0+w]`` where the parts outside ``array`` are ``fill``."""
    out = np.empty((h, w) + array.shape[2:], dtype=array.dtype)
    out[...] = fill
    sy0, sy1 = max(y0, 0), min(y0 + h, array.shape[0])
    sx0, sx1 = max(x0, 0), min(x0 + w, array.shape[1])
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = array[sy0:sy1, sx0:sx1]
    return out


def _grey(image: np.ndarray) -> np.ndarray:
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114


def _colour_jitter(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """torchvision-style ColorJitter (brightness, contrast, saturation, hue in a random order)."""
    order = rng.permutation(4)
    factors = (
        rng.uniform(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness),
        rng.uniform(max(0.0, 1 - cfg.contrast), 1 + cfg.contrast),
        rng.uniform(max(0.0, 1 - cfg.saturation), 1 + cfg.saturation),
        rng.uniform(-cfg.hue, cfg.hue),
    )
    enabled = (cfg.brightness > 0, cfg.contrast > 0, cfg.saturation > 0, cfg.hue > 0)
    if not any(enabled):
        return image
    out = image.astype(np.float32)
    for op in order:
        if not enabled[op]:
            continue
        f = np.float32(factors[op])
        if op == 0:
            out = out * f
        elif op == 1:
            mean = np.float32(_grey(out).mean())
            out = (out - mean) * f + mean
        elif op == 2:
            grey = _grey(out)[..., None]
            out = (out - grey) * f + grey
        else:
            hsv = cv2.cvtColor(out / 255.0, cv2.COLOR_RGB2HSV)  # float: hue in degrees [0, 360)
            hsv[..., 0] = np.mod(hsv[..., 0] + f * 360.0, 360.0)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
        out = np.clip(out, 0.0, 255.0)
    return np.rint(out).astype(np.uint8)


def to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, 3) uint8 RGB → float32 (3, H, W) normalised as every model's input
    (:func:`wrp.models.normalise`); (H, W) label → int64 (H, W)."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return normalise(img), torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Class-uniform sampling (Zhu et al., "Improving Semantic Segmentation via Video Propagation and
# Label Relaxation", CVPR 2019)
# ---------------------------------------------------------------------------------------------
def class_centroids(
    label: np.ndarray, tile: int = 32, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
    min_pixels: int = 1,
) -> Centroids:
    """Per class, the centres of mass of its pixels in each ``tile``×``tile`` tile (Zhu et al.).

    The label map is cut into tiles (the last row/column of tiles may be smaller); for every class
    holding at least ``min_pixels`` pixels of a tile its centre of mass is stored as rounded (y, x)
    ints in full-image coordinates. Returns ``{class_id: [(y, x), ...]}`` for the classes present
    (keys sorted, tiles row-major). Pixels equal to ``ignore_index`` or ``>= num_classes`` are skipped.

    ``min_pixels`` > 1 is for generated labels: a few stray pixels of a class (a warped boundary,
    a confusion of the refiner) would otherwise make their frame a sample of that class, and
    class-uniform sampling would centre crops on the error as often as on a real instance.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"class_centroids: label must be (H, W), got shape {label.shape}")
    if tile < 1:
        raise ValueError(f"class_centroids: tile must be >= 1, got {tile}")
    if min_pixels < 1:
        raise ValueError(f"class_centroids: min_pixels must be >= 1, got {min_pixels}")
    h, w = label.shape
    tiles_x = -(-w // tile)
    ys, xs = np.indices((h, w), dtype=np.int64)
    valid = (label != ignore_index) & (label < num_classes)
    cls = label[valid].astype(np.int64)
    ys, xs = ys[valid], xs[valid]
    key = ((ys // tile) * tiles_x + xs // tile) * num_classes + cls  # (tile, class) pairs, row-major
    size = -(-h // tile) * tiles_x * num_classes
    counts = np.bincount(key, minlength=size)
    keys = np.flatnonzero(counts >= min_pixels)
    counts = counts[keys]
    cy = np.floor(np.bincount(key, weights=ys, minlength=size)[keys] / counts + 0.5).astype(int)
    cx = np.floor(np.bincount(key, weights=xs, minlength=size)[keys] / counts + 0.5).astype(int)
    out: Centroids = {}
    for k, y, x in zip(keys.tolist(), cy.tolist(), cx.tolist(), strict=True):
        out.setdefault(k % num_classes, []).append((y, x))
    return dict(sorted(out.items()))


def _label_centroids(path: str | os.PathLike[str], tile: int, num_classes: int, min_pixels: int) -> Centroids:
    return class_centroids(read_label(path), tile=tile, num_classes=num_classes, min_pixels=min_pixels)


def _fingerprint(paths: Sequence[str], tile: int, num_classes: int, min_pixels: int = 1) -> str:
    """Hash of the file list with each file's size and mtime, and of the tiling settings."""
    digest = hashlib.sha256()
    settings: dict[str, int] = {"version": CENTROID_CACHE_VERSION, "tile": tile, "classes": num_classes}
    if min_pixels != 1:  # absent at the default: caches written before it stay valid
        settings["min_pixels"] = min_pixels
    digest.update(json.dumps(settings).encode())
    for path in paths:
        try:
            stat = os.stat(path)
            entry = [path, stat.st_size, stat.st_mtime_ns]
        except OSError:
            entry = [path, None, None]
        digest.update(json.dumps(entry).encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class CentroidIndex:
    """Per-sample class centroids of one label source, and which samples hold each class.

    ``centroids[i]`` belongs to ``label_paths[i]`` (same order as the source's samples). Build it
    with :meth:`build`, which caches it as JSON and reuses the cache while the files are unchanged.
    """

    label_paths: list[str]
    centroids: list[Centroids]
    tile: int = 32
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        if len(self.label_paths) != len(self.centroids):
            raise ValueError(f"CentroidIndex: {len(self.label_paths)} label paths but "
                             f"{len(self.centroids)} centroid entries")
        by_class: dict[int, list[int]] = {}
        for index, per_class in enumerate(self.centroids):
            for c, points in per_class.items():
                if points:
                    by_class.setdefault(int(c), []).append(index)
        self._by_class = dict(sorted(by_class.items()))

    def __len__(self) -> int:
        return len(self.label_paths)

    def classes(self) -> list[int]:
        """The classes present in at least one sample, ascending."""
        return list(self._by_class)

    def samples_with(self, class_id: int) -> list[int]:
        """Indices of the samples whose label holds ``class_id``."""
        return self._by_class.get(class_id, [])

    def centroids_of(self, index: int, class_id: int) -> list[Point]:
        """The tile centroids of ``class_id`` in sample ``index``."""
        return self.centroids[index].get(class_id, [])

    @classmethod
    def build(
        cls,
        label_paths: Sequence[str | os.PathLike[str]],
        cache_path: str | os.PathLike[str] | None = None,
        tile: int = 32,
        num_classes: int = NUM_CLASSES,
        progress: bool = True,
        min_pixels: int = 1,
    ) -> CentroidIndex:
        """Compute the centroids of every label (with a progress bar), or load them from ``cache_path``.

        A class counts in a tile from ``min_pixels`` pixels on (:func:`class_centroids`). The cache
        is reused only if it was built from the same list of files (same order), with the same sizes
        and modification times and the same ``tile``/``num_classes``/``min_pixels``; otherwise it is
        rebuilt and rewritten atomically.
        """
        paths = [os.fspath(p) for p in label_paths]
        fingerprint = _fingerprint(paths, tile, num_classes, min_pixels)
        if cache_path is not None:
            cached = _load_cache(Path(cache_path), fingerprint, paths)
            if cached is not None:
                return cls(paths, cached, tile=tile, num_classes=num_classes)
        centroids = [
            _label_centroids(p, tile, num_classes, min_pixels)
            for p in progress_bar(paths, desc="class centroids", unit="label", disable=not progress)
        ]
        if cache_path is not None:
            atomic_write_json(cache_path, {
                "version": CENTROID_CACHE_VERSION,
                "fingerprint": fingerprint,
                "tile": tile,
                "num_classes": num_classes,
                "label_paths": paths,
                "centroids": [{str(c): [list(p) for p in pts] for c, pts in per.items()}
                              for per in centroids],
            })
        return cls(paths, centroids, tile=tile, num_classes=num_classes)


def _load_cache(path: Path, fingerprint: str, paths: list[str]) -> list[Centroids] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("fingerprint") != fingerprint or data.get("label_paths") != paths:
            return None
        entries = data["centroids"]
        if len(entries) != len(paths):
            return None
        return [{int(c): [(int(y), int(x)) for y, x in pts] for c, pts in per.items()} for per in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable or foreign cache: rebuild it


# ---------------------------------------------------------------------------------------------
# Epoch plans
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MixConfig:
    """How an epoch is assembled (supplementary 2.3 and 3.1).

    ``epoch_size`` is the same for every compared run (≈3× the human set in the paper);
    ``human_share`` of it comes from human labels (0.3 in the paper), the rest from generated
    labels; within each source ``class_uniform_share`` of the items are drawn class-uniformly.
    """

    epoch_size: int
    human_share: float = 0.3
    class_uniform_share: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not _is_int(self.epoch_size) or self.epoch_size < 1:
            raise ValueError(f"MixConfig.epoch_size must be a positive int, got {self.epoch_size!r}")
        for name in ("human_share", "class_uniform_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"MixConfig.{name} must be a fraction in [0, 1], got {value!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"MixConfig.seed must be a non-negative int, got {self.seed!r}")


@dataclass(frozen=True)
class PlanItem:
    """One item of an epoch: which sample, and for class-uniform items the class and crop centre."""

    source: Literal["human", "generated"]
    index: int
    centre: Point | None = None
    class_id: int | None = None


def epoch_plan(
    human: Sequence[Sample],
    generated: Sequence[Sample],
    cfg: MixConfig,
    epoch: int,
    centroids_human: CentroidIndex | None = None,
    centroids_generated: CentroidIndex | None = None,
) -> list[PlanItem]:
    """The ``cfg.epoch_size`` items of one epoch, shuffled; deterministic from ``(cfg.seed, epoch)``.

    ``round(epoch_size * human_share)`` items come from ``human`` and the rest from ``generated``;
    with no generated samples (the Baseline policy) every item comes from ``human``. Within each
    source, ``round(n * class_uniform_share)`` items are class-uniform (Zhu et al.): the classes of
    that source's centroid index are visited in turn from a random start, each giving a random
    sample holding the class and a random tile centroid of it. A source without a centroid index
    (or with no classes in it) is sampled uniformly only. The uniform items are a random
    permutation of the source, repeated (each sample used equally often, ±1) only when the epoch
    needs more items than the source holds.
    """
    if len(human) == 0:
        raise ValueError("epoch_plan: no human-labelled samples; every policy needs the human set")
    if not _is_int(epoch) or epoch < 0:
        raise ValueError(f"epoch_plan: epoch must be a non-negative int, got {epoch!r}")
    sources = (("human", human, centroids_human), ("generated", generated, centroids_generated))
    for name, source, index in sources:
        if index is not None and len(index) != len(source):
            raise ValueError(f"epoch_plan: the {name} centroid index covers {len(index)} samples but there "
                             f"are {len(source)} {name} samples; rebuild it from the same label list")
    rng = np.random.default_rng([cfg.seed, epoch])
    n_human = round(cfg.epoch_size * cfg.human_share) if len(generated) else cfg.epoch_size
    items = _source_items("human", len(human), n_human, centroids_human, cfg.class_uniform_share, rng)
    items += _source_items("generated", len(generated), cfg.epoch_size - n_human, centroids_generated,
                           cfg.class_uniform_share, rng)
    return [items[i] for i in rng.permutation(len(items))]


def _source_items(
    source: Literal["human", "generated"],
    size: int,
    count: int,
    index: CentroidIndex | None,
    class_uniform_share: float,
    rng: np.random.Generator,
) -> list[PlanItem]:
    if count == 0:
        return []
    classes = index.classes() if index is not None else []
    n_uniform_class = round(count * class_uniform_share) if classes else 0
    items: list[PlanItem] = []
    start = int(rng.integers(len(classes))) if classes else 0
    for k in range(n_uniform_class):
        c = classes[(start + k) % len(classes)]
        holders = index.samples_with(c)
        sample = holders[int(rng.integers(len(holders)))]
        points = index.centroids_of(sample, c)
        y, x = points[int(rng.integers(len(points)))]
        items.append(PlanItem(source, int(sample), (int(y), int(x)), int(c)))
    n_random = count - n_uniform_class
    if n_random:
        order = np.concatenate([rng.permutation(size) for _ in range(-(-n_random // size))])[:n_random]
        items += [PlanItem(source, int(i)) for i in order]
    return items


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------
class MixedDataset(torch.utils.data.Dataset):
    """A fixed-size epoch of human + generated samples, class-uniformly mixed and augmented.

    Item ``i`` of epoch ``e`` is ``plan[i]`` read with :func:`wrp.data.read_image` /
    :func:`wrp.data.read_label` and augmented with an rng seeded from ``(seed, e, i)``, so it does
    not depend on worker count or order; it works with any index sampler (``DistributedSampler``
    included). Call :meth:`set_epoch` before each epoch (with ``persistent_workers=False``, so the
    workers see the new plan). Without an :class:`AugmentConfig` the full image is returned. A
    ``label_map`` (256 entries, :data:`wrp.data.LABEL_SETS`) turns every label into another label set
    after sampling and augmentation, which still see the train ids.
    """

    def __init__(
        self,
        human: Sequence[Sample],
        generated: Sequence[Sample],
        mix: MixConfig,
        augment_cfg: AugmentConfig | None = None,
        centroids_human: CentroidIndex | None = None,
        centroids_generated: CentroidIndex | None = None,
        epoch: int = 0,
        label_map: np.ndarray | None = None,
    ) -> None:
        self.label_map = label_map  # a lookup table from train ids to another label set, or None
        self.human = list(human)
        self.generated = list(generated)
        self.mix = mix
        self.augment_cfg = augment_cfg
        self.centroids_human = centroids_human
        self.centroids_generated = centroids_generated
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Recompute the plan for ``epoch``."""
        self.plan = epoch_plan(self.human, self.generated, self.mix, epoch,
                               self.centroids_human, self.centroids_generated)
        self.epoch = epoch

    def __len__(self) -> int:
        return self.mix.epoch_size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"MixedDataset index {i} out of range for epoch size {len(self)}")
        i = i % len(self)
        item = self.plan[i]
        image_path, label_path = (self.human if item.source == "human" else self.generated)[item.index]
        image, label = read_image(image_path), read_label(label_path)
        if image.shape[:2] != label.shape:
            raise ValueError(f"image {image_path} is {image.shape[:2]} but label {label_path} "
                             f"is {label.shape}")
        if self.augment_cfg is not None:
            rng = np.random.default_rng([self.mix.seed, self.epoch, i])
            image, label = augment(image, label, self.augment_cfg, rng, centre=item.centre)
        if self.label_map is not None:
            label = self.label_map[label]
        return to_tensors(image, label)


# ---------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _pair(name: str, value: tuple[float, ...]) -> tuple[float, float]:
    if len(value) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ValueError(f"AugmentConfig.{name} must be two numbers (low, high), got {value!r}")
    return float(value[0]), float(value[1])
