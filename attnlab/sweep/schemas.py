"""What Hydra needs to compose attnlab's configs: the dataclass schemas in its ConfigStore
and the cell-dir resolver. The schemas themselves live in attnlab.engine.config, which
imports no Hydra."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from attnlab.engine.config import (
    DataConfig,
    ExperimentConfig,
    LoggerConfig,
    ModelConfig,
    TrainerConfig,
)
from attnlab.sweep.cells import RESOLVER, cell_dir_resolver


def register_configs() -> None:
    """Register the schemas that conf/*.yaml extend, and the `attnlab.cell_dir` resolver.

    The schemas are stored outside every config group (conf/data/default.yaml names
    `/base_data@_here_`), so --help and shell completion list only the real options.
    """
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=ExperimentConfig)
    cs.store(name="base_data", node=DataConfig)
    cs.store(name="base_model", node=ModelConfig)
    cs.store(name="base_trainer", node=TrainerConfig)
    cs.store(name="base_logger", node=LoggerConfig)
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, cell_dir_resolver)
