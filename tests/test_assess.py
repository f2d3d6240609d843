"""``wrp assess``: the cycle-agreement estimate of generated labels, with no labels beyond the
labelled frames, and how well the policies' confidence is calibrated.

What they protect: the estimate of a frame is the human label carried there and back by the policy
itself (a perfect carrier agrees perfectly); Spearman's ρ and the expected calibration error are
the textbook quantities; ``wrp assess`` runs on a prepared tree in the real layout — which labels
only the labelled frames — and writes ``quality.csv`` / ``assess.json`` / ``quality.png``; on the
synthetic world it also scores the estimate against the truth.
"""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.test_prepare_frames import make_frames, prepare
from wrp.assess import Reliability, carry, cycle_agreement, frame_scores, spearman, summarise
from wrp.cli import main
from wrp.data import Manifest
from wrp.motion import make_estimator
from wrp.policies import Propagator


def test_spearman_is_the_rank_correlation_with_mean_ranks_for_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x: 1, 2.5, 2.5, 4 — y: 1, 2, 3, 4 → Pearson of the ranks
    expected = np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]
    assert spearman([5, 7, 7, 9], [1, 2, 3, 4]) == pytest.approx(expected)


def test_expected_calibration_error_is_the_weighted_gap_of_confidence_and_accuracy():
    rel, rng = Reliability(), np.random.default_rng(0)
    conf = np.array([0.95] * 10 + [0.55] * 10)
    right = np.array([True] * 9 + [False] + [True] * 5 + [False] * 5)
    rel.add(conf, right, rng)
    # bin 0.9–1.0: confidence 0.95, accuracy 0.9; bin 0.5–0.6: 0.55 vs 0.5 — each half the pixels
    assert rel.ece() == pytest.approx(100 * (0.5 * 0.05 + 0.5 * 0.05))
    kept = rel.coverage_accuracy([0.9])[0]
    assert kept == {"threshold": 0.9, "coverage": 50.0, "accuracy": 90.0}


def test_frame_scores_count_an_unlabelled_pixel_as_disagreeing():
    truth = np.array([[0, 0], [1, 1]], np.uint8)
    assert frame_scores(truth, truth) == (100.0, 100.0)
    miou, agree = frame_scores(np.array([[0, 255], [1, 1]], np.uint8), truth)
    assert agree == 75.0 and miou == pytest.approx(100 * (0.5 + 1.0) / 2)


class _Still:
    """A clip that does not move: every frame is the labelled one."""

    clip_id, labelled = "still", 2
    frames = [SimpleNamespace(stem=f"still_{i}") for i in range(5)]

    def __init__(self, image: np.ndarray, label: np.ndarray) -> None:
        self._image, self._label = image, label

    def __len__(self) -> int:
        return 5

    def image(self, pos: int) -> np.ndarray:
        return self._image

    def label(self, pos: int) -> np.ndarray:
        return self._label


def test_a_still_clip_comes_back_unchanged_so_its_estimate_is_perfect():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 48, 3), np.uint8)
    label = np.repeat(np.arange(4, dtype=np.uint8), 12)[None].repeat(32, 0)
    clip = _Still(image, label)
    start = torch.from_numpy(label)
    out = carry(Propagator(make_estimator("dis")), "motion-only", [(clip, [2, 3, 4, 3, 2], start)])
    assert len(out[0]) == 4 and all(np.array_equal(ids.numpy(), label) for ids, _ in out[0])
    rows, _ = cycle_agreement([clip], ["motion-only"], Propagator(make_estimator("dis")), 2, progress=False)
    assert [(r["distance"], r["estimate_miou"], r["agreement"]) for r in rows] == [(1, 100.0, 100.0),
                                                                                    (2, 100.0, 100.0)]


def test_the_synthetic_world_scores_the_estimate_against_the_truth(isolated_runs):
    from wrp.profiles import Run
    from wrp.stages import manifest_for

    manifest = Manifest.load(manifest_for(Run.create("smoke", progress=False)))
    clips = manifest.clips("val")
    rows, reliability = cycle_agreement(clips, ["motion-only"], Propagator(make_estimator("dis")), 3,
                                        manifest.ground_truth("val"), progress=False)
    assert {r["distance"] for r in rows} == {1, 2, 3} and all(r["true_miou"] != "" for r in rows)
    summary = summarise(rows, reliability)["motion-only"]
    assert -1.0 <= summary["spearman"] <= 1.0 and 0.0 <= summary["ece"] <= 100.0
    assert summary["keep_90_at_k"]["distance"] == 3 and summary["keep_90_at_k"]["kept"]["coverage"] >= 89
    assert summary["median_true"][1] >= summary["median_true"][3] - 5  # labels do not improve with d
    with pytest.raises(ValueError, match="'copy'.*carries a label there and back"):
        cycle_agreement(clips, ["copy"], Propagator(make_estimator("dis")), 3, progress=False)


def test_assess_runs_on_a_prepared_tree_that_labels_only_the_labelled_frames(tmp_path, isolated_runs, capsys):
    frames, labels = make_frames(tmp_path, extra=False)
    tree = tmp_path / "tree"
    prepare(frames, labels, tree)
    out = tmp_path / "quality"
    assert main(["assess", "--profile", "smoke", "--dataset", str(tree), "--no-progress", "--split", "train",
                 "--policy", "motion-only", "--policy", "warp-refine", "--k", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "check first" in printed and f"{out / 'quality.png'}" in printed
    with open(out / "quality.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["policy"] for r in rows} == {"motion-only", "warp-refine"}
    assert {r["distance"] for r in rows} == {"1", "2"} and all(r["true_miou"] == "" for r in rows)
    summary = json.loads((out / "assess.json").read_text())["policies"]
    assert "spearman" not in summary["warp-refine"]  # no truth beyond the labelled frames
    assert (out / "quality.png").stat().st_size > 10_000


def test_min_confidence_writes_a_variant_beside_the_whole_labels(tmp_path, isolated_runs):
    """--min-confidence τ: ``<policy>@τ`` holds the labels with the unconfident pixels unlabelled,
    scored as a policy of its own; the propagated labels stay whole (the next steps start from them)."""
    from wrp.data import IGNORE_INDEX, read_label
    from wrp.policies import label_file, read_accuracy, read_confidence
    from wrp.profiles import Run
    from wrp.stages import manifest_for, propagate

    run = Run.create("smoke", device="cpu", progress=False)
    out = propagate(run, "val", ("motion-only",), out=tmp_path / "labels", min_confidence=0.5)
    clip = Manifest.load(manifest_for(run)).clips("val")[0]
    frame = clip.frames[clip.labelled + 2]
    whole = read_label(label_file(out / "labels", "motion-only", frame))
    kept = read_label(label_file(out / "labels", "motion-only@0.5", frame))
    confidence = read_confidence(str(label_file(out / "labels", "motion-only", frame)).replace(
        "_gtFine_labelIds.png", "_confidence.png"))
    assert np.array_equal(kept == IGNORE_INDEX, (confidence < 0.5) | (whole == IGNORE_INDEX))
    assert np.array_equal(kept[confidence >= 0.5], whole[confidence >= 0.5])
    rows = {(r["policy"], int(r["distance"])): r for r in read_accuracy(out)}
    assert rows["motion-only@0.5", 1]["coverage"] <= rows["motion-only", 1]["coverage"] == 100.0
    assert "miou_labelled" in rows["motion-only", 1]
    with pytest.raises(ValueError, match="copy policy has no confidence"):
        propagate(run, "val", ("copy",), out=tmp_path / "copy", min_confidence=0.5)
