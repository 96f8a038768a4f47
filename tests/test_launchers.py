"""Hydra's launchers: the same sweep gives the same report whichever runs it, and the thread rule.

The sweeps run once per module (attnlab's default, which packs cells, then Hydra's basic,
joblib, submitit_local) on the tiny grid of test_sweep.py; the report is built in the
parent from the job dirs on disk, so it must not depend on where the jobs ran.
"""

import shutil

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from attnlab.engine.metrics import RUN_METRICS
from attnlab.engine.resources import available_cpus
from attnlab.sweep.launchers import default_threads, joblib_workers, resolve_threads

from .conftest import DEBUG_TINY, run_cli, shown

TINY = [DEBUG_TINY]
GRID = ["data.classes=2,5", "model.attn_layers=1,2"]
# Packs (cells that share a model shape, trained as one) are the sweeper's: every launcher
# runs them. The reference trains every cell alone; Hydra's basic sweeper runs one job per
# cell through the same records (attnlab.sweep.jobs.run_cell_job).
LAUNCHERS = {
    "unpacked": ["hydra.sweeper.pack=false"],
    "attnlab": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=attnlab_local"],
    "hydra_sweeper": ["hydra/sweeper=basic"],
}
# Wall-clock time differs by launcher and load; every other metric must match.
COMPARED = [m for m in RUN_METRICS if m != "train_seconds"]

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def multirun(sweep_dir, cwd, *overrides):
    return run_cli(["-m", *overrides, *TINY, f"hydra.sweep.dir={sweep_dir}"], cwd=cwd)


def read_report(sweep_dir):
    report = pd.read_csv(sweep_dir / "report.csv")
    return report.sort_values(["job", "seed"], ignore_index=True)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Launcher name -> (completed process, sweep dir) of the tiny grid."""
    root = tmp_path_factory.mktemp("launchers")
    out = {}
    for name, launcher in LAUNCHERS.items():
        sweep_dir = root / name
        out[name] = (multirun(sweep_dir, root, *GRID, *launcher), sweep_dir)
    return out


@pytest.mark.parametrize("name", ["attnlab", "joblib", "submitit_local", "hydra_sweeper"])
@pytest.mark.slow
def test_report_is_the_same_whichever_launcher_ran_the_jobs(sweeps, name):
    (ref_proc, ref_dir), (proc, sweep_dir) = sweeps["unpacked"], sweeps[name]
    assert ref_proc.returncode == 0, shown(ref_proc)
    assert proc.returncode == 0, shown(proc)
    ref, report = read_report(ref_dir), read_report(sweep_dir)
    assert len(report) == 4 * 2 and set(report["status"]) == {"completed"}
    exact = [c for c in ref.columns if c not in RUN_METRICS]  # job, config, seed, status, error
    pd.testing.assert_frame_equal(report[exact], ref[exact])
    pd.testing.assert_frame_equal(
        report[COMPARED], ref[COMPARED], check_exact=False, rtol=0, atol=1e-6
    )
    summary, ref_summary = (pd.read_csv(d / "summary.csv") for d in (sweep_dir, ref_dir))
    pd.testing.assert_frame_equal(summary, ref_summary, check_exact=False, rtol=0, atol=1e-6)
    figures = {p.name for p in (sweep_dir / "figures").iterdir()}
    assert figures == {p.name for p in (ref_dir / "figures").iterdir()}


@pytest.mark.parametrize("name", ["attnlab", "joblib"])
@pytest.mark.slow
def test_every_launcher_trains_cells_of_one_model_shape_together(sweeps, name):
    proc, _ = sweeps[name]
    # classes 2, 5 x attn_layers 1, 2: one pack per depth, so two jobs for four cells.
    log = proc.stdout + proc.stderr
    assert log.count("training 2 cells as one model (4 seeds; classes 2, 5)") == 2
    assert "4 to train in 2 job(s)" in log
    assert "as one model" not in sweeps["unpacked"][0].stdout


@pytest.mark.slow
def test_submitit_jobs_are_packs_too(sweeps):
    _, sweep_dir = sweeps["submitit_local"]
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").glob("*/*_log.*"))
    assert logs.count("training 2 cells as one model") == 2


@pytest.mark.slow
def test_submitit_keeps_its_logs_in_a_hidden_dir_the_report_skips(sweeps):
    _, sweep_dir = sweeps["submitit_local"]
    assert list((sweep_dir / ".submitit").glob("*/*_log.out"))
    assert not read_report(sweep_dir)["job"].str.startswith(".").any()


@pytest.mark.slow
def test_joblib_progress_reaches_the_parent_console(sweeps):
    proc, _ = sweeps["joblib"]
    log = proc.stdout + proc.stderr
    assert "Joblib.Parallel(n_jobs=2" in log and "[4/4] " in log


@pytest.mark.slow
def test_joblib_failure_stays_local_and_finished_cells_are_reused(sweeps, tmp_path):
    # Rerun part of the finished joblib sweep plus an invalid cell, in a copy of its dir.
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(sweeps["joblib"][1], sweep_dir)
    launcher = LAUNCHERS["joblib"]
    proc = multirun(
        sweep_dir, tmp_path, "data.classes=5,30000000", "model.attn_layers=1", *launcher
    )
    assert proc.returncode == 1
    assert "1 of 2 cell(s) of this run failed" in proc.stderr
    report = read_report(sweep_dir)
    ours = report[report["model.attn_layers"] == 1]
    cells = {c: list(g["status"]) for c, g in ours.groupby("data.classes")}
    assert cells == {30000000: ["failed", "failed"], 2: ["completed"] * 2, 5: ["cached"] * 2}
    failed = ours[ours["data.classes"] == 30000000]
    assert failed["error"].str.startswith("data.classes=30000000: the cell needs").all()
    before = read_report(sweeps["joblib"][1]).set_index(["job", "seed"])[COMPARED]
    after = report.set_index(["job", "seed"]).loc[before.index, COMPARED]
    # Cached numbers are the stored ones (the failed rows only turn int columns to float).
    pd.testing.assert_frame_equal(after, before, check_dtype=False)


@pytest.mark.parametrize(
    ("launcher", "cpus", "threads"),
    [
        (None, 8, 8),
        ({"_target_": BASIC}, 8, 8),
        ({"_target_": JOBLIB, "n_jobs": 2}, 8, 4),
        ({"_target_": JOBLIB, "n_jobs": 3}, 8, 2),
        ({"_target_": JOBLIB, "n_jobs": 4}, 2, 1),  # more jobs than cores: still one thread
        ({"_target_": JOBLIB, "n_jobs": -1}, 8, 1),  # -1: all cores busy, one job each
        ({"_target_": JOBLIB, "n_jobs": -3}, 8, 1),  # -3: 6 jobs at once
        ({"_target_": JOBLIB, "n_jobs": -7}, 8, 4),  # -7: 2 jobs at once
        ({"_target_": SLURM, "cpus_per_task": 2}, 64, 2),
        ({"_target_": SLURM, "cpus_per_task": 16}, 4, 4),  # never more than the job can use
        ({"_target_": SLURM, "cpus_per_task": None}, 3, 3),
        ({"_target_": RAY, "ray": {"init": {}, "remote": {}}}, 8, 1),  # Ray's default: 1 CPU
        ({"_target_": RAY, "ray": {"remote": {"num_cpus": 4}}}, 8, 4),
        ({"_target_": BASIC}, 0, 1),
    ],
)
def test_default_threads(launcher, cpus, threads):
    assert default_threads(launcher, cpus) == threads


def test_joblib_workers_follows_joblib_negative_convention():
    assert [joblib_workers(n, 4) for n in (1, 4, -1, -2, -4, -9, None)] == [1, 4, 4, 3, 1, 1, 4]


def hydra_node(*overrides):
    with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], available_cpus()),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], max(1, available_cpus() // 2)),
        (["hydra/launcher=attnlab_slurm"], min(2, available_cpus())),
        (["hydra/launcher=attnlab_local"], 1),
        (["hydra/launcher=attnlab_slurm", "trainer.threads=3"], 3),  # an explicit value wins
    ],
)
def test_resolve_threads_reads_the_composed_launcher(overrides, expected):
    cfg = hydra_node(*overrides)
    assert resolve_threads(cfg.trainer.threads, cfg.hydra) == expected


def test_slurm_preset_asks_for_modest_resources():
    launcher = hydra_node("hydra/launcher=attnlab_slurm").hydra.launcher
    assert launcher._target_ == SLURM
    assert (launcher.cpus_per_task, launcher.mem_gb, launcher.timeout_min) == (2, 4, 30)
    assert (launcher.nodes, launcher.tasks_per_node) == (1, 1)
