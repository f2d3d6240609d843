"""The dataset layer: files in the Cityscapes sequence layout → records → 21-frame partitions (clips).

On disk (DESIGN.md; the synthetic world writes the same layout, with a label for every frame)::

    <root>/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     (official label ids)
    <root>/flow/<split>/<city>/<city>_<seq>_<frame>_flow_backward.npy         (synthetic world only)

A **record** is one continuous video (``<city>_<seq>``). Following the supplementary (3.2), each
record is cut into partitions of 21 consecutive frames; the centre frame is the human-labelled
one, leftovers are discarded, and train/val are re-split **by record** (randomly, seeded) so no
partition overlaps validation. The result is a **manifest** (JSON) that every later stage reads.

Two views keep the method honest:

- :class:`Clip` — what training and propagation code get: every frame's image and the human label
  of the labelled frame only. A clip holds no path to any other label.
- :class:`GroundTruth` — what evaluation gets: the label of every frame, for scoring propagated
  labels at every distance from the labelled frame.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import struct
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

from wrp.io import atomic_write_json, atomic_write_png

IGNORE_INDEX = 255
NUM_CLASSES = 19  # Cityscapes train ids 0..18
CLASS_NAMES = tuple(
    next(lab.name for lab in _CITYSCAPES_LABELS if lab.trainId == i) for i in range(NUM_CLASSES)
)
MANIFEST_VERSION = 1

IMAGE_DIR, LABEL_DIR, FLOW_DIR = "leftImg8bit_sequence", "gtFine", "flow"
IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"
_FRAME_RE = re.compile(r"^(?P<city>.+?)_(?P<seq>\d{6})_(?P<frame>\d{6})" + re.escape(IMAGE_SUFFIX) + "$")

# Official label id → train id (cityscapesscripts); ids that are not Cityscapes label ids stay
# marked as unknown so a wrong label file is caught instead of silently ignored.
_UNKNOWN = 254
LABEL_TO_TRAIN = np.full(256, _UNKNOWN, dtype=np.uint8)
for _lab in _CITYSCAPES_LABELS:
    if 0 <= _lab.id < 256:
        LABEL_TO_TRAIN[_lab.id] = _lab.trainId if 0 <= _lab.trainId < NUM_CLASSES else IGNORE_INDEX
TRAIN_TO_LABEL = np.zeros(256, dtype=np.uint8)  # train id → official label id (255 → 0 unlabeled)
for _lab in _CITYSCAPES_LABELS:
    if 0 <= _lab.trainId < NUM_CLASSES and not _lab.ignoreInEval:
        TRAIN_TO_LABEL[_lab.trainId] = _lab.id

_BY_CATEGORY = sorted(_CITYSCAPES_LABELS, key=lambda lab: lab.categoryId)
# The 7 Cityscapes categories of the train ids, in cityscapesscripts' order (flat,
# construction, object, nature, sky, human, vehicle): a coarser label set that knows a vehicle
# from a person but not a car from a bus — what a model pretrained elsewhere knows of a new taxonomy.
CATEGORY_NAMES = tuple(dict.fromkeys(lab.category for lab in _BY_CATEGORY
                                     if 0 <= lab.trainId < NUM_CLASSES))
TRAIN_TO_CATEGORY = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _lab in _CITYSCAPES_LABELS:
    if 0 <= _lab.trainId < NUM_CLASSES:
        TRAIN_TO_CATEGORY[_lab.trainId] = CATEGORY_NAMES.index(_lab.category)

#: Label sets a segmenter can be trained on instead of the train ids, by name: the lookup table
#: from train ids and the names of the classes it gives (``wrp.stages.segmentation_dataset``).
LABEL_SETS: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {
    "categories": (TRAIN_TO_CATEGORY, CATEGORY_NAMES)}


def label_set(name: str | None) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """(lookup table from train ids or ``None``, class names) of the label set ``name``
    (``None``: the 19 train ids themselves), or an error naming the choices."""
    if name is None:
        return None, CLASS_NAMES
    if name not in LABEL_SETS:
        raise ValueError(f"unknown label set {name!r}; choose from {', '.join(LABEL_SETS)} (or none: the "
                         "train ids)")
    return LABEL_SETS[name]


class DatasetError(ValueError):
    """A problem with the files of a dataset; the message names the file and the fix."""


# ---------------------------------------------------------------------------------------------
# Reading one file
# ---------------------------------------------------------------------------------------------
def png_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from a PNG header without decoding it; DatasetError when it is no PNG."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
    except FileNotFoundError:
        raise DatasetError(f"missing file {path}") from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DatasetError(f"{path} is not a valid PNG (truncated or corrupt); re-create or re-download it")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _imread(path: str | Path, kind: str, flags: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing {kind} {path}")
    array = cv2.imread(str(path), flags)
    if array is None:
        raise DatasetError(f"cannot decode {kind} {path} (corrupt or not an image); "
                           "re-create or re-download it")
    return array


def decode_label_png(data: bytes, where: str) -> np.ndarray:
    """The array of a label image's bytes, as stored: a palette PNG (colour type 3, as some
    annotation tools save ids) gives its indices, which OpenCV would expand to colours."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DatasetError(f"cannot decode label {where} (corrupt or not an image); re-create or "
                           "re-download it")
    if array.ndim == 3 and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[25] == 3:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image, dtype=np.uint8)
    return array


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; DatasetError naming the file when it is missing or cannot be decoded."""
    return cv2.cvtColor(_imread(path, "image", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_label_ids(path: str | Path) -> np.ndarray:
    """(H, W) uint8 official Cityscapes label ids, checked against the label definitions."""
    if not Path(path).is_file():
        raise DatasetError(f"missing label {path}")
    label = decode_label_png(Path(path).read_bytes(), str(path))
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(
            f"label {path} has shape {label.shape} and dtype {label.dtype}; expected a single-channel "
            "8-bit PNG of Cityscapes label ids (*_gtFine_labelIds.png, not the colour image)"
        )
    unknown = np.unique(label[LABEL_TO_TRAIN[label] == _UNKNOWN])
    if unknown.size:
        hint = (" 255 is the ignore value of *train ids*: these labels look like train ids — write them "
                "as label ids (wrp.data.write_label_ids, or wrp prepare-frames --label-format train-ids)"
                if 255 in unknown.tolist() and int(label.max(initial=0, where=label != 255)) <= 18 else "")
        raise DatasetError(
            f"label {path} holds ids {unknown.tolist()} that are not Cityscapes label ids (0..33); "
            "map them to official ids (cityscapesscripts.helpers.labels) before use." + hint
        )
    return label


def read_label(path: str | Path) -> np.ndarray:
    """(H, W) uint8 train ids 0..18, 255 = ignore, from a ``*_gtFine_labelIds.png``."""
    return LABEL_TO_TRAIN[read_label_ids(path)]


def write_label_ids(path: str | Path, train_ids: np.ndarray) -> Path:
    """Write train ids as an official-label-id PNG, atomically (Cityscapes tools read it as is)."""
    return atomic_write_png(path, TRAIN_TO_LABEL[np.asarray(train_ids, dtype=np.uint8)])


# ---------------------------------------------------------------------------------------------
# The layout: names of frames, records
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class FrameRef:
    """One frame of the layout: ``<split>/<city>/<city>_<seq>_<frame>``."""

    split: str
    city: str
    seq: str
    frame: int

    @property
    def stem(self) -> str:
        return f"{self.city}_{self.seq}_{self.frame:06d}"

    @property
    def record_id(self) -> str:
        return f"{self.city}_{self.seq}"

    def image(self, root: Path) -> Path:
        return Path(root) / IMAGE_DIR / self.split / self.city / f"{self.stem}{IMAGE_SUFFIX}"

    def label(self, root: Path) -> Path:
        return Path(root) / LABEL_DIR / self.split / self.city / f"{self.stem}{LABEL_SUFFIX}"

    def flow(self, root: Path, direction: str = "backward") -> tuple[Path, Path]:
        """True flow (``.npy``) and its validity mask (0/255 PNG) — written by the synthetic world."""
        if direction not in ("backward", "forward"):
            raise ValueError(f"direction={direction!r}; use 'backward' (to t-1) or 'forward' (to t+1)")
        base = Path(root) / FLOW_DIR / self.split / self.city / self.stem
        return Path(f"{base}_flow_{direction}.npy"), Path(f"{base}_valid_{direction}.png")


@dataclass(frozen=True)
class Record:
    """A continuous run of frames of one video (frame numbers without gaps)."""

    record_id: str
    frames: tuple[FrameRef, ...]

    def __len__(self) -> int:
        return len(self.frames)


def scan_records(root: str | Path, splits: Iterable[str] | None = None) -> list[Record]:
    """Every record of a Cityscapes-sequence layout; a gap in frame numbers starts a new run.

    Gaps are not an error (some datasets drop frames); partitions never straddle one, and a
    warning says how many gaps were found.
    """
    root = Path(root)
    base = root / IMAGE_DIR
    if not base.is_dir():
        raise DatasetError(
            f"no {IMAGE_DIR}/ folder in {root}; expected {base}/<split>/<city>/"
            f"<city>_<seq>_<frame>{IMAGE_SUFFIX} (make one with `wrp synth --out {root}` or a "
            "script in data_scripts/)"
        )
    wanted = set(splits) if splits is not None else None
    groups: dict[tuple[str, str, str], list[FrameRef]] = defaultdict(list)
    strays = []
    for path in sorted(base.glob(f"*/*/*{IMAGE_SUFFIX}")):
        split, city = path.parent.parent.name, path.parent.name
        if wanted is not None and split not in wanted:
            continue
        match = _FRAME_RE.match(path.name)
        if not match or match["city"] != city:
            strays.append(path)
            continue
        groups[(split, city, match["seq"])].append(FrameRef(split, city, match["seq"], int(match["frame"])))
    if strays:
        warnings.warn(f"skipped {len(strays)} file(s) not named <city>_<seq>_<frame>{IMAGE_SUFFIX} "
                      f"inside their <city>/ folder, e.g. {strays[0]}", stacklevel=2)
    if not groups:
        where = f" in split(s) {sorted(wanted)}" if wanted else ""
        raise DatasetError(f"no frames{where} under {base}/<split>/<city>/ matching "
                           f"<city>_<seq>_<frame>{IMAGE_SUFFIX}")
    records, gaps = [], 0
    for (_split, _city, _seq), frames in sorted(groups.items()):
        frames.sort()
        run = [frames[0]]
        for frame in frames[1:]:
            if frame.frame != run[-1].frame + 1:
                gaps += 1
                records.append(run)
                run = []
            run.append(frame)
        records.append(run)
    if gaps:
        warnings.warn(f"{gaps} gap(s) in frame numbering under {base}; each continuous run is "
                      "partitioned on its own", stacklevel=2)
    return [Record(run[0].record_id, tuple(run)) for run in records]


# ---------------------------------------------------------------------------------------------
# Partitions (supplementary 3.2) and the manifest
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    """``length`` consecutive frames of one record; ``frames[labelled]`` carries the human label."""

    record_id: str
    index: int  # n-th partition of its record
    frames: tuple[FrameRef, ...]
    labelled: int

    @property
    def partition_id(self) -> str:
        return f"{self.record_id}_p{self.index:02d}"

    def distance(self, position: int) -> int:
        """Signed distance of frame ``position`` from the labelled frame."""
        return position - self.labelled


def partition_record(
    record: Record, length: int = 21, labelled: int | None = None
) -> list[Partition]:
    """Cut a record into consecutive partitions of ``length`` frames; leftovers are discarded."""
    if length < 1:
        raise ValueError(f"partition length {length} must be ≥ 1")
    labelled = length // 2 if labelled is None else labelled
    if not 0 <= labelled < length:
        raise ValueError(f"labelled position {labelled} must lie in 0..{length - 1}")
    return [Partition(record.record_id, n, record.frames[n * length:(n + 1) * length], labelled)
            for n in range(len(record) // length)]


CV2_VAL_CITIES = ("monchengladbach", "strasbourg", "stuttgart")  # Cityscapes "cv2" split (supp. 3.1)


@dataclass(frozen=True)
class SplitConfig:
    """How a manifest is made. ``val`` is a record count (int ≥ 1) or a fraction (0 < val < 1)."""

    partition_length: int = 21
    labelled: int | None = None  # position of the labelled frame; None → the centre
    val: float = 0.2
    mode: str = "random"  # "random": re-split by record (seeded) | "cv2": by city | "layout": keep splits
    seed: int = 0


@dataclass
class Manifest:
    """Train / val partitions of one dataset root, as stored in ``manifest.json``."""

    root: Path
    config: SplitConfig
    train: list[Partition]
    val: list[Partition]
    skipped: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"train_partitions": len(self.train), "val_partitions": len(self.val),
                "train_records": len({p.record_id for p in self.train}),
                "val_records": len({p.record_id for p in self.val}),
                "labelled_frames": len(self.train) + len(self.val),
                "frames": sum(len(p.frames) for p in self.train + self.val)}

    def clips(self, split: str) -> list[Clip]:
        """The training/propagation view of one split: images + the human label of the centre frame."""
        return [Clip.from_partition(self.root, p) for p in self._split(split)]

    def ground_truth(self, split: str) -> GroundTruth:
        """The evaluation view of one split: the label of every frame."""
        return GroundTruth(self.root, {p.partition_id: p for p in self._split(split)})

    def _split(self, split: str) -> list[Partition]:
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r}; use 'train' or 'val'")
        return self.train if split == "train" else self.val

    def to_json(self) -> dict[str, Any]:
        def enc(p: Partition) -> dict[str, Any]:
            first = p.frames[0]
            return {"record": p.record_id, "index": p.index, "split": first.split, "city": first.city,
                    "seq": first.seq, "first_frame": first.frame, "length": len(p.frames),
                    "labelled": p.labelled}

        return {"version": MANIFEST_VERSION, "root": str(self.root), "config": asdict(self.config),
                "counts": self.counts(), "skipped": self.skipped,
                "train": [enc(p) for p in self.train], "val": [enc(p) for p in self.val]}

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DatasetError(f"no manifest at {path}; build one with wrp.data.build_manifest") from None
        if data.get("version") != MANIFEST_VERSION:
            raise DatasetError(f"manifest {path} has version {data.get('version')}, expected "
                               f"{MANIFEST_VERSION}; rebuild it")

        def dec(e: dict[str, Any]) -> Partition:
            frames = tuple(FrameRef(e["split"], e["city"], e["seq"], e["first_frame"] + i)
                           for i in range(e["length"]))
            return Partition(e["record"], e["index"], frames, e["labelled"])

        return cls(Path(data["root"]), SplitConfig(**data["config"]), [dec(e) for e in data["train"]],
                   [dec(e) for e in data["val"]], data.get("skipped", {}))


def build_manifest(root: str | Path, config: SplitConfig = SplitConfig(), check: bool = True) -> Manifest:
    """Partition every record of ``root`` and split train / val by record (supplementary 3.2).

    With ``check`` every labelled frame's label is decoded (missing, corrupt, unknown ids, size
    different from its image → DatasetError naming the file) and the image sizes of each partition
    are read from their PNG headers. Records shorter than a partition are skipped and counted.
    """
    root = Path(root)
    records = scan_records(root, None if config.mode != "layout" else ("train", "val"))
    partitions: dict[str, list[Partition]] = {}
    short = 0
    for record in records:
        parts = partition_record(record, config.partition_length, config.labelled)
        if not parts:
            short += 1
            continue
        known = partitions.setdefault(record.record_id, [])  # a record split by gaps has several runs
        offset = len(known)
        known.extend(Partition(p.record_id, offset + i, p.frames, p.labelled) for i, p in enumerate(parts))
    if short:
        warnings.warn(f"skipped {short} record run(s) shorter than a partition of "
                      f"{config.partition_length} frames", stacklevel=2)
    if not partitions:
        raise DatasetError(f"no record under {root} has {config.partition_length} consecutive frames; "
                           "use a shorter partition_length or longer sequences")
    ids = sorted(partitions)
    if config.mode == "random":
        n_val = round(config.val * len(ids)) if 0 < config.val < 1 else int(config.val)
        if not 1 <= n_val < len(ids):
            raise DatasetError(f"val={config.val} asks for {n_val} validation record(s) out of {len(ids)}; "
                               "each split needs at least one record")
        val_ids = set(random.Random(config.seed).sample(ids, n_val))
    elif config.mode == "cv2":
        val_ids = {r for r in ids if partitions[r][0].frames[0].city.lower() in CV2_VAL_CITIES}
    elif config.mode == "layout":
        val_ids = {r for r in ids if partitions[r][0].frames[0].split == "val"}
    else:
        raise ValueError(f"mode={config.mode!r}; use 'random', 'cv2' or 'layout'")
    train = [p for r in ids if r not in val_ids for p in partitions[r]]
    val = [p for r in ids if r in val_ids for p in partitions[r]]
    if check:
        parts = train + val
        counts = sum((_check_partition(root, part) for part in parts), np.zeros(256, np.int64))
        if parts:
            _check_label_ids_per_dataset(counts, parts[0].frames[parts[0].labelled].label(root))
    return Manifest(root, config, train, val, {"short_records": short})


def _check_partition(root: Path, part: Partition) -> None:
    size = png_size(part.frames[0].image(root))
    for ref in part.frames[1:]:
        if (other := png_size(ref.image(root))) != size:
            raise DatasetError(f"{ref.image(root)} is {other[1]}×{other[0]} but the other frames of "
                               f"{part.record_id} are {size[1]}×{size[0]}; resize it or remove the record")
    labelled = part.frames[part.labelled]
    label_path = labelled.label(root)
    if not label_path.is_file():
        raise DatasetError(f"frame {labelled.stem} of {part.record_id} has no label (expected {label_path})")
    label = read_label_ids(label_path)
    if label.shape != size:
        raise DatasetError(f"label {label_path} is {label.shape[1]}×{label.shape[0]} but its image is "
                           f"{size[1]}×{size[0]}")
    return np.bincount(label.ravel(), minlength=256)


def _check_label_ids_per_dataset(counts: np.ndarray, example: Path) -> None:
    """Train ids (0..18) and label ids (0..33) overlap, so a file cannot tell them apart; a dataset
    can. Label-id files of street scenes hold the ids of vegetation, sky, persons, cars (19..33),
    which train-id files never hold, and only a little of the void ids 0..6 (ego vehicle, out of
    ROI, …), which are road, sidewalk, building, … as train ids. Refuse a dataset that looks like
    train ids."""
    total = int(counts.sum())
    if total == 0:
        return
    void_share = float(counts[:7].sum()) / total
    # 1 and 2 (ego vehicle, rectification border) are thin edges in label-id files, and sidewalk and
    # building as train ids: a dataset of roads alone (7 and 0) or of `ground` (6) is not caught
    edges = float(counts[1:3].sum()) / total
    if counts[19:34].sum() == 0 and void_share > 0.5 and edges > 0.1:
        raise DatasetError(
            f"the labels of this dataset (e.g. {example}) look like train ids, not label ids: "
            f"{100 * void_share:.0f}% of their pixels are void ids 0..6 (road, sidewalk, building, … as "
            "train ids) and none holds an id of 19..33 (vegetation, sky, person, car, …). Write them as "
            "label ids (wrp.data.write_label_ids, or wrp prepare-frames --label-format train-ids)")


# ---------------------------------------------------------------------------------------------
# The two views
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clip:
    """A partition as training and propagation see it: all images, one human label.

    By construction a clip holds no path to the label of any frame but ``labelled``: generated
    labels are the only labels the other frames will ever get on the training side.
    """

    clip_id: str
    frames: tuple[FrameRef, ...]
    images: tuple[Path, ...]
    labelled: int
    human_label: Path
    root: Path

    @classmethod
    def from_partition(cls, root: Path, part: Partition) -> Clip:
        return cls(part.partition_id, part.frames, tuple(f.image(root) for f in part.frames),
                   part.labelled, part.frames[part.labelled].label(root), Path(root))

    def __len__(self) -> int:
        return len(self.frames)

    def image(self, position: int) -> np.ndarray:
        return read_image(self.images[position])

    def label(self, position: int) -> np.ndarray:
        """The human label (train ids) — only of the labelled frame."""
        if position != self.labelled:
            raise PermissionError(
                f"frame {position} of {self.clip_id} is not human-labelled (only frame {self.labelled} "
                "is); its ground truth is for evaluation only — use Manifest.ground_truth()"
            )
        return read_label(self.human_label)

    def true_flow(self, position: int, direction: str = "backward") -> tuple[np.ndarray, np.ndarray]:
        """The synthetic world's exact flow of frame ``position`` and its validity (bool)."""
        flow_path, valid_path = self.frames[position].flow(self.root, direction)
        if not flow_path.is_file():
            raise DatasetError(f"no true flow {flow_path}: only the synthetic world ships true flow")
        valid = cv2.imread(str(valid_path), cv2.IMREAD_GRAYSCALE)
        if valid is None:
            raise DatasetError(f"missing or corrupt validity mask {valid_path}")
        return np.load(flow_path), valid > 127


def human_samples(clips: Sequence[Clip]) -> list[tuple[Path, Path]]:
    """(image, label) pairs of the human-labelled frames — the Baseline's training set."""
    return [(c.images[c.labelled], c.human_label) for c in clips]


@dataclass(frozen=True)
class GroundTruth:
    """Every frame's label of one split — for evaluation, never for training."""

    root: Path
    partitions: dict[str, Partition]

    def label_path(self, clip_id: str, position: int) -> Path:
        return self.partitions[clip_id].frames[position].label(self.root)

    def label(self, clip_id: str, position: int) -> np.ndarray:
        return read_label(self.label_path(clip_id, position))


# ---------------------------------------------------------------------------------------------
# Trees written by data_scripts/prepare_*.py
# ---------------------------------------------------------------------------------------------
PREPARED_FILE = "splits/dataset.json"  # what a prepare script decided: partitions, split, label format
LABEL_FORMATS = ("cityscapes", "nyu40")  # official Cityscapes label ids | NYU-V2 40 classes (0 = void)


@dataclass(frozen=True)
class PreparedDataset:
    """A tree written by a ``data_scripts/prepare_*.py`` script, as its ``splits/dataset.json`` says.

    The tree itself is the Cityscapes sequence layout every stage reads; this object adds what the
    script decided and the layout cannot say: the partition length and the labelled position
    (Cityscapes: 30 frames, frame 19; ApolloScape, KITTI, NYU-V2: 21 frames, the centre), how to
    split (``layout``: the ``train``/``val`` folders; ``cv2``: by city), the records of each split
    (``splits/train.txt``, ``splits/val.txt``) and how label files encode classes.
    """

    root: Path
    dataset: str
    partition_length: int
    labelled: int
    split_mode: str
    label_format: str = "cityscapes"
    num_classes: int = NUM_CLASSES
    seed: int = 0
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()

    def split_config(self) -> SplitConfig:
        """The :class:`SplitConfig` that rebuilds exactly the prepared split."""
        return SplitConfig(partition_length=self.partition_length, labelled=self.labelled,
                           mode=self.split_mode, seed=self.seed)

    def read_label(self, path: str | Path) -> np.ndarray:
        """(H, W) uint8 train ids (0..num_classes-1, 255 = ignore) of one label file of this tree."""
        if self.label_format == "cityscapes":
            return read_label(path)
        label = _imread(path, "label", cv2.IMREAD_UNCHANGED)
        if label.ndim != 2 or label.dtype != np.uint8:
            raise DatasetError(f"label {path} has shape {label.shape} and dtype {label.dtype}; expected a "
                               f"single-channel 8-bit PNG of {self.label_format} ids")
        if (bad := np.unique(label[label > self.num_classes])).size:
            raise DatasetError(f"label {path} holds ids {bad.tolist()} outside 0..{self.num_classes} "
                               f"({self.label_format}: 0 = void); re-run the prepare script")
        return np.where(label == 0, IGNORE_INDEX, label - 1).astype(np.uint8)

    def manifest(self, check: bool = True) -> Manifest:
        """``build_manifest`` with the prepared split, checked against ``splits/{train,val}.txt``."""
        cityscapes_ids = self.label_format == "cityscapes"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gaps between snippets of one record are expected here
            manifest = build_manifest(self.root, self.split_config(), check=check and cityscapes_ids)
        if check and not cityscapes_ids:
            for part in manifest.train + manifest.val:
                ref = part.frames[part.labelled]
                size = png_size(ref.image(self.root))
                if (shape := self.read_label(ref.label(self.root)).shape) != size:
                    raise DatasetError(f"label {ref.label(self.root)} is {shape[1]}×{shape[0]} but its image "
                                       f"is {size[1]}×{size[0]}")
        for split, listed in (("train", self.train), ("val", self.val)):
            found = {p.record_id for p in getattr(manifest, split)}
            if found != set(listed):
                extra, lost = sorted(found - set(listed)), sorted(set(listed) - found)
                raise DatasetError(
                    f"the {split} records under {self.root} differ from splits/{split}.txt "
                    f"(not listed: {extra[:3]}, listed but incomplete or absent: {lost[:3]}); files were "
                    "added or removed after preparation — re-run the prepare script"
                )
        return manifest


_LABEL_DIGESTS: dict[tuple[str, int, int], bytes] = {}  # (path, size, mtime) → digest of its bytes


def tree_fingerprint(root: str | Path) -> str:
    """A digest of what a prepared tree holds: every label's bytes (``gtFine/``) and every frame's
    name and size (``leftImg8bit_sequence/``). Stages that read a tree key on it, so editing a label
    or replacing frames makes them run again instead of reusing results of the old data. Cheap
    enough for Cityscapes: labels are small, frames are only listed."""
    root = Path(root)
    digest = hashlib.sha1()
    for path in sorted((root / LABEL_DIR).rglob("*.png")):
        digest.update(f"{path.relative_to(root)}\0".encode())
        stat = path.stat()  # a label is read again only when it changed since this process read it
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _LABEL_DIGESTS:
            _LABEL_DIGESTS[key] = hashlib.sha1(path.read_bytes()).digest()
        digest.update(_LABEL_DIGESTS[key])
    for path in sorted((root / IMAGE_DIR).rglob("*")):
        if path.is_file():
            digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\0".encode())
    return digest.hexdigest()


def read_prepared(root: str | Path) -> PreparedDataset:
    """The :class:`PreparedDataset` of a tree made by a ``data_scripts/prepare_*.py`` script."""
    root = Path(root)
    path = root / PREPARED_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"no {PREPARED_FILE} in {root}: the tree was not made by a data_scripts/"
                           "prepare_*.py script; build its manifest with build_manifest(root, "
                           "SplitConfig(...))") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); re-run the prepare script") from None
    missing = [k for k in ("dataset", "partition_length", "labelled", "split_mode") if k not in info]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)}; re-run the prepare script (or "
                           "wrp prepare-frames) that wrote it")
    if info.get("label_format", "cityscapes") not in LABEL_FORMATS:
        raise DatasetError(f"{path}: unknown label_format {info.get('label_format')!r}; expected one of "
                           f"{LABEL_FORMATS}")

    def records(split: str) -> tuple[str, ...]:
        listing = root / "splits" / f"{split}.txt"
        if not listing.is_file():
            raise DatasetError(f"missing {listing}; re-run the prepare script")
        return tuple(line.strip() for line in listing.read_text().splitlines() if line.strip())

    return PreparedDataset(root, info["dataset"], int(info["partition_length"]), int(info["labelled"]),
                           info["split_mode"], info.get("label_format", "cityscapes"),
                           int(info.get("num_classes", NUM_CLASSES)), int(info.get("seed") or 0),
                           records("train"), records("val"))
