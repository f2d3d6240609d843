"""Profiles: one name selects sizes everywhere — data, models, iterations, timeouts.

- ``smoke``: seconds to a few minutes on 2 CPU cores; what CI and nbval run. Proves the code
  path, not the science.
- ``demo``: the embedded default (``make demo``), ≤ 30 minutes on a laptop-class CPU and large
  enough that the paper's qualitative results show.
- ``paper``: the paper's settings (supplementary 3.1): ResNeXt-50 / HRNet-W48, 175 epochs of a
  fixed epoch size, 21-frame partitions with the centre frame labelled, ±10 propagation.

A profile is a frozen dataclass; ``get_profile("demo", seg_iters=50)`` returns a copy with
overrides, so a notebook parameter or ``wrp reproduce -p`` can change one size without a new
profile.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    # --- data (supplementary 3.2: partitions of 21 frames, centre frame labelled) ---
    dataset: str  # "synthetic", or a prepared real dataset ("cityscapes", "apolloscape", ...)
    height: int
    width: int
    train_records: int
    val_records: int
    partitions_per_record: int
    partition_length: int = 21
    # synthetic world only: > 1 draws poles, signs and bicycles that much wider than life (persons
    # and riders by its square root), so a stride-4 segmenter can see them (``SynthConfig``)
    thin_scale: float = 1.0
    # synthetic world only: frames per second of its camera (None: the world's own, 35). Fewer
    # frames per second move the car further between frames — 35 / fps times — so the other frames
    # of a partition show more street the labelled one does not (Cityscapes records at 17)
    fps: float | None = None
    # --- propagation ---
    k: int = 10  # labels are propagated to ±k frames around every labelled frame
    cycle_lengths: tuple[int, ...] = (1, 2, 4, 6, 8, 10)  # p in t → t+p → t (Figure 1)
    # --- models and training (supplementary 3.1) ---
    seg_backbone: str = "resnext50_32x4d"
    batch_size: int = 8
    crop: tuple[int, int] | None = None  # training crop (height, width); None: the whole frame
    seg_iters: int = 1000
    denoiser_iters: int = 1000
    denoiser_crop: tuple[int, int] | None = None  # Ω's training crop; None: the whole frame
    denoiser_width: int = 64  # channels of Ω's first layer (doubling at each of 3 downsamplings)
    # Ω trains on g_ψ's OCR features of the whole frame, computed once per frame (as it sees them
    # when propagating; needs them all in memory), instead of computing them on every crop
    denoiser_frame_features: bool = False
    epochs: int = 175
    seeds: tuple[int, ...] = (0, 1, 2)
    # --- Tables 1 and 2: every cell of a table gets the same budget ---
    table_archs: tuple[str, ...] = ("DeepLabV3", "OCRNet", "MSA-HRNet-OCR")  # Table 1's rows
    table_seeds: tuple[int, ...] | None = None  # None: ``seeds``
    table_iters: int | None = None  # iterations of every cell; None: ``seg_iters``
    table_crop: tuple[int, int] | None = None  # training crop of every cell; None: ``seg_crop``
    # --- execution ---
    cell_timeout_s: int | None = None  # per-cell limit for papermill / nbval; None: no limit

    def __post_init__(self) -> None:
        problems = []
        for name in ("height", "width", "train_records", "val_records", "partitions_per_record",
                     "partition_length", "k", "batch_size", "seg_iters", "denoiser_iters",
                     "epochs"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be ≥ 1")
        if self.thin_scale <= 0:
            problems.append(f"thin_scale={self.thin_scale} must be positive")
        if self.fps is not None and self.fps <= 0:
            problems.append(f"fps={self.fps} must be positive (or None: the world's own)")
        if self.partition_length % 2 == 0:
            problems.append(
                f"partition_length={self.partition_length} must be odd (the centre frame is labelled)"
            )
        if 2 * self.k + 1 > self.partition_length:
            problems.append(
                f"k={self.k} needs partitions of at least 2k+1={2 * self.k + 1} frames, "
                f"got partition_length={self.partition_length}"
            )
        if not self.cycle_lengths or min(self.cycle_lengths) < 1:
            problems.append(f"cycle_lengths={self.cycle_lengths} must be non-empty and ≥ 1")
        if self.crop is not None and not (0 < self.crop[0] <= self.height and 0 < self.crop[1] <= self.width):
            problems.append(f"crop={self.crop} must lie inside the frame ({self.height}, {self.width})")
        if not self.seeds:
            problems.append("seeds must name at least one seed")
        if not self.table_archs or (self.table_seeds is not None and not self.table_seeds):
            problems.append("table_archs and table_seeds must not be empty")
        if self.table_iters is not None and self.table_iters < 1:
            problems.append(f"table_iters={self.table_iters} must be ≥ 1")
        if self.table_crop is not None and not (0 < self.table_crop[0] <= self.height
                                                and 0 < self.table_crop[1] <= self.width):
            problems.append(f"table_crop={self.table_crop} must lie inside the frame "
                            f"({self.height}, {self.width})")
        if problems:
            raise ValueError(f"profile {self.name!r} is not valid: " + "; ".join(problems))

    @property
    def labelled_index(self) -> int:
        """Index of the human-labelled frame inside a partition (its centre)."""
        return self.partition_length // 2

    @property
    def seg_crop(self) -> tuple[int, int]:
        """Training crop of the segmenters: ``crop`` or the whole frame."""
        return tuple(self.crop) if self.crop else (self.height, self.width)

    @property
    def cell_seeds(self) -> tuple[int, ...]:
        """Seeds of a table's cells: ``table_seeds`` or ``seeds``."""
        return tuple(self.table_seeds) if self.table_seeds is not None else tuple(self.seeds)

    @property
    def cell_iters(self) -> int:
        """Training iterations of every table cell: ``table_iters`` or ``seg_iters``."""
        return self.table_iters or self.seg_iters

    @property
    def cell_crop(self) -> tuple[int, int]:
        """Training crop of every table cell: ``table_crop`` or the segmenters' crop."""
        return tuple(self.table_crop) if self.table_crop else self.seg_crop

    @property
    def synth_overrides(self) -> dict[str, Any]:
        """What the profile changes in its synthetic world beyond the sizes and ``thin_scale``
        (``wrp.synthetic.world_for(profile, seed, **profile.synth_overrides)``)."""
        return {"fps": float(self.fps)} if self.fps is not None else {}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="CI and nbval: proves every code path in minutes on 2 CPU cores",
        dataset="synthetic",
        height=64,
        width=128,
        train_records=2,
        val_records=1,
        partitions_per_record=1,
        partition_length=9,
        k=4,
        cycle_lengths=(1, 2, 4),
        seg_backbone="resnet18",
        batch_size=2,
        seg_iters=4,
        denoiser_iters=4,
        denoiser_width=8,
        denoiser_frame_features=True,
        epochs=1,
        seeds=(0,),
        table_archs=("DeepLabV3",),
        cell_timeout_s=600,
    ),
    "demo": Profile(
        name="demo",
        description="make demo: the whole method on the synthetic street world, ≤ 30 min on a CPU",
        dataset="synthetic",
        height=128,
        width=256,
        train_records=20,
        val_records=8,
        partitions_per_record=2,
        partition_length=21,
        thin_scale=2.0,
        k=10,
        cycle_lengths=(1, 2, 4, 6, 8, 10),
        seg_backbone="resnet18",
        batch_size=8,
        seg_iters=1000,
        denoiser_iters=2400,
        denoiser_crop=(64, 128),
        denoiser_width=16,
        denoiser_frame_features=True,
        epochs=1,
        seeds=(0, 1, 2),
        # make demo's reduced table grid: 1 architecture, 1 seed, short cells on crops (≈18 s each)
        table_archs=("DeepLabV3",),
        table_seeds=(0,),
        table_iters=50,
        table_crop=(64, 128),
        cell_timeout_s=1800,
    ),
    "paper": Profile(
        name="paper",
        description="the paper's settings (supplementary 3.1) on a prepared real dataset, on GPUs",
        dataset="cityscapes",
        height=1024,
        width=2048,
        train_records=2975,
        val_records=500,
        partitions_per_record=1,
        partition_length=21,
        k=10,
        cycle_lengths=(1, 2, 4, 6, 8, 10),
        seg_backbone="resnext50_32x4d",
        batch_size=8,
        seg_iters=65_000,
        denoiser_iters=65_000,
        epochs=175,
        seeds=(0, 1, 2),
        cell_timeout_s=None,
    ),
}


def profile_names() -> list[str]:
    return list(PROFILES)


def get_profile(name: str | Profile, **overrides: Any) -> Profile:
    """The named profile, with ``overrides`` applied (unknown fields are an error)."""
    if isinstance(name, Profile):
        base = name
    elif name in PROFILES:
        base = PROFILES[name]
    else:
        raise ValueError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    if not overrides:
        return base
    known = {f.name for f in fields(Profile)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"unknown profile field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}"
        )
    return replace(base, **overrides)


def profiles_table(names: list[str] | None = None) -> str:
    """A Markdown table comparing profiles field by field (used by notebook 00 and ``wrp profiles``)."""
    chosen = [PROFILES[n] for n in (names or profile_names())]
    header = "| field | " + " | ".join(p.name for p in chosen) + " |"
    rule = "|---|" + "---|" * len(chosen)
    rows = [header, rule]
    for f in fields(Profile):
        if f.name == "name":
            continue
        cells = [_fmt(getattr(p, f.name)) for p in chosen]
        rows.append(f"| `{f.name}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    if value is None:
        return "—"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,}"
    return str(value)
