"""`python -m attnlab [overrides]`: compose the config, run one experiment (or a sweep of them).

Kept thin: the job logic (caching, failure records, progress) is in attnlab.sweep, the
experiment in attnlab.experiment.
"""

from __future__ import annotations

import os
import sys

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) hides the run's own log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra
from omegaconf import DictConfig

from attnlab.config import register_configs
from attnlab.errors import config_error_line, is_config_error

register_configs()


@hydra.main(config_path="pkg://attnlab.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from attnlab.sweep import run_job

    run_job(cfg)


def main() -> None:
    # Hydra would print a compose error over several lines; let it raise, print one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        _hydra_main()
    except Exception as err:
        if not is_config_error(err):
            raise
        print(f"attnlab: error: {config_error_line(err, sys.argv[1:])}", file=sys.stderr)
        sys.exit(2)
    from attnlab.sweep import failed_jobs

    if failed_jobs:
        print(
            f"attnlab: error: {len(failed_jobs)} job(s) of the sweep failed; "
            "its report.md lists them, the other jobs' results are kept",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
