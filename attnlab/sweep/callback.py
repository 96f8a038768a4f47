"""The sweep's start and end, in the parent process: the sweep dir's lock and state, the
report from disk, and what the CLI reports (SweepOutcome).

Hydra instantiates the callback from conf/config.yaml (hydra.callbacks.sweep), so the CLI
cannot hand it an object: the outcome of this process's multirun is kept in `outcome`,
which only this module writes and only attnlab.__main__ reads. It is process state by
nature, as the stop signals are: it holds the sweep dir's lock, which must live until the
process exits, and the sweep dir a Ctrl-C that escaped Hydra must still report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from attnlab.engine.config import ConfigError
from attnlab.runs import records
from attnlab.sweep.cells import (
    check_cell,
    default_values,
    hydra_value,
    name_cell,
    require_multirun,
    strip_hydra,
)
from attnlab.sweep.signals import Abort

log = logging.getLogger(__name__)


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
    made: Path | None = None  # the topmost dir this run created for the sweep dir, if any


outcome = SweepOutcome()


def open_sweep_dir(sweep_dir: Path) -> None:
    """Make the sweep dir ours for this run: create it, lock it (one sweep at a time),
    clear temp files a killed run left, write the run's state. Abort in one line if it is a
    file, unwritable, or held by another sweep."""
    if outcome.sweep_dir == sweep_dir and outcome.lock is not None:
        return  # opened already in this process (attnlab's sweeper, then this callback)
    where = f"hydra.sweep.dir={sweep_dir}"
    # A symlink to a directory is the user's own way to place the sweep: followed.
    if (sweep_dir.exists() or sweep_dir.is_symlink()) and not sweep_dir.is_dir():
        raise Abort(f"{where} is not a directory")
    made = next((d for d in [*reversed(sweep_dir.parents), sweep_dir] if not d.exists()), None)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        outcome.made = made
        lock = records.lock_sweep_dir(sweep_dir, records.command_line())
    except records.RecordError as err:
        raise Abort(f"{where}: {err}; or choose another hydra.sweep.dir") from None
    except OSError as err:
        raise Abort(f"{where}: cannot write there ({err.strerror})", 1) from None
    outcome.lock, outcome.sweep_dir = lock, sweep_dir
    # The launcher workers this process starts end with it (attnlab.sweep.jobs).
    os.environ[records.OWNER_ENV] = str(os.getpid())
    try:
        removed = records.remove_temp_files(sweep_dir)
        adopt_legacy_cells(sweep_dir)
        state = records.new_state(records.command_line(), [])
        state["cells"] = None  # set by attnlab's sweeper once it has planned the cells
        from attnlab.runs.files import write_json

        write_json(sweep_dir / records.SWEEP_STATE, state)
    except OSError as err:
        raise Abort(f"{where}: cannot write there ({err.strerror})", 1) from None
    outcome.run_id = state["run_id"]
    if removed:
        log.info("removed %d temp file(s) left by a killed run", removed)


def discard_unused_dir() -> None:
    """After a refusal (Hydra's sweeper refusing an override after this callback opened
    the dir): remove the sweep dir this run made, if it holds only the run's own state and
    lock, so a refused command leaves nothing behind."""
    sweep_dir, made = outcome.sweep_dir, outcome.made
    if sweep_dir is None or made is None:
        return
    own = {records.SWEEP_STATE, records.LOCK_FILE, records.HOLDER_FILE}
    if any(p.name not in own for p in sweep_dir.iterdir()):
        return
    if outcome.lock is not None:
        outcome.lock.release()
        outcome.lock = None
    for name in own:
        (sweep_dir / name).unlink(missing_ok=True)
    for directory in [sweep_dir, *sweep_dir.parents]:
        with contextlib.suppress(OSError):  # not empty: something else is there
            directory.rmdir()
        if directory == made:
            break
    outcome.sweep_dir = outcome.made = None


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
    given = state.get("blocked")
    blocked: dict[str, str] = given if isinstance(given, dict) else {}
    by_name = {r.name: r for r in records.read_cell_dirs(sweep_dir)}
    for name in planned:
        record = by_name.get(name)
        if name in blocked and (record is None or (sweep_dir / name).is_symlink()):
            continue  # a symlink or a file in the cell's place: nothing written through it
        if record is None or record.run_id != run_id:
            outcome_now = "completed" if record is not None and record.finished else "failed"
            error = "" if outcome_now == "completed" else blocked.get(name, lost_reason)
            with contextlib.suppress(OSError):
                records.write_attempt(sweep_dir / name, outcome_now, run_id, error)
    cells = {r.name: r for r in records.read_cell_dirs(sweep_dir) if run_id and r.run_id == run_id}
    blocked = {name: why for name, why in blocked.items() if name not in cells}
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
    from attnlab.runs.report import write_report

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
    return shlex.join(["attnlab", *args, f"hydra.sweep.dir={hydra_value(str(sweep_dir))}"])


def is_attnlab_sweeper(config: DictConfig) -> bool:
    target = OmegaConf.select(config, "hydra.sweeper._target_", default="")
    return str(target).endswith(".AttnlabSweeper")


class SweepCallback(Callback):
    """The sweep dir's owner for the run: lock and state at start, report at the end (in the
    parent process, from disk). For a single run, the check that it is not a sweep preset
    run without -m (before Hydra makes the run dir)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:

        try:
            require_multirun(False, OmegaConf.select(config, "hydra.sweeper.params"))
        except ConfigError as err:
            raise Abort(str(err), 2) from None
        # A bad value is refused here, before Hydra makes the run dir (a refusal writes
        # nothing); a config that needs the run's Hydra settings to resolve is checked by
        # the job (attnlab.sweep.jobs.run_single).
        cell = name_cell(strip_hydra(config))
        if cell.exp is not None and check_cell(cell).error:
            raise Abort(cell.error, 2)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # attnlab's sweeper opens the dir itself once every cell is checked (a refused
        # sweep leaves nothing behind); any other sweeper gets it opened here.
        if not is_attnlab_sweeper(config):
            open_sweep_dir(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_sweep(
            Path(config.hydra.sweep.dir), "no result: its job was lost (killed or crashed)"
        )
