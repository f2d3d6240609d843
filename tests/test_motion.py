"""Warping, the forward–backward check, warp-inpaint and cyclic warped labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wrp.propagation as propagation
from wrp.motion import (
    DISFlow,
    FarnebackFlow,
    RAFTFlow,
    TrueFlow,
    forward_backward_valid,
    make_estimator,
    warp,
)
from wrp.propagation import cyclic_warped_labels, one_hot, to_ids, warp_inpaint

RNG = np.random.default_rng(0)
LABEL = RNG.integers(0, 19, (24, 40)).astype(np.uint8)
IMAGE = RNG.random((3, 24, 40)).astype(np.float32)


def test_identity_motion_returns_the_label_and_the_image():
    zero = np.zeros((24, 40, 2), np.float32)
    label, inside = warp(LABEL, zero, mode="nearest")
    assert np.array_equal(label.numpy(), LABEL) and label.dtype == torch.uint8 and inside.all()
    image, _ = warp(IMAGE, zero)
    assert torch.allclose(image, torch.from_numpy(IMAGE), atol=1e-5)


def test_an_integer_translation_is_reproduced_exactly_away_from_the_border():
    flow = np.zeros((24, 40, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3, -2  # each pixel comes from 3 right, 2 up
    label, inside = warp(LABEL, flow, mode="nearest")
    assert np.array_equal(label.numpy()[2:, :-3], LABEL[:-2, 3:])
    image, _ = warp(IMAGE, flow)
    assert torch.allclose(image[:, 2:, :-3], torch.from_numpy(IMAGE[:, :-2, 3:]), atol=1e-5)
    assert not inside[:2].any() and not inside[:, -3:].any() and inside[2:, :-3].all()


def test_an_affine_motion_is_reproduced_exactly_on_a_linear_image():
    ys, xs = np.mgrid[0:24, 0:40].astype(np.float32)
    ramp = (0.7 * xs + 1.3 * ys)[None]  # bilinear interpolation is exact on it
    a = np.array([[1.05, 0.1], [-0.05, 0.95]], np.float32)
    src_x = a[0, 0] * xs + a[0, 1] * ys + 0.4
    src_y = a[1, 0] * xs + a[1, 1] * ys + 0.3
    flow = np.stack([src_x - xs, src_y - ys], -1)
    warped, inside = warp(ramp, flow)
    expected = 0.7 * src_x + 1.3 * src_y
    assert torch.allclose(warped[0][inside], torch.from_numpy(expected)[inside], atol=1e-3)
    assert inside.float().mean() > 0.6


def test_out_of_view_pixels_are_flagged():
    flow = np.zeros((24, 40, 2), np.float32)
    flow[:, :20, 0] = -25  # the left half looks left of the image
    _, inside = warp(LABEL, flow, mode="nearest")
    assert not inside[:, :20].any() and inside[:, 20:].all()


def test_the_forward_backward_check_flags_a_moving_occluder():
    # a 6×6 square moves 5 px to the right over a static background
    back = np.zeros((24, 40, 2), np.float32)  # target → source
    fwd = np.zeros((24, 40, 2), np.float32)  # source → target
    back[9:15, 15:21, 0] = -5  # the square now at x 15..20 was at x 10..15
    fwd[9:15, 10:16, 0] = 5
    valid = forward_backward_valid(back, fwd)
    assert valid[9:15, 15:21].all(), "the square itself is tracked"
    assert not valid[9:15, 10:15].any(), "the background it uncovered was hidden in the source"
    assert valid[:9].all() and valid[15:].all()


def test_images_and_labels_go_through_the_same_warp(monkeypatch):
    calls = []
    real = propagation.warp

    def spy(source, flow, mode="bilinear", padding="border"):
        calls.append((np.asarray(source).dtype.kind, mode))
        return real(source, flow, mode, padding)

    monkeypatch.setattr(propagation, "warp", spy)
    image = (RNG.random((24, 40, 3)) * 255).astype(np.uint8)
    zero = np.zeros((24, 40, 2), np.float32)
    warp_inpaint(LABEL, image, image, flow=zero, flow_reverse=zero)
    assert ("u", "nearest") in calls and ("f", "bilinear") in calls


def test_warp_inpaint_fills_invalid_pixels_from_the_segmenter_or_leaves_them_unlabelled():
    image = (RNG.random((24, 40, 3)) * 255).astype(np.uint8)
    flow = np.zeros((24, 40, 2), np.float32)
    flow[:, :10, 0] = -30  # out of view
    zero = np.zeros_like(flow)
    alone = warp_inpaint(LABEL, image, image, flow=flow, flow_reverse=zero, check=False)
    assert (alone.ids[:, :10] == 255).all() and np.array_equal(alone.ids[:, 10:], LABEL[:, 10:])
    semantic = np.full((24, 40), 7, np.uint8)
    filled = warp_inpaint(LABEL, image, image, semantic, flow=flow, flow_reverse=zero, check=False)
    assert (filled.ids[:, :10] == 7).all()
    assert filled.label.shape == (19, 24, 40) and filled.image.shape == (3, 24, 40)


def test_one_hot_round_trips_with_ignore():
    label = LABEL.copy()
    label[0, :5] = 255
    hot = one_hot(label)
    assert hot[:, 0, :5].sum() == 0 and np.array_equal(to_ids(hot), label)


class StaticClip:
    """A clip of a scene where nothing moves: every frame is the same picture."""

    def __init__(self, n: int = 9) -> None:
        self.picture = (RNG.random((24, 40, 3)) * 255).astype(np.uint8)
        self.n, self.labelled = n, n // 2

    def __len__(self) -> int:
        return self.n

    def image(self, position: int) -> np.ndarray:
        return self.picture

    def label(self, position: int) -> np.ndarray:
        assert position == self.labelled
        return LABEL

    def true_flow(self, position: int, direction: str):
        return np.zeros((24, 40, 2), np.float32), np.ones((24, 40), bool)


@pytest.mark.parametrize("p", [1, 3])
def test_a_cycle_with_true_flow_on_a_static_scene_returns_the_label(p):
    clip = StaticClip()
    for direction in (1, -1):
        sample = cyclic_warped_labels(clip, clip.labelled, p, direction, TrueFlow())
        assert np.array_equal(sample.cyclic_ids, LABEL)
        assert sample.valid.all()


def test_a_cycle_refuses_to_leave_the_clip():
    with pytest.raises(ValueError, match="leaves the clip of 9 frames"):
        cyclic_warped_labels(StaticClip(), 4, 5, 1, TrueFlow())


def test_cycles_in_the_synthetic_world_are_noisier_when_longer(tmp_path):
    from wrp.data import SplitConfig, build_manifest
    from wrp.synthetic import SynthConfig, generate_world

    root = generate_world(SynthConfig(height=48, width=96, records=2, frames_per_record=17, seed=2),
                          tmp_path / "w", workers=1, progress=False)
    clip = build_manifest(root, SplitConfig(partition_length=17, val=1)).clips("train")[0]
    wrong = {}
    for p in (1, 8):
        samples = [cyclic_warped_labels(clip, clip.labelled, p, d, TrueFlow()) for d in (1, -1)]
        wrong[p] = np.mean([(s.cyclic_ids != s.label).mean() for s in samples])
    assert wrong[1] < 0.08 and wrong[8] > wrong[1]


def test_the_estimators_agree_on_a_smooth_translation():
    ys, xs = np.mgrid[0:64, 0:96].astype(np.float32)
    texture = lambda x, y: (127 + 60 * np.sin(x / 5) * np.cos(y / 7) + 40 * np.sin((x + y) / 11))  # noqa: E731
    source = texture(xs, ys).astype(np.uint8)
    target = texture(xs + 2, ys + 1).astype(np.uint8)  # target(p) = source(p + (2, 1))
    rgb = lambda g: np.repeat(g[..., None], 3, -1)  # noqa: E731
    for estimator in (DISFlow("medium"), FarnebackFlow()):
        flow = estimator(rgb(target), rgb(source))
        centre = flow[16:-16, 16:-16]
        assert abs(np.median(centre[..., 0]) - 2) < 0.3 and abs(np.median(centre[..., 1]) - 1) < 0.3


def test_unknown_estimators_and_missing_raft_weights_are_explained(tmp_path):
    with pytest.raises(ValueError, match="choose one of dis, farneback, true, raft"):
        make_estimator("flownet")
    with pytest.raises(FileNotFoundError, match="never downloads weights"):
        RAFTFlow(str(tmp_path / "raft_small.pth"))
    with pytest.raises(ValueError, match="unknown DIS preset"):
        DISFlow("slow")


def test_raft_runs_from_a_local_weights_file(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    weights = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), weights)  # untrained, but a real file
    image = (RNG.random((130, 140, 3)) * 255).astype(np.uint8)  # not divisible by 8: padded inside
    flow = RAFTFlow(str(weights), iters=2)(image, image)
    assert flow.shape == (130, 140, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


def test_the_clip_flow_cache_estimates_each_frame_pair_once_and_changes_no_result(tmp_path):
    from wrp.data import SplitConfig, build_manifest
    from wrp.denoiser import make_cyclic_samples
    from wrp.motion import ClipFlowCache, DISFlow
    from wrp.synthetic import SynthConfig, generate_world

    class Counting(DISFlow):
        calls = 0

        def between(self, clip, target, source):
            Counting.calls += 1
            return super().between(clip, target, source)

    root = generate_world(SynthConfig(height=48, width=96, records=2, frames_per_record=9, seed=3),
                          tmp_path / "w", workers=1, progress=False)
    clips = build_manifest(root, SplitConfig(partition_length=9, val=1)).clips("train")
    cache = ClipFlowCache(Counting())
    direct = [cyclic_warped_labels(clips[0], clips[0].labelled, p, 1, Counting()) for p in (1, 2, 4)]
    uncached_calls, Counting.calls = Counting.calls, 0
    cached = [cyclic_warped_labels(clips[0], clips[0].labelled, p, 1, cache) for p in (1, 2, 4)]
    assert uncached_calls == 4 * (1 + 2 + 4) and Counting.calls == 2 * 4  # 4 frame pairs, both ways
    for a, b in zip(direct, cached, strict=True):
        assert np.array_equal(a.cyclic_ids, b.cyclic_ids) and torch.equal(a.cyclic_image, b.cyclic_image)
    samples = make_cyclic_samples(clips, (1, 2), DISFlow(), progress=False)  # clears between clips
    assert samples["cyclic_label"].shape[0] == 4 * len(clips)
