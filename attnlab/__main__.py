"""`python -m attnlab [overrides]`: compose the config, run one experiment (or a sweep of them).

Kept thin: the job logic (caching, failure records, progress) is in attnlab.sweep, the
experiment in attnlab.experiment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) hides the run's own log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra
from omegaconf import DictConfig

from attnlab.config import register_configs
from attnlab.errors import config_error_line, is_config_error
from attnlab.launchers import register_packed_launcher

register_configs()
register_packed_launcher()


@hydra.main(config_path="pkg://attnlab.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from attnlab.sweep import run_job

    run_job(cfg)


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


if __name__ == "__main__":
    exit_now(main())
