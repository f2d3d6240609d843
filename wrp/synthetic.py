"""The synthetic street world: procedural driving video with exact labels and exact motion.

The role ApolloScape plays in the paper (supplementary 3.2): every frame has ground truth, so
propagated labels can be scored at every distance from the labelled frame. Nothing is downloaded;
the world is made from a seed.

**Scene.** A straight street seen from a car driving forward with small yaw / pitch jitter: a road
with lane markings, curbs, sidewalks, and along both sides a row of building facades, walls,
fences and vegetation with a second row of buildings behind, poles with traffic signs, sky. Cars,
trucks and buses drive in both lanes or are parked; persons walk along the sidewalks or cross the
road; riders on bicycles ride with the traffic. Everything is made of planar rectangles (a car is
a box of five), ray-cast per pixel, so depth, surface identity and 3-D position are exact.

**The paper's phenomena.** Ego-motion gives parallax, expansion and things entering and leaving the
view; objects pass in front of one another (occlusion, de-occlusion). Look-alike classes share
colours and textures and differ in shape, size or context (supplementary Figure 3): cars, trucks
and buses are painted from one palette; riders wear what persons wear; walls and fences share a
beige-grey and differ in texture; sidewalk and road are both grey. Procedural textures, large
textureless regions (truck boxes, sky), lighting drift, sensor noise and optional motion blur keep
optical flow imperfect. ``SynthConfig.thin_scale`` > 1 draws thin things (poles, signs, bicycles,
persons, riders) wider than life, for a segmenter that cannot resolve them at a small resolution.

**Files** (the Cityscapes sequence layout of ``wrp.data``; split folder ``all``; the dataset layer
re-splits by record)::

    leftImg8bit_sequence/all/synth/synth_<record>_<frame>_leftImg8bit.png   RGB image
    gtFine/all/synth/synth_<record>_<frame>_gtFine_labelIds.png            official label ids
    flow/all/synth/synth_<record>_<frame>_flow_backward.npy   float32 (H, W, 2), x then y, in pixels:
                                                              pixel of frame t → its position in t−1
    flow/all/synth/synth_<record>_<frame>_valid_backward.png  0/255: the point is seen in both frames
    flow/all/synth/synth_<record>_<frame>_flow_forward.npy    the same towards frame t+1
    flow/all/synth/synth_<record>_<frame>_valid_forward.png
    world.json                                                the generator config and a summary

The first frame of a record has no backward flow (zeros, validity 0), the last no forward flow.
A pixel is valid when the 3-D point it sees lands, in the other frame, inside the image on a pixel
that sees the same surface: visible in both frames, at pixel resolution.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wrp.cache import ADDED_LATER, canonical_config
from wrp.data import CLASS_NAMES, LABEL_TO_TRAIN, FrameRef, read_image, read_label
from wrp.io import atomic_save, atomic_write_json, atomic_write_png, exclusive_folder
from wrp.runtime import progress_bar

# The world's stage key is its config and this version: bump it when a change of the code renders
# other images, labels or flows for the same config (a refactor or a comment keeps every world).
WORLD_VERSION = 1
CITY, SPLIT = "synth", "all"

# Official Cityscapes label ids of the classes the world uses.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, SIGN = 7, 8, 11, 12, 13, 17, 20
VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS, BICYCLE = 21, 22, 23, 24, 25, 26, 27, 28, 33
LABEL_IDS = (ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER,
             CAR, TRUCK, BUS, BICYCLE)

NEAR = 0.3  # metres: nothing closer to the camera is drawn


@dataclass(frozen=True)
class Style:
    """How a world looks and how its street is laid out: the knobs a named style turns.

    Each default reproduces the original world (style ``"street"``) to the bit; a knob changes the
    rendering only when set away from it.
    """

    description: str
    # --- look ---
    grain: float = 0.0  # fine, high-frequency texture on every surface (± share of its colour)
    contrast: float = 1.0  # colours scaled about mid-grey (1: as made; < 1 flatter, > 1 harsher)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gain (the light's colour)
    # --- layout ---
    sidewalks: str = "both"  # "both"; "right": left of the road a terrain verge, no curb
    front_row: tuple[float, float, float, float, float] = (.42, .16, .16, .16, .10)  # left side of
    # the road: building, wall, fence, vegetation, gap along it (right side: ``front_row_right``)
    front_row_right: tuple[float, float, float, float, float] | None = None  # None: as the left
    back_row: bool = True  # a second row of buildings behind the first
    # --- objects ---
    density: float = 1.0  # × the config's density of vehicles, persons and riders
    vehicles: tuple[float, float, float] = (0.55, 0.23, 0.22)  # moving car, truck, bus shares

    def __post_init__(self) -> None:
        if self.sidewalks not in ("both", "right"):
            raise ValueError(f"Style.sidewalks={self.sidewalks!r}; use 'both' or 'right'")
        for name in ("front_row", "front_row_right", "vehicles"):
            shares = getattr(self, name)
            if shares is not None and (min(shares) < 0 or abs(sum(shares) - 1) > 1e-6):
                raise ValueError(f"Style.{name}={shares} must be non-negative shares summing to 1")
        if self.grain < 0 or self.contrast <= 0 or self.density <= 0 or min(self.tint) <= 0:
            raise ValueError("Style: grain ≥ 0, and contrast, density and tint > 0")


#: The world family: named styles of the synthetic world (``SynthConfig.style``, ``--style``).
#: ``street`` is the world every profile renders by default. :data:`HELD_OUT_STYLE` is kept out of
#: every choice of the method's settings: it is where generalisation is measured
#: (``benchmarks/generalisation.py``).
STYLES: dict[str, Style] = {
    "street": Style("a city street: sidewalks both sides, buildings, walls and fences, smooth surfaces"),
    "grainy": Style("the street with high-frequency surface texture and harsher contrast",
                    grain=0.35, contrast=1.25),
    "verge": Style("a sidewalk on the right only; on the left a terrain verge lined with vegetation; "
                   "grainy surfaces", grain=0.25, sidewalks="right", front_row=(.10, .05, .10, .65, .10)),
    "suburb": Style("a suburb: one sidewalk, low houses and hedges with no second row, few and mostly "
                    "small vehicles, grainy surfaces under a cold light",
                    grain=0.45, contrast=1.1, tint=(0.92, 1.0, 1.1), sidewalks="right",
                    front_row=(.20, .05, .25, .40, .10), front_row_right=(.35, .10, .20, .25, .10),
                    back_row=False, density=0.6, vehicles=(0.8, 0.15, 0.05)),
}
HELD_OUT_STYLE = "suburb"


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the world; its hash keys the ``synth`` stage."""

    height: int = 128
    width: int = 256
    records: int = 28
    frames_per_record: int = 42
    seed: int = 0
    fps: float = 35.0  # frames per second: sets how far everything moves between frames
    speed: tuple[float, float] = (6.0, 10.0)  # camera speed range, m/s (22–36 km/h)
    focal: float = 0.85  # focal length as a fraction of the image width (≈ 61° field of view)
    horizon: float = 0.42  # principal point row as a fraction of the height
    camera_height: float = 1.5
    yaw_jitter_deg: float = 1.2
    pitch_jitter_deg: float = 0.5
    noise_sigma: float = 2.5  # sensor noise, 8-bit levels
    lighting_drift: float = 0.12  # ± relative brightness over a record
    motion_blur: int = 1  # sub-frame samples averaged per image (1 = off)
    density: float = 1.0  # scales the number of vehicles, persons and riders
    # > 1 draws thin things wider than life: poles, bicycle tubes and signs by ``thin_scale``, persons
    # and riders by its square root. At 128×256 (1/8 of Cityscapes' width) a real 0.24 m pole 20 m
    # away is 2 px wide, below the stride-4 output grid of the segmenters (README: the trade-off).
    thin_scale: float = 1.0
    style: str = field(default="street", metadata=ADDED_LATER)  # a name of :data:`STYLES`

    def __post_init__(self) -> None:
        problems = [f"{n}={getattr(self, n)} must be ≥ {lo}" for n, lo in
                    (("height", 16), ("width", 16), ("records", 1), ("frames_per_record", 2),
                     ("motion_blur", 1)) if getattr(self, n) < lo]
        if self.fps <= 0:
            problems.append(f"fps={self.fps} must be positive")
        if self.thin_scale <= 0:
            problems.append(f"thin_scale={self.thin_scale} must be positive")
        if not 0 < self.speed[0] <= self.speed[1]:
            problems.append(f"speed={self.speed} must be an increasing pair of positive numbers")
        if self.style not in STYLES:
            problems.append(f"style={self.style!r} is not a world style; choose from {', '.join(STYLES)}")
        if problems:
            raise ValueError("SynthConfig: " + "; ".join(problems))

    @property
    def look(self) -> Style:
        """The :class:`Style` this world is rendered in."""
        return STYLES[self.style]

    @classmethod
    def from_profile(cls, profile: Any, seed: int = 0, **overrides: Any) -> SynthConfig:
        """Sizes from a :class:`wrp.profiles.Profile` (train + val records, partitions × length),
        its ``thin_scale``, its ``style``, its ``fps`` and ``density`` (``None``: the world's own)."""
        sizes = {"height": profile.height, "width": profile.width,
                 "records": profile.train_records + profile.val_records,
                 "frames_per_record": profile.partitions_per_record * profile.partition_length,
                 "thin_scale": profile.thin_scale, "style": profile.style}
        if profile.fps is not None:
            sizes["fps"] = float(profile.fps)
        if profile.density is not None:
            sizes["density"] = float(profile.density)
        return cls(**{**sizes, "seed": seed, **overrides})


# ---------------------------------------------------------------------------------------------
# Scene description: axis-aligned rectangles, possibly moving
# ---------------------------------------------------------------------------------------------
@dataclass
class Rect:
    """A planar rectangle ``axis``-coordinate = ``c`` (at t = 0), bounded on the other two axes.

    ``lo``/``hi`` bound the other two axes in increasing order (x-plane: y, z; y-plane: x, z;
    z-plane: x, y). It moves by ``vel`` metres per frame. ``material(u, v, n)`` gives colours and
    label ids for local coordinates (metres from ``lo``), ``alpha(u, v)`` cuts shapes out of it.
    """

    axis: int
    c: float
    lo: tuple[float, float]
    hi: tuple[float, float]
    label: int
    material: Callable[..., tuple[np.ndarray, np.ndarray | None]]
    vel: tuple[float, float, float] = (0.0, 0.0, 0.0)
    alpha: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    shade: float = 1.0
    sid: int = 0  # surface id; the ground uses sid..sid+3 for its regions


@dataclass
class Scene:
    rects: list[Rect]
    noise: np.ndarray  # (256, 256) smooth value noise in [0, 1]
    sky: tuple[np.ndarray, np.ndarray]  # colours at the horizon and at the zenith
    camera: Callable[[float], tuple[np.ndarray, np.ndarray]]  # t → (centre (3,), rotation (3, 3))
    gain: Callable[[float], float]  # lighting drift
    meta: dict[str, Any] = field(default_factory=dict)
    style: Style = STYLES["street"]
    grain: np.ndarray | None = None  # (256, 256) white noise in [0, 1] for ``style.grain``


_VEHICLE_PAINT = np.array([[235, 235, 230], [190, 192, 195], [150, 30, 35], [35, 60, 140],
                           [70, 72, 75], [210, 180, 40], [40, 95, 60], [25, 25, 28], [120, 90, 60]],
                          dtype=np.float32)
_CLOTHES = np.array([[40, 40, 45], [120, 30, 30], [30, 50, 110], [200, 200, 190], [90, 110, 60],
                     [160, 120, 60], [70, 70, 70], [180, 70, 120]], dtype=np.float32)
_FACADES = np.array([[190, 170, 140], [150, 80, 60], [160, 160, 155], [215, 205, 180],
                     [120, 110, 100], [175, 140, 110]], dtype=np.float32)
_SIGN_COLOURS = ((200, 30, 30), (30, 70, 170), (230, 200, 40), (235, 235, 235))
_BARRIER = np.array([150, 141, 126], dtype=np.float32)  # walls and fences share it


def _noise_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Smooth tileable value noise in [0, 1]: sum of upsampled random grids (octaves)."""
    total = np.zeros((size, size), np.float32)
    for octave, weight in ((8, 0.45), (32, 0.3), (128, 0.25)):
        grid = rng.random((octave, octave)).astype(np.float32)
        grid = np.tile(grid, (3, 3))
        up = cv2.resize(grid, (size * 3, size * 3), interpolation=cv2.INTER_CUBIC)
        total += weight * up[size:2 * size, size:2 * size]
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def _tex(noise: np.ndarray, u: np.ndarray, v: np.ndarray, scale: float, offset: float = 0.0) -> np.ndarray:
    n = noise.shape[0]
    iu = np.floor(u * scale + offset).astype(np.int64) % n
    iv = np.floor(v * scale + 1.7 * offset).astype(np.int64) % n
    return noise[iv, iu]


# --- materials: (u, v, noise) -> ((n, 3) float colours, (n,) label ids or None for the rect's) ---
def _flat(colour: np.ndarray, amp: float, scale: float, offset: float) -> Callable:
    def material(u: np.ndarray, v: np.ndarray, noise: np.ndarray):
        t = _tex(noise, u, v, scale, offset)
        return colour[None] * (1 + amp * (t[:, None] - 0.5)), None
    return material


def _ground(road_half: float, sidewalk: float, offset: float, left_walk: bool = True) -> Callable:
    def material(u: np.ndarray, v: np.ndarray, noise: np.ndarray):
        x, z = u - 60.0, v  # the ground rect spans x in [-60, 60]
        ax = np.abs(x)
        fine = _tex(noise, x, z, 9.0, offset)[:, None]
        coarse = _tex(noise, x, z, 1.3, offset + 31)[:, None]
        colour = np.empty((x.size, 3), np.float32)
        label = np.full(x.size, TERRAIN, np.uint8)
        region = np.full(x.size, 3, np.int32)
        road = ax < road_half
        curb = (ax >= road_half) & (ax < road_half + 0.18)
        walk = (ax >= road_half + 0.18) & (ax < road_half + sidewalk)
        if not left_walk:  # a terrain verge left of the road
            curb &= x > 0
            walk &= x > 0
        colour[:] = np.array([105, 115, 70], np.float32) * (0.8 + 0.4 * coarse)  # terrain
        colour[road] = (np.array([98, 98, 102], np.float32) * (0.78 + 0.3 * fine + 0.2 * coarse))[road]
        dash = (np.abs(x) < 0.09) & (np.mod(z, 9.0) < 3.2)
        edge = (np.abs(ax - (road_half - 0.25)) < 0.07)
        colour[road & (dash | edge)] = 215
        tiles = (np.mod(x, 0.6) < 0.04) | (np.mod(z, 0.6) < 0.04)
        walk_col = np.array([112, 110, 108], np.float32) * (0.82 + 0.25 * fine + 0.15 * coarse)
        walk_col[tiles] *= 0.82
        colour[walk] = walk_col[walk]
        colour[curb] = (np.array([150, 150, 148], np.float32) * (0.9 + 0.15 * fine))[curb]
        label[road] = ROAD
        label[curb | walk] = SIDEWALK
        region[road], region[curb], region[walk] = 0, 1, 2
        return colour, label, region
    return material


def _facade(colour: np.ndarray, offset: float, floor_h: float, window_w: float) -> Callable:
    def material(u: np.ndarray, v: np.ndarray, noise: np.ndarray):
        t = _tex(noise, u, v, 6.0, offset)[:, None]
        col = colour[None] * (0.85 + 0.3 * t)
        fu, fv = np.mod(u, window_w) / window_w, np.mod(v, floor_h) / floor_h
        window = (fu > 0.22) & (fu < 0.78) & (fv > 0.35) & (fv < 0.85) & (v > 1.2)
        glass = np.array([45, 55, 70], np.float32) * (0.7 + 0.6 * _tex(noise, u, v, 2.0, offset + 7))[:, None]
        col[window] = glass[window]
        return col, None
    return material


def _barrier(kind: int, offset: float) -> Callable:
    """Walls (blocks) and fences (slats) share colour and noise; only the pattern differs."""
    def material(u: np.ndarray, v: np.ndarray, noise: np.ndarray):
        t = _tex(noise, u, v, 7.0, offset)[:, None]
        col = _BARRIER[None] * (0.82 + 0.32 * t)
        if kind == WALL:
            row = np.floor(v / 0.4)
            joint = (np.mod(v, 0.4) < 0.035) | (np.mod(u + 0.3 * (row % 2), 0.8) < 0.035)
        else:
            joint = (np.mod(u, 0.16) < 0.035) | (np.abs(v - 0.25) < 0.03)
        col[joint] *= 0.72
        return col, None
    return material


def _vehicle_side(paint: np.ndarray, height: float, offset: float, windows: str, length: float) -> Callable:
    def material(u: np.ndarray, v: np.ndarray, noise: np.ndarray):
        t = _tex(noise, u, v, 3.0, offset)[:, None]
        col = paint[None] * (0.93 + 0.12 * t)
        if windows == "band":  # cars and buses: a glass band on the upper part
            glass = (v > 0.55 * height) & (v < 0.9 * height) & (u > 0.25) & (u < length - 0.25)
            if length > 6:  # bus: separate windows
                glass &= np.mod(u, 1.4) > 0.12
            col[glass] = np.array([40, 48, 58], np.float32)
        wheel = (v < 0.35) & ((np.abs(u - 0.9) < 0.38) | (np.abs(u - (length - 0.9)) < 0.38))
        col[wheel] = 22
        return col, None
    return material


def _vehicle_end(paint: np.ndarray, width: float, height: float, offset: float, glass: bool) -> Callable:
    def material(u: np.ndarray, v: np.ndarray, noise: np.ndarray):
        t = _tex(noise, u, v, 3.0, offset)[:, None]
        col = paint[None] * (0.9 + 0.12 * t)
        if glass:
            window = (v > 0.58 * height) & (v < 0.9 * height) & (u > 0.15) & (u < width - 0.15)
            col[window] = np.array([38, 45, 55], np.float32)
        lights = (v > 0.45 * height) & (v < 0.55 * height) & ((u < 0.3) | (u > width - 0.3))
        col[lights] = np.array([190, 40, 30], np.float32)
        col[v < 0.3] *= 0.35
        return col, None
    return material


def _clothes(top: np.ndarray, bottom: np.ndarray, height: float, split: float) -> Callable:
    skin = np.array([200, 160, 130], np.float32)

    def material(u: np.ndarray, v: np.ndarray, noise: np.ndarray):
        col = np.where((v > split)[:, None], top[None], bottom[None]).astype(np.float32)
        col[v > height - 0.25] = skin
        return col * (0.9 + 0.2 * _tex(noise, u, v, 12.0)[:, None]), None
    return material


def _silhouette(width: float, height: float, riding: bool) -> Callable:
    """A person seen from the front or back: head, shoulders, and legs apart (or bent on a bike)."""
    def alpha(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        x = (u - width / 2) / (width / 2)  # -1..1
        h = v / height
        head = (x**2 * (width / 2) ** 2 + (h - 0.92) ** 2 * height**2) < (0.11**2)
        torso = (h > 0.45) & (h < 0.82) & (np.abs(x) < 0.85 - 0.3 * (h - 0.45))
        neck = (h >= 0.82) & (h < 0.86) & (np.abs(x) < 0.25)
        if riding:
            legs = (h <= 0.45) & (h > 0.05) & (np.abs(x) < 0.55) & (np.abs(x) > 0.12)
        else:
            legs = (h <= 0.45) & (np.abs(x) < 0.6) & (np.abs(x) > 0.08 + 0.1 * (0.45 - h))
        return head | torso | neck | legs
    return alpha


def _wheels(length: float, thick: float = 1.0) -> Callable:
    """A bicycle from the side: two wheels (tyre and spokes read as one dark disc) and a frame
    whose tubes are ``thick`` times 0.14 m (0.16 m for the seat post)."""
    def alpha(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        r = 0.34
        wheels = np.zeros(u.shape, bool)
        for cx in (r, length - r):
            wheels |= ((u - cx) ** 2 + (v - r) ** 2) < r**2
        frame = (np.abs(v - 0.55) < 0.07 * thick) & (u > r) & (u < length - r)
        post = (np.abs(u - length / 2) < 0.08 * thick) & (v > r) & (v < 0.8)
        return wheels | frame | post
    return alpha


def _box(rects: list[Rect], x0: float, x1: float, z0: float, z1: float, height: float, label: int,
         vel: tuple[float, float, float], side: Callable, end: Callable, y0: float = 0.0) -> None:
    """Five faces of a box (no bottom)."""
    rects += [
        Rect(0, x0, (y0, z0), (y0 + height, z1), label, side, vel, shade=0.8),
        Rect(0, x1, (y0, z0), (y0 + height, z1), label, side, vel, shade=0.8),
        Rect(2, z0, (x0, y0), (x1, y0 + height), label, end, vel, shade=1.0),
        Rect(2, z1, (x0, y0), (x1, y0 + height), label, end, vel, shade=1.0),
        Rect(1, y0 + height, (x0, z0), (x1, z1), label, end, vel, shade=1.1),
    ]


def build_scene(config: SynthConfig, record: int) -> Scene:
    """The street of one record: static layout, moving agents, camera path and lighting."""
    rng = np.random.default_rng([config.seed, record, 7])
    frames = config.frames_per_record
    per_frame = 1.0 / config.fps  # m/s → metres per frame
    speed = rng.uniform(*config.speed) * per_frame
    length = speed * frames * 1.15 + 90.0  # the street must reach beyond the last frame's view
    road_half, sidewalk = 5.0, 2.6  # two lanes (centres ±1.9) and a parking strip each side
    thin = config.thin_scale
    line = road_half + sidewalk  # facade line
    rects: list[Rect] = []
    off = lambda: float(rng.uniform(0, 256))  # noqa: E731 - texture offsets
    look = config.look
    rects.append(Rect(1, 0.0, (-60.0, -30.0), (60.0, length + 60), ROAD,
                      _ground(road_half, sidewalk, off(), look.sidewalks == "both"), shade=1.0))
    counts: dict[str, int] = {}

    def count(kind: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1

    for sign in (-1.0, 1.0):
        z = -20.0
        row = look.front_row if sign < 0 or look.front_row_right is None else look.front_row_right
        while z < length + 40:  # front row: buildings, walls, fences, vegetation, gaps
            seg = float(rng.uniform(6, 22))
            kind = rng.choice(["building", "wall", "fence", "vegetation", "gap"], p=list(row))
            if kind == "building":
                h = float(rng.uniform(6, 16))
                rects.append(Rect(0, sign * line, (0, z), (h, z + seg), BUILDING,
                                  _facade(_FACADES[rng.integers(len(_FACADES))], off(),
                                          float(rng.uniform(2.8, 3.6)), float(rng.uniform(1.6, 2.6))),
                                  shade=0.85))
                x_near, x_far = sorted((sign * line, sign * (line + 6)))  # the building's end wall
                rects.append(Rect(2, z, (x_near, 0), (x_far, h), BUILDING,
                                  _flat(_FACADES[rng.integers(len(_FACADES))], .3, 4, off()), shade=0.95))
            elif kind in ("wall", "fence"):
                label = WALL if kind == "wall" else FENCE
                h = float(rng.uniform(1.2, 2.6))
                rects.append(Rect(0, sign * line, (0, z), (h, z + seg), label, _barrier(label, off()),
                                  shade=0.85))
            elif kind == "vegetation":
                h = float(rng.uniform(2.5, 7))
                top = off()
                veg = _flat(np.array([70, 110, 45], np.float32), 0.7, 2.5, off())

                def canopy(u: np.ndarray, v: np.ndarray, h: float = h, top: float = top) -> np.ndarray:
                    wobble = np.sin(u * 1.7 + top) * 0.6 + np.sin(u * 4.1 + 2 * top) * 0.35
                    return v < h - 0.9 + wobble

                rects.append(Rect(0, sign * (line + 0.5), (0, z), (h, z + seg), VEGETATION, veg,
                                  alpha=canopy, shade=0.9))
            count(str(kind))
            z += seg
        z = -20.0 if look.back_row else math.inf
        while z < length + 80:  # back row of buildings
            seg = float(rng.uniform(10, 30))
            h = float(rng.uniform(9, 24))
            rects.append(Rect(0, sign * (line + 9), (0, z), (h, z + seg), BUILDING,
                              _facade(_FACADES[rng.integers(len(_FACADES))], off(), 3.2, 2.2), shade=0.8))
            z += seg
        z = float(rng.uniform(0, 15))
        while z < length:  # poles, half of them with a sign
            x = sign * (road_half + sidewalk - 0.5)
            h = float(rng.uniform(4, 6.5))
            grey = _flat(np.array([110, 110, 112], np.float32), 0.1, 5, off())
            r = 0.12 * thin  # half the pole's width
            rects.append(Rect(2, z, (x - r, 0), (x + r, h), POLE, grey))
            rects.append(Rect(0, x - sign * r, (0, z), (h, z + 2 * r), POLE, grey, shade=0.8))
            if rng.random() < 0.5:
                w = float(rng.uniform(0.5, 0.9)) * thin
                colour = np.array(_SIGN_COLOURS[rng.integers(len(_SIGN_COLOURS))],
                                  np.float32)
                rects.append(Rect(2, z - 0.02, (x - w / 2, h - w - 0.1), (x + w / 2, h - 0.1), SIGN,
                                  _flat(colour, 0.15, 3, off())))
            count("pole")
            z += float(rng.uniform(12, 30))

    def vehicle(x: float, z0: float, vz: float, parked: bool = False) -> None:
        kind = CAR if parked else rng.choice([CAR, TRUCK, BUS], p=list(look.vehicles))
        paint = _VEHICLE_PAINT[rng.integers(len(_VEHICLE_PAINT))]
        vel = (0.0, 0.0, vz)
        if kind == CAR:
            w, h, ln = 1.8, float(rng.uniform(1.35, 1.6)), float(rng.uniform(3.9, 4.7))
            _box(rects, x - w / 2, x + w / 2, z0, z0 + ln, h, CAR, vel,
                 _vehicle_side(paint, h, off(), "band", ln), _vehicle_end(paint, w, h, off(), True))
        elif kind == BUS:
            w, h, ln = 2.5, float(rng.uniform(2.9, 3.3)), float(rng.uniform(10, 12))
            _box(rects, x - w / 2, x + w / 2, z0, z0 + ln, h, BUS, vel,
                 _vehicle_side(paint, h, off(), "band", ln), _vehicle_end(paint, w, h, off(), True))
        else:  # truck: a cab and a taller plain cargo box (textureless); the cab leads
            w, cab, box_l = 2.3, 2.1, float(rng.uniform(5, 7.5))
            cargo = _VEHICLE_PAINT[rng.integers(len(_VEHICLE_PAINT))]
            z_cab, z_box = (z0 + box_l, z0) if vz >= 0 else (z0, z0 + cab)
            _box(rects, x - w / 2, x + w / 2, z_cab, z_cab + cab, 2.6, TRUCK, vel,
                 _vehicle_side(paint, 2.6, off(), "none", cab), _vehicle_end(paint, w, 2.6, off(), True))
            _box(rects, x - w / 2 - 0.05, x + w / 2 + 0.05, z_box, z_box + box_l, 3.3, TRUCK, vel,
                 _flat(cargo, 0.06, 2, off()), _vehicle_end(cargo, w + 0.1, 3.3, off(), False))
        count({CAR: "car", TRUCK: "truck", BUS: "bus"}[int(kind)])

    d = config.density * look.density
    lead_gap = float(rng.uniform(10, 25))
    vehicle(1.9, lead_gap + 4, speed * float(rng.uniform(1.0, 1.12)))  # ahead in our lane, never caught up
    oncoming = -float(rng.uniform(5.0, 11.0)) * per_frame
    z = float(rng.uniform(10, 30))
    while z < length - oncoming * frames:
        vehicle(-1.9, z, oncoming)
        z += float(rng.uniform(14, 40)) / d
    for sign in (-1.0, 1.0):  # parked cars along both curbs
        z = float(rng.uniform(5, 20))
        while z < length:
            if rng.random() < 0.55:
                vehicle(sign * (road_half - 0.95), z, 0.0, parked=True)
            z += float(rng.uniform(9, 26)) / d

    def person(x: float, z: float, vx: float, vz: float, riding: bool) -> None:
        w, h = 0.55 * thin**0.5, float(rng.uniform(1.55, 1.9))
        top, bottom = _CLOTHES[rng.integers(len(_CLOTHES))], _CLOTHES[rng.integers(len(_CLOTHES))]
        y0 = 0.55 if riding else 0.0
        h = h * (0.8 if riding else 1.0)
        rects.append(Rect(2, z, (x - w / 2, y0), (x + w / 2, y0 + h), RIDER if riding else PERSON,
                          _clothes(top, bottom, h, 0.45 * h), (vx, 0.0, vz), alpha=_silhouette(w, h, riding)))
        if riding:
            dark = _flat(np.array([30, 30, 32], np.float32), 0.2, 4, off())
            rects.append(Rect(0, x, (0.0, z - 0.85), (0.95, z + 0.85), BICYCLE, dark, (vx, 0.0, vz),
                              alpha=_wheels(1.7, thin), shade=0.9))
            rects.append(Rect(2, z + 0.01, (x - 0.08 * thin, 0), (x + 0.08 * thin, 0.8), BICYCLE, dark,
                              (vx, 0.0, vz)))
        count("rider" if riding else "person")

    for sign in (-1.0, 1.0):
        z = float(rng.uniform(2, 10))
        while z < length:
            walk = float(rng.choice([-1, 1]) * rng.uniform(0.9, 1.7)) * per_frame
            person(sign * float(rng.uniform(road_half + 0.8, road_half + 2.3)), z, 0.0, walk, False)
            z += float(rng.uniform(4, 16)) / d
    for _ in range(max(1, int(round(length / 60 * d)))):  # crossing the road ahead
        z = float(rng.uniform(15, length))
        start = float(rng.choice([-1, 1]))
        cross = -start * float(rng.uniform(0.9, 1.6)) * per_frame
        person(start * float(rng.uniform(3, road_half + 1.5)), z, cross, 0.0, False)
    z = float(rng.uniform(8, 30))
    while z < length:  # riders with the traffic near the right curb, and oncoming on the left
        if rng.random() < 0.6:
            person(2.9, z, 0.0, speed * float(rng.uniform(1.0, 1.2)), True)  # ahead, pulling away
        else:
            person(-2.9, z, 0.0, -float(rng.uniform(3.0, 6.0)) * per_frame, True)
        z += float(rng.uniform(20, 45)) / d

    sid = 1
    for rect in rects:  # unique surface ids (the ground takes four)
        rect.sid = sid
        sid += 4 if rect.axis == 1 and rect.c == 0.0 and rect.label == ROAD else 1

    phases = rng.uniform(0, 2 * math.pi, 5)
    yaw_amp, pitch_amp = math.radians(config.yaw_jitter_deg), math.radians(config.pitch_jitter_deg)
    x_base = 1.9

    def camera(t: float) -> tuple[np.ndarray, np.ndarray]:
        sec = t / config.fps  # the jitter has fixed frequencies in seconds
        centre = np.array([x_base + 0.25 * math.sin(0.9 * sec + phases[0]), config.camera_height
                           + 0.02 * math.sin(8.0 * sec + phases[4]), speed * t])
        yaw = yaw_amp * math.sin(2.1 * sec + phases[1])
        pitch = pitch_amp * math.sin(3.7 * sec + phases[2]) + 0.3 * pitch_amp * math.sin(13 * sec + phases[3])
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        return centre, r_yaw @ r_pitch  # columns: camera right, up, forward in world coordinates

    drift_phase = float(rng.uniform(0, 2 * math.pi))
    def gain(t: float) -> float:  # lighting drift over a period of about 5 s
        return 1.0 + config.lighting_drift * math.sin(2 * math.pi * t / (5.5 * config.fps) + drift_phase)
    noise = _noise_texture(rng)
    horizon_col = np.array(rng.uniform([150, 175, 200], [185, 200, 225]), np.float32)
    zenith_col = np.array(rng.uniform([50, 90, 160], [80, 125, 200]), np.float32)
    grain = None
    if look.grain:  # drawn from its own generator: the other draws stay those of the street
        grain = np.random.default_rng([config.seed, record, 8]).random((256, 256)).astype(np.float32)
    return Scene(rects, noise, (horizon_col, zenith_col), camera, gain,
                 {"speed": speed, "length": length, "counts": counts}, look, grain)


# ---------------------------------------------------------------------------------------------
# Rendering: exact per-pixel ray casting
# ---------------------------------------------------------------------------------------------
@dataclass
class Render:
    """What one frame's camera sees at every pixel."""

    image: np.ndarray  # (H, W, 3) float32, before noise
    label: np.ndarray  # (H, W) uint8 official label ids
    sid: np.ndarray  # (H, W) int32 surface id, 0 = sky
    point: np.ndarray  # (H, W, 3) float64 world point (sky: the ray direction)
    vel: np.ndarray  # (H, W, 3) float64 velocity of the surface, metres per frame
    depth: np.ndarray  # (H, W) float64 camera-z depth, inf for sky
    centre: np.ndarray
    rotation: np.ndarray


def _intrinsics(config: SynthConfig) -> tuple[float, float, float]:
    return config.focal * config.width, (config.width - 1) / 2, config.horizon * (config.height - 1)


def _project(config: SynthConfig, centre: np.ndarray, rotation: np.ndarray, points: np.ndarray,
             direction: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points (…, 3) → pixel x, pixel y, camera depth (directions: no translation)."""
    f, cx, cy = _intrinsics(config)
    rel = points if direction else points - centre
    cam = rel @ rotation  # (…, 3) in camera axes right, up, forward
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return cx + f * cam[..., 0] / z, cy - f * cam[..., 1] / z, z


def render(config: SynthConfig, scene: Scene, t: float) -> Render:
    """Ray-cast frame ``t`` (a float: motion blur renders between frames)."""
    H, W = config.height, config.width
    f, cx, cy = _intrinsics(config)
    centre, rotation = scene.camera(t)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    cam_dirs = np.stack([(xs - cx) / f, -(ys - cy) / f, np.ones_like(xs)], axis=-1)
    dirs = cam_dirs @ rotation.T  # world direction per pixel, with unit camera-z component
    depth = np.full((H, W), np.inf)
    sid = np.zeros((H, W), np.int32)
    label = np.full((H, W), SKY, np.uint8)
    image = np.zeros((H, W, 3), np.float32)
    vel = np.zeros((H, W, 3))
    other = {0: (1, 2), 1: (0, 2), 2: (0, 1)}
    for rect in scene.rects:
        v = np.asarray(rect.vel)
        a, (b0, b1) = rect.axis, other[rect.axis]
        plane = rect.c + v[a] * t
        lo = (rect.lo[0] + v[b0] * t, rect.lo[1] + v[b1] * t)
        hi = (rect.hi[0] + v[b0] * t, rect.hi[1] + v[b1] * t)
        corners = np.zeros((4, 3))
        corners[:, a] = plane
        corners[:, b0] = [lo[0], lo[0], hi[0], hi[0]]
        corners[:, b1] = [lo[1], hi[1], lo[1], hi[1]]
        px, py, pz = _project(config, centre, rotation, corners)
        if np.all(pz < NEAR):
            continue
        if np.any(pz < NEAR):
            u0, u1, v0, v1 = 0, W, 0, H
        else:
            u0, u1 = max(int(np.floor(px.min())), 0), min(int(np.ceil(px.max())) + 1, W)
            v0, v1 = max(int(np.floor(py.min())), 0), min(int(np.ceil(py.max())) + 1, H)
            if u0 >= u1 or v0 >= v1:
                continue
        d = dirs[v0:v1, u0:u1]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (plane - centre[a]) / d[..., a]
            ub = centre[b0] + s * d[..., b0] - lo[0]
            vb = centre[b1] + s * d[..., b1] - lo[1]
            inside = (s > NEAR) & (ub >= 0) & (ub <= hi[0] - lo[0]) & (vb >= 0) & (vb <= hi[1] - lo[1])
            inside &= s < depth[v0:v1, u0:u1]
        if not inside.any():
            continue
        iy, ix = np.nonzero(inside)
        u_loc, v_loc = ub[iy, ix], vb[iy, ix]
        if rect.alpha is not None:
            keep = rect.alpha(u_loc, v_loc)
            iy, ix, u_loc, v_loc = iy[keep], ix[keep], u_loc[keep], v_loc[keep]
            if iy.size == 0:
                continue
        out = rect.material(u_loc, v_loc, scene.noise)
        colour, labels = out[0], out[1]
        if scene.grain is not None:  # ≈ 4 cm cells, a different patch of the noise per surface
            fine = _tex(scene.grain, u_loc, v_loc, 25.0, 17.0 * rect.sid)[:, None]
            colour = colour * (1 + scene.style.grain * 2 * (fine - 0.5))
        gy, gx = iy + v0, ix + u0
        depth[gy, gx] = s[iy, ix]
        image[gy, gx] = colour * rect.shade
        label[gy, gx] = labels if labels is not None else rect.label
        sid[gy, gx] = rect.sid + (out[2] if len(out) > 2 else 0)
        vel[gy, gx] = v
    point = centre + depth[..., None] * dirs
    sky = ~np.isfinite(depth)
    point[sky] = dirs[sky]
    # sky: a gradient with faint clouds, at infinity (it moves only with the camera's rotation)
    elevation = np.clip(dirs[..., 1] / np.linalg.norm(dirs, axis=-1), 0, 1)[..., None]
    horizon_col, zenith_col = scene.sky
    sky_col = horizon_col * (1 - elevation ** 0.6) + zenith_col * elevation ** 0.6
    az = np.arctan2(dirs[..., 0], dirs[..., 2])
    cloud = _tex(scene.noise, az * 60, elevation[..., 0] * 60, 1.0)
    sky_col = sky_col + 25 * np.clip(cloud - 0.55, 0, 1)[..., None]
    image[sky] = sky_col[sky]
    # distance haze towards the horizon colour
    haze = (1 - np.exp(-np.where(sky, 0, depth) / 140.0))[..., None]
    image = np.where(sky[..., None], image, image * (1 - haze) + horizon_col * haze)
    image *= scene.gain(t)
    look = scene.style
    if look.contrast != 1.0:
        image = 128 + (image - 128) * look.contrast
    if look.tint != (1.0, 1.0, 1.0):
        image = image * np.asarray(look.tint, np.float32)
    return Render(image.astype(np.float32), label, sid, point, vel, depth, centre, rotation)


def true_flow(config: SynthConfig, src: Render, dst: Render, dt: int) -> tuple[np.ndarray, np.ndarray]:
    """Flow taking each pixel of ``src`` to its position in ``dst`` (``dt`` = ±1 frames) + validity."""
    H, W = config.height, config.width
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    sky = src.sid == 0
    moved = src.point + dt * src.vel
    px, py, pz = _project(config, dst.centre, dst.rotation, moved)
    sx, sy, sz = _project(config, dst.centre, dst.rotation, src.point, direction=True)
    px, py, pz = np.where(sky, sx, px), np.where(sky, sy, py), np.where(sky, sz, pz)
    flow = np.stack([px - xs, py - ys], axis=-1).astype(np.float32)
    ix, iy = np.rint(px), np.rint(py)
    inside = (pz > NEAR) & (ix >= 0) & (ix <= W - 1) & (iy >= 0) & (iy <= H - 1)
    valid = np.zeros((H, W), bool)
    jx, jy = ix[inside].astype(np.int64), iy[inside].astype(np.int64)
    valid[inside] = dst.sid[jy, jx] == src.sid[inside]
    flow[~np.isfinite(flow)] = 0
    return flow, valid


# ---------------------------------------------------------------------------------------------
# Writing a world
# ---------------------------------------------------------------------------------------------
def _npy(path: Path, array: np.ndarray) -> None:
    atomic_save(path, lambda handle: np.save(handle, array, allow_pickle=False))


def _frame_paths(out: Path, record: int, frame: int) -> dict[str, Path]:
    ref = FrameRef(SPLIT, CITY, f"{record:06d}", frame)
    flow_b, valid_b = ref.flow(out, "backward")
    flow_f, valid_f = ref.flow(out, "forward")
    return {"image": ref.image(out), "label": ref.label(out), "flow_backward": flow_b,
            "valid_backward": valid_b, "flow_forward": flow_f, "valid_forward": valid_f}


def generate_record(config: SynthConfig, out: Path, record: int) -> dict[str, Any]:
    """Render and write every frame of one record; returns its summary (class pixel counts, …)."""
    scene = build_scene(config, record)
    frames = config.frames_per_record
    pixel_counts = np.zeros(256, np.int64)
    valid_share = []
    prev: Render | None = None
    current = render(config, scene, 0.0)
    for frame in range(frames):
        nxt = render(config, scene, float(frame + 1)) if frame + 1 < frames else None
        paths = _frame_paths(out, record, frame)
        image = current.image
        if config.motion_blur > 1:  # average sub-frame renders over half a frame of exposure
            subs = [render(config, scene, frame - 0.5 * j / config.motion_blur).image
                    for j in range(1, config.motion_blur)]
            image = (image + sum(subs)) / config.motion_blur
        rng = np.random.default_rng([config.seed, record, frame, 11])
        noisy = image + rng.normal(0, config.noise_sigma, image.shape).astype(np.float32)
        rgb = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        atomic_write_png(paths["image"], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        atomic_write_png(paths["label"], current.label)
        for direction, other, dt in (("backward", prev, -1), ("forward", nxt, 1)):
            if other is None:
                flow = np.zeros((config.height, config.width, 2), np.float32)
                valid = np.zeros((config.height, config.width), bool)
            else:
                flow, valid = true_flow(config, current, other, dt)
                if direction == "backward":
                    valid_share.append(float(valid.mean()))
            _npy(paths[f"flow_{direction}"], flow)
            atomic_write_png(paths[f"valid_{direction}"], valid.astype(np.uint8) * 255)
        pixel_counts += np.bincount(current.label.ravel(), minlength=256)
        prev, current = current, nxt
    return {"record": record, "frames": frames, "camera_m_per_frame": round(scene.meta["speed"], 4),
            "objects": scene.meta["counts"],
            "mean_backward_valid_share": round(float(np.mean(valid_share)), 4) if valid_share else 0.0,
            "label_pixels": {int(i): int(n) for i, n in enumerate(pixel_counts) if n}}


def _record_job(args: tuple[SynthConfig, str, int]) -> dict[str, Any]:
    config, out, record = args
    marker = Path(out) / ".progress" / f"record_{record:06d}.json"
    if marker.is_file():  # finished before a kill: keep it
        return json.loads(marker.read_text())
    summary = generate_record(config, Path(out), record)
    atomic_write_json(marker, summary)
    return summary


def generate_world(config: SynthConfig, out: str | Path, workers: int | None = None,
                   progress: bool = True) -> Path:
    """Write the whole world under ``out``; resumes record by record after a kill.

    ``world.json`` is written last: its presence means the world is complete. While it writes,
    ``out`` is held for this run alone (:func:`wrp.io.exclusive_folder`), and the config of the
    records already written is kept beside them (``.progress/config.json``): a run of another config
    into the same folder, concurrent or after a kill, is refused instead of mixing two worlds.
    """

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; give --out a folder")
    if _finished(config, out):
        return out
    with exclusive_folder(out / ".progress", "wrp synth"):
        if _finished(config, out):  # another run finished it while this one waited
            return out
        started = out / ".progress" / "config.json"
        if started.is_file() and json.loads(started.read_text()) != config_json(config):
            raise FileExistsError(f"{out} holds part of another synthetic world (its config: {started}); "
                                  "resume it with the same settings, or choose another --out")
        atomic_write_json(started, config_json(config))
        for stray in out.rglob(".*.tmp"):  # half-written files of a run killed mid-write
            stray.unlink(missing_ok=True)
        _generate(config, out, workers, progress)
        for stray in out.rglob(".*.tmp"):
            stray.unlink(missing_ok=True)
    return out


def _finished(config: SynthConfig, out: Path) -> bool:
    """True when ``out`` holds the finished world of ``config``; an error when it holds another's."""
    world_file = out / "world.json"
    if not world_file.is_file():
        return False
    try:
        existing = json.loads(world_file.read_text())
    except json.JSONDecodeError as exc:
        raise FileExistsError(f"{world_file} is damaged ({exc}); delete {out} and render the world again"
                              ) from None
    if existing.get("config") != config_json(config):
        raise FileExistsError(f"{out} already holds a different synthetic world (see {world_file}); "
                              "choose another --out or delete that folder")
    return True


def _generate(config: SynthConfig, out: Path, workers: int | None, progress: bool) -> None:
    world_file = out / "world.json"
    jobs = [(config, str(out), r) for r in range(config.records)]
    workers = workers or min(os.cpu_count() or 1, config.records, 8)
    bar = progress_bar(total=config.records, desc="synthetic world (records)", unit="record",
                       disable=not progress)
    summaries = []
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for summary in pool.imap_unordered(_record_job, jobs):
                summaries.append(summary)
                bar.update()
    else:
        for job in jobs:
            summaries.append(_record_job(job))
            bar.update()
    bar.close()
    summaries.sort(key=lambda s: s["record"])

    totals = np.zeros(256, np.int64)
    for s in summaries:
        for k, n in s["label_pixels"].items():
            totals[int(k)] += n
    share = {CLASS_NAMES[LABEL_TO_TRAIN[i]]: round(float(totals[i] / totals.sum()), 5)
             for i in LABEL_IDS if totals[i] and LABEL_TO_TRAIN[i] < len(CLASS_NAMES)}
    atomic_write_json(world_file, {
        "version": WORLD_VERSION,
        "config": config_json(config),
        "layout": {"split": SPLIT, "city": CITY, "label_ids": list(LABEL_IDS)},
        "flow": "float32 (H, W, 2) .npy, x then y, in pixels; backward: pixel of frame t → its "
                "position in frame t-1; forward: → t+1; valid_*.png 255 where the point is seen in both",
        "class_pixel_share": share,
        "records": summaries,
    })


def load_frames(root: str | Path, record: int, frames: list[int],
                direction: str = "backward") -> dict[str, list[np.ndarray]]:
    """Images, labels (train ids), true flows and validity masks of some frames of one record."""

    out: dict[str, list[np.ndarray]] = {"images": [], "labels": [], "flows": [], "valids": []}
    for frame in frames:
        ref = FrameRef(SPLIT, CITY, f"{record:06d}", frame)
        flow_path, valid_path = ref.flow(Path(root), direction)
        out["images"].append(read_image(ref.image(Path(root))))
        out["labels"].append(read_label(ref.label(Path(root))))
        out["flows"].append(np.load(flow_path))
        out["valids"].append(cv2.imread(str(valid_path), cv2.IMREAD_GRAYSCALE) > 127)
    return out


def config_json(config: SynthConfig) -> dict[str, Any]:
    """The config as JSON (``world.json``, the ``synth`` stage's key): fields added later appear only
    when set (``wrp.cache.ADDED_LATER``), so the original street's worlds keep their key."""
    return canonical_config(config)


if __name__ == "__main__":  # python -m wrp.synthetic CONFIG_JSON OUT [--no-progress]
    import signal
    import sys

    # stopped (e.g. its parent died: wrp.runtime.run_child), leave through SystemExit so the worker
    # pool is terminated too instead of finishing records on its own
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cfg = json.loads(sys.argv[1])
    cfg["speed"] = tuple(cfg["speed"])
    generate_world(SynthConfig(**cfg), sys.argv[2], progress="--no-progress" not in sys.argv)
