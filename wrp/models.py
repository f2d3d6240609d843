"""Segmentation models of Table 1: DeepLabV3, OCRNet and MSA-HRNet-OCR on timm backbones.

The paper (Ganeshan et al., ICCV 2021, METHOD.md §5–§6) trains three segmentation models on the
generated labels — DeepLabV3 (ResNeXt-50), OCRNet (ResNeXt-50) and MSA-HRNet-OCR (HRNet-W48) — and
the denoiser Ω (§2) consumes the **OCR features** of the frozen baseline ``g_ψ``. Every model's
``forward(x)`` with ``x`` (B, 3, H, W) returns a dict:

- ``"out"``: (B, K, H, W) class logits, bilinearly upsampled (align_corners=False) to the input;
- ``"aux"``: (B, K, H, W) auxiliary logits (OCR: the soft-object-region head; DeepLabV3: an FCN
  head on the stage-3 features), for the ``main + 0.4 · aux`` loss;
- ``"ocr"``: (B, C, h, w) the OCR features at feature resolution (OCR models only; ``C`` is the
  model's ``ocr_channels``).

Backbones come from ``timm`` with ``features_only=True``. Weights are never fetched silently:
``pretrained=False`` always works; ``pretrained=True`` asks timm (local cache or hub) and raises a
clear :class:`RuntimeError` when the weights cannot be had; ``pretrained=<path>`` loads a local
timm checkpoint of the backbone. Plain :class:`torch.nn.BatchNorm2d` everywhere — the training
engine converts to SyncBatchNorm where it runs distributed.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wrp.data import NUM_CLASSES

__all__ = [
    "ARCHS",
    "PAPER_BACKBONES",
    "SMALL_BACKBONES",
    "SMALL_OCR_KWARGS",
    "ASPP",
    "DeepLabV3",
    "DilatedFeatures",
    "HRNetFeatures",
    "MSAHRNetOCR",
    "OCRHead",
    "OCRNet",
    "build_model",
    "create_backbone",
    "count_parameters",
    "model_kwargs",
    "normalise",
    "ocr_features",
    "segment",
    "CachedSegmenter",
]

ARCHS: tuple[str, ...] = ("deeplabv3", "ocrnet", "msa_hrnet_ocr")
#: The backbones of Table 1 (supplementary 3.1).
PAPER_BACKBONES: dict[str, str] = {
    "deeplabv3": "resnext50_32x4d",
    "ocrnet": "resnext50_32x4d",
    "msa_hrnet_ocr": "hrnet_w48",
}
#: Small stand-ins for the CPU profiles.
SMALL_BACKBONES: dict[str, str] = {
    "deeplabv3": "resnet18",
    "ocrnet": "resnet18",
    "msa_hrnet_ocr": "hrnet_w18_small",
}
#: Narrower OCR head for the small variants (pass as ``**kwargs`` to :func:`build_model`).
SMALL_OCR_KWARGS: dict[str, int] = {"ocr_mid": 128, "ocr_key": 64}
#: Every network here sees images normalised with the ImageNet statistics (:func:`normalise`).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PretrainedArg = bool | str | os.PathLike


# ----------------------------------------------------------------------------------------- helpers

def _up(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize (align_corners=False) to ``size`` = (h, w); a no-op when already there."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv (no bias) → BatchNorm → ReLU, 'same' padding."""
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _is_hrnet(name: str) -> bool:
    return name.split(".")[0].startswith("hrnet")


@contextlib.contextmanager
def _hub_offline_unless_allowed() -> Iterator[None]:
    """Keep huggingface_hub to its local cache unless ``WRP_ALLOW_DOWNLOAD=1`` is set.

    Cached weights load; missing ones fail at once instead of after ~50 s of retries on a machine
    without internet. Set ``WRP_ALLOW_DOWNLOAD=1`` where downloading weights is wanted.
    """
    try:
        from huggingface_hub import constants as hf_constants
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        yield
        return
    previous = getattr(hf_constants, "HF_HUB_OFFLINE", None)
    if previous or os.environ.get("WRP_ALLOW_DOWNLOAD") == "1":
        yield
        return
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = previous


def create_backbone(name: str, pretrained: PretrainedArg = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, features_only=True, **kwargs)`` with explicit weight handling.

    ``pretrained``: ``False`` (random init, always works offline), ``True`` (timm's ImageNet
    weights from the local cache or the hub; :class:`RuntimeError` if they cannot be had), or the
    path of a local timm checkpoint of the backbone (classification weights; the head is dropped).
    """
    if not timm.is_model(name):
        raise ValueError(f"unknown timm backbone {name!r} (see timm.list_models())")
    if pretrained is False or pretrained is None:
        return timm.create_model(name, features_only=True, pretrained=False, **kwargs)
    if not isinstance(pretrained, bool):  # a local checkpoint file
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"backbone checkpoint {str(path)!r} does not exist")
        return timm.create_model(name, features_only=True, pretrained=True,
                                 pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    try:
        with _hub_offline_unless_allowed():
            return timm.create_model(name, features_only=True, pretrained=True, **kwargs)
    except Exception as err:
        raise RuntimeError(
            f"pretrained weights for the timm backbone {name!r} cannot be downloaded here (they are not "
            f"in the local cache; set WRP_ALLOW_DOWNLOAD=1 where downloads are possible): "
            f"{type(err).__name__}: {str(err)[:200]}. "
            "Pass pretrained=False, or pretrained=<path to a local timm checkpoint of the backbone>."
        ) from err


class HRNetFeatures(nn.Module):
    """HRNet backbone as used for segmentation (Wang et al.; HRNet-OCR, Yuan et al.).

    Runs timm's HRNet with ``features_only=True, feature_location=''`` (the raw four branches, not
    the classification "incre" modules) and concatenates the branches upsampled to the highest
    resolution (stride 4): 48+96+192+384 = 720 channels for HRNet-W48.
    """

    def __init__(self, name: str = "hrnet_w48", pretrained: PretrainedArg = False) -> None:
        super().__init__()
        self.body = create_backbone(name, pretrained, feature_location="", out_indices=(1, 2, 3, 4))
        self.out_channels = int(sum(self.body.feature_info.channels()))
        self.stride = int(self.body.feature_info.reduction()[0])

    def forward(self, x: Tensor) -> Tensor:
        feats = self.body(x)  # 4 × (B, C_i, H/4/2^i, W/4/2^i)
        size = feats[0].shape[-2:]
        return torch.cat([feats[0]] + [_up(f, size) for f in feats[1:]], dim=1)  # (B, ΣC_i, H/4, W/4)


class DilatedFeatures(nn.Module):
    """ResNet-style timm backbone at a reduced output stride (dilated last stages).

    Returns the last stage, and the one before it for an auxiliary head.
    """

    def __init__(self, name: str = "resnext50_32x4d", pretrained: PretrainedArg = False,
                 output_stride: int = 8) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        try:
            self.body = create_backbone(name, pretrained, output_stride=output_stride)
        except TypeError as err:
            raise ValueError(f"timm backbone {name!r} does not support output_stride "
                             f"({err}); use a ResNet-family backbone") from err
        channels = self.body.feature_info.channels()
        self.out_channels = int(channels[-1])
        self.aux_channels = int(channels[-2])
        self.stride = int(self.body.feature_info.reduction()[-1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.body(x)
        return feats[-2], feats[-1]  # (B, C3, H/os, W/os), (B, C4, H/os, W/os)


# --------------------------------------------------------------------------------------- DeepLabV3

class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017, DeepLabV3).

    A 1×1 branch, three 3×3 atrous branches and an image-pooling branch, each to ``out_channels``,
    concatenated and projected by 1×1 conv-BN-ReLU (+ dropout, as torchvision).
    """

    def __init__(self, in_channels: int, rates: Sequence[int] = (12, 24, 36), out_channels: int = 256,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, out_channels, 1)]
            + [_conv_bn_relu(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        # Image pooling: global average → 1×1 conv-BN-ReLU (needs > 1 image per BN batch in training).
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv_bn_relu(in_channels, out_channels, 1))
        self.project = nn.Sequential(
            _conv_bn_relu(out_channels * (len(rates) + 2), out_channels, 1), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        outs = [b(x) for b in self.branches]  # each (B, 256, h, w)
        outs.append(self.pool(x).expand(-1, -1, *size))  # (B, 256, h, w)
        return self.project(torch.cat(outs, dim=1))  # (B, 256, h, w)


class DeepLabV3(nn.Module):
    """DeepLabV3 (Chen et al. 2017), one of the three models of Table 1 (ResNeXt-50 there).

    ASPP on the last backbone stage (rates 12/24/36 at output stride 8, 6/12/18 at 16), a
    3×3 conv-BN-ReLU and a 1×1 classifier (torchvision's DeepLabHead); an FCN auxiliary head on
    the stage-3 features gives ``"aux"``.
    """

    def __init__(self, backbone: str = "resnext50_32x4d", num_classes: int = NUM_CLASSES,
                 pretrained: PretrainedArg = False, output_stride: int = 8, aspp_channels: int = 256,
                 aux: bool = True) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"DeepLabV3 output_stride must be 8 or 16, got {output_stride}")
        self.num_classes = num_classes
        self.backbone = DilatedFeatures(backbone, pretrained, output_stride)
        rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
        self.head = nn.Sequential(
            ASPP(self.backbone.out_channels, rates, aspp_channels),
            _conv_bn_relu(aspp_channels, aspp_channels, 3),
            nn.Conv2d(aspp_channels, num_classes, 1),
        )
        self.aux_head: nn.Module | None = None
        if aux:
            mid = max(self.backbone.aux_channels // 4, 32)
            self.aux_head = nn.Sequential(
                _conv_bn_relu(self.backbone.aux_channels, mid, 3), nn.Dropout(0.1),
                nn.Conv2d(mid, num_classes, 1),
            )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        c3, c4 = self.backbone(x)  # (B, C3, h, w), (B, C4, h, w)
        out = {"out": _up(self.head(c4), size)}  # (B, K, H, W)
        if self.aux_head is not None:
            out["aux"] = _up(self.aux_head(c3), size)  # (B, K, H, W)
        return out


# ---------------------------------------------------------------------------------------------- OCR

class SpatialGather(nn.Module):
    """Soft object regions (Yuan et al. 2020): softmax of the aux logits over space, pooled features."""

    def forward(self, feats: Tensor, probs: Tensor) -> Tensor:
        B, K = probs.shape[:2]
        probs = F.softmax(probs.reshape(B, K, -1), dim=2)  # (B, K, HW), softmax over space
        feats = feats.reshape(B, feats.shape[1], -1).transpose(1, 2)  # (B, HW, C)
        regions = torch.bmm(probs, feats)  # (B, K, C)
        return regions.transpose(1, 2).unsqueeze(-1)  # (B, C, K, 1)


class ObjectAttention(nn.Module):
    """Pixel–region attention of OCR (Yuan et al. 2020): query pixels, key/value regions."""

    def __init__(self, mid: int = 512, key: int = 256) -> None:
        super().__init__()
        self.key = key
        self.f_pixel = nn.Sequential(_conv_bn_relu(mid, key), _conv_bn_relu(key, key))  # query
        self.f_object = nn.Sequential(_conv_bn_relu(mid, key), _conv_bn_relu(key, key))  # key
        self.f_down = _conv_bn_relu(mid, key)  # value
        self.f_up = _conv_bn_relu(key, mid)

    def forward(self, x: Tensor, regions: Tensor) -> Tensor:
        B, _, H, W = x.shape
        q = self.f_pixel(x).reshape(B, self.key, -1).transpose(1, 2)  # (B, HW, key)
        k = self.f_object(regions).reshape(B, self.key, -1)  # (B, key, K)
        v = self.f_down(regions).reshape(B, self.key, -1).transpose(1, 2)  # (B, K, key)
        sim = F.softmax(torch.bmm(q, k) / math.sqrt(self.key), dim=-1)  # (B, HW, K), over regions
        ctx = torch.bmm(sim, v).transpose(1, 2).reshape(B, self.key, H, W)  # (B, key, H, W)
        return self.f_up(ctx)  # (B, mid, H, W)


class OCRHead(nn.Module):
    """Object-contextual representations head (Yuan et al., ECCV 2020), COMPONENTS.md "OCR head".

    On backbone features (B, C_in, h, w): the aux head (1×1 conv-BN-ReLU, 1×1 to K) gives soft
    object regions; pixel features are a 3×3 conv-BN-ReLU to ``ocr_mid``; SpatialGather pools K
    region vectors; object attention gives a context per pixel; [context, pixels] → 1×1 conv-BN-
    ReLU + Dropout2d(0.05) = **the OCR features** (B, ocr_mid, h, w); a 1×1 classifier gives K.
    Returns ``(logits, aux_logits, ocr_features)``, all at feature resolution.
    """

    def __init__(self, in_channels: int, num_classes: int = NUM_CLASSES, ocr_mid: int = 512,
                 ocr_key: int = 256, dropout: float = 0.05) -> None:
        super().__init__()
        self.out_channels = ocr_mid
        self.aux_head = nn.Sequential(
            _conv_bn_relu(in_channels, ocr_mid, 1), nn.Conv2d(ocr_mid, num_classes, 1)
        )
        self.pixel = _conv_bn_relu(in_channels, ocr_mid, 3)
        self.gather = SpatialGather()
        self.attention = ObjectAttention(ocr_mid, ocr_key)
        self.fuse = nn.Sequential(_conv_bn_relu(2 * ocr_mid, ocr_mid, 1), nn.Dropout2d(dropout))
        self.cls = nn.Conv2d(ocr_mid, num_classes, 1)

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        aux = self.aux_head(feats)  # (B, K, h, w)
        pixels = self.pixel(feats)  # (B, mid, h, w)
        regions = self.gather(pixels, aux)  # (B, mid, K, 1)
        context = self.attention(pixels, regions)  # (B, mid, h, w)
        ocr = self.fuse(torch.cat([context, pixels], dim=1))  # (B, mid, h, w)
        return self.cls(ocr), aux, ocr  # (B, K, h, w), (B, K, h, w), (B, mid, h, w)


def _make_features(backbone: str, pretrained: PretrainedArg, output_stride: int | None) -> nn.Module:
    """HRNet: concatenated branches at stride 4; ResNet-style: the last stage at ``output_stride``."""
    if _is_hrnet(backbone):
        if output_stride is not None:
            raise ValueError("output_stride does not apply to HRNet backbones (they keep stride 4)")
        return HRNetFeatures(backbone, pretrained)
    return DilatedFeatures(backbone, pretrained, 8 if output_stride is None else output_stride)


class OCRNet(nn.Module):
    """OCRNet (Yuan et al. 2020), one of the three models of Table 1 (ResNeXt-50 there).

    ResNet-style backbones feed their last stage at output stride 8 (``output_stride``) to the
    :class:`OCRHead`; HRNet backbones feed all branches concatenated at stride 4 (HRNet-OCR).
    """

    def __init__(self, backbone: str = "resnext50_32x4d", num_classes: int = NUM_CLASSES,
                 pretrained: PretrainedArg = False, ocr_mid: int = 512, ocr_key: int = 256,
                 output_stride: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.is_hrnet = _is_hrnet(backbone)
        self.backbone = _make_features(backbone, pretrained, output_stride)
        self.ocr = OCRHead(self.backbone.out_channels, num_classes, ocr_mid, ocr_key)
        self.ocr_channels = ocr_mid

    def _features(self, x: Tensor) -> Tensor:
        if self.is_hrnet:  # HRNet fuses branches at 1/4 … 1/32: every side must divide by 32
            H, W = x.shape[-2:]
            x = _up(x, (-(-H // 32) * 32, -(-W // 32) * 32))  # the heads resize back to (H, W)
            return self.backbone(x)
        return self.backbone(x)[1]  # (B, C, h, w)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        logits, aux, ocr = self.ocr(self._features(x))
        return {"out": _up(logits, size), "aux": _up(aux, size), "ocr": ocr}


# ----------------------------------------------------------------------- MSA-HRNet-OCR (Tao et al.)

class MSAHRNetOCR(OCRNet):
    """HRNet-OCR with hierarchical multi-scale attention (Tao et al. 2020); HRNet-W48 in Table 1.

    An attention head (3×3 conv-BN-ReLU ×2, 1×1 → 1, sigmoid) predicts ONE weight per pixel from
    each scale's OCR features. Scales are fused on the logits from the largest down::

        pred = logits_s1                                         (largest scale, resized)
        s ≥ 1:  pred = a_s · logits_s + (1 − a_s) · down(pred)
        s < 1:  pred = up(a_s · logits_s) + (1 − up(a_s)) · pred

    so training (scales 0.5, 1.0) gives ``a·up(logits_0.5) + (1−a)·logits_1.0`` with ``a`` the
    attention of the lower scale, and inference (``eval()``, scales 2.0, 1.0, 0.5) fuses
    2.0 → 1.0 → 0.5. As in Tao et al.'s code, each scale's logits and attention are first
    upsampled to that scale's input size, so the fusion happens at image resolution and the 2.0
    scale keeps its finer detail (thin poles and signs). ``"aux"`` is fused the same way; ``"ocr"``
    is the 1.0 scale's OCR features (at its feature resolution). ``last_scales`` records the
    scales of the latest forward.
    """

    def __init__(self, backbone: str = "hrnet_w48", num_classes: int = NUM_CLASSES,
                 pretrained: PretrainedArg = False, train_scales: Sequence[float] = (0.5, 1.0),
                 infer_scales: Sequence[float] = (0.5, 1.0, 2.0), ocr_mid: int = 512, ocr_key: int = 256,
                 attn_mid: int | None = None, output_stride: int | None = None) -> None:
        super().__init__(backbone, num_classes, pretrained, ocr_mid, ocr_key, output_stride)
        self.train_scales = self._check_scales(train_scales)
        self.infer_scales = self._check_scales(infer_scales)
        attn_mid = ocr_key if attn_mid is None else attn_mid  # 256 in Tao et al.'s code
        self.attn_head = nn.Sequential(
            _conv_bn_relu(ocr_mid, attn_mid, 3), _conv_bn_relu(attn_mid, attn_mid, 3),
            nn.Conv2d(attn_mid, 1, 1, bias=False), nn.Sigmoid(),
        )
        self.last_scales: tuple[float, ...] = ()

    @staticmethod
    def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
        scales = tuple(sorted({float(s) for s in scales}, reverse=True))
        if 1.0 not in scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive and include 1.0, got {scales}")
        return scales

    def _single_scale(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        logits, aux, ocr = self.ocr(self._features(x))  # (B, K, h, w) ×2, (B, mid, h, w)
        return logits, aux, ocr, self.attn_head(ocr)  # attention (B, 1, h, w)

    def forward(self, x: Tensor, scales: Sequence[float] | None = None) -> dict[str, Tensor]:
        """``scales`` overrides the mode's default (``train_scales`` / ``infer_scales``)."""
        if scales is None:
            scales = self.train_scales if self.training else self.infer_scales
        else:
            scales = self._check_scales(scales)
        self.last_scales = tuple(scales)
        H, W = x.shape[-2:]
        pred = aux = ocr_1x = None
        for s in scales:  # largest first
            size = (max(1, round(H * s)), max(1, round(W * s)))
            logits, aux_s, ocr, attn = self._single_scale(x if s == 1.0 else _up(x, size))
            if s == 1.0:
                ocr_1x = ocr
            # this scale's logits and attention at its own input size: (B, K | 1, H·s, W·s)
            logits, aux_s, attn = _up(logits, size), _up(aux_s, size), _up(attn, size)
            if pred is None:
                pred, aux = logits, aux_s
            elif s >= 1.0:  # the larger scales' fused prediction, shrunk to this one
                pred = attn * logits + (1 - attn) * _up(pred, size)
                aux = attn * aux_s + (1 - attn) * _up(aux, size)
            else:  # a smaller scale, weighted by its attention and grown to the fused size
                fused = pred.shape[-2:]
                attn_up = _up(attn, fused)
                pred = _up(attn * logits, fused) + (1 - attn_up) * pred
                aux = _up(attn * aux_s, fused) + (1 - attn_up) * aux
        assert pred is not None and aux is not None and ocr_1x is not None  # 1.0 is always a scale
        return {"out": _up(pred, (H, W)), "aux": _up(aux, (H, W)), "ocr": ocr_1x}  # (B, K, H, W)


# ----------------------------------------------------------------------------------------- factory

_CLASSES: dict[str, type[nn.Module]] = {
    "deeplabv3": DeepLabV3,
    "ocrnet": OCRNet,
    "msa_hrnet_ocr": MSAHRNetOCR,
}


def build_model(arch: str, num_classes: int = NUM_CLASSES, backbone: str | None = None,
                pretrained: PretrainedArg = False, **kwargs: Any) -> nn.Module:
    """One of the three segmentation models of Table 1 (METHOD.md §6).

    ``arch``: "deeplabv3", "ocrnet" or "msa_hrnet_ocr"; ``backbone`` defaults to the paper's
    (:data:`PAPER_BACKBONES`); :data:`SMALL_BACKBONES` (+ :data:`SMALL_OCR_KWARGS`) are the CPU
    stand-ins. Extra ``kwargs`` go to the model class (e.g. ``output_stride``, ``ocr_mid``).
    """
    key = arch.lower().replace("-", "_")
    if key not in _CLASSES:
        raise ValueError(f"unknown arch {arch!r}; accepted: {', '.join(ARCHS)}")
    return _CLASSES[key](backbone=backbone or PAPER_BACKBONES[key], num_classes=num_classes,
                         pretrained=pretrained, **kwargs)


def model_kwargs(arch: str, small: bool, backbone: str | None = None) -> dict[str, Any]:
    """The :func:`build_model` keywords of ``arch`` at the paper's size, or (``small``) the CPU
    stand-in: :data:`SMALL_BACKBONES`, the narrower OCR head, DeepLabV3 at output stride 16
    (3× faster on a CPU than 8). ``backbone`` replaces the size's backbone."""
    kwargs: dict[str, Any] = {"arch": arch,
                              "backbone": backbone or (SMALL_BACKBONES[arch] if small else None)}
    if small and arch != "deeplabv3":
        kwargs.update(SMALL_OCR_KWARGS)
    if small and arch == "deeplabv3":
        kwargs.update(output_stride=16)
    return kwargs


# ------------------------------------------------------------------------------ g_ψ's inference
def normalise(image: Tensor) -> Tensor:
    """RGB 0..255, (3, H, W) or (B, 3, H, W) → float32 normalised with the ImageNet statistics:
    the input of every network here, in training and at inference."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=image.device).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` (unwrapped from DDP) in eval mode without gradients; its mode is restored after."""
    net = model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            yield net
    finally:
        net.train(was_training)


def _single_scale(net: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """One forward at the input's own scale (:class:`MSAHRNetOCR`: its 1.0 scale only)."""
    return net(x, scales=(1.0,)) if isinstance(net, MSAHRNetOCR) else net(x)


def segment(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor | None]:
    """``g_ψ``'s one inference path, shared by evaluation, the semantic-only policy, warp-inpaint
    and Ω's features: (B, 3, H, W) RGB 0..255 → class probabilities (B, K, H, W) at the images'
    size and the OCR features (B, C, h, w) (``None`` for a model without an OCR head).

    Single scale — :class:`MSAHRNetOCR` runs its 1.0 scale — in eval mode, on the model's device.
    """
    with _evaluating(model) as net:
        param = next(net.parameters())
        x = normalise(images.to(param.device))
        out = _single_scale(net, x)
        probs = F.interpolate(out["out"], size=x.shape[-2:], mode="bilinear", align_corners=False)
        return probs.softmax(1), out.get("ocr")


def ocr_features(model: nn.Module, images: Tensor) -> Tensor:
    """The OCR features (B, C, h, w) of the frozen ``g_ψ`` that the denoiser Ω consumes (§2), for
    *normalised* images; as :func:`segment` computes them."""
    with _evaluating(model) as net:
        if not hasattr(net, "ocr_channels"):
            raise ValueError(f"{type(net).__name__} has no OCR head; use 'ocrnet' or 'msa_hrnet_ocr'")
        param = next(net.parameters(), None)
        if param is not None:
            images = images.to(device=param.device, dtype=param.dtype)
        return _single_scale(net, images)["ocr"]  # (B, C, h, w)


class CachedSegmenter:
    """``g_ψ`` as the per-frame segmenter of warp-inpaint (RGB uint8 (H, W, 3) → (H, W) train ids),
    with a memo so a frame visited by several cycles is predicted once; :meth:`outputs` gives the
    policies a batch's probabilities and OCR features. Both go through :func:`segment`."""

    def __init__(self, model: nn.Module, device: str = "cpu", memo: int = 64) -> None:
        self.model, self.device, self.memo = model.to(device).eval(), device, memo
        self._cache: dict[bytes, np.ndarray] = {}

    def outputs(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, 3, H, W) RGB 0..255 → class probabilities (B, K, H, W) and OCR features (or None)."""
        return segment(self.model, images)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        key = hashlib.sha1(image.tobytes()).digest()
        if key not in self._cache:
            if len(self._cache) >= self.memo:
                self._cache.pop(next(iter(self._cache)))
            probs, _ = self.outputs(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])
            self._cache[key] = probs[0].argmax(0).to(torch.uint8).cpu().numpy()
        return self._cache[key]
