"""Propagation speed: frames/s per policy and per stage of the labelling pipeline, in one run.

    python benchmarks/propagation_speed.py --profile demo --device cpu --workers 0 1 --out runs/benchmarks
    python benchmarks/propagation_speed.py --profile paper --size 1024x2048 --device cuda --workers 0 8

Labels the validation partitions of the profile's synthetic world (seed 0; ``--size`` renders a
one-record world at that size instead) with each ``--policy``, for each ``--device`` and each
number of ``--workers`` (``wrp.pipeline``: threads that read frames and estimate flow ahead of the
device; 0 = everything in one thread), each into a fresh temporary folder, ``--repeats`` times.
``g_ψ`` and Ω are the profile's architectures (paper: HRNet-W48 OCR and a 64-channel Ω) with
random weights: speed does not depend on the weights.

For the run of median wall time it prints, per frame, the milliseconds of each stage — decode,
flow (DIS), warp, ``g_ψ``, Ω, write (CUDA synchronised around each, so GPU stages are timed, not
queued) — and the pipeline's overhead:

- one thread (``workers`` 0): the wall time beyond the sum of the stages (the loop's own work);
- a pipeline: the wall time beyond its slowest lane — the device thread (warp, ``g_ψ``, Ω), the
  worker threads (decode and flow, shared by the workers) or the writer — and which lane it is.

Writes ``propagation_speed.json`` beside the table (``--out``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from wrp.data import Manifest
from wrp.denoiser import Denoiser
from wrp.io import atomic_write_json
from wrp.models import CachedSegmenter, build_model, model_kwargs
from wrp.motion import make_estimator
from wrp.pipeline import STAGES, StageClock
from wrp.policies import Propagator, propagate_clips
from wrp.profiles import Run, get_profile
from wrp.stages import manifest_for

LANES = {"device": ("warp", "g_ψ", "Ω"), "workers": ("decode", "flow"), "writer": ("write",)}


def _models(prof, device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    seg = build_model(**model_kwargs("msa_hrnet_ocr", prof.small_models))
    omega = Denoiser(ngf=prof.denoiser_width, ocr_channels=seg.ocr_channels)
    return seg.to(device).eval(), omega.to(device).eval()


def overhead(result: dict[str, Any], workers: int) -> dict[str, Any]:
    """The pipeline's overhead over its kernels (see the module's docstring)."""
    stages = result["stages"]
    kernels = sum(stages.get(s, 0.0) for s in STAGES)
    wall = result["seconds"]
    if workers == 0:
        return {"kernels_s": round(kernels, 3), "bound": "one thread", "bound_s": round(kernels, 3),
                "overhead_pct": round(100 * (wall - kernels) / kernels, 1)}
    lanes = {lane: sum(stages.get(s, 0.0) for s in names) for lane, names in LANES.items()}
    lanes["workers"] /= workers
    bound = max(lanes, key=lanes.get)
    return {"kernels_s": round(kernels, 3), "lanes_s": {k: round(v, 3) for k, v in lanes.items()},
            "bound": bound, "bound_s": round(lanes[bound], 3),
            "overhead_pct": round(100 * (wall - lanes[bound]) / lanes[bound], 1)}


def measure(clips, prof, device: str, policies: list[str], workers: list[int], repeats: int,
            batch: int) -> dict[str, Any]:
    seg, omega = _models(prof, device)
    propagator = Propagator(make_estimator("dis"), CachedSegmenter(seg, device), omega, device)
    out: dict[str, Any] = {}
    for w in workers:
        out[str(w)] = {}
        for policy in policies:
            runs = []
            for _ in range(repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    clock = StageClock(sync=device.startswith("cuda"))
                    runs.append(propagate_clips(clips, policy, tmp, propagator, prof.k, batch, progress=False,
                                                workers=w, clock=clock))
            median = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            n = median["frames"]
            out[str(w)][policy] = {
                "frames": n,
                "frames_per_s": round(statistics.median(r["frames"] / r["seconds"] for r in runs), 2),
                "seconds": median["seconds"],
                "ms_per_frame": {s: round(1000 * v / n, 2) for s, v in median["stages"].items()},
                **overhead(median, w)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--size", default=None, metavar="HxW",
                        help="render a one-record world of this size instead of the profile's world")
    parser.add_argument("--device", action="append", default=None, help="cpu, cuda (repeatable)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--policy", action="append", default=None,
                        help="default: motion-only and warp-refine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    overrides: dict[str, Any] = {}
    if args.size:
        height, width = (int(v) for v in args.size.lower().split("x"))
        overrides = {"dataset": "synthetic", "height": height, "width": width, "train_records": 1,
                     "val_records": 1, "partitions_per_record": 1}
    tic = time.perf_counter()
    run = Run.create(get_profile(args.profile, **overrides), seed=0, device="cpu")
    prof = run.profile
    clips = Manifest.load(manifest_for(run)).clips("val")
    print(f"world ready in {time.perf_counter() - tic:.0f} s")
    policies = args.policy or ["motion-only", "warp-refine"]
    results = {}
    for device in args.device or ["cpu"]:
        results[device] = {"gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
                           "workers": measure(clips, prof, device, policies, args.workers, args.repeats,
                                              args.batch)}
    models = "small" if prof.small_models else "paper-size"
    print(f"\npropagation at {prof.height}×{prof.width}, {len(clips)} partitions ±{prof.k}, "
          f"batch {args.batch}, {models} models, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats}; ms per frame per stage")
    head = "".join(f"{s:>8}" for s in STAGES)
    print(f"{'device':<7}{'workers':>8}  {'policy':<12}{'frames/s':>9}{head}{'overhead':>10}  bound")
    for device, result in results.items():
        for w, per_policy in result["workers"].items():
            for policy, r in per_policy.items():
                ms = "".join(f"{r['ms_per_frame'].get(s, 0.0):>8.2f}" for s in STAGES)
                print(f"{device:<7}{w:>8}  {policy:<12}{r['frames_per_s']:>9.1f}{ms}"
                      f"{r['overhead_pct']:>9.1f}%  {r['bound']}")
            if {"motion-only", "warp-refine"} <= per_policy.keys():
                ratio = per_policy["warp-refine"]["frames_per_s"] / per_policy["motion-only"]["frames_per_s"]
                result.setdefault("warp_refine_over_motion_only", {})[w] = round(ratio, 3)
                print(f"{'':<15}  warp-refine / motion-only frames/s: {ratio:.2f}")
    path = atomic_write_json(Path(args.out) / "propagation_speed.json", {
        "profile": prof.name, "size": [prof.height, prof.width], "partitions": len(clips), "k": prof.k,
        "batch": args.batch, "small_models": prof.small_models, "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats, "results": results})
    print(f"→ {path}")


if __name__ == "__main__":
    main()
