"""Faults of issue 20 that need a process: kills, launcher workers, the lock's own files,
odd files in finished cells, locales and pipes (tests/inject pins each fault's moment)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import DEBUG_TINY, run_cli, shown

pytestmark = pytest.mark.slow

INJECT = str(Path(__file__).parent / "inject")
GRID = ["data.classes=2,5", DEBUG_TINY]


def injected(**env: str) -> dict[str, str]:
    """The hooks of tests/inject ahead of this checkout's path."""
    path = os.pathsep.join(p for p in (INJECT, os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **env}


def results(sweep_dir: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sweep_dir.glob("*/metrics.json")}


def test_a_single_run_without_hard_links_writes_its_result(tmp_path):
    """Item 3: link() fails with EPERM (vfat, some network mounts): the run's metrics.json
    is created all the same, not lost after training."""
    run_dir = tmp_path / "run"
    proc = run_cli(
        [DEBUG_TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=injected(ATTNLAB_TEST_NO_LINK="1")
    )
    assert proc.returncode == 0, shown(proc)
    assert json.loads((run_dir / "metrics.json").read_text())["runs"]
    assert not list(run_dir.glob(".~attnlab.*"))
