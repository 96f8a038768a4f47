"""Training every seed's replica at once: one TensorFlow graph function per epoch.

One cell of the study is tiny (a few GFLOP), so a Keras `fit` per model spends nearly all
its time in per-step overhead. Here the replicas share each step, and a whole epoch's
batches run inside one `tf.function` call, so the overhead is paid once per epoch.

The loss is the sum of per-replica mean losses, so replica r's gradients, and hence its
Adam moments (elementwise), are exactly its own.

The replicas are split into shards, one per core, each a model of its own trained on its
own thread with a single-threaded TensorFlow: on ops this small TensorFlow's intra-op
thread pool costs more than it gains (20-class cell, one 32-replica model: ~2.1 ms a step
with two intra-op threads, 1.2-1.8 ms with one; two 16-replica shards side by side:
0.8-1.0 ms).

The step is a plain TensorFlow graph, not XLA-compiled: single-threaded, oneDNN's batched
matmuls beat XLA's on these shapes, and there is no XLA compile to wait for (measured by
benchmarks/train_step.py, one 64-replica shard of the 20-class cell: 2.5 ms a step against
4.8 ms, first epoch 0.6 s against 2.1 s; double cells gain as much, lstm cells 1.2-1.3x).

After each epoch a shard measures its replicas on their validation split (accuracy and
attention on the key: the learning curves) in one more graph call, a batched forward pass
that costs 8-9% of an epoch of the 20-class cell (benchmarks/history_overhead.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from attnlab.engine.config import TrainerConfig
from attnlab.engine.data import SHUFFLE_STREAM, ReplicaData, rng_for
from attnlab.engine.models import LOGITS_LAYER, ShardedModel, attention_model, logits_model

log = logging.getLogger(__name__)


def configure_tensorflow(threads: int) -> int:
    """Deterministic ops, and the cores to train on (0: all this process may use); returns
    that count, which the caller hands to train_cells: up to that many shards of replicas
    train side by side, one thread each.

    TensorFlow fixes its thread pools when it first runs an op, so only the first call in a
    process sets them (one intra-op thread: TensorFlow's own state says whether that was
    done); a later job in the same process trains its shards on those pools.
    """
    from attnlab.engine.resources import available_cpus

    tf.config.experimental.enable_op_determinism()
    cores = threads if threads > 0 else available_cpus()
    if tf.config.threading.get_intra_op_parallelism_threads() != 1:  # not set yet
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(max(2, cores))
        except RuntimeError:
            log.warning("TensorFlow already started: its thread pools stay as they are")
    return cores


# Replicas a shard needs to be worth its own thread. A second shard costs its own trace,
# ~0.16 s (measured, 20-class cell: 5 replicas train in 1.6 s as one shard or two; 8 in
# 2.0 s as one, 1.7 s as two; 16 in 2.7 s as one, 2.2 s as two).
SHARD_REPLICAS = 4


def shard_slices(replicas: int, cores: int) -> list[slice]:
    """Contiguous slices of the replica axis, as equal as can be: one per SHARD_REPLICAS
    replicas (rounded; at least one), at most one per core."""
    shards = max(1, min(cores, round(replicas / SHARD_REPLICAS)))
    bounds = np.linspace(0, replicas, shards + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# The learning curves fit records, each (epochs, replicas), in history.csv's column order.
CURVES = ("train_loss", "val_accuracy", "attn_key_weight")


@dataclass
class History:
    """Per-replica outcome of training, and its learning curves: one row per epoch trained
    (cfg.epochs, unless every replica blew up sooner).

    A curve's entries after a replica stopped are NaN: after its shard's early stop, and
    for a diverged replica after the epoch it blew up (there its train_loss is the loss that
    blew up; its val_accuracy and attn_key_weight are NaN, as its metrics are).
    """

    epochs_run: np.ndarray  # (replicas,) epochs until the loss blew up (see blown_up), or all
    diverged: np.ndarray  # (replicas,) bool
    train_loss: np.ndarray  # (epochs, replicas) the epoch's mean training loss
    val_accuracy: np.ndarray  # (epochs, replicas) on the validation split, after the epoch
    attn_key_weight: np.ndarray  # (epochs, replicas) mean attention on the key, validation

    def last(self, curve: str) -> np.ndarray:
        """(replicas,) each replica's value of the curve in its last epoch (epochs_run)."""
        values = getattr(self, curve)
        return values[self.epochs_run - 1, np.arange(values.shape[1])]


def sample_orders(seeds: list[int], n: int) -> Iterator[np.ndarray]:
    """Each replica's sample order, epoch after epoch: (n, replicas) int32 each.

    One generator per replica (its seed's shuffle stream), advanced one permutation an
    epoch: the orders all epochs drawn up front would have, without holding them all
    (trainer.epochs=1000000 at 10000 samples and 32 seeds would need 11.9 GiB).
    """
    rngs = [rng_for(seed, SHUFFLE_STREAM) for seed in seeds]
    while True:
        order = np.empty((n, len(rngs)), np.int32)
        for r, rng in enumerate(rngs):
            order[:, r] = rng.permutation(n)
        yield order


def fit(
    model: ShardedModel,
    data: ReplicaData,
    seeds: list[int],
    cfg: TrainerConfig,
    classes: np.ndarray,
    keys: np.ndarray,
    on_epoch: Callable[[int], None] | None = None,
    record: bool = True,
) -> History:
    """Train all replicas for cfg.epochs with Adam, each shard on its own thread; a shard
    stops early only if every replica in it diverged.

    classes: (replicas,) each replica's class count, for its divergence threshold.
    keys: (replicas,) each replica's key column (or time step), for attn_key_weight.
    on_epoch: called after every epoch of a shard, from that shard's thread (so possibly
        from several threads at once), with the number of replicas that just finished it.
    record: False skips measuring val_accuracy and attn_key_weight (left NaN), for
        benchmarks/history_overhead.py only: metrics.json's val_accuracy comes from them.
    """
    # Optimizers, constants and traces are made here, on this thread (Keras' state is not
    # built for concurrent model building); the threads only run the epochs.
    runs = [
        _prepare(shard, data, part, seeds[part], cfg, classes[part], keys[part], record)
        for shard, part in zip(model.models, model.slices, strict=True)
    ]
    stop = threading.Event()  # set: every shard stops at its next epoch
    pool = ThreadPoolExecutor(len(runs))
    try:
        futures = [pool.submit(run, stop, on_epoch) for run in runs]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)  # a failed shard, or all done
        for future in done:
            future.result()  # raises a failed shard's error before waiting on the others
        curves = _join([f.result() for f in futures])
    except BaseException:  # a shard's error, or Ctrl-C: do not train the others on
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True)
    return _history(curves, classes, _finite_weights(model))


def _history(curves: dict[str, np.ndarray], classes: np.ndarray, finite: np.ndarray) -> History:
    """The outcome from the shards' curves; a diverged replica's curves end where it blew up.

    finite: (replicas,) bool, every weight of the replica is finite after training.
    """
    bad = blown_up(curves["train_loss"], classes)
    epochs = len(bad)
    diverged = bad.any(axis=0) | ~finite
    epochs_run = np.where(bad.any(axis=0), bad.argmax(axis=0) + 1, epochs)
    after = np.arange(epochs)[:, None] >= epochs_run[None, :]  # (epochs, replicas)
    curves["train_loss"][after & diverged] = np.nan
    at_or_after = after | (np.arange(epochs)[:, None] == epochs_run[None, :] - 1)
    for name in ("val_accuracy", "attn_key_weight"):
        curves[name][at_or_after & diverged] = np.nan
    return History(epochs_run=epochs_run, diverged=diverged, **curves)


def _prepare(
    model: keras.Model,
    data: ReplicaData,
    part: slice,
    seeds: list[int],
    cfg: TrainerConfig,
    classes: np.ndarray,
    keys: np.ndarray,
    record: bool,
) -> Any:
    """One shard's training, ready to run: a function of a stop event and on_epoch
    returning the shard's curves, each (epochs it trained, replicas)."""
    x = tf.constant(data.x_train[:, part])  # (n, replicas, ...)
    y = tf.constant(data.y_train[:, part])  # (n, replicas)
    n, replicas = y.shape
    adam = FusedAdam(model.trainable_variables, cfg.learning_rate)
    epoch_fn = make_epoch_fn(logits_model(model), adam.apply, x, y, cfg.batch_size)
    epoch_fn.get_concrete_function(tf.TensorSpec((n, replicas), tf.int32))  # trace here
    evaluate = None
    if record:
        evaluate = make_eval_fn(model, data.x_val[:, part], data.y_val[:, part], keys)
        evaluate.get_concrete_function()

    def run(stop: threading.Event, on_epoch: Callable[[int], None] | None) -> dict[str, np.ndarray]:
        orders = sample_orders(seeds, n)  # drawn on this thread: numpy's shuffles release the GIL
        # Rows as the epochs come: memory grows with the epochs trained, not configured.
        rows: dict[str, list[np.ndarray]] = {c: [] for c in CURVES}
        bad = np.zeros(replicas, bool)  # blown up in some epoch so far
        for epoch in range(cfg.epochs):
            if stop.is_set():
                break
            loss = epoch_fn(tf.constant(next(orders))).numpy()
            row = dict(zip(CURVES, (loss, *_measure(evaluate, replicas)), strict=True))
            for name, values in row.items():
                rows[name].append(values)
            _log_epoch(row, epoch, cfg)
            if on_epoch is not None:
                on_epoch(replicas)
            bad |= blown_up(loss, classes)
            if bad.all():
                break
        return {name: np.array(values).reshape(-1, replicas) for name, values in rows.items()}

    return run


def _measure(evaluate: Any, replicas: int) -> tuple[np.ndarray, np.ndarray]:
    """(val_accuracy, attn_key_weight) now, each (replicas,); NaN when not recording."""
    if evaluate is None:
        return np.full(replicas, np.nan), np.full(replicas, np.nan)
    correct, key_weight, n = (t.numpy() for t in evaluate())
    return correct / n, key_weight  # divided in float64: exactly correct / n


def _join(shards: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The shards' curves side by side, each padded with NaN to the longest shard's epochs
    (a shard stops early when all its replicas blew up)."""
    epochs = max(len(shard["train_loss"]) for shard in shards)

    def padded(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, epochs - len(a)), (0, 0)), constant_values=np.nan)

    return {c: np.concatenate([padded(shard[c]) for shard in shards], axis=1) for c in CURVES}


def _log_epoch(row: dict[str, np.ndarray], epoch: int, cfg: TrainerConfig) -> None:
    if cfg.verbose:
        log.info(
            "epoch %d/%d: loss %s, val_accuracy %s",
            epoch + 1,
            cfg.epochs,
            np.round(row["train_loss"], 4),
            np.round(row["val_accuracy"], 4),
        )


def blown_up(losses: np.ndarray, classes: int | np.ndarray) -> np.ndarray:
    """(epochs, replicas) bool: the epoch's loss is NaN/inf, or far above a uniform guess.

    classes: the class count, or each replica's (replicas,).

    A uniform guess scores log(classes); a model still ten times above it has not learned
    but blown up (Adam at learning_rate=1000 ends near 1e7 with finite weights, because the
    softmax saturates before anything overflows).
    """
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(losses) | (losses > 10 * np.log(classes))


class FusedAdam:
    """Keras' Adam (its defaults, and its update: epsilon outside the square root), one
    fused TensorFlow op per weight (ResourceApplyAdam).

    Keras' own optimizer adds some ten small ops per weight to every step; fused, the step
    of a 64-replica shard takes 10-20% less (benchmarks/train_step.py: 2.5 ms against
    3.1 ms). Unlike Keras' apply_gradients it takes a gradient for every weight (no None)
    and applies no weight constraints: attnlab's models have neither.
    """

    def __init__(
        self,
        weights: list[Any],
        learning_rate: float,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        self.weights = [w.value for w in weights]  # the tf.Variables behind Keras' variables
        self.m = [tf.Variable(tf.zeros_like(w), trainable=False) for w in self.weights]
        self.v = [tf.Variable(tf.zeros_like(w), trainable=False) for w in self.weights]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.learning_rate = learning_rate
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def apply(self, grads: list[tf.Tensor]) -> None:
        step = tf.cast(self.iterations.assign_add(1), tf.float32)
        beta_1_power, beta_2_power = self.beta_1**step, self.beta_2**step
        for w, m, v, grad in zip(self.weights, self.m, self.v, grads, strict=True):
            tf.raw_ops.ResourceApplyAdam(
                var=w.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=beta_1_power,
                beta2_power=beta_2_power,
                lr=self.learning_rate,
                beta1=self.beta_1,
                beta2=self.beta_2,
                epsilon=self.epsilon,
                grad=grad,
            )


# The largest x (bytes) of a shard whose inputs are gathered a whole epoch at a time: one gather
# an epoch, then a contiguous slice a step, instead of a gather of scattered rows every step
# (~5-15% less CPU a step of a 64-replica shard of the 20-class cell; the same numbers). The
# gathered copy is as big as x, so bigger inputs (long sequences, many features) gather per step.
EPOCH_GATHER_BYTES = 256 * 2**20


def make_epoch_fn(
    model: keras.Model,
    apply: Callable[[list[tf.Tensor]], Any],
    x: tf.Tensor,
    y: tf.Tensor,
    batch_size: int,
    jit_compile: bool = False,
) -> Any:
    """A tf.function running one epoch of minibatch steps; returns the mean loss per replica.

    apply: the optimizer's update from the gradients (FusedAdam.apply). The last, partial
    batch counts, as in Keras' fit. A model built by build_model trains between its edge
    swaps (replica_major_core) on replica-major data: no transposes a step, the same numbers
    bit for bit (docs/performance.md). jit_compile=True XLA-compiles the step, for
    benchmarks/train_step.py (slower here; and a partial last batch compiles it twice).
    """
    n, replicas = (int(d) for d in y.shape)
    weights = model.trainable_variables
    core = replica_major_core(model)
    if core is not None:  # the model between its edge swaps: no transposes in the step
        model = core
        x = swap_batch_replica(x)  # (replicas, n, ...)
        # The int labels are swapped in numpy: an int32 Transpose in TensorFlow makes oneDNN
        # print a one-time error line on a CPU without full AVX-512 (harmless, but on the
        # console of every run); the sample orders below are swapped in numpy for the same reason.
        y = tf.constant(np.ascontiguousarray(np.swapaxes(np.asarray(y), 0, 1)))  # (replicas, n)

    def train_step(xb, yb):  # (batch, replicas, ...), (batch, replicas); replica-major if core
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)  # (batch, replicas, classes)
            per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits)
            if core is not None:  # summed in the same order as (batch, replicas)
                per_sample = tf.transpose(per_sample)
            per_replica = tf.reduce_mean(per_sample, axis=0)  # the batch's mean loss
            loss = tf.reduce_sum(per_replica)
        apply(tape.gradient(loss, weights))
        return per_replica

    if jit_compile:
        train_step = tf.function(train_step, jit_compile=True)

    def gather(rows):  # (batch, replicas) sample indices -> their x and y, each replica's own
        if core is not None:  # rows (replicas, batch): the orders come replica-major
            return tf.gather(x, rows, axis=1, batch_dims=1), tf.gather(
                y, rows, axis=1, batch_dims=1
            )
        idx = tf.stack([rows, tf.broadcast_to(tf.range(replicas), tf.shape(rows))], axis=-1)
        return tf.gather_nd(x, idx), tf.gather_nd(y, idx)

    whole_epoch = x.shape.num_elements() * x.dtype.size <= EPOCH_GATHER_BYTES
    full, rest = divmod(n, batch_size)  # full batches, then a partial one of `rest` samples
    axis = 1 if core is not None else 0  # the sample axis

    def batch_at(xs, ys, order, start, size):
        """The `size` samples from `start` on, a static shape: TensorFlow's graph optimiser
        then folds the shape arithmetic of the step away (~10% of a small shard's step)."""
        if whole_epoch:
            corner = [0] * len(xs.shape)
            corner[axis] = start
            sizes = [*xs.shape]
            sizes[axis] = size
            return tf.slice(xs, corner, sizes), tf.slice(ys, corner[:2], sizes[:2])
        if core is not None:  # order (replicas, n)
            return gather(tf.slice(order, [0, start], [replicas, size]))
        return gather(tf.slice(order, [start, 0], [size, replicas]))

    # No autograph: the loop is written as the tf.while_loop it would make, which saves
    # converting these functions' source at every trace (~0.1 s a shard).
    @tf.function(autograph=False)
    def run_epoch(order):  # (n, replicas): each replica's sample order; (replicas, n) if core
        xs, ys = gather(order) if whole_epoch else (None, None)  # the epoch in batch order

        def body(step, total):
            per_replica = train_step(*batch_at(xs, ys, order, step * batch_size, batch_size))
            return step + 1, total + per_replica * float(batch_size)

        total = tf.zeros([replicas], tf.float32)
        _, total = tf.while_loop(lambda step, _: step < full, body, [tf.constant(0), total])
        if rest:  # the last, partial batch, as Keras' fit trains it
            per_replica = train_step(*batch_at(xs, ys, order, full * batch_size, rest))
            total += per_replica * float(rest)
        return total / n

    return run_epoch if core is None else ReplicaMajorOrders(run_epoch)


class ReplicaMajorOrders:
    """A replica-major epoch function called as any other: with the (n, replicas) sample
    orders, which it swaps in numpy (an int32 Transpose in the graph would print oneDNN's
    one-time error line on CPUs without full AVX-512)."""

    def __init__(self, run_epoch: Any) -> None:
        self.run_epoch = run_epoch

    def __call__(self, order: Any) -> tf.Tensor:
        return self.run_epoch(tf.constant(np.ascontiguousarray(np.asarray(order).T)))

    def get_concrete_function(self, spec: tf.TensorSpec) -> Any:
        swapped = tf.TensorSpec(tuple(reversed(spec.shape)), spec.dtype)
        return self.run_epoch.get_concrete_function(swapped)


def replica_major_core(model: keras.Model) -> keras.Model | None:
    """The model between its edge swaps (attnlab.engine.models.build_model's
    `to_replica_major` and the logits' swap back): (replicas, batch, ...) -> (replicas,
    batch, classes), the same weights; None if the model is not built that way."""
    names = {layer.name for layer in model.layers}
    if not {"to_replica_major", "head", LOGITS_LAYER} <= names:
        return None
    swap_in, head = model.get_layer("to_replica_major"), model.get_layer("head")
    if model.get_layer(LOGITS_LAYER).input is not head.output or swap_in.input is not model.input:
        return None
    return keras.Model(swap_in.output, head.output, name="replica_major")


def swap_batch_replica(t: tf.Tensor) -> tf.Tensor:
    """(a, b, ...) -> (b, a, ...)."""
    return tf.transpose(t, [1, 0, *range(2, len(t.shape))])


def make_eval_fn(
    model: keras.Model, x: np.ndarray, y: np.ndarray, keys: np.ndarray, batch_size: int = 1024
) -> Any:
    """A tf.function measuring every replica on (x, y), in inference mode: each replica's
    correct predictions (replicas,) int32, its mean attention weight on its key over the
    samples (replicas,) float64 (attn_key_weight as attnlab.engine.metrics defines it, over time
    steps for lstm), and n.

    x: (n, replicas, ...); y: (n, replicas); keys: (replicas,). A prediction is the argmax of
    the logits: the argmax of the softmax output, never a masked class (pinned to -1e9).
    """
    out = [model.get_layer(LOGITS_LAYER).output, attention_model(model).output]
    both = keras.Model(model.input, out, name="logits_and_attention")
    x, y = tf.constant(x), tf.constant(y)
    n, replicas = (int(d) for d in y.shape)
    on_key = tf.one_hot(keys, int(both.outputs[1].shape[-1]))  # (replicas, key_axis)

    full, rest = divmod(n, batch_size)  # static batch shapes, as make_epoch_fn's

    def measured(start, size, correct, key_weight):  # the counts after one more batch
        xb = tf.slice(x, [start] + [0] * (len(x.shape) - 1), [size, *x.shape[1:]])
        logits, alpha = both(xb, training=False)
        hits = tf.argmax(logits, axis=-1, output_type=tf.int32) == tf.slice(
            y, [start, 0], [size, replicas]
        )
        correct += tf.reduce_sum(tf.cast(hits, tf.int32), axis=0)
        on = tf.reduce_sum(alpha * on_key, axis=-1)  # (batch, replicas)
        return correct, key_weight + tf.cast(tf.reduce_sum(on, axis=0), tf.float64)

    @tf.function(autograph=False)
    def evaluate():
        def body(i, correct, key_weight):
            return (i + 1, *measured(i * batch_size, batch_size, correct, key_weight))

        counts = (tf.zeros([replicas], tf.int32), tf.zeros([replicas], tf.float64))
        _, *counts = tf.while_loop(lambda i, *_: i < full, body, [tf.constant(0), *counts])
        if rest:
            counts = measured(full * batch_size, rest, *counts)
        correct, key_weight = counts
        return correct, key_weight / n, n

    return evaluate


def _finite_weights(model: ShardedModel) -> np.ndarray:
    """(replicas,) bool: every weight slice of the replica is finite.

    Weights of some replicas only (the learned attention of a model mixing attention
    modes, attnlab.engine.models) are skipped: a non-finite one makes its replicas' loss NaN.
    """
    parts = []
    for shard, part in zip(model.models, model.slices, strict=True):
        ok = np.ones(part.stop - part.start, bool)
        for w in shard.weights:
            if w.shape[0] != len(ok):
                continue
            values = np.asarray(w.numpy()).reshape(len(ok), -1)
            ok &= np.isfinite(values).all(axis=1)
        parts.append(ok)
    return np.concatenate(parts)


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Outputs of model on x (n, replicas, ...), in inference mode, in batches.

    A direct call per batch: Keras' predict() builds a tf.data pipeline, slower for arrays
    this small.
    """
    parts = [model(x[i : i + batch_size], training=False) for i in range(0, len(x), batch_size)]
    return np.concatenate([np.asarray(p) for p in parts], axis=0)
