"""The epoch mixer (wrp.mixing): augmentation geometry, class centroids and their cache, epoch plans,
and the dataset the segmenters train on (supplementary 3.1)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from wrp import mixing
from wrp.mixing import (
    AugmentConfig,
    CentroidIndex,
    MixConfig,
    MixedDataset,
    PlanItem,
    augment,
    class_centroids,
    epoch_plan,
)
from wrp.models import IMAGENET_MEAN, IMAGENET_STD

NO_PHOTO = dict(blur_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
PALETTE = {0: (200, 40, 40), 1: (40, 200, 40), 2: (40, 40, 200), 13: (220, 220, 30)}
OFFICIAL = {0: 7, 1: 8, 2: 11, 11: 24, 13: 26, 255: 0}  # train id → official Cityscapes label id


def _block_label(rng: np.random.Generator, h: int = 48, w: int = 96, block: int = 8) -> np.ndarray:
    classes = np.array(list(PALETTE))
    grid = rng.choice(classes, size=(h // block, w // block))
    return np.kron(grid, np.ones((block, block), dtype=np.int64)).astype(np.uint8)


def _paint(label: np.ndarray) -> np.ndarray:
    image = np.zeros(label.shape + (3,), dtype=np.uint8)
    for c, colour in PALETTE.items():
        image[label == c] = colour
    return image


def _interior(label: np.ndarray) -> np.ndarray:
    """Pixels whose 3×3 neighbourhood holds one label (bilinear blends only appear at borders);
    the crop's outer frame is left out: its neighbours outside the crop are unknown."""
    lo = cv2.erode(label, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(label, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    inner = np.zeros(label.shape, bool)
    inner[1:-1, 1:-1] = True
    return (lo == hi) & inner


# ---------------------------------------------------------------------------------------------
# augment
# ---------------------------------------------------------------------------------------------
def test_label_and_image_share_the_same_geometry():
    rng = np.random.default_rng(0)
    cfg = AugmentConfig(crop=(40, 56), **NO_PHOTO)
    for _ in range(40):
        label = _block_label(rng)
        image, out = augment(_paint(label), label, cfg, rng)
        check = _interior(out) & (out != 255)
        assert check.sum() > 0
        for c, colour in PALETTE.items():
            sel = check & (out == c)
            assert np.abs(image[sel].astype(int) - colour).max(initial=0) <= 1, f"class {c} lost its colour"


def test_labels_are_never_interpolated_and_output_has_the_crop_size():
    rng = np.random.default_rng(1)
    cfg = AugmentConfig(crop=(24, 40))
    for h, w in [(48, 96), (10, 13), (31, 17), (64, 32)]:
        for _ in range(10):
            label = rng.choice(np.array([0, 2, 13, 255], dtype=np.uint8), size=(h, w))
            image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            img, lab = augment(image, label, cfg, rng)
            assert img.shape == (24, 40, 3) and img.dtype == np.uint8
            assert lab.shape == (24, 40) and lab.dtype == np.uint8
            assert set(np.unique(lab).tolist()) <= {0, 2, 13, 255}


def test_padding_is_ignore_in_the_label_and_pad_colour_in_the_image():
    label = np.full((32, 64), 2, dtype=np.uint8)
    image = np.full((32, 64, 3), 77, dtype=np.uint8)
    cfg = AugmentConfig(crop=(32, 64), scale_range=(0.5, 0.5), image_pad=(1, 2, 3), **NO_PHOTO)
    for seed in range(5):
        img, lab = augment(image, label, cfg, np.random.default_rng(seed))
        assert (lab == 2).sum() == 16 * 32
        assert (lab[lab != 2] == 255).all()
        assert (img[lab == 255] == (1, 2, 3)).all()
        assert (img[lab == 2] == 77).all()


def test_flip_flips_image_and_label_together():
    rng = np.random.default_rng(2)
    label = _block_label(rng, 32, 64, block=4)
    image = rng.integers(0, 256, size=(32, 64, 3), dtype=np.uint8)
    same = dict(crop=(32, 64), scale_range=(1.0, 1.0), **NO_PHOTO)
    img, lab = augment(image, label, AugmentConfig(hflip_prob=1.0, **same), rng)
    np.testing.assert_array_equal(img, image[:, ::-1])
    np.testing.assert_array_equal(lab, label[:, ::-1])
    img, lab = augment(image, label, AugmentConfig(hflip_prob=0.0, **same), rng)
    np.testing.assert_array_equal(img, image)
    np.testing.assert_array_equal(lab, label)


def test_blur_and_jitter_touch_the_image_only_and_keep_the_geometry():
    label = _block_label(np.random.default_rng(3))
    image = _paint(label)
    plain = AugmentConfig(crop=(40, 56), **NO_PHOTO)
    busy = AugmentConfig(crop=(40, 56), blur_prob=1.0, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2)
    img_a, lab_a = augment(image, label, plain, np.random.default_rng(7))
    img_b, lab_b = augment(image, label, busy, np.random.default_rng(7))
    np.testing.assert_array_equal(lab_a, lab_b)
    assert not np.array_equal(img_a, img_b)


def test_augment_is_deterministic_given_the_rng():
    label = _block_label(np.random.default_rng(4))
    image = _paint(label)
    cfg = AugmentConfig(crop=(40, 56), blur_prob=1.0)
    a = augment(image, label, cfg, np.random.default_rng(11))
    b = augment(image, label, cfg, np.random.default_rng(11))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_centre_ends_up_inside_the_crop():
    rng = np.random.default_rng(5)
    cfg = AugmentConfig(crop=(16, 16), **NO_PHOTO)
    for _ in range(200):
        label = np.zeros((96, 160), dtype=np.uint8)
        y, x = int(rng.integers(2, 94)), int(rng.integers(2, 158))
        label[y - 2 : y + 2, x - 2 : x + 2] = 13  # 4×4: survives a 0.5 downscale
        image = _paint(label)
        _, lab = augment(image, label, cfg, rng, centre=(y, x))
        assert (lab == 13).any(), f"centre ({y}, {x}) fell outside the crop"


def test_augment_rejects_mismatched_shapes_and_centres_outside_the_image():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="label shape"):
        augment(image, np.zeros((8, 9), np.uint8), AugmentConfig(crop=(4, 4)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="centre"):
        augment(image, np.zeros((8, 8), np.uint8), AugmentConfig(crop=(4, 4)), np.random.default_rng(0),
                centre=(8, 0))


# ---------------------------------------------------------------------------------------------
# centroids
# ---------------------------------------------------------------------------------------------
def test_centroid_of_a_square_is_its_centre_in_its_tile():
    label = np.full((64, 96), 255, dtype=np.uint8)
    label[40:45, 8:13] = 13  # 5×5 square in tile (1, 0), centre (42, 10)
    label[0:4, 60:70] = 0  # straddles tiles (0, 1) and (0, 2): one centroid per tile
    cents = class_centroids(label, tile=32)
    assert cents[13] == [(42, 10)]
    assert cents[0] == [(2, 62), (2, 67)]  # y 1.5 → 2; x 60..63 → 61.5 → 62; x 64..69 → 66.5 → 67
    assert set(cents) == {0, 13}


def test_centroids_round_half_up_and_skip_ignore_and_out_of_range():
    label = np.full((32, 32), 255, dtype=np.uint8)
    label[0:2, 0:2] = 1  # mean (0.5, 0.5) → (1, 1)
    label[10, 10] = 40  # not a train id
    assert class_centroids(label, tile=32) == {1: [(1, 1)]}


def test_a_class_needs_min_pixels_of_a_tile_to_count():
    label = np.full((32, 64), 255, dtype=np.uint8)
    label[0:2, 0:2] = 1  # 4 stray pixels of class 1 in tile (0, 0)
    label[10:20, 40:50] = 1  # a real instance: 100 pixels in tile (0, 1)
    label[5, 5] = 2  # one stray pixel of class 2
    assert class_centroids(label) == {1: [(1, 1), (15, 45)], 2: [(5, 5)]}
    assert class_centroids(label, min_pixels=16) == {1: [(15, 45)]}
    assert class_centroids(label, min_pixels=101) == {}
    with pytest.raises(ValueError, match="min_pixels"):
        class_centroids(label, min_pixels=0)


def test_stray_pixels_do_not_make_a_frame_a_sample_of_their_class(tmp_path):
    real, stray = np.full((32, 64), 0, np.uint8), np.full((32, 64), 0, np.uint8)
    real[8:24, 8:24] = 13  # a car
    stray[3, 40:43] = 13  # three pixels of car on a road (a generated label's error)
    labels = [_write_pair(tmp_path, name, lab)[1] for name, lab in (("real", real), ("stray", stray))]
    cache = tmp_path / "centroids.json"
    assert CentroidIndex.build(labels, cache, progress=False).samples_with(13) == [0, 1]
    strict = CentroidIndex.build(labels, cache, progress=False, min_pixels=16)
    assert strict.samples_with(13) == [0], "the cache of another min_pixels must not be reused"
    assert strict.samples_with(0) == [0, 1]


def _write_pair(folder: Path, name: str, train: np.ndarray, colour=(10, 20, 30)) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    official = np.zeros_like(train)
    for t, o in OFFICIAL.items():
        official[train == t] = o
    image = np.zeros(train.shape + (3,), np.uint8)
    image[:] = colour  # RGB
    img_path, lab_path = folder / f"{name}_leftImg8bit.png", folder / f"{name}_gtFine_labelIds.png"
    assert cv2.imwrite(str(img_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert cv2.imwrite(str(lab_path), official)
    return img_path, lab_path


def _train_label(rng: np.random.Generator, h: int = 32, w: int = 64) -> np.ndarray:
    label = np.zeros((h, w), np.uint8)  # road
    label[: h // 4] = 2  # building
    label[h // 2 :, : w // 4] = 1  # sidewalk
    y, x = int(rng.integers(h // 4, h - 6)), int(rng.integers(w // 4, w - 6))
    label[y : y + 6, x : x + 6] = int(rng.choice([13, 11]))  # car or person
    label[-2:, -2:] = 255
    return label


def test_centroid_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    pairs = [_write_pair(tmp_path / "data", f"f{i}", _train_label(rng)) for i in range(3)]
    labels = [lab for _, lab in pairs]
    cache = tmp_path / "cache" / "centroids.json"
    calls = []
    original = mixing.class_centroids

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(mixing, "class_centroids", counting)
    first = CentroidIndex.build(labels, cache, progress=False)
    assert len(calls) == 3 and cache.is_file()
    assert json.loads(cache.read_text())["label_paths"] == [str(p) for p in labels]

    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(mixing, "class_centroids", refuse)
    second = CentroidIndex.build(labels, cache, progress=False)
    assert second.centroids == first.centroids and second.classes() == first.classes()

    # change one label: the cache is stale and the whole index is rebuilt
    new = np.full((32, 64), 255, np.uint8)
    new[:8, :8] = 1
    _write_pair(tmp_path / "data", "f1", new)
    stat = os.stat(labels[1])
    os.utime(labels[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    monkeypatch.setattr(mixing, "class_centroids", counting)
    calls.clear()
    third = CentroidIndex.build(labels, cache, progress=False)
    assert len(calls) == 3
    assert third.centroids[1] == {1: [(4, 4)]}
    assert third.centroids[0] == first.centroids[0]


def test_centroid_cache_is_rebuilt_for_a_different_file_list(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    labels = [_write_pair(tmp_path, f"g{i}", _train_label(rng))[1] for i in range(3)]
    cache = tmp_path / "centroids.json"
    CentroidIndex.build(labels, cache, progress=False)
    index = CentroidIndex.build(labels[:2], cache, progress=False)
    assert len(index) == 2
    assert json.loads(cache.read_text())["label_paths"] == [str(p) for p in labels[:2]]


def test_centroid_index_reads_train_ids_from_official_label_ids(tmp_path):
    train = np.full((32, 64), 255, np.uint8)
    train[8:13, 40:45] = 13  # car (official id 26), centre (10, 42)
    _, lab = _write_pair(tmp_path, "h0", train)
    index = CentroidIndex.build([lab], progress=False)
    assert index.classes() == [13]
    assert index.samples_with(13) == [0]
    assert index.centroids_of(0, 13) == [(10, 42)]


# ---------------------------------------------------------------------------------------------
# epoch plans
# ---------------------------------------------------------------------------------------------
def _fake_samples(prefix: str, n: int) -> list[tuple[str, str]]:
    return [(f"{prefix}{i}.png", f"{prefix}{i}_label.png") for i in range(n)]


def _fake_index(n: int, classes: list[int], seed: int) -> CentroidIndex:
    """Sample i holds classes[0] always (common) and one further class (rarer ones)."""
    rng = np.random.default_rng(seed)
    cents = []
    for i in range(n):
        per = {classes[0]: [(1, 1), (5, 5)], classes[1 + i % (len(classes) - 1)]: [(int(rng.integers(9)), i)]}
        cents.append(per)
    return CentroidIndex([f"l{i}" for i in range(n)], cents)


HUMAN, GENERATED = _fake_samples("h", 10), _fake_samples("g", 40)
IDX_H, IDX_G = _fake_index(10, [0, 5, 13], 0), _fake_index(40, [0, 1, 2, 11, 18], 1)


def test_plan_has_the_epoch_size_and_the_human_share():
    for size, share in [(100, 0.3), (7, 0.3), (33, 0.5), (20, 0.0), (20, 1.0)]:
        plan = epoch_plan(HUMAN, GENERATED, MixConfig(epoch_size=size, human_share=share), 0, IDX_H, IDX_G)
        assert len(plan) == size
        n_human = sum(item.source == "human" for item in plan)
        assert abs(n_human - size * share) <= 1
        assert n_human == round(size * share)


def test_plan_draws_the_class_uniform_share_within_each_source():
    cfg = MixConfig(epoch_size=100, human_share=0.3, class_uniform_share=0.5)
    plan = epoch_plan(HUMAN, GENERATED, cfg, 0, IDX_H, IDX_G)
    human = [it for it in plan if it.source == "human"]
    generated = [it for it in plan if it.source == "generated"]
    assert sum(it.class_id is not None for it in human) == 15
    assert sum(it.class_id is not None for it in generated) == 35
    for it in plan:
        assert (it.class_id is None) == (it.centre is None)


def test_class_uniform_items_cycle_through_the_classes():
    cfg = MixConfig(epoch_size=200, human_share=0.3, class_uniform_share=0.5)
    plan = epoch_plan(HUMAN, GENERATED, cfg, 3, IDX_H, IDX_G)
    for source, index in (("human", IDX_H), ("generated", IDX_G)):
        counts = Counter(it.class_id for it in plan if it.source == source and it.class_id is not None)
        assert set(counts) == set(index.classes())
        assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_class_uniform_items_hold_their_class_and_one_of_its_centroids():
    cfg = MixConfig(epoch_size=200, class_uniform_share=1.0)
    for it in epoch_plan(HUMAN, GENERATED, cfg, 0, IDX_H, IDX_G):
        index = IDX_H if it.source == "human" else IDX_G
        assert it.centre in index.centroids_of(it.index, it.class_id)


def test_everything_comes_from_human_when_there_are_no_generated_labels():
    plan = epoch_plan(HUMAN, [], MixConfig(epoch_size=25, human_share=0.3), 0, IDX_H)
    assert len(plan) == 25 and all(it.source == "human" for it in plan)


def test_plan_without_human_samples_is_refused():
    with pytest.raises(ValueError, match="human"):
        epoch_plan([], GENERATED, MixConfig(epoch_size=10), 0)


def test_plan_is_deterministic_per_seed_and_epoch_and_differs_across_epochs_and_seeds():
    cfg = MixConfig(epoch_size=60, seed=3)
    a = epoch_plan(HUMAN, GENERATED, cfg, 4, IDX_H, IDX_G)
    assert a == epoch_plan(HUMAN, GENERATED, cfg, 4, IDX_H, IDX_G)
    assert a != epoch_plan(HUMAN, GENERATED, cfg, 5, IDX_H, IDX_G)
    assert a != epoch_plan(HUMAN, GENERATED, MixConfig(epoch_size=60, seed=4), 4, IDX_H, IDX_G)
    assert all(isinstance(it, PlanItem) for it in a)


def test_uniform_items_are_a_permutation_unless_the_source_is_too_small():
    cfg = MixConfig(epoch_size=50, human_share=0.4, class_uniform_share=0.0)
    plan = epoch_plan(HUMAN, GENERATED, cfg, 0)  # 20 human from 10 samples, 30 generated from 40
    human = Counter(it.index for it in plan if it.source == "human")
    generated = Counter(it.index for it in plan if it.source == "generated")
    assert set(human.values()) == {2}  # each human sample exactly twice
    assert len(generated) == 30 and set(generated.values()) == {1}  # no repeats


def test_plan_without_centroids_is_all_uniform():
    plan = epoch_plan(HUMAN, GENERATED, MixConfig(epoch_size=40, class_uniform_share=0.5), 0)
    assert all(it.class_id is None and it.centre is None for it in plan)


def test_plan_rejects_a_centroid_index_of_another_size():
    with pytest.raises(ValueError, match="centroid index"):
        epoch_plan(HUMAN, GENERATED, MixConfig(epoch_size=10), 0, centroids_human=IDX_G)


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(epoch_size=0), "epoch_size"),
        (dict(epoch_size=2.5), "epoch_size"),
        (dict(epoch_size=10, human_share=1.5), "human_share"),
        (dict(epoch_size=10, human_share=-0.1), "human_share"),
        (dict(epoch_size=10, class_uniform_share=2), "class_uniform_share"),
        (dict(epoch_size=10, seed=-1), "seed"),
    ],
)
def test_bad_mix_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MixConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(crop=(0, 10)), "crop"),
        (dict(crop=(10,)), "crop"),
        (dict(scale_range=(2.0, 1.0)), "scale_range"),
        (dict(scale_range=(0.0, 1.0)), "scale_range"),
        (dict(hflip_prob=1.5), "hflip_prob"),
        (dict(blur_prob=-0.5), "blur_prob"),
        (dict(blur_sigma=(1.0, 0.5)), "blur_sigma"),
        (dict(brightness=-0.1), "brightness"),
        (dict(hue=0.7), "hue"),
        (dict(ignore_index=300), "ignore_index"),
    ],
)
def test_bad_augment_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**kwargs)


def test_augment_config_accepts_lists_from_json():
    cfg = AugmentConfig(crop=[16, 32], scale_range=[0.5, 2.0])
    assert cfg.crop == (16, 32) and hash(cfg) == hash(AugmentConfig(crop=(16, 32)))


# ---------------------------------------------------------------------------------------------
# MixedDataset
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_sets(tmp_path):
    rng = np.random.default_rng(8)
    human = [_write_pair(tmp_path / "human", f"h{i}", _train_label(rng), (10 * i, 100, 200))
             for i in range(3)]
    generated = [_write_pair(tmp_path / "gen", f"g{i}", _train_label(rng)) for i in range(4)]
    idx_h = CentroidIndex.build([lab for _, lab in human], tmp_path / "ch.json", progress=False)
    idx_g = CentroidIndex.build([lab for _, lab in generated], tmp_path / "cg.json", progress=False)
    return human, generated, idx_h, idx_g


def test_dataset_returns_normalised_tensors_of_the_crop_size(tiny_sets):
    human, generated, idx_h, idx_g = tiny_sets
    data = MixedDataset(human, generated, MixConfig(epoch_size=9, seed=1), AugmentConfig(crop=(16, 32)),
                        idx_h, idx_g)
    assert len(data) == 9
    for i in range(len(data)):
        image, label = data[i]
        assert image.shape == (3, 16, 32) and image.dtype == torch.float32
        assert label.shape == (16, 32) and label.dtype == torch.int64
        assert set(label.unique().tolist()) <= {0, 1, 2, 11, 13, 255}


def test_dataset_item_is_the_same_for_the_same_seed_epoch_and_index(tiny_sets):
    human, generated, idx_h, idx_g = tiny_sets
    make = lambda: MixedDataset(human, generated, MixConfig(epoch_size=6, seed=2),  # noqa: E731
                                AugmentConfig(crop=(16, 32), blur_prob=1.0), idx_h, idx_g, epoch=1)
    a, b = make(), make()
    for i in (5, 0, 3):  # order does not matter
        torch.testing.assert_close(a[i], b[i], rtol=0, atol=0)
    a.set_epoch(2)
    assert a.plan != b.plan


def test_dataset_without_augmentation_returns_the_full_rgb_image_and_train_ids(tmp_path):
    train = np.zeros((32, 64), np.uint8)
    train[:, 32:] = 13
    train[0, 0] = 255
    human = [_write_pair(tmp_path, "h0", train, colour=(255, 0, 128))]
    data = MixedDataset(human, [], MixConfig(epoch_size=2))
    image, label = data[0]
    assert image.shape == (3, 32, 64)
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(
        IMAGENET_STD
    )
    torch.testing.assert_close(image[:, 5, 5], expected)
    np.testing.assert_array_equal(label.numpy(), train.astype(np.int64))


def test_dataloader_and_distributed_sampler_work_over_the_dataset(tiny_sets):
    human, generated, idx_h, idx_g = tiny_sets
    data = MixedDataset(human, generated, MixConfig(epoch_size=10, seed=0), AugmentConfig(crop=(16, 32)),
                        idx_h, idx_g)
    batches = list(DataLoader(data, batch_size=4, num_workers=0))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0][0].shape == (4, 3, 16, 32) and batches[0][1].shape == (4, 16, 32)
    sampler = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=0)
    sampler.set_epoch(0)
    images, labels = next(iter(DataLoader(data, batch_size=5, sampler=sampler)))
    assert images.shape == (5, 3, 16, 32) and labels.dtype == torch.int64


def test_dataset_reports_a_missing_file(tmp_path):
    from wrp.data import DatasetError

    data = MixedDataset([(tmp_path / "nope.png", tmp_path / "nope_label.png")], [], MixConfig(epoch_size=1))
    with pytest.raises(DatasetError, match="nope"):
        data[0]
