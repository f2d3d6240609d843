"""Atomic file writes: a crash leaves either the old file or the new one, never half of one.

Every artefact ``wrp`` writes (metrics, stage records, checkpoints, label maps, figures) goes
through these helpers: write to a temporary file in the same folder, flush to disk, then
``os.replace`` — an atomic rename on POSIX and Windows.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


@contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_open(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Pretty, key-sorted JSON (diffs stay readable); numpy scalars and paths are converted."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def atomic_save(path: str | os.PathLike[str], save: Callable[[BinaryIO], None]) -> Path:
    """Run ``save(handle)`` (e.g. ``torch.save(obj, handle)``, ``fig.savefig(handle)``) atomically."""
    with atomic_open(path) as handle:
        save(handle)
    return Path(path)


def atomic_write_png(path: str | os.PathLike[str], array: Any) -> Path:
    """Encode an (H, W) or (H, W, 3) uint8 array (BGR, as OpenCV) as PNG and write it atomically."""
    import cv2

    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode a PNG for {path}")
    return atomic_write_bytes(path, data.tobytes())


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    for attr in ("item", "tolist"):  # numpy / torch scalars and arrays
        if hasattr(value, attr):
            try:
                return getattr(value, attr)()
            except (TypeError, ValueError):
                continue
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
