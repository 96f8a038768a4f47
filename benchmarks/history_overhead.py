"""What recording the learning curves costs: `fit` with and without it, side by side.

With recording (what attnlab runs), every shard measures val_accuracy and attn_key_weight
on its validation split after each epoch (one batched forward pass); without it
(`fit(..., record=False)`, for this script only) it trains alone. The cell is the
20-class one at its defaults (32 features, 10000 samples, 20 epochs, batch 64) with 32
seeds, trained as attnlab trains it (shards side by side on this process's cores).

The two ways alternate in one process, and which goes first swaps every repeat, so the
drift of a shared machine hits both alike. Each fit is timed whole (its trace included,
as a run's train_seconds); an epoch is timed from one on_epoch call of a shard to its
next (steady state, tracing left out). The script prints the medians and their ratio.

Run: .venv/bin/python benchmarks/history_overhead.py [--repeats 5] [--seeds 32]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics
import threading
import time
from collections import defaultdict

import keras
import numpy as np

from attnlab.config import DataConfig, ModelConfig, TrainerConfig
from attnlab.data import ReplicaData, make_replica_data
from attnlab.models import ShardedModel, build_model
from attnlab.train import configure_tensorflow, fit, shard_slices

DATA = DataConfig(classes=20)
TRAINER = TrainerConfig()


def timed_fit(
    data: ReplicaData, seeds: list[int], cores: int, record: bool
) -> tuple[float, list[float]]:
    """Seconds of one fit on a fresh model, and the seconds of each shard's epochs after its
    first."""
    keras.backend.clear_session()
    parts = shard_slices(len(seeds), cores)
    model = ShardedModel([build_model(ModelConfig(), DATA, seeds[p]) for p in parts])
    stamps: dict[int, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def on_epoch(replicas: int) -> None:
        with lock:
            stamps[threading.get_ident()].append(time.perf_counter())

    classes = np.full(len(seeds), DATA.classes)
    keys = np.full(len(seeds), DATA.attention_column)
    start = time.perf_counter()
    fit(model, data, seeds, TRAINER, classes, keys, on_epoch, record=record)
    seconds = time.perf_counter() - start
    epochs = [float(t) for times in stamps.values() for t in np.diff(times)]
    return seconds, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=32)
    args = parser.parse_args()

    cores = configure_tensorflow(0)
    seeds = list(range(args.seeds))
    data = make_replica_data(DATA, seeds, TRAINER.validation_split)
    timed_fit(data, seeds, cores, record=True)  # warm-up: imports, first trace, allocator
    fits: dict[bool, list[float]] = {True: [], False: []}
    epochs: dict[bool, list[float]] = {True: [], False: []}
    for repeat in range(args.repeats):
        for record in (True, False) if repeat % 2 == 0 else (False, True):
            seconds, epoch_seconds = timed_fit(data, seeds, cores, record)
            fits[record].append(seconds)
            epochs[record] += epoch_seconds
            print(
                f"repeat {repeat + 1}: {'with' if record else 'without'} recording {seconds:.2f} s"
            )

    shards = len(shard_slices(len(seeds), cores))
    print(
        f"\n{DATA.classes} classes, {args.seeds} seeds in {shards} shards on {cores} cores, "
        f"{TRAINER.epochs} epochs; medians of {args.repeats} fits each"
    )
    print(f"{'':22s} {'fit (s)':>8s} {'epoch (ms)':>11s}")
    for record in (False, True):
        name = "with recording" if record else "without recording"
        fit_s, epoch_ms = statistics.median(fits[record]), statistics.median(epochs[record]) * 1000
        print(f"{name:22s} {fit_s:8.2f} {epoch_ms:11.1f}")
    fit_ratio = statistics.median(fits[True]) / statistics.median(fits[False])
    epoch_ratio = statistics.median(epochs[True]) / statistics.median(epochs[False])
    print(f"{'ratio':22s} {fit_ratio:7.3f}x {epoch_ratio:10.3f}x")


if __name__ == "__main__":
    main()
