"""More faults against a finished sweep (a second fault-injection pass of issue 11).

Each test is a fault that the first pass (test_faults.py) does not cover and that attnlab
handles wrongly today; each asserts what the README promises: nothing finished lost or
misattributed, one `attnlab: error:` line and no traceback, a non-zero exit when the
report could not be written.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from .conftest import DEBUG_TINY, one_line_error, run_cli, shown

pytestmark = pytest.mark.slow

GRID = ["data.classes=2,5", DEBUG_TINY, "seeds=[0,1,2,3,4]"]
GRID += ["seeds=[0,1]"]


def sweep(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)


def results(sweep_dir: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sweep_dir.glob("*/metrics.json")}


def classes_dir(sweep_dir: Path, classes: int) -> Path:
    """The finished cell dir whose cell.json says data.classes=classes."""
    for cell in sweep_dir.glob("*/cell.json"):
        if json.loads(cell.read_text())["config"]["data.classes"] == classes:
            return cell.parent
    raise AssertionError(f"no cell with data.classes={classes}")


def locked(path: Path) -> bool:
    """Another process holds the flock on path."""
    import fcntl

    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


@pytest.fixture
def finished(tmp_path):
    proc = sweep(tmp_path, *GRID)
    assert proc.returncode == 0, shown(proc)
    sweep_dir = tmp_path / "sweep"
    assert len(results(sweep_dir)) == 2
    return sweep_dir, results(sweep_dir)


def test_a_cell_dir_replaced_by_a_symlink_is_one_line_not_a_traceback(tmp_path, finished):
    """A cell dir moved away and symlinked back (say, to free space): no traceback, and
    the result outside the sweep dir is left as it is."""
    sweep_dir, _ = finished
    cell = classes_dir(sweep_dir, 5)
    away = tmp_path / "elsewhere"
    shutil.move(str(cell), away)
    held = (away / "metrics.json").read_bytes()
    cell.symlink_to(away, target_is_directory=True)
    proc = sweep(tmp_path, *GRID)
    one_line_error(proc, cell.name)
    assert (away / "metrics.json").read_bytes() == held


def test_a_metrics_json_of_another_cell_is_not_taken_for_this_cell(tmp_path, finished):
    """A cell dir whose metrics.json belongs to another cell (copied by hand) is not that
    other cell's result under a wrong name: the rerun trains the cell the dir holds, and
    the report shows each cell once, under its own dir, with its own data.classes."""
    sweep_dir, before = finished
    two, five = classes_dir(sweep_dir, 2), classes_dir(sweep_dir, 5)
    shutil.copy(two / "metrics.json", five / "metrics.json")
    proc = sweep(tmp_path, *GRID)
    assert proc.returncode == 0, shown(proc)
    assert (two / "metrics.json").read_bytes() == before[two.name]
    doc = json.loads((five / "metrics.json").read_text())
    assert doc["config"]["data.classes"] == 5
    report = pd.read_csv(sweep_dir / "report.csv")
    by_job = report.groupby("job")["data.classes"].first().to_dict()
    assert by_job == {two.name: 2, five.name: 5}


@pytest.mark.parametrize("blocker", ["report.md", "figures"])
def test_a_report_that_cannot_be_written_is_said_and_fails_the_run(tmp_path, finished, blocker):
    """report.md that is a directory, or figures/ that is a file: the report cannot be
    written, so the run says so in one line and exits 1 (not 0 with Hydra's UserWarning);
    finished cells keep their bytes."""
    sweep_dir, before = finished
    target = sweep_dir / blocker
    if target.is_dir():
        shutil.rmtree(target)
        target.write_text("not a dir\n")
    else:
        target.unlink()
        target.mkdir()
    proc = sweep(tmp_path, *GRID)
    assert proc.returncode == 1, proc.stderr[-3000:]
    one_line_error(proc, blocker)
    assert results(sweep_dir) == before


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_max_replicas_below_one_is_refused_in_one_line(tmp_path, value):
    proc = sweep(tmp_path, *GRID, f"hydra.sweeper.max_replicas={value}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    one_line_error(proc, f"hydra.sweeper.max_replicas={value}")
    assert not results(tmp_path / "sweep")


def test_a_preset_sweep_without_m_is_refused_before_writing_a_run_dir(tmp_path):
    proc = run_cli(["+experiment=blog_all", "data.samples=600"], cwd=tmp_path)
    assert proc.returncode == 2
    one_line_error(proc, "-m")
    assert not (tmp_path / "outputs").exists()


def test_ctrl_c_during_a_report_rebuild_leaves_no_traceback_and_no_mixed_report(tmp_path, finished):
    """Ctrl-C while `python -m attnlab.report` draws its figures: exit 130 without a
    traceback, and report.md is never the old one beside a new report.csv."""
    import os
    import signal
    import sys
    import time

    sweep_dir, _ = finished
    old_md = (sweep_dir / "report.md").read_bytes()
    old_csv = (sweep_dir / "report.csv").stat().st_ino
    shutil.rmtree(next(p for p in sweep_dir.glob("*/cell.json")).parent)  # the report changes
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnlab.report", str(sweep_dir)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )

    def csv_inode() -> int | None:
        path = sweep_dir / "report.csv"
        return path.stat().st_ino if path.exists() else None

    deadline = time.monotonic() + 60
    while csv_inode() == old_csv and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # the rebuild has begun; figures and report.md are not yet
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in stderr, stderr[-3000:]
    md = sweep_dir / "report.md"
    assert not md.exists() or md.read_bytes() != old_md


def test_ctrl_c_between_removing_the_old_report_files_leaves_none_of_them(tmp_path, finished):
    """The SIGINT lands right after the old report.csv is removed (tests/inject): the old
    report.md must not outlive it, as it once did."""
    import os
    import signal
    import sys

    sweep_dir, before = finished
    inject = {
        "PYTHONPATH": str(Path(__file__).parent / "inject"),
        "ATTNLAB_TEST_SIGNAL_UNLINK": "report.csv",
        "ATTNLAB_TEST_SIGNAL": str(int(signal.SIGINT)),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "attnlab.report", str(sweep_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **inject},
        timeout=120,
    )
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not [
        name for name in ("report.csv", "summary.csv", "report.md") if (sweep_dir / name).exists()
    ]
    assert results(sweep_dir) == before


def test_the_resume_line_works_verbatim_for_a_sweep_dir_with_a_comma(tmp_path):
    """A sweep dir given in Hydra's quotes (`hydra.sweep.dir='runs/a,b'`): the printed
    resume command, run as printed, resumes the sweep (not "Sweeping over Hydra's
    configuration is not supported")."""
    import shlex

    sweep_dir = tmp_path / "runs" / "lr=1e-3,bs=64"
    args = ["-m", "data.classes=30000000,2", *GRID[1:], f"hydra.sweep.dir='{sweep_dir}'"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 1, first.stderr[-3000:]
    line = one_line_error(first, "resume with:")
    resume = shlex.split(line.split("resume with: ", 1)[1])
    assert resume[0] == "attnlab"
    again = run_cli(resume[1:], cwd=tmp_path)
    assert again.returncode == 1, again.stderr[-3000:]  # data.classes=30000000 still fails alone
    one_line_error(again, "1 of 2 cell(s) of this run failed")
    assert len(results(sweep_dir)) == 1


def test_a_sweep_refused_while_a_report_rebuilds_names_the_report_not_an_old_sweep(
    tmp_path, finished
):
    """The lock is held by `python -m attnlab.report`: the refusal names that process,
    not the pid and command of the earlier sweep left in .sweep.json (long ended)."""
    import os
    import signal
    import sys
    import time

    sweep_dir, before = finished
    old_pid = json.loads((sweep_dir / ".sweep.json").read_text())["pid"]
    rebuild = subprocess.Popen(
        [sys.executable, "-m", "attnlab.report", str(sweep_dir)],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    deadline = time.monotonic() + 60
    while not locked(sweep_dir / ".attnlab.lock") and time.monotonic() < deadline:
        time.sleep(0.01)
    rebuild.send_signal(signal.SIGSTOP)  # frozen while it holds the lock
    try:
        proc = sweep(tmp_path, *GRID)
    finally:
        rebuild.send_signal(signal.SIGCONT)
        rebuild.wait(timeout=120)
    line = one_line_error(proc, "in use")
    assert f"pid {old_pid} " not in line
    assert str(rebuild.pid) in line
    assert results(sweep_dir) == before


def test_a_run_json_that_is_a_directory_is_named_not_attnlabs_temp_file(tmp_path, finished):
    """The line names the file the user can fix; the finished cells keep their bytes."""
    sweep_dir, before = finished
    run_json = classes_dir(sweep_dir, 5) / "run.json"
    run_json.unlink()
    run_json.mkdir()
    proc = sweep(tmp_path, *GRID)
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = one_line_error(proc, str(run_json), "Is a directory")
    assert ".~attnlab" not in line
    assert results(sweep_dir) == before
    assert not list(sweep_dir.glob("*/.~attnlab.*"))
