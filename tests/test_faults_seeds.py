"""Faults while a sweep grows its cells' seeds (issue 21): every fault the cell records are
tested against, for the seed records. A finished two-cell sweep of seeds [0, 1] grows to
[0, 1, 2, 3]; whatever happens, no byte of what was on disk changes, and a rerun trains only
the seeds that have no record."""

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
from .test_faults import small_disk  # noqa: F401  (a fixture: a 3 MB tmpfs, root only)

pytestmark = pytest.mark.slow

CELLS = ["data.classes=2,5", DEBUG_TINY]
GROWN = "seeds=[0,1,2,3]"
INJECT = str(Path(__file__).parent / "inject")


def sweep(tmp_path: Path, sweep_dir: Path, *args: str, env: dict[str, str] | None = None):
    return run_cli(["-m", *CELLS, *args, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, env=env)


def files(sweep_dir: Path) -> dict[str, bytes]:
    """Every file of every cell but run.json (each run's own account of the cell)."""
    return {
        str(p.relative_to(sweep_dir)): p.read_bytes()
        for d in records.cell_dirs(sweep_dir)
        for p in d.rglob("*")
        if p.is_file() and p.name != records.RUN_FILE
    }


def kept(before: dict[str, bytes], sweep_dir: Path) -> bool:
    now = files(sweep_dir)
    return all(now.get(k) == v for k, v in before.items())


def seed_run_ids(sweep_dir: Path) -> dict[tuple[int, int], str | None]:
    """(classes, seed) -> the run that wrote that seed's record."""
    out = {}
    for cell in records.read_cells(sweep_dir):
        for seed, run_id in cell.seed_run_ids.items():
            out[(int(cell.config["data.classes"]), seed)] = run_id
    return out


def run_id(sweep_dir: Path) -> str:
    return json.loads((sweep_dir / records.SWEEP_STATE).read_text())["run_id"]


@pytest.fixture
def finished(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = sweep(tmp_path, sweep_dir, "seeds=[0,1]")
    assert proc.returncode == 0, shown(proc)
    return sweep_dir, files(sweep_dir)


def test_a_typo_in_a_grow_run_is_refused_before_anything_is_written(tmp_path, finished):
    sweep_dir, before = finished
    proc = sweep(tmp_path, sweep_dir, "seeds=[0,1,2,2]")
    assert proc.returncode == 2
    one_line_error(proc, "seeds=[0, 1, 2, 2] is not allowed")
    assert files(sweep_dir) == before and not list(sweep_dir.glob("*/seeds"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_grow_run_stopped_while_writing_a_seed_keeps_everything_and_resumes(
    tmp_path, finished, sig
):
    """The signal lands as the first cell's seed 3 starts its metrics.json: its seed 2 is
    recorded, seed 3's CSVs are written, the other cell has nothing new."""
    sweep_dir, before = finished
    env = {"PYTHONPATH": INJECT, "ATTNLAB_TEST_SEED_FILE": "3/metrics.json"}
    env["ATTNLAB_TEST_SIGNAL"] = str(int(sig))
    proc = sweep(tmp_path, sweep_dir, GROWN, "hydra.sweeper.pack=false", env=env)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130), shown(proc)
    assert kept(before, sweep_dir)
    stopped = run_id(sweep_dir)
    assert seed_run_ids(sweep_dir) == {
        **{(c, s): seed_run_ids(sweep_dir)[(c, s)] for c in (2, 5) for s in (0, 1)},
        (2, 2): stopped,
    }
    if sig == signal.SIGINT:
        line = one_line_error(proc, "stopped by SIGINT", "resume with:")
        resume = shlex.split(line.split("resume with: ", 1)[1])[1:]
        assert GROWN in resume
    middle = files(sweep_dir)
    proc = sweep(tmp_path, sweep_dir, GROWN, "hydra.sweeper.pack=false")
    assert proc.returncode == 0, shown(proc)
    assert kept({k: v for k, v in middle.items() if "seeds/3/" not in k}, sweep_dir)
    resumed = run_id(sweep_dir)
    ids = seed_run_ids(sweep_dir)
    assert ids[(2, 2)] == stopped  # trained once, by the stopped run
    assert {ids[(2, 3)], ids[(5, 2)], ids[(5, 3)]} == {resumed}
    rows = pd.read_csv(sweep_dir / "report.csv")
    assert len(rows) == 8 and set(rows["status"]) == {"cached", "completed"}
    assert not list(sweep_dir.rglob(".~attnlab.*"))


def test_a_full_disk_while_writing_a_seed_record_damages_nothing(tmp_path, small_disk):  # noqa: F811
    sweep_dir = small_disk / "sweep"
    proc = sweep(tmp_path, sweep_dir, "seeds=[0,1]")
    assert proc.returncode == 0, shown(proc)
    before = files(sweep_dir)
    filler = small_disk / "filler"
    env = {
        "PYTHONPATH": INJECT,
        "ATTNLAB_TEST_SEED_FILE": "2/history.csv",
        "ATTNLAB_TEST_SEED_FILL": str(filler),
    }
    proc = sweep(tmp_path, sweep_dir, GROWN, env=env)
    assert filler.exists() and proc.returncode != 0
    one_line_error(proc, "No space left on device")
    assert kept(before, sweep_dir)
    assert not list(sweep_dir.glob("*/seeds/*/metrics.json"))
    filler.unlink()
    proc = sweep(tmp_path, sweep_dir, GROWN)
    assert proc.returncode == 0, shown(proc)
    assert kept(before, sweep_dir)
    assert len(list(sweep_dir.glob("*/seeds/*/metrics.json"))) == 4
    assert len(pd.read_csv(sweep_dir / "report.csv")) == 8
    assert not list(sweep_dir.rglob(".~attnlab.*"))


def test_a_malformed_seed_record_fails_its_seed_and_is_retrained_once_set_aside(tmp_path, finished):
    sweep_dir, _ = finished
    proc = sweep(tmp_path, sweep_dir, GROWN)
    assert proc.returncode == 0, shown(proc)
    (cell,) = [c for c in records.cell_dirs(sweep_dir) if "classes=5" in c.name]
    broken = records.seed_dir(cell, 2) / records.METRICS_FILE
    broken.write_text('{"config": {"seeds": [2]}, "runs": "nope"}')
    before = {k: v for k, v in files(sweep_dir).items() if "seeds/2/" not in k}
    report = subprocess.run(
        [sys.executable, "-m", "attnlab.report", str(sweep_dir)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert report.returncode == 0, report.stderr
    rows = pd.read_csv(sweep_dir / "report.csv")
    (bad,) = rows[(rows["job"] == cell.name) & (rows["seed"] == 2)].itertuples()
    assert bad.status == "failed" and bad.error.startswith("seeds/2/metrics.json")
    assert (rows[rows["job"] != cell.name]["status"] != "failed").all()  # the cell's only
    proc = sweep(tmp_path, sweep_dir, GROWN)
    assert proc.returncode == 0, shown(proc)
    assert "1 to train in 1 job(s) (1 of them only their missing seeds), 1 reused" in proc.stdout
    assert kept(before, sweep_dir)
    (aside,) = list((cell / "seeds").glob("2.broken-*"))
    assert (aside / records.METRICS_FILE).read_text().startswith('{"config": {"seeds": [2]}')
    assert seed_run_ids(sweep_dir)[(5, 2)] == run_id(sweep_dir)
    rows = pd.read_csv(sweep_dir / "report.csv")
    assert len(rows) == 8 and "failed" not in set(rows["status"])


def test_a_second_grow_run_into_a_busy_dir_is_refused(tmp_path, finished):
    sweep_dir, before = finished
    first = subprocess.Popen(
        [sys.executable, "-m", "attnlab", "-m", *CELLS, GROWN, "trainer.epochs=3"]
        + [f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    holder = sweep_dir / records.HOLDER_FILE
    deadline = time.time() + 120
    while time.time() < deadline:
        if holder.exists() and json.loads(holder.read_text() or "{}").get("pid") == first.pid:
            break
        time.sleep(0.05)
    proc = sweep(tmp_path, sweep_dir, "seeds=[0,1,2,3,4]")
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    assert proc.returncode == 2
    one_line_error(proc, "in use by another process", f"pid {first.pid}")
    assert kept(before, sweep_dir)
    assert sorted(p.parent.name for p in sweep_dir.glob("*/seeds/*/metrics.json")) == [
        "2",
        "2",
        "3",
        "3",
    ]
    assert os.path.exists(sweep_dir / "report.csv")
