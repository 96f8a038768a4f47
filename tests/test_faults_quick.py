"""Faults of issue 20 that need no subprocess: trained work is never thrown away, a
filesystem without hard links still gets its metrics.json, odd files never stop a report.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time

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


def test_a_removed_lock_file_lets_no_second_process_in(tmp_path):
    """Item 5: the lock file removed while a sweep runs: the dir stays locked."""
    held = records.lock_sweep_dir(tmp_path, "attnlab -m first")
    try:
        (tmp_path / records.LOCK_FILE).unlink()
        with pytest.raises(records.RecordError, match="in use by another process"):
            records.lock_sweep_dir(tmp_path, "attnlab -m second")
    finally:
        held.release()
    records.lock_sweep_dir(tmp_path, "attnlab -m third").release()


@pytest.mark.parametrize("since", ["soon", 1e300, None, [1]])
def test_an_odd_holder_file_is_still_a_one_line_refusal(tmp_path, since):
    """Item 6: a holder file with a non-numeric or huge `since` (or none): the busy dir
    is refused with a RecordError (one line), never ValueError or OverflowError."""
    held = records.lock_sweep_dir(tmp_path, "attnlab -m first")
    try:
        holder = json.loads((tmp_path / records.HOLDER_FILE).read_text())
        (tmp_path / records.HOLDER_FILE).write_text(json.dumps({**holder, "since": since}))
        with pytest.raises(records.RecordError, match=f"pid {os.getpid()} .*since \\?"):
            records.lock_sweep_dir(tmp_path, "attnlab -m second")
    finally:
        held.release()


def test_the_refusal_names_the_new_holder_not_the_dead_one(tmp_path):
    """Item 7: two resumes at once; the winner has the lock but has not yet written the
    holder file, which still names the long-dead previous holder. The loser names the
    winner (it waits a moment for the file), never the dead process."""
    import subprocess
    import sys
    import threading

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = {"pid": dead_pid, "host": socket.gethostname(), "since": 0, "command": "old"}
    (tmp_path / records.HOLDER_FILE).write_text(json.dumps(stale))
    winner = records.SweepLock(tmp_path)
    assert winner.try_acquire()  # the winner, between taking the lock and saying so

    def say_so() -> None:
        time.sleep(0.5)
        now = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        files.write_json(tmp_path / records.HOLDER_FILE, {**now, "command": "winner"})

    thread = threading.Thread(target=say_so)
    thread.start()
    try:
        with pytest.raises(records.RecordError) as refused:
            records.lock_sweep_dir(tmp_path, "attnlab -m loser")
    finally:
        thread.join()
        winner.release()
    assert f"pid {os.getpid()}" in str(refused.value) and "winner" in str(refused.value)
    assert str(dead_pid) not in str(refused.value)
