"""Shared fixtures: the real configs, composed with Hydra's compose API and shrunk."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from attnlab.engine.config import ExperimentConfig, from_hydra
from attnlab.hydra_setup import register

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
register()

# The CLI tests' shrink, as a user would write it: conf/debug/tiny.yaml (600 samples, 100
# probe samples, 1 epoch, seeds [0, 1]); values given after it win.
DEBUG_TINY = "+debug=tiny"
# make_config's: small enough to train in a second or two, big enough for the binary case
# to converge.
TINY = ["data.samples=2000", "data.probe_samples=300", "trainer.epochs=4", "seeds=[0,1]"]


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def make_config() -> Callable[..., ExperimentConfig]:
    """The real config with the TINY shrink plus the test's overrides, as dataclasses."""

    def make(*overrides: str, tiny: bool = True) -> ExperimentConfig:
        return from_hydra(compose_config([*(TINY if tiny else []), *overrides]))

    return make


def run_cli(
    args: list[str], cwd: Path, timeout: float = 600, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m attnlab ARGS` in a subprocess, from cwd (not the checkout); env adds variables."""
    return subprocess.run(
        [sys.executable, "-m", "attnlab", *args],
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shown(proc: subprocess.CompletedProcess[str]) -> str:
    """What an assertion on a CLI run shows: stderr's tail and stdout's cell lines (each
    FAILED cell's reason is there, and a CI log keeps nothing else)."""
    cells = [line for line in proc.stdout.splitlines() if "FAILED" in line or "failed" in line]
    return f"{proc.stderr[-3000:]}\n--- stdout, failures ---\n" + "\n".join(cells[-20:])


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The CLI's `attnlab: ...` lines: no traceback or raw warning, and the last one names
    every word."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "UserWarning" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("attnlab:")]
    assert lines, proc.stderr[-2000:]
    for word in words:
        assert word in lines[-1], lines[-1]
    return lines[-1]


# No test stays silent for long: while one test (its fixtures included: the cluster tests
# install and start SLURM, module fixtures run whole sweeps) runs longer than this, a line
# says which and for how long, so a slow run is visibly alive (issue 19, item 17).
HEARTBEAT_SECONDS = float(os.environ.get("ATTNLAB_TEST_HEARTBEAT", "50"))


class _Heartbeat:
    def __init__(self, config: pytest.Config) -> None:
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")
        self.capture = config.pluginmanager.get_plugin("capturemanager")
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, nodeid: str) -> None:
        self.stop.clear()
        started = time.monotonic()

        def beat() -> None:
            while not self.stop.wait(HEARTBEAT_SECONDS):
                took = time.monotonic() - started
                # Output is captured while a test runs: let this line through, as pytest's
                # live logging does.
                with self.capture.global_and_fixture_disabled():
                    self.reporter.write_line(f"[still running after {took:.0f} s: {nodeid}]")

        self.thread = threading.Thread(target=beat, daemon=True)
        self.thread.start()

    def end(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    beat = _Heartbeat(item.config)
    if beat.reporter is not None and beat.capture is not None:
        beat.start(item.nodeid)
    try:
        yield
    finally:
        beat.end()


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Each test leaves the process's logging as it found it. An in-process Hydra run
    (Hydra.multirun(), its plugin suites) configures its job logging with a file handler in
    the job's dir; left in place, a later test's log line opens that file in a dir that is
    gone (FileHandler's delayed open raises through the logging call)."""
    import logging

    manager = logging.Logger.manager
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
        for name, lg in [("", logging.root), *manager.loggerDict.items()]
        if isinstance(lg, logging.Logger)
    }
    yield
    for name, lg in [("", logging.root), *list(manager.loggerDict.items())]:
        if not isinstance(lg, logging.Logger):
            continue
        handlers, level, propagate, disabled = saved.get(name, ([], logging.NOTSET, True, False))
        for handler in lg.handlers:
            if handler not in handlers:
                handler.close()
        lg.handlers[:] = handlers
        lg.level, lg.propagate, lg.disabled = level, propagate, disabled
