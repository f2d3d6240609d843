"""Bad input through the real command line: every case ends with exit code ≠ 0, one line
``wrp: error: …`` that names the option or the file, no traceback, and nothing new on disk.

Each case runs ``python -m wrp …`` in a fresh folder (``WRP_RUNS`` inside it); a case's ``setup``
writes the bad input first. The command line loads no model code to parse its options, so a case
refused there takes well under a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO


def _nothing(root: Path) -> None:
    pass


def _file(name: str, text: str = "not a folder\n") -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return setup


def _prepared(info: dict | None, text: str | None = None) -> Callable[[Path], None]:
    """A dataset folder whose ``splits/dataset.json`` holds ``info`` (or the raw ``text``)."""
    def setup(root: Path) -> None:
        splits = root / "data" / "splits"
        splits.mkdir(parents=True)
        (splits / "dataset.json").write_text(text if text is not None else json.dumps(info))
        for split in ("train", "val"):
            (splits / f"{split}.txt").write_text("town_000000\n")
    return setup


def _frames(label_missing: bool) -> Callable[[Path], None]:
    """Two videos of 5 frames for ``prepare-frames`` (partition length 5: frame 2 labelled)."""
    def setup(root: Path) -> None:
        rng = np.random.default_rng(0)
        for video in ("a", "b"):
            (root / "frames" / video).mkdir(parents=True)
            (root / "labels" / video).mkdir(parents=True)
            for i in range(5):
                frame = rng.integers(0, 255, (16, 32, 3), np.uint8)
                cv2.imwrite(str(root / "frames" / video / f"{i:03d}.png"), frame)
            if not (label_missing and video == "b"):
                cv2.imwrite(str(root / "labels" / video / "002.png"), np.full((16, 32), 7, np.uint8))
    return setup


def _stage_record(text: str) -> Callable[[Path], None]:
    return _file("runs/stages/segmenter/0123456789ab/stage.json", text)


GOOD_INFO = {"dataset": "own", "partition_length": 5, "labelled": 2, "split_mode": "layout"}

# (id, argv, setup, what the error line must name)
CASES: list[tuple[str, list[str], Callable[[Path], None], str]] = [
    ("train-seg iters 0", ["train-seg", "--iters", "0"], _nothing, "--iters"),
    ("train-seg lr 0", ["train-seg", "--lr", "0"], _nothing, "--lr"),
    ("train-seg iters text", ["train-seg", "--iters", "many"], _nothing, "--iters"),
    ("train-denoiser iters 0", ["train-denoiser", "--iters", "0"], _nothing, "--iters"),
    ("train-denoiser cycle 0", ["train-denoiser", "--cycle-lengths", "1", "0"], _nothing, "--cycle-lengths"),
    ("synth records 0", ["synth", "--records", "0", "--out", "w"], _nothing, "--records"),
    ("synth seed -1", ["synth", "--seed", "-1", "--out", "w"], _nothing, "--seed"),
    ("synth workers -1", ["synth", "--workers", "-1", "--out", "w"], _nothing, "--workers"),
    ("synth unknown style", ["synth", "--style", "mars", "--out", "w"], _nothing, "--style"),
    ("propagate seed -1", ["propagate", "--seed", "-1"], _nothing, "--seed"),
    ("propagate batch 0", ["propagate", "--batch", "0"], _nothing, "--batch"),
    ("propagate batch -3", ["propagate", "--batch", "-3"], _nothing, "--batch"),
    ("propagate nproc 0", ["propagate", "--nproc", "0"], _nothing, "--nproc"),
    ("propagate workers -1", ["propagate", "--workers", "-1"], _nothing, "--workers"),
    ("propagate min-confidence 1.5", ["propagate", "--min-confidence", "1.5"], _nothing, "--min-confidence"),
    ("propagate min-confidence with copy", ["propagate", "--profile", "smoke", "--min-confidence", "0.5",
                                            "--policy", "copy"], _nothing, "copy"),
    ("propagate nodes without rendezvous", ["propagate", "--nnodes", "2"], _nothing, "HOST:PORT"),
    ("propagate node rank beyond nodes", ["propagate", "--nnodes", "2", "--node-rank", "2",
                                          "--rdzv-endpoint", "node0:29500"], _nothing, "rank"),
    ("propagate policy twice", ["propagate", "--policy", "copy", "--policy", "copy"], _nothing, "--policy"),
    ("propagate unknown policy", ["propagate", "--policy", "magic"], _nothing, "--policy"),
    ("propagate unknown flow", ["propagate", "--flow", "magic"], _nothing, "--flow"),
    ("propagate device tpu", ["propagate", "--profile", "smoke", "--device", "tpu"], _nothing, "tpu"),
    ("assess policy copy", ["assess", "--policy", "copy"], _nothing, "--policy"),
    ("assess k 0", ["assess", "--k", "0"], _nothing, "--k"),
    ("assess dataset missing", ["assess", "--dataset", "nowhere"], _nothing, "nowhere"),
    ("table1 seeds -1", ["table1", "--seeds", "0", "-1"], _nothing, "--seeds"),
    ("table1 seed twice", ["table1", "--seeds", "1", "1"], _nothing, "--seeds"),
    ("table1 unknown arch", ["table1", "--arch", "UNet"], _nothing, "--arch"),
    ("table1 k 0", ["table1", "--k", "0"], _nothing, "--k"),
    ("table1 cell crop 0", ["table1", "--cell-crop", "0", "64"], _nothing, "--cell-crop"),
    ("table1 min confidence 2", ["table1", "--min-confidence", "2"], _nothing, "--min-confidence"),
    ("table1 min class pixels 0", ["table1", "--min-class-pixels", "0"], _nothing, "--min-class-pixels"),
    ("table1 eval unknown", ["table1", "--eval-frames", "some"], _nothing, "--eval-frames"),
    ("reproduce seed -1", ["reproduce", "--only", "03", "-p", "seed=-1"], _nothing, "seed"),
    ("reproduce seed text", ["reproduce", "--only", "03", "-p", "seed=notanumber"], _nothing, "seed"),
    ("reproduce unknown notebook", ["reproduce", "--only", "99"], _nothing, "99"),
    ("profiles unknown", ["profiles", "nope"], _nothing, "nope"),
    ("dataset missing", ["propagate", "--dataset", "nowhere"], _nothing, "nowhere"),
    ("dataset is a file", ["propagate", "--dataset", "data.txt"], _file("data.txt"), "data.txt"),
    ("dataset not prepared", ["propagate", "--profile", "smoke", "--dataset", "data"],
     _file("data/readme.txt"), "dataset.json"),
    ("dataset.json damaged", ["propagate", "--profile", "smoke", "--dataset", "data"],
     _prepared(None, "{not json"), "dataset.json"),
    ("dataset.json missing a key", ["propagate", "--profile", "smoke", "--dataset", "data"],
     _prepared({k: v for k, v in GOOD_INFO.items() if k != "partition_length"}), "dataset.json"),
    ("style with a dataset", ["propagate", "--profile", "smoke", "--dataset", "data", "--style", "verge"],
     _prepared(GOOD_INFO), "--style"),
    ("propagate out is a file", ["propagate", "--profile", "smoke", "--out", "labels"], _file("labels"),
     "labels"),
    ("synth out is a file", ["synth", "--profile", "smoke", "--out", "w"], _file("w"), "w"),
    ("world.json damaged", ["synth", "--profile", "smoke", "--out", "w"], _file("w/world.json", "{"),
     "world.json"),
    ("stage.json damaged", ["stages"], _stage_record("{"), "stage.json"),
    ("prepare-frames empty", ["prepare-frames", "frames", "labels", "--out", "tree"],
     lambda root: [(root / d).mkdir() for d in ("frames", "labels")], "frames"),
    ("prepare-frames label missing", ["prepare-frames", "frames", "labels", "--out", "tree",
                                      "--partition-length", "5"], _frames(label_missing=True), "002.png"),
]


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("argv, setup, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_naming_it_and_leaves_nothing_behind(tmp_path, argv, setup, names):
    setup(tmp_path)
    before = _files(tmp_path)
    env = {**os.environ, "WRP_RUNS": str(tmp_path / "runs"), "WRP_HOME": str(REPO),
           "PYTHONPATH": str(REPO), "WRP_DEBUG": ""}
    done = subprocess.run([sys.executable, "-m", "wrp", *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0, done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("wrp: error: ")]
    assert len(errors) == 1, done.stderr
    assert names in errors[0], errors[0]
    assert "Traceback" not in done.stderr, done.stderr
    after = _files(tmp_path)
    assert after == before, sorted(set(after) ^ set(before))
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


# ---------------------------------------------------------------------------------------------
# Two conflicting runs into one folder at the same moment
# ---------------------------------------------------------------------------------------------
REFUSALS = ("is being written by another", "holds part of another", "already holds a different",
            "propagated with other settings")


def _race(tmp_path: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "WRP_RUNS": str(tmp_path / "runs"), "WRP_HOME": str(REPO), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "wrp", *argv], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in commands]
    outs = [p.communicate(timeout=600) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err)
            for p, (out, err) in zip(procs, outs, strict=True)]


def _tree(root: Path, pattern: str = "*") -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern))
            if p.is_file() and ".progress" not in p.parts}


def _one_wins(tmp_path: Path, base: list[str], option: str, values: tuple[str, str], out: str) -> str:
    """Start ``base`` with each of two ``values`` of ``option`` into ``out`` at once: exactly one
    finishes, the other is refused with a clear message; the winner also runs alone into ``alone``.
    Returns the winning value."""
    done = _race(tmp_path, [base + [option, v, "--out", out] for v in values])
    winners = [i for i, d in enumerate(done) if d.returncode == 0]
    assert len(winners) == 1, [d.stderr for d in done]
    loser = done[1 - winners[0]]
    assert loser.returncode == 2 and any(r in loser.stderr for r in REFUSALS), loser.stderr
    alone = _race(tmp_path, [base + [option, values[winners[0]], "--out", "alone"]])[0]
    assert alone.returncode == 0, alone.stderr
    return values[winners[0]]


def test_two_synth_runs_of_two_seeds_into_one_folder_give_one_world_not_a_mix(tmp_path):
    _one_wins(tmp_path, ["synth", "--profile", "smoke", "--records", "2", "--no-progress"], "--seed",
              ("0", "1"), "world")
    assert _tree(tmp_path / "world") == _tree(tmp_path / "alone")


def test_two_propagate_runs_of_two_flows_into_one_out_give_one_label_set_not_a_mix(tmp_path):
    _one_wins(tmp_path, ["propagate", "--profile", "smoke", "--policy", "motion-only", "--no-progress"],
              "--flow", ("dis", "farneback"), "labels")
    labels, lone = _tree(tmp_path / "labels", "*.png"), _tree(tmp_path / "alone", "*.png")
    assert labels and labels == lone
    accuracy = [(tmp_path / folder / "accuracy.csv").read_bytes() for folder in ("labels", "alone")]
    assert accuracy[0] == accuracy[1]
