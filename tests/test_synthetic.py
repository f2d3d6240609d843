"""The synthetic world: Cityscapes layout, byte-identical from a seed, exact flow, resumable."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from wrp.data import LABEL_TO_TRAIN, FrameRef, read_image, read_label_ids
from wrp.motion import warp
from wrp.synthetic import LABEL_IDS, SynthConfig, build_scene, generate_world, render, true_flow

TINY = SynthConfig(height=48, width=96, records=3, frames_per_record=9, seed=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(TINY, tmp_path_factory.mktemp("world"), workers=1, progress=False)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".progress" not in p.parts}  # world.json too


def test_every_frame_has_image_label_flow_and_validity_in_the_cityscapes_layout(world):
    for record in range(TINY.records):
        for frame in range(TINY.frames_per_record):
            ref = FrameRef("all", "synth", f"{record:06d}", frame)
            image = read_image(ref.image(world))
            assert image.shape == (48, 96, 3) and image.dtype == np.uint8
            label = read_label_ids(ref.label(world))
            assert label.shape == (48, 96) and set(np.unique(label)) <= set(LABEL_IDS)
            for direction in ("backward", "forward"):
                flow_path, valid_path = ref.flow(world, direction)
                flow = np.load(flow_path)
                assert flow.shape == (48, 96, 2) and flow.dtype == np.float32
                valid = cv2.imread(str(valid_path), cv2.IMREAD_UNCHANGED)
                assert valid.dtype == np.uint8 and set(np.unique(valid)) <= {0, 255}
    meta = json.loads((world / "world.json").read_text())
    assert meta["config"]["seed"] == 3 and len(meta["records"]) == 3
    assert meta["class_pixel_share"]["road"] > 0.1


def test_the_first_frame_has_no_backward_flow_and_the_last_no_forward_flow(world):
    first = FrameRef("all", "synth", "000000", 0)
    last = FrameRef("all", "synth", "000000", TINY.frames_per_record - 1)
    assert not cv2.imread(str(first.flow(world, "backward")[1]), cv2.IMREAD_UNCHANGED).any()
    assert not cv2.imread(str(last.flow(world, "forward")[1]), cv2.IMREAD_UNCHANGED).any()


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    again = generate_world(TINY, tmp_path / "again", workers=2, progress=False)
    assert _digest(again) == _digest(world)


def test_another_seed_gives_another_world(world, tmp_path):
    other = SynthConfig(**{**TINY.__dict__, "seed": 4, "records": 1})
    out = generate_world(other, tmp_path / "other", workers=1, progress=False)
    ref = FrameRef("all", "synth", "000000", 0)
    assert ref.label(out).read_bytes() != ref.label(world).read_bytes()


@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_warping_each_label_with_the_true_flow_reproduces_the_neighbour(world, direction):
    step = -1 if direction == "backward" else 1
    agree, valid_total, pixels = 0, 0, 0
    for record in range(TINY.records):
        for frame in range(TINY.frames_per_record):
            if not 0 <= frame + step < TINY.frames_per_record:
                continue
            ref = FrameRef("all", "synth", f"{record:06d}", frame)
            src = FrameRef("all", "synth", f"{record:06d}", frame + step)
            flow = np.load(ref.flow(world, direction)[0])
            valid = cv2.imread(str(ref.flow(world, direction)[1]), cv2.IMREAD_UNCHANGED) > 0
            warped, _ = warp(read_label_ids(src.label(world)), flow, mode="nearest")
            same = warped.numpy() == read_label_ids(ref.label(world))
            agree += int(same[valid].sum())
            valid_total += int(valid.sum())
            pixels += valid.size
    assert agree / valid_total >= 0.995
    assert valid_total / pixels > (0.9 if direction == "backward" else 0.75), "most pixels stay visible"


def test_true_flow_warps_the_image_too():
    config = SynthConfig(height=96, width=192, records=1, frames_per_record=20, seed=2)
    scene = build_scene(config, 0)
    src, dst = render(config, scene, 10.0), render(config, scene, 14.0)
    flow, valid = true_flow(config, dst, src, -4)  # four frames apart
    warped, _ = warp(np.ascontiguousarray(src.image.transpose(2, 0, 1)), flow)
    err_warped = np.abs(warped.numpy().transpose(1, 2, 0) - dst.image)[valid].mean()
    err_still = np.abs(src.image - dst.image)[valid].mean()
    assert err_warped < 0.5 * err_still, (err_warped, err_still)


def test_pixels_hidden_in_the_previous_frame_are_not_valid():
    config = SynthConfig(height=64, width=128, records=1, frames_per_record=20, seed=5)
    scene = build_scene(config, 0)
    prev, cur = render(config, scene, 10.0), render(config, scene, 11.0)
    flow, valid = true_flow(config, cur, prev, -1)
    ys, xs = np.mgrid[0:64, 0:128]
    px = np.rint(xs + flow[..., 0]).astype(int).clip(0, 127)
    py = np.rint(ys + flow[..., 1]).astype(int).clip(0, 63)
    other_surface = prev.sid[py, px] != cur.sid
    assert other_surface.any(), "a moving street always hides something"
    assert not (valid & other_surface).any()


def test_a_killed_generation_resumes_and_keeps_finished_records(tmp_path):
    config = SynthConfig(**{**TINY.__dict__, "records": 2})
    out = generate_world(config, tmp_path / "w", workers=1, progress=False)
    (out / "world.json").unlink()
    marker = out / ".progress" / "record_000001.json"
    marker.unlink()  # record 1 "was being written" when the job died
    stamp = FrameRef("all", "synth", "000000", 0).image(out).stat().st_mtime_ns
    generate_world(config, out, workers=1, progress=False)
    assert FrameRef("all", "synth", "000000", 0).image(out).stat().st_mtime_ns == stamp
    assert marker.is_file() and (out / "world.json").is_file()


def test_a_different_world_is_not_written_over_an_existing_one(world):
    with pytest.raises(FileExistsError, match="already holds a different synthetic world"):
        generate_world(SynthConfig(**{**TINY.__dict__, "seed": 9}), world, workers=1, progress=False)


def test_bad_config_is_refused_with_the_field_named():
    with pytest.raises(ValueError, match="frames_per_record=1 must be ≥ 2"):
        SynthConfig(frames_per_record=1)
    with pytest.raises(ValueError, match="speed="):
        SynthConfig(speed=(5.0, 1.0))
    with pytest.raises(ValueError, match="thin_scale=0 must be positive"):
        SynthConfig(thin_scale=0)


def test_the_world_shows_the_confusable_classes(world):
    share = json.loads((world / "world.json").read_text())["class_pixel_share"]
    for name in ("car", "person", "building", "sidewalk", "sky"):
        assert share.get(name, 0) > 0, name
    bigger = SynthConfig(height=64, width=128, records=4, frames_per_record=2, seed=0)
    seen: set[int] = set()
    for record in range(bigger.records):
        seen |= set(np.unique(render(bigger, build_scene(bigger, record), 1.0).label).tolist())
    for label in (26, 27, 28, 24, 25, 12, 13):  # car truck bus person rider wall fence
        assert label in seen, f"label id {label} never appears"
    assert set(LABEL_TO_TRAIN[list(seen)].tolist()) <= set(range(19)) | {255}


def test_thin_scale_widens_the_thin_classes_and_leaves_the_layout_alone():
    pixels = {}
    for thin in (1.0, 2.0):
        config = SynthConfig(height=96, width=192, records=3, frames_per_record=2, seed=0, thin_scale=thin)
        labels = np.stack([render(config, build_scene(config, r), 0.0).label for r in range(config.records)])
        pixels[thin] = {name: int((labels == lid).sum()) for name, lid in
                        (("pole", 17), ("person", 24), ("road", 7), ("building", 11))}
    assert pixels[1.0]["pole"] > 0 and pixels[1.0]["person"] > 0
    assert pixels[2.0]["pole"] > 1.6 * pixels[1.0]["pole"]  # twice as wide, minus what hides it
    assert pixels[2.0]["person"] > 1.2 * pixels[1.0]["person"]  # √2 as wide
    for name in ("road", "building"):  # the same street: the rest hardly changes
        assert abs(pixels[2.0][name] - pixels[1.0][name]) < 0.1 * pixels[1.0][name], name


def test_wrp_synth_command_writes_a_world(tmp_path):
    out = subprocess.run([sys.executable, "-m", "wrp", "synth", "--out", str(tmp_path / "w"),
                          "--profile", "smoke", "--records", "1", "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "w" / "world.json").is_file() and "1 records × 9 frames" in out.stdout


def test_a_partial_world_of_another_config_is_refused_not_mixed(tmp_path):
    from wrp.io import atomic_write_json
    from wrp.synthetic import config_json

    small = SynthConfig(height=32, width=64, records=2, frames_per_record=3, seed=0)
    out = tmp_path / "w"
    atomic_write_json(out / ".progress" / "config.json", config_json(small))  # a run killed half-way
    with pytest.raises(FileExistsError, match="holds part of another synthetic world"):
        generate_world(SynthConfig(height=32, width=64, records=2, frames_per_record=3, seed=1), out,
                       workers=1, progress=False)
    generate_world(small, out, workers=1, progress=False)  # the same settings resume it
    assert (out / "world.json").is_file() and not list(out.rglob(".*.tmp"))


def test_a_second_synth_into_a_folder_being_written_is_refused(tmp_path):
    from wrp.io import exclusive_folder

    out = tmp_path / "w"
    with exclusive_folder(out / ".progress", "wrp synth"):  # another run is writing it
        cmd = [sys.executable, "-m", "wrp", "synth", "--profile", "smoke", "--records", "1",
               "--out", str(out), "--no-progress"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"wrp: error: {out / '.progress'} is being written by another wrp synth" in done.stderr
    assert not (out / "leftImg8bit_sequence").exists()
