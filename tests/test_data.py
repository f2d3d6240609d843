"""The dataset layer: partitions, record-level splits, the two views, and errors that name the file."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from wrp.data import (
    LABEL_SUFFIX,
    Clip,
    DatasetError,
    FrameRef,
    Manifest,
    SplitConfig,
    build_manifest,
    human_samples,
    read_image,
    read_label,
    scan_records,
    write_label_ids,
)
from wrp.synthetic import SynthConfig, generate_world

# 5 records of 19 frames: two 9-frame partitions each, one leftover frame discarded
WORLD = SynthConfig(height=32, width=64, records=5, frames_per_record=19, seed=1)
SPLIT = SplitConfig(partition_length=9, val=2, seed=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(WORLD, tmp_path_factory.mktemp("world"), workers=1, progress=False)


@pytest.fixture
def copy(world, tmp_path) -> Path:
    """A private copy of the world that a test may damage."""
    target = tmp_path / "copy"
    shutil.copytree(world, target, ignore=shutil.ignore_patterns("flow"))
    return target


def test_partitions_have_the_centre_frame_labelled_and_leftovers_discarded(world):
    manifest = build_manifest(world, SPLIT)
    parts = manifest.train + manifest.val
    assert len(parts) == 5 * 2
    for part in parts:
        assert len(part.frames) == 9 and part.labelled == 4
        assert [f.frame for f in part.frames] == list(range(part.frames[0].frame, part.frames[0].frame + 9))
    assert {p.frames[0].frame for p in parts} == {0, 9}
    assert 18 not in {f.frame for p in parts for f in p.frames}, "frame 18 is a leftover"
    assert manifest.counts() == {"train_partitions": 6, "val_partitions": 4, "train_records": 3,
                                 "val_records": 2, "labelled_frames": 10, "frames": 90}


def test_no_record_is_in_both_splits_and_the_split_is_seeded(world):
    a = build_manifest(world, SPLIT)
    assert not {p.record_id for p in a.train} & {p.record_id for p in a.val}
    b = build_manifest(world, SPLIT)
    assert [p.partition_id for p in a.val] == [p.partition_id for p in b.val]
    splits = [build_manifest(world, dataclasses.replace(SPLIT, seed=s)) for s in range(8)]
    seeds = {tuple(sorted({p.record_id for p in m.val})) for m in splits}
    assert len(seeds) > 1, "the seed chooses the validation records"


def test_manifest_round_trips_through_json(world, tmp_path):
    manifest = build_manifest(world, SPLIT)
    loaded = Manifest.load(manifest.save(tmp_path / "manifest.json"))
    assert loaded.train == manifest.train and loaded.val == manifest.val
    assert loaded.config == manifest.config


def _paths_in(obj) -> list[str]:
    found = []
    if isinstance(obj, Path):
        found.append(str(obj))
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            found += _paths_in(getattr(obj, f.name))
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            found += _paths_in(item)
    return found


def test_the_training_view_cannot_reach_the_labels_of_unlabelled_frames(world):
    manifest = build_manifest(world, SPLIT)
    for clip in manifest.clips("train") + manifest.clips("val"):
        labels = [p for p in _paths_in(clip) if p.endswith(LABEL_SUFFIX)]
        assert labels == [str(clip.human_label)], "a clip holds the human label's path and no other"
        assert clip.label(clip.labelled).shape == (32, 64)
        for position in range(len(clip)):
            if position != clip.labelled:
                with pytest.raises(PermissionError, match="ground truth is for evaluation only"):
                    clip.label(position)
    assert human_samples(manifest.clips("train"))[0][1] == manifest.clips("train")[0].human_label


def test_the_evaluation_view_reads_every_frame(world):
    manifest = build_manifest(world, SPLIT)
    truth = manifest.ground_truth("val")
    clip = manifest.clips("val")[0]
    labels = [truth.label(clip.clip_id, i) for i in range(len(clip))]
    assert all(lab.shape == (32, 64) for lab in labels)
    assert not all(np.array_equal(labels[0], lab) for lab in labels[1:]), "the street moves"


def test_an_empty_folder_says_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="no leftImg8bit_sequence/ folder.*wrp synth --out"):
        scan_records(tmp_path)
    (tmp_path / "leftImg8bit_sequence" / "train" / "aachen").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no frames under"):
        scan_records(tmp_path)


def _ref(record: int, frame: int) -> FrameRef:
    return FrameRef("all", "synth", f"{record:06d}", frame)


def test_a_missing_label_of_a_labelled_frame_names_the_expected_file(copy):
    missing = _ref(0, 4).label(copy)
    missing.unlink()
    with pytest.raises(DatasetError, match=f"frame synth_000000_000004 of synth_000000 has no label "
                                           f"\\(expected {missing}\\)"):
        build_manifest(copy, SPLIT)


def test_a_corrupt_image_is_named(copy):
    bad = _ref(1, 3).image(copy)
    bad.write_bytes(bad.read_bytes()[:10])
    with pytest.raises(DatasetError, match=f"{bad} is not a valid PNG"):
        build_manifest(copy, SPLIT)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 8 + b"IHDR" + b"\0" * 200)
    with pytest.raises(DatasetError, match=f"cannot decode image {bad}"):
        read_image(bad)


def test_a_label_of_another_size_is_named(copy):
    path = _ref(2, 13).label(copy)
    cv2.imwrite(str(path), np.full((16, 64), 7, np.uint8))
    with pytest.raises(DatasetError, match=f"label {path} is 64×16 but its image is 64×32"):
        build_manifest(copy, SPLIT)


def test_an_image_of_another_size_is_named(copy):
    path = _ref(3, 2).image(copy)
    cv2.imwrite(str(path), np.zeros((20, 64, 3), np.uint8))
    with pytest.raises(DatasetError, match=f"{path} is 64×20 but the other frames"):
        build_manifest(copy, SPLIT)


def test_unknown_label_ids_and_colour_labels_are_refused(copy):
    path = _ref(0, 13).label(copy)
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 200
    cv2.imwrite(str(path), label)
    with pytest.raises(DatasetError, match="holds ids \\[200\\] that are not Cityscapes label ids"):
        build_manifest(copy, SPLIT)
    cv2.imwrite(str(path), np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(DatasetError, match="expected a single-channel 8-bit PNG"):
        read_label(path)


def test_gaps_split_a_record_and_short_runs_are_skipped_with_a_warning(copy):
    for frame in (5, 6):  # record 4: frames 0-4 and 7-18 remain
        _ref(4, frame).image(copy).unlink()
    with pytest.warns(UserWarning) as caught:
        manifest = build_manifest(copy, SPLIT)
    messages = " ".join(str(w.message) for w in caught)
    assert "1 gap(s)" in messages and "skipped 1 record run(s) shorter than a partition" in messages
    record4 = [p for p in manifest.train + manifest.val if p.record_id == "synth_000004"]
    assert [p.frames[0].frame for p in record4] == [7] and record4[0].index == 0
    assert manifest.skipped == {"short_records": 1}


def test_asking_for_too_many_validation_records_is_refused(world):
    with pytest.raises(DatasetError, match="val=5 asks for 5 validation record\\(s\\) out of 5"):
        build_manifest(world, dataclasses.replace(SPLIT, val=5))


def test_the_cityscapes_cv2_split_sends_three_cities_to_val(tmp_path):
    for city in ("aachen", "stuttgart", "strasbourg", "bremen"):
        for frame in range(3):
            ref = FrameRef("train", city, "000001", frame)
            ref.image(tmp_path).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(ref.image(tmp_path)), np.zeros((8, 8, 3), np.uint8))
            write_label_ids(ref.label(tmp_path), np.zeros((8, 8), np.uint8))
    manifest = build_manifest(tmp_path, SplitConfig(partition_length=3, mode="cv2"))
    assert sorted(p.frames[0].city for p in manifest.val) == ["strasbourg", "stuttgart"]
    assert sorted(p.frames[0].city for p in manifest.train) == ["aachen", "bremen"]


def test_labels_round_trip_through_official_ids(tmp_path):
    train_ids = np.array([[0, 1, 13, 255], [10, 18, 11, 12]], np.uint8)
    path = write_label_ids(tmp_path / "x_gtFine_labelIds.png", train_ids)
    assert np.array_equal(read_label(path), train_ids)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[0].tolist() == [7, 8, 26, 0]


def test_clip_true_flow_is_read_back(world):
    clip = build_manifest(world, SPLIT).clips("train")[0]
    assert isinstance(clip, Clip)
    flow, valid = clip.true_flow(5, "backward")
    assert flow.shape == (32, 64, 2) and valid.dtype == bool and valid.mean() > 0.5


def test_a_dataset_whose_labels_are_train_ids_is_refused_with_the_fix(tmp_path):
    """Train ids 0..18 are valid label ids too, so no single file gives them away; the dataset does:
    mostly void ids 0..6 and never an id of 19..33."""
    import cv2

    from wrp.data import DatasetError, FrameRef, SplitConfig, build_manifest

    rng = np.random.default_rng(0)
    for seq in range(2):
        for frame in range(3):
            ref = FrameRef("train", "town", f"{seq:06d}", frame)
            ref.image(tmp_path).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(ref.image(tmp_path)), rng.integers(0, 255, (16, 32, 3), dtype=np.uint8))
            if frame == 1:
                train_ids = np.zeros((16, 32), np.uint8)  # road, sidewalk, building as train ids
                train_ids[:5], train_ids[5:9] = 2, 1
                ref.label(tmp_path).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(ref.label(tmp_path)), train_ids)
    with pytest.raises(DatasetError, match=r"look like train ids.*--label-format train-ids"):
        build_manifest(tmp_path, SplitConfig(partition_length=3, val=1, seed=0))
    with_ignore = FrameRef("train", "town", "000000", 1).label(tmp_path)
    cv2.imwrite(str(with_ignore), np.full((16, 32), 255, np.uint8))
    with pytest.raises(DatasetError, match=r"255 is the ignore value of \*train ids\*"):
        build_manifest(tmp_path, SplitConfig(partition_length=3, val=1, seed=0))


def test_a_palette_label_png_is_read_as_its_ids(tmp_path):
    from PIL import Image

    from wrp.data import read_label_ids

    ids = np.array([[7, 8, 26], [23, 21, 0]], np.uint8)
    image = Image.fromarray(ids, mode="P")
    image.putpalette([(i * 37) % 256 for i in range(768)])  # colours unrelated to the ids
    image.save(tmp_path / "label.png")
    assert np.array_equal(read_label_ids(tmp_path / "label.png"), ids)
