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
from pathlib import Path
from typing import Any

from attnlab.runs import records

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


# --- the lines a job logs per cell --------------------------------------------------------


NO_FOCUS = "no attention to focus"


def run_summary(runs: list[dict[str, Any]], key: int, seconds: float) -> str:
    """`5/5 seeds focused on column 1; val_accuracy 1.000 ± 0.000 (mean ± sd), 4.1 s`."""
    accs, mean, sd = _accuracy_spread(runs)
    focused = _focused_count(runs)
    diverged = sum(1 for r in runs if r.get("status") == "diverged")
    tail = f", {diverged} diverged" if diverged else ""
    head = NO_FOCUS if focused is None else f"{focused}/{len(runs)} seeds focused on column {key}"
    return (
        f"{head}; val_accuracy {mean:.3f} ± {sd:.3f} (mean ± sd over {len(accs)} seeds)"
        f"{tail}; {seconds:.1f} s"
    )


def _focused_count(runs: list[dict[str, Any]]) -> int | None:
    """Seeds whose attention peaks on the key; None when no seed has attention to test
    (model.attention=none, or every seed diverged), which is not "0 focused"."""
    if not any(isinstance(r.get("attn_focused"), bool) for r in runs):
        return None
    return sum(1 for r in runs if r.get("attn_focused") is True)


def display_name(name: str) -> str:
    """A cell dir's name without its hash, for the console."""
    readable, _, digest = name.rpartition("-")
    return (readable if len(digest) == records.HASH_CHARS else name).replace(",", " ")


def progress_line(
    sweep_dir: Path,
    name: str,
    runs: list[dict[str, Any]],
    error: str,
    start: float,
    cached: bool = False,
    trained: frozenset[str] = frozenset(),
) -> str:
    """`[3/6] data.classes=20 model.attn_layers=1: val_acc 0.71 ± 0.05, focused 4/5 seeds,
    8.1 s, ~40 s left`. trained: cells of this job trained already but not yet written
    (their work counts as done for the time left)."""
    state = records.read_state(sweep_dir)
    run_id, cells = state.get("run_id"), state.get("cells")
    total = len(cells) if isinstance(cells, list) else 0
    done_names = {r.name for r in records.read_cells(sweep_dir) if r.run_id == run_id and run_id}
    seconds = time.perf_counter() - start
    left = time_left(state, done_names | trained)
    head = f"[{len(done_names)}/{total or '?'}] {display_name(name)}:"
    eta = f"~{left:.0f} s left" if math.isfinite(left) else "measuring speed"
    if error:
        return f"{head} FAILED: {error}, {seconds:.1f} s, {eta}"
    _, mean, sd = _accuracy_spread(runs)
    focused = _focused_count(runs)
    focus = NO_FOCUS if focused is None else f"focused {focused}/{len(runs)} seeds"
    tag = " (cached)" if cached else ""
    return f"{head} val_acc {mean:.2f} ± {sd:.2f}, {focus}, {seconds:.1f} s{tag}, {eta}"


def time_left(state: dict[str, Any], done: set[str]) -> float:
    """Seconds the sweep has left at its measured pace: seed-epochs still to train over
    seed-epochs trained per second since it started (cells to train, from .sweep.json)."""
    given = state.get("work")
    work: dict[str, Any] = given if isinstance(given, dict) else {}
    total = sum(v for v in work.values() if isinstance(v, int))
    trained = sum(v for k, v in work.items() if k in done and isinstance(v, int))
    elapsed = time.time() - float(state.get("started", time.time()))
    if trained == 0 or elapsed <= 0:
        return math.nan
    return (total - trained) / (trained / elapsed)


def _accuracy_spread(runs: list[dict[str, Any]]) -> tuple[list[float], float, float]:
    """The runs' finite val_accuracy values, their mean and sd (ddof 1; 0 for one value)."""
    accs = [float(r["val_accuracy"]) for r in runs if _finite(r.get("val_accuracy"))]
    mean = sum(accs) / len(accs) if accs else math.nan
    sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
    return accs, mean, sd


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
