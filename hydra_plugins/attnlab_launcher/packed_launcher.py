"""attnlab's default launcher: Hydra's basic one, training cells that share a model together.

Every job's cell is composed first; those that are valid and not already finished in the
sweep dir are grouped into packs (attnlab.packing). Then, pack by pack, the pack trains as
one model and its jobs run at once, one after another in this process exactly as under the
basic launcher: each finds its results in attnlab.packing, writes its files and reports.
So a sweep killed mid-way keeps every pack finished so far. The remaining jobs (one-cell
packs, cached or invalid cells) run last and train, reuse or fail on their own. Jobs are
numbered in the order they run. Select Hydra's own with `hydra/launcher=basic`.
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
        self.max_replicas = int(max_replicas)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from attnlab.launchers import apply_threads
        from attnlab.packing import forget, identity, plan_packs, train_pack, unique

        cells = self._cells_to_train(job_overrides)  # job index -> cell
        jobs_of: dict[str, list[int]] = {}
        for index, cell in cells.items():
            jobs_of.setdefault(identity(cell), []).append(index)
        packs = [
            pack
            for pack in plan_packs(unique(list(cells.values())), self.max_replicas)
            if len(pack) > 1
        ]
        returns: list[JobReturn] = []
        next_idx = initial_job_idx
        packed: set[int] = set()
        if packs:
            assert self.config is not None
            apply_threads(packs[0][0].trainer.threads, self.config.hydra)
        try:
            for pack in packs:
                train_pack(pack)
                indices = [i for cell in pack for i in jobs_of[identity(cell)]]
                packed.update(indices)
                returns += super().launch([job_overrides[i] for i in indices], next_idx)
                next_idx += len(indices)
                forget()
            rest = [o for i, o in enumerate(job_overrides) if i not in packed]
            if rest:
                returns += super().launch(rest, next_idx)
        finally:
            forget()
        return returns

    def _cells_to_train(
        self, job_overrides: Sequence[Sequence[str]]
    ) -> dict[int, ExperimentConfig]:
        """The jobs' cells that are valid and have no finished run in the sweep dir."""
        from attnlab.config import from_hydra
        from attnlab.sweep import find_cached

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        cells: dict[int, ExperimentConfig] = {}
        for index, overrides in enumerate(job_overrides):
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
                cells[index] = exp
        return cells
