"""submitit_local's controller processes, kept off the console on Ctrl-C.

Under hydra/launcher=submitit_local each job runs under a controller process
(`python -m submitit.local._local`) that shares the sweep's terminal: Ctrl-C reaches it with
the rest of the process group, and it dies printing a KeyboardInterrupt traceback, one per
job, over the sweep's own one-line account. The controller cannot simply ignore SIGINT: its
workers inherit an ignored signal, and would then train on after the sweep has stopped.

So the controllers' stderr goes through a pipe that this process reads: every line is
passed on to the console except the lines of a traceback that ends in KeyboardInterrupt.
The controllers' workers write to their own log files (.submitit/), untouched.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

LOCAL_LAUNCHER = "hydra_submitit_launcher.submitit_launcher.LocalLauncher"


class InterruptFilter:
    """Lines in, lines out, less the tracebacks that end in KeyboardInterrupt.

    A traceback's lines (its header, indented frames and code, `^^^` markers) are held
    until the line that names its exception: dropped with it if that is KeyboardInterrupt,
    else passed on. Tracebacks of several controllers interleave line by line; each held
    run ends at some controller's KeyboardInterrupt, so none leaks in pieces.
    """

    def __init__(self, write: Callable[[str], object]) -> None:
        self.write = write
        self.held: list[str] = []

    def feed(self, line: str) -> None:
        text = line.rstrip("\n")
        if text.startswith(("Traceback (most recent call last):", " ")) or (
            self.held and not text.strip()
        ):
            self.held.append(line)
            return
        if text.strip() == "KeyboardInterrupt":
            self.held.clear()
            return
        self.flush()
        self.write(line)

    def end(self) -> None:
        """The controller is gone: a traceback it had not finished (no exception line: it
        was killed while printing one, as the sweep's stop kills it) is dropped; any other
        held line is passed on."""
        if self.held and self.held[0].startswith("Traceback (most recent call last):"):
            self.held.clear()
        self.flush()

    def flush(self) -> None:
        for line in self.held:
            self.write(line)
        self.held.clear()


def _forward(read_fd: int, out_fd: int) -> None:
    """Pass the pipe's lines through an InterruptFilter to out_fd until every writer closes."""

    def write(line: str) -> None:
        with contextlib.suppress(OSError):  # the console gone (a closed pipe): drop it
            os.write(out_fd, line.encode("utf-8", "replace"))

    keep = InterruptFilter(write)
    with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            keep.feed(line)
    keep.end()
    os.close(out_fd)


@contextlib.contextmanager
def quiet_controllers(launcher_cfg: Any) -> Iterator[None]:
    """While jobs are launched: under submitit_local, start each controller with its
    stderr through an InterruptFilter; under any other launcher, nothing."""
    target = str(getattr(launcher_cfg, "get", lambda *_: "")("_target_", "") or "")
    if not target.endswith(LOCAL_LAUNCHER):
        yield
        return
    import submitit.local.local as local

    # submitit starts a controller with subprocess.Popen and no stderr argument, from this
    # module-level function (LocalExecutor calls it by name): wrapping it is the one place
    # to choose the controller's stderr. submitit 1.5; without it, nothing changes.
    original = getattr(local, "start_controller", None)
    if original is None:
        yield
        return

    def start_controller(*args: Any, **kwargs: Any) -> Any:
        # A pipe and a filter per controller: two controllers' tracebacks through one pipe
        # interleave mid-line, and no filter can then tell where either ends.
        read_fd, write_fd = os.pipe()
        threading.Thread(
            target=_forward, args=(read_fd, os.dup(2)), name="attnlab-controller", daemon=True
        ).start()
        console = os.dup(2)
        os.dup2(write_fd, 2)  # inherited by the controller as its stderr
        try:
            return original(*args, **kwargs)
        finally:
            os.dup2(console, 2)
            os.close(console)
            os.close(write_fd)  # the controller holds its own copy until it ends

    local.start_controller = start_controller
    try:
        yield
    finally:
        local.start_controller = original
