"""Progress while a job trains: never silent for more than a few seconds.

A pack of 30 seeds trains for 20 s or more before any cell is written, so the job reports
epochs as they go: a bar on a terminal (tqdm), a plain line every few seconds otherwise (CI,
log files). Time left comes from measured throughput, seed-epochs per second, not from job
counts: a pack of 2 cells and one of 12 are not the same amount of work.

The pace is measured from the end of the first epoch, not from the start: the first epoch
also builds the data and the model and traces the training step (in blog_all 4.5 s of a
5 s first epoch whose followers took 0.5 s), so a pace measured over it made the first
estimates 3-6x too long. That start-up cost is measured too (the first epoch's time beyond
one epoch at the pace) and counted once for each pack still to come.

On a terminal the bar and the console's log lines share the screen: while a bar is up, the
console handlers write through tqdm (tqdm.contrib.logging), which lifts the bar, prints the
line on its own and redraws the bar below it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from attnlab.runs import records

log = logging.getLogger(__name__)

LINE_EVERY = 5.0  # seconds between plain progress lines


def seed_epochs(seeds: int, epochs: int) -> int:
    return seeds * epochs


class Estimate(NamedTuple):
    pack: float  # seconds this pack has left
    sweep: float  # seconds the sweep has left after this pack (0 if unknown)


def estimate(
    total: int,
    done: int,
    seconds: float,
    first_epoch: tuple[float, int] | None,
    sweep_left: int = 0,
    packs_after: int = 0,
) -> Estimate | None:
    """Time left from the pace after the first epoch; None until there is one.

    total, done: the pack's seed-epochs; seconds: since the pack started; first_epoch:
    (seconds, done) when its first epoch ended, or None before. sweep_left: seed-epochs of
    the packs after this one, packs_after: how many, each paying the start-up this pack paid
    (its first epoch's time beyond one epoch at the pace).
    """
    if first_epoch is None:
        return None
    at, then = first_epoch
    if done <= then or seconds <= at:
        return None
    rate = (done - then) / (seconds - at)  # seed-epochs per second, start-up excluded
    startup = max(0.0, at - then / rate)
    return Estimate((total - done) / rate, sweep_left / rate + packs_after * startup)


class PackProgress:
    """One pack job's (or a single run's) training progress; `epoch(replicas)` is fit's
    on_epoch callback.

    sweep_left: seed-epochs the sweep has left after this pack (0 if unknown), packs_after:
    the packs that hold them, so the line can also say how long the rest of the sweep will
    take at this pace. Call close() when training ends (a bar then goes, and log lines go
    straight to the console again).
    """

    def __init__(
        self,
        label: str,
        seeds: int,
        epochs: int,
        sweep_left: int = 0,
        stream: Any = None,
        clock: Any = time.monotonic,
        packs_after: int = 0,
    ) -> None:
        self.label, self.seeds, self.epochs = label, seeds, epochs
        self.total = seed_epochs(seeds, epochs)
        self.sweep_left, self.packs_after = sweep_left, packs_after
        self.done = 0
        self.first_epoch: tuple[float, int] | None = None
        self.clock = clock
        self.start = clock()
        self.last_line = self.start
        self.lock = threading.Lock()
        self.redirect = contextlib.ExitStack()
        stream = stream if stream is not None else sys.stderr
        self.bar = None
        if _is_tty(stream):
            self.bar = self.redirect.enter_context(_bar(label, self.total, stream))
            self.redirect.enter_context(_logging_through_tqdm())

    def epoch(self, replicas: int) -> None:
        """A shard of `replicas` seeds finished an epoch (called from its thread)."""
        with self.lock:
            self.done += replicas
            now = self.clock()
            if self.first_epoch is None and self.done >= self.seeds:
                self.first_epoch = (now - self.start, self.done)
            if self.bar is not None:
                self.bar.set_postfix_str(self.eta(), refresh=False)
                self.bar.update(replicas)  # draws the bar, with the postfix just set
                return
            if now - self.last_line >= LINE_EVERY or self.done >= self.total:
                self.last_line = now
                log.info(self.line())

    def line(self) -> str:
        """`pack 1/2 (30 seeds): epoch 7/20, ~4 s left (sweep ~25 s)`."""
        epoch = min(self.epochs, math.ceil(self.done / max(self.seeds, 1)))  # the one under way
        return f"{self.label}: epoch {epoch}/{self.epochs}, {self.eta()}"

    def eta(self) -> str:
        seconds = self.clock() - self.start
        if self.done >= self.total:
            return f"trained in {seconds:.1f} s"
        guess = estimate(
            self.total, self.done, seconds, self.first_epoch, self.sweep_left, self.packs_after
        )
        if guess is None:
            return "measuring speed (the first epoch includes start-up)"
        text = f"~{guess.pack:.0f} s left"
        if self.sweep_left:
            text += f" (rest of the sweep ~{guess.pack + guess.sweep:.0f} s at this pace)"
        return text

    def close(self) -> None:
        self.redirect.close()


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _bar(label: str, total: int, stream: Any) -> Any:
    from tqdm import tqdm

    # tqdm's own rate and time left are left out: measured from the start, they count the
    # first epoch's start-up (eta() does not); its postfix is eta()'s text.
    return tqdm(total=total, desc=label, file=stream, leave=False, bar_format=BAR_FORMAT)


BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} seed-epochs [{elapsed}{postfix}]"


def _logging_through_tqdm() -> Any:
    """The root logger's console handlers (stdout, stderr) write through tqdm.write while
    the block runs, so a log line never lands on the bar's line; file handlers are left."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


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
    cells_now = records.read_cell_dirs(sweep_dir)
    done_names = {r.name for r in cells_now if r.run_id == run_id and run_id}
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
