"""Tiny importable builders for the training-engine tests (torchrun workers import them by name)."""

from __future__ import annotations

import time

import torch
from torch import nn


class ToyNet(nn.Module):
    """conv-BN-ReLU-dropout-conv: small, but with every layer kind whose state must survive DDP/resume."""

    def __init__(self, classes: int = 3, dropout: float = 0.1, expect_nhwc: bool | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Dropout2d(dropout), nn.Conv2d(8, classes, 1))
        self.expect_nhwc = expect_nhwc  # None: any layout; else the batch must be NHWC or not

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.expect_nhwc is not None:
            nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            if nhwc != self.expect_nhwc:
                raise AssertionError(f"batch layout NHWC={nhwc}, expected {self.expect_nhwc}")
        return {"out": self.body(x)}


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n: int = 16, size: int = 8, delay: float = 0.0) -> None:
        g = torch.Generator().manual_seed(123)
        self.images = torch.randn(n, 3, size, size, generator=g)
        self.labels = (self.images[:, 0] > 0).long() + (self.images[:, 1] > 0.5).long()
        self.delay = delay

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        if self.delay:
            time.sleep(self.delay)
        return self.images[i], self.labels[i]


class ToyLoss(nn.Module):
    def forward(self, outputs, target):
        loss = nn.functional.cross_entropy(outputs["out"], target)
        return loss, {"ce": loss.item()}


def model(dropout: float = 0.1, expect_nhwc: bool | None = None) -> nn.Module:
    return ToyNet(dropout=dropout, expect_nhwc=expect_nhwc)


def data(n: int = 16, delay: float = 0.0) -> ToyData:
    return ToyData(n, delay=delay)


def loss() -> nn.Module:
    return ToyLoss()
