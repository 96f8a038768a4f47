"""report.md and every cell record name the git commit and whether the tree was dirty,
when attnlab runs from a checkout (issue 19 item 16)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import attnlab
from attnlab.runs.provenance import source_line, source_revision
from attnlab.runs.report import package_versions

from .conftest import TINY

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@needs_git
def test_a_checkout_is_named_by_commit_and_dirty_flag(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit = git(repo, "rev-parse", "HEAD").stdout.decode().strip()
    assert source_revision.__wrapped__(repo) == {"commit": commit, "dirty": False}
    (repo / "a.py").write_text("x = 2\n")
    assert source_revision.__wrapped__(repo) == {"commit": commit, "dirty": True}
    assert source_revision.__wrapped__(tmp_path) is None  # not a checkout: nothing claimed


@needs_git
def test_report_versions_and_a_cell_record_name_this_checkouts_commit(tmp_path):
    revision = source_revision()
    if revision is None:
        pytest.skip("attnlab is not imported from a git checkout here")
    assert str(revision["commit"])[:12] in package_versions()["attnlab"]
    assert source_line().startswith("git ")
    attnlab.run_cell([*TINY, "trainer.epochs=1", "data.samples=600"], tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["source"] == revision
