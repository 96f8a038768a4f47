"""The test run's heartbeat (tests/conftest.py): a test running long prints a line now and
then, so the test command is never silent for a minute (issue 19, item 17)."""

from __future__ import annotations

import contextlib
import time

from . import conftest


class Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        self.lines.append(line)


class Capture:
    def global_and_fixture_disabled(self):
        return contextlib.nullcontext()


class Plugins:
    def __init__(self) -> None:
        self.plugins = {"terminalreporter": Reporter(), "capturemanager": Capture()}

    def get_plugin(self, name):
        return self.plugins[name]


class Config:
    pluginmanager = Plugins()


def test_a_long_test_prints_a_line_each_period_until_it_ends(monkeypatch):
    monkeypatch.setattr(conftest, "HEARTBEAT_SECONDS", 0.05)
    beat = conftest._Heartbeat(Config())  # type: ignore[arg-type]
    beat.start("tests/test_x.py::test_long")
    time.sleep(0.18)
    beat.end()
    lines = list(beat.reporter.lines)
    assert 2 <= len(lines) <= 4, lines
    assert all(line.startswith("[still running after ") for line in lines)
    assert lines[0].endswith(" s: tests/test_x.py::test_long]")
    time.sleep(0.1)
    assert beat.reporter.lines == lines  # silent once the test ended
