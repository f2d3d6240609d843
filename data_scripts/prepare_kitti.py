#!/usr/bin/env python
"""KITTI semantics → the wrp layout: each labelled frame with its neighbouring video frames.

KITTI's semantic segmentation benchmark labels 200 training frames (``data_semantics``:
``training/image_2/<scene>_10.png`` and ``training/semantic/<scene>_10.png``, already in
Cityscapes label ids). They are the frames 10 of the KITTI 2015 stereo / flow scenes, whose
multi-view extension (``data_scene_flow_multiview``) holds each scene's frames ``_00`` … ``_20``.
This script joins the two: one record per scene, frames ``10-r`` … ``10+r`` (``--radius r``,
default 10 → 21 frames), frame 10 labelled::

    <out>/leftImg8bit_sequence/<train|val>/kitti/kitti_<scene>_<frame>_leftImg8bit.png   (frame = KITTI's _NN)
    <out>/gtFine/<train|val>/kitti/kitti_<scene>_000010_gtFine_labelIds.png
    <out>/splits/{train,val}.txt, dataset.json, missing.txt

The labelled frame's image comes from ``data_semantics`` (the image the label was drawn on), its
neighbours from the multi-view extension; a scene with a missing neighbour is skipped and listed.
KITTI has no official validation split: scenes are split randomly (``--val``, ``--seed``). Pass
each download as its zip or its own extracted folder (the two share file names, so do not
extract them into one folder).
"""

from __future__ import annotations

import argparse
import re
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
    decode_label_ids,
    draw_val,
    execute_args,
    frame_files,
    parser,
    run_main,
)

SEMANTICS_ZIP, MULTIVIEW_ZIP = "data_semantics.zip", "data_scene_flow_multiview.zip"
LABELLED_FRAME = 10  # KITTI 2015: frames _00 … _20 of each scene; _10 is the benchmark frame
CITY = "kitti"
_LABEL = re.compile(r"^training/semantic/(?P<scene>\d{6})_10\.png$")


def plan(semantics: Source, multiview: Source, radius: int = 10, val: float = 0.2,
         seed: int = 0) -> Preparation:
    """Pair every labelled frame with its multi-view neighbours and decide the prepared tree's files."""
    if not 1 <= radius <= LABELLED_FRAME:
        raise DatasetError(f"--radius {radius}: KITTI scenes hold frames 00..20, so use 1..10")
    scenes = [m["scene"] for m in semantics.match(_LABEL)]
    if not scenes:
        raise DatasetError(f"no training/semantic/<scene>_10.png in {semantics.describe()}; pass "
                           f"{SEMANTICS_ZIP} or the folder it extracts to (holding training/)")
    if not any(k.startswith("training/image_2/") for k in multiview.keys()):
        raise DatasetError(f"no training/image_2/ frames in {multiview.describe()}; pass {MULTIVIEW_ZIP} "
                           "or the folder it extracts to")
    missing, no_image, kept, differ = [], [], [], []
    numbers = range(LABELLED_FRAME - radius, LABELLED_FRAME + radius + 1)
    for scene in scenes:
        centre = f"training/image_2/{scene}_10.png"
        if centre not in semantics:
            no_image.append(centre)
            continue
        absent = [f"training/image_2/{scene}_{n:02d}.png" for n in numbers
                  if n != LABELLED_FRAME and f"training/image_2/{scene}_{n:02d}.png" not in multiview]
        if absent:
            missing += [f"{key} (multi-view extension)" for key in absent]
            continue
        kept.append(scene)
        if centre in multiview and not np.array_equal(
                decode_image(semantics.read(centre), semantics.where(centre), cv2.IMREAD_UNCHANGED),
                decode_image(multiview.read(centre), multiview.where(centre), cv2.IMREAD_UNCHANGED)):
            differ.append(scene)
    if no_image:
        raise DatasetError(f"{len(no_image)} labelled frame(s) have no image, e.g. {no_image[0]} (searched "
                           f"{semantics.describe()}); {SEMANTICS_ZIP} is incomplete — re-download it")
    if not kept:
        raise DatasetError(f"no scene has all of frames {numbers[0]:02d}..{numbers[-1]:02d} in "
                           f"{multiview.describe()} ({len(missing)} missing); re-download {MULTIVIEW_ZIP}")
    val_scenes = draw_val(kept, val, seed)
    files: list[Planned] = []
    for scene in kept:
        split = "val" if scene in val_scenes else "train"
        for n in numbers:
            ref = FrameRef(split, CITY, scene, n)
            source = semantics if n == LABELLED_FRAME else multiview
            key = f"training/image_2/{scene}_{n:02d}.png"
            label = (partial(_label_bytes, semantics, f"training/semantic/{scene}_10.png")
                     if n == LABELLED_FRAME else None)
            files += frame_files(ref, partial(source.read, key), label, source.local_path(key))
    counts: dict[str, Any] = {
        "labelled frames found": len(scenes),
        "records": f"{len(kept)} scenes of {len(numbers)} frames (_{numbers[0]:02d} … _{numbers[-1]:02d}, "
                   f"_10 labelled): train {len(kept) - len(val_scenes)}, val {len(val_scenes)} "
                   f"(seed {seed}); {len(scenes) - len(kept)} skipped for missing frames",
        "frames": len(kept) * len(numbers),
    }
    notes = [f"the multi-view frame _10 differs from the labelled image in {len(differ)} scene(s), e.g. "
             f"{differ[0]}: check that both downloads are KITTI 2015"] if differ else []
    train = sorted(f"{CITY}_{s}" for s in kept if s not in val_scenes)
    info = {"partition_length": len(numbers), "labelled": radius, "split_mode": "layout",
            "label_format": "cityscapes", "num_classes": 19, "seed": seed,
            "options": {"radius": radius, "val": val, "seed": seed}}
    return Preparation("KITTI", f"{semantics.describe()} + {multiview.describe()}", files, train,
                       sorted(f"{CITY}_{s}" for s in val_scenes), info, counts, missing, notes)


def _label_bytes(source: Source, key: str) -> bytes:
    data = source.read(key)
    decode_label_ids(data, source.where(key))  # KITTI semantics uses Cityscapes label ids: check them
    return data


def build_parser() -> argparse.ArgumentParser:
    p = parser(__doc__.split("\n\n")[0], link=True,
               epilog="example:\n  python data_scripts/prepare_kitti.py --semantics "
                      f"~/downloads/{SEMANTICS_ZIP} --multiview ~/downloads/{MULTIVIEW_ZIP} --out data/kitti")
    p.add_argument("--semantics", nargs="+", required=True,
                   help=f"{SEMANTICS_ZIP}, or the folder it extracts to (holding training/)")
    p.add_argument("--multiview", nargs="+", required=True,
                   help=f"{MULTIVIEW_ZIP}, or the folder it extracts to (holding training/)")
    p.add_argument("--radius", type=int, default=10, help="frames on each side of frame 10 (1..10)")
    p.add_argument("--val", type=float, default=0.2, help="validation scenes: a fraction, or a count ≥ 1")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split by scene")
    return p


def prepare(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, plan, write and report; raises DatasetError (``main`` prints it)."""
    args = build_parser().parse_args(argv)
    with Source(args.semantics, anchor="training|testing", zips=(SEMANTICS_ZIP,)) as semantics, \
            Source(args.multiview, anchor="training|testing", zips=(MULTIVIEW_ZIP,)) as multiview:
        prep = plan(semantics, multiview, args.radius, args.val, args.seed)
        return execute_args(prep, args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
