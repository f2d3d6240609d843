"""Atomic file writes: a crash leaves either the old file or the new one, never half of one.

Every artefact ``wrp`` writes (metrics, stage records, checkpoints, label maps, figures) goes
through these helpers: write to a temporary file in the same folder, flush to disk, then
``os.replace`` — an atomic rename on POSIX and Windows.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


def _file_mode() -> int:
    """The mode a new file gets under the process's umask (0644 under 0022), as ``open`` gives it.
    The umask is read, not set: setting it to read it would race with other threads writing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:  # no /proc: read it the old way, one thread at a time
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


_UMASK_LOCK = threading.Lock()


@contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; rename it onto ``path`` on success.
    The file gets the mode the umask gives new files (a lab can share what wrp writes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), _file_mode())
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


class FolderBusy(RuntimeError):
    """Another process is writing the folder (see :func:`exclusive_folder`)."""


@contextmanager
def exclusive_folder(folder: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold ``folder`` for one writer: a second run into it — of any settings — is refused at once
    with :class:`FolderBusy` naming the folder, instead of mixing its files with the first one's.
    The lock is the kernel's (``flock`` on the folder itself, no lock file): it ends with the
    process however that ends, so a killed run never leaves the folder locked."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(f"{folder} is being written by another {what}; wait for it to finish, or "
                             "choose another --out") from None
        except OSError:  # a file system that cannot lock a folder (e.g. NFS): a lock file inside it
            os.close(fd)
            fd = os.open(folder / ".wrp.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FolderBusy(f"{folder} is being written by another {what}; wait for it to finish, "
                                 "or choose another --out") from None
            except OSError as exc:
                raise OSError(exc.errno, f"cannot lock this folder ({exc.strerror})", str(folder)) from None
        yield folder
    finally:
        os.close(fd)  # releases the lock


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
