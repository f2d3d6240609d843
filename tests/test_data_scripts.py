"""data_scripts/prepare_*.py on tiny downloads in each real layout (tests/real_fixtures.py).

What they protect: each script turns its dataset's own layout — zipped or extracted — into the
Cityscapes sequence layout that ``wrp.data`` reads (checked by reading every output back through
``read_prepared(out).manifest()``), with the paper's partitions (Cityscapes: 30 frames, frame 19;
ApolloScape: 21, centre; KITTI and NYU-V2: ±10 neighbours), record-level splits, reports of
missing files, dry runs that write nothing, second runs that write nothing new, and errors that
name the file and the fix.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from tests.conftest import REPO
from tests.real_fixtures import (
    apolloscape_download,
    cityscapes_download,
    kitti_download,
    nyu_mapping,
    nyuv2_download,
)
from wrp.data import LABEL_TO_TRAIN, DatasetError, SplitConfig, build_manifest, read_label_ids, read_prepared
from wrp.prepare import Source

SCRIPTS = ("prepare_cityscapes", "prepare_apolloscape", "prepare_kitti", "prepare_nyuv2", "export_labels")


def load(name: str) -> ModuleType:
    """Import a script of data_scripts/ (not a package) as a module."""
    path = REPO / "data_scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"data_scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cityscapes, apolloscape, kitti, nyuv2 = (load(n) for n in SCRIPTS[:4])


def files_of(root: Path) -> dict[str, int]:
    """Every file under ``root`` → its modification time (ns)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cityscapes_zips(tmp_path_factory) -> Path:
    return cityscapes_download(tmp_path_factory.mktemp("cityscapes_zips"), zipped=True)


@pytest.fixture(scope="module")
def apollo(tmp_path_factory) -> Path:
    return apolloscape_download(tmp_path_factory.mktemp("apolloscape"))


@pytest.fixture(scope="module")
def nyu(tmp_path_factory) -> dict[str, Path]:
    return nyuv2_download(tmp_path_factory.mktemp("nyuv2"))


# ---------------------------------------------------------------------------------------------
# Every script
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_answers_help(script):
    out = subprocess.run([sys.executable, str(REPO / "data_scripts" / f"{script}.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "usage:" in out and "--out" in out and "example:" in out
    if script.startswith("prepare_"):
        assert "--dry-run" in out and "--no-progress" in out


def test_a_dataset_error_is_one_line_on_stderr_and_exit_code_1(tmp_path, capsys):
    assert cityscapes.main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("DatasetError: ") and "nowhere does not exist" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------
# Cityscapes
# ---------------------------------------------------------------------------------------------
def test_cityscapes_zips_become_30_frame_snippets_labelled_at_frame_19(cityscapes_zips, tmp_path, capsys):
    out = tmp_path / "out"
    report = cityscapes.prepare(["--source", str(cityscapes_zips), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert "snippets: 5 of 30 frames, labelled frame index 19 (train 3, val 2)" in printed
    assert report["files"]["image"] == {"written": 150} and report["files"]["label"] == {"written": 5}
    prepared = read_prepared(out)
    assert (prepared.partition_length, prepared.labelled, prepared.split_mode) == (30, 19, "layout")
    assert prepared.train == ("aachen_000000", "aachen_000001", "stuttgart_000003")
    assert prepared.val == ("frankfurt_000000",)
    manifest = prepared.manifest()
    parts = manifest.train + manifest.val
    assert len(parts) == 5 and all(p.labelled == 19 and len(p.frames) == 30 for p in parts)
    frankfurt = sorted(p.frames[19].frame for p in manifest.val)
    assert frankfurt == [19, 49], "two touching snippets of one sequence stay two partitions"
    # the plain API reads the tree too, and the labels are the official files, byte for byte
    plain = build_manifest(out, SplitConfig(partition_length=30, labelled=19, mode="layout"))
    assert [p.partition_id for p in plain.val] == [p.partition_id for p in manifest.val]
    with zipfile.ZipFile(cityscapes_zips / "gtFine_trainvaltest.zip") as zf:
        member = "gtFine/val/frankfurt/frankfurt_000000_000049_gtFine_labelIds.png"
        assert (out / member).read_bytes() == zf.read(member)
    assert not (out / "gtFine" / "test").exists(), "test has no labels and is not prepared"


def test_cityscapes_cv2_split_from_extracted_folders_with_train_ids_and_hardlinks(tmp_path):
    source = cityscapes_download(tmp_path / "download")
    out = tmp_path / "out"
    cityscapes.prepare(["--source", str(source), "--out", str(out), "--split", "cv2", "--train-ids",
                        "--link", "hardlink", "--no-progress"])
    prepared = read_prepared(out)
    assert prepared.split_mode == "cv2" and prepared.val == ("stuttgart_000003",)
    manifest = prepared.manifest()
    assert {p.record_id for p in manifest.val} == {"stuttgart_000003"}
    assert {p.frames[0].split for p in manifest.train} == {"train", "val"}, "cv2 trains on official val too"
    stem = "gtFine/train/aachen/aachen_000001_000019_gtFine"
    train_ids = cv2.imread(str(out / f"{stem}_labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(train_ids, LABEL_TO_TRAIN[read_label_ids(out / f"{stem}_labelIds.png")])
    image = "leftImg8bit_sequence/train/aachen/aachen_000001_000007_leftImg8bit.png"
    assert (out / image).stat().st_ino == (source / image).stat().st_ino, "--link hardlink links, not copies"


def test_a_second_run_writes_nothing_new_and_says_so(cityscapes_zips, tmp_path, capsys):
    argv = ["--source", str(cityscapes_zips), "--out", str(tmp_path / "out"), "--no-progress"]
    cityscapes.prepare(argv)
    before = files_of(tmp_path / "out")
    capsys.readouterr()
    report = cityscapes.prepare(argv)
    assert "nothing new: every file was already in place" in capsys.readouterr().out
    assert all(count.get("written", 0) == 0 for count in report["files"].values())
    assert files_of(tmp_path / "out") == before


def test_a_dry_run_writes_nothing_and_says_what_it_would_write(cityscapes_zips, tmp_path, capsys):
    cityscapes.prepare(["--source", str(cityscapes_zips), "--out", str(tmp_path / "out"), "--dry-run",
                        "--no-progress"])
    printed = capsys.readouterr().out
    assert "[dry run: nothing written]" in printed and "image files:  150 to write" in printed
    assert "e.g. leftImg8bit_sequence/train/aachen/aachen_000000_000000_leftImg8bit.png" in printed
    assert not (tmp_path / "out").exists()


def test_a_missing_frame_skips_its_snippet_and_is_reported(tmp_path, capsys):
    source = cityscapes_download(tmp_path / "download")
    gap = "leftImg8bit_sequence/train/aachen/aachen_000001_000003_leftImg8bit.png"
    (source / gap).unlink()
    out = tmp_path / "out"
    cityscapes.prepare(["--source", str(source), "--out", str(out), "--no-progress", "--workers", "1"])
    printed = capsys.readouterr().out
    assert "1 skipped for missing frames" in printed and "missing files: 1" in printed and gap in printed
    assert (out / "splits" / "missing.txt").read_text() == gap + "\n"
    assert "aachen_000001" not in read_prepared(out).train
    assert len(read_prepared(out).manifest().train) == 2


def test_a_snippet_overlapping_another_is_skipped_with_a_note(tmp_path, capsys):
    source = cityscapes_download(tmp_path / "download")
    gt = source / "gtFine/val/frankfurt"
    shutil.copy(gt / "frankfurt_000000_000049_gtFine_labelIds.png",
                gt / "frankfurt_000000_000039_gtFine_labelIds.png")
    cityscapes.prepare(["--source", str(source), "--out", str(tmp_path / "out"), "--no-progress"])
    printed = capsys.readouterr().out
    note = "1 snippet(s) overlapping an earlier one were skipped, e.g. the one labelled at "
    assert note + "frankfurt_000000_000039" in printed, "frames 20-49 overlap those of frames 19 and 49"
    assert [p.frames[19].frame for p in read_prepared(tmp_path / "out").manifest().val] == [19, 49]


def test_a_labelled_frame_without_its_image_names_the_file(tmp_path):
    source = cityscapes_download(tmp_path / "download")
    (source / "leftImg8bit_sequence/train/aachen/aachen_000000_000019_leftImg8bit.png").unlink()
    with pytest.raises(DatasetError, match="1 labelled frame.*have no image in the sequence download, e.g. "
                                           "leftImg8bit_sequence/train/aachen/aachen_000000_000019_leftImg8bit"
                                           ".png .*re-download it"):
        cityscapes.prepare(["--source", str(source), "--out", str(tmp_path / "out"), "--no-progress"])


def test_a_damaged_zip_member_is_named_and_leaves_no_half_file(tmp_path):
    source = cityscapes_download(tmp_path / "download", zipped=True)
    archive = source / "leftImg8bit_sequence_trainvaltest.zip"
    member = "leftImg8bit_sequence/train/aachen/aachen_000001_000005_leftImg8bit.png"
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start:start + 40] = bytes(40)  # zero part of the compressed bytes
    archive.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=f"cannot read {archive}:{member} .*re-download it"):
        cityscapes.prepare(["--source", str(source), "--out", str(out), "--no-progress"])
    assert not (out / member).exists() and not list(out.rglob("*.tmp")), "atomic: no half-written file"
    assert not (out / "splits" / "train.txt").exists(), "the record lists mark a complete tree"
    (source / "gtFine_trainvaltest.zip").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="cannot open .*gtFine_trainvaltest.zip as a zip archive"):
        cityscapes.prepare(["--source", str(source), "--out", str(out), "--no-progress"])


def test_preparing_with_other_options_into_the_same_folder_is_refused(cityscapes_zips, tmp_path):
    argv = ["--source", str(cityscapes_zips), "--out", str(tmp_path / "out"), "--no-progress"]
    cityscapes.prepare(argv)
    with pytest.raises(DatasetError, match="prepared with other options \\(split: 'official' → 'cv2'\\)"):
        cityscapes.prepare([*argv, "--split", "cv2"])


def test_a_tree_changed_after_preparation_no_longer_matches_its_split_files(cityscapes_zips, tmp_path):
    out = tmp_path / "out"
    cityscapes.prepare(["--source", str(cityscapes_zips), "--out", str(out), "--no-progress"])
    shutil.rmtree(out / "leftImg8bit_sequence" / "train" / "stuttgart")
    with pytest.raises(DatasetError, match="differ from splits/train.txt .*stuttgart_000003.*re-run"):
        read_prepared(out).manifest()


# ---------------------------------------------------------------------------------------------
# ApolloScape
# ---------------------------------------------------------------------------------------------
def test_apolloscape_21_frame_partitions_with_the_centre_labelled_and_leftovers_discarded(apollo, tmp_path,
                                                                                          capsys):
    out = tmp_path / "out"
    apolloscape.prepare(["--source", str(apollo), "--out", str(out), "--cameras", "5", "6", "--no-progress"])
    printed = capsys.readouterr().out
    # Record001 45 frames ×2 cameras → 2+2; Record002 → 1; Record003 (label of frame 5 missing) → runs of
    # 5 and 44 → 2; road03 Record001 → 1, Record007 (22) → 1; Record004 is a test record (all 255).
    assert "partitions: 9 of 21 frames = 9 labelled + 180 sequential frames" in printed
    assert "(the paper, full dataset: 2005 labelled + 40100 sequential)" in printed
    assert "leftover frames discarded: 14" in printed
    assert "test partitions skipped (labelled frame all 255): 1" in printed
    assert "road02_ins/Label/Record003/Camera 5/170929_063800685_Camera_5_bin.png (the label of" in printed
    prepared = read_prepared(out)
    manifest = prepared.manifest()
    parts = manifest.train + manifest.val
    assert len(parts) == 9 and all(len(p.frames) == 21 and p.labelled == 10 for p in parts)
    assert [p.frames[0].frame for p in parts if p.record_id == "road02_ins_cam5_000003"] == [6, 27]
    split_of = {p.record_id: p.frames[0].split for p in parts}
    assert split_of["road02_ins_cam5_000001"] == split_of["road02_ins_cam6_000001"], "split by Record-ID"
    # every frame has its (mapped) label — the ground truth propagation is scored against
    truth = manifest.ground_truth("train")
    part = manifest.train[0]
    assert all(truth.label_path(part.partition_id, i).is_file() for i in range(21))
    stem = "170927_063801370_Camera_5"  # road02 Record001 camera 5, frame 10
    original = cv2.imread(str(apollo / f"road02_ins/Label/Record001/Camera 5/{stem}_bin.png"),
                          cv2.IMREAD_UNCHANGED)
    written = read_label_ids(next(out.glob("gtFine/*/road02_ins_cam5/road02_ins_cam5_000001_000010_gtFine_"
                                           "labelIds.png")))
    assert np.array_equal(written, apolloscape.apollo_to_cityscapes(original, stem))
    some = np.array([[33, 161, 49, 17, 40, 255]], np.uint8)  # car, car group, road, sky, tricycle, unlabeled
    assert apolloscape.apollo_to_cityscapes(some, "x").tolist() == [[26, 26, 7, 23, 5, 0]]


def test_apolloscape_split_is_drawn_by_record_with_the_seed(apollo):
    with Source([apollo]) as source:
        draws = [tuple(apolloscape.plan(source, seed=s, progress=False).val) for s in (0, 0, 1, 2, 3, 4)]
    assert draws[0] == draws[1], "the same seed gives the same split"
    assert len(set(draws)) > 1, "the seed chooses the validation records"


def test_apolloscape_unknown_class_id_names_the_file(tmp_path):
    source = apolloscape_download(tmp_path / "download")
    bad = source / "road03_ins/Label/Record001/Camera 5/170931_063801370_Camera_5_bin.png"
    label = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 200
    cv2.imwrite(str(bad), label)
    with pytest.raises(DatasetError, match=f"label {bad} holds ids \\[200\\] that are not ApolloScape"):
        apolloscape.prepare(["--source", str(source), "--out", str(tmp_path / "out"), "--no-progress"])


# ---------------------------------------------------------------------------------------------
# KITTI
# ---------------------------------------------------------------------------------------------
def test_kitti_labelled_frames_get_their_multiview_neighbours(tmp_path, capsys):
    semantics, multiview = kitti_download(tmp_path / "download", zipped=True)
    out = tmp_path / "out"
    kitti.prepare(["--semantics", str(semantics), "--multiview", str(multiview), "--out", str(out),
                   "--no-progress"])
    printed = capsys.readouterr().out
    assert "4 scenes of 21 frames (_00 … _20, _10 labelled): train 3, val 1" in printed
    assert "training/image_2/000003_04.png (multi-view extension)" in printed
    prepared = read_prepared(out)
    manifest = prepared.manifest()
    assert (prepared.partition_length, prepared.labelled) == (21, 10)
    parts = manifest.train + manifest.val
    assert sorted(p.record_id for p in parts) == [f"kitti_00000{s}" for s in (0, 1, 2, 4)]
    assert all([f.frame for f in p.frames] == list(range(21)) for p in parts)
    with zipfile.ZipFile(semantics) as zf:
        label = next(out.glob("gtFine/*/kitti/kitti_000002_000010_gtFine_labelIds.png"))
        assert label.read_bytes() == zf.read("training/semantic/000002_10.png")
    small = tmp_path / "small"
    kitti.prepare(["--semantics", str(semantics), "--multiview", str(multiview), "--out", str(small),
                   "--radius", "3", "--val", "2", "--no-progress"])
    parts = read_prepared(small).manifest()
    assert {len(p.frames) for p in parts.train + parts.val} == {7} and len(parts.val) == 2
    assert {p.frames[0].frame for p in parts.train + parts.val} == {7}, "KITTI's own frame numbers"


def test_kitti_labels_that_are_not_cityscapes_ids_are_refused(tmp_path):
    semantics, multiview = kitti_download(tmp_path / "download")
    bad = semantics / "training/semantic/000001_10.png"
    cv2.imwrite(str(bad), np.full((16, 32), 200, np.uint8))
    with pytest.raises(DatasetError, match=f"label {bad} holds ids \\[200\\] that are not Cityscapes label"):
        kitti.prepare(["--semantics", str(semantics), "--multiview", str(multiview), "--out",
                       str(tmp_path / "out"), "--no-progress"])


# ---------------------------------------------------------------------------------------------
# NYU-V2
# ---------------------------------------------------------------------------------------------
def test_nyuv2_labelled_frames_sit_in_windows_of_raw_frames_with_40_class_labels(nyu, tmp_path, capsys):
    out = tmp_path / "out"
    nyuv2.prepare(["--labelled", str(nyu["labelled"]), "--raw", str(nyu["raw"]), "--mapping",
                   str(nyu["mapping"]), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert "windows: 4 of 21 frames (labelled frame at 10); skipped: 1 without raw frames, 1 less" in printed
    assert "raw scene folder living_room_0002/ not found; labelled frame 5" in printed
    prepared = read_prepared(out)
    assert (prepared.label_format, prepared.num_classes) == ("nyu40", 40)
    manifest = prepared.manifest()
    assert len(manifest.train + manifest.val) == 4
    classes = json.loads((out / "classes.json").read_text())
    assert classes["ids"]["0"] == "void" and classes["ids"]["40"] == "otherprop" and len(classes["ids"]) == 41
    # labelled frame 2 (kitchen, raw frame 12): label mapped 894 → 40, train ids = id - 1, void → 255
    ref = next(p for p in manifest.train + manifest.val if p.record_id == "kitchen_0028b_000002").frames[10]
    original = cv2.imread(str(nyu["labelled"] / "labels" / "0002.png"), cv2.IMREAD_UNCHANGED)
    table = np.concatenate([[0], nyu_mapping()])[original]
    assert np.array_equal(prepared.read_label(ref.label(out)), np.where(table == 0, 255, table - 1))
    raw_frame_13 = sorted((nyu["raw"] / "kitchen_0028b").glob("r-*.ppm"))[13]
    window = next(p for p in manifest.train + manifest.val if p.record_id == "kitchen_0028b_000002")
    assert np.array_equal(cv2.imread(str(window.frames[11].image(out))), cv2.imread(str(raw_frame_13)))


def test_nyuv2_validation_from_a_list_of_labelled_indices(nyu, tmp_path):
    (tmp_path / "test_indices.txt").write_text("1\n4\n")
    out = tmp_path / "out"
    nyuv2.prepare(["--labelled", str(nyu["labelled"]), "--raw", str(nyu["raw"]), "--mapping",
                   str(nyu["mapping"]), "--val-list", str(tmp_path / "test_indices.txt"), "--out", str(out),
                   "--no-progress"])
    assert read_prepared(out).val == ("bedroom_0001_000001", "bedroom_0001_000004")


def test_nyuv2_reads_the_labelled_mat_as_the_unpacked_folder(nyu, tmp_path):
    pytest.importorskip("h5py", reason="nyu_depth_v2_labeled.mat is HDF5; h5py is an optional dependency")
    mat = nyuv2_download(tmp_path / "download", mat=True)
    assert mat["labelled"].name == "nyu_depth_v2_labeled.mat"
    for name, paths in (("from_folder", nyu), ("from_mat", mat)):
        nyuv2.prepare(["--labelled", str(paths["labelled"]), "--raw", str(paths["raw"]), "--mapping",
                       str(paths["mapping"]), "--out", str(tmp_path / name), "--no-progress"])
    a, b = tmp_path / "from_folder", tmp_path / "from_mat"
    assert files_of(a).keys() == files_of(b).keys()
    assert [k for k in files_of(a) if (a / k).read_bytes() != (b / k).read_bytes()] == []


def test_nyuv2_without_h5py_says_how_to_read_the_mat(nyu, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py → ImportError
    (tmp_path / "nyu_depth_v2_labeled.mat").write_bytes(b"\x89HDF\r\n")
    with pytest.raises(DatasetError, match="needs h5py \\(pip install h5py\\).*or pass the labelled set"):
        nyuv2.prepare(["--labelled", str(tmp_path / "nyu_depth_v2_labeled.mat"), "--raw", str(nyu["raw"]),
                       "--mapping", str(nyu["mapping"]), "--out", str(tmp_path / "out")])


def test_nyuv2_mapping_errors_name_the_file(nyu, tmp_path):
    argv = ["--labelled", str(nyu["labelled"]), "--raw", str(nyu["raw"]), "--out", str(tmp_path / "out"),
            "--no-progress", "--mapping"]
    bad = tmp_path / "bad.txt"
    bad.write_text("1\n41\n")
    with pytest.raises(DatasetError, match=f"mapping {bad} must hold integer NYU-40 ids 0..40"):
        nyuv2.prepare([*argv, str(bad)])
    (tmp_path / "classMapping40.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(DatasetError, match="convert the .mat to text first"):
        nyuv2.prepare([*argv, str(tmp_path / "classMapping40.mat")])
    short = tmp_path / "short.txt"
    short.write_text("\n".join(["3"] * 10))
    with pytest.raises(DatasetError, match="labels/0001.png holds ids .* that are not NYU-V2 class"):
        nyuv2.prepare([*argv, str(short)])


def test_wrp_propagate_labels_a_prepared_real_dataset_through_one_dataset_parameter(tmp_path, isolated_runs,
                                                                                    capsys):
    from wrp.cli import main
    from wrp.data import read_label

    semantics, multiview = kitti_download(tmp_path / "download", zipped=True)
    out = tmp_path / "prepared"
    kitti.prepare(["--semantics", str(semantics), "--multiview", str(multiview), "--out", str(out),
                   "--radius", "3", "--no-progress"])
    capsys.readouterr()
    labels = tmp_path / "labels"
    assert main(["propagate", "--profile", "smoke", "--dataset", str(out), "--split", "val",
                 "--out", str(labels), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "ground truth for the labelled frames only" in printed
    val = read_prepared(out).manifest().clips("val")
    for policy in ("copy", "motion-only", "semantic-only", "warp-inpaint", "warp-refine"):
        files = sorted((labels / "labels" / policy).rglob("*_gtFine_labelIds.png"))
        assert len(files) == sum(len(c) for c in val), policy  # every frame of ±3, radius 3
        assert read_label(files[0]).shape == read_label(val[0].human_label).shape

    # the notebooks take the same parameter: 03 propagates the prepared tree (reusing the stages
    # the command above trained) and draws Figure 4 without a ground-truth column
    from wrp.notebooks import format_results, reproduce

    nb_out = tmp_path / "nb03"
    results = reproduce("smoke", ["03_propagation"], {"dataset": str(out), "output_dir": str(nb_out)},
                        executed_dir=tmp_path / "executed", progress_bar=False)
    assert [r.status for r in results] == ["ok"], format_results(results)
    metrics = json.loads((nb_out / "metrics.json").read_text())
    assert metrics["dataset"] == str(out.resolve()) and metrics["miou"] is None
    assert Path(metrics["figures"]["fig4"]).is_file()


def test_table1_trains_its_cells_on_a_prepared_real_dataset_from_the_command_and_notebook_04(
        tmp_path, isolated_runs, capsys):
    from wrp.cli import main
    from wrp.notebooks import format_results, reproduce

    semantics, multiview = kitti_download(tmp_path / "download", zipped=True)
    out = tmp_path / "prepared"
    kitti.prepare(["--semantics", str(semantics), "--multiview", str(multiview), "--out", str(out),
                   "--radius", "3", "--no-progress"])
    tables = tmp_path / "tables"
    assert main(["table1", "--profile", "smoke", "--dataset", str(out), "--k", "3", "--out", str(tables),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "warp-refine" in printed and "over Baseline" in printed
    record = json.loads((tables / "table1.json").read_text())
    assert record["dataset"] == str(out.resolve()) and record["k"] == 3
    assert set(record["results"]["DeepLabV3"]) == {"baseline", "motion-only", "semantic-only", "warp-refine",
                                                   "warp-refine-confident"}, "no ceiling without every label"
    runs = list(csv.DictReader((tables / "table1_runs.csv").open()))
    from wrp.data import Manifest
    from wrp.profiles import Run
    from wrp.stages import manifest_for

    val = Manifest.load(manifest_for(Run.create("smoke", dataset=out, progress=False))).clips("val")
    assert len(runs) == 5 and {r["eval_frames"] for r in runs} == {str(len(val))}, "the labelled frames"
    assert all(0 <= v[0] <= 100 for v in record["results"]["DeepLabV3"].values())
    assert "the prepared dataset" in (tables / "table1.md").read_text()
    assert (tables / "table1.csv").is_file() and (tables / "table1.png").stat().st_size > 5_000
    # every frame cannot score a cell here: the tree labels only the labelled frames; refused first
    cells = sorted((isolated_runs / "stages" / "segmenter").iterdir())
    assert main(["table1", "--profile", "smoke", "--dataset", str(out), "--eval-frames", "every",
                 "--seeds", "5", "--no-progress"]) == 2
    assert "use table_eval='labelled'" in capsys.readouterr().err
    assert main(["table1", "--profile", "smoke", "--dataset", str(out), "--policy", "baseline",
                 "--policy", "true-labels", "--seeds", "5", "--no-progress"]) == 2
    assert "labels only the labelled frames" in capsys.readouterr().err
    assert sorted((isolated_runs / "stages" / "segmenter").iterdir()) == cells, "nothing trained"

    # notebook 04 takes the same dataset and reuses every cell the command trained (k = 3 there:
    # the fixture's radius; the notebook runs the profile's k = 4, clipped to the partitions)
    nb_out = tmp_path / "nb04"
    params = {"dataset": str(out), "output_dir": str(nb_out)}
    results = reproduce("smoke", ["04_table1_label_policies"], params,
                        executed_dir=tmp_path / "executed", progress_bar=False)
    assert [r.status for r in results] == ["ok"], format_results(results)
    metrics = json.loads((nb_out / "metrics.json").read_text())
    assert metrics["dataset"] == str(out.resolve())
    assert metrics["miou"]["DeepLabV3"]["baseline"] == record["results"]["DeepLabV3"]["baseline"]
