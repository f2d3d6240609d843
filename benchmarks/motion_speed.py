"""Speed of the geometric step: warping a full-resolution label, and DIS flow per frame.

    python benchmarks/motion_speed.py --repeats 15 --out runs/benchmarks

- warp: one 1024×2048 Cityscapes-size label (uint8 ids, nearest) and one RGB image (bilinear)
  through ``wrp.motion.warp`` with a given flow, on this CPU (torch threads as set);
- DIS: ``wrp.motion.DISFlow`` per frame pair at 512×1024 for each preset, on two consecutive
  frames of the synthetic world rendered at that size.

Prints a table of medians and writes ``motion_speed.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from wrp.io import atomic_write_json
from wrp.motion import DIS_PRESETS, DISFlow, warp
from wrp.synthetic import SynthConfig, build_scene, render


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    H, W = 1024, 2048
    label = rng.integers(0, 19, (H, W)).astype(np.uint8)
    image = rng.random((3, H, W)).astype(np.float32)
    flow = (rng.normal(0, 3, (H, W, 2))).astype(np.float32)
    label_t, image_t, flow_t = torch.from_numpy(label), torch.from_numpy(image), torch.from_numpy(flow)
    rows = {
        "warp label 1024×2048 (nearest)": timed(lambda: warp(label_t, flow_t, mode="nearest"), args.repeats),
        "warp image 1024×2048×3 (bilinear)": timed(lambda: warp(image_t, flow_t), args.repeats),
    }
    config = SynthConfig(height=512, width=1024, records=1, frames_per_record=3, seed=0)
    scene = build_scene(config, 0)
    frames = [np.clip(render(config, scene, t).image, 0, 255).astype(np.uint8) for t in (0.0, 1.0)]
    for preset in DIS_PRESETS:
        dis = DISFlow(preset)
        rows[f"DIS {preset} 512×1024"] = timed(lambda dis=dis: dis(frames[1], frames[0]), args.repeats)
    print(f"\nmedian of {args.repeats} runs, torch threads {torch.get_num_threads()}")
    print(f"{'operation':<36}{'median ms':>11}{'min ms':>9}")
    for name, times in rows.items():
        print(f"{name:<36}{statistics.median(times):>11.1f}{min(times):>9.1f}")
    path = atomic_write_json(Path(args.out) / "motion_speed.json", {
        "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "median_ms": {k: round(statistics.median(v), 2) for k, v in rows.items()},
        "min_ms": {k: round(min(v), 2) for k, v in rows.items()},
    })
    print(f"→ {path}")


if __name__ == "__main__":
    main()
