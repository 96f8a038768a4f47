"""Which source made a result: the git commit of the checkout attnlab runs from, and whether
its tracked files had uncommitted changes (as W&B, MLflow, Sacred and DVC record it)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

# The checkout attnlab is imported from (attnlab/runs/provenance.py -> the repo's root).
ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def source_revision(root: Path = ROOT) -> dict[str, object] | None:
    """{"commit": sha, "dirty": bool} when attnlab runs from a git checkout, else None (an
    installed wheel, no git). Cached: a process asks once."""
    if not (root / ".git").exists():
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changes)}


def source_line(root: Path = ROOT) -> str:
    """`git 1a2b3c4d5e6f (dirty)` for report.md, or "" outside a checkout."""
    revision = source_revision(root)
    if revision is None:
        return ""
    dirty = ", with uncommitted changes" if revision["dirty"] else ""
    return f"git {str(revision['commit'])[:12]}{dirty}"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()
