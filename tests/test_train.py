"""The training engine: DDP over processes matches one process; a killed run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO, processes
from wrp.io import atomic_write_json
from wrp.launch import launch, torchrun_command
from wrp.train import BUILDERS, Builder, Job, TrainConfig, global_batches, poly_lr, read_log, register_builder

TOYS = {f"toy-{part}": f"tests.ddp_toys:{part}" for part in ("model", "data", "loss")}
for _name, _target in TOYS.items():
    register_builder(_name, _target)


def _job(iters: int = 6, batch: int = 4, delay: float = 0.0, every: int = 50,
         dropout: float = 0.1) -> Job:
    return Job(Builder("toy-model", {"dropout": dropout}),
               Builder("toy-data", {"delay": delay}), Builder("toy-loss"),
               TrainConfig(iters=iters, batch_size=batch, base_lr=0.1, seed=3, checkpoint_every=every,
                           log_every=1, device="cpu"))


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", map_location="cpu", weights_only=True)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=atol), key


def test_ddp_two_processes_match_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the torchrun workers import tests.ddp_toys from here
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    job = _job(iters=6, batch=4, dropout=0.0)  # dropout masks depend on how the batch is split
    launch(job, tmp_path / "one", nproc=1, progress=False)
    launch(job, tmp_path / "two", nproc=2, progress=False)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert any("running_mean" in k for k in two), "SyncBN statistics are part of the comparison"
    _assert_same(one, two)
    start = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["iteration"]
    assert start == 6 and len(read_log(tmp_path / "two")) == 6


def test_channels_last_reaches_the_model_and_changes_only_rounding(tmp_path):
    runs = {}
    for nhwc in (True, False):
        base = _job(iters=6, batch=4)
        job = replace(base, model=Builder("toy-model", {"dropout": 0.1, "expect_nhwc": nhwc}),
                      train=replace(base.train, channels_last=nhwc))
        launch(job, tmp_path / str(nhwc), nproc=1, progress=False)
        runs[nhwc] = _weights(tmp_path / str(nhwc))
        assert all(w.is_contiguous() for w in runs[nhwc].values()), "model.pt holds plain NCHW tensors"
    _assert_same(runs[True], runs[False])


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    job = _job(iters=24, batch=4, delay=0.02, every=3)  # ~0.1 s per iteration
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    whole = tmp_path / "whole"
    job_file = atomic_write_json(tmp_path / "job.json", job.to_json())
    toys = [f"--builder={name}={target}" for name, target in TOYS.items()]
    cmd = [sys.executable, "-m", "wrp.launch", str(job_file)]
    subprocess.run(cmd + [str(whole)] + toys, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + [str(killed)] + toys, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        ckpt = killed / "checkpoint.pt"
        if ckpt.is_file() and torch.load(ckpt, weights_only=True)["iteration"] >= 9:
            break
        time.sleep(0.05)
    time.sleep(0.15)  # mid-way between two checkpoints
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reached = torch.load(killed / "checkpoint.pt", weights_only=True)["iteration"]
    assert 9 <= reached < 24, f"the kill should land mid-run, the checkpoint says {reached}"
    assert not (killed / "model.pt").exists()
    subprocess.run(cmd + [str(killed)] + toys, cwd=REPO, env=env, check=True, capture_output=True,
                   timeout=300)
    _assert_same(_weights(whole), _weights(killed), atol=1e-6)
    assert json.loads((killed / "result.json").read_text())["resumed_from"] == reached
    assert [row["iteration"] for row in read_log(killed)] == list(range(1, 25))


def test_the_learning_rate_is_polynomial_and_every_epoch_is_a_permutation():
    assert poly_lr(0.01, 0, 100) == 0.01 and poly_lr(0.01, 100, 100) == 0
    assert poly_lr(0.01, 50, 100, power=1.0) == pytest.approx(0.005)
    batches = global_batches(10, 3, seed=0, epoch=0)
    assert len(batches) == 3 and len({i for b in batches for i in b}) == 9
    assert global_batches(10, 3, 0, 0) == batches != global_batches(10, 3, 0, 1)
    with pytest.raises(ValueError, match="fewer than one batch"):
        global_batches(2, 3, 0, 0)


def test_torchrun_command_for_one_and_several_nodes(tmp_path):
    single = torchrun_command(tmp_path / "job.json", tmp_path, 4)
    assert "--standalone" in single and "--nproc_per_node=4" in single
    assert single[single.index("wrp.launch") + 1:][:2] == [str(tmp_path / "job.json"), str(tmp_path)]
    assert {f"--builder={n}={t}" for n, t in TOYS.items()} <= set(single), "registered toys travel"
    multi = torchrun_command(tmp_path / "job.json", tmp_path, 8, nnodes=2, node_rank=1,
                             rdzv_endpoint="node0:29400")
    assert "--nnodes=2" in multi and "--node_rank=1" in multi and "--rdzv_endpoint=node0:29400" in multi
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        torchrun_command(tmp_path / "job.json", tmp_path, 8, nnodes=2)


def test_a_bad_builder_and_a_bad_config_are_explained():
    with pytest.raises(ValueError, match="must read 'package.module:function'"):
        register_builder("toy-bad", "tests.ddp_toys.model")
    with pytest.raises(ValueError, match="only registered builders"):
        Builder("tests.ddp_toys:model").build()  # a module path is not a name: no code from job.json
    with pytest.raises(ValueError, match="already registered"):
        register_builder("segmentation-model", "tests.ddp_toys:model")
    assert BUILDERS["segmentation-model"] == "wrp.models:build_model"
    with pytest.raises(ValueError, match="TrainConfig"):
        TrainConfig(iters=0)


def test_the_baseline_segmenter_stage_trains_scores_and_is_reused(isolated_runs):
    from wrp.profiles import Run
    from wrp.stages import train_segmenter

    run = Run.create("smoke", seed=0, progress=False)
    folder = train_segmenter(run, iters=2)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0 <= metrics["miou"] <= 100 and metrics["images"] == 1  # one validation partition
    assert set(metrics["per_class_iou"]) <= {"road", "sidewalk", "building", "wall", "fence", "pole",
                                             "traffic light", "traffic sign", "vegetation", "terrain",
                                             "sky", "person", "rider", "car", "truck", "bus", "train",
                                             "motorcycle", "bicycle"}
    assert (folder / "model.pt").is_file() and (folder / "log.csv").is_file()
    stamp = (folder / "model.pt").stat().st_mtime_ns
    assert train_segmenter(run, iters=2) == folder
    assert (folder / "model.pt").stat().st_mtime_ns == stamp, "a finished stage is not retrained"


def test_a_pretrained_teacher_starts_from_another_worlds_segmenter_and_leaves_the_plain_one(isolated_runs):
    from wrp.profiles import Run
    from wrp.stages import teacher_segmenter, train_segmenter

    plain = Run.create("smoke", seed=0, progress=False)
    assert teacher_segmenter(plain) == train_segmenter(plain), "no teacher_pretrain: g_ψ's stage as before"
    taught = teacher_segmenter(plain.with_profile(teacher_pretrain="verge"))
    job = json.loads((taught / "job.json").read_text())
    init = Path(job["train"]["init"])
    source = json.loads((init.parent / "job.json").read_text())
    assert init.name == "model.pt" and source["model"] == job["model"]
    world = json.loads(Path(source["data"]["kwargs"]["manifest"]).read_text())["root"]
    assert "verge" in json.dumps(json.loads((Path(world) / "config.json").read_text())), "pretrained on verge"
    assert source["data"]["kwargs"]["generated"], "the pretrained start learns every frame's true label"
    from wrp.cli import _run, build_parser, main

    assert main(["train-seg", "--profile", "smoke", "--teacher-pretrain", "verge", "--no-progress"]) == 0
    assert len(list((isolated_runs / "stages" / "segmenter").iterdir())) == 3, \
        "wrp train-seg --teacher-pretrain trains the g_ψ every stage reads, not another"
    for command in (["train-denoiser"], ["propagate"], ["assess"], ["table1"], ["table2"]):
        args = build_parser().parse_args([*command, "--profile", "smoke", "--teacher-pretrain", "verge"])
        assert _run(args).profile.teacher_pretrain == "verge", command


def test_prediction_averages_flips_and_scales_into_probabilities():
    from tests.ddp_toys import ToyNet
    from wrp.train import predict

    model = ToyNet(dropout=0.0).eval()
    image = (torch.rand(16, 24, 3) * 255).to(torch.uint8).numpy()
    plain = predict(model, image)
    both = predict(model, image, flip=True, scales=(0.5, 1.0))
    assert plain.shape == both.shape == (3, 16, 24)
    assert torch.allclose(both.sum(0), torch.ones(16, 24), atol=1e-5)
    assert not torch.allclose(plain, both), "flip and scales change the average"


def test_auto_and_the_device_it_names_are_one_configuration():
    from wrp.runtime import resolve_device
    from wrp.train import TrainConfig

    here = resolve_device("auto")
    assert TrainConfig(iters=1).device == here
    assert TrainConfig(iters=1, device="auto") == TrainConfig(iters=1, device=here)  # one stage key
    assert TrainConfig(iters=1, device="cuda:3").device == "cuda:3"  # a saved job loads anywhere


class _Payload:
    """Unpickling this runs code: it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["checkpoint.pt", "model.pt"])
def test_a_crafted_checkpoint_is_refused_naming_the_file_and_never_runs_code(tmp_path, name):
    from wrp.train import load_model, train

    job = _job(iters=2)
    out = tmp_path / "stage"
    marker = tmp_path / "code-ran"
    if name == "checkpoint.pt":
        out.mkdir()
        torch.save({"model": _Payload(marker), "iteration": 1, "log": []}, out / name)
        with pytest.raises(ValueError, match=r"checkpoint\.pt is not a checkpoint wrp loads"):
            train(job, out, progress=False)
    else:
        train(job, out, progress=False)
        torch.save({"weight": _Payload(marker)}, out / name)
        with pytest.raises(ValueError, match=r"model\.pt is not a checkpoint wrp loads.*delete it"):
            load_model(job, out)
    assert not marker.exists()


def test_a_run_resumed_after_its_last_iteration_still_reports_its_speed(tmp_path):
    """Killed after training (e.g. during the stage's final evaluation), the rerun resumes at the last
    iteration: nothing to train, and the speed it trained at is still reported, not None."""
    from wrp.train import train

    job = _job(iters=3, every=1)
    first = train(job, tmp_path, progress=False)
    again = train(job, tmp_path, progress=False)
    assert again["resumed_from"] == 3 and again["images_per_s"] == first["images_per_s"] is not None


def test_a_job_file_naming_code_outside_the_registry_is_refused_naming_the_file(tmp_path):
    from wrp.train import job_from_file

    marker = tmp_path / "code-ran"
    data = _job().to_json()
    data["model"] = {"name": "os:system", "kwargs": {"command": f"touch {marker}"}}
    path = atomic_write_json(tmp_path / "job.json", data)
    with pytest.raises(ValueError, match=r"job\.json names builder 'os:system'"):
        job_from_file(path).model.build()
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json is not a readable job file"):
        job_from_file(tmp_path / "broken.json")
    assert not marker.exists()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_child_dies_with_the_run_that_started_it_however_the_run_dies(tmp_path):
    """torchrun and the world's renderer run through ``run_child``: SIGKILL the run, and its child
    stops too instead of writing into the stage on its own."""
    code = "from wrp.runtime import run_child; run_child(['sleep', '300'])"
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline, children = time.time() + 60, []
    while time.time() < deadline and not children:
        children = [pid for pid, ppid, _ in processes() if ppid == parent.pid]
        time.sleep(0.2)
    assert children, "the child never started"
    time.sleep(0.5)  # the child has become `sleep`
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_running(pid) for pid in children):
        time.sleep(0.2)
    assert not any(_running(pid) for pid in children)


def test_a_truncated_or_foreign_model_file_is_refused_naming_it(tmp_path):
    from wrp.train import load_model, train

    job = _job(iters=2)
    train(job, tmp_path, progress=False)
    model = tmp_path / "model.pt"
    whole = model.read_bytes()
    model.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"model\.pt is not a checkpoint wrp loads"):
        load_model(job, tmp_path)
    torch.save({"conv.weight": torch.zeros(1)}, model)  # weights of something else
    with pytest.raises(ValueError, match=r"model\.pt holds weights of another model"):
        load_model(job, tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"checkpoint\.pt is not a checkpoint wrp loads"):
        train(job, tmp_path, progress=False)


def test_a_job_starts_from_the_weights_it_names_and_refuses_foreign_or_missing_ones(tmp_path):
    first = _job(iters=3, batch=4)
    launch(first, tmp_path / "first", nproc=1, progress=False)
    start = tmp_path / "first" / "model.pt"
    one_step = replace(first, train=replace(first.train, iters=1, base_lr=1e-12, init=str(start)))
    launch(one_step, tmp_path / "from", nproc=1, progress=False)
    fresh = replace(one_step, train=replace(one_step.train, init=None))
    launch(fresh, tmp_path / "fresh", nproc=1, progress=False)
    started, loaded = _weights(tmp_path / "from"), _weights(tmp_path / "first")
    weights = [k for k in loaded if "running" not in k and "num_batches" not in k]
    for key in weights:  # a step of LR 1e-12 leaves the start weights where they were
        assert torch.allclose(started[key], loaded[key], atol=1e-6), key
    assert not all(torch.allclose(_weights(tmp_path / "fresh")[k], loaded[k]) for k in weights)
    assert "init" not in Job.to_json(fresh)["train"], "a job without start weights keeps its old key"

    missing = replace(first, train=replace(first.train, init=str(tmp_path / "none.pt")))
    with pytest.raises(FileNotFoundError, match="none.pt"):
        launch(missing, tmp_path / "missing", nproc=1, progress=False)
    torch.save({"other.weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    foreign = replace(first, train=replace(first.train, init=str(tmp_path / "foreign.pt")))
    with pytest.raises(ValueError, match="foreign.pt.*not weights of this model"):
        launch(foreign, tmp_path / "foreign", nproc=1, progress=False)


def test_evaluation_in_batches_scores_as_frame_by_frame_and_takes_frames_of_several_sizes(tmp_path):
    from PIL import Image

    from wrp.models import build_model
    from wrp.train import evaluate

    rng = np.random.default_rng(0)
    samples = []
    for i, (h, w) in enumerate([(32, 64)] * 5 + [(48, 64), (32, 64)]):
        image, label = tmp_path / f"{i}.png", tmp_path / f"{i}_label.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(image)
        Image.fromarray(rng.integers(0, 19, (h, w), dtype=np.uint8)).save(label)
        samples.append((image, label))
    torch.manual_seed(0)
    model = build_model("deeplabv3", backbone="resnet18", output_stride=16)
    one = evaluate(model, samples, progress=False, batch_size=1)
    batched = evaluate(model, samples, progress=False, batch_size=4)
    assert one["confusion"] == batched["confusion"] and batched["images"] == 7


def test_a_model_of_another_label_set_starts_all_but_its_classifiers(tmp_path):
    """Weights pretrained on the 7 categories start a 19-class model: every weight but the
    classifiers' (which keep their random start); any other mismatch is refused, naming the file."""
    from wrp.models import build_model, model_kwargs
    from wrp.train import _initialise

    for arch in ("deeplabv3", "ocrnet"):
        kwargs = model_kwargs(arch, small=True)
        coarse = build_model(**{**kwargs, "num_classes": 7})
        torch.save(coarse.state_dict(), tmp_path / f"{arch}.pt")
        torch.manual_seed(0)
        fine = build_model(**kwargs)
        random_start = {k: v.clone() for k, v in fine.state_dict().items()}
        fresh = _initialise(fine, str(tmp_path / f"{arch}.pt"))
        assert fresh and all(fine.state_dict()[k].shape[0] == 19 for k in fresh), fresh
        for key, value in fine.state_dict().items():
            expected = random_start[key] if key in fresh else coarse.state_dict()[key]
            assert torch.equal(value, expected), key
    other = build_model(**{**model_kwargs("deeplabv3", small=True), "backbone": "resnet34"})
    with pytest.raises(ValueError, match="deeplabv3.pt are not weights of this model"):
        _initialise(other, str(tmp_path / "deeplabv3.pt"))


def test_a_model_of_the_categories_is_scored_on_the_categories(tmp_path):
    from PIL import Image

    from wrp.data import CATEGORY_NAMES, TRAIN_TO_CATEGORY, label_set
    from wrp.train import evaluate

    assert CATEGORY_NAMES == ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
    assert [CATEGORY_NAMES[TRAIN_TO_CATEGORY[i]] for i in (0, 1, 13, 15, 11, 12)] == [
        "flat", "flat", "vehicle", "vehicle", "human", "human"]
    assert TRAIN_TO_CATEGORY[255] == 255
    with pytest.raises(ValueError, match="unknown label set 'parts'; choose from categories"):
        label_set("parts")

    class Constant(torch.nn.Module):  # predicts "vehicle" everywhere
        num_classes = 7

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            out = torch.zeros(x.shape[0], 7, *x.shape[2:]) * self.scale
            out[:, 6] = 1.0
            return {"out": out}

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "image.png")
    label = np.full((8, 8), 26, np.uint8)  # official id of car; a bus (28) in the lower half
    label[4:] = 28
    Image.fromarray(label).save(tmp_path / "label.png")
    scores = evaluate(Constant(), [(tmp_path / "image.png", tmp_path / "label.png")], progress=False,
                      label_set="categories")
    assert scores["per_class_iou"] == {"vehicle": 100.0} and scores["miou"] == 100.0
