"""The stage cache: same config → same folder, built once; a crash resumes; writes are atomic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from wrp.cache import Stage, canonical_config, config_hash, list_stages
from wrp.io import atomic_open, atomic_write_json


@dataclass(frozen=True)
class ToyConfig:
    size: int = 4
    lr: float = 0.01
    scales: tuple[float, ...] = (0.5, 1.0)
    data: Path = Path("/data")


def test_equal_configs_hash_equal_whatever_the_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash(ToyConfig()) == config_hash(ToyConfig())


def test_any_change_of_value_changes_the_key():
    base = config_hash(ToyConfig())
    assert config_hash(ToyConfig(size=5)) != base
    assert config_hash(ToyConfig(lr=0.02)) != base
    assert config_hash(ToyConfig(scales=(1.0, 0.5))) != base
    assert Stage("a", ToyConfig()).key != Stage("b", ToyConfig()).key
    assert Stage("a", ToyConfig(), version=1).key != Stage("a", ToyConfig(), version=2).key


def test_configs_holding_arbitrary_objects_are_refused():
    with pytest.raises(TypeError, match="a stage config may hold"):
        canonical_config({"model": object()})


def test_a_finished_stage_is_reused_not_rebuilt(tmp_path):
    import torch

    calls = []

    def build(out: Path) -> dict:
        calls.append(out)
        (out / "artefact.txt").write_text("weights")
        return {"miou": 0.5}

    first = Stage("train", ToyConfig(), root=tmp_path).run(build, verbose=False)
    second = Stage("train", ToyConfig(), root=tmp_path).run(build, verbose=False)
    assert first == second and len(calls) == 1
    record = Stage("train", ToyConfig(), root=tmp_path).record()
    assert record["result"] == {"miou": 0.5} and record["resumed"] is False
    assert record["threads"] == torch.get_num_threads()  # what a CPU build's numbers depend on
    assert json.loads((first / "config.json").read_text())["size"] == 4
    Stage("train", ToyConfig(size=8), root=tmp_path).run(build, verbose=False)
    assert len(calls) == 2, "a different config is a different stage"


def test_a_crashed_build_leaves_no_done_marker_and_the_next_run_resumes(tmp_path):
    stage = Stage("propagate", {"k": 10}, root=tmp_path)

    def crashing(out: Path) -> None:
        (out / "frame_001.png").write_text("done before the crash")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stage.run(crashing, verbose=False)
    assert not stage.done
    with pytest.raises(FileNotFoundError, match="has not finished"):
        stage.record()

    seen = []

    def resuming(out: Path) -> None:
        seen.extend(sorted(p.name for p in out.glob("frame_*.png")))
        (out / "frame_002.png").write_text("new")

    stage.run(resuming, verbose=False)
    assert seen == ["frame_001.png"], "the resumed build must find the crashed build's files"
    assert stage.done and stage.record()["resumed"] is True


def test_force_rebuilds_a_finished_stage(tmp_path):
    stage = Stage("s", {"x": 1}, root=tmp_path)
    counter = []
    stage.run(lambda out: counter.append(1), verbose=False)
    stage.run(lambda out: counter.append(1), verbose=False, force=True)
    assert len(counter) == 2


def test_list_stages_reports_done_and_partial(tmp_path):
    Stage("a", {"x": 1}, root=tmp_path).run(lambda out: None, verbose=False)
    with pytest.raises(RuntimeError):
        Stage("b", {"x": 1}, root=tmp_path).run(_raise, verbose=False)
    states = {(s.name, s.done) for s in list_stages(tmp_path)}
    assert states == {("a", True), ("b", False)}


def _raise(out: Path) -> None:
    raise RuntimeError("boom")


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"miou": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b'{"half": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"miou": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "no temporary file left behind"


def test_atomic_json_converts_numpy_and_paths(tmp_path):
    import numpy as np

    atomic_write_json(tmp_path / "m.json", {"a": np.float32(0.5), "b": np.arange(3), "p": tmp_path})
    data = json.loads((tmp_path / "m.json").read_text())
    assert data == {"a": 0.5, "b": [0, 1, 2], "p": str(tmp_path)}


def test_files_written_atomically_take_the_mode_the_umask_gives(tmp_path):
    import os

    from wrp.io import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "shared.txt", "a lab shares this\n")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
