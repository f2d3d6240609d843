"""``wrp prepare-frames``: a user's folders of frames and labels → the tree ``--dataset`` reads.

What they protect: a folder ``frames/<video>/<any names>`` (PNG or JPEG, natural order) with
``labels/<video>/<stem>.png`` becomes a prepared tree that ``read_prepared(tree).manifest()``
accepts, through the same ``execute`` the data_scripts use (a rerun writes nothing, other options
are refused); every bad input is one error naming the file, with nothing written; train-id labels
are converted to label ids; and ``wrp synth --as-frames`` gives a folder that turns back into the
synthetic world's frames and labels.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from wrp.data import (
    IMAGE_DIR,
    TRAIN_TO_LABEL,
    DatasetError,
    FrameRef,
    read_image,
    read_label_ids,
    read_prepared,
)
from wrp.prepare import natural_key, prepare_frames, tree_to_frames

H, W, LENGTH = 32, 64, 5
VIDEOS = {"drive a": (11, ".png"), "drive_b": (10, ".png"), "drive_c": (12, ".jpg")}
LABEL_IDS = np.array([0, 7, 8, 11, 21, 23, 26], np.uint8)  # unlabeled, road, sidewalk, … car
TRAIN_IDS = np.array([0, 1, 2, 10, 13, 18, 255], np.uint8)


def make_frames(root: Path, train_ids: bool = False, extra: bool = True) -> tuple[Path, Path]:
    """``root/frames/<video>/frame<n>.<ext>`` (n from 1: ``frame10`` sorts after ``frame9`` only
    naturally) and the labels of every partition's centre, plus one label for evaluation."""
    frames, labels = root / "frames", root / "labels"
    rng = np.random.default_rng(0)
    values = TRAIN_IDS if train_ids else LABEL_IDS
    for video, (count, ext) in VIDEOS.items():
        (frames / video).mkdir(parents=True)
        (labels / video).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(frames / video / f"frame{i + 1}{ext}"), rng.integers(0, 256, (H, W, 3), np.uint8))
            if i % LENGTH == LENGTH // 2 or (extra and video == "drive_b" and i == 0):
                cv2.imwrite(str(labels / video / f"frame{i + 1}.png"), rng.choice(values, (H, W)))
    return frames, labels


def label_path(labels: Path, video: str, position: int) -> Path:
    return labels / video / f"frame{position + 1}.png"


def layout_ref(tree: Path, video: str, position: int) -> FrameRef:
    """Where frame ``position`` of ``video`` lies in the prepared tree (train or val)."""
    city = video.replace(" ", "-")
    split = next(p.parent.parent.name for p in (tree / IMAGE_DIR).glob(f"*/{city}/*"))
    return FrameRef(split, city, "000000", position)


def prepare(frames: Path, labels: Path, out: Path, **options) -> str:
    stream = io.StringIO()
    prepare_frames(frames, labels, out, partition_length=LENGTH, progress=False, stream=stream, **options)
    return stream.getvalue()


def files_of(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_natural_order_of_frame_names():
    names = ["f10.png", "f2.png", "F1.png", "f1b.png", "f01.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f01.png", "f1b.png", "f2.png", "f10.png"]


def test_frames_become_a_tree_that_read_prepared_accepts(tmp_path):
    frames, labels = make_frames(tmp_path)
    report = prepare(frames, labels, tmp_path / "tree")
    prepared = read_prepared(tmp_path / "tree")
    assert (prepared.dataset, prepared.partition_length, prepared.labelled) == ("own", LENGTH, LENGTH // 2)
    counts = prepared.manifest().counts()
    assert counts == {"train_partitions": 4, "val_partitions": 2, "train_records": 2, "val_records": 1,
                      "labelled_frames": 6, "frames": 30}
    for line in ("records: 3 videos: train 2, val 1", "partitions: 6 of 5 frames, position 2 labelled",
                 "labelled frames: 6", "frames with labels for evaluation: 1", "3 leftover"):
        assert line in report, report
    tree = tmp_path / "tree"
    for video, (_, ext) in VIDEOS.items():
        for position in (0, 2, 9):  # natural order: position 9 is frame10, not frame2
            ref = layout_ref(tree, video, position)
            source = cv2.imread(str(frames / video / f"frame{position + 1}{ext}"))[..., ::-1]  # RGB
            assert np.array_equal(read_image(ref.image(tree)), source), (video, position)
        assert not layout_ref(tree, video, 10).image(tree).exists()  # leftovers are discarded
        for position in (2, 7):
            ref = layout_ref(tree, video, position)
            assert np.array_equal(read_label_ids(ref.label(tree)),
                                  cv2.imread(str(label_path(labels, video, position)), cv2.IMREAD_UNCHANGED))
    evaluation = layout_ref(tree, "drive_b", 0).label(tree)  # a label for evaluation only is written too
    assert evaluation.is_file() and not layout_ref(tree, "drive_b", 1).label(tree).exists()
    assert "drive-a_000000_000009\tdrive a/frame10.png" in (tree / "splits/sources.tsv").read_text()


def test_the_command_line_prepares_and_says_what_to_run_next(tmp_path, capsys):
    from wrp.cli import main

    frames, labels = make_frames(tmp_path)
    tree = tmp_path / "tree"
    assert main(["prepare-frames", str(frames), str(labels), "--out", str(tree), "--partition-length",
                 str(LENGTH), "--dry-run", "--no-progress"]) == 0
    assert "[dry run: nothing written]" in capsys.readouterr().out and not tree.exists()
    assert main(["prepare-frames", str(frames), str(labels), "--out", str(tree), "--partition-length",
                 str(LENGTH), "--dataset-name", "mine", "--val", "2", "--seed", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "records: 3 videos: train 1, val 2 (seed 3)" in out and "labelled frames: 6" in out
    assert "frames with labels for evaluation: 1" in out
    assert f"next: wrp propagate --dataset {tree}" in out
    prepared = read_prepared(tree)
    assert prepared.dataset == "mine" and len(prepared.val) == 2
    assert prepared.manifest().counts()["val_records"] == 2

    label_path(labels, "drive_b", 7).unlink()
    assert main(["prepare-frames", str(frames), str(labels), "--out", str(tmp_path / "other"),
                 "--partition-length", str(LENGTH), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wrp: error: frame ") and "drive_b/frame8.png" in err
    assert not (tmp_path / "other").exists()


def test_a_rerun_writes_nothing_and_other_options_are_refused(tmp_path):
    frames, labels = make_frames(tmp_path)
    tree = tmp_path / "tree"
    prepare(frames, labels, tree)
    before = files_of(tree)
    report = prepare(frames, labels, tree)
    assert "nothing new: every file was already in place" in report
    assert files_of(tree) == before
    with pytest.raises(DatasetError, match=r"prepared with other options \(seed: 0 → 1\)"):
        prepare(frames, labels, tree, seed=1)
    (frames / "drive_b" / "frame1.png").rename(frames / "drive_b" / "frame0.png")  # shifts every frame
    (labels / "drive_b" / "frame1.png").rename(labels / "drive_b" / "frame0.png")
    with pytest.raises(DatasetError, match="prepared with other options .*frames_sha1"):
        prepare(frames, labels, tree)
    assert files_of(tree) == before


def test_png_frames_can_be_linked_and_jpeg_frames_are_converted(tmp_path):
    frames, labels = make_frames(tmp_path)
    tree = tmp_path / "tree"
    prepare(frames, labels, tree, link="symlink")
    png, jpeg = layout_ref(tree, "drive_b", 3).image(tree), layout_ref(tree, "drive_c", 3).image(tree)
    assert png.is_symlink() and png.resolve() == (frames / "drive_b" / "frame4.png").resolve()
    assert not jpeg.is_symlink() and jpeg.read_bytes().startswith(b"\x89PNG")


def test_a_corrected_label_is_rewritten(tmp_path):
    frames, labels = make_frames(tmp_path)
    tree = tmp_path / "tree"
    prepare(frames, labels, tree)
    fixed = np.full((H, W), 26, np.uint8)
    cv2.imwrite(str(label_path(labels, "drive_b", 2)), fixed)
    assert "label files:  1 written" in prepare(frames, labels, tree)
    assert np.array_equal(read_label_ids(layout_ref(tree, "drive_b", 2).label(tree)), fixed)


def test_train_id_labels_are_written_as_label_ids(tmp_path):
    frames, labels = make_frames(tmp_path, train_ids=True)
    tree = tmp_path / "tree"
    prepare(frames, labels, tree, label_format="train-ids")
    for video in VIDEOS:
        for position in (2, 7):
            train = cv2.imread(str(label_path(labels, video, position)), cv2.IMREAD_UNCHANGED)
            written = read_label_ids(layout_ref(tree, video, position).label(tree))
            expected = np.where(train == 255, 0, TRAIN_TO_LABEL[train])
            assert np.array_equal(written, expected)
            assert set(np.unique(written).tolist()) == {0, 7, 8, 11, 23, 26, 33}  # road … bicycle, void
    # read as label ids, the same files are refused: 255 is no Cityscapes label id
    with pytest.raises(DatasetError, match=r"not Cityscapes label ids.*--label-format train-ids"):
        prepare(frames, labels, tmp_path / "as-label-ids")


LABEL = np.zeros((H, W), np.uint8)


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array)


# each: (what to break, the file the error must name, a phrase of the message)
BAD_INPUTS = {
    "empty frames folder": (lambda f, lab: [p.unlink() for p in f.rglob("*.*")], "frames", "no frames in"),
    "short video": (lambda f, lab: [_write(f / "short" / f"{i}.png", np.zeros((H, W, 3), np.uint8))
                                    for i in range(LENGTH - 1)], "frames/short", "fewer than one partition"),
    "missing label": (lambda f, lab: label_path(lab, "drive a", 7).unlink(),
                      "labels/drive a/frame8.png", "frames/drive a/frame8.png has no label"),
    "label size": (lambda f, lab: _write(label_path(lab, "drive_c", 2), np.zeros((H, W + 2), np.uint8)),
                   "labels/drive_c/frame3.png", "a label must have its frame's size"),
    "not label ids": (lambda f, lab: _write(label_path(lab, "drive_b", 7), np.full((H, W), 200, np.uint8)),
                      "labels/drive_b/frame8.png", "not Cityscapes label ids"),
    "colour label": (lambda f, lab: _write(label_path(lab, "drive_b", 7), np.zeros((H, W, 3), np.uint8)),
                     "labels/drive_b/frame8.png", "single-channel"),
    "corrupt png": (lambda f, lab: (f / "drive a" / "frame4.png").write_bytes(b"not an image"),
                    "frames/drive a/frame4.png", "not a valid PNG"),
    "corrupt jpeg": (lambda f, lab: (f / "drive_c" / "frame5.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage"),
                     "frames/drive_c/frame5.jpg", "not a valid JPEG"),
    "corrupt label": (lambda f, lab: label_path(lab, "drive_c", 7).write_bytes(b"\x89PNG broken"),
                      "labels/drive_c/frame8.png", "cannot read label"),
    "label without frame": (lambda f, lab: _write(lab / "drive_b" / "frame99.png", LABEL),
                            "labels/drive_b/frame99.png", "has no frame"),
    "labels of an unknown video": (lambda f, lab: _write(lab / "nope" / "a.png", LABEL),
                                   "labels/nope/a.png", "has no frame"),
    "frame of another size": (lambda f, lab: _write(f / "drive_b" / "frame5.png", np.zeros((H, W + 8, 3),
                                                                                             np.uint8)),
                              "frames/drive_b/frame5.png", "every frame of a video must have one size"),
    "frames not in a video folder": (lambda f, lab: _write(f / "loose.png", np.zeros((H, W, 3), np.uint8)),
                                     "frames/loose.png", "sub-folder"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_naming_the_file_and_nothing_is_written(tmp_path, case):
    frames, labels = make_frames(tmp_path)
    breaks, names, phrase = BAD_INPUTS[case]
    breaks(frames, labels)
    with pytest.raises(DatasetError) as error:
        prepare(frames, labels, tmp_path / "tree")
    message = str(error.value)
    assert str(tmp_path / names) in message and phrase in message, message
    assert not (tmp_path / "tree").exists()


def test_one_video_is_refused_and_a_share_keeps_a_video_on_each_side(tmp_path):
    frames, labels = make_frames(tmp_path)
    prepare(frames, labels, tmp_path / "tree", val=0.01)  # rounds to none: one video goes to val
    assert len(read_prepared(tmp_path / "tree").val) == 1
    for video in ("drive_b", "drive_c"):
        for folder in (frames, labels):
            for path in (folder / video).iterdir():
                path.unlink()
            (folder / video).rmdir()
    with pytest.raises(DatasetError, match="at least two are needed"):
        prepare(frames, labels, tmp_path / "one")


def test_synth_as_frames_round_trips_through_prepare_frames(tmp_path, capsys):
    from wrp.cli import main

    world, folder, tree = tmp_path / "world", tmp_path / "mine", tmp_path / "tree"
    assert main(["synth", "--out", str(world), "--profile", "smoke", "--records", "3", "--workers", "1",
                 "--no-progress", "--as-frames", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "as a folder of frames: 3 videos, 27 frames, 27 labels" in out
    frames, labels = folder / "frames", folder / "labels"
    assert f"wrp prepare-frames {frames} {labels} --out TREE --partition-length 9" in out
    assert sorted(p.name for p in (folder / "labels" / "synth_000001").iterdir())[:2] == ["000000.png",
                                                                                          "000001.png"]
    assert main(["prepare-frames", str(folder / "frames"), str(folder / "labels"), "--out", str(tree),
                 "--partition-length", "9", "--no-progress"]) == 0
    assert "frames with labels for evaluation: 24" in capsys.readouterr().out
    manifest = read_prepared(tree).manifest()
    assert manifest.counts()["frames"] == 27
    for part in manifest.train + manifest.val:
        for ref in part.frames:
            record = int(ref.city.split("_")[1])
            original = FrameRef("all", "synth", f"{record:06d}", ref.frame)
            assert np.array_equal(read_label_ids(ref.label(tree)), read_label_ids(original.label(world)))
            assert np.array_equal(read_image(ref.image(tree)), read_image(original.image(world)))
    # a rerun of the conversion writes nothing; a folder holding other videos is refused
    before = files_of(folder)
    assert tree_to_frames(world, folder, progress=False) == {"videos": 3, "frames": 27, "labels": 27}
    assert files_of(folder) == before
    (folder / "frames" / "other").mkdir()
    with pytest.raises(DatasetError, match="holds videos that .* lacks \\(other\\)"):
        tree_to_frames(world, folder, progress=False)


def test_editing_a_label_of_a_prepared_tree_changes_the_stages_that_read_it(tmp_path, isolated_runs):
    """A finished run must not be reused once its data changed: the manifest's key (and so every
    stage after it) holds a fingerprint of the tree's labels and frames."""
    from wrp.profiles import Run
    from wrp.stages import manifest_for

    frames, labels = make_frames(tmp_path)
    tree = tmp_path / "tree"
    prepare(frames, labels, tree)
    run = Run.create("smoke", dataset=tree, device="cpu", progress=False)
    first = manifest_for(run)
    assert manifest_for(run) == first  # unchanged data: reused
    label = next((tree / "gtFine").rglob("*_gtFine_labelIds.png"))
    edited = read_label_ids(label)
    edited[0, 0] = 26 if edited[0, 0] != 26 else 7
    cv2.imwrite(str(label), edited)
    assert manifest_for(run) != first


def test_a_preparation_into_a_folder_being_written_is_refused(tmp_path):
    from wrp.io import FolderBusy, exclusive_folder

    frames, labels = make_frames(tmp_path)
    tree = tmp_path / "tree"
    with exclusive_folder(tree, "preparation"):  # another preparation is writing it
        with pytest.raises(FolderBusy, match="is being written by another preparation"):
            prepare(frames, labels, tree)
    assert not (tree / "splits").exists()
    prepare(frames, labels, tree)  # alone, it goes through
    assert read_prepared(tree).manifest().counts()["train_partitions"] > 0


def test_a_palette_label_is_read_as_its_ids(tmp_path):
    from PIL import Image

    frames, labels = make_frames(tmp_path)
    path = label_path(labels, "drive_b", LENGTH // 2)
    ids = read_label_ids(path)
    image = Image.fromarray(ids, mode="P")
    image.putpalette([(i * 53) % 256 for i in range(768)])
    image.save(path)
    tree = tmp_path / "tree"
    prepare(frames, labels, tree)
    assert np.array_equal(read_label_ids(layout_ref(tree, "drive_b", LENGTH // 2).label(tree)), ids)
