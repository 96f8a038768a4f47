"""The Hydra side of a run or sweep: the task function, pack jobs and the sweep callback.

A job never raises in a sweep (Hydra skips on_multirun_end when one does, and its joblib,
submitit and Ray launchers run job callbacks in worker processes): every outcome is a
record in the cell's dir (attnlab.records), and the parent builds the report and the exit
status from the dirs on disk.

Under attnlab's sweeper (the default, attnlab.sweeper) each job is a pack: cells that
share a model shape, trained as one model by run_pack_job, which writes every cell's dir.
Under any other sweeper (Hydra's basic one, Optuna) each job is one cell (run_cell_job),
in a dir named by the same rule (the `attnlab.cell_dir` resolver).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from attnlab import records
from attnlab.config import ExperimentConfig, dotted, flatten, from_hydra
from attnlab.errors import config_error_line, is_config_error
from attnlab.progress import PackProgress

log = logging.getLogger(__name__)

# hydra.job.env_set key that makes a job a pack job: the pack's id under <sweep>/.jobs/.
PACK_ENV = "ATTNLAB_PACK"
RESOLVER = "attnlab.cell_dir"


class Abort(BaseException):
    """A stop the user caused (a busy or unwritable sweep dir): one line and an exit status.

    A BaseException, so that Hydra's callback wrapper, which turns every Exception into a
    warning, lets it through to the CLI.
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT."""


# The stop signal this process received ("SIGINT" or "SIGTERM"). Its handler raises at
# once, but a library's `finally` can replace that exception with one of its own: Hydra's
# pkg:// config reader runs `f = res.open()` inside `try: ... finally: f.close()`, so a
# signal inside open() surfaces as an UnboundLocalError, an Exception that a launcher or a
# job would record as the cell's failure (seen in CI: SIGTERM left 3 cells "failed" and
# exit 1). So every job start, every failure a job records (record_attempt), the launcher
# path and the CLI's exit ask first.
_stop_signals: list[str] = []


def stop(signal_name: str) -> None:
    """The SIGINT/SIGTERM handlers' body: remember the signal, raise its exception."""
    _stop_signals.append(signal_name)
    raise_if_stopped()


def record_attempt(cell_dir: Path, attempt: str, run_id: str | None, error: str = "") -> None:
    """A job's record of its cell's attempt. A failure while a stop signal is pending is
    the signal's doing (its exception replaced on the way): the signal is raised again
    instead, and the stop records the cell as interrupted."""
    if attempt == "failed":
        raise_if_stopped()
    records.write_attempt(cell_dir, attempt, run_id, error)


def stopped_by() -> str | None:
    """The stop signal received, if any."""
    return _stop_signals[0] if _stop_signals else None


def raise_if_stopped() -> None:
    """Raise the received stop signal's exception again, if there was one."""
    if _stop_signals:
        raise KeyboardInterrupt() if _stop_signals[0] == "SIGINT" else Terminated()


@dataclass
class SweepOutcome:
    """What the CLI reports once a multirun of this process ends."""

    sweep_dir: Path | None = None
    run_id: str | None = None
    cells: int = 0
    failed: list[str] = field(default_factory=list)
    report_error: str = ""
    notes: list[str] = field(default_factory=list)  # why cells could not even start
    lock: Any = None  # the held filelock.FileLock; released when the process exits


outcome = SweepOutcome()


# --- cells: configs, names, errors --------------------------------------------------------


@dataclass
class Cell:
    """One cell of a sweep as composed: its overrides, flat config, dir name and either its
    typed config or why it is invalid."""

    overrides: list[str]
    config: dict[str, Any]
    name: str
    exp: ExperimentConfig | None = None
    error: str = ""


def default_values() -> dict[str, Any]:
    """The schema's defaults (which conf/ mirrors), against which dir names show changes."""
    return flatten(ExperimentConfig())


def name_cell(cfg: DictConfig, overrides: list[str] | None = None) -> Cell:
    """The cell of a composed config (hydra node excluded), named, not yet validated; a
    config that cannot even be typed (unknown key, unresolvable interpolation) gets its
    error instead of a typed config."""
    overrides = list(overrides or [])
    try:
        exp = from_hydra(cfg)
    except Exception as err:
        config = _raw_config(cfg)
        name = records.cell_name(config, default_values()) if config else _fallback(overrides)
        return Cell(overrides, config, name, None, error_line(err))
    config = flatten(exp)
    return Cell(overrides, config, records.cell_name(config, default_values()), exp)


def make_cell(
    cfg: DictConfig, overrides: list[str] | None = None, activations: bool = True
) -> Cell:
    """name_cell, then every check that runs before training: value ranges, and whether
    the cell fits in memory. activations=False skips the activation-name check, which
    imports Keras (the sweep's parent process never loads TensorFlow; jobs check it)."""
    from attnlab.resources import check_fits

    cell = name_cell(cfg, overrides)
    if cell.exp is None:
        return cell
    try:
        cell.exp.validate(activations=activations)
        check_fits(cell.exp)
    except Exception as err:
        cell.error, cell.exp = error_line(err), None
    return cell


def _raw_config(cfg: DictConfig) -> dict[str, Any]:
    """The config's values as written (interpolations unresolved), flat."""
    try:
        container = OmegaConf.to_container(cfg, resolve=False)
    except Exception:
        return {}
    return dotted(container) if isinstance(container, dict) else {}


def _fallback(overrides: list[str] | None) -> str:
    return records.fallback_name(" ".join(overrides or []))


def error_line(err: BaseException) -> str:
    """A failure in one line: bad input as the config checks word it, else type and text."""
    message = config_error_line(err) if is_config_error(err) else f"{type(err).__name__}: {err}"
    return records.one_line(message)


def cell_dir_resolver(*, _root_: DictConfig) -> str:
    """hydra.sweep.subdir: a cell job's dir is its cell's name; a pack job's is in .jobs/."""
    pack = OmegaConf.select(_root_, f"hydra.job.env_set.{PACK_ENV}")
    if pack:
        return f"{records.JOBS_DIR}/{pack}"
    task = OmegaConf.create({k: _root_[k] for k in _root_ if k != "hydra"})
    overrides = list(OmegaConf.select(_root_, "hydra.overrides.task") or [])
    return name_cell(task, overrides).name


def register() -> None:
    """What Hydra needs to compose and run attnlab's configs, in any process (the CLI, the
    Python API, tests): the schemas, the cell-dir resolver, and attnlab's sweeper (its
    plugin class and its config, hydra/sweeper=attnlab)."""
    from attnlab.config import register_configs
    from hydra_plugins.attnlab_sweeper.attnlab_sweeper import register as register_sweeper

    register_configs()
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, cell_dir_resolver)
    register_sweeper()


# --- the task function --------------------------------------------------------------------


def run_job(cfg: DictConfig) -> float | None:
    """Hydra's task function: a single run, a pack of cells, or one cell of a sweep.

    Returns the job's objective (a cell's mean val_accuracy) for optimizing sweepers.
    """
    raise_if_stopped()  # a signal an earlier job's library code swallowed: stop here
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    if hc.mode != RunMode.MULTIRUN:
        run_single(cfg, out_dir, hc)
        return None
    sweep_dir = Path(hc.sweep.dir)
    pack = hc.job.env_set.get(PACK_ENV)
    if pack:
        run_pack_job(sweep_dir, str(pack), hc)
        return None
    return run_cell_job(cfg, sweep_dir, out_dir, hc)


def run_single(cfg: DictConfig, out_dir: Path, hc: Any) -> None:
    """`attnlab [overrides]`: train one cell into the run dir; bad input exits 2 in one line."""
    from attnlab.experiment import run_experiment
    from attnlab.launchers import apply_threads

    cell = make_cell(cfg)
    if cell.exp is None:
        raise Abort(cell.error, 2)
    apply_threads(cell.exp.trainer.threads, hc)
    start = time.perf_counter()
    runs = run_experiment(cell.exp, out_dir, seed_lines=True)["runs"]
    log.info(run_summary(runs, cell.exp.data.attention_column, time.perf_counter() - start))
    log.info("files: %s", out_dir)


def run_summary(runs: list[dict[str, Any]], key: int, seconds: float) -> str:
    """`5/5 seeds focused on column 1; val_accuracy 1.000 ± 0.000 (mean ± sd), 4.1 s`."""
    accs, mean, sd = _accuracy_spread(runs)
    focused = _focused_count(runs)
    diverged = sum(1 for r in runs if r.get("status") == "diverged")
    tail = f", {diverged} diverged" if diverged else ""
    head = NO_FOCUS if focused is None else f"{focused}/{len(runs)} seeds focused on column {key}"
    return (
        f"{head}; val_accuracy {mean:.3f} ± {sd:.3f} (mean ± sd over {len(accs)} seeds)"
        f"{tail}; {seconds:.1f} s"
    )


NO_FOCUS = "no attention to focus"


def _focused_count(runs: list[dict[str, Any]]) -> int | None:
    """Seeds whose attention peaks on the key; None when no seed has attention to test
    (model.attention=none, or every seed diverged), which is not "0 focused"."""
    if not any(isinstance(r.get("attn_focused"), bool) for r in runs):
        return None
    return sum(1 for r in runs if r.get("attn_focused") is True)


def run_cell_job(cfg: DictConfig, sweep_dir: Path, out_dir: Path, hc: Any) -> float | None:
    """One cell as its own job (sweepers other than attnlab's): reuse, train or fail."""
    from attnlab.experiment import run_experiment
    from attnlab.launchers import apply_threads

    run_id = records.read_state(sweep_dir).get("run_id")
    start = time.perf_counter()
    cell = make_cell(cfg, list(hc.overrides.task))
    objective = cell.exp.objective if cell.exp is not None else "val_accuracy"
    held = records.read_cell(out_dir, sweep_dir)
    if held.finished and not cell.error:  # a bad value is an error even for a finished cell
        records.write_attempt(out_dir, "cached", run_id)
        log.info(progress_line(sweep_dir, cell.name, held.runs, "", start, cached=True))
        return objective_value(held.runs, objective)
    runs: list[dict[str, Any]] = []
    error = cell.error
    if cell.exp is not None:
        try:
            records.write_cell(out_dir, cell.config)
            records.set_aside_broken(out_dir, sweep_dir)
            apply_threads(cell.exp.trainer.threads, hc)
            runs = run_experiment(cell.exp, out_dir, run_id=run_id)["runs"]
        except Exception as err:
            error = error_line(err)
            log.error("cell failed: %s", error, exc_info=not is_config_error(err))
    record_attempt(out_dir, "failed" if error else "completed", run_id, error)
    log.info(progress_line(sweep_dir, cell.name, runs, error, start))
    return objective_value(runs, objective)


def run_pack_job(sweep_dir: Path, pack_id: str, hc: Any) -> None:
    """Train a pack's cells as one model and write each cell's dir; a cell that fails
    (or a pack that fails, whose cells then train one by one) is recorded, never raised."""
    from attnlab.experiment import run_experiment, train_cells
    from attnlab.launchers import apply_threads

    spec = records.read_json(sweep_dir / records.JOBS_DIR / f"{pack_id}.json", sweep_dir)
    run_id = spec.get("run_id")
    names = [str(entry["name"]) for entry in spec["cells"]]
    try:
        exps = [from_hydra(OmegaConf.create(entry["config"])) for entry in spec["cells"]]
        apply_threads(exps[0].trainer.threads, hc)  # imports TensorFlow: seconds
    except Exception as err:  # e.g. submitit's time-limit signal while TensorFlow loads
        error = error_line(err)
        log.error("the pack could not start: %s", error, exc_info=not is_config_error(err))
        for name in names:
            record_attempt(sweep_dir / name, "failed", run_id, error)
        return
    cells = [(sweep_dir / name, exp) for name, exp in zip(names, exps, strict=True)]
    results: list[Any] = [None] * len(exps)
    seeds = sum(len(e.seeds) for e in exps)
    label = f"pack {int(spec.get('index', 0)) + 1}/{spec.get('of', '?')} ({seeds} seeds)"
    progress = PackProgress(label, seeds, exps[0].trainer.epochs, int(spec.get("after", 0)))
    if len(exps) > 1:
        classes = ", ".join(str(e.data.classes) for e in exps)
        log.info("training %d cells as one model (%d seeds; classes %s)", len(exps), seeds, classes)
        start = time.perf_counter()
        try:
            results = list(train_cells(exps, on_epoch=progress.epoch))
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
            alone = PackProgress(
                f"{label}: {display_name(cell_dir.name)}", len(exp.seeds), exp.trainer.epochs
            )
        try:
            on_epoch = alone.epoch if alone is not None else None
            runs = run_experiment(exp, cell_dir, trained, run_id=run_id, on_epoch=on_epoch)["runs"]
        except Exception as err:
            error = error_line(err)
            log.error("cell failed: %s", error, exc_info=not is_config_error(err))
        finally:
            if alone is not None:
                alone.close()
        record_attempt(cell_dir, "failed" if error else "completed", run_id, error)
        packed = frozenset(n for n, r in zip(names, results, strict=True) if r is not None)
        log.info(progress_line(sweep_dir, cell_dir.name, runs, error, start, trained=packed))


def objective_value(runs: list[dict[str, Any]], objective: str = "val_accuracy") -> float:
    """The cell's mean `objective` over its usable seeds (attnlab.report.objective_value):
    what an optimizing sweeper maximises."""
    from attnlab.report import objective_value as mean_over_seeds

    return mean_over_seeds({"runs": runs}, objective)


# --- progress -------------------------------------------------------------------------------


def display_name(name: str) -> str:
    """A cell dir's name without its hash, for the console."""
    readable, _, digest = name.rpartition("-")
    return (readable if len(digest) == records.HASH_CHARS else name).replace(",", " ")


def progress_line(
    sweep_dir: Path,
    name: str,
    runs: list[dict[str, Any]],
    error: str,
    start: float,
    cached: bool = False,
    trained: frozenset[str] = frozenset(),
) -> str:
    """`[3/6] data.classes=20 model.attn_layers=1: val_acc 0.71 ± 0.05, focused 4/5 seeds,
    8.1 s, ~40 s left`. trained: cells of this job trained already but not yet written
    (their work counts as done for the time left)."""
    state = records.read_state(sweep_dir)
    run_id, cells = state.get("run_id"), state.get("cells")
    total = len(cells) if isinstance(cells, list) else 0
    done_names = {r.name for r in records.read_cells(sweep_dir) if r.run_id == run_id and run_id}
    seconds = time.perf_counter() - start
    left = time_left(state, done_names | trained)
    head = f"[{len(done_names)}/{total or '?'}] {display_name(name)}:"
    eta = f"~{left:.0f} s left" if math.isfinite(left) else "measuring speed"
    if error:
        return f"{head} FAILED: {error}, {seconds:.1f} s, {eta}"
    _, mean, sd = _accuracy_spread(runs)
    focused = _focused_count(runs)
    focus = NO_FOCUS if focused is None else f"focused {focused}/{len(runs)} seeds"
    tag = " (cached)" if cached else ""
    return f"{head} val_acc {mean:.2f} ± {sd:.2f}, {focus}, {seconds:.1f} s{tag}, {eta}"


def time_left(state: dict[str, Any], done: set[str]) -> float:
    """Seconds the sweep has left at its measured pace: seed-epochs still to train over
    seed-epochs trained per second since it started (cells to train, from .sweep.json)."""
    given = state.get("work")
    work: dict[str, Any] = given if isinstance(given, dict) else {}
    total = sum(v for v in work.values() if isinstance(v, int))
    trained = sum(v for k, v in work.items() if k in done and isinstance(v, int))
    elapsed = time.time() - float(state.get("started", time.time()))
    if trained == 0 or elapsed <= 0:
        return math.nan
    return (total - trained) / (trained / elapsed)


def _accuracy_spread(runs: list[dict[str, Any]]) -> tuple[list[float], float, float]:
    """The runs' finite val_accuracy values, their mean and sd (ddof 1; 0 for one value)."""
    accs = [float(r["val_accuracy"]) for r in runs if _finite(r.get("val_accuracy"))]
    mean = sum(accs) / len(accs) if accs else math.nan
    sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
    return accs, mean, sd


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- the sweep's start and end ------------------------------------------------------------


def open_sweep_dir(sweep_dir: Path) -> None:
    """Make the sweep dir ours for this run: create it, lock it (one sweep at a time),
    clear temp files a killed run left, write the run's state. Abort in one line if it is a
    file, unwritable, or held by another sweep."""
    where = f"hydra.sweep.dir={sweep_dir}"
    if sweep_dir.is_symlink() or (sweep_dir.exists() and not sweep_dir.is_dir()):
        raise Abort(f"{where} is not a directory")
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        lock = records.lock_sweep_dir(sweep_dir, records.command_line())
    except records.RecordError as err:
        raise Abort(f"{where}: {err}; or choose another hydra.sweep.dir") from None
    except OSError as err:
        raise Abort(f"{where}: cannot write there ({err.strerror})", 1) from None
    outcome.lock, outcome.sweep_dir = lock, sweep_dir
    try:
        removed = records.remove_temp_files(sweep_dir)
        adopt_legacy_cells(sweep_dir)
        state = records.new_state(records.command_line(), [])
        state["cells"] = None  # set by attnlab's sweeper once it has planned the cells
        from attnlab.files import write_json

        write_json(sweep_dir / records.SWEEP_STATE, state)
    except OSError as err:
        raise Abort(f"{where}: cannot write there ({err.strerror})", 1) from None
    outcome.run_id = state["run_id"]
    if removed:
        log.info("removed %d temp file(s) left by a killed run", removed)


def adopt_legacy_cells(sweep_dir: Path) -> None:
    """Give cells of attnlab < 0.2 (dirs named by overrides alone) their own dir name, so a
    rerun reuses them in place: the dir is renamed, its files untouched; an old failure
    record (then written as metrics.json) becomes the cell's run.json."""
    defaults = default_values()
    for old_dir, record in records.iter_legacy(sweep_dir):
        try:
            records.check_config(record.config, old_dir.name)
        except records.RecordError:
            continue
        new_dir = sweep_dir / records.cell_name(record.config, defaults)
        if new_dir.exists():
            continue
        old_dir.rename(new_dir)
        if not record.finished:
            failed = new_dir / records.METRICS_FILE
            if failed.exists():
                failed.rename(new_dir / "metrics.failed-legacy.json")
            records.write_attempt(new_dir, "failed", None, record.error)
        records.write_cell(new_dir, record.config)
        log.info("adopted %s as %s", old_dir.name, new_dir.name)


def finish_sweep(sweep_dir: Path, lost_reason: str) -> None:
    """Record cells of this run that got no result (lost_reason), write the report, and
    note this run's failures for the exit status."""
    state = records.read_state(sweep_dir)
    run_id = state.get("run_id")
    cells_of_run = state.get("cells")
    planned: list[str] = cells_of_run if isinstance(cells_of_run, list) else []
    by_name = {r.name: r for r in records.read_cells(sweep_dir)}
    for name in planned:
        record = by_name.get(name)
        if record is None or record.run_id != run_id:
            outcome_now = "completed" if record is not None and record.finished else "failed"
            error = "" if outcome_now == "completed" else lost_reason
            with contextlib.suppress(OSError):
                records.write_attempt(sweep_dir / name, outcome_now, run_id, error)
    cells = {r.name: r for r in records.read_cells(sweep_dir) if run_id and r.run_id == run_id}
    given = state.get("blocked")
    blocked: dict[str, str] = given if isinstance(given, dict) else {}
    outcome.cells = len(cells) + len(blocked)
    # A failed attempt counts even where an earlier run's result stands (a rerun with a bad
    # trainer.threads fails, and the finished cell keeps its result).
    outcome.failed = sorted(n for n, r in cells.items() if r.attempt == "failed" or not r.finished)
    outcome.failed += sorted(blocked)
    outcome.notes = [blocked[name] for name in sorted(blocked)]
    write_report_or_say_why(sweep_dir)


def write_report_or_say_why(sweep_dir: Path) -> None:
    """The report, if any cell has a record; if writing fails (disk full, ...), the old
    report files are removed so none is presented as current, and the CLI says so."""
    from attnlab.report import write_report

    if not records.cell_dirs(sweep_dir):
        return
    try:
        write_report(sweep_dir, command=records.read_state(sweep_dir).get("command"))
        log.info("report: %s", sweep_dir / "report.md")
    except (OSError, records.RecordError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        where = f" ({err.filename})" if isinstance(err, OSError) and err.filename else ""
        outcome.report_error = (
            f"writing the report in {sweep_dir} failed: {why}{where}; no old report is left "
            f"as if current; rebuild it with: python -m attnlab.report {sweep_dir}"
        )
        log.error(outcome.report_error)


def interrupted(signal_name: str) -> str:
    """After Ctrl-C or SIGTERM: report what finished, return the line telling how to resume."""
    sweep_dir = outcome.sweep_dir
    if sweep_dir is None:
        return f"attnlab: stopped by {signal_name}"
    finish_sweep(sweep_dir, f"interrupted by {signal_name} before it finished")
    done = outcome.cells - len(outcome.failed)
    return (
        f"attnlab: stopped by {signal_name}: {done} cell(s) of this run finished and are kept "
        f"(report: {sweep_dir / 'report.md'}); resume with: {resume_command(sweep_dir)}"
    )


def resume_command(sweep_dir: Path) -> str:
    """This process's command, pointed at its sweep dir: rerunning it finishes the grid."""
    args = [a for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir=")]
    return shlex.join(["attnlab", *args, f"hydra.sweep.dir={hydra_quoted(str(sweep_dir))}"])


def hydra_quoted(value: str) -> str:
    """value as a Hydra override value: as is if plain, else single-quoted (a `,` would
    make a sweep, `=` or a space a parse error)."""
    if re.fullmatch(r"[\w./@:%+~-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SweepCallback(Callback):
    """The sweep dir's owner for the run: lock and state at start, report at the end (in the
    parent process, from disk). For a single run, the check that it is not a sweep preset
    run without -m (before Hydra makes the run dir)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from attnlab.cli import require_multirun
        from attnlab.config import ConfigError

        try:
            require_multirun(False, OmegaConf.select(config, "hydra.sweeper.params"))
        except ConfigError as err:
            raise Abort(str(err), 2) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        open_sweep_dir(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_sweep(
            Path(config.hydra.sweep.dir), "no result: its job was lost (killed or crashed)"
        )


def strip_hydra(cfg: DictConfig) -> DictConfig:
    """A composed config without its hydra node (what a task function receives)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
