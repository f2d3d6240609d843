"""The notebook harness: what every notebook calls first and last, and the papermill runner.

Kernel side — every notebook has one ``parameters`` cell (``profile``, ``output_dir``, ``seed``,
``device``, ``nproc``, and ``dataset`` where it reads data) and derives everything else in the
next cell with::

    nb = wrp.notebooks.start("01_cyclic_noise", profile, output_dir, seed, device, nproc)
    run = nb.run                               # the resolved run every stage takes
    ...
    nb.write_metrics({"error_vs_p": ...})      # last cell: <output_dir>/metrics.json

Runner side — ``reproduce()`` (``wrp reproduce``, ``make demo``) executes the numbered notebooks
in order through papermill with injected parameters and per-cell timeouts, keeps the executed
copies under ``runs/<profile>/notebooks/``, and reads back each ``metrics.json``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wrp.io import atomic_write_json
from wrp.profiles import PROFILES, Profile, Run, profile_names
from wrp.runtime import project_root, runs_dir, seed_everything
from wrp.viz import save_figure

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
HARNESS_PARAMETERS = ("profile", "output_dir", "seed", "device", "nproc")

# Which notebook covers which part of the paper. Notebook 00 renders this table and marks the
# notebooks present on disk, so the map never claims more than the folder holds.
CATALOGUE: list[tuple[str, str, str]] = [
    ("00_overview", "What is reproduced, the pipeline, the profiles, and the synthetic street world "
     "(frames, labels, true flow, occlusion)",
     "whole paper; the world stands in for ApolloScape (supp. 3.2)"),
    ("01_cyclic_noise", "Warp-inpaint and cyclic warped labels t→t+p→t", "Figure 1, §3"),
    ("02_denoiser_training", "The denoiser Ω_λ trained by cycle-consistency with RMI",
     "supp. Figure 2, §3.3"),
    ("03_propagation", "Warp-refine propagation against copy / motion-only / semantic-only",
     "accuracy of propagated labels, supp. Figure 4"),
    ("04_table1_label_policies", "Segmenters trained with each label policy",
     "supp. Table 1, Figure 3"),
    ("05_table2_relaxed_label_loss", "Relaxed label loss and an under-trained baseline",
     "supp. Table 2, §2.3"),
]


def catalogue_markdown(folder: Path | None = None) -> str:
    """The notebook map as a Markdown table, with which notebooks exist in ``folder`` right now."""
    folder = Path(folder) if folder is not None else notebooks_dir()
    present = {p.stem for p in folder.glob("*.ipynb")} if folder.is_dir() else set()
    rows = ["| notebook | what it shows | part of the paper | here |", "|---|---|---|---|"]
    for stem, title, part in CATALOGUE:
        rows.append(f"| `{stem}` | {title} | {part} | {'✓' if stem in present else 'not yet'} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# Kernel side
# --------------------------------------------------------------------------------------------
@dataclass
class NotebookRun:
    """What a notebook knows about its own run: the resolved :class:`~wrp.profiles.Run` every
    stage takes, and where its metrics and figures go."""

    name: str
    run: Run
    output_dir: Path
    figures_dir: Path
    started: float = field(default_factory=time.time)

    @property
    def profile(self) -> Profile:
        return self.run.profile

    def figure_path(self, filename: str) -> Path:
        return self.figures_dir / filename

    def save_figure(self, fig: Any, filename: str) -> Path:
        """Save a matplotlib figure into this profile's figures folder (atomically)."""
        return save_figure(fig, self.figure_path(filename))

    def write_metrics(self, metrics: dict[str, Any], show: bool = True) -> Path:
        """Write ``<output_dir>/metrics.json`` (the notebook's last act) and print it as a table."""
        run = self.run
        record = {
            "notebook": self.name,
            "profile": run.profile.name,
            "dataset": str(run.dataset) if run.dataset else "synthetic",
            "seed": run.seed,
            "device": run.device,
            "nproc": run.nproc,
            "seconds": round(time.time() - self.started, 2),
            **metrics,
        }
        path = atomic_write_json(self.output_dir / "metrics.json", record)
        if show:
            width = max(len(k) for k in record)
            for key, value in record.items():
                text = json.dumps(value, default=str)
                print(f"{key:<{width}}  {text if len(text) <= 90 else text[:87] + '...'}")
            print(f"→ {path}")
        return path


def interactive() -> bool:
    """False in headless runs (``wrp reproduce`` sets ``WRP_HEADLESS=1``): widget cells then skip
    the live control and rely on the static figure drawn before them."""
    return os.environ.get("WRP_HEADLESS") != "1"


def start(
    name: str,
    profile: str | Profile,
    output_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    nproc: int = 1,
    dataset: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> NotebookRun:
    """Resolve a notebook's run from its parameters once — profile (with ``overrides`` of single
    fields, e.g. ``cycle_lengths=(1, 2)``), dataset, seed, device, processes — and seed every RNG.

    ``output_dir`` empty or ``None`` → ``runs/<profile>/<name>/``; ``dataset`` empty or ``None`` →
    the synthetic world.
    """
    run = Run.create(profile, dataset=dataset or None, seed=seed, device=device, nproc=nproc, **overrides)
    out = Path(output_dir) if output_dir else runs_dir() / run.profile.name / name
    out.mkdir(parents=True, exist_ok=True)
    figs = run.profile.figures_dir
    figs.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    data = f" dataset={run.dataset}" if run.dataset else ""
    print(f"[wrp] {name}: profile={run.profile.name}{data} seed={seed} device={run.device} nproc={nproc}")
    print(f"[wrp] outputs → {out}   figures → {figs}")
    return NotebookRun(name, run, out, figs)


# --------------------------------------------------------------------------------------------
# Runner side
# --------------------------------------------------------------------------------------------
class ReproduceError(ValueError):
    """Bad input to ``wrp reproduce``; the message says what is accepted."""


@dataclass
class NotebookResult:
    name: str
    status: str  # "ok" | "failed" | "not run"
    seconds: float
    executed: Path | None
    output_dir: Path | None
    metrics: dict[str, Any] | None = None
    error: str | None = None


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def discover_notebooks(folder: Path | None = None) -> list[Path]:
    """The numbered notebooks ``NN_name.ipynb`` of ``folder``, in order."""
    folder = Path(folder) if folder is not None else notebooks_dir()
    if not folder.is_dir():
        raise ReproduceError(f"no notebooks folder at {folder}; run from the repository or set WRP_HOME")
    return sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))


def select_notebooks(available: list[Path], only: list[str] | None) -> list[Path]:
    """Keep the notebooks named by ``only`` (``"01"``, ``"01_cyclic_noise"`` or the file name)."""
    if not only:
        return list(available)
    chosen: list[Path] = []
    for token in only:
        token = token.strip().removesuffix(".ipynb")
        hits = [p for p in available if p.stem == token or p.stem.startswith(token + "_")]
        if not token or not hits:
            names = ", ".join(p.stem for p in available) or "(none)"
            raise ReproduceError(
                f"unknown notebook {token!r}; give numbers or names of: {names}"
            )
        chosen.extend(p for p in hits if p not in chosen)
    return sorted(chosen)


def parse_parameter(text: str) -> tuple[str, Any]:
    """``"seed=3"`` → ``("seed", 3)``. Values are JSON when they parse as JSON, else strings."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise ReproduceError(
            f"malformed parameter {text!r}; write NAME=VALUE with a Python identifier as NAME, "
            "e.g. -p seed=3 -p device=cpu -p output_dir=/tmp/out"
        )
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    if lowered in ("none", "null"):
        return key, None
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and defaults of the ``parameters`` cell of a notebook (papermill's own parser)."""
    import nbformat
    import papermill

    try:
        kernel = nbformat.read(path, as_version=4).metadata.get("kernelspec", {}).get("name")
    except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds for broken files
        raise ReproduceError(f"{path} is not a readable notebook: {exc}") from exc
    if kernel != "python3":
        raise ReproduceError(
            f"{path} uses kernel {kernel!r}; notebooks must use 'python3' (metadata.kernelspec.name)"
        )
    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


def kernel_warning() -> str | None:
    """A warning when the ``python3`` kernel papermill would start is not this environment's."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec("python3")
    except Exception as exc:  # noqa: BLE001 - any failure here means papermill will fail too
        return f"no 'python3' Jupyter kernel is available ({exc}); install ipykernel in this environment"
    exe = spec.argv[0] if spec.argv else ""
    if exe in ("python", "python3", "{python}", sys.executable):
        return None
    if Path(exe).resolve() != Path(sys.executable).resolve():
        return (
            f"the 'python3' Jupyter kernel runs {exe}, not this environment's {sys.executable}; "
            f"notebooks may not see wrp (remove {spec.resource_dir} or run `python -m ipykernel "
            "install --user` from this environment)"
        )
    return None


def reproduce(
    profile: str,
    only: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
    *,
    folder: Path | None = None,
    executed_dir: Path | None = None,
    timeout: int | None = None,
    keep_going: bool = False,
    log_output: bool = False,
    progress_bar: bool = True,
) -> list[NotebookResult]:
    """Execute notebooks in order at ``profile``; every input is checked before anything runs."""
    if profile not in profile_names():
        raise ReproduceError(f"unknown profile {profile!r}; choose one of: {', '.join(profile_names())}")
    parameters = dict(parameters or {})
    if "profile" in parameters:
        raise ReproduceError("set profile with --profile, not with -p")
    notebooks = select_notebooks(discover_notebooks(folder), only)
    if not notebooks:
        raise ReproduceError(f"no numbered notebooks (NN_name.ipynb) in {folder or notebooks_dir()}")
    declared = {nb: notebook_parameters(nb) for nb in notebooks}
    for nb, params in declared.items():
        missing = [p for p in HARNESS_PARAMETERS if p not in params]
        if missing:
            raise ReproduceError(
                f"{nb} has no parameter(s) {', '.join(missing)} in a cell tagged 'parameters'"
            )
    unknown = sorted(set(parameters) - set().union(*(set(p) for p in declared.values())))
    if unknown:
        accepted = sorted(set().union(*(set(p) for p in declared.values())) - {"profile"})
        raise ReproduceError(
            f"unknown parameter(s) {', '.join(unknown)}; the selected notebooks accept: "
            f"{', '.join(accepted)}"
        )
    for name, value in parameters.items():  # a value of the declared default's type; seeds ≥ 0
        source = next(p[name] for p in declared.values() if name in p)  # the default as written
        try:
            default = ast.literal_eval(source) if isinstance(source, str) else source
        except (ValueError, SyntaxError):
            continue  # computed in the notebook (e.g. from the environment): nothing to compare
        kind = type(default)
        if default is not None and kind in (int, float, str) and not (
                isinstance(value, kind) and not isinstance(value, bool)
                or kind is float and isinstance(value, int) and not isinstance(value, bool)):
            raise ReproduceError(f"-p {name}={value!r}: {name} takes a{'n' if kind is int else ''} "
                                 f"{kind.__name__} (default {default!r})")
        if name in ("seed", "nproc") and isinstance(value, int) and value < (0 if name == "seed" else 1):
            raise ReproduceError(f"-p {name}={value}: {name} must be ≥ {0 if name == 'seed' else 1}")
    if warning := kernel_warning():
        print(f"[wrp] warning: {warning}", file=sys.stderr)

    executed_dir = Path(executed_dir) if executed_dir else runs_dir() / profile / "notebooks"
    cell_timeout = timeout if timeout is not None else PROFILES[profile].cell_timeout_s
    cell_timeout = cell_timeout or None  # 0: no limit
    results: list[NotebookResult] = []
    failed = False
    for nb in notebooks:
        if failed and not keep_going:
            results.append(NotebookResult(nb.stem, "not run", 0.0, None, None))
            continue
        result = _execute(nb, profile, parameters, declared[nb], executed_dir, cell_timeout,
                          log_output, progress_bar)
        results.append(result)
        failed = failed or result.status != "ok"
    return results


def _execute(
    nb: Path,
    profile: str,
    parameters: dict[str, Any],
    declared: dict[str, Any],
    executed_dir: Path,
    cell_timeout: int | None,
    log_output: bool,
    progress_bar: bool,
) -> NotebookResult:
    import papermill

    own = {k: v for k, v in parameters.items() if k in declared}
    output_dir = Path(own.get("output_dir") or runs_dir() / profile / nb.stem)
    own.update(profile=profile, output_dir=str(output_dir))
    metrics_file = output_dir / "metrics.json"
    metrics_file.unlink(missing_ok=True)  # a stale file must not pass for this run's result
    executed = executed_dir / nb.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    print(f"[wrp] running {nb.name} at profile {profile} → {executed}", flush=True)
    started = time.time()
    env_before = {k: os.environ.get(k) for k in ("WRP_PROFILE", "WRP_HEADLESS")}
    os.environ.update(WRP_PROFILE=profile, WRP_HEADLESS="1")
    try:
        papermill.execute_notebook(
            str(nb),
            str(executed),
            parameters=own,
            kernel_name="python3",
            cwd=str(nb.parent),
            execution_timeout=cell_timeout,
            progress_bar=progress_bar,
            # the cells' own output (prints, headless progress bars) straight to this terminal
            stdout_file=sys.stdout if log_output else None,
            stderr_file=sys.stderr if log_output else None,
            request_save_on_cell_execute=True,
        )
    except Exception as exc:  # noqa: BLE001 - reported per notebook, the caller decides
        ename = getattr(exc, "ename", type(exc).__name__)
        evalue = getattr(exc, "evalue", None) or (str(exc).strip().splitlines() or [repr(exc)])[-1]
        if cell_timeout and ("Timeout" in ename or "timed out" in evalue.lower()):
            evalue += (f" — a cell ran past the {cell_timeout} s limit. The stages it ran keep what "
                       "they finished: rerun with a longer --timeout SECONDS (or --timeout 0 for none) "
                       "and it resumes where it stopped")
        return NotebookResult(nb.stem, "failed", time.time() - started, executed, output_dir,
                              error=f"{ename}: {evalue} (see {executed})")
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.time() - started
    if not metrics_file.is_file():
        return NotebookResult(nb.stem, "failed", seconds, executed, output_dir,
                              error=f"finished without writing {metrics_file}")
    metrics = json.loads(metrics_file.read_text())
    return NotebookResult(nb.stem, "ok", seconds, executed, output_dir, metrics=metrics)


def format_results(results: list[NotebookResult]) -> str:
    """A plain-text table of a ``reproduce`` run: one line per notebook, then any errors."""
    rows = [("notebook", "status", "time", "metrics")]
    for r in results:
        where = str(r.output_dir / "metrics.json") if r.metrics is not None else "—"
        rows.append((r.name, r.status, f"{r.seconds:7.1f}s" if r.status != "not run" else "", where))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"{r.name}: {r.error}" for r in results if r.error]
    return "\n".join(lines)
