"""Pure rules of the `attnlab` command, kept apart from Hydra's entry point to test them alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attnlab.config import ConfigError


def version_line(argv: Sequence[str], version: str) -> str | None:
    """`attnlab <version>` if the command line asks for it (`attnlab --version`), else None."""
    return f"attnlab {version}" if "--version" in argv else None


def require_multirun(multirun: bool, sweeper_params: Mapping[str, Any] | None) -> None:
    """Refuse a single run of a config that defines a sweep (a preset's hydra.sweeper.params).

    Without `-m` Hydra ignores the sweep and runs the defaults, e.g. `+experiment=blog_deep`
    would train 2 classes instead of the preset's 50: never what was meant.
    """
    if multirun or not sweeper_params:
        return
    swept = ", ".join(f"{key}={value}" for key, value in sweeper_params.items())
    raise ConfigError(
        f"hydra.sweeper.params={{{swept}}} is not allowed without -m: this config defines a "
        "sweep; add -m (attnlab -m ...) to run it"
    )
