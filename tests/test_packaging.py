"""The project's contract with its users: one dependency list, two README commands, CI = make test."""

from __future__ import annotations

import re
import subprocess
import tomllib

import yaml

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_environment_yml_installs_python_then_the_pyproject_with_pip_only():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_blocks = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert sorted(re.split(r"[=<>]", d)[0] for d in conda_deps) == ["pip", "python"], (
        "environment.yml may only give python and pip; every other dependency belongs in "
        "pyproject.toml"
    )
    assert pip_blocks == [["-e .[dev]"]]
    python = next(d for d in conda_deps if d.startswith("python"))
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))


def test_dependencies_cover_the_design_and_torch_has_lower_bounds_only():
    deps = {re.split(r"[<>=!~\[ ]", d)[0].lower(): d for d in PYPROJECT["project"]["dependencies"]}
    for name in ("torch", "torchvision", "timm", "opencv-python", "numpy", "matplotlib",
                 "jupyterlab", "ipywidgets", "papermill", "nbval", "tqdm", "cityscapesscripts"):
        assert name in deps, f"{name} missing from pyproject.toml dependencies"
    for name in ("torch", "torchvision"):
        assert re.fullmatch(rf"{name}>=[\d.]+", deps[name]), f"{deps[name]}: lower bound only"
    dev = {re.split(r"[<>=]", d)[0] for d in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert {"pytest", "ruff"} <= dev
    assert PYPROJECT["project"]["scripts"]["wrp"] == "wrp.cli:main"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (REPO / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in commands


def test_make_help_lists_each_target_on_one_line():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    for target in ("demo", "test", "lab", "install", "clean"):
        lines = [line for line in out.splitlines() if line.strip().startswith(f"make {target} ")]
        assert len(lines) == 1, f"make help should describe `make {target}` on one line:\n{out}"


def test_layout_of_the_design_card_exists():
    for folder in ("wrp", "notebooks", "figures", "data_scripts", "tests"):
        assert (REPO / folder).is_dir(), f"{folder}/ missing"
