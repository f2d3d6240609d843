"""Fixtures shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def isolated_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``runs/`` at a temporary folder so a test never touches the repository's artefacts."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("WRP_RUNS", str(runs))
    monkeypatch.setenv("WRP_HOME", str(REPO))
    return runs


def processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process, read from /proc (no procps needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        found.append((int(entry.name), int(stat.rsplit(")", 1)[1].split()[1]), cmdline))
    return found
