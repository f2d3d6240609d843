#!/usr/bin/env python
"""Cityscapes → the wrp layout: the 30-frame snippet around every finely labelled frame.

Cityscapes labels frame 19 (0-based; the 20th) of each 30-frame snippet (METHOD.md "The
problem"). This script reads the two official downloads — ``leftImg8bit_sequence_trainvaltest``
and ``gtFine_trainvaltest``, as the zips or the folders they extract to — and writes, for every
``*_gtFine_labelIds.png`` of the chosen splits, its snippet's 30 frames and its label::

    <out>/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png   (frames n-19 … n+10)
    <out>/gtFine/<split>/<city>/<city>_<seq>_<n>_gtFine_labelIds.png                (the labelled frame n)
    <out>/splits/{train,val}.txt, dataset.json, missing.txt

Labels keep the official label ids; train ids are derived from them exactly as cityscapesscripts
defines them (``wrp.data.LABEL_TO_TRAIN``); ``--train-ids`` also writes them as
``*_gtFine_labelTrainIds.png`` for other tools. ``--split cv2`` moves Mönchengladbach, Strasbourg
and Stuttgart to validation (the split for test-set models, supplementary 3.1).

A snippet with a missing frame is skipped and listed; a labelled frame without its image is an
error (the sequence download is incomplete). Read the result with
``wrp.data.read_prepared(out).manifest()``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

from wrp.data import (
    CV2_VAL_CITIES,
    IMAGE_DIR,
    IMAGE_SUFFIX,
    LABEL_DIR,
    LABEL_TO_TRAIN,
    DatasetError,
    FrameRef,
)
from wrp.prepare import (
    Planned,
    Preparation,
    Source,
    decode_label_ids,
    encode_png,
    execute_args,
    frame_files,
    parser,
    run_main,
)

SNIPPET, LABELLED = 30, 19  # frames per snippet; index of the labelled frame in it
ZIPS = ("leftImg8bit_sequence_trainvaltest.zip", "gtFine_trainvaltest.zip")
_LABEL = re.compile(r"^gtFine/(?P<split>[^/]+)/(?P<city>[^/]+)/(?P<name>[^/]+)_gtFine_labelIds\.png$")
_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})$")


def image_key(ref: FrameRef) -> str:
    return f"{IMAGE_DIR}/{ref.split}/{ref.city}/{ref.stem}{IMAGE_SUFFIX}"


def label_key(ref: FrameRef, suffix: str = "labelIds") -> str:
    return f"{LABEL_DIR}/{ref.split}/{ref.city}/{ref.stem}_gtFine_{suffix}.png"


def plan(source: Source, splits: Sequence[str] = ("train", "val"), split: str = "official",
         train_ids: bool = False) -> Preparation:
    """Decide every file of the prepared tree from the files ``source`` holds."""
    labelled, strays = [], []
    for m in source.match(_LABEL):
        if m["split"] not in splits:
            continue
        name = _NAME.match(m["name"])
        if not name or name["city"] != m["city"] or int(name["frame"]) < LABELLED:
            strays.append(m.string)
            continue
        labelled.append(FrameRef(m["split"], m["city"], name["seq"], int(name["frame"])))
    if not labelled:
        where = f"gtFine/{{{','.join(splits)}}}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png"
        raise DatasetError(f"no {where} in {source.describe()}; pass the folder holding {ZIPS[1]} or the "
                           "gtFine/ folder it extracts to")
    if not any(key.startswith(f"{IMAGE_DIR}/") for key in source.keys()):
        raise DatasetError(f"no {IMAGE_DIR}/ files in {source.describe()}; pass also the folder holding "
                           f"{ZIPS[0]} (or the {IMAGE_DIR}/ folder it extracts to)")
    files: list[Planned] = []
    missing, no_image, kept, overlapping = [], [], [], []
    used: set[FrameRef] = set()
    for ref in labelled:
        frames = [FrameRef(ref.split, ref.city, ref.seq, ref.frame - LABELLED + i) for i in range(SNIPPET)]
        absent = [image_key(f) for f in frames if image_key(f) not in source]
        if image_key(ref) in absent:
            no_image.append(image_key(ref))
            continue
        if absent:
            missing += absent
            continue
        if used.intersection(frames):  # partitions are cut from the start of a run: they may not overlap
            overlapping.append(ref.stem)
            continue
        used.update(frames)
        kept.append(ref)
        for frame in frames:
            key = image_key(frame)
            label = partial(_label_bytes, source, label_key(ref)) if frame == ref else None
            files += frame_files(frame, partial(source.read, key), label, source.local_path(key))
        if train_ids:
            files.append(Planned(label_key(ref, "labelTrainIds"), "train-id",
                                 partial(_train_id_bytes, source, label_key(ref))))
    if no_image:
        raise DatasetError(
            f"{len(no_image)} labelled frame(s) have no image in the sequence download, e.g. {no_image[0]} "
            f"(searched {source.describe()}); {ZIPS[0]} is incomplete or from another release — "
            "re-download it (or finish extracting it)"
        )
    if not kept:
        raise DatasetError(f"no complete 30-frame snippet in {source.describe()} ({len(missing)} frame(s) "
                           f"missing, e.g. {missing[:1]}); re-download the sequence")
    city_of = {r.record_id: r.city for r in kept}
    records = sorted(city_of)
    if split == "cv2":
        val = [r for r in records if city_of[r].lower() in CV2_VAL_CITIES]
    else:
        val = sorted({r.record_id for r in kept if r.split == "val"})
    train = [r for r in records if r not in set(val)]
    per_split = {s: sum(r.split == s for r in kept) for s in splits}
    found = ", ".join(f"{s} {sum(r.split == s for r in labelled)}" for s in splits)
    counts: dict[str, Any] = {
        "labelled frames found": f"{len(labelled)} ({found})",
        "snippets": f"{len(kept)} of {SNIPPET} frames, labelled frame index {LABELLED} "
                    f"({', '.join(f'{s} {n}' for s, n in per_split.items())}); "
                    f"{len(labelled) - len(kept)} skipped for missing frames",
        "frames": len(kept) * SNIPPET,
        "records": f"train {len(train)}, val {len(val)} (split: {split}"
                   + (f" — val cities {', '.join(CV2_VAL_CITIES)})" if split == "cv2" else " folders)"),
    }
    notes = [f"{len(strays)} label file(s) not named <city>_<seq>_<frame>_gtFine_labelIds.png (frame ≥ 19) "
             f"in their city folder were ignored, e.g. {strays[0]}"] if strays else []
    if overlapping:
        notes.append(f"{len(overlapping)} snippet(s) overlapping an earlier one were skipped, e.g. the one "
                     f"labelled at {overlapping[0]}")
    if split == "cv2" and not val:
        notes.append(f"--split cv2: none of {', '.join(CV2_VAL_CITIES)} was prepared, so val is empty")
    info = {"partition_length": SNIPPET, "labelled": LABELLED,
            "split_mode": "cv2" if split == "cv2" else "layout", "label_format": "cityscapes",
            "num_classes": 19, "seed": None,
            "options": {"splits": sorted(splits), "split": split}}
    return Preparation("Cityscapes", source.describe(), files, train, val, info, counts, missing, notes)


def _label_bytes(source: Source, key: str) -> bytes:
    data = source.read(key)
    decode_label_ids(data, source.where(key))  # refuse a label with ids that are not Cityscapes'
    return data


def _train_id_bytes(source: Source, key: str) -> bytes:
    return encode_png(LABEL_TO_TRAIN[decode_label_ids(source.read(key), source.where(key))], key)


def build_parser() -> argparse.ArgumentParser:
    p = parser(__doc__.split("\n\n")[0], epilog="example:\n  python data_scripts/prepare_cityscapes.py "
               "--source ~/downloads/cityscapes --out data/cityscapes", link=True)
    p.add_argument("--source", nargs="+", required=True,
                   help=f"folders holding {ZIPS[0]} and {ZIPS[1]} (or what they extract to: "
                        "leftImg8bit_sequence/ and gtFine/), or the zips themselves")
    p.add_argument("--splits", nargs="+", choices=("train", "val"), default=["train", "val"],
                   help="official splits to prepare (test has no labels)")
    p.add_argument("--split", choices=("official", "cv2"), default="official",
                   help="validation records: the official val folder, or the cv2 cities")
    p.add_argument("--train-ids", action="store_true", help="also write *_gtFine_labelTrainIds.png")
    return p


def prepare(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, plan, write and report; raises DatasetError (``main`` prints it)."""
    args = build_parser().parse_args(argv)
    with Source(args.source, anchor=f"{IMAGE_DIR}|{LABEL_DIR}", zips=ZIPS) as source:
        prep = plan(source, args.splits, args.split, args.train_ids)
        return execute_args(prep, args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
