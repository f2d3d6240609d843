"""The command line: help lists every command on one line; bad input exits non-zero and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

COMMANDS = ("reproduce", "synth", "train-seg", "train-denoiser", "propagate", "table1", "table2", "profiles",
            "stages")


def _run(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env, timeout=120)


def _wrp_script() -> str:
    script = Path(sys.executable).parent / "wrp"
    assert script.exists(), f"console script missing at {script}; is wrp installed (pip install -e .)?"
    return str(script)


@pytest.mark.parametrize("entry", ["module", "script"])
def test_help_lists_every_command_with_one_line(entry):
    cmd = [sys.executable, "-m", "wrp"] if entry == "module" else [_wrp_script()]
    out = _run(*cmd, "--help")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for name in COMMANDS:
        hits = [line for line in lines if line.split()[:1] == [name]]
        assert len(hits) == 1, f"{name!r} should appear once, on its own line:\n{out.stdout}"
        assert len(hits[0].split()) > 3, f"{name!r} has no one-line description: {hits[0]!r}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--only", "99"], "unknown notebook '99'; give numbers or names of: 00_overview"),
        (["--profile", "huge"], "invalid choice: 'huge' (choose from 'smoke', 'demo', 'table', 'paper')"),
        (["-p", "seed"], "malformed parameter 'seed'; write NAME=VALUE"),
        (["-p", "=3"], "malformed parameter '=3'"),
        (["-p", "2x=3"], "malformed parameter '2x=3'"),
        (["-p", "sead=3"],
         "unknown parameter(s) sead; the selected notebooks accept: archs, batch, cycle_lengths, dataset, "),
        (["-p", "profile=demo"], "set profile with --profile, not with -p"),
    ],
)
def test_bad_input_to_reproduce_exits_nonzero_and_says_what_is_accepted(args, expected, tmp_path):
    out = _run(sys.executable, "-m", "wrp", "reproduce", *args, env_extra={"WRP_RUNS": str(tmp_path)})
    assert out.returncode != 0
    assert expected in out.stderr, out.stderr
    assert not (tmp_path / "demo").exists(), "bad input must be rejected before any notebook runs"


def test_reproduce_list_names_the_notebooks_and_the_paper_parts():
    out = _run(sys.executable, "-m", "wrp", "reproduce", "--list")
    assert out.returncode == 0, out.stderr
    assert "00_overview" in out.stdout and "present" in out.stdout
    assert "Figure 1" in out.stdout


def test_profiles_command_prints_the_table_and_rejects_unknown_names():
    out = _run(sys.executable, "-m", "wrp", "profiles", "smoke", "demo")
    assert out.returncode == 0 and "| `height` | 64 | 128 |" in out.stdout
    bad = _run(sys.executable, "-m", "wrp", "profiles", "tiny")
    assert bad.returncode == 2 and "choose from: smoke, demo, table, paper" in bad.stderr


def test_stages_command_lists_cached_stages(tmp_path):
    from wrp.cache import Stage

    Stage("example", {"a": 1}, root=tmp_path / "stages").run(lambda out: {"n": 1}, verbose=False)
    out = _run(sys.executable, "-m", "wrp", "stages", env_extra={"WRP_RUNS": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "example" in out.stdout and "done" in out.stdout


def test_propagate_refuses_an_unknown_policy_and_a_folder_of_other_settings(tmp_path, isolated_runs, capsys):
    from wrp.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["propagate", "--policy", "magic"])
    assert exc.value.code == 2
    out = tmp_path / "labels"
    smoke = ["propagate", "--profile", "smoke", "--out", str(out), "--no-progress"]
    assert main(smoke + ["--policy", "copy"]) == 0
    printed = capsys.readouterr().out
    assert "copy" in printed and "d=1" in printed and (out / "accuracy.csv").is_file()
    assert main(smoke + ["--policy", "motion-only"]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("argv, option", [
    (["train-seg", "--iters", "0"], "--iters"), (["train-seg", "--lr", "0"], "--lr"),
    (["train-denoiser", "--iters", "0"], "--iters"), (["synth", "--records", "0", "--out", "w"], "--records"),
    (["propagate", "--batch", "-3"], "--batch"), (["propagate", "--seed", "-1"], "--seed"),
    (["table1", "--seeds", "0", "-1"], "--seeds"), (["synth", "--workers", "-1", "--out", "w"], "--workers"),
    (["train-seg", "--iters", "many"], "--iters"),
])
def test_a_value_given_is_used_or_refused_never_read_as_not_given(argv, option, capsys, tmp_path,
                                                                  monkeypatch):
    from wrp.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before any work


def test_a_second_propagate_into_an_out_being_written_is_refused_before_any_work(tmp_path, isolated_runs,
                                                                                 capsys):
    from wrp.cli import main
    from wrp.io import exclusive_folder

    out = tmp_path / "labels"
    with exclusive_folder(out, "wrp propagate"):  # another run is writing it
        assert main(["propagate", "--profile", "smoke", "--out", str(out), "--no-progress"]) == 2
    assert f"{out} is being written by another wrp propagate" in capsys.readouterr().err
    assert not isolated_runs.exists()  # nothing was built
