"""One-line messages for bad input: the key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import errno
import re
from collections.abc import Sequence

from hydra.errors import (
    ConfigCompositionException,
    HydraException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import OmegaConfBaseException

from attnlab.engine.config import ConfigError

# Hydra's own checks of its command-line flags, raised as plain ValueErrors.
_FLAG_ERRORS = ("Only one of --run, --multirun", "The --resolve flag can only be used")


def is_config_error(err: BaseException) -> bool:
    kinds = (
        ConfigError,
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
        OmegaConfBaseException,
        # Hydra's own refusals of a command (e.g. the basic sweeper's "does not support
        # sweep type : INTERVAL_SWEEP"): what the user typed, not a bug to trace.
        HydraException,
    )
    if isinstance(err, ValueError) and str(err).startswith(_FLAG_ERRORS):
        return True  # e.g. `attnlab -m --cfg job`
    return isinstance(err, kinds)


# What the machine or the user's dir refuses, not a bug in attnlab: a full disk or quota, a
# read-only or unwritable dir, a file too big for its filesystem.
_DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


def is_disk_error(err: BaseException) -> bool:
    """A write the disk or the dir refused (one line says it all; no traceback)."""
    return isinstance(err, OSError) and err.errno in _DISK_ERRNOS


def traced(err: BaseException) -> bool:
    """Whether a job's log shows err's traceback: only for what may be a bug, never for
    bad input or a disk that refused a write."""
    return not (is_config_error(err) or is_disk_error(err))


def config_error_line(err: BaseException, argv: Sequence[str] = ()) -> str:
    """Fold a ConfigError, a Hydra compose error or an OmegaConf error into one line."""
    if isinstance(err, ConfigError):
        return str(err)
    sweep_line = _sweep_without_m(str(err))
    if sweep_line:
        return sweep_line
    if isinstance(err, MissingConfigException):
        return _missing_option_line(err, argv)
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    key = getattr(cause, "full_key", None)
    if not key:
        return _first_lines(err) + _other_sweeper_hint(err, argv)
    value = _value_from_argv(key, argv)
    reason = str(getattr(cause, "msg", cause)).splitlines()[0].rstrip(".")
    allowed = _allowed_keys(cause)
    where = f"{key}={value}" if value is not None else key
    return (
        f"{where}: {reason}"
        + (f" (allowed keys: {allowed})" if allowed else "")
        + _list_hint(key, value, reason)
    )


# Hydra's refusals of a sweep in a single run: its hint (add --multirun) is on later lines.
_SWEEP_WITHOUT_M = re.compile(
    r"Ambiguous value for argument '([^']*)'|Sweep parameters '([^']*)' requires --multirun"
)


def _sweep_without_m(text: str) -> str:
    """`data.classes=5,20` without -m: one line with Hydra's hints, the list form spelled out."""
    match = _SWEEP_WITHOUT_M.search(text)
    if match is None:
        return ""
    line = match.group(1) or match.group(2)
    key = line.split("=", 1)[0].lstrip("+~")
    listed = _as_list(line) if isinstance(_defaults().get(key), list) else ""
    as_list = f"; for one run with a list: {key}={listed}" if listed else ""
    return f"{line} is a sweep: to sweep over it, add --multirun (attnlab -m {line}){as_list}"


def _defaults() -> dict[str, object]:
    from attnlab.engine.config import ExperimentConfig, flatten

    return flatten(ExperimentConfig())


def _as_list(line: str) -> str:
    """A sweep override's values as a list value (`seeds=range(0,3)` -> `[0,1,2]`), or ""."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_override(line)
        if not (override.is_sweep_override() and override.is_discrete_sweep()):
            return ""
        return "[" + ",".join(override.sweep_string_iterator()) + "]"
    except Exception:  # not a sweep Hydra can list: no example
        return ""


def _list_hint(key: str, value: str | None, reason: str) -> str:
    """The right form where a list was expected (`seeds=0`)."""
    if "is not a ListConfig" not in reason:
        return ""
    example = f"{key}=[{value}]" if value and not value.startswith("[") else f"{key}=[0,1,2]"
    more = " or seeds=[0,1,2]" if key == "seeds" and example != "seeds=[0,1,2]" else ""
    return f"; write a list, e.g. {example}{more}"


def _first_lines(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    cause = err.__cause__
    if cause is not None:
        lines += [line.strip() for line in str(cause).splitlines()[:1] if line.strip()]
    # Hydra's "... while composing config:" introduces the next line: no "; " after it.
    return "; ".join(lines[:2]).replace(":; ", ": ")


def _other_sweeper_hint(err: BaseException, argv: Sequence[str]) -> str:
    """A preset written for another sweeper, run under attnlab's: Hydra ignores a preset's
    own `override /hydra/sweeper` where the primary config sets the sweeper, so the choice
    has to be on the command line."""
    if "AttnlabSweeperConf" not in f"{err} {err.__cause__}":
        return ""
    if any(arg.startswith("hydra/sweeper=") for arg in argv):
        return ""
    return (
        "; attnlab's sweeper takes hydra.sweeper.params, pack and max_replicas: a preset for "
        "another sweeper needs it on the command line (e.g. capacity_optuna: hydra/sweeper=optuna)"
    )


def _value_from_argv(key: str, argv: Sequence[str]) -> str | None:
    """The value given for key; the last one if it is given twice (it is the one used)."""
    found = None
    for arg in argv:
        name, sep, value = arg.lstrip("+~").partition("=")
        if sep and name == key:
            found = value
    return found


def _missing_option_line(err: BaseException, argv: Sequence[str]) -> str:
    """`model=transformer: no such option (available in 'model': dense, double, lstm)`."""
    text = str(err)
    group = next(
        (line.split("'")[1] for line in text.splitlines() if "Available options" in line), ""
    )
    options = [
        line.strip()
        for line in text.split("Available options", 1)[-1].splitlines()[1:]
        if line.startswith("\t") and "=" not in line and not line.strip().startswith("base_")
    ]
    if not group:
        return _first_lines(err)
    value = _value_from_argv(group, argv) or "?"
    available = ", ".join(options) or "none"
    return f"{group}={value}: no such option (available in '{group}': {available})"


def _allowed_keys(cause: BaseException) -> str:
    """For an unknown key: the keys the schema has."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    schema = getattr(cause, "object_type", None)
    if not isinstance(cause, ConfigAttributeError | ConfigKeyError):
        return ""
    if schema is None or not dataclasses.is_dataclass(schema):
        return ""
    return ", ".join(f.name for f in dataclasses.fields(schema))
