"""Accuracy and speed of propagated labels, per policy and distance, over several seeds.

    python benchmarks/propagation.py --profile demo --seeds 0 1 2 --out runs/benchmarks

For each seed (its own world, split, g_ψ and Ω — cached stages): propagate the validation
partitions with every policy and score every frame against the ground truth (unlabelled pixels
count as wrong). Prints the median over seeds of mIoU and coverage per policy and distance, checks
the headline targets (warp-refine best at every d ≥ 3, within 1 mIoU of the best at d = 1–2, and
≥ 5 mIoU above the best other policy at d = k), then times motion-only and warp-refine
propagation of the first seed's validation partitions afresh, one after the other in this run.
Writes ``propagation.json``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from wrp.data import Manifest
from wrp.io import atomic_write_json
from wrp.policies import POLICIES, propagate_clips, read_accuracy, warp_refine_margin
from wrp.profiles import Run
from wrp.stages import manifest_for, propagate, propagator_for, teacher_segmenter, train_denoiser


def _speed(run: Run) -> dict[str, float]:
    """Frames/s of motion-only and warp-refine, propagated afresh into a temporary folder."""
    propagator = propagator_for(teacher_segmenter(run), train_denoiser(run), device=run.device,
                                inpaint=run.profile.inpaint)
    clips = Manifest.load(manifest_for(run)).clips("val")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for policy in ("motion-only", "warp-refine"):
            result = propagate_clips(clips, policy, tmp, propagator, run.profile.k, progress=False)
            rates[policy] = round(result["frames"] / result["seconds"], 2)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    run = Run.create(args.profile, device=args.device)
    prof = run.profile
    per_seed = {}
    for seed in args.seeds:
        folder = propagate(run.with_seed(seed), "val", POLICIES)
        per_seed[seed] = {(r["policy"], int(r["distance"])): r for r in read_accuracy(folder)}
    k = prof.k
    median = {key: {m: statistics.median(per_seed[s][key][m] for s in args.seeds)
                    for m in ("miou", "coverage")} for key in per_seed[args.seeds[0]]}
    print(f"\nmIoU (%) of propagated labels, median of seeds {args.seeds} ({prof.name} profile, validation)")
    print(f"{'policy':<15}" + "".join(f"{'d=' + str(d):>7}" for d in range(1, k + 1)) + "   coverage@k")
    for policy in POLICIES:
        print(f"{policy:<15}" + "".join(f"{median[policy, d]['miou']:>7.1f}" for d in range(1, k + 1))
              + f"{median[policy, k]['coverage']:>12.1f}")
    margin = warp_refine_margin({key: v["miou"] for key, v in median.items()})
    checks = {
        "best_at_every_d_from_3": all(margin[d] >= 0 for d in range(3, k + 1)),
        "within_1_of_best_at_d_1_2": all(margin[d] >= -1 for d in (1, 2) if d <= k),
        "margin_at_k_at_least_5": margin[k] >= 5,
    }
    print("warp-refine minus the best other policy: "
          + ", ".join(f"d={d}: {m:+.1f}" for d, m in margin.items()))
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'MISS'}  {name}")
    rates = _speed(run.with_seed(args.seeds[0]))
    ratio = rates["warp-refine"] / rates["motion-only"]
    print(f"frames/s at {prof.height}×{prof.width} on {args.device}: motion-only {rates['motion-only']:.1f}, "
          f"warp-refine {rates['warp-refine']:.1f} (ratio {ratio:.2f}; target ≥ 0.3)")
    path = atomic_write_json(Path(args.out) / "propagation.json", {
        "profile": prof.name, "seeds": args.seeds,
        "median": {f"{p}|{d}": v for (p, d), v in median.items()},
        "per_seed": {str(s): {f"{p}|{d}": r["miou"] for (p, d), r in rows.items()}
                     for s, rows in per_seed.items()},
        "margin": margin, "checks": checks, "frames_per_s": rates, "speed_ratio": round(ratio, 3)})
    print(f"→ {path}")


if __name__ == "__main__":
    main()
