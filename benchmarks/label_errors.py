"""Where generated labels go wrong, class by class, by distance from the labelled frame.

    python benchmarks/label_errors.py --profile table --world-seed 3
    python benchmarks/label_errors.py --profile table --world-seed 3 --policy warp-refine \\
        --policy semantic-only --teacher-pretrain street
    python benchmarks/label_errors.py --profile table --world-seed 3 --pixels new

A table's cells learn from a policy's labels of the training frames around each labelled one. A
label policy can score well in mIoU and still teach a student the wrong thing about a class: the
pixels of a thin class far from the labelled frame labelled as the large class behind it. For the
training records of one world (``--world-seed``, the world a table's cells train on) and each policy
(propagated first if needed: the same cached labels ``wrp table1`` trains on), every class's recall
(share of its true pixels labelled right), precision (share of the pixels labelled as it that are
it), and the two labels its true pixels most often get instead, in bands of distance
(``--bands 3 6 10``: d = 1–3, 4–6, 7–10). ``--pixels new`` counts only the pixels a neighbour shows
that its labelled frame does not (the true class there differs from the labelled frame's): the
pixels where a generated label can teach a student something its human label did not;
``--pixels seen`` the others.

Prints the table and writes it with a figure (recall per class and band, with what the missed pixels
became) to ``<out>/world<W>_teacher-<style>_<hash>.{json,md,png}`` (default ``--out``:
``figures/label_errors``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from wrp.cache import config_hash
from wrp.cli import add_run_options, add_table_options, table_run
from wrp.data import Manifest
from wrp.io import atomic_write_json, atomic_write_text
from wrp.paper import POLICIES, TABLE1_COLUMNS
from wrp.policies import PIXELS, distance_confusions, label_errors
from wrp.stages import manifest_for, training_labels
from wrp.viz import save_figure


def default_edges(k: int) -> list[int]:
    """Upper edges of the default distance bands: 1–3, 4–6 and 7–k (fewer where k is small)."""
    return sorted({min(3, k), min(6, k), k})


def bands_of(edges: list[int], k: int) -> list[tuple[int, int]]:
    """Distance bands ``(first, last)`` from their upper edges, the last one ``k`` (``[3, 6, 10]`` →
    1–3, 4–6, 7–10), or an error naming the fix."""
    if not edges or sorted(set(edges)) != list(edges) or edges[0] < 1 or edges[-1] != k:
        raise ValueError(f"--bands {' '.join(map(str, edges))}: give increasing upper edges of the distance "
                         f"bands, the last one the profile's k ({k}), e.g. --bands "
                         + " ".join(map(str, default_edges(k))))
    return [(lo + 1, hi) for lo, hi in zip([0, *edges[:-1]], edges, strict=True)]


def errors_by_band(run, policies: list[str], bands: list[tuple[int, int]],
                   pixels: str = "all") -> dict[str, dict[str, Any]]:
    """``{policy: {"d1-3": label_errors rows, ...}}`` over the training records of ``run``'s world,
    counting ``pixels`` of each frame (:func:`~wrp.policies.distance_confusions`)."""
    manifest = Manifest.load(manifest_for(run))
    clips, truth = manifest.clips("train"), manifest.ground_truth("train")
    k = bands[-1][1]
    out: dict[str, dict[str, Any]] = {}
    for policy in policies:
        folder = training_labels(run, policy)
        confs = distance_confusions(clips, truth, folder / "labels", policy, k, pixels=pixels)
        out[policy] = {f"d{lo}-{hi}": label_errors(sum(confs[d] for d in range(lo, hi + 1)))
                       for lo, hi in bands}
    return out


def band_miou(rows: list[dict[str, Any]]) -> float:
    """Mean IoU (%) over the classes of one band's :func:`~wrp.policies.label_errors` rows."""
    return float(np.mean([row["iou"] for row in rows])) if rows else float("nan")


def errors_markdown(errors: dict[str, dict[str, Any]], title: str) -> str:
    """One table per policy: a row per class, per band its recall / precision and what its missed
    pixels became."""
    lines = [f"# {title}", ""]
    for policy, by_band in errors.items():
        bands = list(by_band)
        lines += [f"## {policy}", "",
                  "| class | " + " | ".join(f"{b}: recall / precision; missed pixels became" for b in bands)
                  + " |",
                  "|---|" + "---|" * len(bands)]
        classes = {row["class"]: None for rows in by_band.values() for row in rows}
        for name in classes:
            cells = []
            for band in bands:
                row = next((r for r in by_band[band] if r["class"] == name), None)
                if row is None:
                    cells.append("—")
                    continue
                became = ", ".join(f"{other} {share:.0f}" for other, share in row["mistaken_for"])
                scores = f"{row['recall']:.0f} / {row['precision']:.0f}"
                cells.append(f"{scores}; {became}" if became else scores)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        mious = " | ".join(f"**{band_miou(by_band[b]):.1f}**" for b in bands)
        lines.append(f"| **mIoU of the labels** | {mious} |")
        lines.append("")
    lines.append("Recall: share (%) of a class's true pixels its label gets right; precision: share of the "
                 "pixels labelled as it that are it; then the labels its other true pixels got most often (% "
                 "of its true pixels).")
    return "\n".join(lines) + "\n"


def errors_figure(errors: dict[str, dict[str, Any]], title: str):
    """Recall per class (rows) and policy × distance band (columns), each cell annotated with the
    label its missed pixels most often became."""
    import matplotlib.pyplot as plt

    columns = [(policy, band) for policy, by_band in errors.items() for band in by_band]
    classes = list({row["class"]: None for by_band in errors.values() for rows in by_band.values()
                    for row in rows})
    recall = np.full((len(classes), len(columns)), np.nan)
    notes = [["" for _ in columns] for _ in classes]
    for j, (policy, band) in enumerate(columns):
        for row in errors[policy][band]:
            i = classes.index(row["class"])
            recall[i, j] = row["recall"]
            if row["mistaken_for"]:
                other, share = row["mistaken_for"][0]
                notes[i][j] = f"{row['recall']:.0f}\n{other[:8]} {share:.0f}"
            else:
                notes[i][j] = f"{row['recall']:.0f}"
    fig, ax = plt.subplots(figsize=(max(7.0, 1.5 + 1.25 * len(columns)), 0.5 + 0.42 * len(classes)))
    image = ax.imshow(recall, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i in range(len(classes)):
        for j in range(len(columns)):
            ax.text(j, i, notes[i][j], ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(len(columns)), [f"{policy}\n{band}" for policy, band in columns], fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, label="recall: % of the class's true pixels labelled right\n"
                                                    "below it: what most of the missed pixels became, %")
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_table_options(parser, table=1)
    add_run_options(parser, seed=False)
    parser.add_argument("--bands", type=int, nargs="+", metavar="D",
                        help="upper edges of the distance bands, the last the profile's k (default: 3 6 k)")
    parser.add_argument("--pixels", choices=PIXELS, default="all",
                        help="new: only the pixels whose true class differs from the labelled frame's at the "
                             "same place (what a neighbour adds); seen: the others (default: all)")
    parser.add_argument("--out", default="figures/label_errors")
    args = parser.parse_args()
    policies = list(dict.fromkeys(args.policy or ["warp-refine", "semantic-only"]))
    propagated = [p for p in TABLE1_COLUMNS if p in POLICIES]  # the table's columns a policy labels
    unknown = [p for p in policies if p not in propagated]
    if unknown:
        parser.error(f"--policy {', '.join(unknown)}: only propagated labels have errors to show; "
                     f"choose among {', '.join(propagated)}")
    try:
        run = table_run(args)
        world = run.profile.table_world_seed
        if world is None:
            raise ValueError("--world-seed: give the world whose training labels to score")
        k = run.profile.k
        bands = bands_of(args.bands or default_edges(k), k)
    except ValueError as exc:
        parser.error(str(exc))
    started = time.time()
    world_run = run.with_seed(world)
    errors = errors_by_band(world_run, policies, bands, args.pixels)
    prof = run.profile
    title = (f"Generated labels of world {world}'s training frames ({prof.name} profile, "
             f"{prof.fps or 35:g} frames/s" + (f", g_ψ pretrained on {prof.teacher_pretrain}"
                                               if prof.teacher_pretrain else "") + ")"
             + {"all": "", "new": ": the pixels the labelled frame does not show (its class differs there)",
                "seen": ": the pixels whose class is the labelled frame's there"}[args.pixels])
    setting = {"profile": prof.key_dict(), "world": world, "policies": policies, "bands": bands}
    if args.pixels != "all":  # the files of every earlier setting keep their names
        setting["pixels"] = args.pixels
    key = (f"world{world}_teacher-{prof.teacher_pretrain or 'none'}"
           + ("" if args.pixels == "all" else f"_{args.pixels}-pixels") + f"_{config_hash(setting)[:8]}")
    out = Path(args.out)
    markdown = errors_markdown(errors, title)
    print(markdown)
    atomic_write_json(out / f"{key}.json", {"title": title, "world_seed": world, "bands": bands,
                                             "teacher_pretrain": prof.teacher_pretrain, "pixels": args.pixels,
                                             "errors": errors,
                                             "seconds": round(time.time() - started, 1)})
    atomic_write_text(out / f"{key}.md", markdown)
    save_figure(errors_figure(errors, title), out / f"{key}.png")
    print(f"→ {out / key}.{{json,md,png}}")


if __name__ == "__main__":
    main()
