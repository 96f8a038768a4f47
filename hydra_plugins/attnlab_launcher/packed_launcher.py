"""attnlab's default launcher: Hydra's basic launcher, after training the sweep's cells in packs.

Before the jobs run one after another in this process (exactly as under the basic
launcher), every cell that is valid and not already finished in the sweep dir is composed,
and cells that can share one model train together (attnlab.packing). Each job then finds
its results there, writes its files and reports as usual; a job whose cell was not packed
trains it itself. Select Hydra's own with `hydra/launcher=basic`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn
from omegaconf import open_dict

if TYPE_CHECKING:
    from attnlab.config import ExperimentConfig


class PackedLauncher(BasicLauncher):
    def __init__(self, max_replicas: int = 128) -> None:
        super().__init__()
        self.max_replicas = max_replicas

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from attnlab.launchers import apply_threads
        from attnlab.packing import forget, train_packs

        cells = self._cells_to_train(job_overrides)
        try:
            if len(cells) > 1:
                assert self.config is not None
                apply_threads(cells[0].trainer.threads, self.config.hydra)
                train_packs(cells, self.max_replicas)
            return super().launch(job_overrides, initial_job_idx)
        finally:
            forget()

    def _cells_to_train(self, job_overrides: Sequence[Sequence[str]]) -> list[ExperimentConfig]:
        """The jobs' configs that are valid and have no finished run in the sweep dir."""
        from attnlab.config import from_hydra
        from attnlab.sweep import find_cached

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        cells: list[ExperimentConfig] = []
        for overrides in job_overrides:
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(
                    self.config, list(overrides)
                )
                with open_dict(cfg):
                    del cfg["hydra"]
                exp = from_hydra(cfg)
                exp.validate()
            except Exception:  # bad input: the job itself reports it, in one line
                continue
            if find_cached(sweep_dir, exp) is None:
                cells.append(exp)
        return cells
