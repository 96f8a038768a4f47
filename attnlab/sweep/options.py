"""A nested node of the sweeper's options (hydra.sweeper.adaptive, hydra.sweeper.boundary),
typed: a dataclass of optional fields, off while every field is null."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Self

from omegaconf import OmegaConf


class OptionsNode:
    """Base of the sweeper's nested option dataclasses: read from Hydra's node, and on once
    any field is set (a null field takes the default its module names)."""

    @classmethod
    def from_config(cls, node: Any) -> Self:
        """From the sweeper's node (a DictConfig, a dict or None)."""
        if node is None:
            return cls()
        tree = OmegaConf.to_container(node) if OmegaConf.is_config(node) else dict(node)
        assert isinstance(tree, dict)
        return cls(**{str(k): v for k, v in tree.items()})

    @property
    def on(self) -> bool:
        """The mode runs once any of its options is set."""
        return any(value is not None for value in asdict(self).values())  # type: ignore[call-overload]
