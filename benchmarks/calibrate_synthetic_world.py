"""Calibration of the synthetic world: how hard is label propagation in it?

Carries the human label of every validation partition's centre frame to distance d = 1..k (both
directions) by (a) copying it, (b) warping along the world's true flow, chained frame by frame,
(c) warping along OpenCV DIS flow, chained — and scores mIoU against the exact ground truth
(pixels without a label count as wrong; chained warps copy the image border, so every pixel has
one). The world is right when (c) is high at d = 1 and falls clearly by d = 10, and (a) is
clearly below (c) at d = 1–3.

    python benchmarks/calibrate_synthetic_world.py --profile demo --seed 0 --out runs/benchmarks

Prints a table and writes ``calibrate_synthetic_world.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from wrp.data import Manifest
from wrp.io import atomic_write_json
from wrp.metrics import confusion_matrix, mean_iou
from wrp.motion import DISFlow, warp
from wrp.profiles import Run
from wrp.stages import manifest_for, world_for

METHODS = ("copy", "true flow", "DIS flow")


def calibrate(manifest: Manifest, k: int, preset: str = "medium") -> dict[str, dict[int, float]]:
    dis = DISFlow(preset)
    truth = manifest.ground_truth("val")
    conf = {(m, d): 0 for m in METHODS for d in range(1, k + 1)}
    for clip in tqdm(manifest.clips("val"), desc="validation partitions"):
        centre = clip.labelled
        human = clip.label(centre)
        images = [clip.image(i) for i in range(len(clip))]
        for step in (1, -1):  # forward in time, then backward
            carried = {m: human.copy() for m in METHODS}
            for d in range(1, k + 1):
                pos = centre + step * d
                if not 0 <= pos < len(clip):
                    break
                direction = "backward" if step == 1 else "forward"  # flow of pos towards pos - step
                true, _ = clip.true_flow(pos, direction)
                est = dis(images[pos], images[pos - step])
                carried["true flow"] = warp(carried["true flow"], true, mode="nearest")[0].numpy()
                carried["DIS flow"] = warp(carried["DIS flow"], est, mode="nearest")[0].numpy()
                gt = truth.label(clip.clip_id, pos)
                for m in METHODS:
                    conf[(m, d)] = conf[(m, d)] + confusion_matrix(carried[m], gt)
    return {m: {d: round(mean_iou(conf[(m, d)]), 2) for d in range(1, k + 1)} for m in METHODS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="medium", help="DIS preset")
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    run = Run.create(args.profile, seed=args.seed, device="cpu")
    started = time.time()
    root = world_for(run)
    world_seconds = time.time() - started
    manifest = Manifest.load(manifest_for(run))
    scores = calibrate(manifest, run.profile.k, args.preset)
    distances = [d for d in (1, 2, 3, 5, 10) if d <= run.profile.k]
    print(f"\nmIoU (%) of the centre label carried to distance d — {args.profile} world, seed {args.seed}, "
          f"{len(manifest.val)} validation partitions, both directions")
    print(f"{'method':<12}" + "".join(f"{'d=' + str(d):>9}" for d in distances))
    for m in METHODS:
        print(f"{m:<12}" + "".join(f"{scores[m][d]:>9.1f}" for d in distances))
    path = atomic_write_json(Path(args.out) / "calibrate_synthetic_world.json", {
        "profile": args.profile, "seed": args.seed, "dis_preset": args.preset,
        "val_partitions": len(manifest.val), "miou": scores, "world": str(root),
        "world_seconds": round(world_seconds, 1), "seconds": round(time.time() - started, 1),
    })
    print(f"→ {path}")


if __name__ == "__main__":
    np.set_printoptions(precision=2)
    main()
