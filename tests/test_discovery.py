"""Hydra finds attnlab's sweeper, under a regular install and an editable one (issue 19
item 8): upstream's plugin test_discovery, and the same in a process that imports nothing
of attnlab's but its config package, with hydra_plugins laid out as an editable install
lays it out (importable through an import hook, invisible to Hydra's plugin walk)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper

from hydra_plugins.attnlab_sweeper.attnlab_sweeper import AttnlabSweeper

ROOT = Path(__file__).resolve().parents[1]

EDITABLE = f"""
import importlib.machinery, sys
import hydra_plugins
# As setuptools' editable finder: hydra_plugins.attnlab_sweeper importable by name, but not
# on hydra_plugins.__path__, so pkgutil (Hydra's plugin walk) does not list it.
ROOT = {str(ROOT)!r}
hydra_plugins.__path__[:] = [p for p in hydra_plugins.__path__ if not p.startswith(ROOT)]

class EditableFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.startswith("hydra_plugins.attnlab_sweeper"):
            where = [ROOT + "/" + "/".join(name.split(".")[:-1])]
            return importlib.machinery.PathFinder.find_spec(name, where)
        return None

sys.meta_path.insert(0, EditableFinder)
from hydra import compose, initialize_config_module
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
assert "attnlab_sweeper" not in str(Plugins.instance().discover(Sweeper)), "walk found it"
with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
    cfg = compose("config", return_hydra_config=True)
print(cfg.hydra.sweeper._target_)
print([c.__name__ for c in Plugins.instance().discover(Sweeper)])
"""


def test_discovery():
    """Upstream's test (hydra_joblib_launcher's tests/test_joblib_launcher.py)."""
    assert AttnlabSweeper.__name__ in [x.__name__ for x in Plugins.instance().discover(Sweeper)]


def test_discovery_under_an_editable_install(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", EDITABLE], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    target, found = proc.stdout.splitlines()[-2:]
    assert target.endswith("AttnlabSweeper") and "AttnlabSweeper" in found
