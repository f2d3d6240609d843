#!/usr/bin/env python
"""NYU-Depth V2 → the wrp layout: each labelled frame with its neighbouring raw video frames.

NYU-V2 labels 1449 frames densely (``nyu_depth_v2_labeled.mat``) out of the raw Kinect videos
(``<scene>/r-<timestamp>-<n>.ppm``, one folder per scene). The field ``rawRgbFilenames`` names the
raw frame each labelled one was taken from; this script puts it at the centre of the ``2r+1`` raw
frames around it (``--radius r``, default 10) and maps its 894 classes to the 40 classes of Gupta
et al. (CVPR 2013), the ones NYU-V2 segmentation results report::

    <out>/leftImg8bit_sequence/<train|val>/<scene>/<scene>_<i>_<frame>_leftImg8bit.png  (i: labelled index)
    <out>/gtFine/<train|val>/<scene>/<scene>_<i>_<r>_gtFine_labelIds.png               (ids 0..40, 0 = void)
    <out>/classes.json, splits/{train,val}.txt, dataset.json, missing.txt

What is supported, pragmatically:

- the labelled set as ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, read with h5py — install it with
  ``pip install h5py``; it is not a dependency of wrp), or unpacked into a folder holding
  ``rgb/<i:04d>.png`` (colour), ``labels/<i:04d>.png`` (16-bit class ids 0..894) and
  ``rawRgbFilenames.txt`` (line i: the raw frame of labelled frame i, ``<scene>/r-….ppm``);
- the raw frames as extracted scene folders, or zips of them (only ``r-*.ppm`` is read);
- the 894 → 40 table as a text file of 894 integers (line c: the 40-class id of class c) or a
  ``.npy``; from Gupta et al.'s ``classMapping40.mat``: ``python -c "import scipy.io as s;
  print(*s.loadmat('classMapping40.mat')['mapClass'].ravel(), sep='\\n')" > nyu894_to_40.txt``;
- validation: ``--val-list`` (1-based labelled indices, e.g. the 654 ``testNdxs`` of the standard
  split, written as text the same way from ``splits.mat``), else a random split by scene.

The labelled frame's image is the labelled set's (its label is drawn on it); its neighbours are the
raw frames as recorded, which the NYU toolbox had not yet processed — the first warp absorbs the
small difference. A labelled frame whose scene was not downloaded, or that lies less than ``r``
frames from its scene's start or end, is skipped and listed. The rest of wrp trains 19 Cityscapes
classes: NYU-V2 needs ``num_classes=40`` and is prepared here but not wired into the profiles.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from wrp.data import DatasetError, FrameRef
from wrp.prepare import (
    Planned,
    Preparation,
    Source,
    decode_image,
    draw_val,
    encode_png,
    execute_args,
    frame_files,
    map_ids,
    parser,
    run_main,
)

# The 40 classes of Gupta et al. (CVPR 2013), ids 1..40 in this order; 0 is void (unlabelled).
NYU40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)
_RAW = re.compile(r"(?:^|/)(?P<scene>[^/]+)/(?P<name>r-(?P<ts>\d+(?:\.\d+)?)-\d+\.ppm)$")


# ---------------------------------------------------------------------------------------------
# The labelled set: the .mat, or the same fields unpacked into a folder
# ---------------------------------------------------------------------------------------------
class LabelledSet(Protocol):
    """The labelled frames: ``raw_names[i]`` and ``frame(i)`` → (RGB (H, W, 3) uint8, (H, W) class ids)."""

    raw_names: list[str]

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...

    def where(self, i: int) -> str: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class MatLabelledSet:
    """``nyu_depth_v2_labeled.mat`` through h5py (MATLAB stores arrays column-major: transpose)."""

    def __init__(self, path: Path) -> None:
        try:
            import h5py
        except ImportError:
            raise DatasetError(f"reading {path} needs h5py (pip install h5py), which wrp does not depend on; "
                               "or pass the labelled set unpacked into a folder (see --help)") from None
        self.path = path
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise DatasetError(f"cannot open {path} as a MATLAB v7.3 (HDF5) file ({exc}); re-download "
                               "nyu_depth_v2_labeled.mat") from None
        for name in ("images", "labels", "rawRgbFilenames"):
            if name not in self._file:
                raise DatasetError(f"{path} has no field {name!r}; is it nyu_depth_v2_labeled.mat?")
        refs = np.asarray(self._file["rawRgbFilenames"]).ravel()
        self.raw_names = ["".join(map(chr, np.asarray(self._file[ref]).ravel())) for ref in refs]

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rgb = np.asarray(self._file["images"][i]).transpose(2, 1, 0)  # (3, W, H) → (H, W, 3)
        return np.ascontiguousarray(rgb), np.ascontiguousarray(np.asarray(self._file["labels"][i]).T)

    def where(self, i: int) -> str:
        return f"{self.path} (labelled frame {i + 1})"

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        self._file.close()


class FolderLabelledSet:
    """The unpacked form: ``rgb/<i:04d>.png``, ``labels/<i:04d>.png``, ``rawRgbFilenames.txt`` (i from 1)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        names = folder / "rawRgbFilenames.txt"
        if not names.is_file():
            raise DatasetError(f"missing {names}: an unpacked labelled set holds rgb/, labels/ and "
                               "rawRgbFilenames.txt (see --help)")
        self.raw_names = [line.strip() for line in names.read_text().splitlines() if line.strip()]

    def _read(self, kind: str, i: int, flags: int) -> np.ndarray:
        path = self.folder / kind / f"{i + 1:04d}.png"
        if not path.is_file():
            listing = self.folder / "rawRgbFilenames.txt"
            raise DatasetError(f"missing {path} (labelled frame {i + 1} of {listing})")
        return decode_image(path.read_bytes(), str(path), flags)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rgb = cv2.cvtColor(self._read("rgb", i, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return rgb, self._read("labels", i, cv2.IMREAD_UNCHANGED)

    def where(self, i: int) -> str:
        return str(self.folder / "labels" / f"{i + 1:04d}.png")

    def describe(self) -> str:
        return str(self.folder)

    def close(self) -> None:
        """Nothing to release: every file is opened and closed when read."""


def open_labelled(path: Path) -> LabelledSet:
    if path.is_dir():
        return FolderLabelledSet(path)
    if path.is_file():
        return MatLabelledSet(path)
    raise DatasetError(f"{path} does not exist; pass nyu_depth_v2_labeled.mat or the unpacked folder")


def load_mapping(path: Path) -> np.ndarray:
    """The 894 → 40 table as a lookup array: ``table[c]`` = 40-class id of class c (``table[0] = 0``)."""
    if not path.is_file():
        raise DatasetError(f"mapping {path} does not exist; pass the 894 → 40 table (see --help)")
    if path.suffix == ".mat":
        raise DatasetError(f"{path}: convert the .mat to text first (needs scipy): python -c \"import "
                           "scipy.io as s; print(*s.loadmat('classMapping40.mat')['mapClass'].ravel(), "
                           "sep='\\n')\" > nyu894_to_40.txt")
    try:
        values = np.load(path) if path.suffix == ".npy" else np.array(path.read_text().split(), dtype=float)
    except ValueError as exc:
        raise DatasetError(f"mapping {path} is not a list of integers ({exc}); write one 40-class id a "
                           "line") from None
    values = np.asarray(values).ravel()
    if values.size == 0 or (values != np.round(values)).any() or values.min() < 0 or values.max() > 40:
        raise DatasetError(f"mapping {path} must hold integer NYU-40 ids 0..40 (one per NYU class, 894 in "
                           "the official table)")
    return np.concatenate([[0], values.astype(np.int16)])


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------
def plan(labelled: LabelledSet, raw: Source, mapping: np.ndarray, radius: int = 10, val: float = 0.2,
         seed: int = 0, val_list: Sequence[int] | None = None) -> Preparation:
    """Put each labelled frame in its window of raw frames and decide the prepared tree's files."""
    if radius < 1:
        raise DatasetError(f"--radius {radius}: use at least 1")
    scenes: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for m in raw.match(_RAW):
        scenes[m["scene"]].append((float(m["ts"]), m["name"], m.string))
    if not scenes:
        raise DatasetError(f"no <scene>/r-<timestamp>-<n>.ppm in {raw.describe()}; pass the folders of the "
                           "raw NYU-V2 scenes (or their zips)")
    for frames in scenes.values():
        frames.sort()
    n = len(labelled.raw_names)
    if val_list is not None and (bad := [i for i in val_list if not 1 <= i <= n]):
        raise DatasetError(f"--val-list holds indices {bad[:5]} outside 1..{n} (the labelled frames)")
    missing, edge, windows = [], [], []  # windows: (index, scene, [raw keys])
    for i, raw_name in enumerate(labelled.raw_names):
        scene, _, name = raw_name.partition("/")
        names = [frame[1] for frame in scenes.get(scene, [])]
        if name not in names:
            why = "its raw frame" if scene in scenes else f"raw scene folder {scene}/ not found"
            missing.append(f"{raw_name} ({why}; labelled frame {i + 1})")
            continue
        pos = names.index(name)
        if pos < radius or pos + radius >= len(names):
            edge.append(i + 1)
            continue
        windows.append((i, scene, [key for _, _, key in scenes[scene][pos - radius:pos + radius + 1]]))
    if not windows:
        raise DatasetError(f"no labelled frame has ±{radius} raw frames in {raw.describe()} ({len(missing)} "
                           f"missing, {len(edge)} too close to a scene's start or end)")
    if val_list is not None:
        in_val = {i - 1 for i in val_list}
        is_val = {i: i in in_val for i, _, _ in windows}
    else:
        val_scenes = draw_val({scene for _, scene, _ in windows}, val, seed)
        is_val = {i: scene in val_scenes for i, scene, _ in windows}
    files: list[Planned] = []
    records: dict[str, list[str]] = {"train": [], "val": []}
    for i, scene, keys in windows:
        split = "val" if is_val[i] else "train"
        city = re.sub(r"[^A-Za-z0-9_-]", "-", scene)
        records[split].append(f"{city}_{i + 1:06d}")
        for t, key in enumerate(keys):
            ref = FrameRef(split, city, f"{i + 1:06d}", t)
            if t == radius:
                files += frame_files(ref, partial(_centre_image, labelled, i),
                                     partial(_label_bytes, labelled, i, mapping))
            else:
                files += frame_files(ref, partial(_raw_image, raw, key))
    classes = {"format": "nyu40", "num_classes": 40, "void": 0,
               "ids": {"0": "void", **{str(c): name for c, name in enumerate(NYU40_CLASSES, start=1)}},
               "train_ids": "train id = id - 1 (0..39); void (0) → 255 (ignored)",
               "source": "Gupta et al., CVPR 2013: the 894 NYU-V2 classes mapped to 40"}
    as_json = (json.dumps(classes, indent=2) + "\n").encode()
    files.append(Planned("classes.json", "metadata", lambda: as_json, replace=True))
    split_how = (f"--val-list ({len(val_list)} indices)" if val_list is not None
                 else f"random by scene, seed {seed}")
    counts: dict[str, Any] = {
        "labelled frames": n,
        "windows": f"{len(windows)} of {2 * radius + 1} frames (labelled frame at {radius}); skipped: "
                   f"{len(missing)} without raw frames, {len(edge)} less than {radius} frames from their "
                   "scene's start or end",
        "records": f"train {len(records['train'])}, val {len(records['val'])} ({split_how}); "
                   f"{len({s for _, s, _ in windows})} scenes",
        "frames": len(windows) * (2 * radius + 1),
    }
    more = " …" if len(edge) > 10 else ""
    notes = [f"labelled frames too close to a scene's start or end: {edge[:10]}{more}"] if edge else []
    notes.append("labels are NYU-40 ids 0..40 (0 = void, classes.json): train with num_classes=40 — prepared "
                 "here, not wired into the profiles (which train 19 Cityscapes classes)")
    digest = (hashlib.sha1(",".join(map(str, sorted(val_list))).encode()).hexdigest()[:12]
              if val_list is not None else None)
    info = {"partition_length": 2 * radius + 1, "labelled": radius, "split_mode": "layout",
            "label_format": "nyu40", "num_classes": 40, "seed": seed,
            "options": {"radius": radius, "val": val, "seed": seed, "val_list": digest}}
    return Preparation("NYU-V2", f"{labelled.describe()} + {raw.describe()}",
                       files, sorted(records["train"]), sorted(records["val"]), info, counts, missing, notes)


def _centre_image(labelled: LabelledSet, i: int) -> bytes:
    return encode_png(cv2.cvtColor(labelled.frame(i)[0], cv2.COLOR_RGB2BGR), labelled.where(i))


def _label_bytes(labelled: LabelledSet, i: int, mapping: np.ndarray) -> bytes:
    label = labelled.frame(i)[1]
    if label.ndim != 2:
        raise DatasetError(f"label {labelled.where(i)} has shape {label.shape}; expected (H, W) class ids")
    return encode_png(map_ids(label, mapping, labelled.where(i), "NYU-V2 class (per the 894 → 40 mapping)"),
                      labelled.where(i))


def _raw_image(raw: Source, key: str) -> bytes:
    return encode_png(decode_image(raw.read(key), raw.where(key)), key)


def build_parser() -> argparse.ArgumentParser:
    p = parser(__doc__.split("\n\n")[0], epilog="example:\n  python data_scripts/prepare_nyuv2.py --labelled "
               "~/nyu/nyu_depth_v2_labeled.mat --raw ~/nyu/raw --mapping ~/nyu/nyu894_to_40.txt "
               "--val-list ~/nyu/test_indices.txt --out data/nyuv2")
    p.add_argument("--labelled", type=Path, required=True,
                   help="nyu_depth_v2_labeled.mat (needs h5py) or the unpacked folder (rgb/, labels/, "
                        "rawRgbFilenames.txt)")
    p.add_argument("--raw", nargs="+", required=True,
                   help="folders (or zips) holding the raw scene folders <scene>/r-*.ppm")
    p.add_argument("--mapping", type=Path, required=True, help="894 → 40 table: text (894 integers) or .npy")
    p.add_argument("--radius", type=int, default=10, help="raw frames on each side of a labelled frame")
    p.add_argument("--val-list", type=Path, help="text file of 1-based labelled indices forming val")
    p.add_argument("--val", type=float, default=0.2,
                   help="without --val-list: validation scenes (a fraction, or a count ≥ 1)")
    p.add_argument("--seed", type=int, default=0, help="without --val-list: seed of the random scene split")
    return p


def prepare(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, plan, write and report; raises DatasetError (``main`` prints it)."""
    args = build_parser().parse_args(argv)
    val_list = None
    if args.val_list is not None:
        try:
            val_list = [int(v) for v in args.val_list.read_text().split()]
        except (OSError, ValueError) as exc:
            raise DatasetError(f"--val-list {args.val_list}: cannot read it as integers ({exc})") from None
    mapping = load_mapping(args.mapping)
    labelled = open_labelled(args.labelled)
    try:
        with Source(args.raw) as raw:
            prep = plan(labelled, raw, mapping, args.radius, args.val, args.seed, val_list)
            return execute_args(prep, args)
    finally:
        labelled.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
