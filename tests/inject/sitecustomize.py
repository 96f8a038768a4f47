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


# ATTNLAB_TEST_KILL=sweep|worker|sibling with ATTNLAB_TEST_KILL_DIR=<sweep dir>: in a launcher's
# worker (a process other than the sweep's, whose pid .sweep.json holds), when it starts
# writing a cell's attention.csv (the cell trained, its files not yet written), SIGKILL the
# sweep, this worker (as the OOM killer would), or the sweep's other joblib workers. Once
# per sweep dir: the worker's pid is added to <sweep dir>.pids first.
# ATTNLAB_TEST_KILL_CLASSES=<n>: only in a cell with data.classes=n (its dir name says so).
# ATTNLAB_TEST_KILL_LINGER=<s>: the worker sleeps that long after the kill (a job with more
# cells to write).
_kill = os.environ.get("ATTNLAB_TEST_KILL")
_mkstemp = None


def _sweep_pid(sweep_dir):
    import json

    try:
        with open(os.path.join(sweep_dir, ".sweep.json")) as f:
            return int(json.load(f)["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _siblings(parent):
    """The other joblib (loky) workers of the sweep."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"popen_loky_posix" in cmdline:
            found.append(int(entry))
    return found


def _mkstemp_and_kill(*args, **kwargs):
    prefix = kwargs.get("prefix") or ""
    where = str(kwargs.get("dir") or "")
    classes = os.environ.get("ATTNLAB_TEST_KILL_CLASSES")
    sweep_dir = os.environ["ATTNLAB_TEST_KILL_DIR"]
    sweep_pid = _sweep_pid(sweep_dir)
    if (
        not _fired
        and "attention.csv" in prefix
        and not os.path.exists(sweep_dir + ".pids")
        and (classes is None or f"data.classes={classes}" in where)
        and sweep_pid not in (None, os.getpid())
    ):
        _fired.append(where)
        with open(sweep_dir + ".pids", "a") as f:
            f.write(f"{os.getpid()}\n")
        if _kill == "sibling":
            for pid in _siblings(sweep_pid):
                os.kill(pid, 9)
        else:
            os.kill(sweep_pid if _kill == "sweep" else os.getpid(), 9)
        # A worker with more work to do: it is still running a while after the kill.
        import time

        time.sleep(float(os.environ.get("ATTNLAB_TEST_KILL_LINGER", "0")))
    return _mkstemp(*args, **kwargs)


if _kill:
    import tempfile

    _mkstemp = tempfile.mkstemp
    tempfile.mkstemp = _mkstemp_and_kill


# ATTNLAB_TEST_SEED_FILE=<seed>/<file name>: once, when the process starts writing that file
# of a seed record (<cell>/seeds/<seed>/<file name>, attnlab.runs.cell.write_seed_outputs),
# send ATTNLAB_TEST_SIGNAL to itself (the default launcher runs jobs in the sweep's own
# process), or with ATTNLAB_TEST_SEED_FILL=<file> fill the disk by writing that file until
# the disk is full.
_seed_file = os.environ.get("ATTNLAB_TEST_SEED_FILE")


def _seed_write_and_fault(*args, **kwargs):
    seed, _, name = _seed_file.partition("/")
    where = str(kwargs.get("dir") or "")
    if (
        not _fired
        and (kwargs.get("prefix") or "").startswith(f".~attnlab.{name}.")
        and where.endswith(os.path.join("seeds", seed))
    ):
        _fired.append(where)
        filler = os.environ.get("ATTNLAB_TEST_SEED_FILL")
        if filler:
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
        else:
            os.kill(os.getpid(), int(os.environ["ATTNLAB_TEST_SIGNAL"]))
    return _seed_mkstemp(*args, **kwargs)


if _seed_file:
    import tempfile

    _seed_mkstemp = tempfile.mkstemp
    tempfile.mkstemp = _seed_write_and_fault
