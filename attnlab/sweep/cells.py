"""A sweep's cells as Hydra composes them: typed, checked, named; pack ids; dir names.

Runs in the sweep's parent (the planner composes every cell first) and in jobs (a cell job
under another sweeper names its own dir through the `attnlab.cell_dir` resolver).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from attnlab.engine.config import ConfigError, ExperimentConfig, dotted, flatten, from_hydra
from attnlab.runs import records
from attnlab.sweep.errors import config_error_line, is_config_error

# hydra.job.env_set key that makes a job a pack job: the pack's id under <sweep>/.jobs/.
PACK_ENV = "ATTNLAB_PACK"


RESOLVER = "attnlab.cell_dir"


def hydra_value(text: str) -> str:
    """text as a Hydra override value that Hydra's parser reads back as this very string:
    as is where it already does, else single-quoted (`8490098e-000` would read as the float
    8490098.0, `null` as None, `a,b` as a sweep, `x y` as a parse error)."""
    # Plain only if it reads back alone and holds nothing that means more in a list or
    # sweep (`a\\` alone is `a\\`, but `a\\,b` escapes the comma).
    if re.fullmatch(r"[\w./@:%+~-]+", text) and _reads_back(text):
        return text
    # Hydra's quoted strings: escape each quote, and double the backslashes before a quote
    # or the string's end (elsewhere a backslash is literal).
    body = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text).replace("'", "\\'")
    return f"'{body}'"


def _reads_back(text: str) -> bool:
    try:
        return bool(_parser().parse_override(f"k={text}").value() == text)
    except Exception:  # a parse error (`~` alone)
        return False


@functools.cache
def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


@dataclass
class Cell:
    """One cell of a sweep as composed: its overrides, flat config, dir name and either its
    typed config or why it is invalid."""

    overrides: list[str]
    config: dict[str, Any]
    name: str
    exp: ExperimentConfig | None = None
    error: str = ""
    # The error is a value outside the range the config allows (a typo, data.classes=1),
    # which no machine or other cell changes; not a memory bound or an interpolation.
    out_of_range: bool = False


def default_values() -> dict[str, Any]:
    """The schema's defaults (which conf/ mirrors), against which dir names show changes."""
    return flatten(ExperimentConfig())


def name_cell(cfg: DictConfig, overrides: list[str] | None = None) -> Cell:
    """The cell of a composed config (hydra node excluded), named, not yet validated; a
    config that cannot even be typed (unknown key, unresolvable interpolation) gets its
    error instead of a typed config."""
    overrides = list(overrides or [])
    try:
        exp = from_hydra(cfg)
    except Exception as err:
        config = _raw_config(cfg)
        name = records.cell_name(config, default_values()) if config else _fallback(overrides)
        return Cell(overrides, config, name, None, error_line(err))
    config = flatten(exp)
    return Cell(overrides, config, records.cell_name(config, default_values()), exp)


def make_cell(
    cfg: DictConfig, overrides: list[str] | None = None, activations: bool = True
) -> Cell:
    """name_cell, then every check that runs before training: value ranges, and whether
    the cell fits in memory. activations=False skips the activation-name check, which
    imports Keras (the sweep's parent process never loads TensorFlow; jobs check it)."""
    return check_cell(name_cell(cfg, overrides), activations)


def check_cell(cell: Cell, activations: bool = True) -> Cell:
    """A named cell's checks (value ranges, memory); a failed one gets its error."""
    from attnlab.engine.resources import check_fits

    if cell.exp is None:
        return cell
    try:
        cell.exp.validate(activations=activations)
    except Exception as err:
        cell.error, cell.exp, cell.out_of_range = error_line(err), None, True
        return cell
    try:
        check_fits(cell.exp)
    except Exception as err:
        cell.error, cell.exp = error_line(err), None
    return cell


def _raw_config(cfg: DictConfig) -> dict[str, Any]:
    """The config's values as written (interpolations unresolved), flat."""
    try:
        container = OmegaConf.to_container(cfg, resolve=False)
    except Exception:
        return {}
    return dotted(container) if isinstance(container, dict) else {}


def _fallback(overrides: list[str] | None) -> str:
    return records.fallback_name(" ".join(overrides or []))


def error_line(err: BaseException) -> str:
    """A failure in one line: bad input as the config checks word it, else type and text."""
    message = config_error_line(err) if is_config_error(err) else f"{type(err).__name__}: {err}"
    return records.one_line(message)


def cell_dir_resolver(*, _root_: DictConfig) -> str:
    """hydra.sweep.subdir: a cell job's dir is its cell's name; a pack job's is in .jobs/."""
    pack = OmegaConf.select(_root_, f"hydra.job.env_set.{PACK_ENV}")
    if pack:
        return f"{records.JOBS_DIR}/{pack}"
    task = OmegaConf.create({k: _root_[k] for k in _root_ if k != "hydra"})
    overrides = list(OmegaConf.select(_root_, "hydra.overrides.task") or [])
    return name_cell(task, overrides).name


def strip_hydra(cfg: DictConfig) -> DictConfig:
    """A composed config without its hydra node (what a task function receives)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


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
