"""attnlab's training step three ways, side by side in one process: which one is faster.

The ways differ only in how a step is executed; the epoch loop, the model and the data are
attnlab's own (`attnlab.engine.train.make_epoch_fn` on one shard's model):

- graph + fused Adam: a plain TensorFlow graph, one ResourceApplyAdam op per weight
  (what attnlab trains with);
- graph + Keras Adam: the same graph with Keras' optimizer (~10 small ops per weight);
- XLA + Keras Adam: the step XLA-compiled (`jit_compile=True`), as attnlab trained
  before 2026-11-24.

TensorFlow is single-threaded, as attnlab sets it for one shard. For each model and replica
count the script prints the first epoch's seconds (tracing plus TensorFlow's graph
optimisation or XLA's compile, plus one epoch) and the median milliseconds per step over
the next epochs, the ways alternating epoch by epoch, with each way's ratio to attnlab's.

Run: .venv/bin/python benchmarks/train_step.py [--replicas 5 16 64] [--models dense double]
     (lstm_before and lstm_after are slow: ~15-80 ms a step, XLA compiles for 10-20 s)
"""

from __future__ import annotations

import argparse
import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from attnlab.engine.config import DataConfig, ModelConfig
from attnlab.engine.data import make_replica_data
from attnlab.engine.models import build_model, logits_model
from attnlab.engine.train import FusedAdam, make_epoch_fn, sample_orders

MODELS = {
    "dense": ModelConfig(),
    "double": ModelConfig(variant="double"),
    "lstm_before": ModelConfig(variant="lstm", attention_position="before"),
    "lstm_after": ModelConfig(variant="lstm", attention_position="after"),
}
WAYS = ("graph + fused Adam", "graph + Keras Adam", "XLA + Keras Adam")
DATA = DataConfig(classes=20)  # 10000 samples, 8000 to train on: 125 full steps of 64
BATCH_SIZE, LEARNING_RATE, EPOCHS = 64, 0.001, 4  # the first epoch, then 3 timed ones


def epoch_fn(way: str, model_cfg: ModelConfig, seeds: list[int]) -> tuple[Any, tf.Tensor]:
    """One way's epoch function on a fresh model of len(seeds) replicas; and its orders."""
    keras.backend.clear_session()
    model = logits_model(build_model(model_cfg, DATA, seeds))
    data = make_replica_data(DATA, seeds, 0.2, model_cfg.sequence)
    x, y = tf.constant(data.x_train), tf.constant(data.y_train)
    weights = model.trainable_variables
    if way == "graph + fused Adam":
        apply = FusedAdam(weights, LEARNING_RATE).apply
    else:
        optimizer = keras.optimizers.Adam(LEARNING_RATE)
        optimizer.build(weights)
        apply = lambda grads: optimizer.apply_gradients(zip(grads, weights, strict=True))  # noqa: E731
    fn = make_epoch_fn(model, apply, x, y, BATCH_SIZE, jit_compile=way.startswith("XLA"))
    orders = list(itertools.islice(sample_orders(seeds, int(y.shape[0])), EPOCHS))
    return fn, orders


def timed(fn: Any, order: np.ndarray) -> float:
    start = time.perf_counter()
    fn(tf.constant(order)).numpy()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[5, 16, 64])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["dense", "double"])
    args = parser.parse_args()

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.experimental.enable_op_determinism()
    steps = -(-int(DATA.samples * 0.8) // BATCH_SIZE)
    print(f"20 classes, 32 features, batch {BATCH_SIZE}, {steps} steps an epoch, one thread")
    print(f"{'model':12s} {'R':>4s} {'way':20s} {'first epoch':>12s} {'ms/step':>8s} {'ratio':>6s}")
    for name in args.models:
        for replicas in args.replicas:
            seeds = list(range(replicas))
            fns = {way: epoch_fn(way, MODELS[name], seeds) for way in WAYS}
            first = {way: timed(fn, orders[0]) for way, (fn, orders) in fns.items()}
            per_step: dict[str, list[float]] = {way: [] for way in WAYS}
            for epoch in range(1, EPOCHS):  # alternating, so drift hits every way alike
                for way, (fn, orders) in fns.items():
                    per_step[way].append(timed(fn, orders[epoch]) * 1000 / steps)
            ours = statistics.median(per_step[WAYS[0]])
            for way in WAYS:
                ms = statistics.median(per_step[way])
                print(
                    f"{name:12s} {replicas:4d} {way:20s} {first[way]:10.2f} s "
                    f"{ms:8.3f} {ms / ours:5.2f}x"
                )


if __name__ == "__main__":
    main()
