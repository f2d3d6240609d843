"""Stages of the experiments: the manifest of a profile's dataset, and segmenters trained on it.

Each function here is a cached stage (``wrp.stages``): asked twice with the same settings it
returns the folder the first call filled, so notebooks and the command line share their work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wrp.data import Manifest, SplitConfig, build_manifest, human_samples
from wrp.io import atomic_write_json
from wrp.launch import launch
from wrp.profiles import Profile, get_profile
from wrp.stages import Stage
from wrp.train import Builder, Job, TrainConfig, evaluate, load_model

# Base learning rates of the supplementary (3.1), per dataset. The synthetic world trains from
# scratch (no pre-trained weights here): at 600 demo iterations 0.05 reached 40.8 validation mIoU
# where 0.01 reached 31.2 (MSA-HRNet-OCR, hrnet_w18_small).
BASE_LR = {"cityscapes": 0.01, "synthetic": 0.05, "apolloscape": 0.01, "kitti": 0.0005, "nyuv2": 0.001}


def manifest_for(profile: str | Profile, seed: int = 0, dataset: str | Path | None = None) -> Path:
    """``manifest.json`` of the data a run reads: the profile's synthetic world, split by record
    with ``seed`` — or, with ``dataset``, a tree prepared by a ``data_scripts/prepare_*.py`` script
    (its own split, ``splits/``)."""
    from wrp.synthetic import world_for

    if dataset:
        return _prepared_manifest(dataset)
    prof = get_profile(profile)
    if prof.dataset != "synthetic":
        raise ValueError(f"profile {prof.name!r} reads the {prof.dataset} dataset: prepare it with "
                         "data_scripts/prepare_*.py and pass the prepared folder as `dataset` "
                         "(wrp propagate --dataset DIR)")
    root = world_for(prof, seed, **prof.synth_overrides)
    split = SplitConfig(partition_length=prof.partition_length, val=prof.val_records, seed=seed)

    def build(out: Path) -> dict[str, int]:
        manifest = build_manifest(root, split)
        manifest.save(out / "manifest.json")
        return manifest.counts()

    return Stage("manifest", {"world": str(root), "split": split}).run(build) / "manifest.json"


def _prepared_manifest(dataset: str | Path) -> Path:
    import hashlib

    from wrp.data import PREPARED_FILE, read_prepared

    prepared = read_prepared(dataset)
    if prepared.label_format != "cityscapes":
        raise ValueError(f"{dataset} holds {prepared.label_format} labels; the segmenters, Ω and the "
                         "profiles use the 19 Cityscapes classes (see docs/own_data.md)")
    root = Path(dataset).resolve()
    splits = hashlib.sha1(b"".join((root / "splits" / f"{s}.txt").read_bytes() for s in ("train", "val")))
    config = {"prepared": str(root), "info": json.loads((root / PREPARED_FILE).read_text()),
              "splits": splits.hexdigest()}

    def build(out: Path) -> dict[str, int]:
        manifest = prepared.manifest()
        manifest.save(out / "manifest.json")
        return manifest.counts()

    return Stage("manifest", config).run(build) / "manifest.json"


def dataset_name(profile: str | Profile, dataset: str | Path | None = None) -> str:
    """The dataset a run reads: the prepared tree's name, else the profile's (for its base LR)."""
    if dataset:
        from wrp.data import read_prepared

        return read_prepared(dataset).dataset
    return get_profile(profile).dataset


def segmentation_dataset(manifest: str, epoch_size: int, crop: list[int], seed: int = 0,
                         human_share: float = 0.3, generated: list[list[str]] | None = None,
                         class_uniform_share: float = 0.5, centroid_cache: str | None = None,
                         augment: dict[str, Any] | None = None):
    """Training data of a segmenter: human labels of the train partitions (+ generated ones),
    mixed and augmented per supplementary 3.1 (``wrp.mixing``)."""
    from wrp.mixing import AugmentConfig, CentroidIndex, MixConfig, MixedDataset

    human = human_samples(Manifest.load(manifest).clips("train"))
    gen = [tuple(pair) for pair in (generated or [])]
    index = CentroidIndex.build([lab for _, lab in human], cache_path=centroid_cache, progress=False)
    gen_index = (CentroidIndex.build([lab for _, lab in gen], progress=False) if gen else None)
    return MixedDataset(human, gen, MixConfig(epoch_size=epoch_size, human_share=human_share,
                                              class_uniform_share=class_uniform_share, seed=seed),
                        AugmentConfig(crop=tuple(crop), **(augment or {})), centroids_human=index,
                        centroids_generated=gen_index)


def segmenter_job(profile: str | Profile, manifest: Path, seed: int = 0, arch: str = "msa_hrnet_ocr",
                  backbone: str | None = None, loss: str = "ce", iters: int | None = None,
                  base_lr: float | None = None, device: str = "auto",
                  generated: list[list[str]] | None = None, human_share: float = 0.3,
                  crop: list[int] | None = None, augment: dict[str, Any] | None = None) -> Job:
    """The :class:`~wrp.train.Job` that trains one segmenter at a profile's sizes."""
    from wrp.models import SMALL_BACKBONES

    prof = get_profile(profile)
    small = prof.name != "paper"
    model_kwargs: dict[str, Any] = {"arch": arch,
                                    "backbone": backbone or (SMALL_BACKBONES[arch] if small else None)}
    if small and arch != "deeplabv3":
        model_kwargs.update(ocr_mid=128, ocr_key=64)
    if small and arch == "deeplabv3":
        model_kwargs.update(output_stride=16)  # 3× faster on a CPU than output stride 8
    n_human = len(Manifest.load(manifest).train)
    return Job(
        model=Builder("wrp.models:build_model", model_kwargs),
        data=Builder("wrp.experiments:segmentation_dataset", {
            "manifest": str(manifest), "epoch_size": max(3 * n_human, prof.batch_size),
            "crop": list(crop or prof.seg_crop), "seed": seed, "generated": generated,
            "human_share": human_share if generated else 1.0, "augment": augment}),
        loss=Builder("wrp.losses:SegmentationLoss", {"main": loss}),
        train=TrainConfig(iters=iters or prof.seg_iters, batch_size=prof.batch_size,
                          base_lr=base_lr or BASE_LR.get(prof.dataset, 0.01), seed=seed,
                          device=device,
                          checkpoint_every=max(1, (iters or prof.seg_iters) // 10)),
    )


def train_segmenter(profile: str | Profile, seed: int = 0, arch: str = "msa_hrnet_ocr", nproc: int = 1,
                    device: str = "auto", progress: bool = True, dataset: str | Path | None = None,
                    train_seed: int | None = None, **job_overrides: Any) -> Path:
    """Train (or reuse) a segmenter on the human labels and score it on the validation frames.

    ``seed`` picks the world and its split; ``train_seed`` (default: ``seed``) the initial weights,
    the sampling order and the augmentations, so one world can be trained several times.

    The stage folder holds ``model.pt``, ``log.csv``, ``job.json`` and ``metrics.json`` (mIoU
    and per-class IoU on the human-labelled validation frames). A killed run resumes.
    """
    prof = get_profile(profile)
    manifest = manifest_for(prof, seed, dataset)
    if dataset and "base_lr" not in job_overrides:
        job_overrides["base_lr"] = BASE_LR.get(dataset_name(prof, dataset), 0.01)
    job = segmenter_job(prof, manifest, seed if train_seed is None else train_seed, arch, device=device,
                        **job_overrides)

    def build(out: Path) -> dict[str, Any]:
        result = launch(job, out, nproc=nproc, progress=progress)
        model = load_model(job, out)
        val = human_samples(Manifest.load(manifest).clips("val"))
        scores = evaluate(model, val, progress=progress)
        atomic_write_json(out / "metrics.json", {**result, **scores})
        return {"miou": scores["miou"], "images_per_s": result["images_per_s"]}

    return Stage("segmenter", {"job": job.to_json(), "nproc": nproc}).run(build)


def propagate(profile: str | Profile, seed: int = 0, split: str = "val",
              policies: tuple[str, ...] | None = None, flow: str = "dis", device: str = "auto",
              batch: int = 8, confidence: bool = False, inpaint: str | None = None,
              dataset: str | Path | None = None,
              out: str | Path | None = None, progress: bool = True) -> Path:
    """Propagate the labelled frames of ``split`` to ±k frames with each policy (``wrp propagate``).

    Trains (or reuses) ``g_ψ`` and Ω as the policies need, then writes every frame's label under
    ``<folder>/labels/<policy>/gtFine/<split>/<city>/…_gtFine_labelIds.png`` (atomically; a killed
    run resumes without redoing finished frames), ``speed.json`` (frames/s per policy) and, where
    the split has every frame's ground truth (the synthetic world), ``accuracy.csv``: mIoU and
    coverage per policy and distance. ``out`` defaults to a cached stage folder.
    """
    from wrp.denoiser import DEFAULT_INPAINT, train_denoiser
    from wrp.propagation import (
        _NEEDS_SEGMENTER,
        POLICIES,
        propagate_clips,
        propagation_accuracy,
        write_accuracy_csv,
    )

    prof = get_profile(profile)
    policies = tuple(policies or POLICIES)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown}; choose from {', '.join(POLICIES)}")
    if split not in ("train", "val"):
        raise ValueError(f"split={split!r}; use 'train' or 'val'")
    manifest = manifest_for(prof, seed, dataset)
    needs_seg = bool(set(policies) & _NEEDS_SEGMENTER)
    seg = train_segmenter(prof, seed, progress=progress, dataset=dataset) if needs_seg else None
    inpaint = inpaint or DEFAULT_INPAINT
    den = (train_denoiser(prof, seed, progress=progress, inpaint=inpaint, dataset=dataset)
           if "warp-refine" in policies else None)
    config = {"manifest": str(manifest), "split": split, "policies": list(policies), "flow": flow,
              "inpaint": inpaint,
              "k": prof.k, "segmenter": str(seg) if seg else None, "denoiser": str(den) if den else None,
              "confidence": confidence, "version": 1}

    def build(folder: Path) -> dict[str, Any]:
        m = Manifest.load(manifest)
        clips = m.clips(split)
        propagator = propagator_for(seg, den, flow, device, inpaint)
        speed_path = folder / "speed.json"
        speed = json.loads(speed_path.read_text()) if speed_path.is_file() else {}
        for policy in policies:
            result = propagate_clips(clips, policy, folder / "labels", propagator, prof.k, batch,
                                     confidence, progress)
            if result["frames"]:  # a policy finished before a resume keeps its first timing
                rate = result["frames"] / max(result["seconds"], 1e-9)
                speed[policy] = {**result, "frames_per_s": round(rate, 2)}
                atomic_write_json(speed_path, speed)
        truth = m.ground_truth(split)
        if not _has_every_frame_labelled(clips, truth):  # real data: only the labelled frames
            return {"frames_per_s": {p: v["frames_per_s"] for p, v in speed.items()}, "accuracy": None}
        write_accuracy_csv(propagation_accuracy(clips, truth, folder / "labels", policies, prof.k),
                           folder / "accuracy.csv")
        return {"frames_per_s": {p: v["frames_per_s"] for p, v in speed.items()}}

    if out is None:
        return Stage("propagation", config).run(build)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    recorded = folder / "propagation.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != json.loads(json.dumps(config)):
        raise ValueError(f"{folder} holds labels propagated with other settings (see {recorded}); "
                         "choose another --out or delete that folder")
    atomic_write_json(recorded, config)
    build(folder)
    return folder


def propagator_for(segmenter: Path | None, denoiser: Path | None, flow: str = "dis", device: str = "auto",
                   inpaint: str = "motion"):
    """A :class:`~wrp.propagation.Propagator` with the ``g_ψ`` and Ω of finished stage folders."""
    from wrp.denoiser import CachedSegmenter
    from wrp.motion import make_estimator
    from wrp.propagation import Propagator
    from wrp.runtime import resolve_device
    from wrp.train import job_from_file

    dev = resolve_device(device)
    seg = (CachedSegmenter(load_model(job_from_file(segmenter / "job.json"), segmenter, dev), dev)
           if segmenter else None)
    den = load_model(job_from_file(denoiser / "job.json"), denoiser, dev) if denoiser else None
    return Propagator(make_estimator(flow), seg, den, dev, inpaint)


def _has_every_frame_labelled(clips, truth) -> bool:
    clip = clips[0]
    other = 0 if clip.labelled else 1
    return truth.label_path(clip.clip_id, other).is_file()


def read_accuracy(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of a propagation folder's ``accuracy.csv`` (numbers as floats)."""
    import csv

    with open(Path(folder) / "accuracy.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: (v if k == "policy" else (float(v) if v != "" else float("nan"))) for k, v in row.items()}
            for row in rows]
