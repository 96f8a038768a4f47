"""Hydra's own plugin test suites (hydra.test_utils.launcher_common_tests) against what of
attnlab they apply to (issue 19, Tests).

- LauncherTestSuite and BatchedSweeperTestSuite run Hydra's test apps (their configs and
  task functions) through attnlab's launcher presets, found through hydra.searchpath:
  attnlab's presets must behave as the launchers they wrap.
- They cannot run under hydra/sweeper=attnlab, by design: that sweeper composes and trains
  attnlab's cells only (another app is refused in one line before anything is written,
  tests/test_hydra_settings.py), and it packs cells into jobs, so one JobReturn stands for
  a pack of cells, not for one override combination as the suites assert. What the suites
  check of a sweeper, attnlab's own tests check for attnlab's app: the grid's expansion
  (tests/test_sweeper.py), overrides read back unchanged (tests/test_overrides.py),
  hydra.job.chdir, the sweeper's own dir, in-process Hydra.multirun()
  (tests/test_hydra_settings.py), ${hydra:} per cell (tests/test_planner.py).
"""

from __future__ import annotations

import importlib.util

import pytest
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

# The version base's unset marker: Hydra has no public way back to "unset".
from hydra.version import _UNSPECIFIED_, VersionBase

SEARCH = "hydra.searchpath=[pkg://attnlab.conf]"


@pytest.fixture(autouse=True)
def hydra_test_apps_version_base():
    """Hydra's test apps leave version_base unset (1.1 behaviour: a job runs in its own
    dir); an earlier test's `version_base="1.3"` is process-wide, so it is reset here."""
    base = VersionBase.instance()
    before = base.getbase()
    base.version_base = _UNSPECIFIED_
    yield
    base.version_base = before


@pytest.mark.parametrize(
    ("launcher_name", "overrides"),
    [
        ("attnlab", [SEARCH]),  # in process: quick
        pytest.param(  # a process per job (submitit on this machine)
            "attnlab_local",
            [SEARCH],
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(
                    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                    reason="needs the slurm extra",
                ),
            ],
        ),
    ],
)
class TestAttnlabLauncherPresets(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    ("launcher_name", "overrides"), [("attnlab", [SEARCH, "hydra.sweeper.max_batch_size=2"])]
)
class TestAttnlabLauncherPresetsBatched(BatchedSweeperTestSuite):
    pass


@pytest.mark.slow  # every case starts a Hydra app in a subprocess
@pytest.mark.parametrize(
    ("task_launcher_cfg", "extra_flags"),
    [({}, ["-m", "hydra/job_logging=disabled", "hydra/launcher=attnlab", SEARCH])],
)
class TestAttnlabLauncherPresetsIntegration(IntegrationTestSuite):
    pass
