"""Progress lines from measured throughput (no TensorFlow)."""

import io
import logging
import math
import time

from attnlab.sweep.progress import PackProgress, progress_line, run_summary, time_left


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
    assert progress.eta() == "measuring speed"
    clock.now += 6.0
    for _ in range(2):
        progress.epoch(15)  # two shards of 15 seeds: one epoch in 6 s
    # 30 seed-epochs in 6 s = 5 per s: 570 left -> 114 s; the sweep's 600 more -> 234 s.
    assert progress.line() == (
        "pack 1/2 (30 seeds): epoch 1/20, ~114 s left (rest of the sweep ~234 s at this pace)"
    )
    assert "pack 1/2 (30 seeds): epoch 1/20" in caplog.text  # 6 s since the last line


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
