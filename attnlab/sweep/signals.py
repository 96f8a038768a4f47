"""Stop signals (SIGINT, SIGTERM) of this process, remembered so library code cannot hide them.

Process state by nature: a signal handler has nowhere else to put what it received. The
CLI installs the handlers (attnlab.__main__); jobs, the planner and the callback ask here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from attnlab.runs import records
from attnlab.runs.files import os_error_text

log = logging.getLogger(__name__)


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
    instead, and the stop records the cell as interrupted.

    A record the disk or the dir refuses (full, read-only) is said in one line and the job
    goes on with its other cells: the sweep's end counts a cell left without a record of
    this run as failed."""
    if attempt == "failed":
        raise_if_stopped()
    try:
        records.write_attempt(cell_dir, attempt, run_id, error)
    except OSError as err:
        why = os_error_text(err)
        log.error("%s: its outcome (%s) cannot be recorded: %s", cell_dir.name, attempt, why)


def stopped_by() -> str | None:
    """The stop signal received, if any."""
    return _stop_signals[0] if _stop_signals else None


def raise_if_stopped() -> None:
    """Raise the received stop signal's exception again, if there was one."""
    if _stop_signals:
        raise KeyboardInterrupt() if _stop_signals[0] == "SIGINT" else Terminated()
