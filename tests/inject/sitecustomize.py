"""Fault injection for tests/test_faults.py, loaded through PYTHONPATH by the CLI under test.

Sends a stop signal to the process from inside an open() of one of attnlab's config files,
once a cell of the sweep has finished. Hydra's pkg:// config reader calls that open() inside
`try: f = res.open() ... finally: f.close()`, so the signal's exception is replaced by an
UnboundLocalError there: the race CI once hit by chance, made certain.
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


if _sweep:
    pathlib.Path.open = _open_and_signal
