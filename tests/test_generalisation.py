"""Generalisation: the world family, Ω's gate chosen without ground truth, and the warning users see
when Ω does not help."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wrp.cache import canonical_config
from wrp.data import NUM_CLASSES, read_label
from wrp.denoiser import GATE_THRESHOLDS, Gate, _choose_gate, refinement_warning
from wrp.metrics import confusion_matrix, mean_iou
from wrp.profiles import Run
from wrp.synthetic import HELD_OUT_STYLE, SIDEWALK, STYLES, SynthConfig, build_scene, render
from wrp.train import Builder, Job, TrainConfig

K = NUM_CLASSES
TINY = {"height": 48, "width": 96, "records": 2, "frames_per_record": 4}


# ---------------------------------------------------------------------------------------------
# The world family
# ---------------------------------------------------------------------------------------------
def test_the_family_holds_a_held_out_style_and_the_street_keeps_the_original_world_key():
    assert HELD_OUT_STYLE in STYLES and "street" in STYLES and len(STYLES) >= 3
    assert "style" not in canonical_config(SynthConfig(**TINY))  # worlds made before styles keep their key
    assert canonical_config(SynthConfig(**TINY, style="verge"))["style"] == "verge"


def test_every_style_renders_a_different_image_of_the_same_street_size():
    images = {}
    for style in STYLES:
        config = SynthConfig(**TINY, style=style)
        frame = render(config, build_scene(config, 0), 2.0)
        assert frame.image.shape == (48, 96, 3) and np.isfinite(frame.image).all()
        images[style] = frame.image
    others = [s for s in STYLES if s != "street"]
    assert all(not np.array_equal(images["street"], images[s]) for s in others)


def test_a_one_sidewalk_style_has_sidewalk_only_right_of_the_road():
    assert STYLES["verge"].sidewalks == "right"

    def sidewalk_x(style: str) -> np.ndarray:  # world x of every sidewalk pixel of a few views
        config = SynthConfig(height=96, width=192, records=3, frames_per_record=2, style=style)
        frames = [render(config, build_scene(config, r), 0.0) for r in range(3)]
        return np.concatenate([f.point[f.label == SIDEWALK][:, 0] for f in frames])

    verge, street = sidewalk_x("verge"), sidewalk_x("street")
    assert verge.size and (verge > 0).all()  # world x > 0: right of the road's centre
    assert (street < 0).any() and (street > 0).any()


def test_an_unknown_style_and_a_style_with_a_prepared_dataset_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a world style"):
        SynthConfig(**TINY, style="mars")
    with pytest.raises(ValueError, match="drop --style"):
        Run.create("smoke", dataset=tmp_path, style="verge", device="cpu")


# ---------------------------------------------------------------------------------------------
# The gate
# ---------------------------------------------------------------------------------------------
def _probs(ids: np.ndarray, conf: np.ndarray, k: int = K) -> torch.Tensor:
    """(B, k, H, W) class probabilities whose most likely class is ``ids`` (B, H, W) with
    probability ``conf``."""
    rest = (1 - conf) / (k - 1)
    probs = np.repeat(rest[:, None], k, axis=1)
    np.put_along_axis(probs, ids[:, None].astype(np.int64), conf[:, None], axis=1)
    return torch.from_numpy(probs.astype(np.float32))


def test_the_gate_keeps_the_input_where_omega_is_not_sure_enough_and_fills_unlabelled_pixels():
    ids = np.array([[[1, 2, 3, 4]]], np.uint8)
    conf = np.array([[[0.99, 0.6, 0.99, 0.6]]], np.float32)
    inputs = torch.tensor([[[1, 5, 5, 255]]])
    valid = torch.tensor([[[True, True, False, False]]])
    probs = _probs(ids, conf)
    assert Gate().apply(probs, inputs, valid)[0].tolist() == [[[1, 2, 3, 4]]]  # Ω alone
    assert Gate.closed().apply(probs, inputs, valid)[0].tolist() == [[[1, 5, 5, 4]]]  # 255 takes Ω's
    gate = Gate(valid=(0.9,) * K, unexplained=(0.5,) * K)
    out, sure = gate.apply(probs, inputs, valid)
    assert out.tolist() == [[[1, 5, 3, 4]]]
    assert sure[0, 0, 1] == pytest.approx(0.4 / (K - 1))  # Ω's probability of the label kept


def test_the_chosen_gate_is_never_worse_than_the_input_and_closes_on_a_class_omega_gets_wrong():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, K, (6, 32, 64)).astype(np.uint8)
    inputs = truth.copy()
    noisy = rng.random(truth.shape) < 0.2
    inputs[noisy] = rng.integers(0, K, noisy.sum())
    pred = truth.copy()
    pred[truth == 4] = 3  # Ω confidently turns class 4 into class 3 (the sidewalk → vegetation kind)
    conf = (0.5 + 0.5 * rng.random(truth.shape)).astype(np.float32)
    valid = rng.random(truth.shape) < 0.7
    gate, score = _choose_gate(pred, conf, inputs, valid, truth, GATE_THRESHOLDS, K)
    before = mean_iou(confusion_matrix(inputs, truth, K))
    assert score >= before
    assert gate.valid[7] < 1.0  # Ω may fix the classes it knows
    probs = _probs(pred, conf)
    out = gate.apply(probs, torch.from_numpy(inputs), torch.from_numpy(valid))[0].numpy()
    assert mean_iou(confusion_matrix(out, truth, K)) == pytest.approx(score)
    right4 = (truth == 4) & (inputs == 4)
    assert (out[right4] == 4).all()  # but never turns a right class-4 label into class 3
    assert score > before + 5
    # an Ω that is always wrong gets the closed gate: its input is kept
    wrong = ((truth.astype(np.int64) + 1) % K).astype(np.uint8)
    gate, score = _choose_gate(wrong, np.ones_like(conf), inputs, valid, truth, GATE_THRESHOLDS, K)
    assert gate == Gate.closed() and score == pytest.approx(before)


def test_the_chosen_gate_is_at_least_the_best_gate_on_omegas_class_alone():
    """Gating on the input's class too must never score below gating on Ω's class alone (the
    gate before it): on small problems every gate on Ω's class alone is tried, scored through
    :meth:`Gate.apply`, and the chosen gate is at least the best of them. (An ascent that starts
    from one threshold for every group, as the chooser once did, stops below it on most.)"""
    k, thresholds = 3, (0.0, 0.6, 1.0)

    def noisy(truth: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
        other = rng.integers(0, k, truth.shape)
        return np.where(rng.random(truth.shape) < share, other, truth).astype(np.uint8)

    def scored(levels: tuple[float, ...], probs: torch.Tensor, inputs: np.ndarray, valid: np.ndarray,
               truth: np.ndarray) -> float:
        gate = Gate(levels[:k], levels[k:], (0.0,) * k, (0.0,) * k)
        out = gate.apply(probs, torch.from_numpy(inputs), torch.from_numpy(valid))[0].numpy()
        return mean_iou(confusion_matrix(out, truth, k))

    for seed in range(6):
        rng = np.random.default_rng(seed)
        truth = rng.integers(0, k, (2, 16, 16)).astype(np.uint8)
        inputs, pred = noisy(truth, 0.3, rng), noisy(truth, 0.35, rng)
        conf = rng.random(truth.shape).astype(np.float32)
        valid = rng.random(truth.shape) < 0.6
        _, score = _choose_gate(pred, conf, inputs, valid, truth, thresholds, k, min_support=0.0)
        probs = _probs(pred, conf, k)
        best = max(scored(levels, probs, inputs, valid, truth)
                   for levels in itertools.product(thresholds, repeat=2 * k))
        assert score >= best - 1e-6, f"seed {seed}: chosen {score:.3f} < {best:.3f} on Ω's class alone"


def test_a_class_too_rare_to_judge_is_neither_erased_nor_written():
    """The selection records hold no class 3, and a few input pixels wrongly labelled 3 that Ω
    fixes — a small gain that would open Ω's licence to overwrite class-3 labels. Ω never learnt
    class 3: where it is common it erases it. Too rare to judge, its gates stay closed both ways."""
    rng = np.random.default_rng(1)
    truth = rng.integers(4, 8, (6, 32, 64)).astype(np.uint8)
    inputs = truth.copy()
    noisy = rng.random(truth.shape) < 0.2
    inputs[noisy] = rng.integers(4, 8, noisy.sum())
    inputs[0, 0, :4] = 3  # 4 input pixels of class 3 in 12288, all wrong
    pred = truth.copy()  # Ω is right on the selection records
    conf = np.ones(truth.shape, np.float32)
    valid = np.ones(truth.shape, bool)
    gate, score = _choose_gate(pred, conf, inputs, valid, truth, GATE_THRESHOLDS, K)
    assert gate.input_valid[3] == 1.0 and gate.valid[3] == 1.0  # class 3: closed both ways
    assert gate.input_valid[5] < 1.0 and gate.valid[5] < 1.0  # the common classes: Ω fixes them
    assert score > mean_iou(confusion_matrix(inputs, truth, K)) + 10
    opened, _ = _choose_gate(pred, conf, inputs, valid, truth, GATE_THRESHOLDS, K, min_support=0.0)
    assert opened.input_valid[3] < 1.0  # without the rule, those 4 pixels would open it
    # on a record where class 3 is common, its right labels survive
    common = np.full((1, 4, 8), 3, np.uint8)
    probs = _probs(np.full_like(common, 5), np.full(common.shape, 0.99, np.float32))
    out = gate.apply(probs, torch.from_numpy(common), torch.ones(common.shape, dtype=torch.bool))[0]
    assert (out == 3).all()
    erased = opened.apply(probs, torch.from_numpy(common), torch.ones(common.shape, dtype=torch.bool))[0]
    assert (erased == 5).all()
    assert Gate(**{"valid": [0.5] * K, "unexplained": [0.5] * K}).input_valid == (0.0,) * K  # older stages


def test_the_warning_names_both_numbers_and_the_cycle_lengths_where_omega_fails():
    helped = {"cyclic": 80.0, "refined": 85.0, "per_p": {1: {"cyclic": 90.0, "refined": 92.0}}}
    assert refinement_warning(helped) is None
    worse = {"cyclic": 86.3, "refined": 70.4, "per_p": {1: {"cyclic": 95.1, "refined": 75.4},
                                                        2: {"cyclic": 90.0, "refined": 91.0}}}
    text = refinement_warning(worse)
    assert "86.30" in text and "70.40" in text and "p=1: 95.10 → 75.40" in text and "p=2" not in text
    assert text.startswith("Ω does not improve")
    one_length = {"cyclic": 71.4, "refined": 80.7, "per_p": {1: {"cyclic": 92.8, "refined": 92.7},
                                                             2: {"cyclic": 80.0, "refined": 84.0}}}
    text = refinement_warning(one_length)  # better overall, worse at p=1: says both, not "does not improve"
    assert text.startswith("Ω improves the held-out cyclic labels overall (mIoU 71.40 before Ω, 80.70 after)")
    assert "p=1: 92.80 → 92.70" in text and "p=2" not in text


def test_snapshots_enter_a_job_key_only_when_asked_for():
    job = Job(Builder("denoiser-model"), Builder("denoiser-data"), Builder("segmentation-loss"),
              TrainConfig(iters=8, device="cpu"))
    assert "snapshot_every" not in job.to_json()["train"]  # every stage trained before keeps its key
    with_snapshots = Job(job.model, job.data, job.loss, TrainConfig(iters=8, device="cpu", snapshot_every=2))
    assert with_snapshots.to_json()["train"]["snapshot_every"] == 2
    assert Job.from_json(with_snapshots.to_json()) == with_snapshots


# ---------------------------------------------------------------------------------------------
# Through the stages and the command line, at the smoke profile
# ---------------------------------------------------------------------------------------------
def test_a_new_choice_of_gate_reuses_the_trained_omega(isolated_runs, monkeypatch):
    """Ω's training and the choice of its weights and gate are separate stages: a changed choice
    (here a bumped version) chooses again from the same snapshots without training Ω again, and
    the chosen folder reads like a training run's. It labels with the refit — Ω trained again on
    every training record, the selection records too — at the chosen snapshot's iteration."""
    import wrp.stages as stages
    from wrp.denoiser import score_cyclic
    from wrp.train import job_from_file, load_model

    run = Run.create("smoke", device="cpu", progress=False)
    first = stages.train_denoiser(run)
    metrics = json.loads((first / "metrics.json").read_text())
    trained, refit = Path(metrics["trained"]), Path(metrics["refit"])
    finished = [(folder / "stage.json").read_bytes() for folder in (trained, refit)]
    assert trained.parent.name == refit.parent.name == "denoiser" and first.parent.name == "refinement"
    assert refit != trained and job_from_file(trained / "job.json").data.kwargs["held_out"]
    assert "held_out" not in job_from_file(refit / "job.json").data.kwargs
    # the refit labels unless the validation records' cyclic labels score it lower (a tie keeps it)
    refit_labels = metrics["held_out_refit"]["refined"] >= metrics["held_out_before_refit"]["refined"]
    assert metrics["labels_with"] == ("refit" if refit_labels else "chosen")
    source = refit if refit_labels else trained
    twin = source / "snapshots" / metrics["selection"]["snapshot"]
    ours, theirs = torch.load(first / "model.pt"), torch.load(twin)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    other = torch.load((trained if refit_labels else refit) / "snapshots" / metrics["selection"]["snapshot"])
    assert not all(torch.equal(ours[k], other[k]) for k in ours)  # two trainings, two sets of weights
    # the validation records' cyclic labels score the refit, and the chosen weights before it
    samples, gate = stages.cyclic_samples_for(run, "val"), Gate(**metrics["selection"]["gate"])
    job = job_from_file(trained / "job.json")
    labelling = load_model(job_from_file(first / "job.json"), first)  # loads like a training run's
    assert metrics["held_out"] == json.loads(json.dumps(score_cyclic(labelling, samples, gate)))
    before = load_model(job, trained, weights=trained / metrics["selection"]["weights"])
    assert metrics["held_out_before_refit"] == json.loads(json.dumps(score_cyclic(before, samples, gate)))
    after = load_model(job, refit, weights=refit / metrics["selection"]["weights"])
    assert metrics["held_out_refit"] == json.loads(json.dumps(score_cyclic(after, samples, gate)))
    assert metrics["held_out"] == metrics["held_out_refit" if refit_labels else "held_out_before_refit"]
    assert metrics["checkpoint"] == str(first / "model.pt")

    monkeypatch.setattr(stages, "REFINEMENT_VERSION", stages.REFINEMENT_VERSION + 1)
    again = stages.train_denoiser(run)
    assert again != first and (again / "stage.json").is_file()
    # neither Ω was trained again
    assert [(folder / "stage.json").read_bytes() for folder in (trained, refit)] == finished
    assert json.loads((again / "metrics.json").read_text())["trained"] == str(trained)


def test_a_refit_the_validation_records_score_lower_does_not_label(isolated_runs, monkeypatch):
    """No record is left to check the refit's own weights, and a second training of the same recipe
    can fail on a class the first learnt: when the validation records' cyclic labels score the refit
    below the chosen Ω, the chosen Ω labels, the folder holds its weights and run, and the summary
    says so. (The refit's low score is injected: at smoke both Ω score alike.)"""
    import wrp.stages as stages
    from wrp.denoiser import refinement_warning
    from wrp.train import job_from_file

    loaded = {}
    real_load, real_score = stages.load_model, stages.score_cyclic

    def load_model(job, folder, *args, **kwargs):
        model = real_load(job, folder, *args, **kwargs)
        loaded[id(model)] = Path(folder)
        return model

    def score_cyclic(model, samples, gate=None, **kwargs):
        scores = real_score(model, samples, gate, **kwargs)
        if loaded.get(id(model), Path()).name == refit_key:  # the refit: 5 points lower everywhere
            scores = {**scores, "refined": scores["refined"] - 5,
                      "per_p": {p: {**v, "refined": v["refined"] - 5} for p, v in scores["per_p"].items()}}
        return scores

    run = Run.create("smoke", device="cpu", progress=False)
    refit_key = stages.denoiser_training(run, select=False).name
    monkeypatch.setattr(stages, "load_model", load_model)
    monkeypatch.setattr(stages, "score_cyclic", score_cyclic)
    folder = stages.train_denoiser(run)
    metrics = json.loads((folder / "metrics.json").read_text())
    trained, refit = Path(metrics["trained"]), Path(metrics["refit"])
    assert refit.name == refit_key and refit != trained
    assert metrics["labels_with"] == "chosen"
    assert metrics["held_out_refit"]["refined"] < metrics["held_out_before_refit"]["refined"]
    # the check reads the Ω that labels: the folder's own weights (their score is not lowered)
    gate = Gate(**metrics["selection"]["gate"])
    own = score_cyclic(real_load(job_from_file(folder / "job.json"), folder),
                       stages.cyclic_samples_for(run, "val"), gate)
    assert metrics["held_out"] == metrics["held_out_before_refit"] == json.loads(json.dumps(own))
    assert metrics["warning"] == refinement_warning(metrics["held_out"])
    assert metrics["final_loss"] == json.loads((trained / "result.json").read_text())["final_loss"]
    ours, chosen = torch.load(folder / "model.pt"), torch.load(trained / metrics["selection"]["weights"])
    assert ours.keys() == chosen.keys() and all(torch.equal(ours[k], chosen[k]) for k in ours)
    assert job_from_file(folder / "job.json").data.kwargs["held_out"]  # the chosen run's job
    assert (folder / "log.csv").read_bytes() == (trained / "log.csv").read_bytes()
    assert f"not its refit on every training record: that scored {metrics['held_out_refit']['refined']:.2f}" \
        in stages.denoiser_summary(folder)


def test_with_one_training_record_omega_is_chosen_on_what_it_trained_on_and_not_refitted(isolated_runs):
    """One training record leaves none to hold out: Ω is trained once, on it, the snapshot and gate
    are chosen on its own cyclic labels (and the choice says so), nothing is refitted, and the
    labelling weights are the chosen snapshot itself."""
    import wrp.stages as stages
    from wrp.denoiser import score_cyclic
    from wrp.train import job_from_file, load_model

    run = Run.create("smoke", device="cpu", progress=False, train_records=1)
    assert stages.selection_clips(run) == []
    folder = stages.train_denoiser(run)
    metrics = json.loads((folder / "metrics.json").read_text())
    trained = Path(metrics["trained"])
    assert metrics["refit"] == metrics["trained"]
    assert "held_out" not in job_from_file(trained / "job.json").data.kwargs
    assert "records it trained on" in metrics["selection"]["note"]
    assert metrics["held_out_before_refit"] == metrics["held_out"]
    assert metrics["labels_with"] == "chosen" and metrics["held_out_refit"] is None
    ours, chosen = torch.load(folder / "model.pt"), torch.load(trained / metrics["selection"]["weights"])
    assert ours.keys() == chosen.keys() and all(torch.equal(ours[k], chosen[k]) for k in ours)
    samples, gate = stages.cyclic_samples_for(run, "val"), Gate(**metrics["selection"]["gate"])
    scored = score_cyclic(load_model(job_from_file(folder / "job.json"), folder), samples, gate)
    assert metrics["held_out"] == json.loads(json.dumps(scored))
    assert "before the refit" not in stages.denoiser_summary(folder)
    assert sum(1 for _ in (isolated_runs / "stages" / "denoiser").iterdir()) == 1  # Ω trained once


def test_a_failing_omega_is_chosen_out_and_the_user_is_warned(isolated_runs, capsys):
    """Ω trained for 4 iterations (smoke) cannot repair anything: left alone it ruins the held-out
    cyclic labels; the selection closes its gate, warp-refine keeps the warped labels and every
    command that uses Ω says so."""
    from wrp.cli import main
    from wrp.denoiser import score_cyclic
    from wrp.stages import cyclic_samples_for, propagate, train_denoiser
    from wrp.train import job_from_file, load_model

    assert main(["train-denoiser", "--profile", "smoke", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "WARNING: Ω does not improve the held-out cyclic labels" in printed
    run = Run.create("smoke", device="cpu", progress=False)
    folder = train_denoiser(run)
    metrics = json.loads((folder / "metrics.json").read_text())
    selection = metrics["selection"]
    assert selection["clips"] and selection["chosen_miou"] >= selection["input_miou"]
    assert len(list((Path(metrics["trained"]) / "snapshots").glob("*.pt"))) == 4
    assert metrics["warning"] and metrics["held_out"]["refined"] <= metrics["held_out"]["cyclic"]

    omega = load_model(job_from_file(folder / "job.json"), folder)
    alone = score_cyclic(omega, cyclic_samples_for(run, "val"))
    assert alone["refined"] < alone["cyclic"] - 20  # Ω alone turns right labels wrong ...
    assert metrics["held_out"]["refined"] > alone["refined"]  # ... the gate does not let it

    labels = propagate(run, "val", ("motion-only", "warp-refine"))
    assert json.loads((labels / "report.json").read_text())["denoiser_warning"] == metrics["warning"]
    if Gate(**selection["gate"]) == Gate.closed():
        motion = sorted((labels / "labels" / "motion-only").rglob("*.png"))
        refined = sorted((labels / "labels" / "warp-refine").rglob("*.png"))
        assert len(motion) == len(refined) > 0
        same = [np.mean(read_label(a) == read_label(b)) for a, b in zip(motion, refined, strict=True)]
        assert min(same) > 0.99  # the warped labels (Ω fills only what the motion left unlabelled)
