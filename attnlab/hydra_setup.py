"""What Hydra needs to compose and run attnlab's configs, in any process (the CLI, the
Python API, tests, a launcher's worker): the schemas, the cell-dir resolver, and attnlab's
sweeper (its plugin class and its config, hydra/sweeper=attnlab).

An entry-point module: it alone imports both attnlab.sweep and the plugin shell under
hydra_plugins/, which delegates to attnlab.sweep (so neither imports the other's caller).
"""

from __future__ import annotations


def register() -> None:
    """Register attnlab's schemas, resolver and sweeper with Hydra (idempotent)."""
    from attnlab.sweep.schemas import register_configs
    from hydra_plugins.attnlab_sweeper.attnlab_sweeper import register as register_sweeper

    register_configs()
    register_sweeper()
