"""The console degrades, never crashes: whatever the locale, and when stdout is closed.

A non-UTF-8 locale (LC_ALL=C with UTF-8 mode off) cannot encode every character a line
may hold (an en dash, a value's own text): such characters are escaped. A stdout closed by
its reader (`attnlab ... | head`) ends the output quietly, as a Unix tool's, while the run
goes on and writes its files. Files are always written as UTF-8 (attnlab.runs.files).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys


def make_console_safe() -> None:
    """Escape what the console cannot encode; drop output to a closed stdout quietly."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # not a text stream
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    logging.raiseExceptions = False  # a handler that cannot write says nothing
    atexit.register(_flush_or_drop)


def _flush_or_drop() -> None:
    """Flush stdout; if its reader is gone, point it at /dev/null so the interpreter's own
    last flush has nothing to complain about."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


def working_dir_error() -> str:
    """The one-line error for a working directory that is gone (removed while a shell was
    in it), or "": Hydra resolves paths against it and would fail naming nothing."""
    try:
        os.getcwd()
    except OSError as err:
        return (
            f"the working directory cannot be read ({err.strerror}): it was removed or "
            "moved; cd to an existing directory and run the command again"
        )
    return ""
