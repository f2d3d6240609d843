"""``wrp`` / ``python -m wrp``: every stage of the pipeline from the command line.

Each sub-command resolves one :class:`~wrp.profiles.Run` from its options (profile and field
overrides, dataset, seed, device, processes) and hands it to the package function a notebook calls
too, so the command line, papermill and JupyterLab run the same code. Commands import the stage
modules when they run, so ``wrp --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wrp import __version__
from wrp.data import DatasetError
from wrp.io import FolderBusy, atomic_write_json
from wrp.metrics import mean_std
from wrp.paper import INPAINT
from wrp.profiles import PROFILES, Run, get_profile, profile_names, profiles_table
from wrp.runtime import runs_dir
from wrp.synthetic import HELD_OUT_STYLE, STYLES

INPUT_ERRORS = (ValueError, FileNotFoundError, FileExistsError, FolderBusy)


def _number(kind: type, low: float, inclusive: bool = True) -> Any:
    """An argparse type: a ``kind`` number ≥ ``low`` (> ``low`` when not ``inclusive``). A value
    given is a value used: 0 is never read as "not given", it is used or refused here."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} must be {'≥' if inclusive else '>'} {low:g}")
        return value
    parse.__name__ = kind.__name__
    return parse


COUNT = _number(int, 1)  # iterations, records, processes, batch sizes, …
SEED = _number(int, 0)
POSITIVE = _number(float, 0, inclusive=False)  # learning rates, frame rates


def _run(args: argparse.Namespace, **overrides: Any) -> Run:
    """The run of a command's ``--profile``, ``--dataset``, ``--seed``, ``--device``, ``--nproc``,
    ``--no-progress`` with profile fields ``overrides`` (a value given is a value used)."""
    nproc = overrides.pop("nproc", None) or getattr(args, "nproc", 1)
    overrides = {"style": getattr(args, "style", None), "inpaint": getattr(args, "inpaint", None),
                 "teacher_pretrain": getattr(args, "teacher_pretrain", None), **overrides}
    return Run.create(args.profile, dataset=getattr(args, "dataset", None), seed=getattr(args, "seed", 0),
                      device=args.device, nproc=nproc, progress=not args.no_progress,
                      **{k: v for k, v in overrides.items() if v is not None})


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from wrp.notebooks import (
        CATALOGUE,
        ReproduceError,
        discover_notebooks,
        format_results,
        parse_parameter,
        reproduce,
    )

    try:
        if args.list:
            present = {p.stem for p in discover_notebooks()}
            for stem, title, part in CATALOGUE:
                mark = "present" if stem in present else "not yet in notebooks/"
                print(f"{stem:<30} {part:<42} {mark}\n{'':<30} {title}")
            return 0
        only = [t for chunk in (args.only or []) for t in chunk.split(",") if t.strip()]
        params = dict(parse_parameter(p) for p in args.param)
        results = reproduce(args.profile, only or None, params, timeout=args.timeout,
                            keep_going=args.keep_going, log_output=args.log_output,
                            progress_bar=not args.no_progress)
    except ReproduceError as exc:
        return _error(exc)
    print()
    print(format_results(results))
    print()
    print(f"executed notebooks → {runs_dir() / args.profile / 'notebooks'}")
    print(f"per-notebook outputs and metrics.json → {runs_dir() / args.profile}/<notebook>/")
    print(f"figures → {PROFILES[args.profile].figures_dir}")
    ok = all(r.status == "ok" for r in results)
    print(f"{sum(r.status == 'ok' for r in results)} of {len(results)} notebooks ran at profile "
          f"{args.profile!r}" + ("" if ok else " — see the errors above"))
    return 0 if ok else 1


def _cmd_synth(args: argparse.Namespace) -> int:
    from wrp.synthetic import SynthConfig, generate_world

    try:
        style = {"style": args.style} if args.style else {}
        run = Run.create(args.profile, seed=args.seed, device="cpu", **style)
        extra = {"records": args.records} if args.records is not None else {}
        config = SynthConfig.from_profile(run.profile, args.seed, motion_blur=args.motion_blur, **extra)
        out = generate_world(config, args.out, workers=args.workers, progress=not args.no_progress)
        if args.as_frames is not None:
            from wrp.prepare import tree_to_frames

            as_frames = tree_to_frames(out, args.as_frames, progress=not args.no_progress)
    except INPUT_ERRORS as exc:
        return _error(exc)
    frames = config.records * config.frames_per_record
    print(f"synthetic world: {config.records} records × {config.frames_per_record} frames "
          f"({frames} frames, {config.height}×{config.width}) → {out}")
    print(f"generator config and summary → {out / 'world.json'}")
    if args.as_frames is not None:
        print(f"as a folder of frames: {as_frames['videos']} videos, {as_frames['frames']} frames, "
              f"{as_frames['labels']} labels → {args.as_frames / 'frames'}, {args.as_frames / 'labels'}")
        print(f"next: wrp prepare-frames {args.as_frames / 'frames'} {args.as_frames / 'labels'} --out TREE "
              f"--partition-length {run.profile.partition_length}")
    return 0


def _cmd_train_seg(args: argparse.Namespace) -> int:
    from wrp.stages import pretrained_segmenter, train_segmenter

    overrides = {k: v for k, v in (("iters", args.iters), ("loss", args.loss), ("base_lr", args.lr),
                                   ("backbone", args.backbone)) if v is not None}
    try:
        run = _run(args)
        style = run.profile.teacher_pretrain
        if style and args.arch == "msa_hrnet_ocr":  # g_ψ as every stage reads it (teacher_segmenter)
            overrides["init"] = str(pretrained_segmenter(run, args.arch, style) / "model.pt")
        folder = train_segmenter(run, args.arch, **overrides)
    except INPUT_ERRORS as exc:
        return _error(exc)
    metrics = json.loads((folder / "metrics.json").read_text())
    rate = metrics.get("images_per_s")
    print(f"validation mIoU {metrics['miou']:.2f} on {metrics['images']} labelled frames; "
          + (f"{rate:.1f} training images/s" if rate is not None else "training speed not recorded"))
    print(f"model, log and metrics → {folder}")
    return 0


def _cmd_train_denoiser(args: argparse.Namespace) -> int:
    from wrp.stages import denoiser_summary, train_denoiser

    overrides = {k: v for k, v in (("iters", args.iters), ("base_lr", args.lr)) if v is not None}
    cycles = tuple(args.cycle_lengths) if args.cycle_lengths else None
    try:
        folder = train_denoiser(_run(args, cycle_lengths=cycles), **overrides)
    except INPUT_ERRORS as exc:
        return _error(exc)
    print(denoiser_summary(folder))
    print(f"model in {folder}")
    return 0


def _cmd_propagate(args: argparse.Namespace) -> int:
    from wrp.launch import Nodes
    from wrp.policies import POLICIES, read_accuracy
    from wrp.stages import join_propagation, propagate

    policies = tuple(args.policy) if args.policy else POLICIES
    try:
        nodes = Nodes(args.nnodes, args.node_rank, args.rdzv_endpoint)
        if nodes.rank > 0:  # the first node has the job; this one lends its processes
            join_propagation(args.nproc, nodes)
            print(f"node {nodes.rank}: shards written; node 0 merges the speeds and scores the labels")
            return 0
        folder = propagate(_run(args, nproc=args.train_nproc), args.split, policies, flow=args.flow,
                           batch=args.batch, confidence=args.confidence, out=args.out, procs=args.nproc,
                           workers=args.workers, nodes=nodes, min_confidence=args.min_confidence)
    except INPUT_ERRORS as exc:
        return _error(exc)
    speed = json.loads((folder / "speed.json").read_text())
    print("frames/s: " + ", ".join(f"{p} {v['frames_per_s']:.1f}" for p, v in speed.items()))
    print(f"labels in {folder / 'labels'}")
    report = folder / "report.json"
    warning = json.loads(report.read_text()).get("denoiser_warning") if report.is_file() else None
    if not (folder / "accuracy.csv").is_file():
        print("no accuracy: the dataset has ground truth for the labelled frames only")
        if warning:
            print(f"WARNING: {warning}")
        return 0
    rows = read_accuracy(folder)
    distances = sorted({int(r["distance"]) for r in rows})
    shown = [d for d in distances if d in (1, 2, 3, 5, 10) or d == distances[-1]]
    print("mIoU (%) of the propagated labels by distance from the labelled frame "
          "(unlabelled pixels count as wrong):")
    width = max(15, *(len(r["policy"]) + 2 for r in rows))
    print(f"{'policy':<{width}}" + "".join(f"{'d=' + str(d):>8}" for d in shown))
    for policy in dict.fromkeys(r["policy"] for r in rows):
        cells = {int(r["distance"]): r for r in rows if r["policy"] == policy}
        print(f"{policy:<{width}}" + "".join(f"{cells[d]['miou']:>8.1f}" for d in shown))
        if "@" in policy:  # a confident variant: what it keeps, and how right that is
            print(f"{'  pixels kept':<{width}}" + "".join(f"{cells[d]['coverage']:>8.1f}" for d in shown))
            print(f"{'  kept: mIoU':<{width}}" + "".join(f"{cells[d]['miou_labelled']:>8.1f}" for d in shown))
    if warning:
        print(f"WARNING: {warning}")
    return 0


def table_run(args: argparse.Namespace) -> Run:
    """The run of a table command: the profile with the budget options (``--cell-iters``,
    ``--cell-crop``, ``--world-fps``, ``--world-density``) applied to its table fields. Shared with
    the benchmarks."""
    crop = tuple(args.cell_crop) if args.cell_crop else None
    score_world = getattr(args, "score_world", None)
    if score_world == "none":  # unset before the other options are checked against it
        unset = get_profile(args.profile, table_score_world=None)
        args = argparse.Namespace(**{**vars(args), "profile": unset})
        score_world = None
    return _run(args, table_iters=args.cell_iters, table_crop=crop, fps=args.world_fps,
                density=getattr(args, "world_density", None),
                # a score world scores every frame of its records
                table_eval=getattr(args, "eval_frames", None) or ("every" if score_world is not None
                                                                   else None),
                table_world_seed=getattr(args, "world_seed", None),
                table_min_confidence=getattr(args, "min_confidence", None),
                table_min_class_pixels=getattr(args, "min_class_pixels", None),
                table_pretrain=getattr(args, "pretrain", None),
                table_pretrain_labels=getattr(args, "pretrain_labels", None),
                table_score_world=score_world)


def _cmd_table(args: argparse.Namespace) -> int:
    from wrp import tables
    from wrp.viz import save_figure, table_bars_figure

    started = time.time()
    try:
        run = table_run(args)
        seeds = list(args.seeds or run.profile.table_seeds)
        out = Path(args.out) if args.out else run.profile.tables_dir
        if args.command == "table1":
            if args.policy and "baseline" not in args.policy:
                raise ValueError("--policy needs baseline among the columns: every gain is "
                                 "measured against it")
            runs = tables.table1_runs(run, args.arch, args.policy, seeds, k=args.k, jobs=args.jobs)
            results = tables.cells_of(runs)
            note = tables.grid_note(run, seeds, list(results), k=args.k)
            paths = tables.write_table1(results, out / "table1", note, runs)
            gains = {arch: tables.gains_over(cells, "baseline") for arch, cells in results.items()}
            checks = tables.table1_checks(gains)
            bars = results
        else:
            runs = tables.table2_runs(run, args.row, seeds, jobs=args.jobs)
            results = tables.rows_of(runs)
            note = tables.grid_note(run, seeds, table=2)
            paths = tables.write_table2(results, out / "table2", note, runs)
            gains = {tables.table2_arch(run.profile): tables.gains_over(results, "Baseline B")}
            checks = {}
            bars = {tables.table2_arch(run.profile): results}
    except INPUT_ERRORS as exc:
        return _error(exc)
    name = args.command
    score = tables.score_name(run.profile)
    title = tables.figure_title(run, 1 if name == "table1" else 2, seeds)
    reference = "Baseline" if name == "table1" else "Baseline B"
    figure = table_bars_figure(bars, title=title, gains=gains, reference=reference,
                               target=1.5 if name == "table1" else None, score=score)
    paths.append(save_figure(figure, out / f"{name}.png"))
    paths.append(atomic_write_json(out / f"{name}.json", {
        "profile": run.profile.name, "dataset": str(run.dataset) if run.dataset else "synthetic",
        "world_fps": run.profile.fps, "world_density": run.profile.density,
        "seeds": seeds, "world_seed": run.profile.table_world_seed,
        "eval_frames": run.profile.table_eval, "score_world": run.profile.table_score_world,
        "k": getattr(args, "k", None) or run.profile.k, "table_iters": run.profile.table_iters,
        "table_crop": list(run.profile.frame_crop(run.profile.table_crop)), "results": results,
        "mean_std": {g: {c: mean_std(v) for c, v in cells.items()} for g, cells in bars.items()},
        "gains": gains, "checks": checks, "seconds": round(time.time() - started, 1)}))
    print(paths[1].read_text())
    for group, rows in gains.items():
        print(tables.gains_report(rows, reference, label=f"{group}: "))
    for check, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {check}")
    print("→ " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_prepare_frames(args: argparse.Namespace) -> int:
    import shlex

    from wrp.prepare import prepare_frames

    try:
        out = prepare_frames(args.frames, args.labels, args.out, dataset=args.dataset_name,
                             partition_length=args.partition_length, labelled=args.labelled, val=args.val,
                             seed=args.seed, label_format=args.label_format, link=args.link,
                             dry_run=args.dry_run, progress=not args.no_progress, workers=args.workers)
    except INPUT_ERRORS as exc:
        return _error(exc)
    if not args.dry_run:
        tree = shlex.quote(str(out))
        print(f"next: wrp propagate --dataset {tree}   # g_ψ, Ω, then each policy's labels of the val videos")
        print(f"      wrp propagate --dataset {tree} --split train --policy warp-refine --out LABELS")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    unknown = [n for n in args.names if n not in profile_names()]
    if unknown:
        return _error(f"unknown profile(s) {', '.join(unknown)}; choose from: {', '.join(profile_names())}")
    print(profiles_table(args.names or None))
    return 0


def _cmd_stages(args: argparse.Namespace) -> int:
    from wrp.cache import list_stages

    stages = list_stages()
    if not stages:
        print(f"no cached stages under {runs_dir() / 'stages'}")
        return 0
    print(f"{'stage':<22} {'key':<13} {'state':<9} {'time':>8} {'size':>10}  folder")
    for s in stages:
        state = "done" if s.done else "partial"
        took = f"{s.seconds:.1f}s" if s.seconds is not None else "—"
        print(f"{s.name:<22} {s.key:<13} {state:<9} {took:>8} {s.size_bytes / 2**20:>8.1f}MB  {s.dir}")
    return 0


def _pretrain_styles() -> list[str]:
    """The styles a segmenter may be pretrained on: every one but the held-out style of the family."""
    return [s for s in STYLES if s != HELD_OUT_STYLE]


def add_run_options(parser: argparse.ArgumentParser, seed: bool = True, labelling: bool = False) -> None:
    """The options every training, propagation and table command shares: they make its :class:`Run`."""
    parser.add_argument("--profile", default="demo", choices=profile_names(),
                        help="size preset for data, models and iterations (default: demo)")
    parser.add_argument("--dataset", default=None, metavar="DIR",
                        help="a tree prepared by data_scripts/prepare_*.py (default: the synthetic world)")
    if seed:
        parser.add_argument("--seed", type=SEED, default=0,
                            help="the synthetic world, its split and the models' initial weights")
    parser.add_argument("--style", default=None, choices=list(STYLES),
                        help="the synthetic world's look and layout (default: the profile's, street); "
                             f"{HELD_OUT_STYLE} is the held-out style of the world family")
    styles = _pretrain_styles()
    parser.add_argument("--teacher-pretrain", choices=styles, metavar="STYLE",
                        help="start g_ψ, the segmenter whose predictions every policy and Ω read, from "
                             "MSA-HRNet-OCR pretrained on a synthetic world of STYLE (as the paper's g_ψ "
                             "starts from Mapillary weights: a teacher stronger than its students; "
                             f"default: the profile's teacher_pretrain; one of {', '.join(styles)})")
    parser.add_argument("--inpaint", choices=list(INPAINT), default=None,
                        help="what warp-refine's Ω reads where the motion cannot explain a pixel: the "
                             "motion's own guess (motion) or g_ψ's label (semantic, the paper's "
                             "warp-inpaint); Ω is trained to match (default: the profile's, motion)")
    if labelling:  # wrp propagate: processes label, the models it trains first have their own
        parser.add_argument("--nproc", type=COUNT, default=1,
                            help="processes (torchrun) per node that label the frames: the same files as one")
        parser.add_argument("--workers", type=SEED, default=None,
                            help="threads per process that read frames and estimate flow ahead of the "
                                 "device (default: from the cores; 0: all in one thread)")
        parser.add_argument("--nnodes", type=COUNT, default=1, help="machines labelling together (torchrun)")
        parser.add_argument("--node-rank", type=SEED, default=0,
                            help="this machine's rank: 0 runs the full command, the others only "
                                 "--nnodes, --node-rank, --rdzv-endpoint and --nproc")
        parser.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                            help="where the machines meet: a free port on the first one")
        parser.add_argument("--train-nproc", type=COUNT, default=1,
                            help="processes (torchrun) for training g_ψ and Ω, if they are not cached")
    else:
        parser.add_argument("--nproc", type=COUNT, default=1,
                            help="processes (torchrun) for each training job on this machine")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_jobs_option(parser: argparse.ArgumentParser) -> None:
    """``--jobs N``: how many table cells train at once (``wrp.tables.train_cells``)."""
    parser.add_argument("--jobs", type=COUNT, default=1,
                        help="cells trained at once, each in its own process with cores / JOBS threads "
                             "(default 1: one after another). On a CPU, --jobs 2 on two cores is "
                             "faster (benchmarks/cell_jobs.py) and gives the numbers of one-thread cells "
                             "(figures/' tables were trained so); a cell's numbers depend on its threads")


def add_table_options(parser: argparse.ArgumentParser, table: int = 1) -> None:
    """A table's grid and the budget of its cells (read back by :func:`table_run`)."""
    from wrp.paper import ARCHS, TABLE1_COLUMNS, TABLE2_ROWS

    parser.add_argument("--seeds", type=SEED, nargs="+", default=None,
                        help="default: the profile's table_seeds")
    if table == 1:
        parser.add_argument("--arch", action="append", choices=list(ARCHS),
                            help="repeatable; default: the profile's table_archs")
        parser.add_argument("--policy", action="append", choices=list(TABLE1_COLUMNS),
                            help="a column (repeatable; baseline must be among them); default all: "
                                 "true-labels is the world's own labels of the same frames (the "
                                 "ceiling, synthetic world only), warp-refine-confident warp-refine's "
                                 "labels without the pixels below --min-confidence τ")
        parser.add_argument("--min-confidence", type=_unit_interval, metavar="τ",
                            help="the confident-pixels column leaves warp-refine's pixels of confidence "
                                 "below τ unlabelled (default: the profile's table_min_confidence, 1)")
        parser.add_argument("--k", type=COUNT,
                            help="semantic-only and warp-refine labels from frames within ±k of their "
                                 "labelled frame (default: the profile's k; motion-only keeps ±2)")
    else:
        parser.add_argument("--row", action="append", choices=list(TABLE2_ROWS),
                            help="repeatable; default all")
    parser.add_argument("--world-seed", type=SEED,
                        help="train every cell on this seed's world and labels, --seeds then being "
                             "the segmenters' training seeds: every column of a seed starts from the "
                             "same weights and its gains pair (the paper's protocol; default: the "
                             "profile's table_world_seed)")
    parser.add_argument("--eval-frames", choices=("labelled", "every"),
                        help="score each cell on the validation records' labelled frames or on every "
                             "frame of them (synthetic world); default: the profile's table_eval")
    parser.add_argument("--score-world", type=_seed_or_none, metavar="SEED",
                        help="score every cell on every frame of every record of synthetic world SEED "
                             "(the table world's style, frame rate and traffic; a world no cell learns "
                             "from), or 'none': on the table world's validation records (default: the "
                             "profile's table_score_world)")
    parser.add_argument("--min-class-pixels", type=COUNT, metavar="N",
                        help="class-uniform sampling of the generated labels counts a class in a "
                             "32×32 tile from N pixels on, so stray pixels of a class are not sampled "
                             "like its real instances (default: the profile's table_min_class_pixels)")
    parser.add_argument("--cell-iters", type=COUNT,
                        help="iterations of every cell (default: the profile's table_iters)")
    parser.add_argument("--cell-crop", type=COUNT, nargs=2, metavar=("H", "W"),
                        help="training crop of every cell (default: the profile's table_crop)")
    parser.add_argument("--world-fps", type=POSITIVE, metavar="FPS",
                        help="render the synthetic world at FPS frames per second (default: the "
                             "profile's, 35): at 10 a partition's frames show more new street")
    parser.add_argument("--world-density", type=POSITIVE, metavar="X",
                        help="X times the style's density of vehicles, persons and riders in the "
                             "synthetic world (default: the profile's, 1)")
    styles = _pretrain_styles()
    parser.add_argument("--pretrain", choices=styles, metavar="STYLE",
                        help="start every cell from a segmenter pretrained on a synthetic world of "
                             "STYLE (as the paper's students start from ImageNet weights; default: the "
                             f"profile's table_pretrain; one of {', '.join(styles)})")
    parser.add_argument("--pretrain-labels", choices=("classes", "categories"),
                        help="what the pretrained segmenter learns: the 19 classes, or only the 7 "
                             "Cityscapes categories (vehicle, human, …), so every cell learns the fine "
                             "classes — car from bus — from the table's labels alone (default: the "
                             "profile's table_pretrain_labels)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wrp",
        usage="wrp [-h] [--version] COMMAND ...",
        description="Warp-Refine Propagation (Ganeshan et al., ICCV 2021): auto-label video for\n"
        "semantic segmentation by warping sparse labels along motion and refining them with\n"
        "a denoiser learned by cycle-consistency.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wrp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)

    rep = commands.add_parser(
        "reproduce",
        help="run the notebooks in order through papermill (what `make demo` runs)",
        description="Execute notebooks/NN_*.ipynb in order through papermill. Executed copies go "
        "to runs/<profile>/notebooks/, each notebook's metrics.json to runs/<profile>/<notebook>/.",
    )
    rep.add_argument("--profile", default="demo", choices=profile_names(),
                     help="size preset for data, models and iterations (default: demo)")
    rep.add_argument("--only", action="append", metavar="NN[,NN…]",
                     help="run only these notebooks, by number or name (e.g. --only 01,03)")
    rep.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="set a notebook parameter (JSON values: -p seed=3 -p device=cpu)")
    rep.add_argument("--timeout", type=SEED, default=None, metavar="SECONDS",
                     help="per-cell time limit; 0: none (default: the profile's — 600 s for smoke, "
                          "none for demo and paper: a slow machine gets a slow run, and a rerun resumes)")
    rep.add_argument("--keep-going", action="store_true",
                     help="run the remaining notebooks after one fails")
    rep.add_argument("--log-output", action="store_true",
                     help="stream what the notebooks print to this terminal")
    rep.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    rep.add_argument("--list", action="store_true",
                     help="list the notebooks and the part of the paper each covers, then exit")
    rep.set_defaults(func=_cmd_reproduce)

    syn = commands.add_parser(
        "synth", help="write the synthetic street world (images, labels, true flow) for a profile",
        description="Render the procedural street-video world in the Cityscapes sequence layout, "
        "with a label, the true flow and its validity for every frame. Resumes after a kill.")
    syn.add_argument("--out", required=True, type=Path, help="folder to write the world into")
    syn.add_argument("--profile", default="demo", choices=profile_names(),
                     help="sizes: resolution, records, frames per record (default: demo)")
    syn.add_argument("--seed", type=SEED, default=0, help="the world is a function of this seed")
    syn.add_argument("--style", default=None, choices=list(STYLES),
                     help=f"look and layout (default: street; {HELD_OUT_STYLE} is the held-out style)")
    syn.add_argument("--records", type=COUNT, default=None, help="the world's record count (default: the "
                     "profile's train + val records)")
    syn.add_argument("--motion-blur", type=COUNT, default=1, metavar="N",
                     help="average N sub-frame renders per image (1 = no blur)")
    syn.add_argument("--workers", type=COUNT, default=None, help="processes (default: one per core)")
    syn.add_argument("--as-frames", type=Path, default=None, metavar="DIR",
                     help="also write the world as a folder of frames for `wrp prepare-frames`: "
                          "DIR/frames/<record>/<frame>.png and DIR/labels/<record>/<frame>.png")
    syn.add_argument("--no-progress", action="store_true", help="no progress bar")
    syn.set_defaults(func=_cmd_synth)

    pre = commands.add_parser(
        "prepare-frames", help="your own video: folders of frames and labels → a tree for --dataset",
        description="Turn FRAMES/<video>/<frame>.png|jpg (one sub-folder per video, frames in the natural "
        "order of their names) and LABELS/<video>/<frame stem>.png into the prepared tree that "
        "--dataset reads. Each video is cut into partitions; the frame at the labelled position of "
        "every partition needs a label, other frames' labels are optional (used only to evaluate). "
        "Videos are split into train / val at random. Names, sizes and labels are checked before a "
        "file is written; a rerun writes only what is new or a changed label. See docs/own_data.md.")
    pre.add_argument("frames", type=Path, metavar="FRAMES", help="folder of video folders of frames")
    pre.add_argument("labels", type=Path, metavar="LABELS", help="folder of video folders of label PNGs")
    pre.add_argument("--out", type=Path, required=True, metavar="TREE", help="folder for the prepared tree")
    pre.add_argument("--dataset-name", default="own", metavar="NAME",
                     help="the dataset's name in splits/dataset.json (default: own)")
    pre.add_argument("--partition-length", type=COUNT, default=21, metavar="N",
                     help="frames per partition (default: 21, the paper's)")
    pre.add_argument("--labelled", type=SEED, default=None, metavar="I",
                     help="position of the labelled frame in a partition, 0-based (default: the centre)")
    pre.add_argument("--val", type=float, default=0.2, metavar="SHARE",
                     help="validation videos: a share (at least one video each side) or a count ≥ 1 "
                          "(default: 0.2)")
    pre.add_argument("--seed", type=SEED, default=0, help="seed of the random split by video")
    pre.add_argument("--label-format", default="label-ids", choices=["label-ids", "train-ids"],
                     help="label PNGs hold official Cityscapes label ids (default) or train ids 0..18 "
                          "with 255 = ignore (converted to label ids)")
    pre.add_argument("--link", default="copy", choices=["copy", "hardlink", "symlink"],
                     help="PNG frames: copy them (default) or link them to save disk (JPEGs are converted)")
    pre.add_argument("--dry-run", action="store_true", help="check, say what would be written, write nothing")
    pre.add_argument("--workers", type=COUNT, default=1,
                     help="threads that convert and copy files (default 1)")
    pre.add_argument("--no-progress", action="store_true", help="no progress bars")
    pre.set_defaults(func=_cmd_prepare_frames)

    seg = commands.add_parser(
        "train-seg", help="train a segmenter (the baseline g_ψ by default) on the human labels",
        description="Train a segmentation model on the human-labelled frames of the profile's "
        "dataset with the shared engine (SGD, poly LR, SyncBN under DDP), then score it on the "
        "validation frames. Cached by its settings; a killed run resumes.")
    seg.add_argument("--arch", default="msa_hrnet_ocr", choices=["deeplabv3", "ocrnet", "msa_hrnet_ocr"],
                     help="architecture (default: MSA-HRNet-OCR, the paper's g_ψ)")
    seg.add_argument("--backbone", default=None, help="timm backbone (default: the profile's)")
    seg.add_argument("--loss", default=None, choices=["ce", "rmi", "rll"], help="main loss (default ce)")
    seg.add_argument("--iters", type=COUNT, default=None, help="override the profile's iterations")
    seg.add_argument("--lr", type=POSITIVE, default=None, help="override the base learning rate")
    add_run_options(seg)
    seg.set_defaults(func=_cmd_train_seg)

    den = commands.add_parser(
        "train-denoiser", help="train the denoiser Ω on cyclic warped labels of the labelled frames",
        description="Build the cyclic warped labels of the human-labelled training frames "
        "(t → t±p → t, every cycle length of the profile, both directions) and train Ω with RMI on "
        "them, with g_ψ frozen. Scores Ω on the held-out records' cycles. Cached; resumes.")
    den.add_argument("--iters", type=COUNT, default=None, help="override the profile's iterations")
    den.add_argument("--lr", type=POSITIVE, default=None, help="override the base learning rate")
    den.add_argument("--cycle-lengths", type=COUNT, nargs="+", metavar="P",
                     help="cycle lengths p of t → t±p → t (default: the profile's cycle_lengths)")
    add_run_options(den)
    den.set_defaults(func=_cmd_train_denoiser)

    prop = commands.add_parser(
        "propagate", help="label every frame from the labelled ones: copy … warp-refine",
        description="Propagate each labelled frame's label to ±k frames with each policy (copy, "
        "motion-only, semantic-only, warp-inpaint, warp-refine), training g_ψ and Ω first if "
        "needed. Labels are written in the Cityscapes layout under labels/<policy>/, atomically; a "
        "killed run resumes. Prints mIoU by distance against the ground truth.")
    prop.add_argument("--split", default="val", choices=["train", "val"])
    prop.add_argument("--policy", action="append", choices=list(_policies()),
                      help="a policy to run (repeatable; default: all five)")
    prop.add_argument("--flow", default="dis", choices=["dis", "farneback", "true"],
                      help="motion estimator (default DIS; 'true' is the synthetic world's oracle)")
    prop.add_argument("--out", default=None, help="folder for the labels (default: a cached stage)")
    prop.add_argument("--batch", type=COUNT, default=8, help="clips propagated together")
    prop.add_argument("--confidence", action="store_true", help="also write *_confidence.png maps")
    prop.add_argument("--min-confidence", type=_unit_interval, default=None, metavar="τ",
                      help="also write labels/<policy>@τ: the labels with pixels of confidence below τ "
                           "unlabelled (implies --confidence; wrp assess shows the coverage–accuracy curve)")
    add_run_options(prop, labelling=True)
    prop.set_defaults(func=_cmd_propagate)

    from wrp.paper import CARRIED_POLICIES

    ass = commands.add_parser(
        "assess", help="how good are the generated labels? estimated without ground truth",
        description="Carry the label of every labelled frame with a policy to ±d frames and back, and "
        "compare it with the human label: an estimate of the policy's quality per frame and distance "
        "that needs no label beyond the labelled frames (quality.csv, assess.json, quality.png), with "
        "the frames whose estimate drops most, to check first. On the synthetic world the estimate "
        "is also scored against the truth, and so is the calibration of the policies' confidence.")
    ass.add_argument("--split", default="val", choices=["train", "val"])
    ass.add_argument("--policy", action="append", choices=list(CARRIED_POLICIES),
                     help="a policy to assess (repeatable; default: motion-only and warp-refine)")
    ass.add_argument("--k", type=COUNT, default=None, help="largest distance d (default: the profile's k)")
    ass.add_argument("--flow", default="dis", choices=["dis", "farneback", "true"],
                     help="motion estimator (default DIS)")
    ass.add_argument("--out", default=None, help="folder for the results (default: a cached stage)")
    ass.add_argument("--batch", type=COUNT, default=8, help="chains of frames carried together")
    add_run_options(ass)
    ass.set_defaults(func=_cmd_assess)

    for table, text, description in (
            (1, "Table 1: segmenters trained with each label policy, mean ± std over seeds",
             "Train one segmenter per (architecture, label policy, seed) — human labels mixed 30/70 "
             "with the policy's generated labels, the same iterations for every cell — and write "
             "table1.csv / .md / .png / .json beside the paper's numbers, with each policy's gain over "
             "Baseline (paired by seed) and the paper's pattern checked. Finished cells are reused."),
            (2, "Table 2: relaxed label loss and an under-trained baseline, over seeds",
             "Train the Table 2 settings (under-trained baseline, Baseline B, + RLL, + RLL + motion-only "
             "labels from ±3) per seed and write table2.csv / .md / .png / .json beside the paper's "
             "numbers.")):
        tab = commands.add_parser(f"table{table}", help=text, description=description)
        add_table_options(tab, table)
        add_jobs_option(tab)
        tab.add_argument("--out", default=None,
                         help="folder for the tables (default: figures/ at the table and paper profiles, "
                              "runs/<profile>/figures at the others)")
        add_run_options(tab, seed=False)
        tab.set_defaults(func=_cmd_table, command=f"table{table}")

    prof = commands.add_parser("profiles", help="show the size presets side by side")
    prof.add_argument("names", nargs="*", metavar="PROFILE",
                      help=f"profiles to show (default: all of {', '.join(profile_names())})")
    prof.set_defaults(func=_cmd_profiles)

    stg = commands.add_parser("stages", help="list the cached stage artefacts under runs/stages/")
    stg.set_defaults(func=_cmd_stages)

    # one line per command, from the help each sub-parser was registered with
    lines = [f"  {a.dest:<15} {a.help}" for a in commands._choices_actions]
    parser.epilog = "commands:\n" + "\n".join(lines) + "\n\n'wrp COMMAND --help' for the options of one."
    return parser


def _cmd_assess(args: argparse.Namespace) -> int:
    from wrp.assess import assess, report

    policies = tuple(args.policy) if args.policy else ("motion-only", "warp-refine")
    try:
        folder = assess(_run(args), args.split, policies, k=args.k, out=args.out, batch=args.batch,
                        flow=args.flow)
    except INPUT_ERRORS as exc:
        return _error(exc)
    print(report(folder))
    print(f"quality.csv and assess.json in {folder}; figure: {folder / 'quality.png'}")
    return 0


def _seed_or_none(text: str) -> int | str:
    return "none" if text.lower() == "none" else SEED(text)


def _unit_interval(text: str) -> float:
    value = POSITIVE(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} is a probability: give a value in (0, 1]")
    return value


def _policies() -> tuple[str, ...]:
    from wrp.paper import POLICIES

    return POLICIES


def _error(exc: BaseException | str) -> int:
    """Report a failure as one line, ``wrp: error: …``, on stderr; returns the exit code 2."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"  # read-only folder, disk full, …: the file it hit
    else:
        text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    print("wrp: error: " + " ".join(text.split()), file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    """argparse with wrp's one-line errors: ``wrp: error: argument --iters: 0 must be ≥ 1 (…)``."""

    def error(self, message: str):  # type: ignore[override]
        command = self.prog.split()[-1] if self.prog.split()[-1] != "wrp" else ""
        self.exit(_error(f"{message} (wrp {command + ' ' if command else ''}--help lists the options)"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    for option in ("policy", "arch", "row", "seeds", "cycle_lengths"):
        values = getattr(args, option, None) or []
        if isinstance(values, list) and len(set(values)) != len(values):  # train-seg's --arch is one name
            twice = sorted({str(v) for v in values if values.count(v) > 1})
            return _error(f"--{option.replace('_', '-')} {', '.join(twice)} given more than once; "
                          "give each value once")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("wrp: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (*INPUT_ERRORS, DatasetError, OSError) as exc:
        if os.environ.get("WRP_DEBUG"):
            raise
        return _error(exc)
    except Exception as exc:  # noqa: BLE001 - one line for the user; WRP_DEBUG=1 shows where
        if os.environ.get("WRP_DEBUG"):
            raise
        _error(f"{type(exc).__name__}: {exc} (run with WRP_DEBUG=1 to see where)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
