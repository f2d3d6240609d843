"""Tables 1 and 2: cells trained with each label policy, cached per cell, written beside the paper's."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from wrp import stages
from wrp.data import Manifest
from wrp.metrics import mean_std
from wrp.profiles import Run
from wrp.stages import generated_pairs, manifest_for, train_cell
from wrp.tables import (
    ARCHS,
    COLUMNS,
    RUN_FIELDS,
    TABLE2_ROWS,
    gains_over,
    gains_report,
    grid_note,
    table1,
    table1_checks,
    table1_runs,
    table2,
    table2_arch,
    write_table1,
    write_table2,
)


def _smoke(**overrides) -> Run:
    """The smoke profile's run on seed 0 (with profile field ``overrides``), quietly."""
    return Run.create("smoke", progress=False, **overrides)


def _table_run(*argv: str, table: int = 1) -> Run:
    """The run ``wrp table{table} --profile smoke ARGV`` resolves (``wrp.cli.table_run``)."""
    import argparse

    from wrp.cli import add_run_options, add_table_options, table_run

    parser = argparse.ArgumentParser()
    add_table_options(parser, table)
    add_run_options(parser, seed=False)
    return table_run(parser.parse_args(["--profile", "smoke", "--no-progress", *argv]))


def test_min_class_pixels_reaches_the_cells_that_train_on_generated_labels(isolated_runs, monkeypatch):
    run = _table_run("--min-class-pixels", "16", "--world-seed", "0")
    assert run.profile.table_min_class_pixels == 16 and _table_run().profile.table_min_class_pixels == 1
    jobs = {}

    def record(run, arch, train_seed=None, **overrides):  # the cell's job, without training it
        jobs[overrides.get("generated") is not None] = overrides
        raise StopIteration

    monkeypatch.setattr(stages, "train_segmenter", record)
    monkeypatch.setattr(stages, "generated_pairs", lambda run, policy, k, labels=None: [["a.png", "a.lbl"]])
    for policy in ("baseline", "warp-refine"):
        with pytest.raises(StopIteration):
            train_cell(run, "deeplabv3", policy)
    assert "generated_min_pixels" not in jobs[False], "Baseline has no generated labels"
    assert jobs[True]["generated_min_pixels"] == 16
    assert "16 pixels" in grid_note(run)


def test_generated_pairs_cover_the_unlabelled_training_frames_within_k(isolated_runs):
    run = _smoke()
    clips = Manifest.load(manifest_for(run)).clips("train")
    pairs = generated_pairs(run, "motion-only", k=2)
    assert len(pairs) == 4 * len(clips)  # ±1, ±2 of every labelled frame
    labelled = {str(c.images[c.labelled]) for c in clips}
    assert not labelled & {image for image, _ in pairs}, "a generated label never replaces a human one"
    assert all("labels/motion-only/gtFine/" in label for _, label in pairs)
    with pytest.raises(ValueError, match="must lie in"):
        generated_pairs(run, "motion-only", k=99)


def test_table1_trains_every_cell_once_and_writes_ours_beside_the_papers(isolated_runs, tmp_path):
    run = _smoke()
    results = table1(run, archs=["MSA-HRNet-OCR"], seeds=[0])
    assert list(results["MSA-HRNet-OCR"]) == list(COLUMNS), "the paper's four, the ceiling, confident pixels"
    assert list(COLUMNS[:4]) == ["baseline", "motion-only", "semantic-only", "warp-refine"]
    cell = train_cell(run, "msa_hrnet_ocr", "warp-refine")
    done = (isolated_runs / "stages" / "segmenter" / cell["stage"].split("/")[-1] / "stage.json")
    finished = json.loads(done.read_text())["finished"]
    again = train_cell(run, "msa_hrnet_ocr", "warp-refine")
    assert again["stage"] == cell["stage"] and again["miou"] == results["MSA-HRNet-OCR"]["warp-refine"][0]
    assert json.loads(done.read_text())["finished"] == finished  # reused, not retrained
    csv_path, md_path = write_table1(results, tmp_path / "table1", note="smoke profile: 1 seed")
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["model", "source", *COLUMNS]
    assert rows[1][1] == "ours" and " ± " in rows[1][2]
    assert rows[2][1].startswith("paper") and rows[2][2] == "83.35"
    assert "*paper, Cityscapes*" in md_path.read_text() and "smoke profile" in md_path.read_text()


def test_table2_rows_differ_in_loss_iterations_lr_and_generated_labels(isolated_runs, tmp_path):
    run = _smoke()
    results = table2(run, seeds=[0])
    assert list(results) == list(TABLE2_ROWS)
    # Table 2's architecture: the first of the profile's table_archs
    arch = ARCHS[table2_arch(run.profile)]
    stages = {row: train_cell(run, arch, spec["policy"], spec["k"], spec["loss"],
                              spec["iters_share"], spec["lr_factor"])["stage"]
              for row, spec in TABLE2_ROWS.items()}
    assert len(set(stages.values())) == len(TABLE2_ROWS), "every row is its own training run"
    assert train_cell(run, arch, "baseline")["stage"] == stages["Baseline B"], \
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


def test_the_note_under_a_table_says_when_the_grid_is_reduced(tmp_path):
    full = grid_note(Run.create("paper", dataset=tmp_path, device="cpu", progress=False))
    assert "Reduced grid" not in full and "seed(s) 0, 1, 2" in full
    smoke = _smoke()
    reduced = grid_note(smoke, seeds=[0], archs=["DeepLabV3"])
    assert "**Reduced grid**" in reduced and "1 of the 3 architectures (DeepLabV3)" in reduced
    assert "1 seed instead of 3" in reduced
    assert "wrp table1 --profile smoke --arch DeepLabV3 --arch OCRNet" in reduced
    assert reduced.endswith("--seeds 0 1 2` runs more; `--profile paper --dataset DIR` the paper's grid.")
    assert "from random weights" in reduced and "motion-only's from ±2" in reduced
    pretrained = grid_note(Run.create("table", device="cpu", progress=False, table_pretrain="verge"))
    assert "fine-tuned from its architecture pretrained on the `verge` style's world" in pretrained
    assert "--seeds" not in pretrained  # five seeds: only the architectures are left out
    table = grid_note(Run.create("table", device="cpu", progress=False))
    assert "every cell from random weights, 1200 iterations" in table
    assert "(20 labelled frames: 20 training records × 1 partition)" in table
    assert "g_ψ fine-tuned from MSA-HRNet-OCR pretrained on the `verge` style's world" in table
    assert "scored on every frame of every record of world 7 (seen by no cell)" in table
    assert "inpaint" not in table
    semantic = grid_note(Run.create("table", device="cpu", progress=False, inpaint="semantic"))
    assert "Ω reads g_ψ's label where the motion fails (inpaint=semantic)" in semantic
    assert "1 seed instead of 3" in grid_note(smoke, seeds=[0], table=2)
    assert "architectures" not in grid_note(smoke, seeds=[0], table=2)  # Table 2 has one architecture


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
    assert "; per seed -1.00 / +2.00 / -0.50; paired 95 % CI [" in report[1] and "per seed" not in report[3]
    # noise: differences −1, 2, −0.5 → mean 0.17, sd 1.61, t_{0.975, 2} = 4.303 → ± 3.99
    assert by["noise"]["paired_ci95"] == pytest.approx([-3.83, 4.16], abs=0.01)
    assert by["one"]["paired_ci95"] is None


def test_the_paired_interval_is_students_t_on_the_differences():
    from wrp.metrics import paired_interval, t975

    mean, low, high = paired_interval([1.0, 2.0, 3.0])  # sd 1, n 3: ± 4.303 / √3
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - 4.303 / 3**0.5, 2.0 + 4.303 / 3**0.5))
    assert t975(30) == 2.042 and t975(40) == pytest.approx(2.021, abs=0.001)
    assert t975(1000) == pytest.approx(1.962, abs=0.001)
    with pytest.raises(ValueError, match="≥ 2 seeds"):
        paired_interval([1.0])


def test_table_settings_of_a_profile_fall_back_and_are_checked():
    from wrp.profiles import get_profile

    paper = get_profile("paper")
    assert _table_run().profile == get_profile("smoke")
    longer = _table_run("--cell-iters", "7", "--cell-crop", "32", "64").profile
    assert longer.table_iters == 7 and longer.table_crop == (32, 64)
    assert longer.frame_crop(longer.table_crop) == (32, 64)
    assert paper.table_seeds == (0, 1, 2) and paper.table_iters == paper.seg_iters
    assert paper.frame_crop(paper.table_crop) == paper.seg_crop and len(paper.table_archs) == 3
    demo = get_profile("demo")
    assert demo.frame_crop(demo.table_crop) == tuple(demo.table_crop or demo.seg_crop)
    with pytest.raises(ValueError, match="table_crop=\\(999, 8\\) must lie inside the frame"):
        get_profile("smoke", table_crop=(999, 8))
    with pytest.raises(ValueError, match="table_archs and table_seeds must not be empty"):
        get_profile("smoke", table_seeds=())
    with pytest.raises(ValueError, match="table_iters=0"):
        get_profile("smoke", table_iters=0)


def test_a_cell_trains_at_the_profiles_table_budget(isolated_runs):
    run = _smoke(table_iters=3, table_crop=(32, 64))
    cell = train_cell(run, "deeplabv3", None, iters_share=1 / 3)
    job = json.loads(open(f"{cell['stage']}/job.json").read())
    assert job["train"]["iters"] == 1 and job["data"]["kwargs"]["crop"] == [32, 64]


def test_figure_3_reads_the_table_cells_without_training_again(isolated_runs):
    from wrp.tables import fig3_rows

    run = _smoke()
    table1(run, policies=["baseline", "warp-refine"], seeds=[0])
    stages = sorted((isolated_runs / "stages" / "segmenter").iterdir())
    rows = fig3_rows(run, count=2)
    assert sorted((isolated_runs / "stages" / "segmenter").iterdir()) == stages, "no cell trained twice"
    assert len(rows) == 1 and rows[0]["baseline"].shape == rows[0]["truth"].shape  # smoke: 1 val partition
    assert {"fixed", "broken", "both_wrong"} <= set(rows[0])


def test_a_world_seed_keeps_the_world_and_varies_only_the_segmenters_training(isolated_runs):
    run = _smoke(table_iters=1, table_crop=(32, 64))
    own = table1(run, ["DeepLabV3"], ["baseline"], [0])
    kept = table1(run, ["DeepLabV3"], ["baseline"], [0, 1], world_seed=0)
    assert kept["DeepLabV3"]["baseline"][0] == own["DeepLabV3"]["baseline"][0]  # the same cell, reused
    jobs = [json.loads((d / "job.json").read_text())
            for d in sorted((isolated_runs / "stages" / "segmenter").iterdir())]
    assert len(jobs) == 2, "training seed 0 on world 0 is the seed-0 cell, not a new one"
    assert {j["data"]["kwargs"]["manifest"] for j in jobs} == {jobs[0]["data"]["kwargs"]["manifest"]}
    assert sorted(j["train"]["seed"] for j in jobs) == [0, 1]
    assert sorted(j["data"]["kwargs"]["seed"] for j in jobs) == [0, 1]
    note = grid_note(run, [0, 1], ["DeepLabV3"], world_seed=0)
    assert "one world (seed 0) and its labels, training seed(s) 0, 1" in note


def test_k_picks_how_far_warp_refine_labels_reach_while_motion_only_keeps_two(isolated_runs):
    run = _smoke(table_iters=1, table_crop=(32, 64))
    table1(run, ["DeepLabV3"], ["motion-only", "semantic-only"], [0], k=1)
    jobs = [json.loads((d / "job.json").read_text())["data"]["kwargs"]["generated"]
            for d in (isolated_runs / "stages" / "segmenter").iterdir()]
    counts = sorted(len(g) for g in jobs if g)
    assert counts == sorted([len(generated_pairs(run, "semantic-only", 1)),
                             len(generated_pairs(run, "motion-only", 2))])
    assert counts[0] < counts[1]


def test_true_labels_replace_each_generated_label_with_the_worlds_own(isolated_runs):
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from wrp.stages import TRUE_LABELS

    run = _smoke()
    pairs = generated_pairs(run, "motion-only", 2)
    truths = generated_pairs(run, TRUE_LABELS, 2)
    assert [t[0] for t in truths] == [p[0] for p in pairs]
    for (_, generated), (_, truth) in zip(pairs, truths, strict=True):
        assert Path(truth).name == Path(generated).name and "/gtFine/" in truth and truth != generated
    differs = [not np.array_equal(np.array(Image.open(g)), np.array(Image.open(t)))
               for (_, g), (_, t) in zip(pairs, truths, strict=True)]
    assert any(differs), "motion-only labels two frames away are not all perfect"
    Path(truths[0][1]).unlink()
    with pytest.raises(FileNotFoundError, match=Path(truths[0][1]).name):
        generated_pairs(run, TRUE_LABELS, 2)


def test_world_fps_renders_a_faster_world_for_every_stage_and_the_note_says_so(isolated_runs):
    from wrp.profiles import get_profile
    from wrp.synthetic import SynthConfig

    smoke = _smoke()
    assert smoke.profile.fps is None and SynthConfig.from_profile(smoke.profile, 0).fps == 35.0, \
        "a named profile renders the world's own 35 fps"
    slow = _table_run("--world-fps", "7")
    assert slow.profile.fps == 7.0 and slow == smoke.with_profile(fps=7.0)
    assert SynthConfig.from_profile(slow.profile, 0).fps == 7.0
    default, fast = manifest_for(smoke), manifest_for(slow)
    assert default != fast, "another frame rate is another world, keyed apart"
    assert json.loads((Manifest.load(fast).root / "world.json").read_text())["config"]["fps"] == 7.0
    assert "smoke profile on the synthetic world at 7 frames/s" in grid_note(slow, [0])
    assert "frames/s" not in grid_note(smoke, [0])
    with pytest.raises(ValueError, match="fps=0.0 must be positive"):
        get_profile("smoke", fps=0.0)


def test_world_density_fills_the_world_with_more_moving_things_and_the_note_says_so(isolated_runs):
    from wrp.profiles import get_profile
    from wrp.synthetic import SynthConfig, build_scene

    smoke = _smoke()
    assert smoke.profile.density is None and SynthConfig.from_profile(smoke.profile, 0).density == 1.0
    dense = _table_run("--world-density", "3")
    assert dense == smoke.with_profile(density=3.0)
    plain, config = (SynthConfig.from_profile(run.profile, 0) for run in (smoke, dense))
    assert config.density == 3.0 and config == replace(plain, density=3.0)
    objects = [build_scene(c, 0).meta["counts"] for c in (plain, config)]
    for kind in ("person", "rider"):
        assert objects[1].get(kind, 0) > 2 * objects[0].get(kind, 0), (kind, objects)
    assert manifest_for(dense) != manifest_for(smoke), "another density is another world, keyed apart"
    assert "with 3× its vehicles, persons and riders" in grid_note(dense, [0])
    assert "vehicles, persons" not in grid_note(smoke, [0])
    with pytest.raises(ValueError, match="density=0.0 must be positive"):
        get_profile("smoke", density=0.0)


def test_budget_options_reach_the_profile_and_bad_values_are_refused(isolated_runs, capsys):
    from wrp.cli import main
    from wrp.profiles import get_profile

    for table in (1, 2):
        prof = _table_run("--cell-iters", "9", "--cell-crop", "32", "64", "--world-fps", "10",
                          table=table).profile
        assert (prof.table_iters, prof.table_crop, prof.fps) == (9, (32, 64), 10.0)
        assert _table_run(table=table).profile == get_profile("smoke")
    for bad in (["--world-fps", "0"], ["--cell-iters", "0"]):  # refused while parsing, naming the option
        with pytest.raises(SystemExit) as exc:
            main(["table1", "--profile", "smoke", "--no-progress", *bad])
        assert exc.value.code == 2 and f"wrp: error: argument {bad[0]}" in capsys.readouterr().err
    bad = ["--cell-crop", "999", "8"]  # refused by the profile, which knows the frame
    with pytest.raises(ValueError, match="table_crop=\\(999, 8\\) must lie inside the frame"):
        _table_run(*bad)
    assert main(["table1", "--profile", "smoke", "--no-progress", *bad]) == 2
    assert "wrp: error:" in capsys.readouterr().err
    assert not (isolated_runs / "stages").exists(), "a bad budget is refused before any stage runs"


def test_neighbour_change_grows_with_distance_and_with_a_lower_frame_rate(isolated_runs):
    from pathlib import Path

    from wrp.stages import TRUE_LABELS
    from wrp.tables import neighbour_change

    run = _smoke()
    near_far = neighbour_change(run, [1, 4])
    assert list(near_far) == [1, 4] and 0 < near_far[1] < near_far[4] < 100
    assert neighbour_change(run.with_profile(fps=7), [4])[4] > near_far[4]
    assert list(neighbour_change(run)) == [1, 2, 4], "1, 2, 5 and k=4, inside the profile's range"
    Path(generated_pairs(run, TRUE_LABELS, 1)[0][1]).unlink()
    with pytest.raises(FileNotFoundError, match="neighbour_change needs a dataset that labels every"):
        neighbour_change(run, [1])


def test_a_motion_only_cell_takes_labels_of_two_frames_unless_told_otherwise(tmp_path, monkeypatch):
    import wrp.stages as stages

    asked: list[tuple[str, int | None]] = []
    monkeypatch.setattr(stages, "generated_pairs",
                        lambda run, policy, k=None, labels=None: asked.append((policy, k)) or [])

    def trained(run, arch, train_seed=None, **job):
        (tmp_path / "metrics.json").write_text(json.dumps({"miou": 1.0, "images": 16}))
        return tmp_path

    monkeypatch.setattr(stages, "train_segmenter", trained)
    run = _smoke()
    train_cell(run, "deeplabv3", "motion-only")
    train_cell(run, "deeplabv3", "motion-only", k=3)
    train_cell(run, "deeplabv3", "warp-refine")
    assert asked == [("motion-only", 2), ("motion-only", 3), ("warp-refine", None)]


def test_paired_runs_are_written_in_long_form_and_scored_on_every_frame(isolated_runs, tmp_path):
    run = _smoke(table_iters=1, table_crop=(32, 64), table_world_seed=0, table_eval="every")
    runs = table1_runs(run, ["DeepLabV3"], ["baseline", "warp-refine"], [0, 1])
    manifest = Manifest.load(manifest_for(run))
    every = sum(len(clip) for clip in manifest.clips("val"))
    assert every > len(manifest.clips("val")), "more frames than the labelled ones"
    assert [(r["policy"], r["seed"], r["world_seed"], r["eval_frames"]) for r in runs] == [
        ("baseline", 0, 0, every), ("baseline", 1, 0, every),
        ("warp-refine", 0, 0, every), ("warp-refine", 1, 0, every)]
    trained = sorted((isolated_runs / "stages" / "segmenter").iterdir())
    labelled = table1_runs(run.with_profile(table_eval="labelled"), ["DeepLabV3"], ["baseline"], [0])
    assert labelled[0]["eval_frames"] == len(manifest.clips("val"))
    assert sorted((isolated_runs / "stages" / "segmenter").iterdir()) == trained, \
        "scoring on other frames reuses the trained cell"
    from wrp.tables import cells_of

    results = cells_of(runs)
    paths = write_table1(results, tmp_path / "table1", "note", runs)
    rows = list(csv.DictReader((tmp_path / "table1_runs.csv").open()))
    assert paths[-1] == tmp_path / "table1_runs.csv" and tuple(rows[0]) == RUN_FIELDS
    assert [float(r["miou"]) for r in rows] == [r["miou"] for r in runs]
    md = (tmp_path / "table1.md").read_text()
    assert "gain of each column over Baseline (ours), paired by seed" in md
    refine = next(line for line in md.splitlines() if line.startswith("| warp-refine | "))
    gain = [g for g in gains_over(results["DeepLabV3"], "baseline") if g["column"] == "warp-refine"][0]
    assert f"[{gain['paired_ci95'][0]:+.2f}, {gain['paired_ci95'][1]:+.2f}]" in refine
    folders = (isolated_runs / "stages" / "segmenter").iterdir()
    jobs = [json.loads((d / "job.json").read_text()) for d in folders]
    cells = [j for j in jobs if j["train"]["iters"] == 1]  # g_ψ trains longer
    assert sorted(j["train"]["seed"] for j in cells) == [0, 0, 1, 1], "a segmenter per column and seed"
    assert len({j["data"]["kwargs"]["manifest"] for j in cells}) == 1, "all on world 0"
    assert "scored on every frame of the held-out records" in grid_note(run, [0, 1])


def test_a_score_world_scores_every_cell_on_every_frame_of_a_world_no_cell_learns_from(isolated_runs):
    run = _smoke(table_iters=1, table_crop=(32, 64), table_world_seed=0, table_eval="every")
    own = table1_runs(run, ["DeepLabV3"], ["baseline"], [0])[0]
    there = table1_runs(run.with_profile(table_score_world=2), ["DeepLabV3"], ["baseline"], [0])[0]
    world = Manifest.load(manifest_for(run.with_seed(2)))
    frames = sum(len(clip) for split in ("train", "val") for clip in world.clips(split))
    assert there["eval_frames"] == frames != own["eval_frames"]
    assert there["world_seed"] == 0, "the cell is the one trained on world 0"
    trained = sorted((isolated_runs / "stages" / "segmenter").iterdir())
    assert len(trained) == 1, "one cell, trained once for both scores"
    assert "every frame of every record of world 2 (seen by no cell)" in grid_note(
        run.with_profile(table_score_world=2), [0])
    for world_seed, score, match in [(0, 0, "is the world the cells train on"),
                                     (None, 1, "is a world the cells train on"),
                                     (0, stages.PRETRAIN_SEED, "the world pretraining reads")]:
        with pytest.raises(ValueError, match=match):
            table1_runs(run.with_profile(table_world_seed=world_seed, table_score_world=score),
                        ["DeepLabV3"], ["baseline"], [0, 1])
    assert _table_run("--score-world", "5").profile.table_score_world == 5
    assert _table_run("--profile", "table", "--score-world", "none").profile.table_score_world is None
    unset = _table_run("--profile", "table", "--score-world", "none", "--eval-frames", "labelled").profile
    assert unset.table_eval == "labelled", "without a score world the labelled frames may score the cells"
    assert _table_run("--profile", "table").profile.table_score_world == 7


def test_every_frame_scoring_needs_every_frames_label(isolated_runs, monkeypatch):
    import wrp.stages as stages

    run = _smoke(table_iters=1, table_crop=(32, 64), table_eval="every")
    monkeypatch.setattr(stages, "every_frame_labelled", lambda clips, truth: False)
    for runs in (lambda: table1_runs(run, ["DeepLabV3"], ["baseline"], [0]), lambda: table2(run, seeds=[0])):
        with pytest.raises(ValueError, match="use table_eval='labelled'"):
            runs()
    assert not (isolated_runs / "stages" / "segmenter").exists(), "refused before any cell trains"
    with pytest.raises(ValueError, match="table_eval='often' must be 'labelled' or 'every'"):
        _smoke(table_eval="often")
    with pytest.raises(ValueError, match="table_min_confidence=0.0 must lie in"):
        _smoke(table_min_confidence=0.0)


def test_the_confident_column_leaves_warp_refines_unsure_pixels_unlabelled(isolated_runs):
    from pathlib import Path

    import numpy as np

    from wrp.data import IGNORE_INDEX, read_label
    from wrp.paper import CONFIDENT
    from wrp.pipeline import confidence_file
    from wrp.policies import read_confidence

    run = _smoke(table_min_confidence=0.9)
    whole, confident = generated_pairs(run, "warp-refine", 2), generated_pairs(run, CONFIDENT, 2)
    assert [p[0] for p in confident] == [p[0] for p in whole]
    dropped = 0
    for (_, full), (_, kept) in zip(whole, confident, strict=True):
        assert "/warp-refine@0.9/" in kept
        full_ids, kept_ids = read_label(full), read_label(kept)
        # the warp-refine column's own labels, with their confidence: one propagation serves both
        unsure = read_confidence(confidence_file(Path(full))) < 0.9
        assert np.array_equal(kept_ids[~unsure], full_ids[~unsure])
        assert (kept_ids[unsure] == IGNORE_INDEX).all()
        dropped += int(unsure.sum())
    assert dropped > 0, "a smoke-sized Ω is unsure somewhere"


def test_table1_checks_ask_for_a_resolved_gain_and_motion_only_below_warp_refine():
    cells = {"baseline": [50.0, 51.0, 52.0, 50.5, 51.5], "warp-refine": [52.0, 52.6, 53.4, 52.2, 53.1],
             "motion-only": [50.2, 51.1, 52.3, 50.4, 51.9]}
    checks = table1_checks({"X": gains_over(cells, "baseline")})
    assert checks == {"X: warp-refine ≥ Baseline + 1.5": True,
                      "X: warp-refine − Baseline, paired 95 % CI above 0": True,
                      "X: motion-only gains less than warp-refine": True}
    cells["warp-refine"] = [55.0, 49.0, 56.0, 49.0, 55.0]  # +1.5 on average, but not resolved
    checks = table1_checks({"X": gains_over(cells, "baseline")})
    assert checks["X: warp-refine ≥ Baseline + 1.5"]
    assert not checks["X: warp-refine − Baseline, paired 95 % CI above 0"]


def test_neighbour_examples_show_what_a_slower_camera_adds(isolated_runs):
    import numpy as np

    from wrp.tables import neighbour_examples
    from wrp.viz import neighbour_change_figure

    fast, slow = neighbour_examples(_smoke(), [35, 7], d=4)
    assert (fast["fps"], slow["fps"], fast["d"]) == (35.0, 7.0, 4) and fast["share"] < slow["share"]
    assert fast["label"].shape == fast["label_d"].shape == fast["image"].shape[:2]
    assert not np.array_equal(slow["label"], slow["label_d"]), "the camera moved"
    fig = neighbour_change_figure([fast, slow], title="t")
    assert len(fig.axes) == 6


def test_table2_pairs_its_rows_on_one_world_and_the_options_reach_the_profile(isolated_runs):
    from wrp.tables import table2_runs

    run = _smoke(table_iters=1, table_crop=(32, 64))
    rows = table2_runs(run, ["Baseline B", "B + RLL"], [0, 1], world_seed=0)
    assert [(r["policy"], r["seed"], r["world_seed"]) for r in rows] == [
        ("Baseline B", 0, 0), ("Baseline B", 1, 0), ("B + RLL", 0, 0), ("B + RLL", 1, 0)]
    manifests = {json.loads((d / "job.json").read_text())["data"]["kwargs"]["manifest"]
                 for d in (isolated_runs / "stages" / "segmenter").iterdir()}
    assert len(manifests) == 1
    prof = _table_run("--min-confidence", "0.5", "--world-seed", "3", "--eval-frames", "every").profile
    assert (prof.table_min_confidence, prof.table_world_seed, prof.table_eval) == (0.5, 3, "every")
    assert _table_run("--world-seed", "2", table=2).profile.table_world_seed == 2
    assert table1_runs.__module__ == "wrp.tables"


def test_a_table_with_one_seed_falls_back_to_the_seed_spread():
    checks = table1_checks({"X": gains_over({"baseline": [50.0], "warp-refine": [52.0]}, "baseline")})
    assert checks == {"X: warp-refine ≥ Baseline + 1.5": True, "X: warp-refine gain > 2 std": True}


def test_pretrained_cells_start_from_one_segmenter_of_another_world(isolated_runs):
    run = _smoke(table_iters=1, table_crop=(32, 64), table_pretrain="verge")
    fewer = train_cell(run.with_profile(train_records=1), "deeplabv3", None)
    cells = [train_cell(run, "deeplabv3", policy, train_seed=seed)
             for policy, seed in [(None, 0), (None, 1), ("true-labels", 0)]]
    inits = {json.loads(open(f"{c['stage']}/job.json").read())["train"]["init"] for c in [*cells, fewer]}
    assert len(inits) == 1, "every column, seed and size of the table's world starts from the same weights"
    pretrained = json.loads((Path(inits.pop()).parent / "job.json").read_text())
    world = Manifest.load(pretrained["data"]["kwargs"]["manifest"])
    assert pretrained["data"]["kwargs"]["generated"], "pretrained on every frame's true label"
    assert pretrained["train"]["iters"] == run.profile.seg_iters and "init" not in pretrained["train"]
    ours = Manifest.load(manifest_for(run.with_seed(0)))
    assert {c.images[0] for c in world.clips("train")}.isdisjoint({c.images[0] for c in ours.clips("train")})
    worlds = [json.loads(p.read_text()) for p in (isolated_runs / "stages" / "synth").glob("*/config.json")]
    assert any('"verge"' in json.dumps(w) and '1000' in json.dumps(w) for w in worlds), worlds


def test_a_runs_file_reads_back_typed_and_its_gains_pair_within_each_world(tmp_path):
    """table1_runs.csv round-trips; gains pair seed by seed inside a world seed, never across two."""
    from wrp.tables import gains_by_world, published_runs, read_runs, write_runs

    rows = [{"arch": "DeepLabV3", "policy": policy, "seed": seed, "world_seed": world, "miou": miou,
             "eval_frames": 336}
            for world, shift in ((0, 1.0), (1, -1.0))
            for policy, base in (("baseline", 30.0), ("warp-refine", 30.0 + shift))
            for seed, miou in ((1, base + 2.0), (0, base))]  # seeds out of order
    path = write_runs(rows, tmp_path / "table1_runs.csv")
    assert read_runs(path) == rows
    gains = gains_by_world(read_runs(path))
    assert set(gains) == {("DeepLabV3", 0), ("DeepLabV3", 1)}
    (world0,), (world1,) = gains[("DeepLabV3", 0)], gains[("DeepLabV3", 1)]
    assert world0["per_seed"] == [1.0, 1.0] and world1["per_seed"] == [-1.0, -1.0]
    # a second world written into a subfolder is read with the first; a run written twice counts once
    write_runs([r for r in rows if r["world_seed"] == 1], tmp_path / "table1_world_seed1" / "table1_runs.csv")
    assert sorted(map(str, published_runs(tmp_path))) == sorted(map(str, rows))
    assert published_runs(tmp_path / "table1_world_seed1", table=2) == []
    path.write_text("arch,policy,seed\nDeepLabV3,baseline,0\n")
    with pytest.raises(ValueError, match="table1_runs.csv: columns .* write it again"):
        read_runs(path)


def test_cells_pretrained_on_the_categories_learn_the_classes_from_the_tables_labels(isolated_runs):
    from wrp.data import CATEGORY_NAMES
    from wrp.stages import segmentation_dataset

    run = _table_run("--pretrain", "verge", "--pretrain-labels", "categories", "--cell-iters", "1",
                     "--cell-crop", "32", "64")
    assert run.profile.table_pretrain_labels == "categories"
    cell = train_cell(run, "deeplabv3", None)
    job = json.loads(Path(cell["stage"], "job.json").read_text())
    start = Path(job["train"]["init"]).parent
    pretrained = json.loads((start / "job.json").read_text())
    assert pretrained["model"]["kwargs"]["num_classes"] == len(CATEGORY_NAMES) == 7
    assert pretrained["data"]["kwargs"]["label_set"] == "categories"
    assert "num_classes" not in job["model"]["kwargs"] and "label_set" not in job["data"]["kwargs"]
    assert set(json.loads((start / "metrics.json").read_text())["per_class_iou"]) <= set(CATEGORY_NAMES)
    labels = torch.cat([segmentation_dataset(**pretrained["data"]["kwargs"])[i][1] for i in range(4)])
    assert 0 <= labels[labels != 255].min() and labels[labels != 255].max() < 7
    classes = _table_run("--pretrain", "verge", "--cell-iters", "1", "--cell-crop", "32", "64")
    assert Path(train_cell(classes, "deeplabv3", None)["stage"]) != Path(cell["stage"])
    with pytest.raises(ValueError, match="table_pretrain_labels='parts' must be 'classes' or 'categories'"):
        _smoke(table_pretrain_labels="parts")
    with pytest.raises(ValueError, match=r"there is none: name its world with table_pretrain \(--pretrain\)"):
        _table_run("--pretrain-labels", "categories")


def test_the_table_says_which_classes_a_gain_comes_from_paired_by_seed(tmp_path):
    """Per-class IoU changes pair seed by seed within a world; each class's share of the mIoU gain is
    its change over the number of classes scored, and the csv keeps its long form."""
    from wrp.tables import cells_of, class_gains, read_runs

    def row(policy, seed, world, veg, car):
        return {"arch": "DeepLabV3", "policy": policy, "seed": seed, "world_seed": world,
                "miou": (veg + car + 90.0) / 3, "eval_frames": 588,
                "per_class_iou": {"vegetation": veg, "car": car, "road": 90.0}}

    runs = [row("baseline", 0, 1, 10.0, 50.0), row("baseline", 1, 1, 20.0, 60.0),
            row("warp-refine", 0, 1, 40.0, 50.0), row("warp-refine", 1, 1, 30.0, 66.0),
            row("warp-refine", 2, 1, 99.0, 99.0)]  # no Baseline cell of seed 2: not paired
    entry = class_gains(runs)["DeepLabV3"]
    assert entry["classes"] == 3
    assert entry["gains"]["warp-refine"] == {"vegetation": 20.0, "car": 3.0, "road": 0.0}
    assert class_gains([{**r, "per_class_iou": {}} for r in runs]) == {}
    write_table1(cells_of(runs), tmp_path / "table1", "note", runs)
    md = (tmp_path / "table1.md").read_text()
    assert "**DeepLabV3**: where the gain comes from, per class" in md
    lines = md.splitlines()
    first = lines.index("| class | warp-refine |") + 2
    assert lines[first] == "| vegetation | +20.0 (+6.67) |", "the class changed most comes first"
    assert lines[first + 1] == "| car | +3.0 (+1.00) |"
    assert [r["miou"] for r in read_runs(tmp_path / "table1_runs.csv")] == [r["miou"] for r in runs]


def test_a_tables_figure_names_the_world_its_cells_trained_on():
    from wrp.tables import figure_title

    paired = figure_title(_smoke(table_world_seed=3), 1, [0, 1])
    assert paired.startswith("Table 1 (smoke profile, trained on world 3): ")
    assert paired.endswith("mean ± std over training seeds [0, 1], dots = single seeds")
    assert "trained on world" not in figure_title(_smoke(), 2, [0]), "each seed its own world"


def test_cells_side_by_side_give_the_numbers_of_one_thread_cells_one_after_another(isolated_runs):
    from wrp.runtime import usable_cores

    run = _smoke(table_iters=2, table_crop=(32, 64))
    grid = (run, ["DeepLabV3"], ["baseline", "warp-refine"], [0, 1])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = table1_runs(*grid, world_seed=0)
    finally:
        torch.set_num_threads(threads)
    def cells() -> list[Path]:  # the table's DeepLabV3 cells (g_ψ is the other segmenter)
        jobs = {f: json.loads((f / "config.json").read_text())["job"]
                for f in (isolated_runs / "stages" / "segmenter").glob("*")}
        return [f for f, job in jobs.items() if job["model"]["kwargs"]["arch"] == "deeplabv3"]

    assert len(cells()) == 4
    for folder in cells():
        shutil.rmtree(folder)
    side_by_side = table1_runs(*grid, world_seed=0, jobs=max(2, usable_cores()))  # one thread each
    assert [(r["policy"], r["seed"], r["miou"]) for r in side_by_side] == \
        [(r["policy"], r["seed"], r["miou"]) for r in alone]
    assert [json.loads((f / "stage.json").read_text())["threads"] for f in cells()] == [1] * 4
    from wrp.tables import cells_of

    (_, md, _) = write_table1(cells_of(side_by_side), isolated_runs / "t" / "table1", "Smoke.", side_by_side)
    assert md.read_text().rstrip().endswith("Smoke. Cells trained with 1 torch thread(s) each.")


def test_a_cell_that_fails_in_its_process_stops_the_table_and_keeps_what_finished(isolated_runs):
    from wrp.runtime import usable_cores
    from wrp.tables import train_cells

    run = _smoke(table_iters=1, table_crop=(32, 64))
    good = {"run": run, "arch": ARCHS["DeepLabV3"], "policy": "baseline", "train_seed": 0}
    with pytest.raises(ValueError, match="loss"):
        train_cells([good, {**good, "train_seed": 1, "loss": "no-such-loss"}], jobs=2)
    done = [f for f in (isolated_runs / "stages" / "segmenter").glob("*") if (f / "stage.json").is_file()]
    assert len(done) == 1, "the cell that trained is kept for the rerun"
    (alone,) = train_cells([{**good, "train_seed": 2}], jobs=2)  # a single cell: still its own thread count
    record = json.loads((Path(alone["stage"]) / "stage.json").read_text())
    assert record["threads"] == max(1, usable_cores() // 2)
    with pytest.raises(ValueError, match="jobs=0"):
        train_cells([good], jobs=0)
