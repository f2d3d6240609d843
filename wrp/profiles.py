"""Profiles, and the one resolved run every stage receives.

A profile is one name that selects sizes everywhere — data, models, iterations, timeouts:

- ``smoke``: seconds to a few minutes on 2 CPU cores; what CI and nbval run. Proves the code
  path, not the science.
- ``demo``: the embedded default (``make demo``), about 35 minutes on a laptop-class CPU and large
  enough that the paper's qualitative results show.
- ``table``: the demo's models on a world where generated labels can help a segmenter (10 frames/s,
  one labelled frame per street), and Tables 1 and 2 measured there as the paper does: a teacher
  g_ψ pretrained on another world, smaller students from scratch, five training seeds paired on one
  world and scored on every frame of another (``wrp table1 --profile table``).
- ``paper``: the paper's settings (supplementary 3.1) on a prepared real dataset: ResNeXt-50 /
  HRNet-W48, 21-frame partitions with the centre frame labelled, ±10 propagation.

A :class:`Run` is a profile resolved once (with any overrides), plus the data it reads (a prepared
dataset or the synthetic world), the seed, the device and the number of processes. Each entry
point — a command, a notebook, a benchmark — builds one with :meth:`Run.create` and passes it down;
nothing below the entry points looks a profile up by name or branches on its name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from wrp.paper import DEFAULT_INPAINT, INPAINT
from wrp.runtime import project_root, resolve_device, runs_dir

# Profile fields added after results named by the profile's settings were published, with the
# default that left them out of those names (Profile.key_dict)
LATER_DEFAULTS: dict[str, Any] = {"inpaint": DEFAULT_INPAINT}


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
    # synthetic world only: × its style's density of vehicles, persons and riders (None: 1, the
    # style's own): more moving things pass through the frames around a labelled one
    density: float | None = None
    # synthetic world only: its look and layout, a name of ``wrp.synthetic.STYLES`` (the world family)
    style: str = "street"
    # --- propagation ---
    k: int = 10  # labels are propagated to ±k frames around every labelled frame
    cycle_lengths: tuple[int, ...] = (1, 2, 4, 6, 8, 10)  # p in t → t+p → t (Figure 1)
    # --- models and training (supplementary 3.1) ---
    # CPU-sized models: small backbones (``wrp.models.SMALL_BACKBONES``), a narrower OCR head,
    # DeepLabV3 at output stride 16; False builds the paper's ResNeXt-50 / HRNet-W48
    small_models: bool = False
    batch_size: int = 8
    crop: tuple[int, int] | None = None  # training crop (height, width); None: the whole frame
    seg_iters: int = 1000
    denoiser_iters: int = 1000
    denoiser_crop: tuple[int, int] | None = None  # Ω's training crop; None: the whole frame
    denoiser_width: int = 64  # channels of Ω's first layer (doubling at each of 3 downsamplings)
    # Ω trains on g_ψ's OCR features of the whole frame, computed once per frame (as it sees them
    # when propagating; needs them all in memory), instead of computing them on every crop
    denoiser_frame_features: bool = False
    # --- Tables 1 and 2: every cell of a table gets the same budget (supplementary 2.3) ---
    table_archs: tuple[str, ...] = ("DeepLabV3", "OCRNet", "MSA-HRNet-OCR")  # Table 1's rows
    table_seeds: tuple[int, ...] = (0, 1, 2)  # the paper reports the mean of 3 seeds
    table_iters: int = 1000  # iterations of every cell
    table_crop: tuple[int, int] | None = None  # training crop of every cell; None: the whole frame
    # where a cell is scored: "labelled" (the validation records' labelled frames, as the paper) or
    # "every" (all their frames; needs a dataset that labels every frame, the synthetic world)
    table_eval: str = "labelled"
    # None: each table seed is its own world, split, g_ψ and Ω. A seed: every cell trains on that
    # world and its labels, the table seeds being the segmenters' own seeds — the columns then
    # differ by their labels alone and their gains pair seed by seed (the paper's protocol)
    table_world_seed: int | None = None
    # None: a cell is scored on the table world's own validation records. A seed: on every frame of
    # every record of that synthetic world instead (same style, frame rate and traffic) — a held-out
    # set 3.5 times the validation records' frames, drawn independently of the world the cells learn
    # from, so a gain that belongs to a few validation streets does not pass for one (needs
    # table_eval="every"; not the table world, nor the world pretraining reads)
    table_score_world: int | None = None
    # the confident-pixels column: warp-refine labels with the pixels below this confidence unlabelled
    table_min_confidence: float = 1.0
    # class-uniform sampling of a cell's generated labels counts a class in a 32×32 tile from this
    # many pixels on (1: any pixel), so stray pixels of a class are not sampled like real instances
    table_min_class_pixels: int = 1
    # the style of the synthetic world every table cell is pretrained on before it trains on the
    # table's labels (``wrp.stages.pretrained_segmenter``); None: cells start from random weights
    table_pretrain: str | None = None
    # what that segmenter learns there: "classes" (the 19 train ids) or "categories" (the 7 Cityscapes
    # categories: a vehicle from a person, not a car from a bus — the cells' classifiers then start
    # random and the fine classes are learnt from the table's labels, as the paper's students start
    # from ImageNet weights that know objects but not Cityscapes' classes)
    table_pretrain_labels: str = "classes"
    # the style of the synthetic world g_ψ is pretrained on (its 19 classes, every frame labelled)
    # before it trains on the run's human labels, as the paper's g_ψ starts from weights trained on
    # Mapillary: a teacher that knows more than the students it labels for. None: random weights
    teacher_pretrain: str | None = None
    # what Ω's input label holds where the motion cannot explain a pixel: "motion" (the motion's own
    # guess, the validity channel marking it) or "semantic" (g_ψ's label, the warp-inpaint of
    # METHOD.md §1; Ω is trained on cyclic labels inpainted the same way)
    inpaint: str = DEFAULT_INPAINT
    # --- execution ---
    cell_timeout_s: int | None = None  # per-cell limit for papermill / nbval; None: no limit
    writes_figures: bool = True  # notebooks save into figures/ (else runs/<name>/figures)
    # Tables 1 and 2 of this profile are the published ones (figures/table{1,2}.*); a profile with a
    # reduced table grid (demo) writes its tables to runs/<name>/figures, so it never replaces them
    publishes_tables: bool = False

    def __post_init__(self) -> None:
        problems = []
        for name in ("height", "width", "train_records", "val_records", "partitions_per_record",
                     "partition_length", "k", "batch_size", "seg_iters", "denoiser_iters",
                     "table_iters", "table_min_class_pixels"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be ≥ 1")
        if self.thin_scale <= 0:
            problems.append(f"thin_scale={self.thin_scale} must be positive")
        if self.table_pretrain_labels not in ("classes", "categories"):
            problems.append(f"table_pretrain_labels={self.table_pretrain_labels!r} must be 'classes' or "
                            "'categories'")
        elif self.table_pretrain_labels != "classes" and self.table_pretrain is None:
            problems.append(f"table_pretrain_labels={self.table_pretrain_labels!r} says what the "
                            "pretrained start learns, and there is none: name its world with "
                            "table_pretrain (--pretrain)")
        if self.inpaint not in INPAINT:
            problems.append(f"inpaint={self.inpaint!r} must be one of {', '.join(INPAINT)}")
        if self.density is not None and self.density <= 0:
            problems.append(f"density={self.density} must be positive (or None: the style's own)")
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
        if not self.table_archs or not self.table_seeds:
            problems.append("table_archs and table_seeds must not be empty")
        if self.table_crop is not None and not (0 < self.table_crop[0] <= self.height
                                                and 0 < self.table_crop[1] <= self.width):
            problems.append(f"table_crop={self.table_crop} must lie inside the frame "
                            f"({self.height}, {self.width})")
        if self.table_eval not in ("labelled", "every"):
            problems.append(f"table_eval={self.table_eval!r} must be 'labelled' or 'every'")
        if self.table_score_world is not None and self.table_eval != "every":
            problems.append(f"table_score_world={self.table_score_world} scores every frame of that world; "
                            f"set table_eval='every' (got {self.table_eval!r}), or leave it out "
                            "(--score-world none)")
        if self.table_score_world is not None and self.table_score_world == self.table_world_seed:
            problems.append(f"table_score_world={self.table_score_world} is the world the cells train on "
                            "(table_world_seed); choose another seed")
        if not 0.0 < self.table_min_confidence <= 1.0:
            problems.append(f"table_min_confidence={self.table_min_confidence} must lie in (0, 1]")
        if problems:
            raise ValueError(f"profile {self.name!r} is not valid: " + "; ".join(problems))

    @property
    def labelled_index(self) -> int:
        """Index of the human-labelled frame inside a partition (its centre)."""
        return self.partition_length // 2

    def frame_crop(self, crop: tuple[int, int] | None) -> tuple[int, int]:
        """``crop`` (height, width), or the whole frame when ``None``."""
        return tuple(crop) if crop else (self.height, self.width)

    @property
    def seg_crop(self) -> tuple[int, int]:
        """Training crop of the segmenters: ``crop`` or the whole frame."""
        return self.frame_crop(self.crop)

    @property
    def figures_dir(self) -> Path:
        """Where notebooks at this profile save figures: the committed ``figures/`` when
        ``writes_figures`` (demo, paper), else ``runs/<name>/figures`` (smoke: CI never overwrites
        the published figures)."""
        return project_root() / "figures" if self.writes_figures else runs_dir() / self.name / "figures"

    @property
    def tables_dir(self) -> Path:
        """Where ``wrp table1/table2`` and notebooks 04–05 write the tables (``table{1,2}.{csv,md,png}``,
        ``table{1,2}_runs.csv``): the committed ``figures/`` when ``publishes_tables`` (table, paper),
        else ``runs/<name>/figures`` — the demo's reduced grid does not replace the full run's tables."""
        return project_root() / "figures" if self.publishes_tables else runs_dir() / self.name / "figures"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """:meth:`as_dict` for naming a result by its settings: fields added after results were
        named are left out while at their default (:data:`LATER_DEFAULTS`), so a result measured
        before a field existed keeps its name."""
        return {k: v for k, v in self.as_dict().items() if LATER_DEFAULTS.get(k, object()) != v}


_DEMO = Profile(
    name="demo",
    description="make demo: the whole method on the synthetic street world, ~35 min on a CPU",
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
    small_models=True,
    batch_size=8,
    seg_iters=1000,
    denoiser_iters=2400,
    denoiser_crop=(64, 128),
    denoiser_width=16,
    denoiser_frame_features=True,
    # make demo's reduced table grid: 1 architecture, 1 seed, short cells on crops (≈18 s each)
    table_archs=("DeepLabV3",),
    table_seeds=(0,),
    table_iters=50,
    table_crop=(64, 128),
    cell_timeout_s=None,  # a slow machine gets a slow demo, not a failed one: every stage resumes
)


def _table_profile(demo: Profile) -> Profile:
    """``table``: the demo world at 10 frames/s, where ±10 frames span a second of driving and
    ~39 % of their pixels show another class than the labelled frame (at 35 frames/s ~17 %: the
    neighbours repeat it, and no label policy can add much), with one labelled frame per street
    (20 records × 1 partition), so a student is short of views. As in the paper, the teacher is
    stronger than its students: g_ψ (the demo's recipe) starts from MSA-HRNet-OCR pretrained on the
    ``verge`` style's world, the students are DeepLabV3 from random weights, 1200 iterations on
    64×128 crops. Five training seeds on world 1, every cell scored on every frame of world 7, a
    world none of them learns from."""
    return replace(demo, name="table",
                   description="Tables 1 and 2 where generated labels can help: 10 frames/s world, one "
                               "labelled frame per street, g_ψ pretrained, students from scratch, 5 paired "
                               "seeds scored on another world",
                   fps=10.0, partitions_per_record=1, table_archs=("DeepLabV3",), table_seeds=(0, 1, 2, 3, 4),
                   table_iters=1200, table_crop=(64, 128), table_eval="every", table_world_seed=1,
                   table_score_world=7, teacher_pretrain="verge", publishes_tables=True)


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
        small_models=True,
        batch_size=2,
        seg_iters=4,
        denoiser_iters=4,
        denoiser_width=8,
        denoiser_frame_features=True,
        table_archs=("DeepLabV3",),
        table_seeds=(0,),
        table_iters=4,
        cell_timeout_s=600,
        writes_figures=False,
    ),
    "demo": _DEMO,
    "table": _table_profile(_DEMO),
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
        batch_size=8,
        seg_iters=65_000,
        denoiser_iters=65_000,
        table_iters=65_000,
        cell_timeout_s=None,
        publishes_tables=True,
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


@dataclass(frozen=True)
class Run:
    """One resolved run: the profile (overrides applied), the data, the seed, where and how wide
    to compute. Built once at an entry point with :meth:`create` and passed down to every stage.

    ``dataset``: a tree prepared by ``data_scripts/prepare_*.py`` (``None``: the profile's
    synthetic world). ``seed`` picks the synthetic world, its split and the initial weights of the
    models a stage trains. ``device`` is resolved (``"cpu"``, ``"cuda"``, ``"cuda:N"``), so equal
    runs compare equal however the device was spelled. ``nproc``: processes per training job
    (``torchrun``).
    """

    profile: Profile
    dataset: Path | None = None
    seed: int = 0
    device: str = "cpu"
    nproc: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.nproc < 1:
            raise ValueError(f"nproc={self.nproc} must be ≥ 1")
        if self.dataset is None and self.profile.dataset != "synthetic":
            raise ValueError(f"profile {self.profile.name!r} reads the {self.profile.dataset} dataset: "
                             "prepare it with data_scripts/prepare_*.py and pass the prepared folder "
                             "(--dataset DIR, or the notebook parameter dataset)")
        if self.dataset is not None and self.profile.style != "street":
            raise ValueError(f"style={self.profile.style!r} chooses a synthetic world's look, and this "
                             f"run reads the dataset {self.dataset}; drop --style (or the dataset)")

    @classmethod
    def create(cls, profile: str | Profile = "demo", *, dataset: str | Path | None = None, seed: int = 0,
               device: str = "auto", nproc: int = 1, progress: bool = True, **overrides: Any) -> Run:
        """Resolve ``profile`` (with field ``overrides``, e.g. ``table_iters=1000``) and the device
        once; ``dataset`` empty or ``None`` means the synthetic world."""
        folder = Path(dataset).expanduser().resolve() if dataset else None
        if folder is not None and not folder.is_dir():
            raise ValueError(f"dataset folder {folder} does not exist; give a tree prepared by "
                             "data_scripts/prepare_*.py")
        return cls(get_profile(profile, **overrides), folder, seed, resolve_device(device), nproc, progress)

    def with_seed(self, seed: int) -> Run:
        """The same run on seed ``seed`` (another synthetic world and split, other initial weights)."""
        return replace(self, seed=seed)

    def with_profile(self, **overrides: Any) -> Run:
        """The same run with profile fields changed (``run.with_profile(k=3)``)."""
        return replace(self, profile=get_profile(self.profile, **overrides))

    @property
    def synthetic(self) -> bool:
        """True when the run reads the synthetic world (every frame has an exact label)."""
        return self.dataset is None
