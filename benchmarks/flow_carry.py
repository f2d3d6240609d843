"""How right one warp carries a label to the next frame, on the pixels both frames show and the others.

    python benchmarks/flow_carry.py --profile table --world-seed 3
    python benchmarks/flow_carry.py --profile smoke --flow dis --flow true

Warp-refine carries a label frame by frame; every step backward-warps the previous frame's label
along an estimated motion. On the synthetic world each frame's true label and the world's own
motion are known, so one step can be scored exactly: for every pair of neighbouring frames of the
training records of one world (``--world-seed``, the world a table's cells train on; the frames
within ±k of each labelled one), the *true* label of one frame is warped onto the other with each
estimator (``--flow``, repeatable: DIS, Farnebäck, the world's own motion), and compared with that
frame's true label — separately on the pixels the world says both frames show (the point is seen in
both) and on the others (it comes into view, out from behind something, or changes). For each
estimator also the share of pixels its forward–backward check flags (where warp-refine's Ω and
``g_ψ`` take over) and how many of the unseen pixels that catches.

Prints the table and writes ``<out>/world<W>_<hash>.{json,md}`` (default ``--out``:
``figures/flow_carry``), with a figure (``.png``) of what comes into view: the first training clip's
frames after its labelled one, the pixels its label cannot be carried to in red.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from wrp.cache import config_hash
from wrp.cli import add_run_options, add_table_options, table_run
from wrp.io import atomic_write_json, atomic_write_text
from wrp.motion import ESTIMATORS, followed, forward_backward_valid, make_estimator, warp
from wrp.stages import generated_frames
from wrp.viz import save_figure

FLOWS = ("dis", "farneback", "true")  # the estimators that need no weights file
COUNTS = ("seen", "seen_right", "unseen", "unseen_right", "flagged", "unseen_flagged")


def neighbour_pairs(frames) -> list[tuple[Any, int, int]]:
    """(clip, source, target) for every step a propagation takes onto the frames it labels
    (``frames``: :func:`wrp.stages.generated_frames`' (clip, position) pairs): each frame from its
    neighbour one step nearer the labelled frame."""
    return [(clip, pos - (1 if pos > clip.labelled else -1), pos) for clip, pos in frames]


def carry_counts(pairs, truth, flow: str, progress: bool = False) -> dict[str, int]:
    """Pixel counts of one estimator over ``pairs`` (:data:`COUNTS`): pixels both frames show
    (``seen``) and the others (``unseen``), how many of each the warp of the source's true label gets
    right, how many pixels the forward–backward check flags, and how many unseen ones among them."""
    from wrp.runtime import progress_bar

    estimator = make_estimator(flow)
    counts = dict.fromkeys(COUNTS, 0)
    for clip, source, target in progress_bar(pairs, desc=f"carry {flow}", disable=not progress):
        direction = "backward" if source == target - 1 else "forward"
        _, seen = clip.true_flow(target, direction)
        back = estimator.between(clip, target, source)
        fwd = estimator.between(clip, source, target)
        carried, _ = warp(truth.label(clip.clip_id, source).astype(np.int64), back, mode="nearest")
        right = carried.numpy() == truth.label(clip.clip_id, target)
        flagged = ~forward_backward_valid(back, fwd).numpy()
        counts["seen"] += int(seen.sum())
        counts["seen_right"] += int((right & seen).sum())
        counts["unseen"] += int((~seen).sum())
        counts["unseen_right"] += int((right & ~seen).sum())
        counts["flagged"] += int(flagged.sum())
        counts["unseen_flagged"] += int((flagged & ~seen).sum())
    return counts


def shares(counts: dict[str, int]) -> dict[str, float]:
    """The table's percentages from :func:`carry_counts`."""
    total = counts["seen"] + counts["unseen"]

    def pct(a: int, b: int) -> float:
        return round(100.0 * a / b, 2) if b else float("nan")

    return {"unseen_share": pct(counts["unseen"], total),
            "seen_right": pct(counts["seen_right"], counts["seen"]),
            "unseen_right": pct(counts["unseen_right"], counts["unseen"]),
            "all_right": pct(counts["seen_right"] + counts["unseen_right"], total),
            "flagged": pct(counts["flagged"], total),
            "unseen_flagged": pct(counts["unseen_flagged"], counts["unseen"])}


def carry_markdown(title: str, rows: dict[str, dict[str, float]], steps: int) -> str:
    lines = [f"# {title}", "",
             "| motion | pixels not seen in both frames | right where both show them | right elsewhere "
             "| right, all | flagged by the forward–backward check | unseen pixels flagged |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for flow, s in rows.items():
        lines.append(f"| {flow} | {s['unseen_share']:.1f} % | {s['seen_right']:.2f} % "
                     f"| {s['unseen_right']:.1f} % | {s['all_right']:.2f} % | {s['flagged']:.1f} % "
                     f"| {s['unseen_flagged']:.1f} % |")
    lines += ["", f"One warp of a frame's true label onto its neighbour, over the {steps} steps a "
              "propagation takes within ±k of the labelled frames (nearest-neighbour warp, as "
              "warp-refine's). 'true' is the world's own motion."]
    return "\n".join(lines) + "\n"


def came_into_view_figure(clip, k: int, title: str):
    """The labelled frame of ``clip`` and three frames after it (d = 1, k/2, k) with the pixels the
    world's motion does not follow from the labelled frame in red (:func:`wrp.motion.followed`):
    what a carried label cannot reach and a semantic cue has to label."""
    import matplotlib.pyplot as plt

    masks = followed(clip, k)
    after = sorted(pos for pos in masks if pos > clip.labelled)
    chosen = [after[i] for i in sorted({0, len(after) // 2 - 1 if len(after) > 1 else 0, len(after) - 1})]
    fig, axes = plt.subplots(1, len(chosen) + 1, figsize=(3.4 * (len(chosen) + 1), 2.4), squeeze=False)
    axes[0, 0].imshow(clip.image(clip.labelled))
    axes[0, 0].set_title("labelled frame", fontsize=9)
    for ax, pos in zip(axes[0, 1:], chosen, strict=True):
        image = clip.image(pos).astype(np.float32)
        new = ~masks[pos]
        image[new] = 0.45 * image[new] + 0.55 * np.array([230.0, 20.0, 20.0])
        ax.imshow(image.astype(np.uint8))
        ax.set_title(f"d = {pos - clip.labelled}: {100 * new.mean():.0f} % came into view", fontsize=9)
    for ax in axes[0]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_table_options(parser, table=1)
    add_run_options(parser, seed=False)
    parser.add_argument("--flow", action="append", choices=FLOWS,
                        help=f"repeatable; default {', '.join(FLOWS)} "
                             f"({', '.join(sorted(set(ESTIMATORS) - set(FLOWS)))} needs a weights file)")
    parser.add_argument("--out", default="figures/flow_carry")
    args = parser.parse_args()
    flows = list(dict.fromkeys(args.flow or FLOWS))
    try:
        run = table_run(args)
        if not run.synthetic:
            raise ValueError(f"{run.dataset}: scoring one warp needs every frame's true label and the "
                             "world's motion, which only the synthetic world has")
        world = run.profile.table_world_seed
        run = run.with_seed(world) if world is not None else run
    except ValueError as exc:
        parser.error(str(exc))
    started = time.time()
    manifest, frames = generated_frames(run)
    clips, truth = manifest.clips("train"), manifest.ground_truth("train")
    pairs = neighbour_pairs(frames)
    counts = {flow: carry_counts(pairs, truth, flow, run.progress) for flow in flows}
    rows = {flow: shares(c) for flow, c in counts.items()}
    prof = run.profile
    title = f"One warp of a label, world {run.seed} ({prof.name} profile, training records, ±{prof.k})"
    key = f"world{run.seed}_{config_hash({'profile': prof.key_dict(), 'flows': flows})[:8]}"
    out = Path(args.out)
    atomic_write_json(out / f"{key}.json", {"title": title, "world_seed": run.seed, "steps": len(pairs),
                                             "counts": counts, "shares": rows,
                                             "seconds": round(time.time() - started, 1)})
    markdown = carry_markdown(title, rows, len(pairs))
    atomic_write_text(out / f"{key}.md", markdown)
    fig = came_into_view_figure(clips[0], prof.k, f"In red: what the world's motion does not carry from the "
                                f"labelled frame (world {run.seed}, {clips[0].clip_id})")
    save_figure(fig, out / f"{key}.png")
    print(markdown)
    print(f"→ {out / key}.{{json,md,png}}")


if __name__ == "__main__":
    main()
