"""Stages of the experiments: the manifest of a profile's dataset, and segmenters trained on it.

Each function here is a cached stage (``wrp.stages``): asked twice with the same settings it
returns the folder the first call filled, so notebooks and the command line share their work.
"""

from __future__ import annotations

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


def manifest_for(profile: str | Profile, seed: int = 0) -> Path:
    """``manifest.json`` of the profile's dataset (the synthetic world), split by record with ``seed``."""
    from wrp.synthetic import world_for

    prof = get_profile(profile)
    if prof.dataset != "synthetic":
        raise ValueError(f"profile {prof.name!r} reads the {prof.dataset} dataset; prepare it with "
                         "data_scripts/ and build its manifest with wrp.data.build_manifest")
    root = world_for(prof, seed)
    split = SplitConfig(partition_length=prof.partition_length, val=prof.val_records, seed=seed)

    def build(out: Path) -> dict[str, int]:
        manifest = build_manifest(root, split)
        manifest.save(out / "manifest.json")
        return manifest.counts()

    return Stage("manifest", {"world": str(root), "split": split}).run(build) / "manifest.json"


def segmentation_dataset(manifest: str, epoch_size: int, crop: list[int], seed: int = 0,
                         human_share: float = 0.3, generated: list[list[str]] | None = None,
                         class_uniform_share: float = 0.5, centroid_cache: str | None = None):
    """Training data of a segmenter: human labels of the train partitions (+ generated ones),
    mixed and augmented per supplementary 3.1 (``wrp.mixing``)."""
    from wrp.mixing import AugmentConfig, CentroidIndex, MixConfig, MixedDataset

    human = human_samples(Manifest.load(manifest).clips("train"))
    gen = [tuple(pair) for pair in (generated or [])]
    index = CentroidIndex.build([lab for _, lab in human], cache_path=centroid_cache, progress=False)
    gen_index = (CentroidIndex.build([lab for _, lab in gen], progress=False) if gen else None)
    return MixedDataset(human, gen, MixConfig(epoch_size=epoch_size, human_share=human_share,
                                              class_uniform_share=class_uniform_share, seed=seed),
                        AugmentConfig(crop=tuple(crop)), centroids_human=index,
                        centroids_generated=gen_index)


def segmenter_job(profile: str | Profile, manifest: Path, seed: int = 0, arch: str = "msa_hrnet_ocr",
                  backbone: str | None = None, loss: str = "ce", iters: int | None = None,
                  base_lr: float | None = None, device: str = "auto",
                  generated: list[list[str]] | None = None, human_share: float = 0.3) -> Job:
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
            "crop": [prof.height, prof.width], "seed": seed, "generated": generated,
            "human_share": human_share if generated else 1.0}),
        loss=Builder("wrp.losses:SegmentationLoss", {"main": loss}),
        train=TrainConfig(iters=iters or prof.seg_iters, batch_size=prof.batch_size,
                          base_lr=base_lr or BASE_LR.get(prof.dataset, 0.01), seed=seed,
                          device=device,
                          checkpoint_every=max(1, (iters or prof.seg_iters) // 10)),
    )


def train_segmenter(profile: str | Profile, seed: int = 0, arch: str = "msa_hrnet_ocr", nproc: int = 1,
                    device: str = "auto", progress: bool = True, **job_overrides: Any) -> Path:
    """Train (or reuse) a segmenter on the human labels and score it on the validation frames.

    The stage folder holds ``model.pt``, ``log.csv``, ``job.json`` and ``metrics.json`` (mIoU
    and per-class IoU on the human-labelled validation frames). A killed run resumes.
    """
    prof = get_profile(profile)
    manifest = manifest_for(prof, seed)
    job = segmenter_job(prof, manifest, seed, arch, device=device, **job_overrides)

    def build(out: Path) -> dict[str, Any]:
        result = launch(job, out, nproc=nproc, progress=progress)
        model = load_model(job, out)
        val = human_samples(Manifest.load(manifest).clips("val"))
        scores = evaluate(model, val, progress=progress)
        atomic_write_json(out / "metrics.json", {**result, **scores})
        return {"miou": scores["miou"], "images_per_s": result["images_per_s"]}

    return Stage("segmenter", {"job": job.to_json(), "nproc": nproc}).run(build)
