"""Two shards on two threads of one process (as attnlab trains them) against two processes.

attnlab trains a cell's replicas as shards, one single-threaded TensorFlow graph each, side
by side on threads of one process (attnlab.engine.train.fit). This script measures what that
costs against the ideal: each shard is the 20-class cell's model (graph + fused Adam, the
epoch function attnlab trains with) on R replicas, and for each R it prints the median
milliseconds per step of

- one shard alone in this process;
- two shards side by side on two threads of this process, as fit runs them (the epochs
  alternate with the alone ones, so drift in load hits both alike);
- two processes training one shard each, started together (each its own TensorFlow with
  the same thread settings; the ideal on two cores: no shared executor, no shared pool).

and the speedup of two shards over one (2 x alone / side by side): 2.0 would be perfect.

Run: .venv/bin/python benchmarks/shard_threads.py [--replicas 16 64] [--epochs 8]  (~1 min)
"""

from __future__ import annotations

import argparse
import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from attnlab.engine.config import DataConfig, ModelConfig, TrainerConfig
from attnlab.engine.data import make_replica_data
from attnlab.engine.models import build_model, logits_model
from attnlab.engine.train import FusedAdam, make_epoch_fn, sample_orders

DATA, MODEL, TRAINER = DataConfig(classes=20), ModelConfig(), TrainerConfig()
STEPS = -(-int(DATA.samples * (1 - TRAINER.validation_split)) // TRAINER.batch_size)


def set_threads() -> None:
    """attnlab's settings for two cores (attnlab.engine.train.configure_tensorflow)."""
    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)


def shard(seeds: list[int], epochs: int) -> tuple[Any, list[np.ndarray]]:
    """One shard's traced epoch function, run once (tracing and graph optimisation done),
    and its sample orders for the timed epochs."""
    replicas = len(seeds)
    data = make_replica_data([DATA] * replicas, seeds, TRAINER.validation_split)
    model = build_model(
        MODEL,
        DATA,
        seeds,
        classes=[DATA.classes] * replicas,
        attention=[MODEL.attention] * replicas,
    )
    x, y = tf.constant(data.x_train), tf.constant(data.y_train)
    adam = FusedAdam(model.trainable_variables, TRAINER.learning_rate)
    fn = make_epoch_fn(logits_model(model), adam.apply, x, y, TRAINER.batch_size)
    orders = list(itertools.islice(sample_orders(seeds, int(y.shape[0])), epochs + 1))
    fn(tf.constant(orders[0])).numpy()
    return fn, orders[1:]


def ms_per_step(run: Any) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000 / STEPS


def in_process(replicas: int, epochs: int) -> tuple[float, float]:
    """(alone, side by side on two threads): median ms a step of one shard."""
    shards = [shard(list(range(i * replicas, (i + 1) * replicas)), epochs) for i in range(2)]

    def epoch(i: int, e: int) -> None:
        fn, orders = shards[i]
        fn(tf.constant(orders[e])).numpy()

    def both(e: int) -> None:
        threads = [threading.Thread(target=epoch, args=(i, e)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    alone, side_by_side = [], []
    for e in range(epochs):
        alone.append(ms_per_step(lambda e=e: epoch(0, e)))
        side_by_side.append(ms_per_step(lambda e=e: both(e)))
    return statistics.median(alone), statistics.median(side_by_side)


def child(replicas: int, epochs: int, start_at: float) -> None:
    """One shard in this process, timed from start_at (time.time()); prints its median."""
    set_threads()
    fn, orders = shard(list(range(replicas)), epochs)
    time.sleep(max(0.0, start_at - time.time()))
    times = [ms_per_step(lambda o=o: fn(tf.constant(o)).numpy()) for o in orders]
    print(statistics.median(times))


def two_processes(replicas: int, epochs: int) -> float:
    """Two children started together; the mean of their median ms a step."""
    start_at = time.time() + 15  # after both have imported TensorFlow and traced
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(replicas)]
    cmd += ["--epochs", str(epochs), "--start-at", str(start_at)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("shard_threads: a child failed")
    return statistics.mean(float(out.strip().splitlines()[-1]) for out in outs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs, args.start_at)
        return
    set_threads()
    print(
        f"20 classes, {STEPS} steps an epoch, median of {args.epochs} epochs; ms a step of a shard"
    )
    print(f"load {os.getloadavg()[0]:.1f} at start")
    header = ("R/shard", "alone", "2 threads", "speedup", "2 procs", "speedup")
    print("{:>7} | {:>6} | {:>9} {:>7} | {:>7} {:>7}".format(*header))
    for replicas in args.replicas:
        alone, threads = in_process(replicas, args.epochs)
        procs = two_processes(replicas, args.epochs)
        print(
            f"{replicas:>7} | {alone:6.3f} | {threads:9.3f} {2 * alone / threads:6.2f}x | "
            f"{procs:7.3f} {2 * alone / procs:6.2f}x",
            flush=True,
        )
    print(
        f"load {os.getloadavg()[0]:.1f} at end (speedup: 2 x alone / side by side; 2.0 is perfect)"
    )


if __name__ == "__main__":
    main()
