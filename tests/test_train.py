"""The training loop's own pieces: the fused Adam against Keras' Adam, the sample orders,
the learning curves fit records."""

from __future__ import annotations

import contextlib
import itertools
import threading
from typing import Any
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from attnlab.engine.data import SHUFFLE_STREAM, make_replica_data, rng_for
from attnlab.engine.metrics import accuracy
from attnlab.engine.models import ShardedModel, attention_model, build_model, logits_model
from attnlab.engine.train import (
    CURVES,
    EPOCH_GATHER_BYTES,
    FusedAdam,
    _history,
    fit,
    make_epoch_fn,
    predict,
    replica_major_core,
    sample_orders,
    shard_slices,
)


def orders_up_front(seeds: list[int], n: int, epochs: int) -> np.ndarray:
    """The orders as fit drew them before sample_orders: all epochs at once,
    (epochs, n, replicas) int32."""
    orders = np.empty((epochs, n, len(seeds)), np.int32)
    for r, seed in enumerate(seeds):
        rng = rng_for(seed, SHUFFLE_STREAM)
        for e in range(epochs):
            orders[e, :, r] = rng.permutation(n)
    return orders


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize("model", ["model=dense", "model=double", "model=lstm"])
def test_fused_adam_trains_as_keras_adam(make_config, model):
    # 400 training samples: the last of 7 batches has 16, so the partial batch is covered.
    cfg = make_config(model, "data.samples=500", "data.classes=5", "seeds=[0,1,2]")
    data = make_replica_data(cfg.data, cfg.seeds, 0.2, cfg.model.sequence)
    x, y = tf.constant(data.x_train), tf.constant(data.y_train)
    orders = orders_up_front(cfg.seeds, len(data.y_train), 3)

    def trained(fused: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
        keras.backend.clear_session()
        model = logits_model(build_model(cfg.model, cfg.data, cfg.seeds))
        weights = model.trainable_variables
        if fused:
            apply = FusedAdam(weights, cfg.trainer.learning_rate).apply
        else:
            optimizer = keras.optimizers.Adam(cfg.trainer.learning_rate)
            optimizer.build(weights)
            apply = lambda grads: optimizer.apply_gradients(zip(grads, weights, strict=True))  # noqa: E731
        epoch = make_epoch_fn(model, apply, x, y, batch_size=64)
        losses = [epoch(tf.constant(order)).numpy() for order in orders]
        return losses, [w.numpy() for w in weights]

    fused_losses, fused_weights = trained(fused=True)
    keras_losses, keras_weights = trained(fused=False)
    np.testing.assert_allclose(fused_losses, keras_losses, rtol=1e-5)
    assert fused_losses[-1].max() < fused_losses[0].min()  # it did train
    for fused_w, keras_w in zip(fused_weights, keras_weights, strict=True):
        np.testing.assert_allclose(fused_w, keras_w, atol=1e-5)


def test_the_replica_major_core_is_the_model_between_its_edge_swaps(make_config):
    cfg = make_config("data.samples=500", "data.classes=5", "seeds=[0,1,2]")
    model = logits_model(build_model(cfg.model, cfg.data, cfg.seeds))
    core = replica_major_core(model)
    assert core is not None and core.trainable_variables == model.trainable_variables
    x = np.random.default_rng(0).standard_normal((7, 3, cfg.data.features)).astype(np.float32)
    np.testing.assert_array_equal(
        np.swapaxes(core(np.swapaxes(x, 0, 1)), 0, 1), np.asarray(model(x))
    )
    assert (
        replica_major_core(keras.Sequential([keras.Input((3, 4)), keras.layers.Dense(2)])) is None
    )


def test_sample_orders_are_the_orders_drawn_up_front():
    seeds = [0, 3, 11]
    drawn = list(itertools.islice(sample_orders(seeds, 50), 4))
    assert all(order.shape == (50, 3) and order.dtype == np.int32 for order in drawn)
    np.testing.assert_array_equal(np.stack(drawn), orders_up_front(seeds, 50, 4))
    assert not np.array_equal(drawn[0], drawn[1])  # a new order every epoch


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize("model", ["model=dense", "model=lstm"])
def test_fit_trains_bit_for_bit_as_with_the_orders_drawn_up_front(make_config, model):
    # Five replicas in two shards, so the shards' threads and joins are covered too.
    cfg = make_config(model, "data.samples=500", "data.classes=5", "seeds=[0,1,2,3,4]")
    data = make_replica_data(cfg.data, cfg.seeds, 0.2, cfg.model.sequence)
    classes, keys = np.full(5, 5), np.full(5, cfg.data.attention_column)
    epochs = cfg.trainer.epochs

    keras.backend.clear_session()
    parts = shard_slices(5, cores=2)
    sharded = ShardedModel([build_model(cfg.model, cfg.data, cfg.seeds[p]) for p in parts])
    history = fit(sharded, data, cfg.seeds, cfg.trainer, classes, keys)

    keras.backend.clear_session()
    reference = []
    for part in parts:
        shard = logits_model(build_model(cfg.model, cfg.data, cfg.seeds[part]))
        x, y = tf.constant(data.x_train[:, part]), tf.constant(data.y_train[:, part])
        adam = FusedAdam(shard.trainable_variables, cfg.trainer.learning_rate)
        epoch = make_epoch_fn(shard, adam.apply, x, y, cfg.trainer.batch_size)
        orders = orders_up_front(cfg.seeds[part], len(data.y_train), epochs)
        reference.append(np.stack([epoch(tf.constant(o)).numpy() for o in orders]))
    np.testing.assert_array_equal(history.train_loss, np.concatenate(reference, axis=1))


def reference_epoch_fn(model, apply, x, y, batch_size: int, whole_epoch: bool):
    """The epoch as make_epoch_fn ran it at dd192c8 (an autograph loop, each batch a slice of
    a dynamic shape): the reference the faster loop must train exactly as."""
    n, replicas = (int(d) for d in y.shape)
    cols = tf.range(replicas)

    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            per_replica = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(yb, model(xb, training=True)), 0
            )
            loss = tf.reduce_sum(per_replica)
        apply(tape.gradient(loss, model.trainable_variables))
        return per_replica

    def gather(rows):
        idx = tf.stack([rows, tf.broadcast_to(cols, tf.shape(rows))], axis=-1)
        return tf.gather_nd(x, idx), tf.gather_nd(y, idx)

    @tf.function
    def run_epoch(order):
        total = tf.zeros([replicas], tf.float32)
        if whole_epoch:
            xs, ys = gather(order)
        for step in tf.range(-(-n // batch_size)):
            batch = slice(step * batch_size, (step + 1) * batch_size)
            xb, yb = (xs[batch], ys[batch]) if whole_epoch else gather(order[batch])
            total += train_step(xb, yb) * tf.cast(tf.shape(yb)[0], tf.float32)
        return total / n

    return run_epoch


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize(
    ("model", "whole_epoch", "replica_major"),
    [
        *itertools.product(["model=dense", "model=double", "model=lstm"], [True, False], [True]),
        ("model=dense", True, False),  # a model without the edge swaps: trained batch-major
    ],
)
def test_epoch_trains_bit_for_bit_as_the_dynamic_shape_loop(
    make_config, model, whole_epoch, replica_major
):
    # 400 training samples: 6 batches of 64, then a partial one of 16. The reference trains
    # the whole model, edge swaps included; make_epoch_fn the replica-major part between them.
    cfg = make_config(model, "data.samples=500", "data.classes=5", "seeds=[0,1,2]")
    data = make_replica_data(cfg.data, cfg.seeds, 0.2, cfg.model.sequence)
    x, y = tf.constant(data.x_train), tf.constant(data.y_train)
    orders = orders_up_front(cfg.seeds, len(data.y_train), 2)

    def trained(make: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        keras.backend.clear_session()
        model = logits_model(build_model(cfg.model, cfg.data, cfg.seeds))
        adam = FusedAdam(model.trainable_variables, cfg.trainer.learning_rate)
        epoch = make(model, adam.apply)
        losses = [epoch(tf.constant(order)).numpy() for order in orders]
        return losses, [w.numpy() for w in model.trainable_variables]

    gather_bytes = EPOCH_GATHER_BYTES if whole_epoch else 0
    no_core = mock.patch("attnlab.engine.train.replica_major_core", return_value=None)
    with (
        mock.patch("attnlab.engine.train.EPOCH_GATHER_BYTES", gather_bytes),
        contextlib.nullcontext() if replica_major else no_core,
    ):
        losses, weights = trained(lambda m, apply: make_epoch_fn(m, apply, x, y, 64))
    ref_losses, ref_weights = trained(
        lambda m, apply: reference_epoch_fn(m, apply, x, y, 64, whole_epoch)
    )
    np.testing.assert_array_equal(losses, ref_losses)
    for w, ref_w in zip(weights, ref_weights, strict=True):
        np.testing.assert_array_equal(w, ref_w)


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize("model", ["model=dense", "model=double", "model=lstm"])
def test_recorded_curves_are_the_metrics_after_each_epoch(make_config, model):
    # 1200 validation samples: two evaluation batches of 1024 and 176.
    cfg = make_config(model, "data.samples=6000", "data.classes=3", "seeds=[0,1,2]")
    data = make_replica_data(cfg.data, cfg.seeds, 0.2, cfg.model.sequence)
    keys = np.array([cfg.data.attention_column] * 3)
    keras.backend.clear_session()
    shard = build_model(cfg.model, cfg.data, cfg.seeds)
    calls: list[int] = []
    lock = threading.Lock()

    def on_epoch(replicas: int) -> None:
        with lock:
            calls.append(replicas)

    cfg.trainer.epochs = 2
    history = fit(
        ShardedModel([shard]), data, cfg.seeds, cfg.trainer, np.full(3, 3), keys, on_epoch
    )
    assert calls == [3, 3]  # one shard of 3 replicas, 2 epochs
    assert all(getattr(history, c).shape == (2, 3) for c in CURVES)
    # After the last epoch the curves are what metrics computes from the trained model.
    probs = predict(shard, data.x_val)
    np.testing.assert_array_equal(history.val_accuracy[-1], accuracy(probs, data.y_val))
    alpha = predict(attention_model(shard), data.x_val)  # (n_val, replicas, key_axis)
    key_weight = alpha[:, :, cfg.data.attention_column].mean(axis=0)
    np.testing.assert_allclose(history.attn_key_weight[-1], key_weight, rtol=1e-5)
    counts = history.val_accuracy * 1200  # counts of correct validation samples
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)


def test_a_diverged_replicas_curves_end_where_it_blew_up():
    # 3 epochs, 3 replicas of 2 classes (blown up: loss > 10 log 2 = 6.93, or not finite).
    loss = np.array([[0.7, 0.7, 0.7], [0.6, 50.0, 0.6], [0.5, np.nan, 0.5]])
    curves = {"train_loss": loss.copy(), "val_accuracy": np.full((3, 3), 0.8)}
    curves["attn_key_weight"] = np.full((3, 3), 0.4)
    finite = np.array([True, False, False])  # replica 2: weights not finite, loss fine
    history = _history(curves, np.full(3, 2), finite)
    assert history.diverged.tolist() == [False, True, True]
    assert history.epochs_run.tolist() == [3, 2, 3]
    np.testing.assert_array_equal(history.train_loss[:, 0], loss[:, 0])
    np.testing.assert_array_equal(history.train_loss[:, 1], [0.7, 50.0, np.nan])  # kept: 50
    np.testing.assert_array_equal(history.val_accuracy[:, 1], [0.8, np.nan, np.nan])
    np.testing.assert_array_equal(history.attn_key_weight[:, 2], [0.4, 0.4, np.nan])
    assert np.isnan(history.last("val_accuracy")[1:]).all()
    assert history.last("val_accuracy")[0] == 0.8
