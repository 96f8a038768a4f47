"""Fault injection for the fault tests, loaded through PYTHONPATH by the command under test.

ATTNLAB_TEST_SIGNAL (a signal number) is sent to the process, once, at a moment CI once hit
by chance, made certain:
- ATTNLAB_TEST_SIGNAL_SWEEP=<sweep dir>: from inside an open() of one of attnlab's config
  files, once a cell of the sweep has finished. Hydra's pkg:// config reader calls that
  open() inside `try: f = res.open() ... finally: f.close()`, so the signal's exception is
  replaced by an UnboundLocalError there.
- ATTNLAB_TEST_SIGNAL_UNLINK=<file name>: right after a file of that name is removed (the
  report rebuild removing the old report.csv, before report.md).
"""

import glob
import os
import pathlib

_sweep = os.environ.get("ATTNLAB_TEST_SIGNAL_SWEEP")
_open = pathlib.Path.open
_fired: list[str] = []


def _open_and_signal(self, *args, **kwargs):
    if (
        not _fired
        and self.suffix == ".yaml"
        and "attnlab" in str(self)
        and glob.glob(os.path.join(_sweep, "*", "metrics.json"))
    ):
        _fired.append(str(self))
        # The handler runs at the next bytecode: inside this call, inside Hydra's try.
        os.kill(os.getpid(), int(os.environ["ATTNLAB_TEST_SIGNAL"]))
    return _open(self, *args, **kwargs)


_unlinked = os.environ.get("ATTNLAB_TEST_SIGNAL_UNLINK")
_unlink = pathlib.Path.unlink


def _unlink_and_signal(self, *args, **kwargs):
    _unlink(self, *args, **kwargs)
    if not _fired and self.name == _unlinked:
        _fired.append(str(self))
        os.kill(os.getpid(), int(os.environ["ATTNLAB_TEST_SIGNAL"]))


if _sweep:
    pathlib.Path.open = _open_and_signal
if _unlinked:
    pathlib.Path.unlink = _unlink_and_signal


# ATTNLAB_TEST_NO_LINK=1: the filesystem refuses hard links (link() fails with EPERM, as on
# vfat or some network mounts).
def _no_link(*args, **kwargs):
    import errno

    raise PermissionError(errno.EPERM, "Operation not permitted")


if os.environ.get("ATTNLAB_TEST_NO_LINK"):
    os.link = _no_link
