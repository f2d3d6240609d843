"""The labelling pipeline's moving parts: frames and flows prepared by worker threads, label files
written by a background thread, and a clock per stage.

``wrp.policies.propagate_clips`` labels a dataset one *step* at a time: for a batch of clips, the
frames at distance d from their labelled frames get their labels from those at distance d − 1.
A step's labels depend on the previous step's, but its inputs do not: the two frames, and the
optical flow between them (DIS runs on the CPU). So those are prepared ahead, in parallel, by
worker threads (:func:`step_inputs` over :class:`StepFrames`), while the propagation device warps
labels and runs ``g_ψ`` and Ω; the label PNGs go to a :class:`LabelWriter` thread.
Neither changes a number: a step's inputs are the same whoever computes them, and the files are the
same whatever the number of workers (``workers=0`` does everything in one thread, in order — the
reference path).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wrp.data import DatasetError, write_label_ids
from wrp.io import atomic_write_png
from wrp.motion import FlowEstimator
from wrp.runtime import usable_cores

#: The pipeline's stages, in the order a frame passes them (``StageClock.seconds`` keys).
STAGES = ("decode", "flow", "warp", "g_ψ", "Ω", "write")


class StageClock:
    """Seconds spent per stage, summed over a run. ``sync=True`` waits for the CUDA device before
    reading the clock, so GPU stages are timed, not just queued (benchmarks only: it costs
    throughput). Stages run by workers are added with :meth:`add` from what they measured."""

    def __init__(self, sync: bool = False) -> None:
        self.sync = sync and torch.cuda.is_available()
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.sync:
            torch.cuda.synchronize()
        tic = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                torch.cuda.synchronize()
            self.add(stage, time.perf_counter() - tic)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:  # the writer thread adds too
            self.seconds[stage] += seconds

    def report(self) -> dict[str, float]:
        return {stage: round(v, 3) for stage, v in self.seconds.items()}


@dataclass(frozen=True)
class PlannedStep:
    """One propagation step of a batch of clips: the clips ``todo`` (indices into the batch) get
    the labels of their frames at ``distance`` from the labelled frame, in time ``direction``,
    from their labels at ``distance - 1``."""

    group: int
    direction: int
    distance: int
    todo: tuple[int, ...]


#: What a policy's step needs prepared: the target frames, the source frames (warped for Ω), the
#: backward flow target → source, and the forward flow (the forward–backward check).
NEEDS = {"copy": (), "motion-only": ("flow",), "semantic-only": ("targets",),
         "warp-inpaint": ("targets", "flow", "flow_reverse"),
         "warp-refine": ("targets", "sources", "flow", "flow_reverse")}


class StepFrames:
    """The inputs of each planned step, as tensors: ``targets`` / ``sources`` (B, 3, H, W) uint8,
    ``flow`` / ``flow_reverse`` (B, H, W, 2) float32 (those the policy ``needs``; page-locked when
    ``pin``), and the seconds the work took (``decode``, ``flow``). A frame that cannot be read, or
    whose size differs from its labelled frame's, comes back as ``{"error": message}`` naming
    the file — raised by the consumer, so a worker's error reads like the one-process run's. Each
    thread estimates flow with its own :meth:`~wrp.motion.FlowEstimator.for_thread` copy."""

    def __init__(self, groups: Sequence[Sequence[Any]], steps: Sequence[PlannedStep],
                 estimator: FlowEstimator, needs: Sequence[str], pin: bool = False) -> None:
        self.groups, self.steps, self.estimator, self.needs = groups, steps, estimator, tuple(needs)
        self.pin = pin  # page-locked tensors, for asynchronous copies to a CUDA device
        self._local = threading.local()

    def _check_size(self, clip: Any, pos: int, shape: tuple[int, ...], seconds: dict[str, float]) -> None:
        """Refuse a frame whose size is not its labelled frame's (e.g. replaced after the manifest
        was cached), naming the file."""
        sizes = self._local.__dict__.setdefault("sizes", {})
        if clip.clip_id not in sizes:
            tic = time.perf_counter()
            sizes[clip.clip_id] = clip.image(clip.labelled).shape[:2]
            seconds["decode"] += time.perf_counter() - tic
        size = sizes[clip.clip_id]
        if shape != size:
            raise DatasetError(f"{clip.images[pos]} is {shape[1]}×{shape[0]} but the label it propagates is "
                               f"{size[1]}×{size[0]} (its labelled frame's size); every frame of "
                               f"{clip.clip_id} must have its labelled frame's size")

    def _estimator(self) -> FlowEstimator:
        if not hasattr(self._local, "estimator"):
            self._local.estimator = self.estimator.for_thread()
        return self._local.estimator

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> dict[str, Any]:
        step = self.steps[index]
        seconds = {"decode": 0.0, "flow": 0.0}
        out: dict[str, list] = {name: [] for name in self.needs}
        try:
            for j in step.todo:
                clip = self.groups[step.group][j]
                t = clip.labelled + step.direction * step.distance
                s = t - step.direction
                tic = time.perf_counter()
                target, source = clip.image(t), clip.image(s)
                seconds["decode"] += time.perf_counter() - tic
                for pos, image in ((s, source), (t, target)):
                    self._check_size(clip, pos, image.shape[:2], seconds)
                tic = time.perf_counter()
                if "flow" in out:
                    out["flow"].append(torch.from_numpy(self._estimator().between(clip, t, s)))
                if "flow_reverse" in out:
                    out["flow_reverse"].append(torch.from_numpy(self._estimator().between(clip, s, t)))
                seconds["flow"] += time.perf_counter() - tic
                for name, image in (("targets", target), ("sources", source)):
                    if name in out:
                        out[name].append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        except DatasetError as exc:
            return {"error": str(exc), "index": index}
        tensors = {k: torch.stack(v) for k, v in out.items()}
        if self.pin:
            tensors = {k: v.pin_memory() for k, v in tensors.items()}
        return {"index": index, "seconds": seconds, **tensors}


def default_workers(device: str, procs: int = 1) -> int:
    """Worker threads per labelling process: the cores this process may use, less one for the
    process itself, shared by its ``procs`` processes — at most 8 beside a GPU (DIS on the CPU
    must keep up with it), at most 4 beside the CPU's own networks."""
    spare = usable_cores() // max(procs, 1) - 1
    return max(1 if device.startswith("cuda") else 0, min(8 if device.startswith("cuda") else 4, spare))


def step_inputs(frames: StepFrames, workers: int) -> Iterator[dict[str, Any]]:
    """The items of ``frames`` in order; ``workers`` > 0 prepares them in that many threads, at
    most ``workers + 1`` steps ahead (a step of 8 clips at 1024×2048 holds ~350 MB of frames and
    flows). ``workers=0`` prepares each one when it is asked for. Close the generator when done
    with it early (a failed run): that cancels what is queued and ends the threads.

    Threads, not processes: decoding (OpenCV) and DIS release the GIL, so the threads run in
    parallel with each other and with the device's work — and nothing is pickled or forked (a child
    forked from a process whose OpenCV or OpenMP thread pools have run can hang)."""
    if workers == 0 or len(frames) == 0:
        yield from (frames[i] for i in range(len(frames)))
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="wrp-frames") as pool:
        ahead: deque[Future] = deque()
        submitted = 0
        try:
            for _ in range(len(frames)):
                while submitted < len(frames) and len(ahead) < workers + 1:
                    ahead.append(pool.submit(frames.__getitem__, submitted))
                    submitted += 1
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()


class LabelWriter:
    """Writes label PNGs (and confidence maps) atomically, in the order they are given — in a
    background thread when ``threaded``, so the propagation device never waits on encoding and
    disk. The label file is written after its confidence map: its presence marks the frame done.

    Use as a context manager: leaving it writes everything still queued (also when the run
    fails, so no computed label is lost) and raises the first error of a write (the next
    :meth:`put` raises it too, so a failing disk stops the run). A write error that happens while
    the run is failing for another reason is raised with that reason as its context.
    """

    def __init__(self, confidence: bool, clock: StageClock, threaded: bool = True, depth: int = 256) -> None:
        self.confidence, self.clock = confidence, clock
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = queue.Queue(depth) if threaded else None
        self._thread = threading.Thread(target=self._drain, name="wrp-label-writer", daemon=True)
        if threaded:
            self._thread.start()

    def __enter__(self) -> LabelWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, path: Path, ids: np.ndarray, confidence: np.ndarray | None) -> None:
        if self._error is not None:
            self.close()  # raises the write's error
        if self._queue is None:
            self._write(path, ids, confidence)
        else:
            self._queue.put((path, ids, confidence))

    def _write(self, path: Path, ids: np.ndarray, confidence: np.ndarray | None) -> None:
        tic = time.perf_counter()
        if self.confidence and confidence is not None:
            atomic_write_png(confidence_file(path), confidence_png(confidence))
        write_label_ids(path, ids)
        self.clock.add("write", time.perf_counter() - tic)

    def _drain(self) -> None:
        assert self._queue is not None
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # noqa: BLE001 — handed to the producer
                    self._error = exc

    def close(self) -> None:
        if self._queue is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error  # as the one-thread run raises it: an OSError naming the file


def confidence_png(confidence: np.ndarray) -> np.ndarray:
    """Confidence 0..1 as the 8-bit map holds it (0..255)."""
    return np.clip(np.rint(confidence * 255), 0, 255).astype(np.uint8)


def confidence_file(label: Path) -> Path:
    """The confidence map beside a label file: ``…_confidence.png`` (0..255 = probability)."""
    return label.with_name(label.name.replace("_gtFine_labelIds.png", "_confidence.png"))


__all__ = ["STAGES", "StageClock", "PlannedStep", "NEEDS", "StepFrames", "default_workers", "step_inputs",
           "LabelWriter", "confidence_png", "confidence_file"]
