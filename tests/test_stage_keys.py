"""Stage keys come from meaning — a stage's config and explicit version — never from source bytes or
where a function lives: tidying code keeps every cache, changing a result makes a new one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from tests.conftest import REPO
from wrp.cache import config_hash
from wrp.profiles import Run
from wrp.stages import segmenter_job, world_stage
from wrp.synthetic import WORLD_VERSION, SynthConfig
from wrp.train import BUILDERS, Builder

# The key of the smoke world of seed 0: pinned, so any change to how keys are derived is a decision
# (bump WORLD_VERSION or accept that every cached world is rebuilt), never an accident.
SMOKE_WORLD_KEY = "2064ca845417"

_KEY_OF_SMOKE_WORLD = (
    "from wrp.profiles import Run; from wrp.stages import world_stage; "
    "print(world_stage(Run.create('smoke', seed=0)).key)"
)


def test_the_world_key_is_its_config_and_version_only():
    stage = world_stage(Run.create("smoke", seed=0))
    config = SynthConfig.from_profile(Run.create("smoke").profile, 0)
    assert stage.key == config_hash({"stage": "synth", "version": WORLD_VERSION, "config": config})
    assert stage.key == SMOKE_WORLD_KEY
    assert world_stage(Run.create("smoke", seed=1)).key != stage.key, "another seed is another world"
    assert world_stage(Run.create("smoke", fps=10)).key != stage.key, "another frame rate too"


def test_editing_a_comment_in_the_world_generator_changes_no_stage_key(tmp_path):
    copy = tmp_path / "wrp"
    shutil.copytree(REPO / "wrp", copy, ignore=shutil.ignore_patterns("__pycache__"))
    generator = copy / "synthetic.py"
    generator.write_text(generator.read_text().replace(
        "\n\ndef render(", "\n\n# a comment a tidy-up added\n\n\ndef render(", 1) + "\n# another one\n")
    assert generator.read_text() != (REPO / "wrp" / "synthetic.py").read_text()
    keys = {}
    for name, root in (("committed", REPO), ("edited", tmp_path)):
        done = subprocess.run([sys.executable, "-c", _KEY_OF_SMOKE_WORLD], cwd=root, capture_output=True,
                              text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, check=True)
        keys[name] = done.stdout.strip()
    assert keys["edited"] == keys["committed"] == SMOKE_WORLD_KEY


def test_moving_a_builder_function_changes_no_job_and_so_no_key(tmp_path, monkeypatch, isolated_runs):
    manifest = tmp_path / "manifest.json"
    from wrp.data import Manifest, SplitConfig

    Manifest(tmp_path, SplitConfig(partition_length=9), train=[], val=[]).save(manifest)
    run = Run.create("smoke", device="cpu")
    job = segmenter_job(run, manifest, "deeplabv3")
    text = str(job.to_json())
    assert "wrp." not in text and ":" not in job.model.name, "a job names builders, not module paths"
    # the function moves: only the registry changes, and the job built from the same names is the same
    monkeypatch.setitem(BUILDERS, "segmentation-model", "tests.test_stage_keys:moved_build_model")
    moved = segmenter_job(run, manifest, "deeplabv3")
    assert moved.to_json() == job.to_json()
    assert type(moved.model.build()).__name__ == "DeepLabV3"
    assert config_hash(moved.to_json()) == config_hash(job.to_json())


def moved_build_model(**kwargs):
    """``wrp.models.build_model`` as if it lived here (the registry points at it in the test above)."""
    from wrp.models import build_model

    return build_model(**kwargs)


def test_changing_what_a_stage_produces_changes_its_key():
    run = Run.create("smoke", seed=0)
    stage = world_stage(run)
    assert replace(stage, version=stage.version + 1).key != stage.key, "a bumped version is a new stage"
    assert world_stage(run.with_profile(thin_scale=2.0)).key != stage.key, "a new config is a new stage"


def test_a_job_may_name_only_registered_builders():
    with pytest.raises(ValueError, match="only registered builders"):
        Builder("wrp.models:build_model", {"arch": "deeplabv3"}).build()


def test_min_class_pixels_changes_only_the_jobs_of_cells_with_generated_labels(tmp_path, isolated_runs):
    from wrp.data import Manifest, SplitConfig

    manifest = tmp_path / "manifest.json"
    Manifest(tmp_path, SplitConfig(partition_length=9), train=[], val=[]).save(manifest)
    run = Run.create("smoke", device="cpu")
    generated = [["a.png", "a_label.png"]]
    human = segmenter_job(run, manifest, "deeplabv3")
    assert segmenter_job(run, manifest, "deeplabv3", generated_min_pixels=16).to_json() == human.to_json(), \
        "without generated labels the setting means nothing, and the key of g_ψ stays"
    plain = segmenter_job(run, manifest, "deeplabv3", generated=generated)
    assert "generated_min_pixels" not in str(plain.to_json()), "the default keeps the cells cached before it"
    strict = segmenter_job(run, manifest, "deeplabv3", generated=generated, generated_min_pixels=16)
    assert config_hash(strict.to_json()) != config_hash(plain.to_json())
    assert strict.data.kwargs["generated_min_pixels"] == 16
