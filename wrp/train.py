"""One training engine for every model of the paper: the baseline segmenter g_ψ, the Table 1
architectures, the denoiser Ω_λ and every table row (supplementary 3.1).

- SGD (momentum 0.9, weight decay 1e-4) with a polynomial learning rate updated every iteration;
- a fixed number of iterations over a fixed epoch size (every compared run trains as long);
- DistributedDataParallel with SyncBatchNorm when launched by ``torchrun`` (gloo on CPU, nccl on
  CUDA); automatic mixed precision on CUDA;
- checkpoints written atomically; a run killed at any moment resumes exactly where its last
  checkpoint left it — iteration, learning rate, optimizer, data order and random numbers are all
  functions of (seed, iteration), so the resumed run ends with the same weights;
- a progress bar (loss, learning rate, ETA) and a metrics log ``log.csv``.

What is trained is described by a :class:`Job` of registered builders (a stable name of
:data:`BUILDERS` plus keyword arguments), so the same job runs in a notebook, on the command line
and in every ``torchrun`` worker — workers cannot unpickle functions defined in a notebook.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from wrp.cache import ADDED_LATER, canonical_config
from wrp.data import label_set as label_set_of
from wrp.data import read_image, read_label
from wrp.io import atomic_save, atomic_write_json, atomic_write_text
from wrp.metrics import confusion_matrix, iou, mean_iou
from wrp.models import segment
from wrp.runtime import progress_bar, resolve_device

CHECKPOINT, FINAL, SNAPSHOTS = "checkpoint.pt", "model.pt", "snapshots"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (supplementary 3.1); ``batch_size`` is the global batch."""

    iters: int
    batch_size: int = 8
    base_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    seed: int = 0
    amp: bool = True  # only on CUDA
    sync_bn: bool = True
    checkpoint_every: int = 50
    log_every: int = 10
    num_workers: int = 0
    device: str = "auto"  # "auto" is resolved on creation, so it and the device it names are one key
    # NHWC layout for the model and its 4-D inputs: faster convolutions with oneDNN on CPUs and
    # with tensor cores under AMP on GPUs (same model, same maths up to float rounding)
    channels_last: bool = True
    # keep the weights of every ``snapshot_every``-th iteration as ``snapshots/<iteration>.pt``
    # (and of the last), for choosing among them afterwards (Ω: ``wrp.denoiser.select_refinement``)
    snapshot_every: int | None = field(default=None, metadata=ADDED_LATER)
    # the weights (a ``model.pt`` of the same model) training starts from instead of a random
    # initialisation: a segmenter pretrained on other data, as the paper's start from ImageNet
    init: str | None = field(default=None, metadata=ADDED_LATER)

    def __post_init__(self) -> None:
        if self.device == "auto":  # a stage's key must not depend on how its device was spelled
            object.__setattr__(self, "device", resolve_device("auto"))
        if (self.iters < 1 or self.batch_size < 1 or self.base_lr <= 0 or self.checkpoint_every < 1
                or (self.snapshot_every is not None and self.snapshot_every < 1)):
            raise ValueError(f"TrainConfig: iters, batch_size, checkpoint_every, snapshot_every must be "
                             f"≥ 1 and "
                             f"base_lr > 0, got {self}")


#: The factories a job may name, by a stable name: a job (and so a stage's cache key) records the
#: name, never where the function lives, so moving a function only changes this table — and a
#: ``job.json`` can name nothing but these (:func:`register_builder` adds more in-process).
BUILDERS: dict[str, str] = {
    "segmentation-model": "wrp.models:build_model",
    "segmentation-data": "wrp.stages:segmentation_dataset",
    "segmentation-loss": "wrp.losses:SegmentationLoss",
    "denoiser-model": "wrp.denoiser:build_denoiser",
    "denoiser-data": "wrp.denoiser:cyclic_dataset",
}


def register_builder(name: str, target: str) -> None:
    """Let jobs name ``target`` (``"package.module:function"``) as ``name`` in this process and
    in the ``torchrun`` workers :func:`wrp.launch.launch` starts from it."""
    module, sep, function = target.partition(":")
    if not (module and sep and function):
        raise ValueError(f"builder target {target!r} must read 'package.module:function'")
    if BUILDERS.get(name, target) != target:
        raise ValueError(f"builder {name!r} is already registered as {BUILDERS[name]!r}")
    BUILDERS[name] = target


@dataclass(frozen=True)
class Builder:
    """A registered factory (a name of :data:`BUILDERS`) and its keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        if self.name not in BUILDERS:
            raise ValueError(f"unknown builder {self.name!r}; a job may name only registered builders: "
                             f"{', '.join(sorted(BUILDERS))} (wrp.train.register_builder adds one)")
        module, _, function = BUILDERS[self.name].partition(":")
        return getattr(importlib.import_module(module), function)(**self.kwargs)


@dataclass(frozen=True)
class Job:
    """Everything one training run needs, serialisable to JSON for ``torchrun`` workers."""

    model: Builder
    data: Builder  # returns a torch Dataset of (image, label); ``set_epoch(e)`` is called if present
    loss: Builder  # returns nn.Module: loss(outputs, target) → (total, {name: float})
    train: TrainConfig

    def to_json(self) -> dict[str, Any]:
        return canonical_config(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(Builder(**data["model"]), Builder(**data["data"]), Builder(**data["loss"]),
                   TrainConfig(**data["train"]))


def poly_lr(base_lr: float, iteration: int, iters: int, power: float = 0.9) -> float:
    """``lr · (1 − it / max_it)^power``, the polynomial schedule of the paper."""
    return base_lr * (1 - iteration / iters) ** power


def global_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a seeded permutation cut into full batches."""
    if n < batch_size:
        raise ValueError(f"the dataset has {n} samples, fewer than one batch of {batch_size}")
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    return [perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """Synchronised batch norm for gloo on CPU (torch's ``SyncBatchNorm`` needs CUDA): batch
    statistics are summed over every process with an autograd-aware all-reduce, so N processes
    normalise exactly as one process over the global batch would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        channels = x.shape[1]
        count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        total = stats[-1]
        mean = stats[:channels] / total
        var = stats[channels:2 * channels] / total - mean * mean  # biased, as BN normalises
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * total / (total - 1))
                self.num_batches_tracked += 1
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def convert_sync_batchnorm(module: nn.Module, cuda: bool) -> nn.Module:
    """Every BatchNorm2d → ``nn.SyncBatchNorm`` (CUDA) or :class:`CPUSyncBatchNorm` (gloo, CPU)."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CPUSyncBatchNorm):
        sync = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        sync.load_state_dict(module.state_dict())
        return sync
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, cuda))
    return module


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _layout(tensor: Tensor, channels_last: bool) -> Tensor:
    """A 4-D batch in NHWC memory when ``channels_last`` (other tensors as they are)."""
    if channels_last and tensor.dim() == 4:
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def _place(model: nn.Module, device: str, channels_last: bool) -> nn.Module:
    """``model`` on ``device``, its 4-D weights in NHWC memory when ``channels_last``."""
    model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _initialise(model: nn.Module, path: str) -> list[str]:
    """Load the start weights ``path`` (a ``model.pt``) into ``model``, or an error naming the
    file: it must exist and hold this very model's weights — but for its classifiers, which may
    have been trained on another label set (another number of classes: a model pretrained on the
    Cityscapes categories starting a 19-class one, as ImageNet weights start the paper's models).
    Those keep their random initialisation; returns their names."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"the start weights {path} do not exist; train the model they come "
                                "from first (or leave init unset for random weights)")
    state, own = load_state(path), model.state_dict()
    classes = getattr(model, "num_classes", None)
    fresh = [name for name, value in state.items() if name in own and own[name].shape != value.shape
             and own[name].shape[0] == classes and own[name].shape[1:] == value.shape[1:]]
    state = {name: value for name, value in state.items() if name not in fresh}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) != set(fresh):
            raise RuntimeError(f"missing {sorted(set(missing) - set(fresh))[:5]}, "
                               f"unexpected {unexpected[:5]}")
        return fresh
    except RuntimeError as exc:
        raise ValueError(f"the start weights {path} are not weights of this model ({str(exc)[:300]}); "
                         "pretrain the same architecture and backbone") from exc


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class _Batches:
    """This rank's share of the global batches, from iteration ``start`` on (exact resume)."""

    def __init__(self, dataset, cfg: TrainConfig, start: int, rank: int, world: int) -> None:
        if cfg.batch_size % world:
            raise ValueError(f"global batch {cfg.batch_size} must divide over {world} processes")
        self.dataset, self.cfg, self.start, self.rank, self.world = dataset, cfg, start, rank, world
        self.per_epoch = len(global_batches(len(dataset), cfg.batch_size, cfg.seed, 0))

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        it = self.start
        while it < self.cfg.iters:
            epoch, offset = divmod(it, self.per_epoch)
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            batches = global_batches(len(self.dataset), self.cfg.batch_size, self.cfg.seed, epoch)
            mine = [b[self.rank::self.world] for b in batches[offset:]]
            loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=mine,
                                                 num_workers=self.cfg.num_workers)
            for batch in loader:
                yield it, batch
                it += 1
                if it >= self.cfg.iters:
                    return


def train(job: Job, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) ``job`` in ``out_dir``; in every process when launched by ``torchrun``."""

    out = Path(out_dir)
    cfg = job.train
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = resolve_device(cfg.device)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank, world = _rank_world()
    if device.startswith("cuda") and distributed:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        atomic_write_json(out / "job.json", job.to_json())

    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    model = job.model.build()
    if cfg.init:
        _initialise(model, cfg.init)
    if distributed and cfg.sync_bn:
        model = convert_sync_batchnorm(model, cuda=device.startswith("cuda"))
    _place(model, device, cfg.channels_last)
    criterion = job.loss.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.base_lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, log = 0, []
    if (out / CHECKPOINT).is_file():
        state = load_state(out / CHECKPOINT, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start, log = state["iteration"], state["log"]
    if distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    dataset = job.data.build()
    batches = _Batches(dataset, cfg, start, rank, world)

    def save(iteration: int, final: bool = False) -> None:
        if rank != 0:
            return
        # the weights of this iteration first, the checkpoint that moves past it last: a kill in
        # between resumes at this iteration again and writes them again
        snapshot = cfg.snapshot_every and (iteration % cfg.snapshot_every == 0 or final)
        if final or snapshot:
            weights = {k: v.contiguous() for k, v in _unwrap(model).state_dict().items()}  # NCHW
            if snapshot:
                atomic_save(out / SNAPSHOTS / f"{iteration:07d}.pt", lambda f: torch.save(weights, f))
            if final:
                atomic_save(out / FINAL, lambda f: torch.save(weights, f))
        state = {"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": scaler.state_dict(), "iteration": iteration, "log": log}
        atomic_save(out / CHECKPOINT, lambda f: torch.save(state, f))
        _write_log(out / "log.csv", log)

    bar = progress_bar(total=cfg.iters, initial=start, desc="train", disable=not progress or rank != 0,
               dynamic_ncols=True)
    model.train()
    tic, seen = time.time(), 0
    for it, (images, target) in batches:
        torch.manual_seed(cfg.seed * 1_000_003 + it * 101 + rank)  # dropout etc.: f(seed, it, rank)
        lr = poly_lr(cfg.base_lr, it, cfg.iters, cfg.poly_power)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # a sample's input is one tensor or a tuple of them (Ω: packed inputs, cached OCR features)
        inputs = tuple(_layout(t.to(device, non_blocking=True), cfg.channels_last)
                       for t in (images if isinstance(images, (tuple, list)) else (images,)))
        target = target.to(device, non_blocking=True)
        with torch.autocast(device_type=torch.device(device).type, enabled=use_amp):
            outputs = model(*inputs)
        loss, parts = criterion(outputs, target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at iteration {it}; lower base_lr "
                                     f"(now {cfg.base_lr}) or check the labels")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        seen += inputs[0].shape[0] * world
        done = it + 1
        if done % cfg.log_every == 0 or done == cfg.iters:
            rate = seen / max(time.time() - tic, 1e-9)
            log.append({"iteration": done, "lr": round(lr, 8), "loss": round(loss.item(), 5),
                        **{k: round(v, 5) for k, v in parts.items()}, "images_per_s": round(rate, 2)})
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
        bar.update()
        if (done % cfg.checkpoint_every == 0 or (cfg.snapshot_every and done % cfg.snapshot_every == 0)
                ) and done < cfg.iters:
            save(done)
    bar.close()
    save(cfg.iters, final=True)
    if distributed:
        dist.barrier()
    # a run resumed at its last iteration (killed after training) reports the speed it trained at
    images_per_s = ([row["images_per_s"] for row in log if row["iteration"] > start]
                    or [row["images_per_s"] for row in log])
    return {"iterations": cfg.iters, "resumed_from": start, "final_loss": log[-1]["loss"] if log else None,
            "images_per_s": float(np.median(images_per_s)) if images_per_s else None,
            "checkpoint": str(out / FINAL)}


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def load_state(path: str | Path, device: str = "cpu") -> Any:
    """A checkpoint or weights file, loaded as data only (``weights_only=True``: tensors, numbers,
    strings, lists and dicts — a file that asks to run code is refused, never executed)."""
    try:
        return torch.load(Path(path), map_location=device, weights_only=True)
    except RuntimeError as exc:  # a damaged archive reads as one; out of memory and others are not ours
        if not any(m in str(exc) for m in ("PytorchStreamReader", "central directory", "Invalid magic",
                                           "unpickl", "weights_only")):
            raise
        raise ValueError(f"{path} is not a checkpoint wrp loads: damaged, or holding more than tensors, "
                         "numbers and strings, which wrp never unpickles; delete it to train that stage "
                         "again") from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"{path} is not a checkpoint wrp loads: damaged, or holding more than tensors, "
                         f"numbers and strings, which wrp never unpickles ({type(exc).__name__}); delete it "
                         "to train that stage again") from None


def load_model(job: Job, out_dir: str | Path, device: str = "cpu", weights: str | Path | None = None
               ) -> nn.Module:
    """The trained model of a finished run, in eval mode (NHWC where the run trained so);
    ``weights`` (e.g. one of its ``snapshots/``) instead of its final ``model.pt``."""
    model = job.model.build()
    path = Path(weights) if weights else Path(out_dir) / FINAL
    state = load_state(path, device)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} holds weights of another model than its job.json describes ({first}); "
                         "delete its stage folder to train it again") from None
    return _place(model, device, job.train.channels_last).eval()


def read_log(out_dir: str | Path) -> list[dict[str, float]]:
    with open(Path(out_dir) / "log.csv") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def job_from_file(path: str | Path) -> Job:
    """The job a stage's ``job.json`` describes; a file that is not one, or that names a builder
    outside :data:`BUILDERS`, is refused naming the file (a job file never chooses code to run)."""
    try:
        job = Job.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable job file ({type(exc).__name__}: {exc}); delete its "
                         "stage folder to build the stage again") from None
    for builder in (job.model, job.data, job.loss):
        if builder.name not in BUILDERS:
            raise ValueError(f"{path} names builder {builder.name!r}, which is not registered here "
                             f"({', '.join(sorted(BUILDERS))}); a job file never chooses code to run: "
                             "register it first (wrp.train.register_builder), or delete the stage folder "
                             "to build the stage again")
    return job


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def predict(model: nn.Module, image: np.ndarray, device: str = "cpu", flip: bool = False,
            scales: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (K, H, W) class probabilities through ``g_ψ``'s inference path
    (:func:`wrp.models.segment`), optionally averaged over a horizontal flip and input scales."""
    import torch.nn.functional as F

    model.to(device)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    H, W = x.shape[-2:]
    total = 0
    for scale in scales:
        xs = x if scale == 1.0 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            probs, _ = segment(model, xs.flip(-1) if flipped else xs)
            probs = probs.flip(-1) if flipped else probs
            total = total + (probs if scale == 1.0 else
                             F.interpolate(probs, size=(H, W), mode="bilinear", align_corners=False))
    return (total / (len(scales) * (2 if flip else 1)))[0].cpu()


def evaluate(model: nn.Module, samples: list[tuple[Path, Path]], device: str = "cpu",
             progress: bool = True, batch_size: int = 8, label_set: str | None = None) -> dict[str, Any]:
    """Confusion matrix, mIoU and per-class IoU of ``model`` on (image, label) files, at the
    single scale the label policies run ``g_ψ`` at; consecutive frames of one size go through the
    model ``batch_size`` at a time (eval mode: the same predictions as one by one). A model of
    another label set (``label_set``, :data:`wrp.data.LABEL_SETS`) is scored on the labels mapped to it."""
    lookup, names = label_set_of(label_set)

    conf = 0
    bar = progress_bar(total=len(samples), desc="evaluate", disable=not progress)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        images = [read_image(image_path) for image_path, _ in chunk]
        groups = [images] if len({im.shape for im in images}) == 1 else [[im] for im in images]
        predicted = []
        for group in groups:
            x = torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2).float()
            model.to(device)
            probs, _ = segment(model, x)
            predicted.extend(probs.argmax(1).cpu().numpy())
        for labels, (_, label_path) in zip(predicted, chunk, strict=True):
            truth = read_label(label_path)
            conf = conf + confusion_matrix(labels, truth if lookup is None else lookup[truth], len(names))
        bar.update(len(chunk))
    bar.close()
    per_class = {names[i]: round(float(v) * 100, 2) for i, v in enumerate(iou(conf)) if np.isfinite(v)}
    return {"miou": round(mean_iou(conf), 2), "per_class_iou": per_class, "images": len(samples),
            "confusion": conf.tolist()}
