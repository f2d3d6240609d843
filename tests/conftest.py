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
