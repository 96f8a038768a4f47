"""A user's table (data=csv): read once, checked, as a float feature matrix and class labels.

Pure of attnlab's config (attnlab.engine.config imports this module lazily to fill in and
check the table's sizes), so its errors are TableErrors that name the key, the value and
what is allowed; the config layer words them as its ConfigError.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# How many row numbers a NaN message shows per column.
SHOWN_ROWS = 3


class TableError(ValueError):
    """The table does not fit the config; the message is one line (key, value, allowed)."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")


@dataclass(frozen=True)
class Table:
    """A table's features and labels, in the file's row order."""

    x: np.ndarray  # (rows, features) float32, as in the file (not standardised)
    y: np.ndarray  # (rows,) int32 class index: the target's sorted distinct values
    names: tuple[str, ...]  # the feature columns, in the file's order
    classes: tuple[str, ...]  # the target value of each class index, as text

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])


def read_table(path: str, target: str, columns: list[str] | tuple[str, ...] = ()) -> Table:
    """The table at path (CSV, or Parquet by its .parquet suffix) with `target` as the label
    and `columns` as the features (none given: every other numeric column).

    Cached per file version (path, size, modification time), so a sweep's parent that checks
    every cell reads the file once.

    Raises:
        TableError: a missing file, a missing or non-categorical target, a named feature
            column that is missing or not numeric, NaNs, fewer than two classes.
    """
    file = Path(path)
    if not path or not file.is_file():
        raise TableError("data.path", path, "an existing CSV (or .parquet) file")
    stat = file.stat()
    return _read(str(file.resolve()), stat.st_size, stat.st_mtime_ns, target, tuple(columns))


@functools.lru_cache(maxsize=4)
def _read(path: str, size: int, mtime: int, target: str, columns: tuple[str, ...]) -> Table:
    frame = _load(path)
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise TableError("data.target", target, f"a column of {os.path.basename(path)}: {shown}")
    names = list(columns) if columns else _numeric_columns(frame, target)
    _check_features(frame, names, target, path)
    _check_nans(frame, [*names, target], path)
    y, classes = _labels(frame[target], target)
    x = frame[names].to_numpy(dtype=np.float32)  # (rows, features)
    return Table(x=x, y=y, names=tuple(names), classes=classes)


def _load(path: str) -> pd.DataFrame:
    try:
        if path.endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, ImportError, OSError, pd.errors.ParserError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TableError("data.path", path, f"a readable table ({first})") from None


def _numeric_columns(frame: pd.DataFrame, target: str) -> list[str]:
    return [
        str(c)
        for c in frame.columns
        if c != target and pd.api.types.is_numeric_dtype(frame[c].dtype)
    ]


def _check_features(frame: pd.DataFrame, names: list[str], target: str, path: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise TableError(
            "data.columns", names, f"columns of {os.path.basename(path)} (missing: {missing})"
        )
    if target in names:
        raise TableError("data.columns", names, f"feature columns other than the target {target}")
    if len(set(names)) != len(names):
        raise TableError("data.columns", names, "a list without duplicates")
    text = [n for n in names if not pd.api.types.is_numeric_dtype(frame[n].dtype)]
    if text:
        raise TableError(
            "data.columns", names, f"numeric columns only (not numeric: {', '.join(text)})"
        )
    if len(names) < 2:
        raise TableError("data.columns", names, "at least 2 numeric feature columns")


def _check_nans(frame: pd.DataFrame, names: list[str], path: str) -> None:
    counts = frame[names].isna().sum()
    bad = counts[counts > 0]
    if bad.empty:
        return
    where = []
    for name, count in bad.items():
        rows = np.flatnonzero(frame[name].isna().to_numpy())[:SHOWN_ROWS]
        # Row numbers as a spreadsheet shows them: line 1 is the header.
        lines = ", ".join(str(r + 2) for r in rows)
        where.append(f"{name}: {count} (file lines {lines}{', ...' if count > SHOWN_ROWS else ''})")
    raise TableError(
        "data.path",
        path,
        f"a table without missing values; {int(bad.sum())} NaN in {'; '.join(where)}: "
        "drop or fill them first",
    )


def _labels(values: pd.Series, target: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices (the sorted distinct values) of a categorical target."""
    if pd.api.types.is_float_dtype(values.dtype):
        fractional = values[values.to_numpy() % 1 != 0]
        if len(fractional):
            raise TableError(
                "data.target",
                target,
                f"a categorical column (text, bool or whole numbers); it holds fractional "
                f"values such as {fractional.iloc[0]!r}",
            )
        values = values.astype(np.int64)
    codes, uniques = pd.factorize(values, sort=True)
    if len(uniques) < 2:
        raise TableError("data.target", target, "a column with at least 2 distinct values")
    return codes.astype(np.int32), tuple(str(u) for u in uniques)


def standardise(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Each array standardised with the training rows' mean and sd (per column): nothing
    from the validation or probe rows enters (a constant column keeps sd 1).

    Args:
        x_train: (n_train, features); others: (n, features) each.
    """
    mean = x_train.mean(axis=0, dtype=np.float64)
    sd = x_train.std(axis=0, dtype=np.float64)
    sd[sd == 0] = 1.0
    return [((a - mean) / sd).astype(np.float32) for a in (x_train, *others)]
