"""The task function and the jobs it runs in a launcher's worker: a single run, a pack of
cells, or one cell under another sweeper.

A job never raises in a sweep (Hydra skips on_multirun_end when one does, and its joblib,
submitit and Ray launchers run job callbacks in worker processes): every outcome is a
record in the cell's dir (attnlab.runs.records), and the parent builds the report and the
exit status from the dirs on disk (attnlab.sweep.callback).

Under attnlab's sweeper (the default, attnlab.sweep.planner) each job is a pack: cells that
share a model shape, trained as one model by run_pack_job, which writes every cell's dir.
Under any other sweeper (Hydra's basic one, Optuna) each job is one cell (run_cell_job),
in a dir named by the same rule (the `attnlab.cell_dir` resolver).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from attnlab.engine.config import from_hydra
from attnlab.engine.data import key_column
from attnlab.runs import records
from attnlab.sweep.cells import PACK_ENV, error_line, make_cell
from attnlab.sweep.errors import traced
from attnlab.sweep.progress import PackProgress, display_name, progress_line, run_summary
from attnlab.sweep.signals import Abort, raise_if_stopped, record_attempt

log = logging.getLogger(__name__)


def run_job(cfg: DictConfig) -> float | None:
    """Hydra's task function: a single run, a pack of cells, or one cell of a sweep.

    Returns the job's objective (a cell's mean val_accuracy) for optimizing sweepers.
    """
    raise_if_stopped()  # a signal an earlier job's library code swallowed: stop here
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    if not is_sweep_job(hc):
        run_single(cfg, out_dir, hc)
        return None
    sweep_dir = job_sweep_dir(hc)
    die_with_sweep()
    with records.worker_share(sweep_dir):
        pack = hc.job.env_set.get(PACK_ENV)
        if pack:
            run_pack_job(sweep_dir, str(pack), hc)
            return None
        return run_cell_job(cfg, sweep_dir, out_dir, hc)


_watched: set[int] = set()


def die_with_sweep(poll: float = 0.1) -> None:
    """In a launcher worker that the sweep's process started (joblib, submitit_local,
    Ray on this machine), end this process (SIGKILL) once the sweep's process is gone: a
    killed sweep leaves no worker writing cells without its lock. A no-op in the sweep's
    own process, in jobs it did not start (SLURM), and where /proc is missing."""
    owner = os.environ.get(records.OWNER_ENV, "")
    if not owner.isdigit() or int(owner) == os.getpid() or int(owner) in _watched:
        return
    pid = int(owner)
    started = _start_time(pid)
    if started is None or not _is_ancestor(pid):
        return
    _watched.add(pid)

    def watch() -> None:
        while _start_time(pid) == started:
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="attnlab-die-with-sweep", daemon=True).start()


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _start_time(pid: int) -> str | None:
    """The process's start time (tells it from a later process given its pid); None once
    it is gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _is_ancestor(pid: int) -> bool:
    current = os.getppid()
    for _ in range(64):
        if current == pid:
            return True
        fields = _stat_fields(current)
        if current <= 1 or fields is None or len(fields) < 2:
            return False
        current = int(fields[1])
    return False


def is_sweep_job(hc: Any) -> bool:
    """Whether this job is one of a sweep's, by what the job is: a pack, or given a job
    number by a launcher. hydra.mode alone is not enough: Hydra's in-process
    Hydra.multirun() (its test suites, programmatic users) leaves it unset."""
    if hc.mode == RunMode.MULTIRUN or hc.job.env_set.get(PACK_ENV):
        return True
    return not OmegaConf.is_missing(hc.job, "num")


def job_sweep_dir(hc: Any) -> Path:
    """The sweep dir as an absolute path: a relative hydra.sweep.dir (the default) is
    relative to where the command ran, not to the job's dir (hydra.job.chdir=True moves the
    job there before this runs)."""
    return Path(hc.runtime.cwd, hc.sweep.dir)


def run_single(cfg: DictConfig, out_dir: Path, hc: Any) -> None:
    """`attnlab [overrides]`: train one cell into the run dir; bad input exits 2 in one line."""
    from attnlab.runs.cell import run_experiment
    from attnlab.sweep.launchers import apply_threads

    cell = make_cell(cfg)
    if cell.exp is None:
        raise Abort(cell.error, 2)
    seeds, epochs = len(cell.exp.seeds), cell.exp.trainer.epochs
    # Loading TensorFlow and the first epoch take seconds: say what is coming first.
    log.info("training %d seed(s) for %d epoch(s) into %s", seeds, epochs, out_dir)
    cores = apply_threads(cell.exp.trainer.threads, hc)
    start = time.perf_counter()
    progress = PackProgress(f"run ({seeds} seeds)", seeds, epochs)
    try:
        runs = run_experiment(
            cell.exp, out_dir, seed_lines=True, on_epoch=progress.epoch, cores=cores
        )["runs"]
    finally:
        progress.close()
    log.info(run_summary(runs, key_column(cell.exp.data), time.perf_counter() - start))
    log.info("files: %s", out_dir)


def run_cell_job(cfg: DictConfig, sweep_dir: Path, out_dir: Path, hc: Any) -> float | None:
    """One cell as its own job (sweepers other than attnlab's): reuse, train or fail. A cell
    dir that holds some of the cell's seeds trains only the missing ones (as the planner)."""

    run_id = records.read_state(sweep_dir).get("run_id")
    start = time.perf_counter()
    cell = make_cell(cfg, list(hc.overrides.task))
    objective = cell.exp.objective if cell.exp is not None else "val_accuracy"
    with records.cell_lock(out_dir):  # another job of this cell trains first
        return _run_cell_locked(sweep_dir, out_dir, hc, cell, objective, run_id, start)


def _run_cell_locked(
    sweep_dir: Path,
    out_dir: Path,
    hc: Any,
    cell: Any,
    objective: str,
    run_id: str | None,
    start: float,
) -> float | None:
    """run_cell_job's reuse, training or failure, with the cell's lock held."""
    import dataclasses

    from attnlab.runs.cell import run_experiment
    from attnlab.sweep.launchers import apply_threads

    held = records.read_cell(out_dir, sweep_dir)
    asked = set(cell.exp.seeds) if cell.exp is not None else set()
    missing = sorted(asked - {run["seed"] for run in held.runs}) if held.finished else []
    if held.finished and not cell.error and not missing:  # a bad value is an error even
        kept = [run for run in held.runs if run["seed"] in asked]  # for a finished cell
        records.write_attempt(out_dir, "cached", run_id)
        log.info(progress_line(sweep_dir, cell.name, kept, "", start, cached=True))
        return objective_value(kept, objective)
    runs: list[dict[str, Any]] = []
    error = cell.error
    if cell.exp is not None:
        exp = dataclasses.replace(cell.exp, seeds=missing) if missing else cell.exp
        try:
            records.write_cell(out_dir, cell.config)
            records.set_aside_broken(out_dir, sweep_dir)
            cores = apply_threads(exp.trainer.threads, hc)
            runs = run_experiment(exp, out_dir, run_id=run_id, cores=cores, grow=True)["runs"]
        except Exception as err:
            error = error_line(err)
            log.error("cell failed: %s", error, exc_info=traced(err))
    record_attempt(out_dir, "failed" if error else "completed", run_id, error)
    log.info(progress_line(sweep_dir, cell.name, runs, error, start))
    if missing and not error:  # the objective is over every seed asked for
        runs = [r for r in records.read_cell(out_dir, sweep_dir).runs if r["seed"] in asked]
    return objective_value(runs, objective)


def run_pack_job(sweep_dir: Path, pack_id: str, hc: Any) -> None:
    """Train a pack's cells as one model and write each cell's dir; a cell that fails
    (or a pack that fails, whose cells then train one by one) is recorded, never raised."""
    from attnlab.engine.experiment import train_cells
    from attnlab.runs.cell import run_experiment
    from attnlab.sweep.launchers import apply_threads

    spec = records.read_json(sweep_dir / records.JOBS_DIR / f"{pack_id}.json", sweep_dir)
    run_id = spec.get("run_id")
    names = [str(entry["name"]) for entry in spec["cells"]]
    try:
        exps = [from_hydra(OmegaConf.create(entry["config"])) for entry in spec["cells"]]
        cores = apply_threads(exps[0].trainer.threads, hc)  # imports TensorFlow: seconds
    except Exception as err:  # e.g. submitit's time-limit signal while TensorFlow loads
        error = error_line(err)
        log.error("the pack could not start: %s", error, exc_info=traced(err))
        for name in names:
            record_attempt(sweep_dir / name, "failed", run_id, error)
        return
    cells = [(sweep_dir / name, exp) for name, exp in zip(names, exps, strict=True)]
    results: list[Any] = [None] * len(exps)
    seeds = sum(len(e.seeds) for e in exps)
    label = f"pack {int(spec.get('index', 0)) + 1}/{spec.get('of', '?')} ({seeds} seeds)"
    sweep_left = int(spec.get("after", 0))  # seed-epochs of the packs after this one
    after = max(0, int(spec.get("of", 0) or 0) - int(spec.get("index", 0)) - 1)
    progress = PackProgress(label, seeds, exps[0].trainer.epochs, sweep_left, packs_after=after)
    if len(exps) > 1:
        classes = ", ".join(str(e.data.classes) for e in exps)
        log.info("training %d cells as one model (%d seeds; classes %s)", len(exps), seeds, classes)
        start = time.perf_counter()
        try:
            results = list(train_cells(exps, on_epoch=progress.epoch, cores=cores))
            log.info("trained %d cells in %.1f s", len(exps), time.perf_counter() - start)
        except Exception:
            raise_if_stopped()
            log.exception("training the pack failed; its cells will train one by one")
        finally:
            progress.close()
    for (cell_dir, exp), trained in zip(cells, results, strict=True):
        start = time.perf_counter()
        runs: list[dict[str, Any]] = []
        error = ""
        alone = None
        if trained is None:  # a pack of one, or a pack whose joint training failed
            one = len(exps) == 1  # a pack of one: the rest of the sweep is after it
            alone = PackProgress(
                f"{label}: {display_name(cell_dir.name)}",
                len(exp.seeds),
                exp.trainer.epochs,
                sweep_left if one else 0,
                packs_after=after if one else 0,
            )
        try:
            on_epoch = alone.epoch if alone is not None else None
            runs = run_experiment(
                exp, cell_dir, trained, run_id=run_id, on_epoch=on_epoch, cores=cores, grow=True
            )["runs"]
        except Exception as err:
            error = error_line(err)
            log.error("cell failed: %s", error, exc_info=traced(err))
        finally:
            if alone is not None:
                alone.close()
        record_attempt(cell_dir, "failed" if error else "completed", run_id, error)
        packed = frozenset(n for n, r in zip(names, results, strict=True) if r is not None)
        log.info(progress_line(sweep_dir, cell_dir.name, runs, error, start, trained=packed))


def objective_value(runs: list[dict[str, Any]], objective: str = "val_accuracy") -> float | None:
    """The cell's mean `objective` over its usable seeds (attnlab.report.objective_value):
    what an optimizing sweeper maximises; None for a cell without one (failed, or every
    seed diverged).

    None, not NaN: hydra-optuna-sweeper 1.3.0 (the newest release) tells Optuna a NaN as a
    completed trial, Optuna refuses it, and the plugin's retry as a failed trial with the
    same values raises, ending the search with a traceback. None fails its float() cast
    before any tell, so the trial is recorded as failed and the search goes on.
    """
    import math

    from attnlab.runs.report import objective_value as mean_over_seeds

    value = mean_over_seeds({"runs": runs}, objective)
    return value if math.isfinite(value) else None
