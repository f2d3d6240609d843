#!/usr/bin/env python
"""Export predicted or propagated labels as Cityscapes label-id PNGs — and score them officially.

Propagated labels (``wrp.propagation``: ``<labels root>/<policy>/gtFine/<split>/<city>/…``) are
already label-id PNGs in the layout; predictions saved as train ids (``*_labelTrainIds.png``) are
not. This script writes either kind as ``<city>_<seq>_<frame>_gtFine_labelIds.png`` under
``--out`` (keeping the sub-folders, or ``--flat`` for the benchmark server), each file atomically;
a rerun rewrites nothing that is already identical. With ``--evaluate ROOT`` it then scores the
exported files that have a ground truth in ``ROOT/gtFine/<split>/<city>/*_gtFine_labelIds.png``
twice — with cityscapesscripts' official pixel-level evaluator and with ``wrp.metrics`` — and
prints both.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wrp.data import LABEL_SUFFIX
from wrp.export import export_tree, official_evaluation, pair_with_ground_truth, wrp_evaluation
from wrp.prepare import run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python data_scripts/export_labels.py --labels "
                                       "runs/…/labels/warp-refine --out results/warp-refine --flat "
                                       "--evaluate data/cityscapes")
    p.add_argument("--labels", type=Path, required=True, help="folder of label files (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="where the label-id PNGs go")
    p.add_argument("--train-ids", action="store_true",
                   help="the files hold train ids (0..18, 255): convert them (default: label ids, checked)")
    p.add_argument("--pattern", help=f"file name pattern (default *{LABEL_SUFFIX}; *.png with --train-ids)")
    p.add_argument("--flat", action="store_true", help="all files directly in --out (no sub-folders)")
    p.add_argument("--evaluate", type=Path, metavar="ROOT",
                   help="score the exported files against the ground truth of dataset ROOT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def export(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, export and (optionally) evaluate; raises DatasetError (``main`` prints it)."""
    args = build_parser().parse_args(argv)
    pattern = args.pattern or ("*.png" if args.train_ids else f"*{LABEL_SUFFIX}")
    paths = export_tree(args.labels, args.out, pattern, train_ids=args.train_ids, flat=args.flat,
                        progress=not args.no_progress)
    print(f"exported {len(paths)} label-id PNG(s): {args.labels} → {args.out}")
    report: dict[str, Any] = {"exported": len(paths)}
    if args.evaluate is not None:
        scored, truth = pair_with_ground_truth(paths, args.evaluate)
        official, ours = official_evaluation(scored, truth), wrp_evaluation(scored, truth)
        print(f"mIoU over the {len(scored)} of {len(paths)} frame(s) that have a ground truth under "
              f"{args.evaluate}: cityscapesscripts {official['mIoU']:.4f} · wrp.metrics {ours['mIoU']:.4f} "
              "(19 classes; unlabelled predictions count as misses)")
        report.update(scored=len(scored), official=official, wrp=ours)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(export, argv)


if __name__ == "__main__":
    raise SystemExit(main())
