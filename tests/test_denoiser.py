"""The denoiser Ω, its cyclic training pairs, and propagation of a dataset with every policy."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import REPO, processes
from wrp.data import IGNORE_INDEX, NUM_CLASSES, Manifest
from wrp.denoiser import CyclicDataset, Denoiser, make_cyclic_samples, pack_inputs
from wrp.losses import SegmentationLoss
from wrp.metrics import confusion_matrix, mean_iou
from wrp.models import SMALL_BACKBONES, CachedSegmenter, build_model
from wrp.motion import make_estimator
from wrp.policies import (
    POLICIES,
    Propagator,
    label_file,
    propagate_clips,
    propagation_accuracy,
)
from wrp.propagation import one_hot

K = NUM_CLASSES


def _segmenter() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("msa_hrnet_ocr", backbone=SMALL_BACKBONES["msa_hrnet_ocr"], ocr_mid=32, ocr_key=16)


def test_omega_maps_its_inputs_to_class_logits_at_any_size_and_uses_the_ocr_features():
    torch.manual_seed(0)
    omega = Denoiser(ngf=8, ocr_channels=32).eval()
    x = torch.randn(2, 6 + K + 1, 37, 50)  # not a multiple of 8: padded inside, cropped back
    ocr = torch.randn(2, 32, 10, 13)
    with torch.no_grad():
        out = omega(x, ocr)["out"]
        other = omega(x, ocr * -1)["out"]
    assert out.shape == (2, K, 37, 50)
    assert not torch.allclose(out, other), "the semantic cue (OCR features) must reach the output"
    with pytest.raises(ValueError, match="input channels"):
        omega(torch.randn(1, 5, 32, 32), ocr)
    with pytest.raises(ValueError, match="holds no segmenter"):
        omega(x)


def test_the_schematic_shapes_follow_three_downsamplings():
    omega = Denoiser(ngf=16, ocr_channels=32)
    shapes = dict(omega.layer_shapes(128, 256))
    assert shapes["input"] == (6 + K + 1, 128, 256)
    assert shapes["stem"] == (16, 128, 256)
    assert shapes["bottleneck"] == (128, 16, 32)
    assert shapes["logits"] == (K, 128, 256)


def test_g_psi_stays_frozen_while_omega_trains():
    seg = _segmenter()
    omega = Denoiser(ngf=8, ocr_channels=32, semantic=seg).train()
    before = {k: v.clone() for k, v in seg.state_dict().items()}
    opt = torch.optim.SGD(omega.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(2, 6 + K + 1, 32, 64)
    y = torch.randint(0, K, (2, 32, 64))
    loss, _ = SegmentationLoss("rmi", aux_weight=0)(omega(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert not seg.training, "g_ψ must stay in eval mode (its BatchNorm statistics frozen)"
    assert all(torch.equal(before[k], v) for k, v in seg.state_dict().items())
    assert omega.stem[0].weight.grad is not None


def test_packed_inputs_put_the_normalised_target_image_first():
    image = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    label = one_hot(np.full((4, 4), 2, np.uint8))[None]
    x = pack_inputs(image, image.float(), label, torch.ones(1, 4, 4, dtype=torch.bool))
    assert x.shape == (1, 6 + K + 1, 4, 4)
    assert torch.allclose(x[0, 0], torch.full((4, 4), (1 - 0.485) / 0.229))
    assert x[0, 6 + 2].eq(1).all() and x[0, -1].eq(1).all()


@pytest.fixture(scope="module")
def smoke_clips(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    old = os.environ.get("WRP_RUNS")
    os.environ["WRP_RUNS"] = str(runs)
    try:
        from wrp.profiles import Run
        from wrp.stages import manifest_for

        manifest = Manifest.load(manifest_for(Run.create("smoke", progress=False)))
        yield manifest, runs
    finally:
        if old is None:
            os.environ.pop("WRP_RUNS")
        else:
            os.environ["WRP_RUNS"] = old


def test_cyclic_samples_come_from_labelled_frames_only_and_load_as_training_pairs(smoke_clips, tmp_path):
    manifest, _ = smoke_clips
    clips = manifest.clips("train")
    arrays = make_cyclic_samples(clips, (1, 2), make_estimator("dis"), CachedSegmenter(_segmenter().eval()),
                                 progress=False)
    # every clip, p ∈ {1, 2}, both directions; the targets are the human labels themselves
    assert len(arrays["meta"]) == len(clips) * 2 * 2
    for (ci, _, _), label in zip(arrays["meta"], arrays["label"], strict=True):
        assert np.array_equal(label, clips[ci].label(clips[ci].labelled))
    np.savez(tmp_path / "samples.npz", **arrays)
    data = CyclicDataset(tmp_path / "samples.npz", seed=3, crop=(32, 64))
    x, y = data[1]
    assert x.shape == (6 + K + 1, 32, 64) and y.shape == (32, 64) and y.dtype == torch.int64
    x2, y2 = CyclicDataset(tmp_path / "samples.npz", seed=3, crop=(32, 64))[1]
    assert torch.equal(x, x2) and torch.equal(y, y2), "the same seed must give the same crop and flip"
    with pytest.raises(ValueError, match="does not fit"):
        CyclicDataset(tmp_path / "samples.npz", crop=(1000, 64))


def test_a_cyclic_training_pair_is_the_flipped_then_cropped_whole_frame(tmp_path):
    """The dataset packs only the crop window; the pair must equal flipping and cropping the packed
    whole frame with the same random draws."""
    from wrp.propagation import one_hot

    rng = np.random.default_rng(0)
    n, h, w = 6, 24, 40
    arrays = {"image": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
              "cyclic_image": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
              "cyclic_label": rng.integers(0, K, (n, h, w), dtype=np.uint8),
              "valid": rng.random((n, h, w)) < 0.8, "label": rng.integers(0, K, (n, h, w), dtype=np.uint8),
              "meta": np.zeros((n, 3), dtype=np.int64)}
    arrays["cyclic_label"][:, :2] = 255
    np.savez(tmp_path / "samples.npz", **arrays)
    data = CyclicDataset(tmp_path / "samples.npz", seed=5, crop=(16, 24))
    flips = 0
    for i in range(n):
        draw = np.random.default_rng([5, 0, i])
        flip = draw.random() < 0.5
        top, left = int(draw.integers(0, h - 16 + 1)), int(draw.integers(0, w - 24 + 1))
        whole = pack_inputs(torch.from_numpy(arrays["image"][i]).permute(2, 0, 1)[None],
                            torch.from_numpy(arrays["cyclic_image"][i]).permute(2, 0, 1)[None],
                            one_hot(arrays["cyclic_label"][i], K)[None],
                            torch.from_numpy(arrays["valid"][i])[None])[0]
        target = torch.from_numpy(arrays["label"][i].astype(np.int64))
        if flip:
            whole, target = whole.flip(-1), target.flip(-1)
        x, y = data[i]
        assert torch.equal(x, whole[:, top:top + 16, left:left + 24])
        assert torch.equal(y, target[top:top + 16, left:left + 24])
        flips += flip
    assert 0 < flips < n, "the draws must include flipped and unflipped pairs"


def test_cached_frame_features_are_g_psi_on_the_whole_frame_cropped_to_the_window(tmp_path):
    """With a g_ψ, a pair carries the OCR features of its whole (mirrored) frame, cut to the same
    window as the inputs, so Ω trains on the features it sees when propagating."""
    from wrp.models import normalise, ocr_features

    rng = np.random.default_rng(1)
    n, h, w = 4, 32, 64
    frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    arrays = {"image": frames[[0, 1, 0, 1]],
              "cyclic_image": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
              "cyclic_label": rng.integers(0, K, (n, h, w), dtype=np.uint8),
              "valid": np.ones((n, h, w), bool), "label": rng.integers(0, K, (n, h, w), dtype=np.uint8),
              "meta": np.zeros((n, 3), dtype=np.int64)}
    np.savez(tmp_path / "samples.npz", **arrays)
    seg = _segmenter().eval()
    data = CyclicDataset(tmp_path / "samples.npz", seed=2, crop=(16, 32), segmenter=seg)
    assert data.stride == 4 and data.features[False].shape[0] == 2, "two distinct frames, stride 4"
    reference = CyclicDataset(tmp_path / "samples.npz", seed=2, crop=(16, 32))
    reference.stride = data.stride  # same draws: crops on the feature grid
    for epoch in range(3):
        data.set_epoch(epoch)
        reference.set_epoch(epoch)
        for i in range(n):
            (x, ocr), y = data[i]
            x_ref, y_ref = reference[i]
            assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
            # find the window: the image channels of x are a window of the (maybe mirrored) frame
            image = normalise(torch.from_numpy(arrays["image"][i]).permute(2, 0, 1)[None])
            views = {m: (image.flip(-1) if m else image)[0] for m in (False, True)}
            matches = [(m, top, left) for m in (False, True) for top in range(0, h - 15, 4)
                       for left in range(0, w - 31, 4)
                       if torch.equal(views[m][:, top:top + 16, left:left + 32], x[:3])]
            assert len(matches) == 1
            mirrored, top, left = matches[0]
            whole = ocr_features(seg, image.flip(-1) if mirrored else image)[0]
            assert ocr.shape == (seg.ocr_channels, 4, 8)
            assert torch.allclose(ocr, whole[:, top // 4:top // 4 + 4, left // 4:left // 4 + 8], atol=1e-6)
    with pytest.raises(ValueError, match="multiple of g_ψ's feature stride"):
        CyclicDataset(tmp_path / "samples.npz", crop=(18, 32), segmenter=seg)


def test_every_policy_labels_every_frame_and_copy_scores_as_the_human_label(smoke_clips, tmp_path):
    manifest, _ = smoke_clips
    clips = manifest.clips("val")
    torch.manual_seed(0)
    propagator = Propagator(make_estimator("dis"), CachedSegmenter(_segmenter().eval()),
                            Denoiser(ngf=8, ocr_channels=32).eval())
    k = 4
    for policy in POLICIES:
        result = propagate_clips(clips, policy, tmp_path, propagator, k, progress=False)
        assert result["frames"] == sum(len(c) for c in clips)  # 9-frame clips, k = 4: all frames
    truth = manifest.ground_truth("val")
    rows = propagation_accuracy(clips, truth, tmp_path, POLICIES, k)
    assert {(r["policy"], r["distance"]) for r in rows} == {(p, d) for p in POLICIES for d in range(1, k + 1)}
    clip = clips[0]
    conf = sum(confusion_matrix(clip.label(clip.labelled), truth.label(clip.clip_id, clip.labelled + s * 2))
               for s in (1, -1))
    copy2 = next(r for r in rows if r["policy"] == "copy" and r["distance"] == 2)
    assert copy2["miou"] == pytest.approx(round(mean_iou(conf), 2))
    assert all(r["coverage"] == 100.0 for r in rows if r["policy"] != "warp-inpaint")
    with pytest.raises(ValueError, match="needs the denoiser"):
        propagate_clips(clips, "warp-refine", tmp_path / "x", Propagator(make_estimator("dis"),
                        CachedSegmenter(_segmenter().eval())), k, progress=False)
    with pytest.raises(ValueError, match="unknown policy"):
        propagate_clips(clips, "magic", tmp_path / "x", propagator, k, progress=False)


def test_unlabelled_pixels_of_a_policy_count_as_wrong(smoke_clips, tmp_path):
    manifest, _ = smoke_clips
    clips = manifest.clips("val")
    truth = manifest.ground_truth("val")
    propagator = Propagator(make_estimator("dis"))
    propagate_clips(clips, "copy", tmp_path, propagator, 1, progress=False)
    clip = clips[0]
    path = label_file(tmp_path, "copy", clip.frames[clip.labelled + 1])
    from wrp.data import write_label_ids

    write_label_ids(path, np.full(truth.label(clip.clip_id, 0).shape, IGNORE_INDEX, np.uint8))
    rows = propagation_accuracy(clips, truth, tmp_path, ["copy"], 1)
    assert rows[0]["coverage"] == pytest.approx(50.0, abs=0.01)  # one of the two d=1 frames abstained


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_a_propagation_killed_with_sigkill_resumes_to_identical_files(smoke_clips, tmp_path):
    _, runs = smoke_clips
    env = {**os.environ, "WRP_RUNS": str(runs), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "tests" / "propagation_worker.py")]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(cmd + [str(whole)], cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(cmd + [str(killed), "--delay", "0.5"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed.rglob("*_labelIds.png"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(list(killed.rglob("*_labelIds.png")))
    assert 3 <= partial < 9, f"the kill should land mid-run, {partial} of 9 labels were written"
    done = subprocess.run(cmd + [str(killed)], cwd=REPO, env=env, check=True, capture_output=True,
                          text=True, timeout=300)
    assert f"'skipped': {partial}" in done.stdout
    assert _files(whole) == {k: v for k, v in _files(killed).items() if k in _files(whole)}
    assert set(_files(whole)) == set(_files(killed))


def test_a_frame_or_label_whose_size_changed_after_the_manifest_is_named(smoke_clips, tmp_path):
    import dataclasses

    import cv2

    from wrp.data import DatasetError, write_label_ids

    manifest, _ = smoke_clips
    clip = manifest.clips("val")[0]
    smaller = tmp_path / "replaced_leftImg8bit.png"
    cv2.imwrite(str(smaller), cv2.resize(cv2.imread(str(clip.images[clip.labelled + 1])), (40, 20)))
    images = list(clip.images)
    images[clip.labelled + 1] = smaller
    changed = dataclasses.replace(clip, images=tuple(images))
    with pytest.raises(DatasetError, match=r"replaced_leftImg8bit\.png is 40×20 but the label"):
        propagate_clips([changed], "motion-only", tmp_path / "labels", Propagator(make_estimator("dis")), 1,
                        progress=False)
    propagate_clips([clip], "copy", tmp_path / "copy", Propagator(make_estimator("dis")), 1, progress=False)
    write_label_ids(label_file(tmp_path / "copy", "copy", clip.frames[clip.labelled + 1]),
                    np.zeros((20, 40), np.uint8))
    with pytest.raises(DatasetError, match=r"is 40×20; the dataset changed after propagating"):
        propagation_accuracy([clip], manifest.ground_truth("val"), tmp_path / "copy", ["copy"], 1)
    # a label an earlier run left, of another size: named, with what to do
    write_label_ids(label_file(tmp_path / "resumed", "motion-only", clip.frames[clip.labelled + 1]),
                    np.zeros((20, 40), np.uint8))
    with pytest.raises(DatasetError, match=r"is 40×20 but the label it continues is .*delete it"):
        propagate_clips([clip], "motion-only", tmp_path / "resumed", Propagator(make_estimator("dis")), 2,
                        progress=False)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_frame_that_cannot_be_read_is_named_whoever_reads_it(smoke_clips, tmp_path, workers):
    import dataclasses

    from wrp.data import DatasetError

    clip = smoke_clips[0].clips("val")[0]
    broken = tmp_path / "broken_leftImg8bit.png"
    broken.write_bytes(b"not a png")
    images = list(clip.images)
    images[clip.labelled - 2] = broken
    with pytest.raises(DatasetError, match=r"broken_leftImg8bit\.png"):
        propagate_clips([dataclasses.replace(clip, images=tuple(images))], "motion-only", tmp_path / "labels",
                        Propagator(make_estimator("dis")), 3, progress=False, workers=workers)
    # every label computed before the bad frame is kept: the labelled frame, +1..+3, then −1
    assert len(list((tmp_path / "labels").rglob("*.png"))) == 5


def test_the_pipeline_writes_the_files_of_one_thread(smoke_clips, tmp_path):
    """Worker threads, a writer thread and batches dealt to several calls (as ranks do) change no
    byte of any label or confidence map, for every policy, with and without a gate."""
    from wrp.denoiser import Gate
    from wrp.pipeline import StageClock

    clips = smoke_clips[0].clips("val") * 3  # three "clips": batches of 2 make two groups
    torch.manual_seed(0)
    seg, omega = CachedSegmenter(_segmenter().eval()), Denoiser(ngf=8, ocr_channels=32).eval()
    for gate in (None, Gate(valid=(0.4,) * NUM_CLASSES, unexplained=(0.2,) * NUM_CLASSES)):
        propagator = Propagator(make_estimator("dis"), seg, omega, gate=gate)
        for policy in POLICIES if gate is None else ("warp-refine",):
            root = tmp_path / f"{policy}-{gate is None}"
            clock = StageClock()
            one = propagate_clips(clips, policy, root / "one", propagator, 3, 2, True, False, workers=0)
            piped = propagate_clips(clips, policy, root / "piped", propagator, 3, 2, True, False, workers=2,
                                    clock=clock)
            for group in (1, 0):  # batches in other calls and order, as two ranks label them
                propagate_clips(clips, policy, root / "dealt", propagator, 3, 2, True, False, workers=1,
                                groups=[group])
            assert one["frames"] == piped["frames"] > 0
            assert _files(root / "one") == _files(root / "piped") == _files(root / "dealt"), policy
            if policy == "warp-refine":
                assert {"decode", "flow", "warp", "g_ψ", "Ω", "write"} <= set(clock.seconds)


def test_a_failing_disk_stops_a_threaded_run_with_the_file_named(smoke_clips, tmp_path):
    """The writer thread's error reaches the run: the OSError of the one-thread run, naming the file."""
    blocker = tmp_path / "labels"
    blocker.write_text("a file where the labels folder should be")
    clips = smoke_clips[0].clips("val")
    for workers in (0, 2):
        with pytest.raises(OSError, match="labels"):
            propagate_clips(clips, "motion-only", blocker, Propagator(make_estimator("dis")), 2,
                            progress=False, workers=workers)


def test_worker_threads_follow_the_cores_and_the_device():
    from wrp.pipeline import default_workers

    cores = len(os.sched_getaffinity(0))
    assert default_workers("cpu", 1) == max(0, min(4, cores - 1))
    assert default_workers("cuda", 1) >= 1  # DIS must run beside a GPU
    assert default_workers("cpu", cores * 4) == 0


def test_nodes_need_a_rendezvous_and_a_rank_among_them():
    from wrp.launch import Nodes

    assert Nodes(2, 1, "node0:29500").count == 2
    with pytest.raises(ValueError, match="HOST:PORT"):
        Nodes(2, 0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        Nodes(2, 0, "node0")
    with pytest.raises(ValueError, match="0 ≤ rank < nodes"):
        Nodes(2, 2, "node0:29500")



def test_the_shards_of_a_split_are_the_one_process_batches_dealt_in_turn():
    from wrp.shards import groups_of

    for count, batch, world in ((10, 3, 2), (7, 8, 3), (16, 4, 4), (5, 1, 2)):
        shards = [groups_of(count, batch, r, world) for r in range(world)]
        assert sorted(g for shard in shards for g in shard) == list(range(-(-count // batch)))
        assert all(g % world == r for r, shard in enumerate(shards) for g in shard)


SHARDED = ["propagate", "--profile", "smoke", "--no-progress", "--split", "train", "--batch", "1",
           "--policy", "motion-only", "--policy", "warp-refine", "--confidence"]


def test_propagate_in_two_processes_writes_the_files_of_one(isolated_runs, tmp_path):
    """wrp propagate --nproc 2 (torchrun, CPU workers) against --nproc 1: every label and confidence
    file and the accuracy table byte-identical."""
    import json

    from wrp.cli import main

    assert main(SHARDED + ["--out", str(tmp_path / "one")]) == 0
    assert main(SHARDED + ["--out", str(tmp_path / "two"), "--nproc", "2", "--workers", "2"]) == 0
    one, two = _files(tmp_path / "one" / "labels"), _files(tmp_path / "two" / "labels")
    assert one and one == two
    accuracy = [(tmp_path / out / "accuracy.csv").read_bytes() for out in ("one", "two")]
    assert accuracy[0] == accuracy[1]
    speed = json.loads((tmp_path / "two" / "speed.json").read_text())
    assert speed["warp-refine"]["processes"] == 2 and speed["warp-refine"]["frames"] > 0
    ranks = sorted((tmp_path / "two" / "shards" / "warp-refine").glob("rank*.json"))
    assert [json.loads(p.read_text())["frames"] > 0 for p in ranks] == [True, True]  # both ranks labelled

    # a rank killed mid-run: the run fails, and run again it ends with the same files
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "wrp", *SHARDED, "--out", str(killed), "--nproc", "2"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, victim = time.time() + 300, None
    while time.time() < deadline and victim is None and proc.poll() is None:
        if list((killed / "labels" / "warp-refine").rglob("*.png")):
            pids = [pid for pid, _, cmd in processes()
                    if "wrp.shards" in cmd and "torch.distributed" not in cmd and pid != os.getpid()]
            victim = pids[-1] if pids else None
        time.sleep(0.05)
    assert victim is not None, "no rank was caught labelling"
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(timeout=300) != 0
    assert main(SHARDED + ["--out", str(killed), "--nproc", "2"]) == 0
    assert _files(killed / "labels") == one

    # two nodes — here two launchers on one machine: the first runs the command, the other joins it
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = ["--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    joiner = subprocess.Popen([sys.executable, "-m", "wrp", "propagate", *nodes, "--node-rank", "1"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert main(SHARDED + ["--out", str(tmp_path / "nodes"), *nodes]) == 0
        assert joiner.wait(timeout=300) == 0, joiner.stdout.read()
    finally:
        joiner.kill()
    assert _files(tmp_path / "nodes" / "labels") == one
    assert json.loads((tmp_path / "nodes" / "speed.json").read_text())["warp-refine"]["processes"] == 2


def test_label_errors_say_where_a_class_pixels_go():
    from wrp.data import CLASS_NAMES
    from wrp.policies import label_errors

    k = len(CLASS_NAMES)
    fence, building = CLASS_NAMES.index("fence"), CLASS_NAMES.index("building")
    conf = np.zeros((k, k + 1), np.int64)
    conf[fence, fence], conf[fence, building], conf[fence, k] = 56, 28, 16  # 16 left unlabelled
    conf[building, building], conf[building, fence] = 90, 10
    rows = {r["class"]: r for r in label_errors(conf)}
    assert set(rows) == {"fence", "building"}, "classes without true pixels are left out"
    assert rows["fence"]["pixels"] == 100 and rows["fence"]["recall"] == 56.0
    assert rows["fence"]["precision"] == pytest.approx(100 * 56 / 66, abs=0.05)  # 56 of the 66 labelled fence
    assert rows["fence"]["iou"] == pytest.approx(100 * 56 / (100 + 66 - 56), abs=0.05)  # unlabelled: wrong
    assert rows["building"]["iou"] == pytest.approx(100 * 90 / (100 + 118 - 90), abs=0.05)
    assert rows["fence"]["mistaken_for"] == [("building", 28.0), ("unlabelled", 16.0)]
    assert rows["building"]["mistaken_for"] == [("fence", 10.0)]
    assert label_errors(conf, top=1)[1]["mistaken_for"] == [("building", 28.0)]


def test_distance_confusions_split_new_from_seen_pixels(tmp_path):
    """``pixels="new"`` counts only where the frame's true class differs from the labelled frame's
    at the same place, ``"seen"`` the rest; the two add up to every pixel."""
    from dataclasses import dataclass

    from wrp.data import write_label_ids
    from wrp.policies import distance_confusions

    @dataclass
    class Frame:
        name: str

        def label(self, root):
            return root / f"{self.name}_gtFine_labelIds.png"

    class Clip:
        clip_id, labelled = "c", 0
        frames = [Frame("f0"), Frame("f1")]

        def __len__(self):
            return 2

    road, car = 0, 13
    first = np.full((2, 4), road, np.uint8)
    second = first.copy()
    second[:, 2:] = car  # a car enters on the right: 4 new pixels

    class Truth:
        def label(self, clip_id, pos):
            return (first, second)[pos]

    generated = second.copy()
    generated[0, 3] = road  # one new pixel wrong
    generated[1, 0] = car  # one seen pixel wrong
    write_label_ids(Clip.frames[1].label(tmp_path / "warp-refine"), generated)
    conf = {p: distance_confusions([Clip()], Truth(), tmp_path, "warp-refine", 1, pixels=p)[1]
            for p in ("all", "new", "seen")}
    assert conf["new"].sum() == 4 and conf["seen"].sum() == 4
    np.testing.assert_array_equal(conf["new"] + conf["seen"], conf["all"])
    assert conf["new"][car, car] == 3 and conf["new"][car, road] == 1 and conf["new"][road].sum() == 0
    assert conf["seen"][road, road] == 3 and conf["seen"][road, car] == 1
    with pytest.raises(ValueError, match="pixels"):
        distance_confusions([Clip()], Truth(), tmp_path, "warp-refine", 1, pixels="old")
