"""The stage cache: every arrow of the pipeline is a stage whose artefacts live under
``runs/stages/<name>/<key>/``, where ``key`` is a hash of the config that made them and of the
stage's explicit ``version`` — never of source files or module paths, so moving or tidying code
reuses every cache, and a change of what a stage produces is declared by bumping its version.
The stages themselves are built in ``wrp.stages``.

So any notebook can run on its own: it asks for the stages it needs; a stage already built with
the same config (by an earlier notebook, or an earlier run killed half-way and now finished) is
reused instead of recomputed.

A stage folder holds

- ``config.json`` — the exact config (written before the build starts);
- whatever the build writes (checkpoints, label folders, ``metrics.json``, …);
- ``stage.json`` — written atomically **last**; its presence is what "done" means. It also
  records the threads torch computed with: on the CPU a training gives the same numbers from the
  same seed only at the same thread count, so a stage rebuilt with another ``OMP_NUM_THREADS``
  may differ from the one it replaces.

A build that crashes leaves its partial files and no ``stage.json``; the next ``run`` calls the
build again on the same folder, so builds that checkpoint (training, dataset propagation) resume
instead of starting over. A file lock keeps two processes from building the same stage at once.

Example::

    stage = Stage("synth", synth_config)
    world_dir = stage.run(lambda out: generate_world(synth_config, out))
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wrp.io import atomic_write_json
from wrp.runtime import runs_dir, torch_threads

DONE_FILE = "stage.json"
CONFIG_FILE = "config.json"


#: Field metadata of a dataclass field added to a config after its stages were first cached: the
#: field enters the canonical form (and so the key) only when set away from its default, so every
#: stage built before the field existed keeps its key — ``field(default=…, metadata=ADDED_LATER)``.
KEY_ONLY_WHEN_SET = "key-only-when-set"
ADDED_LATER = {KEY_ONLY_WHEN_SET: True}


def canonical_config(config: Any) -> Any:
    """A JSON-ready, order-independent form of a config (dataclass, dict, list, scalar, path);
    a field marked :data:`ADDED_LATER` is left out while it holds its default."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: canonical_config(getattr(config, f.name)) for f in dataclasses.fields(config)
                if not (f.metadata.get(KEY_ONLY_WHEN_SET) and getattr(config, f.name) == f.default)}
    if isinstance(config, dict):
        return {str(k): canonical_config(v) for k, v in sorted(config.items(), key=lambda kv: str(kv[0]))}
    if isinstance(config, (list, tuple)):
        return [canonical_config(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    if config is None or isinstance(config, (str, int, float, bool)):
        return config
    raise TypeError(
        f"a stage config may hold dataclasses, dicts, lists, paths and scalars; got {type(config).__name__}"
    )


def config_hash(config: Any, length: int = 12) -> str:
    """Hex digest of the canonical JSON of ``config``: equal configs give equal keys."""
    text = json.dumps(canonical_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


_ANNOUNCED: set[Path] = set()  # stage folders whose reuse this process has already reported


@dataclass
class Stage:
    """One cached step of the pipeline, identified by ``name`` and the hash of ``config``.

    ``version`` is part of the key: bump it when a stage's code changes what it produces, so old
    artefacts are not reused by mistake.
    """

    name: str
    config: Any
    version: int = 1
    root: Path = field(default_factory=lambda: runs_dir() / "stages")

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"stage name {self.name!r} must be a plain folder name")
        self.root = Path(self.root)

    @property
    def key(self) -> str:
        return config_hash({"stage": self.name, "version": self.version, "config": self.config})

    @property
    def dir(self) -> Path:
        return self.root / self.name / self.key

    @property
    def done(self) -> bool:
        return (self.dir / DONE_FILE).is_file()

    def record(self) -> dict[str, Any]:
        """The ``stage.json`` of a finished stage."""
        if not self.done:
            raise FileNotFoundError(
                f"stage {self.name!r} ({self.key}) has not finished: no {self.dir / DONE_FILE}"
            )
        return json.loads((self.dir / DONE_FILE).read_text())

    def run(
        self,
        build: Callable[[Path], dict[str, Any] | None],
        force: bool = False,
        verbose: bool = True,
    ) -> Path:
        """Return the stage folder, calling ``build(folder)`` first unless it already finished.

        ``build`` may return a small dict (e.g. headline metrics) stored in ``stage.json``.
        ``force=True`` rebuilds a finished stage (its old ``stage.json`` is removed first).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.dir / ".lock"):
            if self.done and not force:
                if verbose and self.dir not in _ANNOUNCED:  # once per process: stages ask each other often
                    print(f"[wrp] stage {self.name}: reusing {self.dir}")
                    _ANNOUNCED.add(self.dir)
                return self.dir
            (self.dir / DONE_FILE).unlink(missing_ok=True)
            resumed = any(p.name not in (".lock", CONFIG_FILE) for p in self.dir.iterdir())
            if verbose:
                verb = "resuming" if resumed else "building"
                print(f"[wrp] stage {self.name}: {verb} in {self.dir}")
            atomic_write_json(self.dir / CONFIG_FILE, canonical_config(self.config))
            started = time.time()
            result = build(self.dir)
            atomic_write_json(
                self.dir / DONE_FILE,
                {
                    "name": self.name,
                    "key": self.key,
                    "version": self.version,
                    "started": started,
                    "finished": time.time(),
                    "seconds": round(time.time() - started, 3),
                    "resumed": resumed,
                    "threads": torch_threads(),  # CPU numbers depend on it (wrp.runtime.torch_threads)
                    "result": result or {},
                },
            )
        return self.dir


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class StageInfo:
    name: str
    key: str
    dir: Path
    done: bool
    seconds: float | None
    size_bytes: int


def list_stages(root: Path | None = None) -> list[StageInfo]:
    """Every stage folder under ``root`` (default ``runs/stages``), finished or not."""
    root = Path(root) if root is not None else runs_dir() / "stages"
    found = []
    if not root.is_dir():
        return found
    for name_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for key_dir in sorted(p for p in name_dir.iterdir() if p.is_dir()):
            done_file = key_dir / DONE_FILE
            try:
                seconds = json.loads(done_file.read_text()).get("seconds") if done_file.is_file() else None
            except json.JSONDecodeError as exc:
                raise ValueError(f"{done_file} is damaged ({exc}); delete {key_dir} to build that stage "
                                 "again") from None
            size = sum(p.stat().st_size for p in key_dir.rglob("*") if p.is_file())
            found.append(StageInfo(name_dir.name, key_dir.name, key_dir, done_file.is_file(), seconds, size))
    return found
