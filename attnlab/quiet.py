"""A quiet start: TensorFlow's start-up chatter kept off the console, real errors kept on it.

TensorFlow 2.21 logs through Abseil, and Abseil writes every message logged before
`absl::InitializeLog()` to stderr whatever its threshold (abseil-cpp#1718; TensorFlow never
calls it from Python), so `TF_CPP_MIN_LOG_LEVEL` does not hide them: importing TensorFlow
prints 6 lines (the "before absl::InitializeLog()" notice, oneDNN's note and the missing
CUDA driver, once per bundled library), and the first device probe a seventh (`E0000 ...
failed call to cuInit`, on a machine without a GPU). No environment variable reaches them.

So `quiet_start()` makes the first `import tensorflow` (whoever triggers it: the CLI, the
Python API, Keras) run with the process's stderr (file descriptor 2, where C++ writes)
redirected to a temporary file, probes the devices inside that window, then restores stderr
and replays every line that is not one of the known start-up notices. Anything else written
meanwhile (a Python warning, a real C++ error) still reaches the console, once the window
closes. This module never imports TensorFlow itself: `import attnlab` stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

# The start-up notices of a normal CPU run, as TensorFlow 2.21 prints them (one regex per
# message; matched anywhere in the line).
STARTUP_NOISE = (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"\] oneDNN custom operations are on\.",
    r"\] Could not find cuda drivers on your machine, GPU will not be used\.",
    r"\] failed call to cuInit: ",
    r"\] Unable to register cu(FFT|DNN|BLAS) factory: ",
    r"\] This TensorFlow binary is optimized to use available CPU instructions",
    r"^To enable the following instructions: .* rebuild TensorFlow",
    r"\] TF-TRT Warning: Could not find TensorRT",
)
_NOISE = re.compile("|".join(f"(?:{p})" for p in STARTUP_NOISE))

# C++ INFO and WARNING lines logged after Abseil's start-up; errors stay visible.
ENV_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def quiet_start() -> None:
    """Set TensorFlow's log level (unless the user set it) and filter its start-up lines.

    Call it before anything imports TensorFlow; calling it again, or after TensorFlow is
    loaded, is harmless (then only the environment defaults apply).
    """
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImport())


def is_noise(line: str) -> bool:
    """Whether a stderr line is one of TensorFlow's start-up notices (STARTUP_NOISE)."""
    return _NOISE.search(line) is not None


def keep_lines(text: str) -> str:
    """text without its start-up notices (line ends kept)."""
    return "".join(line for line in text.splitlines(keepends=True) if not is_noise(line))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block, then replay what was
    written there to the real stderr, start-up notices left out (also if the block raises)."""
    _flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (a detached process): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            _flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = keep_lines(capture.read().decode(errors="replace"))
            if kept and sys.stderr is not None:
                sys.stderr.write(kept)
                sys.stderr.flush()


def _flush() -> None:
    if sys.stderr is not None:  # None under pythonw
        sys.stderr.flush()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual, and loads it inside filtered_stderr()."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: TensorFlow loads once per process
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)  # resource readers and the like: the real loader's

    def exec_module(self, module: ModuleType) -> None:
        with filtered_stderr():
            self._loader.exec_module(module)
            # The CUDA probe logs its line here rather than at the first op. Listing
            # physical devices leaves thread pools and logical devices unset (train.py
            # still configures them).
            module.config.list_physical_devices()
