"""Figures: the Cityscapes palette, label colouring, and the figures notebooks and ``figures/`` share.

Every figure of the project is made by a function here, so a notebook cell stays one call long and
the committed ``figures/`` look exactly like what a reader sees in the notebooks.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

from wrp.io import atomic_write_bytes
from wrp.metrics import mean_std

IGNORE_INDEX = 255


def _palette(key: str) -> np.ndarray:
    """(256, 3) uint8 lookup from a label index (``id`` or ``trainId``) to its official colour."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for label in _CITYSCAPES_LABELS:
        index = getattr(label, key)
        if 0 <= index < IGNORE_INDEX and not (key == "trainId" and label.ignoreInEval):
            lut[index] = label.color
    return lut


LABEL_ID_PALETTE = _palette("id")  # official label ids (the *_labelIds.png files)
TRAIN_ID_PALETTE = _palette("trainId")  # train ids 0..18; 255 (ignore) stays black


def colorize(label: np.ndarray, ids: str = "train") -> np.ndarray:
    """(H, W) integer label map → (H, W, 3) uint8 RGB in the Cityscapes colours.

    ``ids="train"`` reads train ids (255 = ignore → black); ``ids="label"`` reads official label ids.
    """
    if ids not in ("train", "label"):
        raise ValueError(f"ids={ids!r}; use 'train' or 'label'")
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"colorize expects an (H, W) label map, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"label values must lie in 0..255, got {label.min()}..{label.max()}")
    lut = TRAIN_ID_PALETTE if ids == "train" else LABEL_ID_PALETTE
    return lut[label.astype(np.int64)]


def save_figure(fig, path: str | os.PathLike[str], dpi: int = 130) -> Path:
    """Save a matplotlib figure atomically (PNG unless the suffix says otherwise)."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png",
                facecolor="white")
    return atomic_write_bytes(path, buffer.getvalue())


# ------------------------------------------------------------------------------------------
# The pipeline diagram (notebook 00)
# ------------------------------------------------------------------------------------------
_KIND_COLOURS = {
    "data": ("#eceff1", "#607d8b"),
    "geometric": ("#e3f2fd", "#1e88e5"),
    "semantic": ("#fff3e0", "#fb8c00"),
    "contribution": ("#e8f5e9", "#43a047"),
    "result": ("#f3e5f5", "#8e24aa"),
}
_KIND_NAMES = {
    "data": "data",
    "geometric": "geometric cue (motion)",
    "semantic": "semantic cue (segmenter)",
    "contribution": "the paper's contribution",
    "result": "what the labels are for",
}

# name: (x, y, kind, title, formula, (the object that implements it, the notebook that covers it)).
# The figure prints the module the object lives in, looked up when it is drawn, so it follows the code.
_PIPELINE_BOXES = {
    "video": (0.068, 0.50, "data", "Video",
              "$I_t$ for every frame,\nhuman $L_t$ for a few", ("wrp.synthetic.generate_world", "00")),
    "clips": (0.222, 0.50, "data", "Clips",
              "21-frame partitions,\ncentre frame labelled", ("wrp.data.build_manifest", "00")),
    "seg": (0.445, 0.85, "semantic", "Baseline segmenter $g_\\psi$",
            "trained on the human\nlabels only", ("wrp.models.segment", "02")),
    "warp": (0.445, 0.50, "geometric", "Warp-inpaint $\\Psi$",
             "warp $L_t$ along motion;\ninvalid pixels ← $g_\\psi(I_{t+1})$",
             ("wrp.propagation.warp_inpaint", "01")),
    "cycle": (0.445, 0.15, "contribution", "Cycle-consistency",
              "$t \\to t{+}p \\to t$ gives a noisy $l^\\circ_t$;\nlearn $\\Omega_\\lambda$: RMI to $L_t$",
              ("wrp.denoiser.Denoiser", "02")),
    "propagate": (0.69, 0.50, "contribution", "Warp-refine",
                  "$L^R = \\Omega_\\lambda(I_{t+1}, I^w_t, L^w_t)$,\nrecursively to $\\pm k$ frames",
                  ("wrp.policies.warp_refine", "03")),
    "tables": (0.925, 0.50, "result", "Better segmenters",
               "trained on human +\ngenerated labels (30/70)",
               ("wrp.tables.table1", "04 Table 1 · 05 Table 2")),
}


def pipeline_modules() -> dict[str, str]:
    """Each box of the pipeline diagram → the module that implements it, looked up in the code."""
    import pkgutil

    return {name: pkgutil.resolve_name(box[5][0]).__module__ for name, box in _PIPELINE_BOXES.items()}


# (from, to, label, where the label sits: "above", "right" or "below")
_PIPELINE_ARROWS = [
    ("video", "clips", "", ""),
    ("clips", "seg", "labelled\nframes", "above"),
    ("clips", "warp", "", ""),
    ("seg", "warp", "inpaint", "right"),
    ("warp", "cycle", "forth and\nback", "right"),
    ("warp", "propagate", "", ""),
    ("cycle", "propagate", "$\\Omega_\\lambda$", "below"),
    ("propagate", "tables", "a label for\nevery frame", "above"),
]


def pipeline_diagram(width: float = 15.0, height: float = 6.0):
    """Warp-Refine Propagation as a flow of stages, each box naming its module and notebook."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(-0.008, 1.008)
    ax.set_ylim(-0.06, 1.02)
    ax.axis("off")
    box_w, box_h = 0.135, 0.25
    modules = pipeline_modules()
    for name, (x, y, kind, title, formula, (_, notebook)) in _PIPELINE_BOXES.items():
        where = f"{modules[name]}\n{notebook}" if len(notebook) > 2 else f"{modules[name]} · {notebook}"
        face, edge = _KIND_COLOURS[kind]
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0.006,rounding_size=0.012",
                                    facecolor=face, edgecolor=edge, linewidth=1.8, zorder=2))
        ax.text(x, y + box_h / 2 - 0.03, title, ha="center", va="top", fontsize=10.5,
                fontweight="bold", zorder=3)
        ax.text(x, y + 0.005, formula, ha="center", va="center", fontsize=8.8, zorder=3)
        ax.text(x, y - box_h / 2 + 0.02, where, ha="center", va="bottom", fontsize=7.6,
                color="#455a64", family="monospace", zorder=3)

    def anchor(name: str, towards: str) -> tuple[float, float]:
        (x0, y0), (x1, y1) = _PIPELINE_BOXES[name][:2], _PIPELINE_BOXES[towards][:2]
        if abs(x1 - x0) < 1e-6:  # stacked boxes: leave through the top or bottom edge
            return x0, y0 + (box_h / 2 if y1 > y0 else -box_h / 2)
        return x0 + (box_w / 2 if x1 > x0 else -box_w / 2), y0

    for src, dst, label, place in _PIPELINE_ARROWS:
        start, end = anchor(src, dst), anchor(dst, src)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16,
                                     linewidth=1.6, color="#37474f", zorder=1,
                                     shrinkA=2, shrinkB=2))
        if label:
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            dx, dy, ha = {"above": (0, 0.07, "center"), "right": (0.008, 0, "left"),
                          "below": (0.012, -0.03, "left")}[place]
            ax.text(mx + dx, my + dy, label, ha=ha, va="center", fontsize=8.5,
                    color="#37474f", style="italic", zorder=3)
    # g_ψ also hands the OCR features of I_{t+1} to Ω_λ (supplementary Figure 2)
    (sx, sy), (cx, cy) = _PIPELINE_BOXES["seg"][:2], _PIPELINE_BOXES["cycle"][:2]
    ax.add_patch(FancyArrowPatch((sx - box_w / 2, sy - 0.04), (cx - box_w / 2, cy + 0.04),
                                 connectionstyle="arc3,rad=0.55", arrowstyle="-|>",
                                 mutation_scale=14, linewidth=1.4, linestyle="--",
                                 color="#fb8c00", zorder=1))
    ax.text(sx - box_w / 2 - 0.075, 0.30, "OCR features\nof $I_{t+1}$ feed $\\Omega_\\lambda$",
            fontsize=8.5, color="#e65100", style="italic", ha="center", va="center")
    ax.legend(handles=[Patch(facecolor=f, edgecolor=e, label=_KIND_NAMES[k])
                       for k, (f, e) in _KIND_COLOURS.items()],
              loc="lower center", bbox_to_anchor=(0.5, -0.09), ncol=5, frameon=False, fontsize=9.5)
    ax.set_title("Warp-Refine Propagation: from a few human labels to a label for every frame\n"
                 "(each box: the idea, its equation, and the module · notebook that covers it)",
                 fontsize=12)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------
# Motion: the flow colour wheel, and the synthetic world over time (notebook 00)
# ------------------------------------------------------------------------------------------
def flow_to_rgb(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """(H, W, 2) flow → (H, W, 3) uint8: hue = direction, saturation = length (the usual wheel).

    ``max_norm`` (pixels) is the length drawn fully saturated; default: the largest in ``flow``.
    """
    import cv2

    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow_to_rgb expects an (H, W, 2) flow, got shape {flow.shape}")
    norm, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1], angleInDegrees=True)
    top = max_norm if max_norm else max(float(norm.max()), 1e-6)
    hsv = np.zeros(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = np.clip(255 * norm / top, 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def flow_wheel(size: int = 64, max_norm: float = 1.0) -> np.ndarray:
    """The key to :func:`flow_to_rgb`: a disc whose pixel at offset (dx, dy) shows that flow."""
    r = np.linspace(-max_norm, max_norm, size, dtype=np.float32)
    dx, dy = np.meshgrid(r, r)
    wheel = flow_to_rgb(np.stack([dx, dy], -1), max_norm)
    wheel[np.hypot(dx, dy) > max_norm] = 255
    return wheel


def synthetic_world_figure(images: list[np.ndarray], labels: list[np.ndarray],
                           flows: list[np.ndarray], valids: list[np.ndarray], frames: list[int],
                           title: str = "", max_norm: float | None = None):
    """Frames of one record over time: image, label, true backward flow, and what was hidden.

    Columns are time steps; rows: the RGB frame, its label (Cityscapes colours, train ids), the
    true flow to the previous frame on the colour wheel (key in the corner), and the validity
    mask — red where the pixel was not visible in the previous frame (de-occluded or new).
    """
    import matplotlib.pyplot as plt

    n = len(frames)
    top = max_norm or max(float(np.abs(f).max()) for f in flows) or 1.0
    fig, axes = plt.subplots(4, n, figsize=(2.6 * n, 1.55 * 4 * images[0].shape[0] / images[0].shape[1] * 2),
                             squeeze=False)
    rows = ("frame $I_t$", "label $L_t$", "true flow to $t-1$", "hidden at $t-1$ (red)")
    for col, t in enumerate(frames):
        occl = images[col].copy()
        occl[~valids[col]] = (230, 30, 30)
        panels = (images[col], colorize(labels[col]), flow_to_rgb(flows[col], top), occl)
        for row, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t = {t}", fontsize=10)
            if col == 0:
                ax.set_ylabel(rows[row], fontsize=9)
    inset = axes[2, n - 1].inset_axes([0.78, 0.58, 0.22, 0.42])
    inset.imshow(flow_wheel(48))
    inset.set_axis_off()
    axes[2, n - 1].text(1.0, 0.5, f"±{top:.0f} px", transform=axes[2, n - 1].transAxes, fontsize=7,
                        ha="right", va="top", color="black")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------
# Cyclic warped labels (notebook 01, the paper's Figure 1)
# ------------------------------------------------------------------------------------------
def highlight_errors(label: np.ndarray, truth: np.ndarray, ignore: int = IGNORE_INDEX) -> np.ndarray:
    """Colour ``label`` and paint its wrong pixels bright red and its unlabelled ones black."""
    rgb = colorize(label).astype(np.float32)
    wrong = (label != truth) & (truth != ignore)
    rgb[wrong] = 0.25 * rgb[wrong] + 0.75 * np.array([255, 0, 0], np.float32)
    rgb[label == ignore] = 0
    return rgb.astype(np.uint8)


def _changed(label: np.ndarray, before: np.ndarray) -> np.ndarray:
    """``label`` coloured and washed out, its pixels of another class than ``before`` solid red."""
    rgb = 0.35 * colorize(label).astype(np.float32) + 0.65 * 255
    rgb[(label != before) & (label != IGNORE_INDEX) & (before != IGNORE_INDEX)] = (220, 0, 0)
    return rgb.astype(np.uint8)


def neighbour_change_figure(examples: list[dict], title: str = ""):
    """What the frames around a labelled one add, at several frame rates: per row the labelled frame,
    the frame d later, and its true label with the pixels whose class differs from the labelled
    frame's at the same place in red — views a segmenter trained on the labelled frame has not seen
    (``wrp.tables.neighbour_examples``)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 3, figsize=(11, 2.1 * len(examples) + 0.6), squeeze=False)
    for row, ex in zip(axes, examples, strict=True):
        seconds = ex["d"] / ex["fps"]
        _show_row(row, [(ex["image"], f"{ex['fps']:g} frames/s: the labelled frame"),
                        (ex["image_d"], f"{ex['d']} frames later ({seconds:.2f} s)"),
                        (_changed(ex["label_d"], ex["label"]),
                         f"its label, pale; red: not the labelled frame's class\n"
                         f"({ex['share']:.1f} % of pixels over the training partitions)")], fontsize=8.5)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def cyclic_labels_figure(image: np.ndarray, label: np.ndarray, cyclic: dict[int, np.ndarray],
                         title: str = ""):
    """Figure 1: the frame, its human label ``L_t``, and ``l°_t`` for several cycle lengths p,
    wrong pixels in red (black: no label — nothing could be said there)."""
    import matplotlib.pyplot as plt

    n = 2 + len(cyclic)
    cols = min(n, 3)
    rows = -(-n // cols)
    aspect = image.shape[0] / image.shape[1]
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, (4.2 * aspect + 0.45) * rows + 0.5),
                             squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    panels = [(image, "frame $I_t$"), (colorize(label), "human label $L_t$")]
    for p, ids in cyclic.items():
        wrong = ((ids != label) & (label != IGNORE_INDEX)).mean()
        panels.append((highlight_errors(ids, label), f"$l^\\circ_t$, p = {p}: {wrong:.1%} wrong"))
    for ax, (panel, name) in zip(axes.ravel()[:n], panels, strict=True):
        ax.imshow(panel, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def error_vs_p_figure(noise: dict[int, dict[str, float]]):
    """Share of wrong pixels of cyclic warped labels against the cycle length p."""
    import matplotlib.pyplot as plt

    ps = sorted(noise)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.plot(ps, [100 * noise[p]["wrong"] for p in ps], "o-", color="#d32f2f",
            label="wrong (incl. unlabelled)")
    ax.plot(ps, [100 * noise[p]["unlabelled"] for p in ps], "s--", color="#455a64", label="unlabelled")
    ax.set_xlabel("cycle length p (frames each way)")
    ax.set_ylabel("pixels of $l^\\circ_t$ (%)")
    ax.set_xticks(ps)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("cyclic warping noise grows with p", fontsize=10)
    fig.tight_layout()
    return fig


def warp_step_figure(image_next: np.ndarray, label_t: np.ndarray, warped: np.ndarray, valid: np.ndarray):
    """One warp-inpaint step: frame t+1, the label of frame t, its warp onto t+1, and where the
    motion explains the pixel (white) or not (black: out of view or failing the consistency check)."""
    import matplotlib.pyplot as plt

    aspect = image_next.shape[0] / image_next.shape[1]
    fig, axes = plt.subplots(1, 4, figsize=(11.6, 2.9 * aspect + 0.7))
    panels = [(image_next, "frame $I_{t+1}$"), (colorize(label_t), "label $L_t$ of frame t"),
              (highlight_errors(warped, warped), "$L^w_t$: warped onto t+1 (black: no label)"),
              (np.asarray(valid, bool), "motion explains the pixel")]
    for ax, (panel, name) in zip(axes, panels, strict=True):
        ax.imshow(panel, interpolation="nearest", cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# The denoiser Ω (supplementary Figure 2) and propagation results (Figure 4, accuracy by distance)
# ---------------------------------------------------------------------------------------------
POLICY_COLOURS = {"baseline": "#616161", "copy": "#9e9e9e", "motion-only": "#1e88e5",
                  "semantic-only": "#43a047", "warp-inpaint": "#fb8c00", "warp-refine": "#d81b60",
                  "true-labels": "#8e24aa", "warp-refine-confident": "#f06292"}


def denoiser_figure(shapes: list[tuple[str, tuple[int, ...]]], title: str = ""):
    """Schematic of Ω drawn from the configured model's own tensor shapes
    (``Denoiser.layer_shapes``): the encoder goes down, the OCR features of ``g_ψ`` join at the
    bottleneck, the decoder comes back up with skip connections to class logits."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    shape = dict(shapes)
    enc = ["stem"] + sorted((n for n in shape if n.startswith("down")), key=lambda n: int(n.split()[1]))
    dec = sorted((n for n in shape if n.startswith("up ")), key=lambda n: int(n.split()[1]))
    depth = len(enc) - 1
    full_h = shape["input"][1]
    step, half_w = 1.75, 0.72
    fig, ax = plt.subplots(figsize=(15, 6.2))
    boxes: dict[str, tuple[float, float, float]] = {}  # centre x, centre y, half height

    def box(name: str, x: float, level: float, colour: str, label: str) -> None:
        c, h, w = shape[name]
        half_h = 0.32 + 0.33 * (h / full_h) ** 0.5  # taller boxes for higher resolution
        y = 5.0 - 1.3 * level
        ax.add_patch(FancyBboxPatch((x - half_w, y - half_h), 2 * half_w, 2 * half_h,
                                    boxstyle="round,pad=0.03", fc=colour, ec="#37474f", lw=1))
        ax.text(x, y, f"{label}\n{c}×{h}×{w}", ha="center", va="center", fontsize=8.5)
        boxes[name] = (x, y, half_h)

    def arrow(a: str, b: str, colour: str = "#37474f") -> None:
        (xa, ya, _), (xb, yb, hb) = boxes[a], boxes[b]
        end = (xb - half_w, yb) if abs(ya - yb) < 1e-6 or xb - xa > 1.0 else (xb, yb + hb)
        ax.add_patch(FancyArrowPatch((xa + half_w, ya), end, arrowstyle="-|>", mutation_scale=12,
                                     color=colour, lw=1.4, shrinkA=2, shrinkB=2))

    box("input", 0.0, 0, "#eceff1", "input: $I_{t+1}$, $I^w_t$,\none-hot $L^w_t$, valid")
    for i, name in enumerate(enc):
        box(name, step * (i + 1), i, "#bbdefb", "7×7 conv" if name == "stem" else f"{name}, stride 2")
    xb = step * (depth + 2)
    box("bottleneck", xb, depth, "#90caf9", "residual blocks")
    box("OCR features", xb, depth - 1.9, "#c8e6c9", "OCR features of\n$g_\\psi(I_{t+1})$, frozen")
    box("fuse", xb + step, depth, "#a5d6a7", "concat + conv")
    for i, name in enumerate(dec):
        box(name, xb + step * (2 + i), depth - 1 - i, "#ffe0b2", f"{name}: ×2 + skip")
    box("logits", xb + step * (2 + len(dec)), 0, "#f8bbd0", "class logits")
    chain = ["input"] + enc + ["bottleneck", "fuse"] + dec + ["logits"]
    for a, b in zip(chain[:-1], chain[1:], strict=True):
        arrow(a, b)
    (xo, yo, _), (xf, yf, hf) = boxes["OCR features"], boxes["fuse"]
    ax.add_patch(FancyArrowPatch((xo + half_w, yo), (xf, yf + hf), arrowstyle="-|>", mutation_scale=12,
                                 color="#2e7d32", lw=1.6, connectionstyle="arc3,rad=-0.2"))
    for skip, name in zip(reversed(enc[:-1]), dec, strict=False):  # U-Net skips at equal resolution
        (x0, y0, h0), (x1, y1, h1) = boxes[skip], boxes[name]
        ax.add_patch(FancyArrowPatch((x0 + 0.3, y0 + h0), (x1 - 0.3, y1 + h1),
                                     connectionstyle="arc3,rad=-0.08", arrowstyle="-|>",
                                     mutation_scale=10, color="#8d6e63", lw=1, ls="--"))
    ax.text(xb + step / 2, 5.0 - 1.3 * depth - 1.0,
            "dashed: skip connections (concatenated)      green: the semantic cue of $g_\\psi$",
            ha="center", fontsize=9, color="#455a64")
    ax.set_xlim(-1.0, xb + step * (2 + len(dec)) + 1.0)
    ax.set_ylim(5.0 - 1.3 * depth - 1.4, 6.6)
    ax.set_axis_off()
    ax.set_title(title or "the denoiser $\\Omega_\\lambda(I_{t+1}, I^w_t, L^w_t)$: tensor shapes of the "
                 "configured model (channels × height × width)", fontsize=11)
    fig.tight_layout()
    return fig


def propagation_accuracy_figure(rows: list[dict], title: str = ""):
    """mIoU of each policy's labels against the distance d from the labelled frame (left) and the
    share of pixels they label (right); unlabelled pixels count as wrong in the mIoU."""
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(r["policy"] for r in rows))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.9), gridspec_kw={"width_ratios": [2, 1]})
    for policy in policies:
        mine = sorted((r for r in rows if r["policy"] == policy), key=lambda r: r["distance"])
        d = [r["distance"] for r in mine]
        colour = POLICY_COLOURS.get(policy)
        lw = 2.6 if policy == "warp-refine" else 1.6
        ax.plot(d, [r["miou"] for r in mine], "o-", color=colour, lw=lw, ms=4, label=policy)
        ax2.plot(d, [r["coverage"] for r in mine], "o-", color=colour, lw=lw, ms=3)
    ax.set_xlabel("distance d from the human-labelled frame (frames)")
    ax.set_ylabel("mIoU of the propagated labels (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax2.set_xlabel("distance d (frames)")
    ax2.set_ylabel("pixels labelled (%)")
    ax2.set_ylim(max(0.0, min(r["coverage"] for r in rows) - 5), 100.5)
    ax2.grid(alpha=0.3)
    for a in (ax, ax2):
        a.set_xticks(sorted({r["distance"] for r in rows}))
    fig.suptitle(title or "accuracy of propagated labels", fontsize=11)
    fig.tight_layout()
    return fig


def _wrong_share(ids: np.ndarray, truth: np.ndarray) -> float:
    """Share of the scored pixels of ``truth`` that ``ids`` gets wrong (unlabelled counts wrong)."""
    scored = truth != IGNORE_INDEX
    return float(((ids != truth) & scored).sum() / max(scored.sum(), 1))


def _show_row(axes, cells: list[tuple[np.ndarray, str]], fontsize: float = 9) -> None:
    """One row of titled images without axes."""
    for ax, (img, name) in zip(axes, cells, strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=fontsize)
        ax.set_axis_off()


def qualitative_figure(panels: list[dict], policies: list[str], title: str = ""):
    """Supplementary Figure 4: for several frames (one row each, at distance d), the image, its
    ground truth and each policy's label with wrong pixels in red (black: left unlabelled).

    ``panels``: dicts with ``image``, ``truth``, ``distance`` and one label per policy name.
    """
    import matplotlib.pyplot as plt

    with_truth = panels[0].get("truth") is not None  # real data: no ground truth off the labelled frame
    cols = 1 + with_truth + len(policies)
    aspect = panels[0]["image"].shape[0] / panels[0]["image"].shape[1]
    size = (2.9 * cols, (2.9 * aspect + 0.4) * len(panels) + 0.6)
    fig, axes = plt.subplots(len(panels), cols, figsize=size, squeeze=False)
    for r, panel in enumerate(panels):
        cells = [(panel["image"], f"frame, d = {panel['distance']}")]
        if not with_truth:
            cells += [(colorize(panel[policy]), policy) for policy in policies]
        else:
            truth = panel["truth"]
            cells.append((colorize(truth), "ground truth"))
            cells += [(highlight_errors(panel[policy], truth),
                       f"{policy}: {_wrong_share(panel[policy], truth):.1%} wrong") for policy in policies]
        _show_row(axes[r], cells)
    fig.suptitle(title or "propagated labels, wrong pixels in red", fontsize=11)
    fig.tight_layout()
    return fig


def denoiser_examples_figure(examples: list[dict], title: str = ""):
    """Before / after Ω on held-out cyclic warped labels: per row the frame ``I_t``, the noisy
    ``l°_t``, Ω's output and the human ``L_t``; wrong pixels in red. ``examples``: dicts with
    ``image``, ``cyclic``, ``refined``, ``label`` and ``p``."""
    import matplotlib.pyplot as plt

    aspect = examples[0]["image"].shape[0] / examples[0]["image"].shape[1]
    fig, axes = plt.subplots(len(examples), 4, figsize=(12.4, (3.1 * aspect + 0.45) * len(examples) + 0.6),
                             squeeze=False)
    for row, ex in zip(axes, examples, strict=True):
        truth = ex["label"]
        _show_row(row, [(ex["image"], f"frame $I_t$ (p = {ex['p']})"),
                        (highlight_errors(ex["cyclic"], truth),
                         f"input $l^\\circ_t$: {_wrong_share(ex['cyclic'], truth):.1%} wrong"),
                        (highlight_errors(ex["refined"], truth),
                         f"$\\Omega$ output: {_wrong_share(ex['refined'], truth):.1%} wrong"),
                        (colorize(truth), "human label $L_t$")], fontsize=9.5)
    fig.suptitle(title or "held-out cyclic warped labels before and after the denoiser", fontsize=11)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Tables 1 and 2 (bar charts) and supplementary Figure 3 (with / without warp-refine labels)
# ---------------------------------------------------------------------------------------------
def table_bars_figure(results: dict[str, dict[str, list[float]]], title: str = "",
                      gains: dict[str, list[dict[str, Any]]] | None = None, reference: str = "",
                      target: float | None = None, score: str = "validation mIoU"):
    """Bars of validation mIoU (``score``: what the cells were scored on, for the axis): the mean
    over seeds with ± 1 std error bars, every seed as a dot.
    ``results``: ``{group (architecture): {bar (policy or setting): [mIoU per seed]}}``; several
    groups are drawn side by side with a legend, a single group with the bars named on the axis.

    ``gains`` (``{group: wrp.tables.gains_over rows}``, over ``reference``) adds a panel on the
    right: each column's gain paired by seed — every seed a dot, the mean with its 95 % interval —
    against 0 and the ``target`` gain. Seeds move every column together; the gains show what the
    labels changed."""
    import textwrap

    import matplotlib.pyplot as plt

    groups = list(results)
    bars = list(dict.fromkeys(b for cells in results.values() for b in cells))
    colours = _colours(bars)
    single = len(groups) == 1
    width = 0.8 if single else 0.8 / len(bars)
    wide = max(5.5, 1.6 * len(bars)) if single else max(6.5, 2.2 * len(groups))
    paired = bool(gains) and any(g.get("per_seed") and len(g["per_seed"]) > 1
                                 for rows in gains.values() for g in rows)
    if paired:
        fig, (ax, gx) = plt.subplots(1, 2, figsize=(wide + 5.0, 4.2), width_ratios=(wide, 5.0))
        _paired_gains(gx, gains, reference, target, colours)
    else:
        fig, ax = plt.subplots(figsize=(wide, 4.2))
    values_seen = []
    for j, bar in enumerate(bars):
        for i, group in enumerate(groups):
            values = results[group].get(bar)
            if not values:
                continue
            x = j if single else i + (j - (len(bars) - 1) / 2) * width
            mean, std = mean_std(values)
            ax.bar([x], [mean], width * 0.9, yerr=[std], capsize=4, alpha=0.85,
                   color=colours[bar], label=None if single or i else bar)
            ax.scatter([x] * len(values), values, s=12, color="black", zorder=3)
            ax.annotate(f"{mean:.1f}", (x, mean + std), textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=8.5)
            values_seen += values
    if single:
        ax.set_xticks(range(len(bars)), [textwrap.fill(b, 18) for b in bars], fontsize=8.5)
        ax.set_xlabel(groups[0])
    else:
        ax.set_xticks(range(len(groups)), groups)
        ax.legend(fontsize=8.5, ncols=min(len(bars), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  frameon=False)
    ax.set_ylabel(f"{score} (%)")
    if values_seen:  # bars start at 0: the differences are read from the numbers, not the bar heights
        ax.set_ylim(0.0, max(values_seen) * 1.1 + 1)
    ax.grid(axis="y", alpha=0.3)
    if title:
        if paired:
            fig.suptitle(textwrap.fill(title, 120), fontsize=10)
        else:
            ax.set_title(textwrap.fill(title, 80), fontsize=10, pad=26 if not single else 8)
    fig.tight_layout()
    return fig


def paired_gains_figure(gains: dict[str, list[dict[str, Any]]], reference: str, title: str = "",
                        target: float | None = None):
    """The right panel of :func:`table_bars_figure` alone: per group (a world seed, an architecture)
    each column's gain over ``reference`` paired by seed — dots per seed, the mean, its 95 % interval."""
    import textwrap

    import matplotlib.pyplot as plt

    count = sum(1 for rows in gains.values() for g in rows if g.get("per_seed"))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.42 * max(count, 1)))
    _paired_gains(ax, gains, reference, target)
    if title:
        fig.suptitle(textwrap.fill(title, 90), fontsize=10)
    fig.tight_layout()
    return fig


def _colours(names: list[str]) -> dict[str, str]:
    """One colour per bar or gain row: a policy's own, else the cycle's colour of its place."""
    return {name: POLICY_COLOURS.get(name, f"C{j}") for j, name in enumerate(names)}


def _paired_gains(ax, gains: dict[str, list[dict[str, Any]]], reference: str, target: float | None,
                  colours: dict[str, str] | None = None) -> None:
    """Each column's gain over ``reference``, paired by seed: dots per seed, the mean, its 95 % CI;
    a column in ``colours`` (the bars beside the panel) is drawn in its bar's colour."""
    rows = [(group, g) for group, items in gains.items() for g in items if g.get("per_seed")]
    several = len(gains) > 1
    colours = colours or _colours(list(dict.fromkeys(g["column"] for _, g in rows)))
    for y, (_, g) in enumerate(rows):
        colour = colours[g["column"]]
        ax.scatter(g["per_seed"], [y] * len(g["per_seed"]), s=14, color=colour, alpha=0.6, zorder=3)
        if g.get("paired_ci95"):
            ax.plot(g["paired_ci95"], [y, y], color=colour, lw=2.5, solid_capstyle="butt")
        ax.scatter([g["gain"]], [y], marker="D", s=40, color="black", zorder=4)
    names = [f"{group}: {g['column']}" if several else g["column"] for group, g in rows]
    ax.set_yticks(range(len(rows)), names, fontsize=8.5)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", lw=0.8)
    if target is not None:
        ax.axvline(target, color="#d81b60", lw=0.8, ls="--")
        ax.annotate(f"+{target:g}", (target, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize=8, color="#d81b60")
    ax.set_xlabel(f"mIoU gain over {reference}, paired by seed")
    ax.set_title("gain per seed (dots), mean (◆) and its 95 % interval (bar)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)


# Look-alike classes of the synthetic world (and of Cityscapes), as train ids: the supplementary's
# Figure 3 shows that warp-refine labels mostly fix confusions inside these groups.
CONFUSABLE_GROUPS: dict[str, tuple[str, ...]] = {"vehicles": ("car", "truck", "bus"),
                                                 "people": ("person", "rider"),
                                                 "barriers": ("wall", "fence")}
FIXED, BROKEN, BOTH_WRONG = (40, 200, 60), (245, 124, 0), (140, 40, 200)


def _confusable_ids() -> np.ndarray:
    from cityscapesscripts.helpers.labels import name2label

    return np.array([name2label[n].trainId for group in CONFUSABLE_GROUPS.values() for n in group])


def confusable_changes(baseline: np.ndarray, refined: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Pixels of a confusable class (in the truth or either prediction) where two models disagree,
    split into ``fixed`` (only ``refined`` right), ``broken`` (only ``baseline`` right) and
    ``both_wrong``."""
    ids = _confusable_ids()
    scored = truth != IGNORE_INDEX
    involved = np.isin(truth, ids) | np.isin(baseline, ids) | np.isin(refined, ids)
    differ = (baseline != refined) & scored & involved
    return {"fixed": differ & (refined == truth), "broken": differ & (baseline == truth),
            "both_wrong": differ & (baseline != truth) & (refined != truth)}


def with_without_figure(rows: list[dict], names: tuple[str, str] = ("Baseline", "warp-refine"),
                        title: str = ""):
    """Supplementary Figure 3: validation frames segmented by a model trained without and one trained
    with warp-refine labels. Per row: the frame, its ground truth, both predictions (wrong pixels
    red) and, on the dimmed frame, where the two differ on the confusable classes (bus / truck /
    car, rider / person, fence / wall): green where only the second is right, orange where only the
    first is, purple where both are wrong. ``rows``: dicts with ``image``, ``truth``, ``baseline``,
    ``refined`` (train ids) and ``name``."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    aspect = rows[0]["image"].shape[0] / rows[0]["image"].shape[1]
    size = (15.5, (3.1 * aspect + 0.5) * len(rows) + 0.9)
    fig, axes = plt.subplots(len(rows), 5, figsize=size, squeeze=False)
    for ax_row, row in zip(axes, rows, strict=True):
        truth = row["truth"]
        change = confusable_changes(row["baseline"], row["refined"], truth)
        overlay = (0.35 * row["image"].astype(np.float32) + 0.65 * 200).astype(np.uint8)
        for key, colour in (("fixed", FIXED), ("broken", BROKEN), ("both_wrong", BOTH_WRONG)):
            overlay[change[key]] = colour
        _show_row(ax_row, [(row["image"], row["name"]), (colorize(truth), "ground truth"),
                           (highlight_errors(row["baseline"], truth),
                            f"{names[0]}: {_wrong_share(row['baseline'], truth):.1%} wrong"),
                           (highlight_errors(row["refined"], truth),
                            f"{names[1]}: {_wrong_share(row['refined'], truth):.1%} wrong"),
                           (overlay, f"confusable classes: {int(change['fixed'].sum())} px fixed, "
                                     f"{int(change['broken'].sum())} broken")], fontsize=8.5)
    handles = [Patch(color=np.array(c) / 255, label=t) for c, t in (
        (FIXED, f"only {names[1]} right"), (BROKEN, f"only {names[0]} right"),
        (BOTH_WRONG, "they differ, both wrong"))]
    groups = "; ".join(" / ".join(g) for g in CONFUSABLE_GROUPS.values())
    fig.legend(handles=handles, loc="lower center", ncols=3, fontsize=9, frameon=False,
               title=f"right column, on look-alike classes ({groups}):", title_fontsize=9)
    fig.suptitle(title or f"validation frames segmented by the {names[0]} model and the {names[1]} model",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def quality_figure(rows: list[dict], summary: dict, title: str = ""):
    """What ``wrp assess`` found, without ground truth: per policy, the cycle-agreement estimate
    against the distance d (median over labelled frames, quartiles shaded; the true mIoU dashed where
    the dataset has it), the labelled frames whose estimate drops most (to check first) and — where
    a policy's confidence was scored — its reliability diagram and coverage–accuracy curve."""
    import matplotlib.pyplot as plt

    policies = list(summary)
    calibrated = [p for p in policies if "reliability" in summary[p]]
    fig = plt.figure(figsize=(12.5, 8.2 if calibrated else 4.2))
    grid = fig.add_gridspec(2 if calibrated else 1, 3)
    ax, text = fig.add_subplot(grid[0, :2]), fig.add_subplot(grid[0, 2])
    for policy in policies:
        colour = POLICY_COLOURS.get(policy)
        distances = sorted({r["distance"] for r in rows if r["policy"] == policy})
        values = [[r["estimate_miou"] for r in rows if r["policy"] == policy and r["distance"] == d]
                  for d in distances]
        low, mid, high = (np.array([np.percentile(v, q) for v in values]) for q in (25, 50, 75))
        ax.plot(distances, mid, "o-", color=colour, lw=2.2, ms=4, label=f"{policy}: estimate")
        ax.fill_between(distances, low, high, color=colour, alpha=0.15)
        if "median_true" in summary[policy]:
            true = summary[policy]["median_true"]
            ax.plot(distances, [true[d] for d in distances], "--", color=colour, lw=1.3,
                    label=f"{policy}: true mIoU (ρ = {summary[policy]['spearman']:.2f})")
    ax.set_xlabel("distance d from the human-labelled frame (frames)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title("cycle agreement: t → t±d → t against the human label", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_xticks(sorted({r["distance"] for r in rows}))
    text.axis("off")
    lines = ["labelled frames to check first", "(largest drop of the estimate",
             " from d = 1 to the largest d)", ""]
    for policy in policies:
        lines.append(f"{policy}:")
        lines += [f"  {r['labelled_frame']}  −{r['drop']:.1f}" for r in summary[policy]["review"]]
        lines.append("")
    text.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=8)
    if calibrated:
        rel_ax, cov_ax = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1:])
        rel_ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
        for policy in calibrated:
            s, colour = summary[policy], POLICY_COLOURS.get(policy)
            bins = s["reliability"]
            rel_ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color=colour,
                        ms=3, label=f"{policy}: ECE {s['ece']:.1f} %")
            curve = [c for c in s["coverage_accuracy"] if c["accuracy"] is not None]
            cov_ax.plot([c["coverage"] for c in curve], [c["accuracy"] for c in curve], "-", color=colour,
                        label=policy)
            kept = s["keep_90"]["kept"]
            cov_ax.plot([kept["coverage"]], [kept["accuracy"]], "o", color=colour)
            cov_ax.annotate(f"τ={kept['threshold']:.2f}: {kept['accuracy']:.1f} %", (kept["coverage"],
                            kept["accuracy"]), fontsize=7, xytext=(-60, -14), textcoords="offset points")
        rel_ax.set_xlabel("confidence")
        rel_ax.set_ylabel("share of pixels right")
        rel_ax.set_title("reliability (true labels)", fontsize=10)
        rel_ax.legend(fontsize=8)
        rel_ax.grid(alpha=0.3)
        cov_ax.set_xlabel("pixels kept (%)")
        cov_ax.set_ylabel("kept pixels right (%)")
        cov_ax.set_title("--min-confidence: coverage vs accuracy", fontsize=10)
        cov_ax.invert_xaxis()
        cov_ax.grid(alpha=0.3)
    fig.suptitle(title or "quality of generated labels, estimated without ground truth", fontsize=11)
    fig.tight_layout()
    return fig
