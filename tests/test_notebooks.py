"""The notebook harness: the committed notebooks follow it, and papermill runs them with parameters."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import REPO
from wrp.notebooks import (
    HARNESS_PARAMETERS,
    ReproduceError,
    discover_notebooks,
    format_results,
    parse_parameter,
    reproduce,
    select_notebooks,
)

COMMITTED = discover_notebooks(REPO / "notebooks")


def test_the_notebooks_are_numbered_once_each_from_the_overview():
    assert [p.name for p in COMMITTED][:1] == ["00_overview.ipynb"]
    numbers = [p.name[:2] for p in COMMITTED]
    assert len(numbers) == len(set(numbers)), f"two notebooks share a number: {numbers}"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_committed_notebook_follows_the_harness(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    source = tagged[0].source
    assert 'profile = os.environ.get("WRP_PROFILE", "demo")' in source
    for name in HARNESS_PARAMETERS:
        assert f"\n{name} = " in "\n" + source, f"parameters cell lacks {name}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit outputs cleared"
    assert "write_metrics(" in code[-1].source, "the last code cell writes metrics.json"
    assert "wnb.start(" in code[1].source, "the cell after the parameters derives the run"
    assert "get_profile" not in "".join(c.source for c in code), "the run is resolved once, by wnb.start"


def test_papermill_runs_the_overview_with_injected_parameters(isolated_runs, tmp_path):
    out = tmp_path / "overview"
    results = reproduce("smoke", ["00_overview"], {"seed": 7, "output_dir": str(out)},
                        executed_dir=tmp_path / "executed", progress_bar=False)
    assert [r.status for r in results] == ["ok"], format_results(results)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["notebook"] == "00_overview"
    assert metrics["profile"] == "smoke" and metrics["seed"] == 7
    assert metrics["profile_config"]["height"] == 64
    assert Path(metrics["figures"]["pipeline"]) == isolated_runs / "smoke" / "figures" / "pipeline.png"
    assert Path(metrics["figures"]["pipeline"]).stat().st_size > 20_000
    assert "00_overview" in metrics["notebooks_present"]
    assert metrics["paper_table1_warp_refine_gain"]["DeepLabV3"] == pytest.approx(1.42)
    executed = nbformat.read(tmp_path / "executed" / "00_overview.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "seed = 7" in injected[0].source


def _figure(path: str | None) -> bool:
    """A written figure: a PNG with something drawn in it, or a table beside it."""
    if path is None or not Path(path).is_file():
        return False
    return Path(path).suffix != ".png" or Path(path).stat().st_size > 5_000


def _miou(value: float) -> bool:
    return 0.0 <= value <= 100.0


def test_every_notebook_at_smoke_writes_the_metrics_it_promises(isolated_runs, tmp_path):
    """All notebooks in order, as `make demo` runs them but at smoke: each metrics.json holds its
    keys with values in their ranges, and the profile's cycle lengths reach notebooks 01 and 02."""
    results = reproduce("smoke", None, {}, executed_dir=tmp_path / "executed", progress_bar=False)
    assert [r.status for r in results] == ["ok"] * len(COMMITTED), format_results(results)
    m = {r.name: r.metrics for r in results}
    assert {r.name for r in results} == {p.stem for p in COMMITTED}
    for name, metrics in m.items():
        assert metrics["notebook"] == name and metrics["profile"] == "smoke"
        assert metrics["dataset"] == "synthetic" and metrics["seconds"] > 0

    world = m["00_overview"]["world"]  # smoke: 2 + 1 records of one 9-frame partition at 64×128
    assert world["records"] == 3 and world["frames"] == 27 and world["resolution"] == [64, 128]
    assert 0.5 < world["mean_backward_valid_share"] <= 1.0
    assert sum(world["class_pixel_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert all(_figure(path) for path in m["00_overview"]["figures"].values())

    noise = m["01_cyclic_noise"]
    assert noise["cycle_lengths"] == [1, 2, 4] and set(noise["error_vs_p"]) == {"1", "2", "4"}
    assert all(0.0 <= v["wrong"] <= 1.0 and 0.0 <= v["unlabelled"] <= 1.0
               for v in noise["error_vs_p"].values())
    assert all(_figure(path) for path in noise["figures"].values())

    omega = m["02_denoiser_training"]
    assert omega["cycle_lengths"] == [1, 2, 4] and omega["denoiser_iterations"] == 4
    assert _miou(omega["segmenter_miou"])
    assert _miou(omega["held_out_cyclic_miou"]) and _miou(omega["held_out_refined_miou"])
    assert set(omega["held_out_per_p"]) <= {"1", "2", "4"} and omega["held_out_per_p"]
    assert all(_figure(path) for path in omega["figures"].values())

    prop = m["03_propagation"]
    assert set(prop["miou"]) == {"copy", "motion-only", "semantic-only", "warp-inpaint", "warp-refine"}
    assert all(set(d) == {"1", "2", "3", "4"} and all(_miou(v) for v in d.values())
               for d in prop["miou"].values())
    assert all(rate > 0 for rate in prop["frames_per_s"].values()) and len(prop["frames_per_s"]) == 5
    assert set(prop["warp_refine_margin"]) == {"1", "2", "3", "4"}
    assert all(_figure(path) for path in prop["figures"].values())

    table1 = m["04_table1_label_policies"]
    assert table1["archs"] == ["DeepLabV3"] and table1["seeds"] == [0] and table1["table_iters"] == 4
    cells = table1["miou"]["DeepLabV3"]
    assert set(cells) == {"baseline", "motion-only", "semantic-only", "warp-refine", "true-labels",
                          "warp-refine-confident"}
    assert all(len(v) == 1 and _miou(v[0]) for v in cells.values())
    assert set(table1["gain_over_baseline"]["DeepLabV3"]) == set(cells) - {"baseline"}
    assert all(Path(path).is_file() for path in table1["figures"].values())

    table2 = m["05_table2_relaxed_label_loss"]
    assert table2["arch"] == "DeepLabV3" and len(table2["miou"]) == 4
    assert all(len(v) == 1 and _miou(v[0]) for v in table2["miou"].values())
    assert table2["miou"]["Baseline B"] == cells["baseline"], "Baseline B is Table 1's Baseline cell"
    assert all(Path(path).is_file() for path in table2["figures"].values())


def _kernel(name: str) -> dict:
    return {"kernelspec": {"name": name, "display_name": name, "language": "python"}}


def _fixture_notebook(folder: Path, name: str, body: str) -> None:
    params = new_code_cell(
        'import os\nprofile = os.environ.get("WRP_PROFILE", "demo")\noutput_dir = ""\n'
        'seed = 0\ndevice = "cpu"\nnproc = 1',
        metadata={"tags": ["parameters"]},
    )
    start = new_code_cell(
        f'import wrp.notebooks as wnb\nrun = wnb.start("{name}", profile, output_dir, seed, device, nproc)'
    )
    nb = new_notebook(cells=[params, start, new_code_cell(body)], metadata=_kernel("python3"))
    nbformat.write(nb, folder / f"{name}.ipynb")


def test_reproduce_stops_at_a_failing_notebook_and_reports_it(isolated_runs, tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    _fixture_notebook(folder, "01_ok", 'run.write_metrics({"twice_seed": 2 * seed})')
    _fixture_notebook(folder, "02_fails", 'raise ValueError("the synthetic world is empty")')
    _fixture_notebook(folder, "03_after", 'run.write_metrics({})')
    results = reproduce("smoke", None, {"seed": 5}, folder=folder,
                        executed_dir=tmp_path / "executed", progress_bar=False)
    assert [r.status for r in results] == ["ok", "failed", "not run"]
    assert results[0].metrics["twice_seed"] == 10
    assert "ValueError: the synthetic world is empty" in results[1].error
    assert "02_fails" in format_results(results)

    again = reproduce("smoke", ["01", "03"], {}, folder=folder, executed_dir=tmp_path / "executed",
                      progress_bar=False)
    assert [r.status for r in again] == ["ok", "ok"], "--only skips the failing notebook"


def test_a_notebook_that_writes_no_metrics_fails(isolated_runs, tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    _fixture_notebook(folder, "01_silent", "x = 1")
    stale = isolated_runs / "smoke" / "01_silent" / "metrics.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # left over from an earlier run: must not count
    (result,) = reproduce("smoke", None, {}, folder=folder, executed_dir=tmp_path / "e",
                          progress_bar=False)
    assert result.status == "failed" and "without writing" in result.error


def test_a_notebook_without_the_harness_parameters_is_refused(tmp_path):
    cells = [new_code_cell("seed = 0", metadata={"tags": ["parameters"]})]
    nbformat.write(new_notebook(cells=cells, metadata=_kernel("python3")), tmp_path / "01_bare.ipynb")
    with pytest.raises(ReproduceError, match="has no parameter\\(s\\) profile, output_dir"):
        reproduce("smoke", None, {}, folder=tmp_path)


def test_a_notebook_on_another_kernel_is_refused(tmp_path):
    nbformat.write(new_notebook(cells=[], metadata=_kernel("conda-env-x")), tmp_path / "01_other.ipynb")
    with pytest.raises(ReproduceError, match="uses kernel 'conda-env-x'; notebooks must use"):
        reproduce("smoke", None, {}, folder=tmp_path)


def test_select_by_number_or_name_in_notebook_order():
    nbs = [Path(f"{n}.ipynb") for n in ("00_overview", "01_cyclic_noise", "03_propagation")]
    assert select_notebooks(nbs, ["03", "01_cyclic_noise"]) == [nbs[1], nbs[2]]
    assert select_notebooks(nbs, None) == nbs
    with pytest.raises(ReproduceError, match="unknown notebook '02'"):
        select_notebooks(nbs, ["02"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("seed=3", ("seed", 3)), ("lr=1e-3", ("lr", 0.001)), ("device=cuda:1", ("device", "cuda:1")),
     ("flag=True", ("flag", True)), ("x=none", ("x", None)), ("p=[1, 2]", ("p", [1, 2])),
     ("out=/tmp/a=b", ("out", "/tmp/a=b"))],
)
def test_parameter_values_are_typed(text, expected):
    assert parse_parameter(text) == expected
