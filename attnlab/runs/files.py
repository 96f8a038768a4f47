"""Atomic file writes: a reader (or a rerun after SIGKILL) never sees a half-written file.

Temp files start with TEMP_PREFIX, so a later run can tell the ones a kill left behind
from anything else and remove them (attnlab.runs.records.remove_temp_files).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".~attnlab."

# The process umask, read once: mkstemp makes files 0600, which a plain open() would not.
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, write: Callable[[Path], object], replace: bool = True) -> None:
    """Call write(tmp) on a temp file beside path, then move it to path.

    replace=False: create path only if it does not exist yet (a hard link: atomic, and it
    fails with FileExistsError if path exists), so a finished file is never overwritten.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=path.suffix
        )
        os.fchmod(fd, 0o666 & ~_UMASK)  # readable by collaborators, as any file the user writes
        os.close(fd)
        try:
            write(Path(tmp))
            if replace:
                os.replace(tmp, path)
            else:
                create_once(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as err:
        # Name the file the user knows (run.json is a directory; the disk is full while
        # writing report.csv: a write's ENOSPC names no file), not attnlab's temp file
        # beside it. Same errno, same type.
        names = (err.filename, err.filename2)
        if err.filename is None or any(_is_temp(name) for name in names):
            raise type(err)(err.errno, err.strerror, str(path)) from err
        raise


# link() refused by the filesystem (vfat: EPERM; some network mounts: ENOTSUP, ENOSYS).
_NO_LINK = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK})
# renameat2's RENAME_NOREPLACE unknown to the kernel or the filesystem.
_NO_RENAMEAT2 = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP})


def create_once(tmp: str, path: Path) -> None:
    """Give the finished temp file tmp the name path, only if path does not exist
    (FileExistsError if it does): a reader sees the whole file or none.

    A hard link first; where the filesystem has none, a rename that refuses to replace
    (Linux renameat2 RENAME_NOREPLACE); where that is missing too, a rename after checking
    that path is free: the sweep dir's lock makes its process the only writer.
    """
    try:
        os.link(tmp, path)
        return
    except OSError as err:
        if err.errno not in _NO_LINK:
            raise
    try:
        _rename_noreplace(tmp, str(path))
        return
    except OSError as err:
        if err.errno not in _NO_RENAMEAT2:
            raise
    if os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
    os.rename(tmp, path)


_RENAME_NOREPLACE = 1


def _rename_noreplace(src: str, dst: str) -> None:
    """renameat2(src, dst, RENAME_NOREPLACE) through libc; OSError(ENOSYS) where there is none."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        raise OSError(errno.ENOSYS, "renameat2 is not available", dst) from None
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), _RENAME_NOREPLACE):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def os_error_text(err: OSError) -> str:
    """`<file>: <reason>` of an OSError, or the reason alone when it names no file."""
    reason = err.strerror or str(err)
    return f"{err.filename}: {reason}" if err.filename else reason


def _is_temp(name: object) -> bool:
    return isinstance(name, str | os.PathLike) and Path(name).name.startswith(TEMP_PREFIX)


def write_text(path: Path, text: str, replace: bool = True) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), replace=replace)


def _jsonable(value: Any) -> Any:
    """NaN and infinities become null, numpy scalars plain numbers: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # a numpy scalar
        return _jsonable(value.item())
    return value


def write_json(path: Path, obj: Any, replace: bool = True) -> None:
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    write_text(path, text, replace=replace)


def write_csv(path: Path, frame: Any) -> None:
    """Write a pandas DataFrame as CSV, atomically."""
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


FIGURE_DPI = 110  # figures' pixels per inch as saved (attnlab.runs.plots sizes text by it)


def write_figure(path: Path, fig: Any) -> None:
    """Save a matplotlib Figure atomically; close it if pyplot manages it (attnlab's own
    figures are plain Figure objects that pyplot never holds, so nothing is imported)."""
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=FIGURE_DPI, bbox_inches="tight"))
    finally:
        if getattr(fig.canvas, "manager", None) is not None:
            import matplotlib.pyplot as plt

            plt.close(fig)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on the first one as its own
    handler would: a few quick steps that belong together (removing the old report's
    files) are done all or not at all. Main thread only (where Python runs handlers);
    elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    before = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        if held:
            handler = before[signal.Signals(held[0])]
            if callable(handler):
                handler(held[0], None)
            elif handler != signal.SIG_IGN:  # the default action: end the process
                signal.raise_signal(held[0])
