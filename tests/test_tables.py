"""Tables 1 and 2: cells trained with each label policy, cached per cell, written beside the paper's."""

from __future__ import annotations

import csv
import json

import pytest

from wrp.data import Manifest
from wrp.experiments import manifest_for
from wrp.tables import (
    ARCHS,
    TABLE1_POLICIES,
    TABLE2_ROWS,
    gains_over,
    gains_report,
    generated_pairs,
    grid_note,
    mean_std,
    table1,
    table2,
    table2_arch,
    train_cell,
    write_table1,
    write_table2,
)


def test_generated_pairs_cover_the_unlabelled_training_frames_within_k(isolated_runs):
    clips = Manifest.load(manifest_for("smoke", 0)).clips("train")
    pairs = generated_pairs("smoke", 0, "motion-only", k=2, progress=False)
    assert len(pairs) == 4 * len(clips)  # ±1, ±2 of every labelled frame
    labelled = {str(c.images[c.labelled]) for c in clips}
    assert not labelled & {image for image, _ in pairs}, "a generated label never replaces a human one"
    assert all("labels/motion-only/gtFine/" in label for _, label in pairs)
    with pytest.raises(ValueError, match="must lie in"):
        generated_pairs("smoke", 0, "motion-only", k=99, progress=False)


def test_table1_trains_every_cell_once_and_writes_ours_beside_the_papers(isolated_runs, tmp_path):
    results = table1("smoke", archs=["MSA-HRNet-OCR"], seeds=[0], progress=False)
    assert list(results["MSA-HRNet-OCR"]) == list(TABLE1_POLICIES)
    cell = train_cell("smoke", 0, "msa_hrnet_ocr", "warp-refine", progress=False)
    done = (isolated_runs / "stages" / "segmenter" / cell["stage"].split("/")[-1] / "stage.json")
    finished = json.loads(done.read_text())["finished"]
    again = train_cell("smoke", 0, "msa_hrnet_ocr", "warp-refine", progress=False)
    assert again["stage"] == cell["stage"] and again["miou"] == results["MSA-HRNet-OCR"]["warp-refine"][0]
    assert json.loads(done.read_text())["finished"] == finished  # reused, not retrained
    csv_path, md_path = write_table1(results, tmp_path / "table1", note="smoke profile: 1 seed")
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["model", "source", *TABLE1_POLICIES]
    assert rows[1][1] == "ours" and " ± " in rows[1][2]
    assert rows[2][1].startswith("paper") and rows[2][2] == "83.35"
    assert "*paper, Cityscapes*" in md_path.read_text() and "smoke profile" in md_path.read_text()


def test_table2_rows_differ_in_loss_iterations_lr_and_generated_labels(isolated_runs, tmp_path):
    results = table2("smoke", seeds=[0], progress=False)
    assert list(results) == list(TABLE2_ROWS)
    arch = ARCHS[table2_arch("smoke")]  # Table 2's architecture: the first of the profile's table_archs
    stages = {row: train_cell("smoke", 0, arch, spec["policy"], spec["k"], spec["loss"],
                              spec["iters_share"], spec["lr_factor"], progress=False)["stage"]
              for row, spec in TABLE2_ROWS.items()}
    assert len(set(stages.values())) == len(TABLE2_ROWS), "every row is its own training run"
    assert train_cell("smoke", 0, arch, "baseline", progress=False)["stage"] == stages["Baseline B"], \
        "Baseline B is Table 1's Baseline cell, trained once"
    jobs = {row: json.loads(open(f"{stage}/job.json").read()) for row, stage in stages.items()}
    under = jobs["Baseline B, under-trained (1/3 iterations, LR / 8)"]["train"]
    full = jobs["Baseline B"]["train"]
    assert under["iters"] < full["iters"] and under["base_lr"] == pytest.approx(full["base_lr"] / 8)
    assert jobs["B + RLL"]["loss"]["kwargs"]["main"] == "rll"
    assert len(jobs["B + RLL + D^m_3"]["data"]["kwargs"]["generated"]) > 0
    csv_path, md_path = write_table2(results, tmp_path / "table2")
    rows = list(csv.reader(csv_path.open()))
    assert rows[0][0] == "setting" and len(rows) == 1 + len(TABLE2_ROWS)
    assert next(r for r in rows if r[0] == "Baseline B")[2] == "77.66 ± 0.27"


def test_mean_and_std_of_seeds():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)


def test_wrp_table1_writes_the_tables_into_the_folder_asked_for(isolated_runs, tmp_path, capsys):
    from wrp.cli import main

    assert main(["table1", "--profile", "smoke", "--arch", "MSA-HRNet-OCR", "--policy", "baseline",
                 "--policy", "motion-only", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "| MSA-HRNet-OCR | ours |" in capsys.readouterr().out
    assert (tmp_path / "table1.csv").is_file() and (tmp_path / "table1.md").is_file()
    assert "smoke profile" in (tmp_path / "table1.md").read_text()


def test_the_note_under_a_table_says_when_the_grid_is_reduced():
    full = grid_note("paper")
    assert "Reduced grid" not in full and "seed(s) 0, 1, 2" in full
    reduced = grid_note("smoke", seeds=[0], archs=["DeepLabV3"])
    assert "**Reduced grid**" in reduced and "1 of the 3 architectures (DeepLabV3)" in reduced
    assert "1 seed instead of 3" in reduced and "wrp table1 --profile smoke --seeds 0 1 2" in reduced
    assert "1 seed instead of 3" in grid_note("smoke", seeds=[0], table=2)
    assert "architectures" not in grid_note("smoke", seeds=[0], table=2)  # Table 2 has one architecture


def test_gains_are_judged_against_twice_the_larger_std_of_the_two_cells():
    cells = {"baseline": [50.0, 51.0, 52.0], "helps": [54.0, 55.0, 56.0], "noise": [49.0, 53.0, 51.5],
             "hurts": [40.0, 41.0, 42.0], "one": [60.0]}
    by = {g["column"]: g for g in gains_over(cells, "baseline")}
    assert by["helps"]["gain"] == pytest.approx(4.0) and by["helps"]["two_std"] == pytest.approx(2.0)
    assert by["helps"]["verdict"] == "above the seed spread"
    assert by["noise"]["verdict"] == "within the seed spread"
    assert by["hurts"]["verdict"] == "below the seed spread"
    assert by["one"]["verdict"].startswith("one seed")
    assert "baseline" not in by
    assert by["noise"]["per_seed"] == pytest.approx([-1.0, 2.0, -0.5]) and by["one"]["per_seed"] is None
    report = gains_report(gains_over(cells, "baseline"), "Baseline", label="X: ").splitlines()
    assert len(report) == 4 and report[0].startswith("X: helps")
    assert "+4.00 mIoU over Baseline (2 std = 2.00: above the seed spread)" in report[0]
    assert report[1].endswith("; per seed -1.00 / +2.00 / -0.50") and "per seed" not in report[3]


def test_table_settings_of_a_profile_fall_back_and_are_checked():
    from wrp.profiles import get_profile
    from wrp.tables import cell_budget

    paper = get_profile("paper")
    assert cell_budget("smoke") == get_profile("smoke")
    longer = cell_budget("smoke", 7, [32, 64])
    assert longer.cell_iters == 7 and longer.cell_crop == (32, 64)
    assert paper.cell_seeds == paper.seeds and paper.cell_iters == paper.seg_iters
    assert paper.cell_crop == paper.seg_crop and len(paper.table_archs) == 3
    demo = get_profile("demo")
    assert demo.cell_crop == tuple(demo.table_crop or demo.seg_crop)
    with pytest.raises(ValueError, match="table_crop=\\(999, 8\\) must lie inside the frame"):
        get_profile("smoke", table_crop=(999, 8))
    with pytest.raises(ValueError, match="table_archs and table_seeds must not be empty"):
        get_profile("smoke", table_seeds=())
    with pytest.raises(ValueError, match="table_iters=0"):
        get_profile("smoke", table_iters=0)


def test_a_cell_trains_at_the_profiles_table_budget(isolated_runs):
    from wrp.profiles import get_profile

    prof = get_profile("smoke", table_iters=3, table_crop=(32, 64))
    cell = train_cell(prof, 0, "deeplabv3", None, iters_share=1 / 3, progress=False)
    job = json.loads(open(f"{cell['stage']}/job.json").read())
    assert job["train"]["iters"] == 1 and job["data"]["kwargs"]["crop"] == [32, 64]


def test_figure_3_reads_the_table_cells_without_training_again(isolated_runs):
    from wrp.tables import fig3_rows

    table1("smoke", policies=["baseline", "warp-refine"], seeds=[0], progress=False)
    stages = sorted((isolated_runs / "stages" / "segmenter").iterdir())
    rows = fig3_rows("smoke", 0, count=2, progress=False)
    assert sorted((isolated_runs / "stages" / "segmenter").iterdir()) == stages, "no cell trained twice"
    assert len(rows) == 1 and rows[0]["baseline"].shape == rows[0]["truth"].shape  # smoke: 1 val partition
    assert {"fixed", "broken", "both_wrong"} <= set(rows[0])


def test_a_world_seed_keeps_the_world_and_varies_only_the_segmenters_training(isolated_runs):
    from wrp.profiles import get_profile

    prof = get_profile("smoke", table_iters=1, table_crop=(32, 64))
    own = table1(prof, ["DeepLabV3"], ["baseline"], [0], progress=False)
    kept = table1(prof, ["DeepLabV3"], ["baseline"], [0, 1], progress=False, world_seed=0)
    assert kept["DeepLabV3"]["baseline"][0] == own["DeepLabV3"]["baseline"][0]  # the same cell, reused
    jobs = [json.loads((d / "job.json").read_text())
            for d in sorted((isolated_runs / "stages" / "segmenter").iterdir())]
    assert len(jobs) == 2, "training seed 0 on world 0 is the seed-0 cell, not a new one"
    assert {j["data"]["kwargs"]["manifest"] for j in jobs} == {jobs[0]["data"]["kwargs"]["manifest"]}
    assert sorted(j["train"]["seed"] for j in jobs) == [0, 1]
    assert sorted(j["data"]["kwargs"]["seed"] for j in jobs) == [0, 1]
    note = grid_note(prof, [0, 1], ["DeepLabV3"], world_seed=0)
    assert "the world of seed 0 and its labels, training seed(s) 0, 1" in note


def test_k_picks_how_far_warp_refine_labels_reach_while_motion_only_keeps_two(isolated_runs):
    from wrp.profiles import get_profile
    from wrp.tables import generated_pairs

    prof = get_profile("smoke", table_iters=1, table_crop=(32, 64))
    table1(prof, ["DeepLabV3"], ["motion-only", "semantic-only"], [0], progress=False, k=1)
    jobs = [json.loads((d / "job.json").read_text())["data"]["kwargs"]["generated"]
            for d in (isolated_runs / "stages" / "segmenter").iterdir()]
    counts = sorted(len(g) for g in jobs if g)
    assert counts == sorted([len(generated_pairs(prof, 0, "semantic-only", 1, progress=False)),
                             len(generated_pairs(prof, 0, "motion-only", 2, progress=False))])
    assert counts[0] < counts[1]


def test_true_labels_replace_each_generated_label_with_the_worlds_own(isolated_runs):
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from wrp.tables import TRUE_LABELS

    pairs = generated_pairs("smoke", 0, "motion-only", 2, progress=False)
    truths = generated_pairs("smoke", 0, TRUE_LABELS, 2, progress=False)
    assert [t[0] for t in truths] == [p[0] for p in pairs]
    for (_, generated), (_, truth) in zip(pairs, truths, strict=True):
        assert Path(truth).name == Path(generated).name and "/gtFine/" in truth and truth != generated
    differs = [not np.array_equal(np.array(Image.open(g)), np.array(Image.open(t)))
               for (_, g), (_, t) in zip(pairs, truths, strict=True)]
    assert any(differs), "motion-only labels two frames away are not all perfect"
    Path(truths[0][1]).unlink()
    with pytest.raises(FileNotFoundError, match=Path(truths[0][1]).name):
        generated_pairs("smoke", 0, TRUE_LABELS, 2, progress=False)


def test_world_fps_renders_a_faster_world_for_every_stage_and_the_note_says_so(isolated_runs):
    from wrp.profiles import get_profile
    from wrp.synthetic import SynthConfig
    from wrp.tables import cell_budget

    assert get_profile("smoke").synth_overrides == {}, "a named profile renders the world's own 35 fps"
    slow = cell_budget("smoke", fps=7)
    assert slow.fps == 7.0 and slow.synth_overrides == {"fps": 7.0}
    assert SynthConfig.from_profile(slow, 0, **slow.synth_overrides).fps == 7.0
    default, fast = manifest_for("smoke", 0), manifest_for(slow, 0)
    assert default != fast, "another frame rate is another world, keyed apart"
    assert json.loads((Manifest.load(fast).root / "world.json").read_text())["config"]["fps"] == 7.0
    assert "smoke profile (synthetic at 7 frames/s)" in grid_note(slow, [0])
    assert "synthetic at" not in grid_note("smoke", [0])
    with pytest.raises(ValueError, match="fps=0.0 must be positive"):
        get_profile("smoke", fps=0.0)


def test_budget_arguments_reach_the_profile_and_bad_values_are_parser_errors():
    import argparse

    from wrp.profiles import get_profile
    from wrp.tables import add_budget_arguments, budget_from_arguments

    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="smoke")
    add_budget_arguments(parser)
    prof = budget_from_arguments(parser, parser.parse_args(
        ["--cell-iters", "9", "--cell-crop", "32", "64", "--world-fps", "10"]))
    assert (prof.cell_iters, prof.cell_crop, prof.fps) == (9, (32, 64), 10.0)
    assert budget_from_arguments(parser, parser.parse_args([])) == get_profile("smoke")
    for bad in (["--world-fps", "0"], ["--cell-iters", "0"], ["--cell-crop", "999", "8"]):
        with pytest.raises(SystemExit):
            budget_from_arguments(parser, parser.parse_args(bad))


def test_neighbour_change_grows_with_distance_and_with_a_lower_frame_rate(isolated_runs):
    from pathlib import Path

    from wrp.tables import TRUE_LABELS, cell_budget, neighbour_change

    near_far = neighbour_change("smoke", 0, [1, 4])
    assert list(near_far) == [1, 4] and 0 < near_far[1] < near_far[4] < 100
    assert neighbour_change(cell_budget("smoke", fps=7), 0, [4])[4] > near_far[4]
    assert list(neighbour_change("smoke", 0)) == [1, 2, 4], "1, 2, 5 and k=4, inside the profile's range"
    Path(generated_pairs("smoke", 0, TRUE_LABELS, 1, progress=False)[0][1]).unlink()
    with pytest.raises(FileNotFoundError, match="neighbour_change needs a dataset that labels every"):
        neighbour_change("smoke", 0, [1])
