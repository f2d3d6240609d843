"""Labels out: predicted or propagated train ids → Cityscapes ``*_labelIds.png``, and the official score.

wrp's networks, policies and metrics speak **train ids** (0..18, 255 = ignore / unlabelled).
Cityscapes tools — the benchmark server, ``cityscapesscripts``' evaluator, most viewers — read
official **label ids** (road = 7, car = 26, …) in files named after their frame,
``<city>_<seq>_<frame>*.png``. This module converts and names, writing every file atomically:

- :func:`export_label_ids` — one train-id map → one label-id PNG at a path you choose;
- :func:`export_frame` — one map for a :class:`~wrp.data.FrameRef`, named
  ``<city>_<seq>_<frame>_gtFine_labelIds.png`` (in the layout's ``gtFine/<split>/<city>/``, or flat);
- :func:`export_tree` — a whole folder of label files (a policy's propagated labels, a segmenter's
  predictions saved as train ids) → one results folder the official tools read as is.

Unlabelled pixels (train id 255) become label id 0 (``unlabeled``), which Cityscapes ignores in the
ground truth but counts as a **miss** in a prediction — as ``wrp.metrics`` does with
``unlabelled_is_wrong=True``. :func:`official_evaluation` runs cityscapesscripts' pixel-level
evaluator on pairs of files; :func:`wrp_evaluation` scores the same files with ``wrp.metrics``; the
two agree (tests/test_export.py).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wrp.data import (
    CLASS_NAMES,
    IGNORE_INDEX,
    LABEL_DIR,
    LABEL_SUFFIX,
    NUM_CLASSES,
    TRAIN_TO_LABEL,
    DatasetError,
    FrameRef,
    read_label,
    read_label_ids,
)
from wrp.io import atomic_write_png
from wrp.metrics import confusion_matrix, iou, mean_iou
from wrp.runtime import progress_bar

_STEM = re.compile(r"^(?P<stem>.+?_\d{6}_\d{6})(?:_.*)?\.png$")  # <city>_<seq>_<frame>…png


def to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) train ids (0..18, 255 = unlabelled) → (H, W) uint8 official Cityscapes label ids."""
    ids = np.asarray(train_ids)
    if ids.ndim != 2:
        raise ValueError(f"a label map is (H, W); got shape {ids.shape}")
    if (bad := np.unique(ids[((ids < 0) | (ids >= NUM_CLASSES)) & (ids != IGNORE_INDEX)])).size:
        raise ValueError(f"train ids {bad.tolist()} are neither a class (0..{NUM_CLASSES - 1}) nor "
                         f"unlabelled ({IGNORE_INDEX})")
    return TRAIN_TO_LABEL[ids.astype(np.uint8)]


def export_label_ids(train_ids: np.ndarray, path: str | Path) -> Path:
    """Write a train-id map as a label-id PNG at ``path``, atomically."""
    return atomic_write_png(path, to_label_ids(train_ids))


def export_frame(train_ids: np.ndarray, ref: FrameRef, out: str | Path, flat: bool = False) -> Path:
    """Write the label of frame ``ref`` under ``out`` with its Cityscapes name.

    ``out/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png`` (the layout, so
    ``wrp.data`` reads it back), or with ``flat`` directly ``out/<city>_<seq>_<frame>_gtFine_labelIds.png``.
    """
    path = Path(out) / f"{ref.stem}{LABEL_SUFFIX}" if flat else ref.label(Path(out))
    return export_label_ids(train_ids, path)


def export_tree(src: str | Path, out: str | Path, pattern: str = f"*{LABEL_SUFFIX}", train_ids: bool = False,
                flat: bool = False, progress: bool = True) -> list[Path]:
    """Export every file under ``src`` matching ``pattern`` as ``<city>_<seq>_<frame>_gtFine_labelIds.png``.

    With ``train_ids`` the files hold train ids (e.g. ``*_labelTrainIds.png``) and are converted;
    otherwise they hold label ids and are checked (unknown ids → DatasetError naming the file).
    The folders below ``src`` are kept (``gtFine/<split>/<city>/`` stays so), unless ``flat``. A file
    already exported with the same content is left untouched, so a rerun writes nothing new.
    Returns the exported paths.
    """
    import cv2

    src, out = Path(src), Path(out)
    files = sorted(p for p in src.rglob(pattern) if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"no {pattern} under {src}")
    exported = []
    for path in progress_bar(files, desc=f"export → {out.name}", unit="label", disable=not progress):
        match = _STEM.match(path.name)
        if not match:
            raise DatasetError(f"{path} is not named <city>_<seq>_<frame>….png; Cityscapes tools match "
                               "predictions to ground truth by that name")
        name = f"{match['stem']}{LABEL_SUFFIX}"
        dest = out / name if flat else out / path.parent.relative_to(src) / name
        if train_ids:
            label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if label is None or label.ndim != 2:
                raise DatasetError(f"cannot read {path} as a single-channel train-id PNG")
            try:
                ids = to_label_ids(label)
            except ValueError as exc:
                raise DatasetError(f"{path}: {exc}") from None
        else:
            ids = read_label_ids(path)
        if not (dest.is_file() and np.array_equal(cv2.imread(str(dest), cv2.IMREAD_UNCHANGED), ids)):
            atomic_write_png(dest, ids)
        exported.append(dest)
    return exported


def pair_with_ground_truth(predictions: Sequence[str | Path],
                           root: str | Path) -> tuple[list[Path], list[Path]]:
    """The predictions that have a ground truth under ``root`` and those ground truths, in order.

    A prediction ``…/<city>_<seq>_<frame>*.png`` matches ``root/gtFine/<split>/<city>/<city>_<seq>_
    <frame>_gtFine_labelIds.png`` (as cityscapesscripts matches them). Frames without a label (in
    Cityscapes and KITTI all but the labelled frame of each snippet) are left out; none at all is
    a DatasetError.
    """
    root = Path(root)
    index = {p.name: p for p in (root / LABEL_DIR).glob(f"*/*/*{LABEL_SUFFIX}")}
    preds, truths = [], []
    for pred in map(Path, predictions):
        match = _STEM.match(pred.name)
        if match and (gt := index.get(f"{match['stem']}{LABEL_SUFFIX}")) is not None:
            preds.append(pred)
            truths.append(gt)
    if not preds:
        raise DatasetError(f"none of the {len(predictions)} prediction(s) has a ground truth under "
                           f"{root / LABEL_DIR}/<split>/<city>/ (matched by <city>_<seq>_<frame>)")
    return preds, truths


def official_evaluation(predictions: Sequence[str | Path],
                        ground_truths: Sequence[str | Path]) -> dict[str, Any]:
    """cityscapesscripts' pixel-level evaluator on pairs of label-id files.

    Returns ``{"mIoU": %, "iou": {class: %}}``: the evaluator's "Score Average" over classes (its
    ``averageScoreClasses``, the mean over the 19 classes whose IoU is defined) and each class's IoU.
    Instance-level scores are off (they need ``*_instanceIds.png``), nothing is printed or saved.
    """
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = copy.copy(official.args)
    args.quiet, args.JSONOutput, args.evalInstLevelScore, args.evalPixelAccuracy = True, False, False, False
    args.colorized, args.bold, args.nocol = False, "", ""
    try:
        result = official.evaluateImgLists([str(p) for p in predictions],
                                           [str(g) for g in ground_truths], args)
    except SystemExit:  # its printError() prints "ERROR: …" and exits
        raise DatasetError("cityscapesscripts' evaluator stopped; its ERROR line above says why") from None
    scores = {name: 100 * float(v) for name, v in result["classScores"].items() if not np.isnan(v)}
    return {"mIoU": 100 * float(result["averageScoreClasses"]), "iou": scores}


def wrp_evaluation(predictions: Sequence[str | Path], ground_truths: Sequence[str | Path]) -> dict[str, Any]:
    """``wrp.metrics`` on the same pairs of label-id files: ``{"mIoU": %, "iou": {class: %}}``.

    Both files are read as train ids; a predicted void id (train id 255: unlabelled) counts as a
    miss of the true class (``unlabelled_is_wrong=True``), ground-truth void pixels are skipped.
    """
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES + 1), np.int64)
    for pred, gt in zip(predictions, ground_truths, strict=True):
        conf += confusion_matrix(read_label(pred), read_label(gt), unlabelled_is_wrong=True)
    per_class = iou(conf)
    return {"mIoU": mean_iou(conf), "iou": {CLASS_NAMES[c]: 100 * float(v) for c, v in enumerate(per_class)
                                           if not np.isnan(v)}}
