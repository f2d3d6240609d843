"""Every cached stage of the pipeline, in the paper's order, over one resolved :class:`~wrp.profiles.Run`.

    world ─ manifest ─┬─ g_ψ (segmenter) ─────────────────────────────┐
                      ├─ cyclic samples ─ Ω (denoiser ─ refinement) ──┼─ propagation ─ table cells
                      └───────────────────────────────────────────────┘

Each function returns the folder of a :class:`~wrp.cache.Stage` (``runs/stages/<name>/<key>/``):
asked twice with the same settings it reuses what the first call built, a killed build resumes,
and it first asks for the stages it reads. A stage's key is its config plus an explicit version,
so notebooks, the command line and benchmarks share their work and a refactor keeps every cache.

The run says which data (``run.dataset``, else the profile's synthetic world of ``run.seed``),
at which sizes (``run.profile``), where (``run.device``) and how wide (``run.nproc``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from wrp.cache import Stage
from wrp.data import (
    PREPARED_FILE,
    Manifest,
    SplitConfig,
    build_manifest,
    human_samples,
    read_prepared,
    tree_fingerprint,
)
from wrp.data import (
    label_set as label_set_of,
)
from wrp.denoiser import (
    GATE_THRESHOLDS,
    MIN_SUPPORT,
    Gate,
    make_cyclic_samples,
    refinement_warning,
    score_cyclic,
    select_refinement,
)
from wrp.io import atomic_save, atomic_write_bytes, atomic_write_json, exclusive_folder
from wrp.launch import Nodes, launch, torchrun_prefix
from wrp.mixing import AugmentConfig, CentroidIndex, MixConfig, MixedDataset
from wrp.models import CachedSegmenter, model_kwargs
from wrp.motion import make_estimator
from wrp.paper import CONFIDENT, DEFAULT_INPAINT, TRUE_LABELS
from wrp.pipeline import default_workers
from wrp.policies import (
    NEEDS_SEGMENTER,
    POLICIES,
    Propagator,
    check_inpaint,
    confident_labels,
    label_file,
    propagate_clips,
    propagation_accuracy,
    write_accuracy_csv,
)
from wrp.profiles import Run
from wrp.runtime import run_child
from wrp.synthetic import WORLD_VERSION, SynthConfig, config_json
from wrp.train import FINAL, Builder, Job, TrainConfig, evaluate, job_from_file, load_model

# Base learning rates of the supplementary (3.1), per dataset. The synthetic world trains from
# scratch (no pre-trained weights here), where 0.05 trains markedly better than 0.01 (docs/results.md).
BASE_LR = {"cityscapes": 0.01, "synthetic": 0.05, "apolloscape": 0.01, "kitti": 0.0005, "nyuv2": 0.001}
# A dataset BASE_LR does not name trains from scratch like every model here (no pre-trained weights):
# at the rate measured best from scratch on the synthetic world, and the run says so.
FALLBACK_LR = BASE_LR["synthetic"]
PRETRAIN_SEED = 1000  # the world Table cells are pretrained on (``table_pretrain``): none a table uses
PRETRAIN_RECORDS = 20  # its training records, whatever the table's world has (the demo's 20)
MOTION_ONLY_K = 2  # Table 1's note: motion-only labels come from frames ±2 (Zhu et al.)
SELECT_SHARE = 0.2  # of the training records: their cyclic labels choose Ω's snapshot and gate
# Ω's training (stage ``denoiser``): 2 leaves the selection records out, 3 keys the same training
DENOISER_VERSION = 3
# the choice of Ω's weights and gate (stage ``refinement``): 1 gates on Ω's and the input's class,
# 2 also starts the choice from the best gate on Ω's class alone, 3 labels with Ω refitted on every
# training record (the chosen snapshot's twin) under the chosen gate, 4 keeps the chosen Ω instead
# when the validation records' cyclic labels score the refit lower
REFINEMENT_VERSION = 4


# ---------------------------------------------------------------------------------------------
# Data: the synthetic world and the manifest of partitions
# ---------------------------------------------------------------------------------------------
def world_stage(run: Run) -> Stage:
    """The ``synth`` stage of a run: keyed by the world's config and :data:`WORLD_VERSION` only."""
    return Stage("synth", SynthConfig.from_profile(run.profile, run.seed), version=WORLD_VERSION)


def world_for(run: Run) -> Path:
    """Stage ``synth``: the profile's synthetic world of ``run.seed``, rendered once."""
    stage = world_stage(run)
    config = stage.config

    def build(out: Path) -> dict[str, Any]:
        # a separate process renders the world: worker pools never start inside a notebook kernel
        cmd = [sys.executable, "-m", "wrp.synthetic", json.dumps(config_json(config)), str(out)]
        if not run.progress:
            cmd.append("--no-progress")
        code = run_child(cmd)
        if code != 0:
            raise RuntimeError(f"rendering the synthetic world into {out} failed (exit {code}); "
                               "its error is above. A rerun resumes with the records already written")
        return {"frames": config.records * config.frames_per_record}

    return stage.run(build, verbose=run.progress)


def manifest_for(run: Run) -> Path:
    """Stage ``manifest``: ``manifest.json`` of the data a run reads — the profile's synthetic
    world, split by record with ``run.seed``, or the prepared ``run.dataset`` with its own split."""
    if run.dataset is not None:
        return _prepared_manifest(run.dataset)
    root = world_for(run)
    split = SplitConfig(partition_length=run.profile.partition_length, val=run.profile.val_records,
                        seed=run.seed)

    def build(out: Path) -> dict[str, int]:
        manifest = build_manifest(root, split)
        manifest.save(out / "manifest.json")
        return manifest.counts()

    return Stage("manifest", {"world": str(root), "split": split}).run(build) / "manifest.json"


def _prepared_manifest(dataset: Path) -> Path:
    prepared = read_prepared(dataset)
    if prepared.label_format != "cityscapes":
        raise ValueError(f"{dataset} holds {prepared.label_format} labels; the segmenters, Ω and the "
                         "profiles use the 19 Cityscapes classes (see docs/own_data.md)")
    root = Path(dataset).resolve()
    splits = hashlib.sha1(b"".join((root / "splits" / f"{s}.txt").read_bytes() for s in ("train", "val")))
    config = {"prepared": str(root), "info": json.loads((root / PREPARED_FILE).read_text()),
              "splits": splits.hexdigest(), "content": tree_fingerprint(root)}

    def build(out: Path) -> dict[str, int]:
        manifest = prepared.manifest()
        manifest.save(out / "manifest.json")
        return manifest.counts()

    return Stage("manifest", config).run(build) / "manifest.json"


def dataset_name(run: Run) -> str:
    """The dataset a run reads: the prepared tree's name, else the profile's."""
    return read_prepared(run.dataset).dataset if run.dataset is not None else run.profile.dataset


def base_lr_for(run: Run) -> float:
    """The supplementary's base learning rate of the run's dataset (:data:`BASE_LR`); a dataset
    it does not name gets :data:`FALLBACK_LR`, and the run says so."""
    name = dataset_name(run)
    if name not in BASE_LR:
        print(f"[wrp] no base learning rate is known for dataset {name!r}: training from scratch at "
              f"{FALLBACK_LR}, the rate measured best from scratch on the synthetic world "
              "(docs/results.md); choose another with --lr", flush=True)
    return BASE_LR.get(name, FALLBACK_LR)


# ---------------------------------------------------------------------------------------------
# g_ψ: the baseline segmenter, trained on human labels only (supplementary 3.1)
# ---------------------------------------------------------------------------------------------
def segmentation_dataset(manifest: str, epoch_size: int, crop: list[int], seed: int = 0,
                         human_share: float = 0.3, generated: list[list[str]] | None = None,
                         class_uniform_share: float = 0.5, centroid_cache: str | None = None,
                         augment: dict[str, Any] | None = None,
                         generated_min_pixels: int = 1, label_set: str | None = None) -> MixedDataset:
    """Builder ``segmentation-data``: human labels of the train partitions (+ generated ones),
    mixed and augmented per supplementary 3.1 (``wrp.mixing``). In the generated labels a class
    counts for class-uniform sampling in a tile from ``generated_min_pixels`` pixels on
    (:func:`~wrp.mixing.class_centroids`), so that stray pixels of a class are not sampled as
    often as its real instances. ``label_set`` (a name of :data:`wrp.data.LABEL_SETS`) trains on
    another label set than the train ids (sampling still balances the train ids)."""
    lookup, _ = label_set_of(label_set)
    human = human_samples(Manifest.load(manifest).clips("train"))
    gen = [tuple(pair) for pair in (generated or [])]
    index = CentroidIndex.build([lab for _, lab in human], cache_path=centroid_cache, progress=False)
    gen_index = (CentroidIndex.build([lab for _, lab in gen], progress=False, min_pixels=generated_min_pixels)
                 if gen else None)
    return MixedDataset(human, gen, MixConfig(epoch_size=epoch_size, human_share=human_share,
                                              class_uniform_share=class_uniform_share, seed=seed),
                        AugmentConfig(crop=tuple(crop), **(augment or {})), centroids_human=index,
                        centroids_generated=gen_index, label_map=lookup)


def segmenter_job(run: Run, manifest: Path, arch: str = "msa_hrnet_ocr", backbone: str | None = None,
                  loss: str = "ce", iters: int | None = None, base_lr: float | None = None,
                  generated: list[list[str]] | None = None, human_share: float = 0.3,
                  crop: list[int] | None = None, augment: dict[str, Any] | None = None,
                  train_seed: int | None = None, init: str | None = None,
                  generated_min_pixels: int = 1, label_set: str | None = None) -> Job:
    """The :class:`~wrp.train.Job` that trains one segmenter at the run's sizes: a fixed epoch of
    3× the human-labelled set (supplementary 3.1), the profile's iterations unless ``iters``,
    from the weights ``init`` (a ``model.pt`` of the same model) or from random ones.
    ``generated_min_pixels``: see :func:`segmentation_dataset` (in the job only when it is not 1,
    so the jobs, and stage keys, of segmenters trained before it existed are unchanged).
    ``label_set``: train on another label set than the 19 train ids (:data:`wrp.data.LABEL_SETS`),
    with a classifier of its size — in the job only when given, for the same reason."""
    prof = run.profile
    classes = {} if label_set is None else {"num_classes": len(label_set_of(label_set)[1])}
    iters = iters if iters is not None else prof.seg_iters
    n_human = len(Manifest.load(manifest).train)
    seed = run.seed if train_seed is None else train_seed
    return Job(
        model=Builder("segmentation-model", {**model_kwargs(arch, prof.small_models, backbone), **classes}),
        data=Builder("segmentation-data", {
            "manifest": str(manifest), "epoch_size": max(3 * n_human, prof.batch_size),
            "crop": list(crop or prof.seg_crop), "seed": seed, "generated": generated,
            "human_share": human_share if generated else 1.0, "augment": augment,
            **({"generated_min_pixels": generated_min_pixels}
               if generated and generated_min_pixels != 1 else {}),
            **({"label_set": label_set} if label_set is not None else {})}),
        loss=Builder("segmentation-loss", {"main": loss}),
        train=TrainConfig(iters=iters, batch_size=prof.batch_size,
                          base_lr=base_lr if base_lr is not None else base_lr_for(run), seed=seed,
                          device=run.device, checkpoint_every=max(1, iters // 10), init=init),
    )


def train_segmenter(run: Run, arch: str = "msa_hrnet_ocr", train_seed: int | None = None,
                    **job_overrides: Any) -> Path:
    """Stage ``segmenter``: train (or reuse) a segmenter on the human labels and score it on the
    validation frames at the single scale the policies run it at.

    ``run.seed`` picks the world and its split; ``train_seed`` (default: ``run.seed``) the initial
    weights, the sampling order and the augmentations, so one world can be trained several times.
    ``job_overrides`` go to :func:`segmenter_job`. The folder holds ``model.pt``, ``log.csv``,
    ``job.json`` and ``metrics.json`` (mIoU and per-class IoU). A killed run resumes.
    """
    manifest = manifest_for(run)
    job = segmenter_job(run, manifest, arch, train_seed=train_seed, **job_overrides)

    def build(out: Path) -> dict[str, Any]:
        result = launch(job, out, nproc=run.nproc, progress=run.progress)
        model = load_model(job, out)
        scores = evaluate(model, human_samples(Manifest.load(manifest).clips("val")), progress=run.progress,
                          label_set=job.data.kwargs.get("label_set"))
        atomic_write_json(out / "metrics.json", {**result, **scores})
        return {"miou": scores["miou"], "images_per_s": result["images_per_s"]}

    return Stage("segmenter", {"job": job.to_json(), "nproc": run.nproc}).run(build, verbose=run.progress)


def teacher_segmenter(run: Run) -> Path:
    """Stage ``segmenter`` of ``g_ψ``, the segmenter whose predictions are the semantic cue of every
    policy and Ω's features: trained on the run's human labels only, from random weights or, where
    the profile names a ``teacher_pretrain`` style, fine-tuned from MSA-HRNet-OCR pretrained on
    that style's world (:func:`pretrained_segmenter`) — the paper's ``g_ψ`` starts from weights
    trained on Mapillary, so it knows more than the students it labels for. Without a
    ``teacher_pretrain`` its stage is the one it always was."""
    style = run.profile.teacher_pretrain
    if style is None:
        return train_segmenter(run)
    return train_segmenter(run, init=str(pretrained_segmenter(run, "msa_hrnet_ocr", style) / "model.pt"))


# ---------------------------------------------------------------------------------------------
# Ω: cyclic warped labels of the labelled frames, and the denoiser trained on them (§3)
# ---------------------------------------------------------------------------------------------
def inpaint_for(run: Run, inpaint: str | None = None, policies: Sequence[str] | None = None) -> str:
    """What Ω's input holds where the motion fails: ``inpaint``, else the profile's (checked). Of a
    stage labelling with ``policies`` that leave out warp-refine, the default whatever was asked:
    only Ω reads it, so the other policies' stages are one whatever it is."""
    inpaint = inpaint or run.profile.inpaint
    check_inpaint(inpaint)
    return inpaint if policies is None or "warp-refine" in policies else DEFAULT_INPAINT


def cyclic_samples_for(run: Run, split: str = "train", flow: str = "dis",
                       inpaint: str | None = None) -> Path:
    """Stage ``cyclic``: the cyclic warped labels ``t → t±p → t`` of the labelled frames of
    ``split`` for every ``p`` of the profile's ``cycle_lengths``, both directions → ``samples.npz``.

    Pixels the motion cannot explain keep the motion's guess (``inpaint="motion"``) or take
    ``g_ψ``'s prediction (``"semantic"``; default: the profile's ``inpaint``). ``split="val"``
    gives the held-out pairs that score Ω.
    """
    inpaint = inpaint_for(run, inpaint)
    manifest = manifest_for(run)
    seg = teacher_segmenter(run) if inpaint == "semantic" else None
    cycle_lengths = run.profile.cycle_lengths
    config = {"manifest": str(manifest), "segmenter": str(seg) if seg else None, "split": split, "flow": flow,
              "cycle_lengths": list(cycle_lengths), "inpaint": inpaint}

    def build(out: Path) -> dict[str, Any]:
        clips = Manifest.load(manifest).clips(split)
        segmenter = CachedSegmenter(load_model(job_from_file(seg / "job.json"), seg)) if seg else None
        arrays = make_cyclic_samples(clips, cycle_lengths, make_estimator(flow), segmenter, run.progress)
        atomic_save(out / "samples.npz", lambda f: np.savez_compressed(f, **arrays))
        return {"samples": len(arrays["meta"])}

    return Stage("cyclic", config).run(build, verbose=run.progress) / "samples.npz"


def selection_clips(run: Run) -> list[int]:
    """Indices of the training clips whose cyclic labels choose Ω's snapshot and gate instead of
    training it: the clips of :data:`SELECT_SHARE` of the training records (at least one), drawn
    with ``run.seed``. A single training record is used for both (and the choice says so)."""
    clips = Manifest.load(manifest_for(run)).clips("train")
    records = sorted({clip.frames[clip.labelled].record_id for clip in clips})
    if len(records) < 2:
        return []
    rng = np.random.default_rng([run.seed, 31])
    chosen = set(rng.permutation(records)[:max(1, round(SELECT_SHARE * len(records)))].tolist())
    return [i for i, clip in enumerate(clips) if clip.frames[clip.labelled].record_id in chosen]


def denoiser_job(run: Run, samples: Path, segmenter: Path, iters: int | None = None,
                 base_lr: float | None = None, ngf: int | None = None,
                 held_out: list[int] | None = None) -> Job:
    """The :class:`~wrp.train.Job` that trains Ω on cyclic samples with RMI (supplementary 3.3),
    with the optimisation settings of segmentation (3.1), leaving out the samples of the
    ``held_out`` clips and keeping 8 snapshots of its weights to choose from."""
    prof = run.profile
    iters = iters if iters is not None else prof.denoiser_iters
    crop = list(prof.denoiser_crop) if prof.denoiser_crop else None
    model = {"segmenter": str(segmenter), "ngf": ngf or prof.denoiser_width}
    data = {"samples": str(samples), "seed": run.seed, "crop": crop,
            "segmenter": str(segmenter) if prof.denoiser_frame_features else None}
    if held_out:
        data["held_out"] = sorted(held_out)
    return Job(model=Builder("denoiser-model", model),
               data=Builder("denoiser-data", data),
               loss=Builder("segmentation-loss", {"main": "rmi", "aux_weight": 0.0}),
               train=TrainConfig(iters=iters, batch_size=prof.batch_size,
                                 base_lr=base_lr if base_lr is not None else base_lr_for(run),
                                 seed=run.seed, device=run.device, checkpoint_every=max(1, iters // 10),
                                 snapshot_every=max(1, -(-iters // 8))))


def train_denoiser(run: Run, inpaint: str | None = None, **job_overrides: Any) -> Path:
    """Ω_λ, ready to label: trained on the cyclic samples of the training records with ``g_ψ``
    frozen (stage ``denoiser``, :func:`denoiser_training`), then made safe to use on data it was
    not tuned on (stage ``refinement``). ``inpaint`` (default: the profile's) is what its input
    label holds where the motion fails (:func:`cyclic_samples_for`).

    The cyclic labels of :func:`selection_clips` (held-out training records) are not trained on:
    they choose the snapshot of Ω and the :class:`~wrp.denoiser.Gate` — how sure Ω must be to
    change its input label — that label them best, among which "change nothing"; no label beyond
    the human-labelled frames is used. Ω is then trained again from the same seed on every
    training record (the selection records too, stage ``denoiser`` without held-out clips), and
    its snapshot of the same iteration under the chosen gate labels — the choice costs no training
    data — unless the validation records' cyclic labels score it below the chosen Ω: no record is
    left to check the refit's own weights, and a second training of the same recipe can fail on a
    class the first learnt (``labels_with``: ``refit`` or ``chosen``). The validation records'
    cyclic labels then check the Ω that labels: when it does not improve them (overall or at some
    p), a warning is printed here and by :func:`propagate`, and recorded. The choice is a stage of
    its own, so a change of how it is made re-chooses in a minute without training Ω again.

    Returns the ``refinement`` folder, which reads like a training run's: ``model.pt`` (the weights
    to label with), ``job.json``, ``log.csv`` and ``metrics.json`` (the labelling run's result,
    ``selection``, ``labels_with``, ``held_out`` per ``p`` (the Ω that labels),
    ``held_out_before_refit`` (the chosen Ω) and ``held_out_refit`` (``None`` with one training
    record: nothing is refitted), ``warning``, ``trained``: the
    training folder with every snapshot the choice was made from, and ``refit``: the run on every
    training record)."""
    inpaint = inpaint_for(run, inpaint)
    trained = denoiser_training(run, inpaint, **job_overrides)
    job = job_from_file(trained / "job.json")
    samples = Path(job.data.kwargs["samples"])
    held = list(job.data.kwargs.get("held_out") or [])
    refit = denoiser_training(run, inpaint, select=False, **job_overrides) if held else trained
    validation = cyclic_samples_for(run, "val", inpaint=inpaint)

    def build(out: Path) -> dict[str, Any]:
        if held:
            clips = held
        else:
            with np.load(samples) as arrays:
                clips = sorted({int(m[0]) for m in arrays["meta"]})
        selection, weights = select_refinement(job, trained, samples, clips, GATE_THRESHOLDS,
                                               progress=run.progress, device=run.device)
        if not held:
            selection["note"] = "one training record: Ω was chosen on the records it trained on"
        gate = Gate(**selection["gate"])
        selection["weights"] = weights.relative_to(trained).as_posix()  # in both training folders
        before_refit = score_cyclic(load_model(job, trained, weights=weights), validation, gate)
        twin = refit / selection["weights"]  # the same snapshot (iteration) of the refit
        after_refit = (score_cyclic(load_model(job, refit, weights=twin), validation, gate)
                       if refit != trained else None)  # one training record: nothing was refitted
        keep_chosen = after_refit is None or after_refit["refined"] < before_refit["refined"]
        labels_with = "chosen" if keep_chosen else "refit"  # a tie keeps the refit
        source, held_out = (trained, before_refit) if keep_chosen else (refit, after_refit)
        # copies, so the folder reads like a training run's
        copies = ((source / selection["weights"], FINAL), (source / "job.json", "job.json"),
                  (source / "log.csv", "log.csv"))
        for path, name in copies:
            atomic_write_bytes(out / name, path.read_bytes())
        warning = refinement_warning(held_out)
        result = json.loads((source / "result.json").read_text())
        atomic_write_json(out / "metrics.json", {**result, "checkpoint": str(out / FINAL),
                                                 "trained": str(trained), "refit": str(refit),
                                                 "selection": selection, "labels_with": labels_with,
                                                 "held_out": held_out, "held_out_before_refit": before_refit,
                                                 "held_out_refit": after_refit, "warning": warning})
        return {"cyclic_miou": held_out["cyclic"], "refined_miou": held_out["refined"],
                "before_refit_miou": before_refit["refined"],
                "refit_miou": after_refit["refined"] if after_refit else None,
                "labels_with": labels_with, "snapshot": selection["snapshot"], "gate": selection["gate"]}

    config = {"trained": str(trained), "refit": str(refit), "validation": str(validation),
              "thresholds": list(GATE_THRESHOLDS), "min_support": MIN_SUPPORT}
    folder = Stage("refinement", config, version=REFINEMENT_VERSION).run(build, verbose=run.progress)
    warning = denoiser_warning(folder)
    if warning and folder not in _WARNED:  # once per process and Ω
        _WARNED.add(folder)
        print(f"[wrp] WARNING: {warning}", flush=True)
    return folder


def denoiser_training(run: Run, inpaint: str | None = None, select: bool = True,
                      **job_overrides: Any) -> Path:
    """Stage ``denoiser``: train (or reuse) Ω_λ with ``g_ψ`` frozen on the cyclic samples of the
    training records but those of :func:`selection_clips` (every training record with
    ``select=False``: the refit), keeping 8 snapshots of its weights (``snapshots/``) beside
    ``model.pt``, ``log.csv``, ``job.json`` and ``result.json``; ``inpaint`` (default: the profile's)
    as in :func:`cyclic_samples_for`. What to label with is chosen
    from them by :func:`train_denoiser`."""
    seg = teacher_segmenter(run)
    samples = cyclic_samples_for(run, "train", inpaint=inpaint)
    job = denoiser_job(run, samples, seg, held_out=selection_clips(run) if select else None, **job_overrides)

    def build(out: Path) -> dict[str, Any]:
        return launch(job, out, nproc=run.nproc, progress=run.progress)

    return Stage("denoiser", {"job": job.to_json(), "nproc": run.nproc},
                 version=DENOISER_VERSION).run(build, verbose=run.progress)


_WARNED: set[Path] = set()


def denoiser_warning(folder: Path) -> str | None:
    """The warning of a finished Ω stage, from the label-free check it recorded
    (:func:`wrp.denoiser.refinement_warning`): a stage built before keeps its numbers and gets the
    current wording."""
    return refinement_warning(json.loads((Path(folder) / "metrics.json").read_text())["held_out"])


def denoiser_summary(folder: Path) -> str:
    """What a finished Ω stage chose and what its label-free check says, in three lines (what
    ``wrp train-denoiser`` and notebook 03 print)."""
    metrics = json.loads((Path(folder) / "metrics.json").read_text())
    held, chosen = metrics["held_out"], metrics["selection"]
    gate = Gate(**chosen["gate"]).groups()
    after = metrics["held_out_refit"]  # None: nothing was refitted (one training record)
    refit = ""
    if after is not None and metrics["labels_with"] == "refit":
        refit = (f" (Ω refitted on every training record; {metrics['held_out_before_refit']['refined']:.2f} "
                 "before the refit)")
    elif after is not None:
        refit = f" (Ω as chosen, not its refit on every training record: that scored {after['refined']:.2f})"
    return (f"Ω: snapshot {chosen['snapshot']}, gate open for {sum(t < 1 for t in gate)} of {len(gate)} "
            f"(Ω's class or the input's, motion explains the pixel or not) groups\n"
            f"held-out training records' cyclic labels ({chosen['samples']}): mIoU "
            f"{chosen['input_miou']:.2f} → {chosen['chosen_miou']:.2f}\n"
            f"validation records' cyclic labels: mIoU {held['cyclic']:.2f} before Ω, "
            f"{held['refined']:.2f} after" + refit)


def denoiser_gate(folder: Path) -> Gate | None:
    """The gate chosen with a finished Ω stage (``None`` for a stage that chose none)."""
    selection = json.loads((Path(folder) / "metrics.json").read_text()).get("selection")
    return Gate(**selection["gate"]) if selection else None


# ---------------------------------------------------------------------------------------------
# Propagation of a split with the label policies (§4)
# ---------------------------------------------------------------------------------------------
def propagator_for(segmenter: Path | None, denoiser: Path | None, flow: str = "dis", device: str = "cpu",
                   inpaint: str = DEFAULT_INPAINT) -> Propagator:
    """A :class:`~wrp.policies.Propagator` with the ``g_ψ`` and Ω of finished stage folders."""
    seg = (CachedSegmenter(load_model(job_from_file(segmenter / "job.json"), segmenter, device), device)
           if segmenter else None)
    den = load_model(job_from_file(denoiser / "job.json"), denoiser, device) if denoiser else None
    gate = denoiser_gate(denoiser) if denoiser else None
    return Propagator(make_estimator(flow), seg, den, device, inpaint, gate)


def propagate(run: Run, split: str = "val", policies: tuple[str, ...] | None = None, flow: str = "dis",
              batch: int = 8, confidence: bool = False, inpaint: str | None = None,
              out: str | Path | None = None, procs: int = 1, workers: int | None = None,
              nodes: Nodes | None = None, min_confidence: float | None = None) -> Path:
    """Stage ``propagation`` (``wrp propagate``): label every frame within ±k of the labelled frames
    of ``split`` with each policy, training (or reusing) ``g_ψ`` and Ω as the policies need.

    Writes ``labels/<policy>/gtFine/<split>/<city>/…_gtFine_labelIds.png`` (atomically; a killed
    run resumes without redoing finished frames), ``speed.json`` (frames/s per policy and the
    seconds of each stage of the pipeline) and, where the split has every frame's ground truth
    (the synthetic world), ``accuracy.csv``: mIoU and coverage per policy and distance, and
    ``report.json``: the frames/s and Ω's warning when its label-free check failed
    (:func:`train_denoiser`). ``out`` replaces the cached stage folder; it is held for this run
    alone from the start (:func:`wrp.io.exclusive_folder`), and a folder holding labels of other
    settings is refused.

    ``procs`` > 1 labels in that many processes under ``torchrun`` (:mod:`wrp.shards`), and
    ``nodes`` on several machines, with the same files as one process. ``workers``: threads that
    read frames and estimate flow ahead of the device in each process (``wrp.pipeline``; default
    :func:`~wrp.pipeline.default_workers`); the files do not depend on it.

    ``inpaint`` (default: the profile's) is what warp-refine's Ω reads where the motion fails
    (:class:`~wrp.policies.Propagator`); its Ω is trained to match.

    ``min_confidence`` τ also writes, beside each policy's labels, ``labels/<policy>@<τ>/…``: the
    same labels with the pixels of confidence below τ unlabelled
    (:func:`~wrp.policies.confident_labels`; it implies ``confidence``), scored in ``accuracy.csv``
    as a policy of its own.
    """
    policies = tuple(policies or POLICIES)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown}; choose from {', '.join(POLICIES)}")
    if split not in ("train", "val"):
        raise ValueError(f"split={split!r}; use 'train' or 'val'")
    inpaint = inpaint_for(run, inpaint, policies)
    nodes = nodes or Nodes()
    if procs < 1:
        raise ValueError(f"procs={procs} must be ≥ 1")
    if workers is None:
        workers = default_workers(run.device, procs)
    if workers < 0:
        raise ValueError(f"workers={workers} must be ≥ 0")
    if nodes.rank > 0:
        raise ValueError("only the first node (node rank 0) propagates; the others join it with "
                         "join_propagation (wrp propagate --node-rank R --nnodes N --rdzv-endpoint …)")
    if min_confidence is not None:
        if not 0.0 < min_confidence <= 1.0:
            raise ValueError(f"min_confidence={min_confidence} must lie in (0, 1]")
        if "copy" in policies:
            raise ValueError("the copy policy has no confidence: leave it out with --min-confidence")
        confidence = True
    settings = (split, policies, flow, batch, confidence, inpaint, min_confidence)
    if out is not None:
        with exclusive_folder(Path(out), "wrp propagate"):
            return _propagate(run, *settings, Path(out), procs, workers, nodes)
    return _propagate(run, *settings, None, procs, workers, nodes)


def join_propagation(procs: int, nodes: Nodes) -> None:
    """A node after the first of a several-node ``wrp propagate``: its ``procs`` ranks take the job
    from the first node's ranks and label their shards (:mod:`wrp.shards`); the first node merges
    the reports and scores the labels."""
    if nodes.count < 2 or nodes.rank < 1:
        raise ValueError(f"node rank {nodes.rank} of {nodes.count}: only nodes 1..N-1 of N ≥ 2 join a run")
    print(f"[wrp] propagate: node {nodes.rank} of {nodes.count}, {procs} processes (torchrun)", flush=True)
    code = run_child([*torchrun_prefix(procs, nodes.count, nodes.rank, nodes.rdzv_endpoint),
                      "-m", "wrp.shards"])
    if code != 0:
        raise RuntimeError(f"labelling on node {nodes.rank} failed (torchrun exit {code}); its log is above. "
                           "Start every node again: the run resumes from the labels written")


def _propagate(run: Run, split: str, policies: tuple[str, ...], flow: str, batch: int, confidence: bool,
               inpaint: str, min_confidence: float | None, out: Path | None, procs: int, workers: int,
               nodes: Nodes) -> Path:
    manifest = manifest_for(run)
    seg = teacher_segmenter(run) if set(policies) & NEEDS_SEGMENTER else None
    den = train_denoiser(run, inpaint=inpaint) if "warp-refine" in policies else None
    k = run.profile.k
    config = {"manifest": str(manifest), "split": split, "policies": list(policies), "flow": flow,
              "inpaint": inpaint, "k": k, "segmenter": str(seg) if seg else None,
              "denoiser": str(den) if den else None, "confidence": confidence}
    if min_confidence is not None:  # only when set: the labels of runs without it keep their stage
        config["min_confidence"] = min_confidence

    def build(folder: Path) -> dict[str, Any]:
        m = Manifest.load(manifest)
        clips = m.clips(split)
        speed_path = folder / "speed.json"
        speed = json.loads(speed_path.read_text()) if speed_path.is_file() else {}

        def record(policy: str, result: dict[str, Any]) -> None:
            if result["frames"]:  # a policy finished before a resume keeps its first timing
                rate = result["frames"] / max(result["seconds"], 1e-9)
                speed[policy] = {**result, "frames_per_s": round(rate, 2), "workers": workers}
                atomic_write_json(speed_path, speed)

        if procs > 1 or nodes.count > 1:
            job = {**config, "batch": batch, "workers": workers,
                   "labels": str(folder / "labels"), "device": run.device}
            for policy, result in _sharded(folder, job, procs, nodes).items():
                record(policy, result)
        else:
            propagator = propagator_for(seg, den, flow, run.device, inpaint)
            for policy in policies:
                record(policy, propagate_clips(clips, policy, folder / "labels", propagator, k, batch,
                                               confidence, run.progress, workers=workers))
        scored = list(policies)
        if min_confidence is not None:
            scored += [confident_labels(clips, p, folder / "labels", min_confidence, k) for p in policies]
        rates = {"frames_per_s": {p: v["frames_per_s"] for p, v in speed.items()}}
        if den is not None:
            rates["denoiser_warning"] = denoiser_warning(den)
        atomic_write_json(folder / "report.json", rates)
        truth = m.ground_truth(split)
        if not every_frame_labelled(clips, truth):  # real data: only the labelled frames
            return {**rates, "accuracy": None}
        write_accuracy_csv(propagation_accuracy(clips, truth, folder / "labels", scored, k),
                           folder / "accuracy.csv")
        return rates

    if out is None:
        return Stage("propagation", config).run(build, verbose=run.progress)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    recorded = folder / "propagation.json"
    try:
        before = json.loads(recorded.read_text()) if recorded.is_file() else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{recorded} is damaged ({exc}); delete {folder} and propagate again") from None
    if before is not None and before != json.loads(json.dumps(config)):
        raise ValueError(f"{folder} holds labels propagated with other settings (see {recorded}); "
                         "choose another --out or delete that folder")
    atomic_write_json(recorded, config)
    build(folder)
    return folder


def _sharded(folder: Path, job: dict[str, Any], procs: int, nodes: Nodes) -> dict[str, dict[str, Any]]:
    """Every policy's labels in ``procs`` processes per node under torchrun (:mod:`wrp.shards`);
    per policy the ranks' reports merged: frames written and found, the slowest rank's seconds, and
    each stage's seconds summed over the ranks."""
    reports = folder / "shards"
    job = {**job, "reports": str(reports)}
    job_file = atomic_write_json(reports / "job.json", job)
    for old in reports.glob("*/rank*.json"):  # a report of an earlier, killed run is not this run's
        old.unlink()
    where = f"{procs} processes" + (f" on this one of {nodes.count} nodes" if nodes.count > 1 else "")
    print(f"[wrp] propagate {', '.join(job['policies'])}: {where} (torchrun)", flush=True)
    code = run_child([*torchrun_prefix(procs, nodes.count, nodes.rank, nodes.rdzv_endpoint),
                      "-m", "wrp.shards", str(job_file)])
    if code != 0:
        raise RuntimeError(f"labelling in {where} failed (torchrun exit {code}); its log is above. "
                           f"A rerun resumes from the labels in {folder / 'labels'}")
    merged = {}
    for policy in job["policies"]:
        ranks = _rank_reports(reports / policy)
        world = ranks[0]["world"] if ranks else procs * nodes.count  # other nodes may run other --nproc
        if len(ranks) != world:
            raise RuntimeError(f"{world - len(ranks)} of {world} labelling processes reported nothing "
                               f"for {policy} in {reports / policy}")
        stages: dict[str, float] = {}
        for r in ranks:
            for stage, seconds in r["stages"].items():
                stages[stage] = round(stages.get(stage, 0.0) + seconds, 3)
        merged[policy] = {"frames": sum(r["frames"] for r in ranks),
                          "skipped": sum(r["skipped"] for r in ranks),
                          # the slowest rank's own time: the nodes' clocks need not agree
                          "seconds": max(r["seconds"] for r in ranks),
                          "processes": world, "stages": stages}
    return merged


def _rank_reports(folder: Path, patience: float = 30.0) -> list[dict[str, Any]]:
    """The ranks' reports in ``folder``: as many as their own ``world`` says, waiting up to
    ``patience`` seconds for files another node wrote to appear (a shared file system may list a
    folder late)."""
    deadline = time.monotonic() + patience
    while True:
        ranks = [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]
        if (ranks and len(ranks) >= ranks[0]["world"]) or time.monotonic() > deadline:
            return ranks
        time.sleep(1.0)


def every_frame_labelled(clips, truth) -> bool:
    """Whether ``truth`` labels the frames of ``clips`` beyond their labelled ones (the synthetic world)."""
    clip = clips[0]
    other = 0 if clip.labelled else 1
    return truth.label_path(clip.clip_id, other).is_file()


# ---------------------------------------------------------------------------------------------
# Table cells: segmenters trained on human + generated labels (supplementary 3.1, Tables 1 and 2)
# ---------------------------------------------------------------------------------------------
def generated_frames(run: Run, k: int | None = None) -> tuple[Manifest, list[tuple[Any, int]]]:
    """The run's manifest and its training frames within ±k (default the profile's k) of their
    labelled frame, as (clip, position): the frames every policy labels for a table cell."""
    k = run.profile.k if k is None else k
    if not 1 <= k <= run.profile.k:
        raise ValueError(f"k={k} must lie in 1..{run.profile.k} (the profile's propagation range)")
    manifest = Manifest.load(manifest_for(run))
    return manifest, [(clip, pos) for clip in manifest.clips("train") for pos in range(len(clip))
                      if 1 <= abs(pos - clip.labelled) <= k]


def generated_pairs(run: Run, policy: str, k: int | None = None,
                    labels: Path | None = None) -> list[list[str]]:
    """(image, label) paths of a policy's labels for the training frames within ±k (default the
    profile's k) of their labelled frame, propagated first if needed (:func:`propagate`) — or, with
    ``labels``, those of ``labels/<policy>/`` in that folder instead (a variant of the policy's
    labels that a benchmark built: every frame must have one).

    :data:`TRUE_LABELS` gives the dataset's own label of each of those frames instead: what a
    flawless propagation would give, the ceiling of every policy (the synthetic world labels every
    frame). :data:`CONFIDENT` gives warp-refine's labels with the pixels of confidence below the
    profile's ``table_min_confidence`` unlabelled (:func:`~wrp.policies.confident_labels`)."""
    manifest, frames = generated_frames(run, k)
    if policy == TRUE_LABELS and labels is None:
        truth = manifest.ground_truth("train")
        paths = [true_label(truth, clip.clip_id, pos, repr(policy)) for clip, pos in frames]
    else:
        if labels is not None:
            folder, name = Path(labels), policy
        elif policy == CONFIDENT:
            folder, name = confident_stage(run)
        else:
            folder, name = training_labels(run, policy), policy
        paths = [label_file(folder / "labels", name, clip.frames[pos]) for clip, pos in frames]
        missing = [p for p in paths if not p.is_file()] if labels is not None else []
        if missing:
            raise FileNotFoundError(f"{missing[0]} (and {len(missing) - 1} more) missing: {labels} does not "
                                    "label every training frame the cell trains on; build it again")
    return [[str(clip.images[pos]), str(path)] for (clip, pos), path in zip(frames, paths, strict=True)]


def training_labels(run: Run, policy: str) -> Path:
    """The propagation stage whose ``labels/<policy>/`` the training records' frames are labelled
    with for a table's column of that policy (:func:`propagate`, split ``train``) — warp-refine's
    with its confidence maps, which the confident column reads too."""
    return propagate(run, "train", (policy,), confidence=policy == "warp-refine")


def confident_stage(run: Run) -> tuple[Path, str]:
    """Stage ``confident-labels``: the training records' warp-refine labels (the warp-refine
    column's own, with their confidence) with the pixels below the profile's
    ``table_min_confidence`` unlabelled. Returns the folder (``labels/…``) and the variant's name."""
    tau, k = run.profile.table_min_confidence, run.profile.k
    source = training_labels(run, "warp-refine")
    manifest = manifest_for(run)

    def build(out: Path) -> dict[str, Any]:
        clips = Manifest.load(manifest).clips("train")
        return {"name": confident_labels(clips, "warp-refine", source / "labels", tau, k, out / "labels")}

    config = {"propagation": str(source), "manifest": str(manifest), "policy": "warp-refine",
              "min_confidence": tau, "k": k}
    folder = Stage("confident-labels", config).run(build, verbose=run.progress)
    return folder, f"warp-refine@{tau:g}"


def true_label(truth: Any, clip_id: str, position: int, needed_by: str) -> Path:
    """The dataset's own label of a frame, or an error naming the file when it has none."""
    path = truth.label_path(clip_id, position)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no true label of this frame; {needed_by} needs a dataset that "
                                "labels every frame (the synthetic world)")
    return path


def train_cell(run: Run, arch: str = "msa_hrnet_ocr", policy: str | None = None, k: int | None = None,
               loss: str = "ce", iters_share: float = 1.0, lr_factor: float = 1.0,
               train_seed: int | None = None, labels: Path | None = None) -> dict[str, Any]:
    """One table cell: a segmenter trained on the human labels (+ ``policy``'s generated labels of
    ±``k``: by default the profile's k, ±:data:`MOTION_ONLY_K` for motion-only; ``labels``: a
    folder holding a variant of them, :func:`generated_pairs`) with the budget
    every cell of a table shares — ``iters_share`` of the profile's ``table_iters`` at its
    ``table_crop`` — and ``lr_factor`` × the dataset's base LR.
    ``run.seed`` picks the world, its split and the models that generate its labels; ``train_seed``
    (default ``run.seed``) only the segmenter's own initialisation and sampling — the paper's
    protocol of one dataset, one set of generated labels and several training seeds.
    Scored on the validation records' labelled frames, or on all their frames where the profile's
    ``table_eval`` is ``"every"`` (:func:`score_every_frame`), or on every frame of the world the
    profile's ``table_score_world`` names. Returns those scores (mIoU, per-class IoU,
    ``eval_frames``) with the stage folder."""
    prof = run.profile
    generated, init = cell_inputs(run, arch, policy, k, labels)
    overrides: dict[str, Any] = {"loss": loss, "crop": list(prof.frame_crop(prof.table_crop)),
                                 "iters": max(1, round(prof.table_iters * iters_share))}
    if lr_factor != 1.0:
        overrides["base_lr"] = base_lr_for(run) * lr_factor
    if init is not None:
        overrides["init"] = str(init)
    if generated:
        overrides["generated_min_pixels"] = prof.table_min_class_pixels
    folder = train_segmenter(run, arch, train_seed=train_seed, generated=generated, **overrides)
    metrics = json.loads((folder / "metrics.json").read_text())
    if prof.table_eval == "every":
        scores = score_every_frame(run, folder, prof.table_score_world)
        metrics = json.loads((scores / "metrics.json").read_text())
    return {**metrics, "eval_frames": metrics["images"], "stage": str(folder)}


def cell_inputs(run: Run, arch: str = "msa_hrnet_ocr", policy: str | None = None, k: int | None = None,
                labels: Path | None = None) -> tuple[list[list[str]] | None, Path | None]:
    """What the cell :func:`train_cell` trains from, built first where needed: the (image, label)
    pairs of ``policy``'s generated labels (``None`` for Baseline; motion-only's from
    ±:data:`MOTION_ONLY_K` unless ``k`` says otherwise) and the weights it starts from (``None``:
    random, unless the profile names a ``table_pretrain`` style). Building them before the cells
    lets the cells of a table train side by side (``wrp.tables.train_cells``) on inputs that the
    whole machine built once."""
    manifest_for(run)
    if k is None and policy == "motion-only":
        k = MOTION_ONLY_K
    generated = generated_pairs(run, policy, k, labels) if policy not in (None, "baseline") else None
    init = pretrained_segmenter(run, arch) / "model.pt" if run.profile.table_pretrain else None
    return generated, init


def pretrained_segmenter(run: Run, arch: str, style: str | None = None, labels: str | None = None) -> Path:
    """Stage ``segmenter`` of the weights every Table cell of ``arch`` starts from when the profile
    names a ``table_pretrain`` style (or ``g_ψ`` when it names a ``teacher_pretrain`` style, given as
    ``style`` with ``labels`` the label set, default the 19 classes): a segmenter trained on another
    world — that style, seed
    :data:`PRETRAIN_SEED`, :data:`PRETRAIN_RECORDS` training records whatever the table's world
    has, every frame of their partitions labelled (its true labels) — for the profile's
    ``seg_iters`` at the table's crop, on the 19 classes or, where ``table_pretrain_labels`` is
    ``"categories"``, on the 7 Cityscapes categories only. The analogue of the paper's students, which
    start from ImageNet weights: a cell fine-tunes features it already has, so what it learns
    from the table's labels is the table's data, not how to see at all."""
    prof = run.profile
    if style is None:
        style = prof.table_pretrain
        labels = prof.table_pretrain_labels
    other = replace(run.with_seed(PRETRAIN_SEED).with_profile(style=style, train_records=PRETRAIN_RECORDS),
                    dataset=None)
    labels = None if labels in (None, "classes") else labels
    return train_segmenter(other, arch, generated=generated_pairs(other, TRUE_LABELS),
                           crop=list(prof.frame_crop(prof.table_crop)), iters=prof.seg_iters,
                           label_set=labels)


def every_frame_samples(run: Run, splits: tuple[str, ...] = ("val",),
                        frames: str = "every") -> list[tuple[Path, Path]]:
    """(image, label) of every frame of the records of ``splits`` (default: the validation
    records), or an error naming the fix when the dataset labels only their labelled frames (a
    table asks before it trains a cell). ``frames``: ``"every"``, or only the human-labelled frame
    of each partition (``"labelled"``) or only its other frames (``"unlabelled"``)."""
    if frames not in ("every", "labelled", "unlabelled"):
        raise ValueError(f"frames={frames!r} must be 'every', 'labelled' or 'unlabelled'")
    m = Manifest.load(manifest_for(run))
    samples = []
    for split in splits:
        clips, truth = m.clips(split), m.ground_truth(split)
        if not every_frame_labelled(clips, truth):
            raise ValueError(f"table_eval='every' scores every frame of the {split} records, and "
                             f"{run.dataset} labels only their labelled frames; use table_eval='labelled' "
                             "(--eval-frames labelled)")
        samples += [(clip.images[pos], true_label(truth, clip.clip_id, pos, "table_eval='every'"))
                    for clip in clips for pos in range(len(clip))
                    if frames == "every" or (pos == clip.labelled) == (frames == "labelled")]
    return samples


def score_every_frame(run: Run, segmenter: Path, world: int | None = None) -> Path:
    """Stage ``segmenter-score``: the segmenter of stage folder ``segmenter`` scored on every frame
    of the validation records, not only their labelled frames (``metrics.json``: mIoU, per-class
    IoU, confusion, ``images``). A table cell scored on 21× more frames (correlated, but views the
    labelled frame does not show) measures the segmenter, not the luck of 16 frames. Needs a
    dataset that labels every frame (the synthetic world). With ``world``: on every frame of every
    record (training and validation) of that seed's synthetic world instead — the profile's world
    with another seed, drawn independently of the one the segmenter learnt from."""
    where = run if world is None else replace(run.with_seed(world), dataset=None)
    splits = ("val",) if world is None else ("train", "val")
    manifest = manifest_for(where)
    samples = every_frame_samples(where, splits)

    def build(out: Path) -> dict[str, Any]:
        job = job_from_file(segmenter / "job.json")
        model = load_model(job, segmenter, run.device)
        scores = evaluate(model, samples, run.device, progress=run.progress,
                          label_set=job.data.kwargs.get("label_set"))
        atomic_write_json(out / "metrics.json", scores)
        return {"miou": scores["miou"], "images": scores["images"]}

    config = {"segmenter": str(segmenter), "manifest": str(manifest), "split": "val", "frames": "every"}
    if world is not None:  # the key of a score on the run's own records is the one it always was
        config.update(split=list(splits), world=world)
    return Stage("segmenter-score", config).run(build, verbose=run.progress)
