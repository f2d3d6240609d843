"""Tables 1 and 2: cells trained with each label policy, cached per cell, written beside the paper's."""

from __future__ import annotations

import csv
import json

import pytest

from wrp.data import Manifest
from wrp.experiments import manifest_for
from wrp.tables import (
    TABLE1_POLICIES,
    TABLE2_ROWS,
    generated_pairs,
    mean_std,
    table1,
    table2,
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
    stages = {row: train_cell("smoke", 0, "msa_hrnet_ocr", spec["policy"], spec["k"], spec["loss"],
                              spec["iters_share"], spec["lr_factor"], progress=False)["stage"]
              for row, spec in TABLE2_ROWS.items()}
    assert len(set(stages.values())) == len(TABLE2_ROWS), "every row is its own training run"
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
