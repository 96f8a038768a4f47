"""Progress while a job trains: never silent for more than a few seconds.

A pack of 30 seeds trains for 20 s or more before any cell is written, so the job reports
epochs as they go: a bar on a terminal (tqdm), a plain line every few seconds otherwise (CI,
log files). Time left comes from measured throughput, seed-epochs per second, not from job
counts: a pack of 2 cells and one of 12 are not the same amount of work.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

LINE_EVERY = 5.0  # seconds between plain progress lines


def seed_epochs(seeds: int, epochs: int) -> int:
    return seeds * epochs


class PackProgress:
    """One pack job's training progress; `epoch(replicas)` is fit's on_epoch callback.

    sweep_left: seed-epochs the sweep has left after this pack (0 if unknown), so the line
    can also say how long the rest of the sweep will take at this pace.
    """

    def __init__(
        self,
        label: str,
        seeds: int,
        epochs: int,
        sweep_left: int = 0,
        stream: Any = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.label, self.seeds, self.epochs = label, seeds, epochs
        self.total = seed_epochs(seeds, epochs)
        self.sweep_left = sweep_left
        self.done = 0
        self.clock = clock
        self.start = clock()
        self.last_line = self.start
        self.lock = threading.Lock()
        stream = stream if stream is not None else sys.stderr
        self.bar = _bar(label, self.total, stream) if _is_tty(stream) else None

    def epoch(self, replicas: int) -> None:
        """A shard of `replicas` seeds finished an epoch (called from its thread)."""
        with self.lock:
            self.done += replicas
            if self.bar is not None:
                self.bar.update(replicas)
                self.bar.set_postfix_str(self.eta(), refresh=False)
                return
            now = self.clock()
            if now - self.last_line >= LINE_EVERY or self.done >= self.total:
                self.last_line = now
                log.info(self.line())

    def line(self) -> str:
        """`pack 1/2 (30 seeds): epoch 7/20, ~4 s left (sweep ~25 s)`."""
        epoch = min(self.epochs, math.ceil(self.done / max(self.seeds, 1)))  # the one under way
        return f"{self.label}: epoch {epoch}/{self.epochs}, {self.eta()}"

    def eta(self) -> str:
        elapsed = self.clock() - self.start
        if self.done == 0 or elapsed <= 0:
            return "measuring speed"
        rate = self.done / elapsed  # seed-epochs per second
        left = (self.total - self.done) / rate
        text = f"~{left:.0f} s left"
        if self.sweep_left:
            text += f" (rest of the sweep ~{left + self.sweep_left / rate:.0f} s at this pace)"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _bar(label: str, total: int, stream: Any) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="seed-epoch", file=stream, leave=False)
