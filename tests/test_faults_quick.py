"""Faults of issue 20 that need no subprocess: trained work is never thrown away, a
filesystem without hard links still gets its metrics.json, odd files never stop a report.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

import pandas as pd
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


def _finished_cell(sweep_dir: Path, name: str, classes: int) -> Path:
    """A finished cell as attnlab writes it: metrics.json, attention.csv, history.csv."""
    from attnlab.engine.metrics import RUN_METRICS

    cell = sweep_dir / name
    cell.mkdir(parents=True)
    config = {"data.classes": classes, "model.attn_layers": 1, "seeds": [0, 1]}
    runs = [
        {"seed": s, "status": "completed", **dict.fromkeys(RUN_METRICS, 0.5), "attn_focused": True}
        for s in (0, 1)
    ]
    (cell / "cell.json").write_text(json.dumps({"config": config}))
    (cell / "metrics.json").write_text(json.dumps({"config": config, "runs": runs}))
    attention = pd.DataFrame(
        [{"seed": s, "column": c, "weight": 0.25} for s in (0, 1) for c in range(4)]
    )
    attention.to_csv(cell / "attention.csv", index=False)
    history = pd.DataFrame(
        [
            {"seed": s, "epoch": e, "train_loss": 1.0, "val_accuracy": 0.5, "attn_key_weight": 0.3}
            for s in (0, 1)
            for e in (1, 2)
        ]
    )
    history.to_csv(cell / "history.csv", index=False)
    return cell


@pytest.mark.parametrize(
    ("name", "damage", "said"),
    [
        ("attention.csv", lambda t: t.replace("weight", "wieght"), "no column weight"),
        (
            "history.csv",
            lambda t: "\n".join(
                r.split(",", 2)[0] + "," + r.split(",", 2)[2] for r in t.splitlines()
            ),
            "no column epoch",
        ),
        ("attention.csv", lambda t: t.replace("0.25", "x", 1), "other than numbers"),
        ("history.csv", lambda t: '"\n\x00', "history.csv"),
    ],
)
def test_one_odd_csv_in_a_finished_cell_is_said_in_its_row(tmp_path, name, damage, said):
    """Item 8: a renamed column, a missing epoch column, a non-number, a broken file: the
    report is written; that cell's rows say what is wrong and keep its results."""
    from attnlab.runs.report import write_report

    _finished_cell(tmp_path, "good", 2)
    odd = _finished_cell(tmp_path, "odd", 5)
    (odd / name).write_text(damage((odd / name).read_text()))
    report = write_report(tmp_path)
    rows = report.set_index("job")
    assert (rows.loc["good", "error"] == "").all()
    assert rows.loc["odd", "error"].str.contains(said).all(), rows.loc["odd", "error"]
    assert (rows.loc["odd", "status"] == "completed").all()
    assert said in (tmp_path / "report.md").read_text()


def test_every_temp_file_a_kill_leaves_is_removed(tmp_path):
    """Item 18: temp files in figures/, in .jobs/, and beside the first cell.json of a
    dir a killed planning was writing (a dir with nothing else) are all removed."""
    places = [tmp_path / "figures", tmp_path / ".jobs", tmp_path / "cell-0123456789"]
    for place in places:
        place.mkdir()
        (place / f"{files.TEMP_PREFIX}x.json.abc.json").write_text("{")
    (tmp_path / "figures" / "keep.png").write_text("")
    assert records.remove_temp_files(tmp_path) == 3
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["keep.png"]


def test_run_cell_refuses_a_file_as_out_dir_before_training(tmp_path, monkeypatch):
    """Item 17: out_dir an existing file: a ConfigError before training, not
    FileExistsError after it."""
    import attnlab.runs.cell
    from attnlab.api import run_cell
    from attnlab.engine.config import ConfigError

    def no_training(*args: object) -> None:
        raise AssertionError("trained before checking out_dir")

    monkeypatch.setattr(attnlab.runs.cell, "train_and_measure", no_training)
    out = tmp_path / "out"
    out.write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        run_cell(["+debug=tiny"], out)


def test_run_cell_takes_one_string_as_one_override(tmp_path):
    """Item 17: run_cell("+debug=tiny", ...) is the override, not one per character."""
    from attnlab.api import run_cell

    doc = run_cell("+debug=tiny", tmp_path)
    assert doc["config"]["data.samples"] == 600 and (tmp_path / "metrics.json").exists()


def test_a_cell_dir_name_is_cut_at_a_value_boundary_and_marked(make_config):
    """Item 19: a long name is cut after a whole key=value, and `+` marks the cut: a
    learning rate of 1e6 never reads `trainer.learning_rate=100`."""
    from attnlab.engine.config import flatten

    defaults = flatten(make_config(tiny=False))
    config = flatten(
        make_config(
            "model.attn_activation=softmax",
            "model.hidden_activation=relu",
            "data.key_encoding=onehot",
            "trainer.batch_size=32",
            "trainer.learning_rate=1000000",
        )
    )
    name = records.cell_name(config, defaults)
    readable = name.rsplit("-", 1)[0]
    assert len(readable) <= records.NAME_CHARS and readable.endswith("+"), name
    for part in readable.rstrip("+").split(","):
        key, value = part.split("=", 1)
        assert str(config[key]) == value, (part, config[key])
    short = records.cell_name(flatten(make_config("data.classes=3")), defaults)
    assert not short.rsplit("-", 1)[0].endswith("+")


def test_load_report_while_another_process_rebuilds_it(tmp_path, monkeypatch):
    """Item 16: load_report found the report current, then the report command (holding
    the lock) removed the old report.csv: the tables are computed in memory, no
    FileNotFoundError."""
    import attnlab.api
    from attnlab.api import load_report
    from attnlab.runs.report import write_report

    _finished_cell(tmp_path, "a", 2)
    _finished_cell(tmp_path, "b", 5)
    write_report(tmp_path)
    expected = load_report(tmp_path)
    rebuilding = records.SweepLock(tmp_path)
    assert rebuilding.try_acquire()
    try:
        (tmp_path / "report.csv").unlink()  # the rebuild's first step, after the check
        monkeypatch.setattr(attnlab.api, "report_is_stale", lambda root: False)
        report, summary = load_report(tmp_path)
    finally:
        rebuilding.release()
    pd.testing.assert_frame_equal(report, expected[0])
    pd.testing.assert_frame_equal(summary, expected[1])


def test_load_report_on_a_read_only_dir_without_a_report(tmp_path, monkeypatch):
    """Item 16: a sweep dir that cannot be written, without a report: the tables are
    computed in memory, not PermissionError."""
    import attnlab.runs.report
    from attnlab.api import load_report

    _finished_cell(tmp_path, "a", 2)

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "report.csv"))

    monkeypatch.setattr(attnlab.runs.report, "write_report", read_only)
    report, summary = load_report(tmp_path)
    assert list(report["job"]) == ["a", "a"] and len(summary) == 1


@pytest.mark.skipif(not hasattr(os, "seteuid") or os.geteuid() != 0, reason="needs root")
def test_an_unreadable_cell_dir_is_a_row_not_a_crash():
    """Item 9: a cell dir with mode 000 (read by a user without CAP_DAC_OVERRIDE): the
    report is written, that cell's row says it cannot be read."""
    import shutil
    import tempfile

    from attnlab.runs.report import write_report

    sweep_dir = Path(tempfile.mkdtemp(prefix="attnlab-unreadable-"))
    try:
        for name, classes in (("good", 2), ("locked", 5)):
            _finished_cell(sweep_dir, name, classes)
        write_report(sweep_dir)  # imports what the report needs while it can be read
        for path in [sweep_dir, *sweep_dir.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        (sweep_dir / "locked").chmod(0)
        os.seteuid(65534)  # nobody: the mode bits hold
        try:
            report = write_report(sweep_dir).drop_duplicates("job").set_index("job")
        finally:
            os.seteuid(0)
        assert report.loc["good", "status"] == "completed"
        assert report.loc["locked", "status"] == "failed"
        assert "cannot be read" in report.loc["locked", "error"]
    finally:
        (sweep_dir / "locked").chmod(0o777)
        shutil.rmtree(sweep_dir)


# Three submitit_local controllers' tracebacks on Ctrl-C, interleaved as seen on a console.
_CONTROLLERS_ON_CTRL_C = """\
Traceback (most recent call last):
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "<frozen runpy>", line 88, in _run_code
  File "/venv/lib/python3.11/site-packages/submitit/local/_local.py", line 16, in <module>
  File "<frozen runpy>", line 198, in _run_module_as_main
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
    controller.run()
  File "/venv/lib/python3.11/site-packages/submitit/local/local.py", line 366, in wait
    time.sleep(1.0 / freq)
KeyboardInterrupt
    controller.run()
    exit_codes = self.wait()
                 ^^^^^^^^^^^
KeyboardInterrupt
    controller.run()
    time.sleep(1.0 / freq)
KeyboardInterrupt
"""


def test_the_controllers_ctrl_c_tracebacks_are_dropped_and_other_lines_kept():
    """Item 15: submitit_local's controllers' stderr passes through InterruptFilter: their
    interleaved KeyboardInterrupt tracebacks are dropped; any other line, and a traceback
    that ends in another exception, is passed on whole."""
    from attnlab.sweep.controllers import InterruptFilter

    out: list[str] = []
    keep = InterruptFilter(out.append)
    other = 'Traceback (most recent call last):\n  File "x.py", line 1\nOSError: boom\n'
    for line in ("a note\n", *_CONTROLLERS_ON_CTRL_C.splitlines(True), *other.splitlines(True)):
        keep.feed(line)
    keep.feed("last words\n")
    keep.flush()
    assert "".join(out) == "a note\n" + other + "last words\n"


def test_a_controller_killed_mid_traceback_leaves_no_fragment():
    """A controller the sweep's stop kills while it prints its KeyboardInterrupt traceback
    ends its stream without the exception line: the held fragment is dropped at the end
    (seen in a full run: two controllers' fragments, interleaved mid-line through one shared
    pipe, reached the console); any other held line is passed on."""
    from attnlab.sweep.controllers import InterruptFilter

    out: list[str] = []
    keep = InterruptFilter(out.append)
    for line in ["a note\n", "Traceback (most recent call last):\n", '  File "x.py", line 1\n']:
        keep.feed(line)
    keep.end()
    assert out == ["a note\n"]
    keep.feed("  an indented line, not a traceback\n")
    keep.end()
    assert out[-1] == "  an indented line, not a traceback\n"
