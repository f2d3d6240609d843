"""Training throughput of the segmenters on this machine (images/s, forward + backward + SGD step).

    python benchmarks/train_speed.py --profile demo --iters 6 --out runs/benchmarks

Times the small (CPU-profile) variants of the Table 1 architectures at the profile's crop and
batch size on random data, after one warm-up iteration. Prints a table of medians and writes
``train_speed.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from wrp.io import atomic_write_json
from wrp.losses import SegmentationLoss
from wrp.models import SMALL_BACKBONES, build_model
from wrp.profiles import Run

VARIANTS = {
    "deeplabv3": ("deeplabv3", {"output_stride": 16}),
    "ocrnet": ("ocrnet", {"ocr_mid": 128, "ocr_key": 64}),
    "msa_hrnet_ocr (g_ψ of the demo)": ("msa_hrnet_ocr", {"ocr_mid": 128, "ocr_key": 64}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    prof = Run.create(args.profile, device="cpu").profile
    torch.manual_seed(0)
    x = torch.randn(prof.batch_size, 3, prof.height, prof.width)
    y = torch.randint(0, 19, (prof.batch_size, prof.height, prof.width))
    rows = {}
    for name, (arch, kwargs) in VARIANTS.items():
        model = build_model(arch, backbone=SMALL_BACKBONES[arch], **kwargs).train()
        loss_fn = SegmentationLoss()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        times = []
        for i in range(args.iters + 1):
            start = time.perf_counter()
            loss, _ = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:  # the first iteration warms up
                times.append(time.perf_counter() - start)
        rows[name] = prof.batch_size / statistics.median(times)
    print(f"\ntraining images/s at {prof.height}×{prof.width}, batch {prof.batch_size}, "
          f"torch threads {torch.get_num_threads()} (median of {args.iters} iterations)")
    for name, rate in rows.items():
        print(f"{name:<30}{rate:>8.2f}")
    path = atomic_write_json(Path(args.out) / "train_speed.json", {
        "profile": args.profile, "crop": [prof.height, prof.width], "batch": prof.batch_size,
        "torch_threads": torch.get_num_threads(), "images_per_s": {k: round(v, 2) for k, v in rows.items()}})
    print(f"→ {path}")


if __name__ == "__main__":
    main()
