"""Segmentation losses: cross-entropy, RMI (Zhao et al. 2019) and the relaxed label loss (Zhu et al. 2019).

- :func:`cross_entropy` — the plain term; mean over labelled pixels, 0 (with a graph) when none is.
- :func:`rmi_loss` — Region Mutual Information (Zhao et al., NeurIPS 2019) in the published setting:
  ``λ·BCE + (1−λ)·RMI`` with λ = 0.5. The denoiser Ω is trained with it (METHOD.md §2); so are the
  segmenters of the paper (supplementary 3.1), on the main head only in the OCR setting.
- :func:`relaxed_label_loss` — Zhu et al.'s (CVPR 2019) boundary relaxation, the ablation of Table 2
  (METHOD.md §7): near a boundary, predicting any class present in the 3×3 window is not penalised.
- :class:`SegmentationLoss` — the training objective: main term + 0.4 · cross-entropy on OCR's
  auxiliary (soft object region) head, logits resized to the label first.

All reductions run on the device, without host synchronisation except one check for failed
Cholesky factorisations in :func:`rmi_loss`. No loss here returns NaN for an all-ignore target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wrp.data import IGNORE_INDEX

__all__ = ["cross_entropy", "rmi_loss", "relaxed_label_loss", "SegmentationLoss"]

_CLIP_MIN = 1e-6  # added to the sigmoid probabilities before pooling (Zhao et al.'s code)
_JITTER_STEPS = 6  # extra jitter α·10^1 … α·10^6 tried when a Cholesky factorisation fails


def _check_shapes(logits: Tensor, target: Tensor) -> None:
    if logits.dim() != 4 or target.dim() != 3:
        raise ValueError(f"expected logits (B,K,H,W) and target (B,H,W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} do not match target {tuple(target.shape)}; "
                         "resize the logits first (SegmentationLoss does)")


def _one_hot(target: Tensor, num_classes: int, ignore_index: int) -> tuple[Tensor, Tensor]:
    """One-hot labels with ignore pixels all-zero: ((B,K,H,W) float, valid (B,H,W) bool)."""
    valid = target != ignore_index  # (B,H,W)
    safe = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe.long(), num_classes).permute(0, 3, 1, 2)  # (B,K,H,W)
    onehot = onehot * valid.unsqueeze(1)
    return onehot.to(torch.float32), valid


# --------------------------------------------------------------------------- cross-entropy


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Pixel-wise softmax cross-entropy, mean over non-ignored pixels.

    ``logits`` (B,K,H,W), ``target`` (B,H,W) int64. Unlike ``F.cross_entropy(reduction="mean")``,
    an all-ignore target gives 0 (still attached to the graph), never NaN.
    """
    _check_shapes(logits, target)
    total = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="sum")  # ()
    count = (target != ignore_index).sum().clamp_min(1)  # ()
    return total / count


# --------------------------------------------------------------------------- RMI


def _logdet_cholesky(mat: Tensor, jitter: float) -> Tensor:
    """log det of a batch of symmetric positive-definite matrices (..., d, d) via Cholesky.

    Matrices whose factorisation fails (round-off making them slightly indefinite) get extra jitter
    ``jitter·10^k·I`` (k = 1…6, cumulative); any still failing fall back to ``diag(max(diag, jitter))``
    of the original matrix, which is positive-definite, so the result and its gradient are always finite.
    """
    eye = torch.eye(mat.shape[-1], dtype=mat.dtype, device=mat.device)  # (d,d)
    orig = mat
    chol, info = torch.linalg.cholesky_ex(mat)  # (...,d,d), (...)
    if bool((info > 0).any()):  # one host sync; the common path stops here
        extra = jitter
        for _ in range(_JITTER_STEPS):
            extra *= 10.0
            bad = (info > 0)[..., None, None]  # (...,1,1)
            mat = torch.where(bad, mat + extra * eye, mat)
            chol, info = torch.linalg.cholesky_ex(mat)
            if not bool((info > 0).any()):
                break
        else:
            bad = (info > 0)[..., None, None]
            safe = torch.diag_embed(orig.diagonal(dim1=-2, dim2=-1).clamp_min(jitter))
            mat = torch.where(bad, safe, mat)
            chol, _ = torch.linalg.cholesky_ex(mat)
    diag = chol.diagonal(dim1=-2, dim2=-1)  # (...,d)
    return 2.0 * torch.log(diag.clamp_min(1e-300)).sum(dim=-1)  # (...)


def _region_vectors(x: Tensor, radius: int) -> Tensor:
    """(B,K,h,w) → (B,K,radius², N): the radius×radius neighbourhood of each point, from radius²
    shifted slices without padding (N = (h−radius+1)(w−radius+1))."""
    b, k, h, w = x.shape
    nh, nw = h - radius + 1, w - radius + 1
    slices = [x[:, :, dy:dy + nh, dx:dx + nw] for dy in range(radius) for dx in range(radius)]
    return torch.stack(slices, dim=2).reshape(b, k, radius * radius, nh * nw)


def _rmi_lower_bound(labels: Tensor, probs: Tensor, pool: int, radius: int, eps: float) -> Tensor:
    """RMI term of Zhao et al. (Eq. 13–15 of the paper): Σ_classes mean_batch 0.5·logdet(Σ+αI) / d.

    ``labels``, ``probs``: (B,K,H,W) float64, ignore pixels already zeroed.
    """
    if pool > 1:
        labels = F.avg_pool2d(labels, kernel_size=pool, stride=pool)  # (B,K,H/p,W/p)
        probs = F.avg_pool2d(probs, kernel_size=pool, stride=pool)
    if labels.shape[-2] < radius or labels.shape[-1] < radius:
        raise ValueError(f"RMI needs at least {radius}×{radius} pooled pixels, got "
                         f"{tuple(labels.shape[-2:])} after pooling by {pool}")
    d = radius * radius
    y = _region_vectors(labels, radius)  # (B,K,d,N)
    p = _region_vectors(probs, radius)  # (B,K,d,N)
    y = y - y.mean(dim=-1, keepdim=True)
    p = p - p.mean(dim=-1, keepdim=True)
    eye = torch.eye(d, dtype=y.dtype, device=y.device)  # (d,d)
    cov_y = y @ y.transpose(-2, -1)  # Σ_Y (B,K,d,d); no division by N: only a constant shift
    cov_p = p @ p.transpose(-2, -1)  # Σ_P
    cov_yp = y @ p.transpose(-2, -1)  # Σ_YP
    # posterior Σ = Σ_Y − Σ_YP (Σ_P + αI)⁻¹ Σ_YPᵀ   (B,K,d,d)
    post = cov_y - cov_yp @ torch.linalg.solve(cov_p + eps * eye, cov_yp.transpose(-2, -1))
    post = 0.5 * (post + post.transpose(-2, -1))  # symmetric up to round-off
    rmi = 0.5 * _logdet_cholesky(post + eps * eye, eps)  # (B,K)
    return (rmi.mean(dim=0) / d).sum()  # mean over batch, / d, sum over classes


def rmi_loss(
    logits: Tensor,
    target: Tensor,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    pool: int = 4,
    radius: int = 3,
    lambda_: float = 0.5,
    eps: float = 5e-4,
) -> Tensor:
    """Region Mutual Information loss (Zhao et al., NeurIPS 2019), published setting.

    ``λ · BCE(sigmoid(logits), one-hot) + (1 − λ) · RMI``. The BCE is summed over classes and
    averaged over non-ignored pixels. For RMI, one-hot labels and sigmoid probabilities (+1e-6,
    ignore pixels zeroed) are average-pooled (kernel = stride = ``pool``), every point's
    ``radius``×``radius`` region gives a d = radius² vector, and the lower bound on the mutual
    information gives ``0.5·logdet(Σ_Y − Σ_YP(Σ_P+αI)⁻¹Σ_YPᵀ + αI)`` per image and class (α = ``eps``),
    averaged over the batch, divided by d and summed over classes. Statistics are computed in
    float64 with autocast disabled. ``logits`` (B,K,H,W), ``target`` (B,H,W) int64 → scalar float32.

    The RMI part is not zero at its minimum: an image (or class) with nothing to predict contributes
    the constant ``0.5·log α`` per class, with zero gradient.
    """
    _check_shapes(logits, target)
    k = logits.shape[1] if num_classes is None else num_classes
    if k != logits.shape[1]:
        raise ValueError(f"num_classes={k} but logits have {logits.shape[1]} channels")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits32 = logits.float()  # (B,K,H,W)
        onehot, valid = _one_hot(target, k, ignore_index)  # (B,K,H,W), (B,H,W)
        mask = valid.unsqueeze(1).to(torch.float32)  # (B,1,H,W)
        # part I: sigmoid binary cross-entropy over labelled pixels
        bce = F.binary_cross_entropy_with_logits(logits32, onehot, weight=mask.expand_as(onehot),
                                                 reduction="sum")
        bce = bce / valid.sum().clamp_min(1)
        # part II: the RMI lower bound, in float64
        probs = torch.sigmoid(logits32).double() * mask.double() + _CLIP_MIN  # (B,K,H,W)
        rmi = _rmi_lower_bound(onehot.double(), probs, pool, radius, eps)
        return lambda_ * bce + (1.0 - lambda_) * rmi.float()


# --------------------------------------------------------------------------- relaxed label loss


def _relaxed_label_loss_map(
    logits: Tensor,
    target: Tensor,
    strict_classes: Sequence[int] = (),
    ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, Tensor]:
    """Per-pixel relaxed label loss (B,H,W) and the valid-pixel mask (B,H,W) bool."""
    _check_shapes(logits, target)
    k = logits.shape[1]
    logits32 = logits.float()  # (B,K,H,W)
    onehot, valid = _one_hot(target, k, ignore_index)  # (B,K,H,W), (B,H,W)
    # N(x): classes present in the 3×3 window (ignore excluded; max-pool pads with −inf)
    allowed = F.max_pool2d(onehot, kernel_size=3, stride=1, padding=1) > 0  # (B,K,H,W)
    if len(strict_classes) > 0:
        strict = torch.zeros(k, dtype=torch.bool, device=target.device)  # (K,)
        strict[torch.as_tensor(list(strict_classes), dtype=torch.long, device=target.device)] = True
        own = torch.where(valid, target, torch.zeros_like(target)).long()  # (B,H,W)
        is_strict = (strict[own] & valid).unsqueeze(1)  # (B,1,H,W)
        allowed = torch.where(is_strict, onehot > 0, allowed)
    # ignore pixels: allow everything, so their (masked-out) loss is 0 rather than huge
    allowed = allowed | ~valid.unsqueeze(1)
    neg = torch.finfo(logits32.dtype).min  # stands in for log 0 without producing 0·log 0 NaNs
    # −log Σ_{c∈N(x)} p_c(x) = logsumexp(logits) − logsumexp(logits over N(x))
    per_pixel = torch.logsumexp(logits32, dim=1) - torch.logsumexp(logits32.masked_fill(~allowed, neg), dim=1)
    return per_pixel * valid, valid


def relaxed_label_loss(
    logits: Tensor,
    target: Tensor,
    strict_classes: Sequence[int] = (),
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Boundary relaxed label loss (Zhu et al., CVPR 2019, Eq. 3), mean over non-ignored pixels.

    The target of pixel x is the set N(x) of classes in its 3×3 window; the loss is
    ``−log Σ_{c∈N(x)} p_c(x)``. A pixel whose own label is in ``strict_classes`` keeps the plain
    one-hot target (its loss is the cross-entropy). Away from boundaries this equals cross-entropy.
    ``logits`` (B,K,H,W), ``target`` (B,H,W) int64 → scalar; 0 when every pixel is ignored.
    """
    per_pixel, valid = _relaxed_label_loss_map(logits, target, strict_classes, ignore_index)
    return per_pixel.sum() / valid.sum().clamp_min(1)


# --------------------------------------------------------------------------- training objective


class SegmentationLoss(nn.Module):
    """Main loss on ``outputs["out"]`` + ``aux_weight`` · cross-entropy on ``outputs["aux"]``.

    ``main`` is ``"ce"``, ``"rmi"`` (Zhao et al.; main head only, as in the OCR setting) or ``"rll"``
    (Zhu et al.'s relaxed label loss, with ``strict_classes``). The auxiliary head is OCR's soft
    object region head (Yuan et al.), weighted 0.4. Logits at another resolution than the target are
    upsampled bilinearly (``align_corners=False``) first.
    """

    def __init__(
        self,
        main: Literal["ce", "rmi", "rll"] = "ce",
        aux_weight: float = 0.4,
        ignore_index: int = IGNORE_INDEX,
        strict_classes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if main not in ("ce", "rmi", "rll"):
            raise ValueError(f"unknown main loss {main!r}; expected 'ce', 'rmi' or 'rll'")
        self.main = main
        self.aux_weight = float(aux_weight)
        self.ignore_index = int(ignore_index)
        self.strict_classes = tuple(int(c) for c in strict_classes)

    def extra_repr(self) -> str:
        return (f"main={self.main!r}, aux_weight={self.aux_weight}, ignore_index={self.ignore_index}, "
                f"strict_classes={self.strict_classes}")

    @staticmethod
    def _resize(logits: Tensor, target: Tensor) -> Tensor:
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=tuple(target.shape[-2:]), mode="bilinear",
                                   align_corners=False)
        return logits  # (B,K,H,W) at the target's resolution

    def _main_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.main == "rmi":
            return rmi_loss(logits, target, ignore_index=self.ignore_index)
        if self.main == "rll":
            return relaxed_label_loss(logits, target, self.strict_classes, self.ignore_index)
        return cross_entropy(logits, target, self.ignore_index)

    def forward(self, outputs: dict[str, Tensor], target: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``outputs["out"]`` (B,K,h,w) and optional ``outputs["aux"]`` (B,K,h',w'); ``target`` (B,H,W).

        Returns the total loss (scalar, with graph) and ``{"main", ["aux"], "total"}`` as floats.
        """
        main = self._main_loss(self._resize(outputs["out"], target), target)
        total = main
        parts = {"main": main}
        aux_logits = outputs.get("aux")
        if aux_logits is not None and self.aux_weight != 0.0:
            aux = cross_entropy(self._resize(aux_logits, target), target, self.ignore_index)
            total = total + self.aux_weight * aux
            parts["aux"] = aux
        parts["total"] = total
        return total, {name: float(value.detach()) for name, value in parts.items()}

