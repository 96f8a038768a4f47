"""The cores one job trains on, from the Hydra launcher that runs it.

`trainer.threads=0` means "a fair share of the cores": all of them when jobs run one after
another (Hydra's basic launcher), an equal split when joblib runs n_jobs at once, and the
job's own allocation under submitit (cpus_per_task) and Ray (ray.remote.num_cpus). The rule
is pure (default_threads, resolve_threads), so it is testable without starting a sweep;
apply_threads hands its result to attnlab.engine.train (one shard of replicas per core).

The resolved count is only handed to TensorFlow, never written back into the config: the
config is a cell's identity (the resume cache key and the report's columns), and it must not
depend on which launcher ran the cell.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from attnlab.engine.resources import available_cpus

log = logging.getLogger(__name__)
detail = logging.getLogger("attnlab.detail")  # the job's log file only

JOBLIB_TARGET = "JoblibLauncher"
SUBMITIT_TARGET = "hydra_submitit_launcher"
RAY_TARGET = "hydra_ray_launcher"


def default_threads(launcher_cfg: Mapping[str, Any] | None, cpu_count: int) -> int:
    """Threads for one job when `trainer.threads` is 0; always at least 1.

    launcher_cfg is the `hydra.launcher` node (None or an unknown launcher: one job at a
    time, so all cores). cpu_count is the number of cores the job's process may use.
    """
    cores = max(1, cpu_count)
    cfg: Mapping[str, Any] = launcher_cfg or {}
    target = str(cfg.get("_target_", ""))
    if target.endswith(JOBLIB_TARGET):
        return max(1, cores // joblib_workers(cfg.get("n_jobs"), cores))
    if SUBMITIT_TARGET in target:
        per_task = cfg.get("cpus_per_task")
        # submitit_local does not pin jobs to cores, so never ask for more than exist.
        return min(int(per_task), cores) if per_task else cores
    if RAY_TARGET in target:
        # Ray reserves ray.remote.num_cpus per job (1 if unset) and runs as many at once as
        # its CPUs allow, so that reservation is the job's share.
        remote = (cfg.get("ray") or {}).get("remote") or {}
        return max(1, min(int(remote.get("num_cpus") or 1), cores))
    return cores


def joblib_workers(n_jobs: Any, cpu_count: int) -> int:
    """How many jobs joblib runs at once: n_jobs, or for n_jobs < 0 (joblib's convention)
    cpu_count + 1 + n_jobs, so -1 = all cores, -2 = all but one."""
    n = -1 if n_jobs is None else int(n_jobs)
    workers = cpu_count + 1 + n if n < 0 else n
    return max(1, workers)


def resolve_threads(trainer_threads: int, hydra_cfg: Any | None) -> int:
    """trainer.threads if set (> 0), else the launcher's fair share of this process's cores.

    hydra_cfg is `HydraConfig.get()` (its `launcher` node is read) or None outside Hydra.
    """
    if trainer_threads > 0:
        return trainer_threads
    launcher = hydra_cfg.get("launcher") if hydra_cfg is not None else None
    return default_threads(launcher, available_cpus())


def apply_threads(trainer_threads: int, hydra_cfg: Any | None) -> int:
    """Set the cores this process trains on by resolve_threads; return the count.

    Call in the job, before it trains, and pass the count to the training (train_cells'
    `cores`): TensorFlow's pools are set by the first call of a process only (loky reuses its
    workers across jobs, but every job of a sweep resolves to the same count).
    """
    from attnlab.engine.train import (
        configure_tensorflow,  # deferred: TensorFlow loads only to train
    )

    threads = configure_tensorflow(resolve_threads(trainer_threads, hydra_cfg))
    detail.info("training on %d core(s)", threads)
    return threads
