"""The session's SLURM cluster: up once for every test here, down at the end.

Tests skip with one line saying why where the machine cannot run it (not root, no Debian
packages to be had); under CI (`CI` set, as root) that is a failure instead, so CI never
passes by skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from . import slurm


@pytest.fixture(scope="session")
def cluster() -> Iterator[slurm.Cluster]:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra")
    was_up = slurm.is_up()
    try:
        running = slurm.up()
    except slurm.ClusterUnavailable as err:
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail(f"CI runs the SLURM tests, but: {err}")
        pytest.skip(f"no SLURM cluster on this machine: {err}")
    yield running
    if not was_up:  # a cluster someone started by hand stays up
        slurm.down(running.root)
