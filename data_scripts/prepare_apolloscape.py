#!/usr/bin/env python
"""ApolloScape scene parsing → the wrp layout: 21-frame partitions, centre frame labelled.

Supplementary 3.2 (METHOD.md §8): per Record-ID, the sequentially annotated frames are cut into
partitions of 21 consecutive frames and leftovers are discarded; the centre frame of each
partition is the human-labelled one, the other 20 are to be labelled by propagation (their ground
truth is kept only to evaluate). Train and val are merged and re-split **by Record-ID**, randomly
with ``--seed``, so no partition overlaps validation. On the full dataset the paper reports 2005
labelled + 40100 sequential frames.

Input: the extracted ``road0X_ins`` / ``road0X_seg`` folders (``tar xzf road02_ins.tar.gz``)::

    road02_ins/ColorImage/Record001/Camera 5/170927_063811892_Camera_5.jpg
    road02_ins/Label/Record001/Camera 5/170927_063811892_Camera_5_bin.png    (ApolloScape class ids)

(the ``ColorImage/road02_ins/Record001/…`` order of the release notes is read too). Output::

    <out>/leftImg8bit_sequence/<train|val>/<road>_<level>_cam<N>/<road>_<level>_cam<N>_<record>_<frame>_leftImg8bit.png
    <out>/gtFine/…_gtFine_labelIds.png   (every frame, Cityscapes label ids — see APOLLO_TO_CITYSCAPES)
    <out>/splits/{train,val}.txt, dataset.json, missing.txt

A frame without its label (or image) breaks the run of sequential frames: partitions never span
it. A partition whose labelled frame is all 255 (a test frame: the release ships no test labels)
is skipped. Frame numbers are positions in the record's time order, so the gaps left by discarded
leftovers are visible in the file names.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Any

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
    resize,
    run_main,
)

# ApolloScape scene-parsing classes as its official label definition gives them (class id, name as
# spelled there) → the Cityscapes label id of the same class. Where Cityscapes has no such class the
# pixel goes to a Cityscapes *void* id (ignored in training and evaluation) that describes it:
# static (4) for fixed objects, dynamic (5) for movable ones, bridge / tunnel for structures.
# "_group" classes are regions of several objects of a class annotated as one; they keep the class.
APOLLO_TO_CITYSCAPES = (
    (0, "others", 0),  # unlabeled
    (1, "rover", 1),  # the recording vehicle → ego vehicle
    (17, "sky", 23),
    (33, "car", 26), (161, "car_groups", 26),
    (34, "motorbicycle", 32), (162, "motorbicycle_group", 32),
    (35, "bicycle", 33), (163, "bicycle_group", 33),
    (36, "person", 24), (164, "person_group", 24),
    (37, "rider", 25), (165, "rider_group", 25),
    (38, "truck", 27), (166, "truck_group", 27),
    (39, "bus", 28), (167, "bus_group", 28),
    (40, "tricycle", 5), (168, "tricycle_group", 5),  # no Cityscapes class → dynamic (void)
    (49, "road", 7),
    (50, "siderwalk", 8),  # sic
    (65, "traffic_cone", 5),  # → dynamic (void)
    (66, "road_pile", 4),  # → static (void)
    (67, "fence", 13),
    (81, "traffic_light", 19),
    (82, "pole", 17),
    (83, "traffic_sign", 20),
    (84, "wall", 12),
    (85, "dustbin", 4),  # → static (void)
    (86, "billboard", 4),  # → static (void)
    (97, "building", 11),
    (98, "bridge", 15), (99, "tunnel", 16), (100, "overpass", 15),  # void in Cityscapes too
    (113, "vegatation", 21),  # sic
    (255, "unlabeled", 0),
)
_TABLE = np.full(256, -1, np.int16)
for _apollo, _name, _cityscapes in APOLLO_TO_CITYSCAPES:
    _TABLE[_apollo] = _cityscapes

_FILE = re.compile(
    r"(?:^|/)(?:(?P<road>road\d+)_(?P<level>ins|seg)/(?P<type>ColorImage|Labels?)"
    r"|(?P<type2>ColorImage|Labels?)/(?P<road2>road\d+)_(?P<level2>ins|seg))"
    r"/Record(?P<record>\d+)/Camera (?P<camera>\d+)/(?P<stem>[^/]+?)(?P<ext>\.jpg|_bin\.png)$"
)
PAPER_LABELLED, PAPER_SEQUENTIAL = 2005, 40100


def apollo_to_cityscapes(label: np.ndarray, where: str) -> np.ndarray:
    """(H, W) ApolloScape class ids → Cityscapes label ids; DatasetError naming ``where`` on an unknown id."""
    return map_ids(label, _TABLE, where, "ApolloScape scene-parsing class")


def plan(source: Source, cameras: Sequence[int] = (5,), length: int = 21, val: float = 0.2, seed: int = 0,
         scale: float = 1.0, progress: bool = True) -> Preparation:
    """Partition every record of ``source`` and decide the files of the prepared tree."""
    from tqdm.auto import tqdm

    if length < 3 or length % 2 == 0:
        raise DatasetError(f"--length {length}: partitions need an odd length ≥ 3 (the paper uses 21)")
    # (road, level, record, camera) → stem → {".jpg": key, "_bin.png": key}
    Group = tuple[str, str, str, int]
    groups: dict[Group, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for m in source.match(_FILE):
        kind = m["type"] or m["type2"]
        if (m["ext"] == ".jpg") != (kind == "ColorImage") or int(m["camera"]) not in cameras:
            continue
        group = (m["road"] or m["road2"], m["level"] or m["level2"], m["record"], int(m["camera"]))
        groups[group][m["stem"]][m["ext"]] = m.string
    if not groups:
        cams = "|".join(map(str, cameras))
        raise DatasetError(f"no road0X_ins/ColorImage/RecordNNN/Camera {cams}/*.jpg with Label/…/*_bin.png "
                           f"in {source.describe()}; pass the folders road0X_ins.tar.gz extract to")
    centre = length // 2
    missing: list[str] = []
    partitions = []  # (group, [(frame number, stem), …])
    leftover = 0
    for group, stems in sorted(groups.items()):
        order = sorted(stems)
        run: list[tuple[int, str]] = []
        for number, stem in enumerate([*order, None]):
            pair = stems.get(stem, {}) if stem is not None else {}
            if stem is not None and len(pair) == 2:
                run.append((number, stem))
                continue
            if stem is not None:
                missing.append(_counterpart(next(iter(pair.values()))))
            whole = len(run) // length * length
            partitions += [(group, run[i:i + length]) for i in range(0, whole, length)]
            leftover += len(run) - whole
            run = []
    test, kept = 0, []
    bar = tqdm(partitions, desc="checking labelled frames", unit="partition", disable=not progress)
    for group, frames in bar:
        key = groups[group][frames[centre][1]]["_bin.png"]
        if (decode_image(source.read(key), source.where(key), cv2.IMREAD_UNCHANGED) == 255).all():
            test += 1  # a test frame: its label is all "unlabeled"
        else:
            kept.append((group, frames))
    if not kept:
        raise DatasetError(f"no record in {source.describe()} has {length} consecutive labelled frames "
                           f"({len(partitions)} partition(s), all test frames); pass the train/val roads")
    physical = sorted({f"{road}_{level}/Record{record}" for (road, level, record, _), _ in kept})
    val_groups = draw_val(physical, val, seed)
    files: list[Planned] = []
    records: dict[str, set[str]] = {"train": set(), "val": set()}
    for (road, level, record, camera), frames in kept:
        split = "val" if f"{road}_{level}/Record{record}" in val_groups else "train"
        city = f"{road}_{level}_cam{camera}"
        records[split].add(f"{city}_{int(record):06d}")
        for number, stem in frames:
            pair = groups[(road, level, record, camera)][stem]
            ref = FrameRef(split, city, f"{int(record):06d}", number)
            files += frame_files(ref, partial(_image_bytes, source, pair[".jpg"], scale),
                                 partial(_label_bytes, source, pair["_bin.png"], scale))
    n = len(kept)
    counts: dict[str, Any] = {
        "partitions": f"{n} of {length} frames = {n} labelled + {n * (length - 1)} sequential frames "
                      f"(the paper, full dataset: {PAPER_LABELLED} labelled + {PAPER_SEQUENTIAL} sequential)",
        "records": f"{len(physical)} Record-IDs (cameras {', '.join(map(str, cameras))}): "
                   f"train {len(physical) - len(val_groups)}, val {len(val_groups)} (seed {seed})",
        "leftover frames discarded": leftover,
        "test partitions skipped (labelled frame all 255)": test,
        "frames": n * length,
    }
    info = {"partition_length": length, "labelled": centre, "split_mode": "layout",
            "label_format": "cityscapes", "num_classes": 19, "seed": seed,
            "options": {"cameras": sorted(cameras), "length": length, "val": val, "seed": seed,
                        "scale": scale}}
    return Preparation("ApolloScape", source.describe(), files, sorted(records["train"]),
                       sorted(records["val"]), info, counts, missing)


def _counterpart(key: str) -> str:
    """The file a lone image or label lacks, for the report."""
    if key.endswith(".jpg"):
        label = re.sub(r"(^|/)ColorImage/", r"\1Label/", key)[:-len(".jpg")] + "_bin.png"
        return f"{label} (the label of {key})"
    image = re.sub(r"(^|/)Labels?/", r"\1ColorImage/", key)[:-len("_bin.png")] + ".jpg"
    return f"{image} (the image of {key})"


def _image_bytes(source: Source, key: str, scale: float) -> bytes:
    return encode_png(resize(decode_image(source.read(key), source.where(key)), scale, label=False), key)


def _label_bytes(source: Source, key: str, scale: float) -> bytes:
    where = source.where(key)
    label = decode_image(source.read(key), where, cv2.IMREAD_UNCHANGED)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(f"label {where} has shape {label.shape} and dtype {label.dtype}; expected the "
                           "single-channel *_bin.png of ApolloScape class ids")
    return encode_png(resize(apollo_to_cityscapes(label, where), scale, label=True), key)


def build_parser() -> argparse.ArgumentParser:
    p = parser(__doc__.split("\n\n")[0], epilog="example:\n  python data_scripts/prepare_apolloscape.py "
               "--source ~/downloads/apolloscape --out data/apolloscape --seed 0")
    p.add_argument("--source", nargs="+", required=True,
                   help="folders holding the extracted road0X_ins / road0X_seg folders (or those folders)")
    p.add_argument("--cameras", nargs="+", type=int, default=[5],
                   help="cameras to prepare (5 and/or 6; both cameras of a Record-ID land in the same split)")
    p.add_argument("--length", type=int, default=21, help="partition length, odd (the paper: 21)")
    p.add_argument("--val", type=float, default=0.2, help="validation Record-IDs: a fraction, or a count ≥ 1")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split by Record-ID")
    p.add_argument("--scale", type=float, default=1.0,
                   help="resize frames by this factor (the originals are 3384×2710; e.g. 0.5)")
    return p


def prepare(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, plan, write and report; raises DatasetError (``main`` prints it)."""
    args = build_parser().parse_args(argv)
    if not 0 < args.scale <= 1:
        raise DatasetError(f"--scale {args.scale}: use a factor in (0, 1]")
    with Source(args.source) as source:
        prep = plan(source, args.cameras, args.length, args.val, args.seed, args.scale, not args.no_progress)
        return execute_args(prep, args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
