"""Faults of issue 20 that need no subprocess: trained work is never thrown away, a
filesystem without hard links still gets its metrics.json, odd files never stop a report.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from attnlab.engine import resources
from attnlab.engine.experiment import train_and_measure
from attnlab.runs import files, records
from attnlab.runs.cell import run_experiment


def test_a_trained_cell_is_written_though_memory_is_short_afterwards(
    make_config, tmp_path, monkeypatch
):
    """Item 1: memory is checked before training only. After a pack trained, the job's own
    TensorFlow counts against the free memory; its cells are written all the same."""
    cfg = make_config("+debug=tiny")
    trained = train_and_measure(cfg)
    monkeypatch.setattr(resources, "available_memory", lambda: 1)
    doc = run_experiment(cfg, tmp_path, trained)
    assert (tmp_path / records.METRICS_FILE).exists()
    assert json.loads((tmp_path / records.METRICS_FILE).read_text())["runs"] == json.loads(
        json.dumps(files._jsonable(doc["runs"]))
    )


def _no_link(*args: object, **kwargs: object) -> None:
    raise PermissionError(errno.EPERM, "Operation not permitted")


@pytest.mark.parametrize("rename", ["renameat2", "none"])
def test_write_once_without_hard_links(tmp_path, monkeypatch, rename):
    """Item 3: link() refused (vfat, some network mounts): the write-once file is still
    created whole, never over an existing one, and no temp file is left."""
    monkeypatch.setattr(os, "link", _no_link)
    if rename == "none":  # a kernel or filesystem without renameat2's RENAME_NOREPLACE

        def no_renameat2(src: str, dst: str) -> None:
            raise OSError(errno.EINVAL, "Invalid argument")

        monkeypatch.setattr(files, "_rename_noreplace", no_renameat2)
    target = tmp_path / "metrics.json"
    files.write_text(target, "first\n", replace=False)
    assert target.read_text() == "first\n"
    with pytest.raises(FileExistsError):
        files.write_text(target, "second\n", replace=False)
    assert target.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
