"""From a downloaded dataset to the layout every stage reads — what the ``data_scripts/`` share.

Each ``data_scripts/prepare_<dataset>.py`` knows one dataset's own layout (METHOD.md §5, §8) and
turns it into a :class:`Preparation`: the list of files to write in the Cityscapes sequence layout
(``leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and, for labelled
frames, ``gtFine/…_gtFine_labelIds.png``), the records of each split and the counts to report.
This module does the rest the same way for every dataset:

- :class:`Source` finds a download's files by relative path, extracted or still in its zips;
- :func:`write_plan` writes every planned file atomically (``wrp.io``), skips files already in
  place — so a second run writes nothing — and only counts them on a dry run;
- :func:`execute` adds ``splits/`` (``train.txt``, ``val.txt``, ``dataset.json``, ``missing.txt``),
  refuses to mix two different preparations in one folder, prints the report and finally reads the
  tree back through :func:`wrp.data.read_prepared` / ``build_manifest`` to prove it is usable.

A user's own video needs no script: :func:`prepare_frames` (``wrp prepare-frames``) turns a folder
of frames (``frames/<video>/…``) and labels (``labels/<video>/<stem>.png``) into a prepared tree the
same way, and :func:`tree_to_frames` writes any tree of the layout back as such a folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import cv2
import numpy as np

from wrp.data import (
    IGNORE_INDEX,
    IMAGE_DIR,
    IMAGE_SUFFIX,
    LABEL_DIR,
    LABEL_SUFFIX,
    LABEL_TO_TRAIN,
    NUM_CLASSES,
    PREPARED_FILE,
    TRAIN_TO_LABEL,
    DatasetError,
    FrameRef,
    Record,
    decode_label_png,
    partition_record,
    png_size,
    read_prepared,
    scan_records,
)
from wrp.io import FolderBusy, atomic_write_bytes, exclusive_folder
from wrp.runtime import progress_bar

_UNKNOWN = 254  # LABEL_TO_TRAIN's mark for a value that is no Cityscapes label id
LINK_MODES = ("copy", "hardlink", "symlink")


# ---------------------------------------------------------------------------------------------
# Finding files: extracted folders and zip archives alike
# ---------------------------------------------------------------------------------------------
class Source:
    """The files of a download, addressed by POSIX paths, whether extracted or still zipped.

    ``paths`` are folders or ``.zip`` files; inside a folder, the zips named in ``zips`` are read
    too. With ``anchor`` (a regular expression for one path component, e.g.
    ``leftImg8bit_sequence|gtFine``) every file is addressed from that component on, so it does not
    matter how deep the archive was extracted; files outside any anchor are ignored. An extracted
    file wins over a zipped copy of the same path.
    """

    def __init__(self, paths: Sequence[str | Path], anchor: str | None = None,
                 zips: Sequence[str] = ()) -> None:
        self.paths = [Path(p) for p in paths]
        self._anchor = re.compile(anchor) if anchor else None
        self._files: dict[str, tuple[Path, str | None]] = {}
        self._zips: dict[Path, zipfile.ZipFile] = {}
        self._lock = threading.Lock()  # one reader at a time per archive handle (write_plan uses threads)
        if not self.paths:
            raise DatasetError("no source given; pass the folder (or zip) of the downloaded dataset")
        for path in self.paths:
            if path.is_dir():
                for name in zips:
                    if (path / name).is_file():
                        self._add_zip(path / name)
                self._add_folder(path)
            elif path.is_file():
                self._add_zip(path)
            else:
                raise DatasetError(f"{path} does not exist; pass the folder where the dataset was "
                                   "extracted or the downloaded .zip")
        self._keys = sorted(self._files)

    # -- indexing ------------------------------------------------------------------------------
    def _key(self, parts: Sequence[str]) -> str | None:
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            return None
        if self._anchor is None:
            return "/".join(parts)
        for i, part in enumerate(parts):
            if self._anchor.fullmatch(part):
                return "/".join(parts[i:])
        return None

    def _add_folder(self, folder: Path) -> None:
        for dirpath, _dirs, names in os.walk(folder, followlinks=True):
            rel = Path(dirpath).relative_to(folder).parts
            for name in names:
                if (key := self._key((*rel, name))) is not None:
                    self._files[key] = (Path(dirpath) / name, None)

    def _add_zip(self, path: Path) -> None:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DatasetError(f"cannot open {path} as a zip archive ({exc}); re-download it, or pass "
                               "the folder it was extracted to") from None
        self._zips[path] = archive
        for info in archive.infolist():
            if not info.is_dir() and (key := self._key(PurePosixPath(info.filename).parts)) is not None:
                self._files.setdefault(key, (path, info.filename))

    # -- access --------------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return key in self._files

    def __len__(self) -> int:
        return len(self._files)

    def keys(self) -> list[str]:
        """Every file's path, sorted."""
        return self._keys

    def match(self, pattern: re.Pattern[str]) -> list[re.Match[str]]:
        """The sorted paths that ``pattern`` matches (``re.search``), as match objects."""
        return [m for key in self._keys if (m := pattern.search(key))]

    def where(self, key: str) -> str:
        """Where ``key`` is read from, for messages: a file, or ``archive.zip:member``."""
        if key not in self._files:
            return f"{key} (in none of {self.describe()})"
        container, member = self._files[key]
        return str(container) if member is None else f"{container}:{member}"

    def local_path(self, key: str) -> Path | None:
        """The extracted file behind ``key`` (which may be linked), or None when it is zipped."""
        container, member = self._files[key]
        return container if member is None else None

    def read(self, key: str) -> bytes:
        """The bytes of one file; DatasetError naming the file or zip member that cannot be read."""
        if key not in self._files:
            raise DatasetError(f"missing {key} in {self.describe()}")
        container, member = self._files[key]
        try:
            if member is None:
                return container.read_bytes()
            with self._lock:
                return self._zips[container].read(member)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as exc:
            raise DatasetError(f"cannot read {self.where(key)} ({exc}); the download is damaged — "
                               "re-download it (or extract it and pass the folder)") from None

    def describe(self) -> str:
        return ", ".join(str(p) for p in self.paths)

    def close(self) -> None:
        for archive in self._zips.values():
            archive.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Decoding and encoding, with errors that name the file
# ---------------------------------------------------------------------------------------------
def decode_image(data: bytes, where: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode image bytes (any format OpenCV reads); DatasetError naming ``where`` on failure."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if array is None:
        raise DatasetError(f"cannot decode {where} (corrupt or not an image); re-download it")
    return array


def encode_png(array: np.ndarray, where: str) -> bytes:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise DatasetError(f"could not encode a PNG for {where}")
    return data.tobytes()


def decode_label_ids(data: bytes, where: str) -> np.ndarray:
    """(H, W) uint8 official Cityscapes label ids from PNG bytes, every value checked."""
    label = decode_label_png(data, where)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(f"label {where} has shape {label.shape} and dtype {label.dtype}; expected a "
                           "single-channel 8-bit PNG of Cityscapes label ids (not the colour image)")
    if (unknown := np.unique(label[LABEL_TO_TRAIN[label] == _UNKNOWN])).size:
        raise DatasetError(f"label {where} holds ids {unknown.tolist()} that are not Cityscapes label ids "
                           "(0..33); is it a train-id or colour image? Use the *_labelIds.png files")
    return label


def map_ids(label: np.ndarray, table: np.ndarray, where: str, scheme: str) -> np.ndarray:
    """Look every id of ``label`` up in ``table`` (-1 = not an id of ``scheme`` → DatasetError)."""
    if label.max(initial=0) >= len(table):
        bad = np.unique(label[label >= len(table)])
    else:
        bad = np.unique(label[table[label] < 0])
    if bad.size:
        raise DatasetError(f"label {where} holds ids {bad.tolist()} that are not {scheme} ids; is it the "
                           f"right file (a label image, not a colour or instance image)?")
    return table[label].astype(np.uint8)


def resize(array: np.ndarray, scale: float, label: bool) -> np.ndarray:
    """Scale an image (area interpolation) or a label (nearest); ``scale == 1`` returns it as is."""
    if scale == 1:
        return array
    height, width = array.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(array, size, interpolation=cv2.INTER_NEAREST if label else cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------
# The plan and how it is written
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Planned:
    """One file to write under the output root."""

    dest: str  # POSIX path under the output root
    kind: str  # what it is, for the report: "image", "label", "metadata", …
    make: Callable[[], bytes]  # its bytes; called only when the file is written
    link: Path | None = None  # an extracted source file that may be linked instead of copied
    replace: bool = False  # small metadata: rewritten when its content differs (else: kept if present)


def frame_files(ref: FrameRef, image: Callable[[], bytes], label: Callable[[], bytes] | None = None,
                link: Path | None = None) -> list[Planned]:
    """The image (and label) files of one frame of the layout."""
    files = [Planned(f"{IMAGE_DIR}/{ref.split}/{ref.city}/{ref.stem}{IMAGE_SUFFIX}", "image", image, link)]
    if label is not None:
        files.append(Planned(f"{LABEL_DIR}/{ref.split}/{ref.city}/{ref.stem}{LABEL_SUFFIX}", "label", label))
    return files


def write_plan(plan: Sequence[Planned], out: str | Path, dry_run: bool = False, link: str = "copy",
               progress: bool = True, workers: int = 1) -> dict[str, Counter[str]]:
    """Write every planned file that is not already in place, each atomically.

    A file that exists is complete (it was renamed into place only once fully written), so it is
    kept; only ``replace`` files (the small split files) are compared and rewritten when they
    differ. ``workers`` threads decode and encode in parallel (OpenCV releases the GIL). Returns
    ``{kind: Counter(written=…, present=…)}``; a dry run counts what it would write, writes nothing.
    """

    if link not in LINK_MODES:
        raise ValueError(f"link={link!r}; use one of {LINK_MODES}")
    out = Path(out)
    if len({p.dest for p in plan}) != len(plan):
        twice = [d for d, n in Counter(p.dest for p in plan).items() if n > 1]
        raise ValueError(f"the plan writes {twice[0]} more than once")
    tally: dict[str, Counter[str]] = {item.kind: Counter() for item in plan}
    todo = []
    for item in plan:
        dest = out / item.dest
        if dest.exists() and (not item.replace or dest.read_bytes() == item.make()):
            tally[item.kind]["present"] += 1
        else:
            tally[item.kind]["written"] += 1
            todo.append(item)
    if dry_run or not todo:
        return tally

    def write(item: Planned) -> bool:
        """Write one file; False when a link was asked for but a copy had to be made."""
        dest = out / item.dest
        if link != "copy" and item.link is not None:
            try:
                _link(item.link, dest, link)
                return True
            except OSError:  # another file system, or links not allowed: copy instead
                atomic_write_bytes(dest, item.make())
                return False
        atomic_write_bytes(dest, item.make())
        return True

    with progress_bar(total=len(todo), desc=f"writing {out.name or out}", unit="file",
                      disable=not progress) as bar:
        if workers <= 1:
            results = []
            for item in todo:
                results.append(write(item))
                bar.update()
        else:
            with ThreadPoolExecutor(workers) as pool:
                futures = [pool.submit(write, item) for item in todo]
                try:
                    for future in as_completed(futures):
                        future.result()
                        bar.update()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
                results = [f.result() for f in futures]
    for item, linked in zip(todo, results, strict=True):
        if not linked:
            tally[item.kind]["copied (link failed)"] += 1
    return tally


def _link(source: Path, dest: Path, mode: str) -> None:
    """Hard- or symlink ``dest`` to ``source`` atomically (a link at a temporary name, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    if mode == "hardlink":
        os.link(source, tmp)
    else:
        os.symlink(source.resolve(), tmp)
    os.replace(tmp, dest)


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------
def draw_val(groups: Iterable[str], val: float, seed: int) -> set[str]:
    """Seeded random validation groups (records), drawn as ``wrp.data.build_manifest`` draws them.

    ``val`` is a count (≥ 1) or a fraction (0 < val < 1); each split keeps at least one group.
    """
    ids = sorted(set(groups))
    n_val = round(val * len(ids)) if 0 < val < 1 else int(val)
    if not 1 <= n_val < len(ids):
        raise DatasetError(f"--val {val} asks for {n_val} validation record(s) out of {len(ids)}; each split "
                           "needs at least one record (prepare more of the dataset, or change --val)")
    return set(random.Random(seed).sample(ids, n_val))


# ---------------------------------------------------------------------------------------------
# A preparation: plan + split + report, and running it
# ---------------------------------------------------------------------------------------------
@dataclass
class Preparation:
    """Everything a prepare script decided before writing a byte.

    ``info`` goes to ``splits/dataset.json`` (read back by :func:`wrp.data.read_prepared`):
    ``partition_length``, ``labelled``, ``split_mode`` ("layout" | "cv2"), ``label_format``,
    ``num_classes``, ``seed`` and ``options`` — the choices that decide which files go where;
    a second run into the same folder with other options is refused.
    """

    dataset: str
    source: str
    files: list[Planned]
    train: list[str]  # record ids (``<city>_<seq>``) per split
    val: list[str]
    info: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)  # report lines, in order
    missing: list[str] = field(default_factory=list)  # files the dataset should have but lacks
    notes: list[str] = field(default_factory=list)


def split_files(prep: Preparation) -> list[Planned]:
    """``splits/train.txt``, ``val.txt`` (record ids), ``dataset.json`` and ``missing.txt``."""
    info = {**prep.info, "dataset": prep.dataset, "version": 1,
            "records": {"train": len(prep.train), "val": len(prep.val)}}

    def text(lines: Iterable[str]) -> Callable[[], bytes]:
        body = "".join(f"{line}\n" for line in lines)
        return lambda: body.encode()

    as_json = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    return [Planned("splits/train.txt", "metadata", text(sorted(prep.train)), replace=True),
            Planned("splits/val.txt", "metadata", text(sorted(prep.val)), replace=True),
            Planned("splits/missing.txt", "metadata", text(prep.missing), replace=True),
            Planned(PREPARED_FILE, "metadata", lambda: as_json, replace=True)]


def check_same_options(out: Path, prep: Preparation) -> None:
    """Refuse to write into a folder prepared with other options (the trees would mix)."""
    path = out / PREPARED_FILE
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return  # a damaged description is simply rewritten
    before = {"dataset": old.get("dataset"), **old.get("options", {})}
    now = {"dataset": prep.dataset, **json.loads(json.dumps(prep.info.get("options", {})))}
    if before != now:
        diff = ", ".join(f"{k}: {before.get(k)!r} → {now.get(k)!r}" for k in sorted(set(before) | set(now))
                         if before.get(k) != now.get(k))
        raise DatasetError(f"{out} was prepared with other options ({diff}); files placed by both would "
                           "mix — rerun with the same options, or choose a new --out")


def execute(prep: Preparation, out: str | Path, dry_run: bool = False, link: str = "copy",
            progress: bool = True, verify: bool = True, workers: int = 1,
            stream: TextIO | None = None) -> dict[str, Any]:
    """Write a preparation (or, with ``dry_run``, say what would be written), report, verify.

    Returns the report as a dict: the counts, the tally per kind of file and, after verification,
    the manifest counts of the written tree. While it writes, ``out`` is held for this run alone
    (:func:`wrp.io.exclusive_folder`): two preparations started together into one folder cannot
    both pass the options check and mix their files.
    """
    out = Path(out)
    if dry_run:
        return _execute(prep, out, dry_run, link, progress, verify, workers, stream or sys.stdout)
    with exclusive_folder(out, "preparation"):
        return _execute(prep, out, dry_run, link, progress, verify, workers, stream or sys.stdout)


def _execute(prep: Preparation, out: Path, dry_run: bool, link: str, progress: bool, verify: bool,
             workers: int, stream: TextIO) -> dict[str, Any]:
    check_same_options(out, prep)
    # dataset.json first (it holds the options a later run is checked against), the record lists
    # last: a tree whose splits/train.txt exists was written completely.
    *lists, description = split_files(prep)
    tally: dict[str, Counter[str]] = {}
    for part, bar in (([description], False), (prep.files, progress), (lists, False)):
        for kind, count in write_plan(part, out, dry_run, link, bar, workers).items():
            tally.setdefault(kind, Counter()).update(count)
    plan = [*prep.files, description, *lists]
    tally = {kind: tally[kind] for kind in dict.fromkeys(p.kind for p in plan)}  # report in plan order

    def say(line: str = "") -> None:
        print(line, file=stream)

    say(f"{prep.dataset}: {prep.source} → {out}" + ("   [dry run: nothing written]" if dry_run else ""))
    for key, value in prep.counts.items():
        say(f"  {key}: {value}")
    verb = "to write" if dry_run else "written"
    for kind, count in tally.items():
        failed = count["copied (link failed)"]
        extra = f", {failed} copied (link failed)" if failed else ""
        say(f"  {kind + ' files:':<13} {count['written']} {verb}, {count['present']} already in place{extra}")
    new = sum(c["written"] for c in tally.values())
    if not dry_run and new == 0:
        say("  nothing new: every file was already in place")
    if dry_run and new:
        todo = [p.dest for p in plan if not (out / p.dest).exists()]
        more = f"\n       … and {len(todo) - 3} more" if len(todo) > 3 else ""
        say("  e.g. " + "\n       ".join(todo[:3]) + more)
    say(f"  missing files: {len(prep.missing)}" + (" (listed in splits/missing.txt)" if prep.missing else ""))
    for line in prep.missing[:10]:
        say(f"    {line}")
    if len(prep.missing) > 10:
        say(f"    … and {len(prep.missing) - 10} more")
    for note in prep.notes:
        say(f"  note: {note}")
    report: dict[str, Any] = {"counts": prep.counts, "files": {k: dict(v) for k, v in tally.items()},
                              "missing": len(prep.missing)}
    if verify and not dry_run:
        prepared = read_prepared(out)
        manifest = prepared.manifest()
        report["manifest"] = manifest.counts()
        c = report["manifest"]
        say(f"  read back: wrp.data.read_prepared(out).manifest() → {c['train_partitions']} train / "
            f"{c['val_partitions']} val partitions of {prepared.partition_length} frames "
            f"(labelled frame {prepared.labelled}, split {prepared.split_mode!r})")
    return report


# ---------------------------------------------------------------------------------------------
# The command line every script shares
# ---------------------------------------------------------------------------------------------

def execute_args(prep: Preparation, args: Any) -> dict[str, Any]:
    """:func:`execute` with the options of :func:`parser` (``--out``, ``--dry-run``, ``--link`` where
    the script has it, ``--no-progress``, ``--no-verify``, ``--workers``)."""
    return execute(prep, args.out, dry_run=args.dry_run, link=getattr(args, "link", "copy"),
                   progress=not args.no_progress, verify=not args.no_verify, workers=args.workers)

def parser(description: str, epilog: str = "", link: bool = False) -> argparse.ArgumentParser:
    """An argparse parser with the options every prepare script has."""
    p = argparse.ArgumentParser(description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output root (the Cityscapes sequence layout)")
    p.add_argument("--dry-run", action="store_true", help="say what would be written; write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="threads that decode / encode / copy files (default: up to 4)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip reading the written tree back with build_manifest at the end")
    if link:
        p.add_argument("--link", choices=LINK_MODES, default="copy",
                       help="for files copied unchanged from an extracted folder: copy them (default) or "
                            "hard/symbolic-link them to save disk (zipped files are always copied)")
    return p


def run_main(prepare: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> int:
    """Run a script's ``prepare(argv)``; a DatasetError becomes one line on stderr and exit code 1."""
    try:
        prepare(argv)
    except (DatasetError, FolderBusy) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# A user's own frames: frames/<video>/<frame> + labels/<video>/<stem>.png → a prepared tree
# ---------------------------------------------------------------------------------------------
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
LABEL_INPUTS = ("label-ids", "train-ids")  # how a user's label PNGs encode classes
_TRAIN_IDS = np.full(256, -1, np.int16)  # train id (0..18, 255 ignore) → official label id
_TRAIN_IDS[:NUM_CLASSES] = TRAIN_TO_LABEL[:NUM_CLASSES]
_TRAIN_IDS[IGNORE_INDEX] = 0  # unlabeled
_LABEL_IDS = np.where(LABEL_TO_TRAIN == _UNKNOWN, -1, np.arange(256)).astype(np.int16)  # as they are


def natural_key(name: str) -> tuple[list[Any], str]:
    """Sort key of a file name that orders the numbers in it by value: ``f2.png`` < ``f10.png``."""
    parts = re.split(r"(\d+)", name)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], name


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of a PNG or JPEG from its header, without decoding the pixels."""
    if path.suffix.lower() == ".png":
        return png_size(path)
    try:
        with open(path, "rb") as handle:
            if handle.read(2) != b"\xff\xd8":
                raise ValueError("no JPEG start marker")
            while True:
                if handle.read(1) != b"\xff":
                    raise ValueError("malformed or ends before its frame header")
                marker = handle.read(1)
                while marker == b"\xff":  # fill bytes before a marker
                    marker = handle.read(1)
                if not marker or marker[0] in (0xD9, 0xDA):  # end of image / scan before a frame header
                    raise ValueError("ends before its frame header")
                if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD8:  # markers without a length
                    continue
                head = handle.read(2)
                if 0xC0 <= marker[0] <= 0xCF and marker[0] not in (0xC4, 0xC8, 0xCC):  # start of frame
                    data = handle.read(5)
                    if len(data) < 5:
                        raise ValueError("truncated frame header")
                    return int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:5], "big")
                if len(head) < 2:
                    raise ValueError("truncated")
                handle.seek(int.from_bytes(head, "big") - 2, os.SEEK_CUR)
    except FileNotFoundError:
        raise DatasetError(f"missing file {path}") from None
    except ValueError as exc:
        raise DatasetError(f"{path} is not a valid JPEG ({exc}; corrupt or truncated); re-create or "
                           "re-extract it") from None


def _frame_bytes(path: Path) -> bytes:
    """A frame as PNG bytes: a PNG as it is, a JPEG decoded (orientation as stored) and encoded."""
    data = path.read_bytes()
    if path.suffix.lower() == ".png":
        return data
    image = decode_image(data, str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return encode_png(image, str(path))


def user_label_ids(path: Path, label_format: str = "label-ids") -> np.ndarray:
    """(H, W) uint8 official Cityscapes label ids of a user's label PNG, every value checked.

    ``label_format``: ``"label-ids"`` (official Cityscapes label ids, kept as they are) or
    ``"train-ids"`` (train ids 0..18, 255 = ignore; converted, 255 → 0 unlabeled).
    """
    if label_format not in LABEL_INPUTS:
        raise ValueError(f"label_format={label_format!r}; use one of {LABEL_INPUTS}")
    if path.suffix.lower() != ".png":
        raise DatasetError(f"label {path} is not a PNG; save labels as single-channel PNGs (a lossy "
                           "format such as JPEG changes the ids)")
    try:
        label = decode_label_png(path.read_bytes(), str(path))
    except (OSError, DatasetError):
        raise DatasetError(f"cannot read label {path} (corrupt or not an image); save it again") from None
    ids = "label ids" if label_format == "label-ids" else "train ids 0..18 (255 = ignore)"
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(f"label {path} has shape {label.shape} and dtype {label.dtype}; expected a "
                           f"single-channel 8-bit PNG of Cityscapes {ids} (not a colour image)")
    if label_format == "train-ids":
        return map_ids(label, _TRAIN_IDS, str(path), "Cityscapes train (0..18, 255 = ignore)")
    try:
        return map_ids(label, _LABEL_IDS, str(path), "Cityscapes label")
    except DatasetError as exc:
        raise DatasetError(f"{exc} Labels of train ids 0..18 / 255: --label-format train-ids") from None


def _list_folder(folder: Path) -> tuple[dict[str, list[Path]], list[Path], list[Path]]:
    """``{video: files}`` of ``folder/<video>/<file>`` (hidden names skipped), the files lying
    directly in ``folder`` and the entries ignored (nested folders)."""
    videos: dict[str, list[Path]] = {}
    loose, ignored = [], []
    if not folder.is_dir():
        return videos, loose, ignored
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            loose.append(entry)
        elif entry.is_dir():
            files = videos.setdefault(entry.name, [])
            for item in sorted(entry.iterdir()):
                if item.name.startswith("."):
                    continue
                (files if item.is_file() else ignored).append(item)
    return videos, loose, ignored


def plan_frames(frames: str | Path, labels: str | Path, *, dataset: str = "own", partition_length: int = 21,
                labelled: int | None = None, val: float = 0.2, seed: int = 0,
                label_format: str = "label-ids", progress: bool = True) -> Preparation:
    """The :class:`Preparation` of a user's frames (see :func:`prepare_frames`): names, frame sizes
    and labels are checked here, before a byte is written."""
    frames, labels = Path(frames), Path(labels)
    if label_format not in LABEL_INPUTS:
        raise DatasetError(f"label format {label_format!r}; use one of {', '.join(LABEL_INPUTS)}")
    if partition_length < 1:
        raise DatasetError(f"partition length {partition_length}: use ≥ 1 (the paper: 21)")
    centre = partition_length // 2 if labelled is None else labelled
    if not 0 <= centre < partition_length:
        raise DatasetError(f"labelled position {labelled} must lie in 0..{partition_length - 1} "
                           f"(a partition has {partition_length} frames)")
    if val <= 0:
        raise DatasetError(f"val {val}: give a share (0 < val < 1) or a count ≥ 1 of validation videos")
    if not frames.is_dir():
        raise DatasetError(f"frames folder {frames} does not exist; pass the folder holding one "
                           "sub-folder of frames per video (FRAMES/<video>/<frame>.png|jpg)")
    listed, loose, ignored = _list_folder(frames)
    if loose and any(p.suffix.lower() in FRAME_EXTENSIONS for p in loose):
        example = next(p for p in loose if p.suffix.lower() in FRAME_EXTENSIONS)
        raise DatasetError(f"{example} lies directly in {frames}; put each video's frames in a sub-folder of "
                           f"its own (e.g. {frames / 'video1' / example.name})")
    ignored += loose
    videos: dict[str, list[Path]] = {}
    for video, files in listed.items():
        images = [p for p in files if p.suffix.lower() in FRAME_EXTENSIONS]
        ignored += [p for p in files if p.suffix.lower() not in FRAME_EXTENSIONS]
        videos[video] = sorted(images, key=lambda p: natural_key(p.name))
    if not any(videos.values()):
        raise DatasetError(f"no frames in {frames}: expected {frames}/<video>/<frame>.png (or .jpg), one "
                           "sub-folder per video")

    # names in the layout: <city> = the video folder, one record (<city>_000000) per video
    cities: dict[str, str] = {}
    for video in videos:
        city = re.sub(r"[^A-Za-z0-9_-]", "-", video)
        if city in cities.values():
            other = next(v for v, c in cities.items() if c == city)
            raise DatasetError(f"video folders {frames / other} and {frames / video} both become record "
                               f"{city!r} (names keep letters, digits, _ and -); rename one of them")
        cities[video] = city
    for video, images in videos.items():
        stems = Counter(p.stem for p in images)
        if (twice := [s for s, n in stems.items() if n > 1]):
            same = [p.name for p in images if p.stem == twice[0]]
            raise DatasetError(f"{frames / video} holds {' and '.join(same)}: two frames with the name "
                               f"{twice[0]!r}, so a label {twice[0]}.png would fit both; keep one of them")
        if len(images) < partition_length:
            raise DatasetError(f"{frames / video} holds {len(images)} frame(s), fewer than one partition of "
                               f"{partition_length}; add frames, lower --partition-length, or remove the "
                               "folder")
    if len(videos) < 2:
        raise DatasetError(f"{frames} holds one video ({next(iter(videos))}); train and val are split by "
                           "video, so at least two are needed — split it into two sub-folders (e.g. its "
                           "first and second half)")

    # labels: each must belong to a frame; the labelled position of every partition needs one
    label_videos, label_loose, label_ignored = _list_folder(labels)
    for path in label_loose:
        if path.suffix.lower() in (".png", *FRAME_EXTENSIONS):
            raise DatasetError(f"label {path} lies directly in {labels}; put it in the sub-folder of its "
                               f"video, named as its frame: {labels}/<video>/<frame stem>.png")
    ignored += label_ignored + label_loose
    label_of: dict[Path, Path] = {}  # frame → its label file
    for video, files in label_videos.items():
        by_stem = {p.stem: p for p in videos.get(video, [])}
        for path in files:
            if path.suffix.lower() not in (".png", *FRAME_EXTENSIONS):
                ignored.append(path)
                continue
            if path.suffix.lower() != ".png":
                raise DatasetError(f"label {path} is not a PNG; save labels as single-channel PNGs (JPEG "
                                   "changes the ids)")
            if path.stem not in by_stem:
                where = (f"{frames / video}/{path.stem}.png (or .jpg)" if video in videos
                         else f"a video folder {frames / video}")
                raise DatasetError(f"label {path} has no frame (expected {where}); name each label as its "
                                   "frame (same stem, .png), or remove it")
            label_of[by_stem[path.stem]] = path

    refs: dict[Path, FrameRef] = {}  # frame → its place in the layout (split filled in below)
    labelled_frames: list[Path] = []
    leftover = 0
    for video, images in videos.items():
        city = cities[video]
        record = Record(f"{city}_000000", tuple(FrameRef("", city, "000000", i) for i in range(len(images))))
        parts = partition_record(record, partition_length, centre)
        for part in parts:
            for ref in part.frames:
                refs[images[ref.frame]] = ref
            labelled_frames.append(images[part.frames[part.labelled].frame])
        leftover += len(images) - len(parts) * partition_length
    missing = [f for f in labelled_frames if f not in label_of]
    if missing:
        expected = labels / missing[0].parent.name / f"{missing[0].stem}.png"
        more = "" if len(missing) == 1 else (
            f"; {len(missing)} labelled frames lack a label in all: "
            + ", ".join(str(p.relative_to(frames)) for p in missing[:8]) + (" …" if len(missing) > 8 else ""))
        head = f"labels folder {labels} does not exist; " if not labels.is_dir() else ""
        raise DatasetError(f"{head}frame {missing[0]} has no label (expected {expected}): position "
                           f"{centre} of every partition of {partition_length} frames is the labelled "
                           f"frame and needs one{more}. Add the label, or change --partition-length "
                           "/ --labelled")

    # sizes, from the headers: every frame of a video alike, every label as its frame
    size_of: dict[str, tuple[int, int]] = {}
    for frame, ref in refs.items():
        size = image_size(frame)
        first = size_of.setdefault(ref.city, size)
        if size != first:
            raise DatasetError(f"frame {frame} is {size[1]}×{size[0]} but the first frame of "
                               f"{frame.parent} is {first[1]}×{first[0]}; every frame of a video must have "
                               "one size — resize it, or move it to a folder of its own")
    written_labels = [(frame, label_of[frame]) for frame in refs if frame in label_of]
    for frame, path in progress_bar(written_labels, desc="checking labels", unit="label",
                                    disable=not progress):
        shape = user_label_ids(path, label_format).shape
        if shape != size_of[refs[frame].city]:
            height, width = size_of[refs[frame].city]
            raise DatasetError(f"label {path} is {shape[1]}×{shape[0]} but its frame {frame} is "
                               f"{width}×{height}; a label must have its frame's size (resize it with "
                               "nearest-neighbour interpolation)")

    # the split, by video, and the files
    ids = sorted(f"{c}_000000" for c in cities.values())
    share = 0 < val < 1
    val_ids = draw_val(ids, min(max(round(val * len(ids)), 1), len(ids) - 1) if share else val, seed)
    files: list[Planned] = []
    sources: list[str] = []
    for frame, ref in refs.items():
        ref = FrameRef("val" if ref.record_id in val_ids else "train", ref.city, ref.seq, ref.frame)
        label = label_of.get(frame)
        make_label = None if label is None else (
            lambda path=label: encode_png(user_label_ids(path, label_format), str(path)))
        link = frame if frame.suffix.lower() == ".png" else None
        planned = frame_files(ref, partial(_frame_bytes, frame), make_label, link)
        if len(planned) == 2:  # labels are small and may be corrected: rewritten when they differ
            planned[1] = Planned(planned[1].dest, planned[1].kind, planned[1].make, replace=True)
        files += planned
        sources.append(f"{ref.stem}\t{frame.relative_to(frames).as_posix()}")
    listing = "".join(f"{line}\n" for line in sources).encode()
    files.append(Planned("splits/sources.tsv", "metadata", lambda: listing, replace=True))

    n_parts = len(labelled_frames)
    evaluation = len(written_labels) - n_parts
    counts: dict[str, Any] = {
        "records": f"{len(ids)} videos: train {len(ids) - len(val_ids)}, val {len(val_ids)} (seed {seed})",
        "partitions": f"{n_parts} of {partition_length} frames, position {centre} labelled",
        "labelled frames": n_parts,
        "frames with labels for evaluation": evaluation,
        "frames": f"{len(refs)}" + (f" ({leftover} leftover at the ends of videos discarded)" if leftover
                                    else ""),
    }
    notes = []
    if ignored:
        notes.append(f"ignored {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} that are not frames "
                     f"or labels, e.g. {ignored[0]}")
    unused = len(label_of) - len(written_labels)
    if unused:
        notes.append(f"{unused} label(s) of discarded leftover frames not written")
    names = hashlib.sha1(listing).hexdigest()[:12]  # which source file is which frame of the layout
    info = {"partition_length": partition_length, "labelled": centre, "split_mode": "layout",
            "label_format": "cityscapes", "num_classes": NUM_CLASSES, "seed": seed,
            "options": {"partition_length": partition_length, "labelled": centre, "val": val, "seed": seed,
                        "label_format": label_format, "frames_sha1": names}}
    return Preparation(dataset, f"{frames} + {labels}", files, sorted(set(ids) - val_ids), sorted(val_ids),
                       info, counts, [], notes)


def prepare_frames(frames: str | Path, labels: str | Path, out: str | Path, *, dataset: str = "own",
                   partition_length: int = 21, labelled: int | None = None, val: float = 0.2, seed: int = 0,
                   label_format: str = "label-ids", link: str = "copy", dry_run: bool = False,
                   progress: bool = True, verify: bool = True, workers: int = 1,
                   stream: TextIO | None = None) -> Path:
    """A user's frames and labels → a prepared tree that ``--dataset`` / :func:`read_prepared` read.

    Input: ``frames/<video>/<frame>.png|.jpg`` — one sub-folder per video (one record), frames in
    the natural order of their names (``f2`` before ``f10``) — and ``labels/<video>/<stem>.png``,
    the label of the frame with that stem: a single-channel PNG of official Cityscapes label ids
    (``label_format="label-ids"``) or of train ids 0..18 with 255 = ignore (``"train-ids"``,
    converted to label ids). Each video is cut into partitions of ``partition_length`` frames
    (leftovers at its end are discarded); the frame at position ``labelled`` (default: the centre)
    of every partition must have a label. Other frames' labels are optional and, when present, are
    written too: they are used only to evaluate propagation.

    Output (``out``): the Cityscapes sequence layout, ``<video>`` as the city and record
    ``<video>_000000``, frame numbers = positions in the video; videos split into ``train`` /
    ``val`` at random with ``seed`` (``val``: a share, at least one video on each side, or a count);
    ``splits/`` as the ``data_scripts/`` write it, plus ``sources.tsv`` (each frame's source file).
    Names, frame sizes (from the file headers) and every label are checked before a byte is
    written (an error names the file and the fix); then
    :func:`execute` writes it atomically, skips files already in place, refuses to mix with a tree
    prepared from other frames or options, reports to ``stream`` and reads the tree back.
    ``link`` (``copy`` | ``hardlink`` | ``symlink``) applies to PNG frames; JPEGs are converted.
    Returns ``out``.
    """
    out = Path(out)
    for folder in (Path(frames), Path(labels)):
        if out.resolve().is_relative_to(folder.resolve()):
            raise DatasetError(f"--out {out} lies inside {folder}; write the prepared tree elsewhere")
    prep = plan_frames(frames, labels, dataset=dataset, partition_length=partition_length, labelled=labelled,
                       val=val, seed=seed, label_format=label_format, progress=progress)
    execute(prep, out, dry_run=dry_run, link=link, progress=progress, verify=verify, workers=workers,
            stream=stream)
    return out


def tree_to_frames(root: str | Path, out: str | Path, *, link: str = "copy", progress: bool = True,
                   workers: int = 1) -> dict[str, int]:
    """Write a tree in the Cityscapes sequence layout as a user's frames folder.

    Every frame of ``root`` goes to ``out/frames/<record>/<frame:06d>.png`` and every label it has
    to ``out/labels/<record>/<frame:06d>.png`` (copied as they are: official label ids), so that
    :func:`prepare_frames` (``wrp prepare-frames OUT/frames OUT/labels --out TREE``) makes a tree
    from them. ``<record>`` is the record id (``<city>_<seq>``); a record with gaps in its frame
    numbers gives one folder per continuous run (``<record>-<first frame>``). Files are written
    atomically and a rerun writes only what differs; ``out`` holding videos that ``root`` lacks is
    refused. Returns the counts: ``videos``, ``frames``, ``labels``.
    """
    root, out = Path(root), Path(out)
    records = scan_records(root)
    runs = Counter(r.record_id for r in records)
    plan: list[Planned] = []
    folders: set[str] = set()
    for record in records:
        folder = record.record_id if runs[record.record_id] == 1 else \
            f"{record.record_id}-{record.frames[0].frame:06d}"
        if folder in folders:
            raise DatasetError(f"record {record.record_id} appears in two split folders of {root}; convert "
                               "one split at a time")
        folders.add(folder)
        for ref in record.frames:
            image, label = ref.image(root), ref.label(root)
            plan.append(Planned(f"frames/{folder}/{ref.frame:06d}.png", "image", image.read_bytes, image,
                                replace=True))
            if label.is_file():
                plan.append(Planned(f"labels/{folder}/{ref.frame:06d}.png", "label", label.read_bytes, label,
                                    replace=True))
    for kind in ("frames", "labels"):
        if (out / kind).is_dir():
            strays = sorted(p.name for p in (out / kind).iterdir()
                            if p.is_dir() and not p.name.startswith(".") and p.name not in folders)
            if strays:
                raise DatasetError(f"{out / kind} holds videos that {root} lacks ({', '.join(strays[:3])}); "
                                   "choose an empty folder")
    write_plan(plan, out, link=link, progress=progress, workers=workers)
    return {"videos": len(folders), "frames": sum(len(r) for r in records),
            "labels": sum(p.kind == "label" for p in plan)}
