"""Progress lines from measured throughput (no TensorFlow)."""

import io
import logging
import math
import time

import pytest

from attnlab.sweep.progress import (
    Estimate,
    PackProgress,
    estimate,
    progress_line,
    run_summary,
    time_left,
)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_pack_progress_reports_epochs_and_time_left_from_seed_epochs(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = PackProgress(
        "pack 1/2 (30 seeds)", 30, 20, sweep_left=600, stream=io.StringIO(), clock=clock
    )
    assert progress.eta().startswith("measuring speed")
    clock.now += 6.0
    for _ in range(2):
        progress.epoch(15)  # two shards of 15 seeds: the first epoch, start-up included, 6 s
    assert progress.line().startswith("pack 1/2 (30 seeds): epoch 1/20, measuring speed")
    assert "pack 1/2 (30 seeds): epoch 1/20" in caplog.text  # 6 s since the last line
    clock.now += 1.0
    progress.epoch(30)  # the second epoch: 30 seed-epochs in 1 s
    # 30 a second: 540 left -> 18 s; the sweep's 600 more -> 20 s more (no pack after).
    assert progress.line() == (
        "pack 1/2 (30 seeds): epoch 2/20, ~18 s left (rest of the sweep ~38 s at this pace)"
    )


def test_eta_excludes_the_first_epochs_start_up_and_counts_it_per_pack():
    """blog_all said "rest of the sweep ~1164 s" at its first epoch and took 298 s: the pace
    was measured over the first epoch, which also traces the model. Here a pack of 60 seeds,
    3 epochs, as blog_all +debug=tiny trainer.epochs=3 measured it: the first epoch at 5 s,
    the others 0.5 s each; three packs of 180 seed-epochs after it."""
    assert estimate(180, 60, 5.0, None, 540, 3) is None  # nothing after the first epoch yet
    first = (5.0, 60)
    assert estimate(180, 60, 5.0, first, 540, 3) is None
    guess = estimate(180, 120, 5.5, first, 540, 3)
    # 60 seed-epochs in 0.5 s = 120/s: 60 left -> 0.5 s. Start-up: 5 s - 60/120 = 4.5 s,
    # paid by each of 3 packs to come: 540/120 + 3 * 4.5 = 18 s (the old pace, 60 per 5 s,
    # said 1.5 + 45 s for the same point).
    assert guess == pytest.approx(Estimate(0.5, 18.0))
    assert estimate(180, 120, 5.5, first) == pytest.approx(Estimate(0.5, 0.0))
    # Shards end their epochs one by one: the first epoch ends when every seed has one.
    clock = Clock()
    progress = PackProgress("p", 4, 3, stream=io.StringIO(), clock=clock)
    clock.now += 5.0
    progress.epoch(2)
    assert progress.first_epoch is None
    progress.epoch(2)
    assert progress.first_epoch == (5.0, 4)
    clock.now += 1.0
    progress.epoch(4)
    assert progress.eta() == "~1 s left"
    progress.epoch(4)
    assert progress.eta() == "trained in 6.0 s"


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_log_lines_never_share_the_bars_line_on_a_terminal(monkeypatch):
    """On a terminal the bar is redrawn with "\r" and no newline; a log line written while it
    is up landed after it, on the same line. While a bar is up, console lines go through
    tqdm.write: the bar is cleared first, so every log line starts a line of its own."""
    import sys

    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    console = logging.StreamHandler(terminal)
    console.setFormatter(logging.Formatter("LOG %(message)s"))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [console])
    monkeypatch.setattr(root, "level", logging.INFO)
    clock = Clock()
    progress = PackProgress("pack 1/1 (4 seeds)", 4, 3, stream=terminal, clock=clock)
    for n in range(3):
        clock.now += 1.0
        progress.epoch(4)
        logging.getLogger("attnlab.test").info("cell %d written", n)
    progress.close()
    logging.getLogger("attnlab.test").info("after the bar")
    assert root.handlers == [console]  # the console handler is back once the bar is gone
    text = terminal.getvalue()
    assert "pack 1/1 (4 seeds)" in text  # the bar was drawn
    # A terminal shows what follows the last "\r" of a line (tqdm clears a bar by
    # overwriting it with spaces, then "\r").
    logged = [line for line in text.split("\n") if "LOG " in line]
    assert len(logged) == 4
    for line in logged:  # each log line, as the terminal holds it, starts with LOG
        last = line.split("\r")[-1]
        assert last.lstrip(" ").startswith("LOG "), repr(line)
        assert "seed-epochs" not in last  # no bar text on the log line


def test_plain_lines_are_throttled_off_a_terminal(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = PackProgress("pack", 4, 10, stream=io.StringIO(), clock=clock)
    for _ in range(9):
        clock.now += 1.0
        progress.epoch(4)
    assert caplog.text.count("pack: epoch") == 1  # at 5 s; the next is due at 10 s
    clock.now += 1.0
    progress.epoch(4)  # the last epoch always reports
    assert caplog.text.count("pack: epoch") == 2


def test_time_left_counts_work_not_cells():
    started = time.time() - 10.0
    state = {"started": started, "work": {"small": 10, "big": 90, "other": 100}}
    assert math.isnan(time_left(state, set()))
    # 10 seed-epochs in ~10 s: 190 left at 1 a second.
    assert abs(time_left(state, {"small"}) - 190) < 5


def test_a_cell_without_attention_is_not_reported_as_unfocused(tmp_path):
    """model.attention=none records attn_focused as NaN: no seed can focus, so the lines
    say so instead of "focused 0/2"."""
    none = [{"val_accuracy": 0.5, "attn_focused": math.nan}, {"val_accuracy": 0.7}]
    learned = [
        {"val_accuracy": 0.9, "attn_focused": True},
        {"val_accuracy": 0.7, "attn_focused": False},
    ]
    assert run_summary(none, 1, 1.0).startswith("no attention to focus; val_accuracy 0.600")
    assert run_summary(learned, 1, 1.0).startswith("1/2 seeds focused on column 1;")
    line = progress_line(tmp_path, "model.attention=none", none, "", time.perf_counter())
    assert "val_acc 0.60 ± 0.14, no attention to focus, " in line
    line = progress_line(tmp_path, "x", learned, "", time.perf_counter())
    assert "val_acc 0.80 ± 0.14, focused 1/2 seeds, " in line


@pytest.mark.slow
def test_a_single_run_says_what_it_trains_before_loading_tensorflow(tmp_path):
    """A single run printed nothing for ~12 s (TensorFlow loading, the first epoch), then
    everything at once: now a start line first, then its epochs as they end."""
    from .conftest import DEBUG_TINY, run_cli, shown

    proc = run_cli([DEBUG_TINY, "trainer.epochs=2", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, shown(proc)
    lines = proc.stdout.splitlines()

    def first(text):
        return next(i for i, line in enumerate(lines) if text in line)

    start = first(f"training 2 seed(s) for 2 epoch(s) into {tmp_path / 'run'}")
    epochs = first("run (2 seeds): epoch 2/2, trained in ")
    assert start == 0 and start < epochs < first("seed 0: val_accuracy"), proc.stdout
