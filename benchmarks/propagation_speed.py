"""Propagation speed: frames/s of motion-only and warp-refine at a profile's resolution, same run.

    python benchmarks/propagation_speed.py --profile demo --device cpu [--device cuda] --out runs/benchmarks

Propagates the validation partitions of the profile's synthetic world (seed 0) with motion-only
and warp-refine, each into a fresh temporary folder, one after the other, ``--repeats`` times;
prints the median frames/s of each, their ratio, and where warp-refine's time goes (flow, g_ψ,
Ω), then writes ``propagation_speed.json``. ``g_ψ`` and Ω are the trained stages when they exist,
else the same architectures with random weights (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import wrp.policies as policies_module
from wrp.data import Manifest
from wrp.denoiser import Denoiser
from wrp.io import atomic_write_json
from wrp.models import CachedSegmenter, build_model, model_kwargs
from wrp.motion import make_estimator
from wrp.policies import Propagator, propagate_clips
from wrp.profiles import Run
from wrp.stages import manifest_for


class _Timed:
    """Wraps a callable and adds its wall time to ``totals[name]`` (CUDA synchronised)."""

    def __init__(self, fn, name: str, totals: dict[str, float], cuda: bool) -> None:
        self.fn, self.name, self.totals, self.cuda = fn, name, totals, cuda

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        if self.cuda:
            torch.cuda.synchronize()
        self.totals[self.name] = self.totals.get(self.name, 0.0) + time.perf_counter() - start
        return out


def _models(prof, device: str):
    torch.manual_seed(0)
    seg = build_model(**model_kwargs("msa_hrnet_ocr", prof.small_models))
    omega = Denoiser(ngf=prof.denoiser_width, ocr_channels=seg.ocr_channels)
    return seg.to(device).eval(), omega.to(device).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--device", action="append", default=None, help="cpu, cuda (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    run = Run.create(args.profile, seed=0, device="cpu")
    prof = run.profile
    clips = Manifest.load(manifest_for(run)).clips("val")
    results = {}
    for device in args.device or ["cpu"]:
        cuda = device.startswith("cuda")
        seg, omega = _models(prof, device)
        propagator = Propagator(make_estimator("dis"), CachedSegmenter(seg, device), omega, device)
        totals: dict[str, float] = {}
        propagator.estimator.between = _Timed(propagator.estimator.between, "flow (DIS)", totals, False)
        propagator.segmenter.outputs = _Timed(propagator.segmenter.outputs, "g_ψ forward", totals, cuda)
        original_refine = policies_module.refine
        policies_module.refine = _Timed(original_refine, "Ω forward", totals, cuda)  # warp_refine calls it
        rates: dict[str, list[float]] = {"motion-only": [], "warp-refine": []}
        frames = {}
        for _ in range(args.repeats):
            for policy in rates:
                with tempfile.TemporaryDirectory() as tmp:
                    if policy == "warp-refine":
                        totals.clear()
                    result = propagate_clips(clips, policy, tmp, propagator, prof.k, args.batch,
                                             progress=False)
                    rates[policy].append(result["frames"] / result["seconds"])
                    frames[policy] = (result["frames"], result["seconds"])
        policies_module.refine = original_refine
        median = {p: statistics.median(v) for p, v in rates.items()}
        n, seconds = frames["warp-refine"]
        share = {k: round(100 * v / seconds, 1) for k, v in totals.items()}
        results[device] = {"frames_per_s": {p: round(v, 2) for p, v in median.items()},
                           "ratio": round(median["warp-refine"] / median["motion-only"], 3),
                           "warp_refine_time_share_pct": share, "frames": n,
                           "gpu": torch.cuda.get_device_name(0) if cuda else None}
    print(f"\npropagation frames/s at {prof.height}×{prof.width}, {len(clips)} partitions ±{prof.k}, "
          f"batch {args.batch}, median of {args.repeats}")
    print(f"{'device':<8}{'motion-only':>13}{'warp-refine':>13}{'ratio':>8}"
          "   warp-refine time: flow / g_ψ / Ω")
    for device, r in results.items():
        s = r["warp_refine_time_share_pct"]
        print(f"{device:<8}{r['frames_per_s']['motion-only']:>13.1f}{r['frames_per_s']['warp-refine']:>13.1f}"
              f"{r['ratio']:>8.2f}   {s.get('flow (DIS)', 0):.0f} % / {s.get('g_ψ forward', 0):.0f} % / "
              f"{s.get('Ω forward', 0):.0f} %")
    path = atomic_write_json(Path(args.out) / "propagation_speed.json", {
        "profile": prof.name, "torch_threads": torch.get_num_threads(), "results": results})
    print(f"→ {path}")


if __name__ == "__main__":
    main()
