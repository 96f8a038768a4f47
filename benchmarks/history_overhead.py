"""What recording the learning curves costs: `fit` with and without it, side by side.

With recording (what attnlab runs), every shard measures val_accuracy and attn_key_weight
on its validation split after each epoch (one batched forward pass); without it
(`fit(..., record=False)`, for this script only) it trains alone. The cell is the
20-class one at its defaults (32 features, 10000 samples, 20 epochs, batch 64) with 32
seeds, trained as attnlab trains it (shards side by side on this process's cores).

Two measures, both side by side in one process:

- whole fits, the two ways alternating (which goes first swaps every repeat, so the drift
  of a shared machine hits both alike). A fit is timed whole (its traces included, as a
  run's train_seconds), by the CPU time this process spent in it (less sensitive to
  other work on the machine than wall time), and by its median epoch, timed from one
  on_epoch call of a shard to its next (steady state). Printed: the medians of each way
  and their ratio, and the median of the ratios of adjacent pairs (the steadier figure
  where other work shares the cores).
- within one shard of the same model (16 replicas, one thread), an epoch's training call
  and its recording call alternating: the recording's share of an epoch, the
  overhead without any noise from threads or other fits.

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
import tensorflow as tf

from attnlab.engine.config import DataConfig, ModelConfig, TrainerConfig
from attnlab.engine.data import ReplicaData, make_replica_data
from attnlab.engine.models import ShardedModel, build_model, logits_model
from attnlab.engine.train import (
    FusedAdam,
    configure_tensorflow,
    fit,
    make_epoch_fn,
    make_eval_fn,
    sample_orders,
    shard_slices,
)

DATA = DataConfig(classes=20)
TRAINER = TrainerConfig()


def timed_fit(
    data: ReplicaData, seeds: list[int], cores: int, record: bool
) -> tuple[float, float, list[float]]:
    """Seconds of one fit on a fresh model, the CPU seconds of this process in it, and the
    seconds of each shard's epochs after its first."""
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
    start, cpu = time.perf_counter(), time.process_time()
    fit(model, data, seeds, TRAINER, classes, keys, on_epoch, record=record)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    epochs = [float(t) for times in stamps.values() for t in np.diff(times)]
    return seconds, cpu, epochs


def recording_share(data: ReplicaData, replicas: int, epochs: int) -> tuple[float, list[float]]:
    """In one shard: seconds to build and trace the recording, and per epoch the recording
    call's seconds over the training call's."""
    keras.backend.clear_session()
    seeds = list(range(replicas))
    model = build_model(ModelConfig(), DATA, seeds)
    x, y = tf.constant(data.x_train[:, :replicas]), tf.constant(data.y_train[:, :replicas])
    adam = FusedAdam(model.trainable_variables, TRAINER.learning_rate)
    train = make_epoch_fn(logits_model(model), adam.apply, x, y, TRAINER.batch_size)
    keys = np.full(replicas, DATA.attention_column)
    start = time.perf_counter()
    evaluate = make_eval_fn(model, data.x_val[:, :replicas], data.y_val[:, :replicas], keys)
    [t.numpy() for t in evaluate()]
    setup = time.perf_counter() - start
    orders = sample_orders(seeds, len(data.y_train))
    shares = []
    for epoch in range(epochs + 1):  # the first (tracing) left out
        start = time.perf_counter()
        train(tf.constant(next(orders))).numpy()
        middle = time.perf_counter()
        [t.numpy() for t in evaluate()]
        if epoch:
            shares.append((time.perf_counter() - middle) / (middle - start))
    return setup, shares


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
    cpus: dict[bool, list[float]] = {True: [], False: []}
    epochs: dict[bool, list[float]] = {True: [], False: []}  # each fit's median epoch
    for repeat in range(args.repeats):
        for record in (True, False) if repeat % 2 == 0 else (False, True):
            seconds, cpu, epoch_seconds = timed_fit(data, seeds, cores, record)
            fits[record].append(seconds)
            cpus[record].append(cpu)
            epochs[record].append(statistics.median(epoch_seconds))
            way = "with" if record else "without"
            print(f"repeat {repeat + 1}: {way} recording {seconds:.2f} s, CPU {cpu:.2f} s")

    shards = len(shard_slices(len(seeds), cores))
    print(
        f"\n{DATA.classes} classes, {args.seeds} seeds in {shards} shards on {cores} cores, "
        f"{TRAINER.epochs} epochs; medians of {args.repeats} fits each"
    )
    print(f"{'':32s} {'fit (s)':>8s} {'CPU (s)':>8s} {'epoch (ms)':>11s}")
    for record in (False, True):
        name = "with recording" if record else "without recording"
        fit_s, cpu_s = statistics.median(fits[record]), statistics.median(cpus[record])
        epoch_ms = statistics.median(epochs[record]) * 1000
        print(f"{name:32s} {fit_s:8.2f} {cpu_s:8.2f} {epoch_ms:11.1f}")
    for name, way in (("ratio of the medians", ratio), ("median ratio of adjacent pairs", paired)):
        print(f"{name:32s} {way(fits):7.3f}x {way(cpus):7.3f}x {way(epochs):10.3f}x")
    replicas = min(16, args.seeds)
    setup, shares = recording_share(data, replicas, TRAINER.epochs)
    print(
        f"one shard of {replicas} replicas: recording takes {statistics.median(shares):.1%} "
        f"of an epoch (median of {len(shares)}), plus {setup:.2f} s to build and trace once"
    )


def ratio(times: dict[bool, list[float]]) -> float:
    return statistics.median(times[True]) / statistics.median(times[False])


def paired(times: dict[bool, list[float]]) -> float:
    """Median over repeats of with / without, each pair measured one right after the other."""
    return statistics.median(a / b for a, b in zip(times[True], times[False], strict=True))


if __name__ == "__main__":
    main()
