"""wrp.export: train ids → Cityscapes label-id PNGs, and the official evaluator agrees with wrp.metrics."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO
from wrp.data import IGNORE_INDEX, LABEL_TO_TRAIN, NUM_CLASSES, DatasetError, FrameRef, read_label
from wrp.export import (
    export_frame,
    export_label_ids,
    export_tree,
    official_evaluation,
    pair_with_ground_truth,
    to_label_ids,
    wrp_evaluation,
)
from wrp.metrics import confusion_matrix, iou, mean_iou

VALID_IDS = np.array([lab for lab in range(34) if LABEL_TO_TRAIN[lab] != 254])  # every Cityscapes label id


def test_train_ids_round_trip_through_exported_label_ids(tmp_path):
    train_ids = np.array([[0, 1, 2, 18], [13, 255, 11, 5]], np.uint8)
    path = export_label_ids(train_ids, tmp_path / "x_000000_000001_gtFine_labelIds.png")
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tolist() == [[7, 8, 11, 33], [26, 0, 24, 17]]
    assert np.array_equal(read_label(path), train_ids), "255 (unlabelled) → id 0 → read back as 255"
    assert not list(tmp_path.glob(".*")), "written atomically: no temporary file left behind"


def test_ids_that_are_no_train_id_are_refused():
    with pytest.raises(ValueError, match="train ids \\[19, 200\\] are neither a class"):
        to_label_ids(np.array([[19, 200, 3]]))
    with pytest.raises(ValueError, match="a label map is \\(H, W\\)"):
        to_label_ids(np.zeros((2, 2, 3), np.uint8))


def test_export_frame_names_the_file_as_cityscapes_does(tmp_path):
    ref = FrameRef("val", "frankfurt", "000000", 294)
    ids = np.zeros((4, 4), np.uint8)
    name = "frankfurt_000000_000294_gtFine_labelIds.png"
    assert export_frame(ids, ref, tmp_path) == tmp_path / "gtFine" / "val" / "frankfurt" / name
    assert export_frame(ids, ref, tmp_path / "flat", flat=True) == tmp_path / "flat" / name


def test_export_tree_converts_train_id_files_checks_label_id_files_and_reruns_idempotently(tmp_path):
    src = tmp_path / "predictions" / "val" / "lindau"
    src.mkdir(parents=True)
    cv2.imwrite(str(src / "lindau_000001_000019_labelTrainIds.png"), np.full((4, 8), 13, np.uint8))
    out = export_tree(tmp_path / "predictions", tmp_path / "results", "*.png", train_ids=True, progress=False)
    assert out == [tmp_path / "results/val/lindau/lindau_000001_000019_gtFine_labelIds.png"]
    assert (cv2.imread(str(out[0]), cv2.IMREAD_UNCHANGED) == 26).all(), "train id 13 (car) → label id 26"
    mtime = out[0].stat().st_mtime_ns
    export_tree(tmp_path / "predictions", tmp_path / "results", "*.png", train_ids=True, progress=False)
    assert out[0].stat().st_mtime_ns == mtime, "an identical file is not rewritten"
    flat = export_tree(tmp_path / "results", tmp_path / "flat", flat=True, progress=False)
    assert flat == [tmp_path / "flat/lindau_000001_000019_gtFine_labelIds.png"]
    cv2.imwrite(str(out[0]), np.full((4, 8), 200, np.uint8))
    with pytest.raises(DatasetError, match="holds ids \\[200\\] that are not Cityscapes label ids"):
        export_tree(tmp_path / "results", tmp_path / "flat2", progress=False)
    cv2.imwrite(str(src / "lindau_000001_000019_labelTrainIds.png"), np.full((4, 8), 19, np.uint8))
    with pytest.raises(DatasetError, match="lindau_000001_000019_labelTrainIds.png: train ids \\[19\\]"):
        export_tree(tmp_path / "predictions", tmp_path / "results", "*.png", train_ids=True, progress=False)


def _label_and_prediction(seed: int, shape: tuple[int, int] = (48, 96)) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth in label ids (void ids included) and a prediction in train ids: mostly right, with
    confusions, unlabelled holes (255), a class predicted that is absent from the ground truth (train),
    a class of the ground truth never predicted (bicycle) and a class in neither (terrain)."""
    rng = np.random.default_rng(seed)
    ids = VALID_IDS[(VALID_IDS != 31) & (VALID_IDS != 22)]  # no "train", no "terrain" in the ground truth
    blocks = rng.choice(ids, (shape[0] // 8, shape[1] // 8))
    blocks[0, 0], blocks[1, 0] = 7, 33  # road where "train" is predicted; some bicycle
    gt = np.kron(blocks, np.ones((8, 8), np.int64)).astype(np.uint8)
    pred = LABEL_TO_TRAIN[gt].astype(np.int64)
    void = pred == IGNORE_INDEX
    pred[void] = rng.integers(0, NUM_CLASSES, shape)[void]  # anything on void ground truth (not scored)
    noise = rng.random(shape)
    pred[noise < 0.15] = rng.integers(0, NUM_CLASSES, shape)[noise < 0.15]  # confusions
    pred[(noise >= 0.15) & (noise < 0.22)] = IGNORE_INDEX  # pixels a policy left unlabelled
    pred[pred == 18] = 17  # bicycle is never predicted (→ motorcycle)
    pred[pred == 9] = 8  # nor is terrain (→ vegetation)
    pred[:4, :4] = 16  # train, on road
    return gt, pred.astype(np.uint8)


def test_official_cityscapes_evaluator_and_wrp_metrics_give_the_same_miou(tmp_path):
    """The same files, scored by cityscapesscripts' pixel-level evaluator and by wrp.metrics.

    Apples to apples: cityscapesscripts accumulates a confusion matrix over *label ids*, skips
    ground-truth pixels whose class is ignored in evaluation (void ids), counts a prediction of a
    void id (our train id 255, written as 0 "unlabeled") as a false negative of the true class, and
    averages the IoU over the 19 evaluated classes that are not NaN (present in ground truth or
    prediction). wrp.metrics reads both files as train ids; its (19, 20) matrix skips ground-truth
    ignore pixels and puts predicted-unlabelled pixels in the extra last column, which is part of the
    true class's union (``unlabelled_is_wrong=True``) but of no class's intersection; its mean IoU
    also averages over the non-NaN classes. So the two must agree to rounding, class by class.
    """
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    gts, preds = [], []
    for i in range(3):
        gt, pred = _label_and_prediction(i)
        ref = FrameRef("val", "lindau", f"{i:06d}", 19)
        gts.append(ref.label(tmp_path / "dataset"))
        gts[-1].parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(gts[-1]), gt)
        preds.append(export_frame(pred, ref, tmp_path / "results", flat=True))
    assert pair_with_ground_truth(preds, tmp_path / "dataset") == (preds, gts)

    args = copy.copy(official.args)  # the evaluator's own settings, silenced, no instance-level scores
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, False
    result = official.evaluateImgLists([str(p) for p in preds], [str(g) for g in gts], args)

    conf = sum(confusion_matrix(read_label(p), read_label(g), unlabelled_is_wrong=True)
               for p, g in zip(preds, gts, strict=True))
    assert conf[:, -1].sum() > 0, "some predicted pixels are unlabelled"
    assert abs(result["averageScoreClasses"] - mean_iou(conf) / 100) < 1e-6
    ours = iou(conf)
    from wrp.data import CLASS_NAMES

    for c, name in enumerate(CLASS_NAMES):
        theirs = result["classScores"][name]
        assert (np.isnan(theirs) and np.isnan(ours[c])) or abs(theirs - ours[c]) < 1e-9, name
    assert ours[CLASS_NAMES.index("bicycle")] == 0, "a class never predicted counts, with IoU 0"
    assert ours[CLASS_NAMES.index("train")] == 0, "so does a class only predicted"
    assert np.isnan(ours[CLASS_NAMES.index("terrain")]), "a class in neither is left out of the mean"
    # the package's wrappers report the same numbers
    theirs, ours_again = official_evaluation(preds, gts), wrp_evaluation(preds, gts)
    assert theirs["mIoU"] == pytest.approx(ours_again["mIoU"], abs=1e-4)  # in %
    assert theirs["iou"] == pytest.approx(ours_again["iou"], abs=1e-7)


def test_export_labels_script_exports_a_label_tree_and_scores_it(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("export_labels", REPO / "data_scripts" / "export_labels.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    propagated = tmp_path / "labels" / "warp-refine"
    for i in range(2):
        gt, pred = _label_and_prediction(10 + i, (16, 32))
        ref = FrameRef("val", "munster", "000007", 10 + i)
        export_frame(pred, ref, propagated)
        ref.label(tmp_path / "data").parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(ref.label(tmp_path / "data")), gt)
    export_frame(pred, FrameRef("val", "munster", "000007", 12), propagated)  # a frame without ground truth
    report = script.export(["--labels", str(propagated), "--out", str(tmp_path / "results"), "--flat",
                            "--evaluate", str(tmp_path / "data"), "--no-progress"])
    printed = capsys.readouterr().out
    assert sorted(p.name for p in Path(tmp_path / "results").iterdir()) == [
        f"munster_000007_0000{f}_gtFine_labelIds.png" for f in (10, 11, 12)]
    assert "exported 3 label-id PNG(s)" in printed
    assert "the 2 of 3 frame(s) that have a ground truth" in printed and "wrp.metrics" in printed
    assert report["official"]["mIoU"] == pytest.approx(report["wrp"]["mIoU"], abs=1e-4)
