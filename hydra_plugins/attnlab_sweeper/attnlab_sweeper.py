"""The plugin shell of attnlab's sweeper: it only delegates to attnlab.sweep.planner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.attnlab_sweeper import config


class AttnlabSweeper(Sweeper):
    def __init__(
        self,
        params: Any = None,
        pack: bool = True,
        max_replicas: int = 128,
        baseline: Any = None,
        dry_run: bool = False,
        adaptive: Any = None,
        boundary: Any = None,
    ) -> None:
        self.params = dict(params) if params else {}
        self.pack, self.max_replicas = bool(pack), int(max_replicas)
        self.baseline, self.adaptive = baseline, adaptive
        self.dry_run = bool(dry_run)
        self.boundary = boundary
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Sequence[Any]:
        from attnlab.sweep.adaptive import AdaptiveOptions
        from attnlab.sweep.boundary_search import BoundaryOptions
        from attnlab.sweep.planner import SweepRequest, sweep

        assert self.config is not None and self.hydra_context is not None
        request = SweepRequest(
            params={str(k): str(v) for k, v in self.params.items()},
            arguments=list(arguments),
            pack=self.pack,
            max_replicas=self.max_replicas,
            baseline=self.baseline,
            dry_run=self.dry_run,
            adaptive=AdaptiveOptions.from_config(self.adaptive),
            boundary=BoundaryOptions.from_config(self.boundary),
        )
        return sweep(self.config, self.hydra_context, self.launcher, request)


def register() -> None:
    """Make the sweeper known to Hydra: its plugin walk misses hydra_plugins packages of an
    editable install (setuptools maps them through an import hook the walk does not see)."""
    config.register()
    plugins = Plugins.instance()
    name = f"{AttnlabSweeper.__module__}.{AttnlabSweeper.__name__}"
    if name not in plugins.class_name_to_class:
        plugins.register(AttnlabSweeper)
