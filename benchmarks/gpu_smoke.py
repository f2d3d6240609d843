"""CUDA smoke test and throughput of the paper-size segmenters (needs one GPU).

    python benchmarks/gpu_smoke.py --out runs/benchmarks [--budget-s 300] [--sweep]

1. Training images/s (forward + backward + SGD, AMP, SyncBatchNorm in a one-process NCCL group)
   of the paper-size models at 512×1024, batch 8: DeepLabV3-ResNeXt-50 first, then OCRNet and
   MSA-HRNet-OCR while the time budget lasts.
2. The training engine end to end on CUDA: ``train_segmenter`` at the ``smoke`` profile (renders
   the smoke world, trains with AMP, checkpoints, evaluates).
3. The same seed twice: the demo's ``g_ψ`` job, shortened to ``--repeat-iters``, trained twice
   from the same seed into two fresh folders, with the largest weight difference and both
   validation mIoUs (CUDA kernels such as the backward of bilinear upsampling add in a
   non-deterministic order, so equal seeds need not give equal bits there).
4. With ``--sweep``: demo-profile ``g_ψ`` runs at several iteration counts, to see how validation
   mIoU grows with training on this world (the CPU recipe is chosen from this).

Prints a table and writes ``gpu_smoke.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from wrp.io import atomic_write_json
from wrp.losses import SegmentationLoss
from wrp.models import build_model
from wrp.train import convert_sync_batchnorm


def throughput(arch: str, height: int, width: int, batch: int, iters: int, amp: bool) -> dict:
    torch.manual_seed(0)
    model = convert_sync_batchnorm(build_model(arch), cuda=True).cuda().train()
    model = model.to(memory_format=torch.channels_last)
    loss_fn = SegmentationLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.randn(batch, 3, height, width, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 19, (batch, height, width), device="cuda")
    times = []
    torch.cuda.reset_peak_memory_stats()
    for i in range(iters + 3):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", enabled=amp):
            out = model(x)
        loss, _ = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return {"arch": arch, "crop": [height, width], "batch": batch, "amp": amp, "sync_bn": True,
            "images_per_s": round(batch / statistics.median(times), 2),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "loss_finite": bool(torch.isfinite(loss).item())}


@contextlib.contextmanager
def fresh_runs_dir() -> Iterator[None]:
    """Stages built inside go to an empty temporary ``WRP_RUNS``, removed afterwards."""
    before = os.environ.get("WRP_RUNS")
    with tempfile.TemporaryDirectory(prefix="wrp-gpu-smoke-") as tmp:
        os.environ["WRP_RUNS"] = tmp
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("WRP_RUNS", None)
            else:
                os.environ["WRP_RUNS"] = before


def table(result: dict) -> str:
    """The run as a plain-text table."""
    lines = [f"{result['gpu']}, torch {result['torch']}", "",
             f"{'training at 512×1024, batch 8, AMP, SyncBN':44} {'images/s':>9} {'peak GiB':>9}"]
    lines += [f"{row['arch']:44} {row['images_per_s']:9.1f} {row['peak_memory_gib']:9.2f}"
              for row in result["throughput"]]
    if result["engine"]:
        e = result["engine"]
        lines += ["", f"engine, smoke profile from an empty cache: {e['seconds']} s, mIoU {e['miou']}"]
    if result["same_seed"]:
        s = result["same_seed"]
        mious = " / ".join(str(r["miou"]) for r in s["runs"])
        lines += [f"same seed twice (demo g_ψ, {s['iters']} iterations): mIoU {mious}, "
                  f"largest weight difference {s['max_weight_diff']:.3g}"]
    lines += [f"sweep {row['arch']} {row['iters']} it × {row['crop']}: mIoU {row['miou']} "
              f"in {row['seconds']} s" for row in result["sweep"]]
    return "\n".join(lines)


def same_seed_twice(iters: int, device: str = "cuda") -> dict:
    """Train the demo's ``g_ψ`` job (``iters`` iterations) twice from one seed on ``device``; compare."""
    from wrp.data import Manifest, human_samples
    from wrp.launch import launch
    from wrp.profiles import Run
    from wrp.stages import manifest_for, segmenter_job
    from wrp.train import evaluate, load_model

    run = Run.create("demo", seed=0, device=device, progress=False)
    manifest = manifest_for(run)
    job = segmenter_job(run, manifest, iters=iters)
    val = human_samples(Manifest.load(manifest).clips("val"))
    runs, weights = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            tic = time.time()
            result = launch(job, Path(tmp) / str(i), progress=False)
            model = load_model(job, Path(tmp) / str(i), device=device)
            runs.append({"seconds": round(time.time() - tic, 1), "images_per_s": result["images_per_s"],
                         "miou": evaluate(model, val, device=device, progress=False)["miou"]})
            weights.append({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    diff = max((a - weights[1][k]).abs().max().item() for k, a in weights[0].items())
    return {"profile": "demo", "arch": "msa_hrnet_ocr", "iters": iters, "runs": runs,
            "max_weight_diff": diff, "identical": diff == 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/benchmarks")
    parser.add_argument("--budget-s", type=float, default=300)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeat-iters", type=int, default=300,
                        help="iterations of each of the two same-seed demo g_ψ runs (0: skip)")
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_smoke.py needs a CUDA device; torch sees none")
    t0 = time.time()
    result: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
                    "throughput": [], "engine": None, "same_seed": None, "sweep": []}
    out_path = Path(args.out) / "gpu_smoke.json"

    def save() -> None:
        atomic_write_json(out_path, result)

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("nccl", rank=0, world_size=1)
    torch.backends.cudnn.benchmark = True
    for arch in ("deeplabv3", "ocrnet", "msa_hrnet_ocr"):
        if time.time() - t0 > args.budget_s * 0.4:
            break
        row = throughput(arch, 512, 1024, 8, args.iters, amp=True)
        print(json.dumps(row), flush=True)
        result["throughput"].append(row)
        save()
        torch.cuda.empty_cache()
    dist.destroy_process_group()
    torch.backends.cudnn.benchmark = False  # the training engine's own setting from here on

    from wrp.profiles import Run
    from wrp.stages import train_segmenter

    tic = time.time()
    with fresh_runs_dir():  # the engine trains here, not a cached stage of an earlier run
        stage = train_segmenter(Run.create("smoke", seed=0, device="cuda", progress=False))
        metrics = json.loads((stage / "metrics.json").read_text())
    result["engine"] = {"profile": "smoke", "seconds": round(time.time() - tic, 1),
                        "miou": metrics["miou"], "images_per_s": metrics["images_per_s"]}
    print(json.dumps(result["engine"]), flush=True)
    save()

    if args.repeat_iters:
        result["same_seed"] = same_seed_twice(args.repeat_iters)
        print(json.dumps(result["same_seed"]), flush=True)
        save()

    if args.sweep:
        runs = (("msa_hrnet_ocr", 3000, [64, 128]), ("deeplabv3", 3000, [64, 128]),
                ("msa_hrnet_ocr", 1500, [128, 256]), ("msa_hrnet_ocr", 6000, [64, 128]))
        for arch, iters, crop in runs:
            if time.time() - t0 > args.budget_s:
                break
            tic = time.time()
            stage = train_segmenter(Run.create("demo", seed=0, device="cuda", progress=False), arch,
                                    iters=iters, crop=crop)
            metrics = json.loads((stage / "metrics.json").read_text())
            row = {"arch": arch, "iters": iters, "crop": crop, "miou": metrics["miou"],
                   "seconds": round(time.time() - tic, 1), "per_class": metrics.get("per_class_iou")}
            print(json.dumps(row), flush=True)
            result["sweep"].append(row)
            save()
    print(table(result))
    print(f"→ {out_path}")


if __name__ == "__main__":
    main()
