"""`python -m attnlab [overrides]`: compose the config, run one experiment (or a sweep of them).

Kept thin: the job logic (planner, jobs, packs, progress, callback) is in attnlab.sweep,
the sweep dir's files in attnlab.runs, the experiment in attnlab.engine. What a user can
cause (bad input, a busy or unwritable sweep dir, Ctrl-C) ends in one line and an exit
status, not a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from importlib.metadata import version
from types import FrameType

import hydra
from omegaconf import DictConfig

from attnlab.cli import version_line
from attnlab.console import make_console_safe, working_dir_error
from attnlab.hydra_setup import register
from attnlab.quiet import quiet_start
from attnlab.runs.records import RecordError
from attnlab.sweep import callback, signals
from attnlab.sweep.errors import config_error_line, is_config_error
from attnlab.sweep.signals import Abort, Terminated

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) hides the run's own log;
# nothing above imports TensorFlow.
quiet_start()

register()

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_SIGINT, EXIT_SIGTERM = 2, 1, 130, 143


@hydra.main(config_path="pkg://attnlab.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    from attnlab.sweep.jobs import run_job

    # A sweep preset run without -m is refused before this, by SweepCallback.on_run_start.
    return run_job(cfg)  # the objective: what Hydra's optimizing sweepers read


def _stop(signum: int, frame: FrameType | None) -> None:
    signals.stop("SIGINT" if signum == signal.SIGINT else "SIGTERM")


def main() -> int:
    """Run the CLI; return the exit status (2: bad input, 1: a cell of the sweep failed,
    130/143: stopped by SIGINT/SIGTERM)."""
    # Hydra would print a compose error over several lines; let it raise, print one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        _hydra_main()
        name = signals.stopped_by()
        if name is not None:  # swallowed late: in the report callback, which Hydra guards
            return _interrupted(name)
    except Abort as stop:
        if stop.status == EXIT_BAD_INPUT:
            callback.discard_unused_dir()
        _say(f"attnlab: error: {stop.message}")
        return stop.status
    except (KeyboardInterrupt, Terminated) as stop:
        return _interrupted("SIGINT" if isinstance(stop, KeyboardInterrupt) else "SIGTERM")
    except Exception as err:
        name = signals.stopped_by()
        if name is not None:  # the signal's exception, replaced by a library's own
            return _interrupted(name)
        if is_config_error(err):  # before OSError: Hydra's missing-option error is an IOError
            callback.discard_unused_dir()  # a refusal writes nothing
            _say(f"attnlab: error: {config_error_line(err, sys.argv[1:])}")
            return EXIT_BAD_INPUT
        if isinstance(err, RecordError):  # a sweep dir's file that is not what it should be
            _say(f"attnlab: error: {err}")
            return EXIT_FAILED
        if not isinstance(err, OSError):
            raise
        from attnlab.runs.files import os_error_text

        _say(f"attnlab: error: {os_error_text(err)}")  # disk full, a read-only dir, ...
        return EXIT_FAILED
    return _sweep_status(callback.outcome)


def _interrupted(name: str) -> int:
    """After SIGINT or SIGTERM: record and report what finished, say how to resume."""
    # A second signal while the report is written ends the process at once.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _say(callback.interrupted(name))
    return EXIT_SIGINT if name == "SIGINT" else EXIT_SIGTERM


def _sweep_status(outcome: object) -> int:
    assert isinstance(outcome, callback.SweepOutcome)
    if outcome.report_error:
        lost = ""
        if outcome.failed and outcome.sweep_dir is not None:  # a full disk: cells failed too
            lost = (
                f"; {len(outcome.failed)} of {outcome.cells} cell(s) of this run failed, every "
                f"finished cell is kept; resume with: {callback.resume_command(outcome.sweep_dir)}"
            )
        _say(f"attnlab: error: {outcome.report_error}{lost}")
        return EXIT_FAILED
    if outcome.failed and outcome.sweep_dir is not None:
        notes = "".join(f"; {note}" for note in outcome.notes)
        _say(
            f"attnlab: error: {len(outcome.failed)} of {outcome.cells} cell(s) of this run "
            f"failed ({outcome.sweep_dir / 'report.md'} lists them{notes}); every finished "
            f"cell is kept; resume with: {callback.resume_command(outcome.sweep_dir)}"
        )
        return EXIT_FAILED
    return 0


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def exit_now(status: int) -> None:
    """Exit with status, skipping interpreter teardown if this process loaded TensorFlow.

    TensorFlow's teardown takes ~0.8 s, a tenth of a single run. Every file is complete by
    now (written atomically and closed), and the logs are flushed here. A process that only
    launched workers (joblib, submitit, ray) never loads TensorFlow: it exits normally, so
    its launcher's own clean-up still runs.
    """
    if "tensorflow" not in sys.modules:
        sys.exit(status)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a closed pipe (`| head`): nothing left to say
            stream.flush()
    os._exit(status)


def cli() -> None:
    """The `attnlab` console command: `python -m attnlab`, plus `--version`."""
    # The installed distribution's version: `attnlab` may resolve to a namespace package
    # (a dir named attnlab in the working dir, such as a sweep's), whose __init__ never runs.
    make_console_safe()
    line = version_line(sys.argv[1:], version("attnlab"))
    if line is not None:
        print(line)
        sys.exit(0)
    if working_dir_error():
        _say(f"attnlab: error: {working_dir_error()}")
        sys.exit(EXIT_BAD_INPUT)
    exit_now(main())


if __name__ == "__main__":
    cli()
