"""Tests for wrp.losses: cross-entropy, RMI (Zhao et al. 2019), relaxed label loss (Zhu et al. 2019)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wrp.data import IGNORE_INDEX
from wrp.losses import (
    SegmentationLoss,
    _logdet_cholesky,
    _relaxed_label_loss_map,
    cross_entropy,
    relaxed_label_loss,
    rmi_loss,
)


def _blocky_labels(gen: torch.Generator, b: int, k: int, h: int, w: int, block: int) -> torch.Tensor:
    """Random piecewise-constant label maps (B,H,W) made of block×block tiles."""
    coarse = torch.randint(0, k, (b, h // block, w // block), generator=gen)
    return coarse.repeat_interleave(block, dim=1).repeat_interleave(block, dim=2)


def _two_regions(h: int = 12, w: int = 12) -> torch.Tensor:
    """(1,H,W): class 0 on the left half, class 1 on the right half."""
    target = torch.zeros(1, h, w, dtype=torch.long)
    target[:, :, w // 2:] = 1
    return target


# --------------------------------------------------------------------------- RMI


def _rmi_reference(logits: np.ndarray, target: np.ndarray, pool: int = 4, radius: int = 3,
                   lam: float = 0.5, alpha: float = 5e-4, ignore: int = IGNORE_INDEX) -> float:
    """Independent float64 RMI straight from the formulas: loops, np.linalg.inv and slogdet."""
    b, k, h, w = logits.shape
    x = logits.astype(np.float64)
    valid = (target != ignore).astype(np.float64)  # (B,H,W)
    onehot = np.zeros((b, k, h, w))
    for c in range(k):
        onehot[:, c] = (target == c) * valid
    sig = 1.0 / (1.0 + np.exp(-x))
    # BCE, summed over classes, mean over labelled pixels
    bce_px = -(onehot * np.log(sig) + (1.0 - onehot) * np.log(1.0 - sig))  # (B,K,H,W)
    bce = (bce_px * valid[:, None]).sum() / max(valid.sum(), 1.0)
    probs = sig * valid[:, None] + 1e-6
    hp, wp = h // pool, w // pool
    d = radius * radius
    total = 0.0
    for c in range(k):
        per_image = []
        for i in range(b):
            ly = np.zeros((hp, wp))
            lp = np.zeros((hp, wp))
            for u in range(hp):
                for v in range(wp):
                    ly[u, v] = onehot[i, c, u * pool:(u + 1) * pool, v * pool:(v + 1) * pool].mean()
                    lp[u, v] = probs[i, c, u * pool:(u + 1) * pool, v * pool:(v + 1) * pool].mean()
            ys, ps = [], []
            for u in range(hp - radius + 1):
                for v in range(wp - radius + 1):
                    ys.append(ly[u:u + radius, v:v + radius].reshape(-1))
                    ps.append(lp[u:u + radius, v:v + radius].reshape(-1))
            y = np.array(ys).T  # (d,N)
            p = np.array(ps).T
            y = y - y.mean(axis=1, keepdims=True)
            p = p - p.mean(axis=1, keepdims=True)
            sy, sp, syp = y @ y.T, p @ p.T, y @ p.T
            post = sy - syp @ np.linalg.inv(sp + alpha * np.eye(d)) @ syp.T
            sign, logdet = np.linalg.slogdet(post + alpha * np.eye(d))
            assert sign > 0
            per_image.append(0.5 * logdet)
        total += np.mean(per_image) / d
    return lam * bce + (1.0 - lam) * total


@pytest.mark.parametrize("size", [16, 32])
def test_rmi_matches_independent_float64_computation(size: int) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, size, size, generator=gen) * 2
    target = _blocky_labels(gen, 2, 3, size, size, block=4)
    target[0, :3, :5] = IGNORE_INDEX
    got = rmi_loss(logits, target)
    want = _rmi_reference(logits.numpy(), target.numpy())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_rmi_parameters_follow_the_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 2, 24, 24, generator=gen)
    target = _blocky_labels(gen, 1, 2, 24, 24, block=3)
    got = rmi_loss(logits, target, pool=2, radius=2, lambda_=0.25, eps=1e-3)
    want = _rmi_reference(logits.numpy(), target.numpy(), pool=2, radius=2, lam=0.25, alpha=1e-3)
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_rmi_finite_with_single_class_batch_and_gradients_finite() -> None:
    logits = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(2), requires_grad=True)
    target = torch.full((2, 32, 32), 2, dtype=torch.long)
    loss = rmi_loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


def test_rmi_finite_when_whole_image_ignored_and_gradients_finite() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 32, 32, generator=gen, requires_grad=True)
    target = _blocky_labels(gen, 2, 3, 32, 32, block=8)
    target[1] = IGNORE_INDEX
    loss = rmi_loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[1].abs().max() == 0  # the ignored image contributes no gradient


def test_rmi_all_ignore_is_the_constant_floor_with_zero_gradient() -> None:
    logits = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4), requires_grad=True)
    target = torch.full((2, 16, 16), IGNORE_INDEX, dtype=torch.long)
    loss = rmi_loss(logits, target)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * 3 * 0.5 * math.log(5e-4), rel=1e-5)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().max() == 0


def test_rmi_lower_for_near_perfect_prediction_than_for_random() -> None:
    gen = torch.Generator().manual_seed(5)
    target = _blocky_labels(gen, 2, 3, 64, 64, block=8)
    perfect = 12.0 * (2.0 * F.one_hot(target, 3).permute(0, 3, 1, 2).float() - 1.0)
    noisy = torch.randn(2, 3, 64, 64, generator=gen) * 3
    assert rmi_loss(perfect, target) < rmi_loss(noisy, target) - 1.0


def test_rmi_under_cpu_autocast_is_computed_in_full_precision() -> None:
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(1, 3, 32, 32, generator=gen)
    target = _blocky_labels(gen, 1, 3, 32, 32, block=4)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        low = rmi_loss(logits.bfloat16(), target)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    ref = rmi_loss(logits.bfloat16().float(), target)
    assert low.item() == pytest.approx(ref.item(), rel=1e-6, abs=1e-6)


def test_rmi_rejects_maps_too_small_for_the_region() -> None:
    with pytest.raises(ValueError):
        rmi_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))


def test_logdet_cholesky_never_nan_on_indefinite_matrices() -> None:
    good = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    bad = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64, requires_grad=True)  # eig −1, 3
    tiny = torch.tensor([[1e-12, 0.0], [0.0, -1e-9]], dtype=torch.float64)  # fixed by extra jitter
    # beyond any jitter tried: falls back to diag(max(diag, α))
    hopeless = torch.tensor([[1.0, 0.0], [0.0, -1e4]], dtype=torch.float64, requires_grad=True)
    mats = torch.stack([good, bad, tiny, hopeless])
    out = _logdet_cholesky(mats, 5e-4)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(bad.grad).all() and torch.isfinite(hopeless.grad).all()
    assert out[3].item() == pytest.approx(math.log(5e-4))
    assert out[0].item() == pytest.approx(math.log(2.0 - 0.25))


# --------------------------------------------------------------------------- cross-entropy


def test_cross_entropy_means_over_labelled_pixels_and_all_ignore_is_zero() -> None:
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8), generator=gen)
    target[0, :4] = IGNORE_INDEX
    want = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(cross_entropy(logits, target), want)
    empty = cross_entropy(logits, torch.full_like(target, IGNORE_INDEX))
    empty.backward()
    assert empty.item() == 0.0 and empty.requires_grad
    assert torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- relaxed label loss


def test_rll_equals_ce_on_a_single_class_map() -> None:
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 5, 10, 10, generator=gen)
    target = torch.full((2, 10, 10), 3, dtype=torch.long)
    torch.testing.assert_close(relaxed_label_loss(logits, target), cross_entropy(logits, target),
                               rtol=1e-6, atol=1e-6)


def test_rll_equals_ce_on_interior_pixels_away_from_boundaries() -> None:
    logits = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(9))
    target = _two_regions()
    rll, valid = _relaxed_label_loss_map(logits, target)
    ce = F.cross_entropy(logits, target, reduction="none")  # (1,H,W)
    interior = torch.ones(12, 12, dtype=torch.bool)
    interior[:, 5:7] = False  # the two columns touching the boundary
    assert valid.all()
    torch.testing.assert_close(rll[0][interior], ce[0][interior], rtol=1e-6, atol=1e-6)
    assert (rll[0][~interior] < ce[0][~interior]).all()  # Σ over a larger set of classes


def test_rll_lower_than_ce_where_the_neighbouring_class_is_predicted() -> None:
    target = _two_regions()
    logits = torch.zeros(1, 3, 12, 12)
    logits[:, 0] = 5.0
    logits[:, 0, :, 5] = -5.0
    logits[:, 1, :, 5] = 5.0  # the column left of the boundary (label 0) predicts its neighbour, class 1
    rll, _ = _relaxed_label_loss_map(logits, target)
    ce = F.cross_entropy(logits, target, reduction="none")
    assert (rll[0, :, 5] < 0.01).all() and (ce[0, :, 5] > 9.0).all()
    assert relaxed_label_loss(logits, target) < cross_entropy(logits, target)


def test_rll_strict_classes_keep_plain_ce() -> None:
    target = _two_regions()
    logits = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(10))
    ce = F.cross_entropy(logits, target, reduction="none")[0]
    relaxed, _ = _relaxed_label_loss_map(logits, target)
    strict, _ = _relaxed_label_loss_map(logits, target, strict_classes=[1])
    # pixels labelled with the strict class 1 (columns 6…) get exactly the CE, boundary included
    torch.testing.assert_close(strict[0][:, 6:], ce[:, 6:], rtol=1e-6, atol=1e-6)
    assert (relaxed[0][:, 6] < ce[:, 6]).all()
    # their class-0 neighbours stay relaxed (class 1 still belongs to N(x))
    torch.testing.assert_close(strict[0][:, :6], relaxed[0][:, :6])
    assert (strict[0][:, 5] < ce[:, 5]).all()


def test_rll_ignore_excluded_and_all_ignore_gives_zero_without_nan() -> None:
    target = _two_regions()
    target[:, :, 6] = IGNORE_INDEX  # an ignore column must not relax its neighbours towards anything
    logits = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(11), requires_grad=True)
    rll, valid = _relaxed_label_loss_map(logits, target)
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
    torch.testing.assert_close(rll[0][:, :6], ce[0][:, :6], rtol=1e-6, atol=1e-6)
    assert (rll[~valid] == 0).all()
    empty = relaxed_label_loss(logits, torch.full_like(target, IGNORE_INDEX))
    empty.backward()
    assert empty.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_rll_gradients_finite_with_extreme_logits() -> None:
    target = _two_regions()
    logits = (torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(12)) * 1e3).requires_grad_()
    loss = relaxed_label_loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- SegmentationLoss


def test_segmentation_loss_combines_main_and_weighted_aux_and_upsamples() -> None:
    gen = torch.Generator().manual_seed(13)
    target = _blocky_labels(gen, 2, 4, 32, 32, block=4)
    out = torch.randn(2, 4, 8, 8, generator=gen)  # stride-4 logits
    aux = torch.randn(2, 4, 16, 16, generator=gen)
    up = F.interpolate(out, size=(32, 32), mode="bilinear", align_corners=False)
    up_aux = F.interpolate(aux, size=(32, 32), mode="bilinear", align_corners=False)
    for main, fn in (("ce", cross_entropy), ("rmi", rmi_loss), ("rll", relaxed_label_loss)):
        total, parts = SegmentationLoss(main=main)({"out": out, "aux": aux}, target)
        want_main = fn(up, target).item()
        want_aux = cross_entropy(up_aux, target).item()
        assert parts["main"] == pytest.approx(want_main, rel=1e-5)
        assert parts["aux"] == pytest.approx(want_aux, rel=1e-5)
        assert total.item() == pytest.approx(want_main + 0.4 * want_aux, rel=1e-5, abs=1e-6)
        assert parts["total"] == pytest.approx(total.item())
        assert all(isinstance(v, float) for v in parts.values())


def test_segmentation_loss_without_aux_and_unknown_main() -> None:
    gen = torch.Generator().manual_seed(14)
    target = _blocky_labels(gen, 1, 3, 16, 16, block=4)
    out = torch.randn(1, 3, 16, 16, generator=gen)
    total, parts = SegmentationLoss("ce")({"out": out}, target)
    assert set(parts) == {"main", "total"}
    torch.testing.assert_close(total, cross_entropy(out, target))
    with pytest.raises(ValueError):
        SegmentationLoss("dice")  # type: ignore[arg-type]


@pytest.mark.parametrize("main", ["ce", "rll"])
def test_segmentation_loss_all_ignore_gives_zero_without_nan(main: str) -> None:
    out = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(15), requires_grad=True)
    aux = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(16), requires_grad=True)
    target = torch.full((2, 16, 16), IGNORE_INDEX, dtype=torch.long)
    total, parts = SegmentationLoss(main)({"out": out, "aux": aux}, target)
    total.backward()
    assert total.item() == 0.0 and parts == {"main": 0.0, "aux": 0.0, "total": 0.0}
    assert torch.isfinite(out.grad).all() and torch.isfinite(aux.grad).all()


def test_segmentation_loss_rmi_all_ignore_is_finite_with_zero_gradient() -> None:
    out = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(17), requires_grad=True)
    target = torch.full((2, 16, 16), IGNORE_INDEX, dtype=torch.long)
    total, parts = SegmentationLoss("rmi")({"out": out}, target)
    total.backward()
    assert math.isfinite(parts["total"])
    assert out.grad.abs().max() == 0
