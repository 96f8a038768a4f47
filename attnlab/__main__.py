"""`python -m attnlab [overrides]`: compose the config, run one experiment (or a sweep of them).

Kept thin: the job logic (caching, failure records, progress) is in attnlab.sweep, the
experiment in attnlab.experiment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from importlib.metadata import version

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from attnlab.cli import require_multirun, version_line
from attnlab.config import ConfigError, register_configs
from attnlab.errors import config_error_line, is_config_error
from attnlab.launchers import register_packed_launcher
from attnlab.quiet import quiet_start

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) hides the run's own log;
# nothing above imports TensorFlow.
quiet_start()

register_configs()
register_packed_launcher()


@hydra.main(config_path="pkg://attnlab.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    from attnlab.sweep import run_job

    hc = HydraConfig.get()
    try:
        require_multirun(hc.mode == RunMode.MULTIRUN, hc.sweeper.get("params"))
    except ConfigError as err:  # raised here, Hydra would add a line of its own
        print(f"attnlab: error: {err}", file=sys.stderr)
        sys.exit(2)
    return run_job(cfg)  # the objective: what Hydra's optimizing sweepers read


def main() -> int:
    """Run the CLI; return the exit status (2: bad input, 1: a job of the sweep failed)."""
    # Hydra would print a compose error over several lines; let it raise, print one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        _hydra_main()
    except Exception as err:
        if not is_config_error(err):
            raise
        print(f"attnlab: error: {config_error_line(err, sys.argv[1:])}", file=sys.stderr)
        return 2
    from attnlab.sweep import failed_jobs

    if failed_jobs:
        print(
            f"attnlab: error: {len(failed_jobs)} job(s) of the sweep failed; "
            "its report.md lists them, the other jobs' results are kept",
            file=sys.stderr,
        )
        return 1
    return 0


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
    line = version_line(sys.argv[1:], version("attnlab"))
    if line is not None:
        print(line)
        sys.exit(0)
    exit_now(main())


if __name__ == "__main__":
    cli()
