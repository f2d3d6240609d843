"""Tests of wrp.models: the three segmentation models of Table 1 and their OCR features (METHOD.md §2, §6)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from wrp.data import NUM_CLASSES
from wrp.models import (
    ARCHS,
    PAPER_BACKBONES,
    SMALL_BACKBONES,
    SMALL_OCR_KWARGS,
    DeepLabV3,
    MSAHRNetOCR,
    OCRNet,
    build_model,
    count_parameters,
    ocr_features,
)

B, H, W = 2, 64, 128


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(B, 3, H, W)


def small(arch: str, **kwargs) -> torch.nn.Module:
    return build_model(arch, backbone=SMALL_BACKBONES[arch], **kwargs)


# ------------------------------------------------------------------------------------------ shapes

@pytest.mark.parametrize("arch,kwargs,ocr_ch,ocr_stride", [
    ("deeplabv3", {}, None, None),
    ("deeplabv3", {"output_stride": 16}, None, None),
    ("ocrnet", {}, 512, 8),
    ("ocrnet", SMALL_OCR_KWARGS, 128, 8),
    ("msa_hrnet_ocr", SMALL_OCR_KWARGS, 128, 4),
])
@pytest.mark.parametrize("train", [True, False])
def test_output_shapes(arch, kwargs, ocr_ch, ocr_stride, train, images):
    model = small(arch, **kwargs).train(train)
    out = model(images)
    assert out["out"].shape == (B, NUM_CLASSES, H, W)
    assert out["aux"].shape == (B, NUM_CLASSES, H, W)
    if ocr_ch is None:
        assert "ocr" not in out
    else:
        assert out["ocr"].shape == (B, ocr_ch, H // ocr_stride, W // ocr_stride)
        assert model.ocr_channels == ocr_ch
    assert all(torch.isfinite(v).all() for v in out.values())


def test_num_classes_and_odd_input_size():
    model = small("ocrnet", num_classes=5, **SMALL_OCR_KWARGS).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 48, 72))
    assert out["out"].shape == (1, 5, 48, 72) and out["aux"].shape == (1, 5, 48, 72)


def test_deeplab_aspp_rates_follow_output_stride():
    for os_, rates in ((8, (12, 24, 36)), (16, (6, 12, 18))):
        model = DeepLabV3("resnet18", output_stride=os_)
        aspp = model.head[0]
        assert tuple(b[0].dilation[0] for b in aspp.branches[1:]) == rates
        assert aspp.branches[0][0].out_channels == 256
        assert model.backbone.stride == os_
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabV3("resnet18", output_stride=32)


def test_hrnet_features_concatenate_all_branches(images):
    model = small("msa_hrnet_ocr")
    assert model.backbone.out_channels == 16 + 32 + 64 + 128  # hrnet_w18_small branches
    feats = model.backbone(images)
    assert feats.shape == (B, model.backbone.out_channels, H // 4, W // 4)


def test_ocrnet_on_hrnet_backbone(images):
    model = OCRNet("hrnet_w18_small", ocr_mid=32, ocr_key=16).eval()
    with torch.no_grad():
        out = model(images)
    assert out["ocr"].shape == (B, 32, H // 4, W // 4)
    with pytest.raises(ValueError, match="HRNet"):
        OCRNet("hrnet_w18_small", output_stride=8)


# -------------------------------------------------------------------------------- multi-scale (MSA)

def _count_backbone_calls(model: MSAHRNetOCR) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    model.backbone.register_forward_hook(lambda m, args, out: sizes.append(tuple(args[0].shape[-2:])))
    return sizes


def test_msa_scales_train_two_eval_three(images):
    model = small("msa_hrnet_ocr", **SMALL_OCR_KWARGS)
    sizes = _count_backbone_calls(model)
    model.train()(images)
    assert sorted(sizes) == [(H // 2, W // 2), (H, W)]
    assert sorted(model.last_scales) == [0.5, 1.0]
    sizes.clear()
    with torch.no_grad():
        model.eval()(images)
    assert sorted(sizes) == [(H // 2, W // 2), (H, W), (2 * H, 2 * W)]
    assert sorted(model.last_scales) == [0.5, 1.0, 2.0]
    with pytest.raises(ValueError, match="1.0"):
        MSAHRNetOCR("hrnet_w18_small", train_scales=(0.5, 0.75))


def test_msa_attention_is_one_weight_per_pixel(images):
    model = small("msa_hrnet_ocr", **SMALL_OCR_KWARGS).eval()
    with torch.no_grad():
        *_, attn = model._single_scale(images)
    assert attn.shape == (B, 1, H // 4, W // 4)
    assert ((attn >= 0) & (attn <= 1)).all()


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def test_msa_fusion_matches_tao_et_al(images):
    """out = a·up(logits_0.5) + (1−a)·logits_1.0 (training pair); 2.0 → 1.0 → 0.5 at inference,
    each scale's logits and attention first brought to that scale's input size."""
    model = small("msa_hrnet_ocr", **SMALL_OCR_KWARGS).eval()
    half, full, double = (H // 2, W // 2), (H, W), (2 * H, 2 * W)
    with torch.no_grad():
        l1, aux1, ocr1, a1 = (_up(t, full) if i != 2 else t
                              for i, t in enumerate(model._single_scale(images)))
        lh, _, _, ah = (_up(t, half) for t in model._single_scale(_up(images, half)))
        l2, _, _, a2 = (_up(t, double) for t in model._single_scale(_up(images, double)))
        two = _up(ah * lh, full) + (1 - _up(ah, full)) * l1
        out = model(images, scales=(0.5, 1.0))
        torch.testing.assert_close(out["out"], two)
        torch.testing.assert_close(out["ocr"], ocr1)
        p = a1 * l1 + (1 - a1) * _up(l2, full)
        three = _up(ah * lh, full) + (1 - _up(ah, full)) * p
        out3 = model(images)
        torch.testing.assert_close(out3["out"], three)
        torch.testing.assert_close(out3["ocr"], ocr1)


def test_msa_keeps_detail_of_the_larger_scale_finer_than_the_feature_grid(images):
    """At the 2.0 scale one stride-4 feature cell covers 2 image pixels. A thin stripe seen there
    must come out about 2 pixels wide, not smeared over the 1.0 scale's 4-pixel grid."""
    model = small("msa_hrnet_ocr", **SMALL_OCR_KWARGS).eval()

    def fake(x):  # stride-4 outputs; class 0 everywhere, class 1 on one column at the 2.0 scale
        h, w = x.shape[-2] // 4, x.shape[-1] // 4
        logits = torch.zeros(1, NUM_CLASSES, h, w)
        logits[:, 0] = 4.0
        if x.shape[-1] == 2 * W:
            logits[:, 1, :, 8] = 7.0  # image columns 16–17 at 1.0; half of it on a 4-px cell loses
        zero = torch.zeros(1, 1, h, w)  # attention 0: every scale defers to the larger one
        return logits, logits, zero, zero

    model._single_scale = fake
    with torch.no_grad():
        out = model(images[:1], scales=(1.0, 2.0))["out"][0].argmax(0)
    columns = out.eq(1).any(0).nonzero().flatten().tolist()
    assert columns and 15 <= min(columns) and max(columns) <= 18 and len(columns) <= 3, columns


# ------------------------------------------------------------------------------------------ training

@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_the_backbone(arch, images):
    model = small(arch, **({} if arch == "deeplabv3" else SMALL_OCR_KWARGS)).train()
    target = torch.randint(0, NUM_CLASSES, (B, H, W))
    out = model(images)
    loss = F.cross_entropy(out["out"], target) + 0.4 * F.cross_entropy(out["aux"], target)
    loss.backward()
    first = next(model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    if arch == "msa_hrnet_ocr":
        assert model.attn_head[-2].weight.grad.abs().sum() > 0


# -------------------------------------------------------------------------------------- OCR features

def test_ocr_features_eval_no_grad_and_restores_mode(images):
    model = small("msa_hrnet_ocr", **SMALL_OCR_KWARGS).train()
    feats = ocr_features(model, images)
    assert feats.shape == (B, 128, H // 4, W // 4)
    assert not feats.requires_grad
    assert model.training  # restored
    with torch.no_grad():
        full = model.eval()(images)["ocr"]  # the three-scale pass gives the same 1.0-scale features
    torch.testing.assert_close(feats, full)
    ocr = small("ocrnet", **SMALL_OCR_KWARGS)
    assert ocr_features(ocr, images).shape == (B, 128, H // 8, W // 8)
    with pytest.raises(ValueError, match="OCR"):
        ocr_features(small("deeplabv3"), images)


# ----------------------------------------------------------------------------------- build_model

def test_build_model_defaults_and_errors():
    assert set(ARCHS) == set(PAPER_BACKBONES) == set(SMALL_BACKBONES)
    with pytest.raises(ValueError, match="deeplabv3, ocrnet, msa_hrnet_ocr"):
        build_model("pspnet")
    with pytest.raises(ValueError, match="unknown timm backbone"):
        build_model("ocrnet", backbone="no_such_net")
    with pytest.raises(TypeError):
        build_model("deeplabv3", backbone="resnet18", ocr_mid=8)  # DeepLabV3 has no OCR head
    assert isinstance(build_model("MSA-HRNet-OCR", backbone="hrnet_w18_small"), MSAHRNetOCR)


def test_paper_backbones_instantiate():
    """Table 1's models at paper size (construction only: ~1 s on CPU)."""
    sizes = {arch: count_parameters(build_model(arch)) for arch in ARCHS}
    assert 30e6 < sizes["deeplabv3"] < 50e6
    assert 30e6 < sizes["ocrnet"] < 45e6
    assert 60e6 < sizes["msa_hrnet_ocr"] < 80e6  # HRNet-W48 (65 M) + OCR + attention
    assert build_model("msa_hrnet_ocr").backbone.out_channels == 720


# ----------------------------------------------------------------------------------- pretrained

def test_pretrained_offline_raises_clear_error(monkeypatch):
    real = timm.create_model

    def fake(name, *args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, *args, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake)
    for arch in ARCHS:
        with pytest.raises(RuntimeError, match="cannot be downloaded here.*pretrained=False"):
            small(arch, pretrained=True)
    small("ocrnet", pretrained=False)  # still fine


def test_pretrained_real_timm_offline_fails_fast():
    """Without the monkeypatch: with downloads not allowed, timm must fail at once with our message."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    try:
        small("ocrnet", pretrained=True)
    except RuntimeError as err:
        assert "pretrained=False" in str(err)
    else:
        pytest.skip("weights are in the local cache")
    assert constants.HF_HUB_OFFLINE == before  # offline switch restored


def test_pretrained_from_local_checkpoint(tmp_path):
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = build_model("ocrnet", backbone="resnet18", pretrained=path, **SMALL_OCR_KWARGS)
    torch.testing.assert_close(model.backbone.body.conv1.weight, source.conv1.weight)
    with pytest.raises(FileNotFoundError):
        build_model("ocrnet", backbone="resnet18", pretrained=tmp_path / "missing.pth")
