"""Faults of issue 20 that need a process: kills, launcher workers, the lock's own files,
odd files in finished cells, locales and pipes (tests/inject pins each fault's moment)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import DEBUG_TINY, one_line_error, run_cli, shown

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
        [DEBUG_TINY, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=injected(ATTNLAB_TEST_NO_LINK="1"),
    )
    assert proc.returncode == 0, shown(proc)
    assert json.loads((run_dir / "metrics.json").read_text())["runs"]
    assert not list(run_dir.glob(".~attnlab.*"))


def gone(pid: int) -> bool:
    """The process has ended (a zombie counts: it runs no more code)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def report_rows(sweep_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / "report.csv").drop_duplicates("job")


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_workers_die_with_their_killed_sweep_and_a_resume_never_races_them(tmp_path, launcher):
    """Item 4: the sweep is SIGKILLed while a worker has a trained cell to write and more
    work after it (it lingers 5 s): the worker ends with its sweep, and a resume started at
    once completes every cell, each trained by one run, exit 0."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *GRID, "hydra.sweeper.pack=false", f"hydra/launcher={launcher}"]
    args += ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    args.append(f"hydra.sweep.dir={sweep_dir}")
    kill = injected(
        ATTNLAB_TEST_KILL="sweep",
        ATTNLAB_TEST_KILL_DIR=str(sweep_dir),
        ATTNLAB_TEST_KILL_CLASSES="5",
        ATTNLAB_TEST_KILL_LINGER="5",
    )
    # Not run_cli: a leftover worker would hold its output pipes open.
    with open(tmp_path / "killed.log", "w") as log:
        killed = subprocess.Popen(
            [sys.executable, "-m", "attnlab", *args],
            cwd=tmp_path,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **kill},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        assert killed.wait(timeout=600) == -9, (tmp_path / "killed.log").read_text()[-3000:]
    (worker,) = map(int, Path(f"{sweep_dir}.pids").read_text().split())
    deadline = time.monotonic() + 2
    while not gone(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not gone(worker):
        os.kill(worker, 9)  # leave no process behind
        raise AssertionError("the worker outlived its sweep")
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    rows = report_rows(sweep_dir)
    # The other cell may have finished before the kill (then reused); the killed one
    # trains in the resume, and nothing fails.
    assert len(rows) == 2 and set(rows["status"]) <= {"completed", "cached"}, rows
    killed_cell = rows[rows["job"].str.contains("classes=5")]
    assert list(killed_cell["status"]) == ["completed"], rows


def test_one_joblib_worker_killed_loses_no_other_job(tmp_path):
    """Item 2: a joblib worker is SIGKILLed (as the OOM killer would) while the job beside
    it has a trained cell to write; loky then kills that healthy worker too. Every job
    without a record runs again alone: both cells complete, exit 0."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *GRID, "hydra.sweeper.pack=false", "hydra/launcher=joblib"]
    args += ["hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]
    kill = injected(
        ATTNLAB_TEST_KILL="sibling",
        ATTNLAB_TEST_KILL_DIR=str(sweep_dir),
        ATTNLAB_TEST_KILL_CLASSES="5",
        ATTNLAB_TEST_KILL_LINGER="3",
    )
    proc = run_cli(args, cwd=tmp_path, env=kill)
    assert Path(f"{sweep_dir}.pids").exists(), "the kill did not happen"
    assert proc.returncode == 0, shown(proc)
    rows = report_rows(sweep_dir)
    assert len(rows) == 2 and set(rows["status"]) == {"completed"}, rows


def test_a_non_utf8_locale_degrades_the_console_and_writes_utf8_files(tmp_path):
    """Item 12: LC_ALL=C with UTF-8 mode off: report.md (its en dash) is written as UTF-8,
    the progress lines are printed, no logging traceback; the report command as well."""
    sweep_dir = tmp_path / "sweep"
    ascii_only = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    args = ["-m", DEBUG_TINY, "model.attention=none", "seeds=[0]", f"hydra.sweep.dir={sweep_dir}"]
    proc = run_cli(args, cwd=tmp_path, env=ascii_only)
    assert proc.returncode == 0, shown(proc)
    assert "Logging error" not in proc.stderr and "Traceback" not in proc.stderr, shown(proc)
    assert "\u2013" in (sweep_dir / "report.md").read_text(encoding="utf-8")
    report = subprocess.run(
        [sys.executable, "-m", "attnlab.report", str(sweep_dir)],
        env={**os.environ, **ascii_only},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr[-3000:]
    assert "\u2013" in (sweep_dir / "report.md").read_text(encoding="utf-8")


def test_output_piped_into_a_closed_reader_ends_quietly(tmp_path):
    """Item 13: `attnlab -m ... | head -0`: stdout's reader is gone before the first line;
    no logging traceback, the sweep finishes and writes its report, exit 0."""
    sweep_dir = tmp_path / "sweep"
    read, write = os.pipe()
    os.close(read)  # the reader is gone: every write to stdout fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "attnlab", "-m", DEBUG_TINY, "seeds=[0]", "data.classes=2,3"]
            + [f"hydra.sweep.dir={sweep_dir}"],
            cwd=tmp_path,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
        )
    finally:
        os.close(write)
    assert "Logging error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[
        -3000:
    ]
    assert "BrokenPipe" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep_dir / "report.md").exists()


CRASH_GRID = ["-m", DEBUG_TINY, "seeds=[0]", "data.classes=2,3,4", "hydra.sweeper.pack=false"]


def cell_files(sweep_dir: Path) -> dict[str, dict[str, object]]:
    """Each finished cell's results as comparable across runs: metrics.json without its
    run_id and timings, and the bytes of its CSVs."""
    out: dict[str, dict[str, object]] = {}
    for metrics in sweep_dir.glob("*/metrics.json"):
        doc = json.loads(metrics.read_text())
        runs = [{k: v for k, v in r.items() if k != "train_seconds"} for r in doc["runs"]]
        csvs = {n: (metrics.parent / n).read_bytes() for n in ("attention.csv", "history.csv")}
        out[metrics.parent.name] = {"config": doc["config"], "runs": runs, **csvs}
    return out


def killed_at(command: list[str], delay: float, cwd: Path) -> int | None:
    """Run command, SIGKILL its process group after delay seconds; its exit status if it
    ended first, else None."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        return None


def test_random_kills_of_sweep_and_report_then_a_resume_lose_nothing(tmp_path):
    """Item 5 of the tests: a small sweep and the report command are SIGKILLed at 20
    moments drawn with a fixed seed, each followed by the next run in the same dir (a
    resume). Finished files never change once written, and equal an undisturbed run's;
    the last resume exits 0 with every cell exactly once and no temp file left."""
    import random

    calm = tmp_path / "calm"
    start = time.monotonic()
    proc = run_cli([*CRASH_GRID, f"hydra.sweep.dir={calm}"], cwd=tmp_path)
    took = time.monotonic() - start
    assert proc.returncode == 0, shown(proc)
    expected = cell_files(calm)
    assert len(expected) == 3

    sweep_dir = tmp_path / "sweep"
    sweep = [sys.executable, "-m", "attnlab", *CRASH_GRID, f"hydra.sweep.dir={sweep_dir}"]
    report = [sys.executable, "-m", "attnlab.report", str(sweep_dir)]
    rng = random.Random(20)
    seen: dict[str, bytes] = {}
    kills = 0
    for step in range(20):
        command = report if step % 5 == 4 else sweep  # 16 sweeps, 4 report rebuilds
        delay = rng.uniform(0.5, 0.6 * took if command is sweep else took / 4)
        status = killed_at(command, delay, tmp_path)
        kills += status is None
        for path in sweep_dir.glob("*/metrics.json"):  # a finished result never changes
            held = seen.setdefault(path.parent.name, path.read_bytes())
            assert path.read_bytes() == held, f"step {step}: {path} changed"
        assert status in (None, 0, 2), f"step {step}: {command[2]} exited {status}"
    # A resume with every cell finished ends sooner than the first run: not every moment
    # lands before its command ends.
    assert kills >= 10, f"only {kills} of 20 moments landed before the command ended"
    proc = run_cli([*CRASH_GRID, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    assert cell_files(sweep_dir) == expected
    for name, held in seen.items():
        assert (sweep_dir / name / "metrics.json").read_bytes() == held
    rows = pd.read_csv(sweep_dir / "report.csv")
    assert sorted(rows["job"]) == sorted(expected) and set(rows["status"]) <= {
        "completed",
        "cached",
    }
    assert not [p for p in sweep_dir.rglob(".~attnlab.*")], "a temp file was left"


def test_a_cell_json_edited_to_another_cell_fails_that_cell_only(tmp_path):
    """Item 10: one cell.json edited by hand to another config (its result removed, so it
    must run): that cell fails with one line saying why; the other is reused, the report
    is written, exit 1. Before, the whole sweep was refused."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *GRID, "seeds=[0]", f"hydra.sweep.dir={sweep_dir}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    (edited,) = [p for p in sweep_dir.glob("*/cell.json") if "classes=5" in p.parent.name]
    doc = json.loads(edited.read_text())
    doc["config"]["data.classes"] = 7
    edited.write_text(json.dumps(doc))
    (edited.parent / "metrics.json").unlink()
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 1, shown(proc)
    assert "Traceback" not in proc.stderr, shown(proc)
    rows = report_rows(sweep_dir).set_index("job")
    assert rows.loc[edited.parent.name, "status"] == "failed"
    assert "holds another cell" in rows.loc[edited.parent.name, "error"]
    assert set(rows.drop(edited.parent.name)["status"]) == {"cached"}


def test_a_sweep_dir_given_as_a_symlink_to_a_directory_is_followed(tmp_path):
    """Item 14: hydra.sweep.dir a symlink to a directory: the sweep runs there."""
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    proc = run_cli(["-m", DEBUG_TINY, "seeds=[0]", f"hydra.sweep.dir={link}"], cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    assert (target / "report.md").exists() and len(results(target)) == 1


def test_a_deleted_working_directory_is_named_in_one_line(tmp_path):
    """Item 14: run from a directory removed while the shell was in it: one line naming
    the working directory, exit 2, no traceback."""
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "$0" -m attnlab +debug=tiny'
    proc = subprocess.run(
        ["sh", "-c", script, sys.executable],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("attnlab: error: the working directory")


FILL_GRID = ["-m", DEBUG_TINY, "seeds=[0]", "data.classes=2,3,4", "hydra.sweeper.pack=false"]


def cell_of(sweep_dir: Path, classes: int) -> Path:
    """The cell dir with data.classes=classes (the default 2 is not in its name)."""
    (found,) = [
        p.parent
        for p in sweep_dir.glob("*/cell.json")
        if json.loads(p.read_text())["config"]["data.classes"] == classes
    ]
    return found


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    text = proc.stderr + proc.stdout
    assert "Traceback" not in text and "Logging error" not in text, shown(proc)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only): room for a small sweep, filled on purpose."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("needs root and a tmpfs mount to fill a real disk")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_while_a_job_writes_keeps_the_finished_cells(tmp_path, small_disk):
    """Item 11: the disk fills (to its last block) when the second of three cells starts
    writing its files. The first cell keeps its record; no cell has a partial metrics.json;
    the sweep says in one line why the report cannot be written; exit 1, no traceback. With
    the disk freed, the resume reuses the first cell byte for byte and completes the grid."""
    sweep_dir = small_disk / "sweep"
    filler = small_disk / "filler"
    args = [*FILL_GRID, f"hydra.sweep.dir={sweep_dir}"]
    fill = injected(ATTNLAB_TEST_FILL=str(filler), ATTNLAB_TEST_FILL_CLASSES="3")
    proc = run_cli(args, cwd=tmp_path, env=fill)
    assert filler.exists(), "the disk was not filled"
    assert proc.returncode == 1, shown(proc)
    no_traceback(proc)
    one_line_error(proc, "No space left on device", str(sweep_dir), "resume with:")
    first = cell_of(sweep_dir, 2)
    kept = (first / "metrics.json").read_bytes()
    assert (
        json.loads(kept)["runs"]
        and json.loads((first / "run.json").read_text())["outcome"] == "completed"
    )
    assert sorted(results(sweep_dir)) == [first.name]  # no other metrics.json, whole or part
    if (sweep_dir / "report.csv").exists():  # a report is current, or there is none
        assert len(report_rows(sweep_dir)) == 3
    filler.unlink()
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    assert (first / "metrics.json").read_bytes() == kept
    rows = report_rows(sweep_dir).set_index("job")
    assert rows.loc[first.name, "status"] == "cached" and len(rows) == 3
    assert set(rows.drop(first.name)["status"]) == {"completed"}
    assert not list(sweep_dir.rglob(".~attnlab.*"))


def test_enospc_writing_one_cell_fails_that_cell_in_one_line(tmp_path):
    """Item 11, injected at the write layer (no root needed): writing one cell's first file
    fails with ENOSPC while other writes still fit. That cell records a one-line failure
    and no metrics.json; the other cells complete; the report is written; exit 1, no
    traceback."""
    sweep_dir = tmp_path / "sweep"
    args = [*FILL_GRID, f"hydra.sweep.dir={sweep_dir}"]
    marker = tmp_path / "enospc-fired"
    proc = run_cli(
        args,
        cwd=tmp_path,
        env=injected(ATTNLAB_TEST_ENOSPC=str(marker), ATTNLAB_TEST_FILL_CLASSES="3"),
    )
    assert marker.exists(), "no ENOSPC was injected"
    assert proc.returncode == 1, shown(proc)
    no_traceback(proc)
    one_line_error(proc, "1 of 3 cell(s) of this run failed", "resume with")
    hit = cell_of(sweep_dir, 3)
    assert not (hit / "metrics.json").exists()
    rows = report_rows(sweep_dir).set_index("job")
    assert rows.loc[hit.name, "status"] == "failed"
    assert "No space left on device" in rows.loc[hit.name, "error"]
    assert "\n" not in rows.loc[hit.name, "error"]
    assert set(rows.drop(hit.name)["status"]) == {"completed"}


def without_dac_override(args: list[str]) -> list[str]:
    """The command run so that a dir's mode bits hold: as root, through capsh without
    CAP_DAC_OVERRIDE (the owner's bits then apply to root's own files); else as it is."""
    command = [sys.executable, "-m", "attnlab", *args]
    if os.geteuid() != 0:
        return command
    import shlex
    import shutil

    if shutil.which("capsh") is None:
        pytest.skip("as root the mode bits only hold without CAP_DAC_OVERRIDE: needs capsh")
    drop = "--drop=cap_dac_override,cap_dac_read_search"
    return ["capsh", drop, "--", "-c", shlex.join(command)]


def test_a_cell_dir_that_cannot_be_written_fails_that_cell_before_training(tmp_path):
    """Item 9: a cell that must run (its result removed) has a dir without write
    permission: that cell fails before training with one line naming its dir, the other
    cell is reused, the report is rebuilt (its row says why), exit 1, no traceback."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *GRID, "seeds=[0]", f"hydra.sweep.dir={sweep_dir}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    locked = cell_of(sweep_dir, 5)
    (locked / "metrics.json").unlink()
    old_report = (sweep_dir / "report.csv").read_bytes()
    locked.chmod(0o555)
    try:
        proc = subprocess.run(
            without_dac_override(args),
            cwd=tmp_path,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 1, shown(proc)
    no_traceback(proc)
    one_line_error(proc, "1 of 2 cell(s)", str(locked), "cannot be written")
    assert "trained in" not in proc.stdout, "the cell trained before its dir was checked"
    assert (sweep_dir / "report.csv").read_bytes() != old_report
    rows = report_rows(sweep_dir).set_index("job")
    assert rows.loc[locked.name, "status"] == "failed"
    assert "cannot be written" in rows.loc[locked.name, "error"]
    assert set(rows.drop(locked.name)["status"]) == {"cached"}


def test_ctrl_c_under_submitit_local_prints_one_line_and_no_traceback(tmp_path):
    """Item 15: SIGINT to the sweep's process group under hydra/launcher=submitit_local
    (as Ctrl-C sends it) once a cell has finished: one line saying it was stopped and how
    to resume, exit 130, no KeyboardInterrupt traceback from submitit's controllers; the
    finished cell is kept and reported."""
    sweep_dir = tmp_path / "sweep"
    # The second cell trains for minutes, so it still runs when the first is done and the
    # signal comes (with 20 epochs it sometimes finished first on a loaded machine).
    args = ["-m", DEBUG_TINY, "seeds=[0]", "trainer.epochs=1,2000", "hydra.sweeper.pack=false"]
    args += ["hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnlab", *args],
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    deadline = time.monotonic() + 300
    while not results(sweep_dir) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert proc.returncode == 130, shown(done)
    no_traceback(done)
    assert "KeyboardInterrupt" not in err, shown(done)
    one_line_error(done, "stopped by SIGINT", "resume with:")
    kept = results(sweep_dir)
    assert len(kept) == 1, shown(done)
    rows = report_rows(sweep_dir).set_index("job")
    assert rows.loc[next(iter(kept)), "status"] == "completed"
