"""Faults against a finished sweep: what survives, bit for bit, and what the user is told.

Each test finishes a small sweep, does one thing a user or the machine might do to it, and
asserts the exact outcome: the finished cells' metrics.json bytes unchanged, each cell
present once, the exit status, one line and no traceback, nothing outside the sweep dir.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from attnlab.runs import records

from .conftest import DEBUG_TINY, one_line_error, run_cli, shown

pytestmark = pytest.mark.slow

TINY = [DEBUG_TINY]
GRID = ["data.classes=2,5", *TINY, "seeds=[0,1]"]


def sweep(tmp_path: Path, *args: str, sweep_dir: Path | None = None):
    sweep_dir = sweep_dir or tmp_path / "sweep"
    proc = run_cli(["-m", *args, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    return proc, sweep_dir


def results(sweep_dir: Path) -> dict[str, bytes]:
    """Every finished result in the dir, by cell dir name: the bytes that must survive."""
    return {p.parent.name: p.read_bytes() for p in sweep_dir.glob("*/metrics.json")}


def report(sweep_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / "report.csv")


@pytest.fixture
def finished(tmp_path):
    """A finished two-cell sweep and its results' bytes."""
    proc, sweep_dir = sweep(tmp_path, *GRID)
    assert proc.returncode == 0, shown(proc)
    before = results(sweep_dir)
    assert len(before) == 2
    return sweep_dir, before


@pytest.mark.parametrize(
    ("typo", "status", "words"),
    [
        # Invalid in every cell it is in: refused before anything runs (issue 19, item 10).
        ("seeds=[0,0]", 2, ["seeds=[0, 0] is not allowed", "without duplicates"]),
        ("trainer.threads=-1", 2, ["trainer.threads=-1 is not allowed", "an integer >= 0"]),
    ],
)
def test_a_typo_in_a_rerun_never_touches_finished_cells(tmp_path, finished, typo, status, words):
    sweep_dir, before = finished
    args = [a for a in GRID if not a.startswith("seeds=")] + [typo]
    if typo.startswith("trainer"):
        args.append("seeds=[0,1]")
    proc, _ = sweep(tmp_path, *args)
    assert proc.returncode == status
    one_line_error(proc, *words)
    assert {k: v for k, v in results(sweep_dir).items() if k in before} == before
    rows = report(sweep_dir)
    finished_rows = rows[rows["job"].isin(before)]
    assert len(finished_rows) == 4 and set(finished_rows["status"]) == {"completed"}


def test_a_malformed_metrics_json_elsewhere_breaks_nothing(tmp_path, finished):
    sweep_dir, before = finished
    (sweep_dir / "notes").mkdir()
    (sweep_dir / "notes" / "metrics.json").write_text('{"config": null, "runs": []}')
    for launcher in ([], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]):
        proc, _ = sweep(tmp_path, *GRID, *launcher)
        assert proc.returncode == 0, shown(proc)
        assert {k: v for k, v in results(sweep_dir).items() if k != "notes"} == before
        rows = report(sweep_dir)
        assert set(rows[rows["job"].isin(before)]["status"]) == {"cached"}
        (note,) = rows[rows["job"] == "notes"].itertuples()
        assert note.status == "failed" and "metrics.json" in note.error


def test_seed_lists_are_one_cell_and_log_settings_none(tmp_path):
    # Seeds are not part of a cell (issue 21): a sweep over seed lists asks one cell for
    # their union, trained once into one dir.
    proc, sweep_dir = sweep(tmp_path, "seeds=[0],[1]", *TINY)
    assert proc.returncode == 0, shown(proc)
    assert len(results(sweep_dir)) == 1 and report(sweep_dir)["job"].nunique() == 1
    assert sorted(report(sweep_dir)["seed"]) == [0, 1]
    proc, other = sweep(
        tmp_path, "trainer.verbose=0,1", *TINY, "seeds=[0]", sweep_dir=tmp_path / "v"
    )
    assert proc.returncode == 0, shown(proc)
    assert len(results(other)) == 1  # one cell, trained once: verbosity is not part of it


def test_no_value_can_write_outside_the_sweep_dir(tmp_path):
    outside = set(tmp_path.parent.iterdir())
    proc, sweep_dir = sweep(
        tmp_path, "model.attn_activation=../../../x,a/b", *TINY, "seeds=[0]", "data.classes=3"
    )
    assert proc.returncode == 1
    one_line_error(proc, "failed")
    assert set(tmp_path.parent.iterdir()) == outside
    for path in sweep_dir.rglob("*"):
        assert path.resolve().is_relative_to(sweep_dir.resolve())
    rows = report(sweep_dir)
    assert rows["job"].nunique() == 2 and set(rows["status"]) == {"failed"}
    assert rows["error"].str.contains("model.attn_activation").all()


def test_a_second_sweep_into_a_busy_dir_is_refused_naming_the_holder(tmp_path):
    sweep_dir = tmp_path / "sweep"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "attnlab",
            "-m",
            *GRID,
            "trainer.epochs=3",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (sweep_dir / ".sweep.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc, _ = sweep(tmp_path, *GRID)
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    assert proc.returncode == 2
    one_line_error(proc, "in use by another process", f"pid {first.pid}")
    assert len(results(sweep_dir)) == 2 and set(report(sweep_dir)["status"]) == {"completed"}


@pytest.mark.parametrize(
    ("sig", "status", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_a_signal_mid_sweep_keeps_finished_cells_and_says_how_to_resume(
    tmp_path, sig, status, name
):
    sweep_dir = tmp_path / "sweep"
    # One cell per job, so the signal lands while later cells still train.
    args = [
        "-m",
        "data.classes=2,3,4,5",
        *TINY,
        "trainer.epochs=4",
        "seeds=[0,1]",
        "hydra.sweeper.pack=false",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnlab", *args, f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not list(sweep_dir.glob("*/metrics.json")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-3000:]
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    line = one_line_error(
        done, f"stopped by {name}", "resume with:", f"hydra.sweep.dir={sweep_dir}"
    )
    kept = results(sweep_dir)
    assert 1 <= len(kept) < 4
    rows = report(sweep_dir)
    assert rows["job"].nunique() == 4
    assert rows[rows["job"].isin(kept)]["status"].eq("completed").all()
    lost = rows[~rows["job"].isin(kept)]
    assert lost["status"].eq("failed").all() and lost["error"].str.contains(name).all()

    resume = shlex.split(line.split("resume with: ", 1)[1])[1:]  # drop the program name
    again = run_cli(resume, cwd=tmp_path)
    assert again.returncode == 0, shown(again)
    assert {k: v for k, v in results(sweep_dir).items() if k in kept} == kept
    rows = report(sweep_dir)
    assert len(rows) == 8 and rows["job"].nunique() == 4
    assert set(rows["status"]) == {"cached", "completed"}


@pytest.mark.parametrize(
    ("sig", "status", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_a_signal_that_hydra_code_turns_into_another_error_still_stops_the_sweep(
    tmp_path, sig, status, name
):
    """The signal lands inside Hydra's config reader, whose `finally` replaces it with an
    UnboundLocalError (tests/inject/sitecustomize.py): still a stop, not failed cells."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "data.classes=2,3,4", *TINY, "seeds=[0,1]", "hydra.sweeper.pack=false"]
    inject = {
        "PYTHONPATH": str(Path(__file__).parent / "inject"),
        "ATTNLAB_TEST_SIGNAL_SWEEP": str(sweep_dir),
        "ATTNLAB_TEST_SIGNAL": str(int(sig)),
    }
    proc = run_cli([*args, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, env=inject)
    assert proc.returncode == status, proc.stderr[-3000:]
    one_line_error(proc, f"stopped by {name}", "1 cell(s) of this run finished")
    assert "UnboundLocalError" not in proc.stderr
    assert len(results(sweep_dir)) == 1
    rows = report(sweep_dir)
    lost = rows[rows["status"] == "failed"]
    assert lost["job"].nunique() == 2 and lost["error"].str.contains(f"by {name}").all()


def test_a_sweep_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a dir")
    proc, _ = sweep(tmp_path, *GRID, sweep_dir=target)
    assert proc.returncode == 2
    one_line_error(proc, "not a directory", str(target))
    assert target.read_text() == "not a dir"


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only): room for one small sweep, not for much more."""
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "size=3m"):
        pytest.skip("needs root and tmpfs mounts to make a full or read-only disk")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_damages_nothing_and_leaves_no_stale_report(tmp_path, small_disk):
    proc, sweep_dir = sweep(tmp_path, *GRID, sweep_dir=small_disk / "sweep")
    assert proc.returncode == 0, shown(proc)
    before = results(sweep_dir)
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # fill the disk to its last block
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    proc, _ = sweep(tmp_path, "data.classes=2,5,7", *TINY, "seeds=[0,1]", sweep_dir=sweep_dir)
    assert proc.returncode != 0
    one_line_error(proc, "No space left on device", str(sweep_dir))  # names the file
    assert results(sweep_dir) == before
    # Either the report describes the dir as it now stands, or it is gone: never a stale one.
    if (sweep_dir / "report.csv").exists():
        assert set(report(sweep_dir)["job"]) == {p.name for p in records.cell_dirs(sweep_dir)}
    filler.unlink()
    proc, _ = sweep(tmp_path, "data.classes=2,5,7", *TINY, "seeds=[0,1]", sweep_dir=sweep_dir)
    assert proc.returncode == 0, shown(proc)
    assert {k: v for k, v in results(sweep_dir).items() if k in before} == before
    assert report(sweep_dir)["job"].nunique() == 3
    assert not list(sweep_dir.rglob(".~attnlab.*"))


def test_a_read_only_sweep_dir_is_refused_in_one_line(tmp_path, small_disk):
    proc, sweep_dir = sweep(tmp_path, *GRID, sweep_dir=small_disk / "sweep")
    assert proc.returncode == 0, shown(proc)
    before = results(sweep_dir)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    proc, _ = sweep(tmp_path, "data.classes=2,5,7", *TINY, "seeds=[0,1]", sweep_dir=sweep_dir)
    assert proc.returncode != 0
    one_line_error(proc, "Read-only file system")
    assert results(sweep_dir) == before


def test_leftover_temp_files_of_a_killed_write_are_removed_by_the_next_run(tmp_path, finished):
    sweep_dir, before = finished
    stale = [
        sweep_dir / "figures" / ".~attnlab.x.png.1.png",
        next(iter(sweep_dir.glob("*/metrics.json"))).parent / ".~attnlab.metrics.json.2.json",
    ]
    for path in stale:
        path.write_text("half")
    proc, _ = sweep(tmp_path, *GRID)
    assert proc.returncode == 0, shown(proc)
    assert not any(p.exists() for p in stale) and results(sweep_dir) == before


def test_a_cell_too_big_for_memory_fails_alone_before_training(tmp_path):
    proc, sweep_dir = sweep(tmp_path, "data.classes=3000000,5", *TINY, "seeds=[0,1]")
    assert proc.returncode == 1
    rows = report(sweep_dir)
    big = rows[rows["data.classes"] == 3000000]
    assert set(big["status"]) == {"failed"}
    assert (
        big["error"]
        .str.match(r"data\.classes=3000000: the cell needs ~[\d.]+ GiB for 2 seeds")
        .all()
    )
    assert set(rows[rows["data.classes"] == 5]["status"]) == {"completed"}


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("data.features=20000", ["data.features=20000", "GiB for 5 seeds", "GiB available"]),
        ("model.attn_layers=100000", ["model.attn_layers=100000", "[1, 32]"]),
        ("model=transformer", ["transformer", "dense", "double", "lstm"]),
    ],
)
def test_impossible_single_runs_are_refused_in_one_line(tmp_path, override, words):
    proc = run_cli([override, "data.samples=600"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    one_line_error(proc, *words)


def test_a_key_given_twice_names_the_value_used(tmp_path):
    proc = run_cli(["data.classes=3", "data.classes=1", *TINY], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    one_line_error(proc, "data.classes=1")


def test_an_unresolvable_interpolation_fails_its_own_cell_only(tmp_path):
    proc, sweep_dir = sweep(tmp_path, "data.classes=${nope},5", *TINY, "seeds=[0,1]")
    assert proc.returncode == 1
    one_line_error(proc, "1 of 2")
    rows = report(sweep_dir)
    assert rows["job"].nunique() == 2
    assert set(rows[rows["data.classes"] == "5"]["status"]) == {"completed"}
    bad = rows[rows["data.classes"] != "5"]
    assert set(bad["status"]) == {"failed"} and bad["error"].str.contains("nope").all()


def test_a_sweep_dir_of_the_old_layout_is_reused_in_place(tmp_path, finished):
    """Dirs named by overrides alone, with .hydra/ and metrics.json (attnlab 0.1)."""
    sweep_dir, before = finished
    for name in list(before):
        cell = sweep_dir / name
        (cell / "cell.json").unlink()
        (cell / "run.json").unlink()
        (cell / ".hydra").mkdir()
        config = json.loads((cell / "metrics.json").read_text())["config"]
        classes = config["data.classes"]
        (cell / ".hydra" / "config.yaml").write_text(f"data:\n  classes: {classes}\n")
        cell.rename(sweep_dir / f"data.classes={classes}")
    legacy = {f"data.classes={json.loads(v)['config']['data.classes']}": v for v in before.values()}
    assert results(sweep_dir) == legacy
    proc, _ = sweep(tmp_path, *GRID)
    assert proc.returncode == 0, shown(proc)
    assert results(sweep_dir) == before  # renamed to their own names, bytes untouched
    assert set(report(sweep_dir)["status"]) == {"cached"}
