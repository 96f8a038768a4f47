"""The attention models of the study, built with a replica axis (one replica per seed).

Every variant names the softmax attention that multiplies the known key's axis
`attention_vec`; `attention_model` reads it as a sub-model, as Keras 3 wants
(`keras.backend.function` is gone).

- dense: the seed. attention_vec = Dense(features, softmax)(x), optionally after
  attn_layers - 1 Dense(features) layers; x * attention_vec -> Dense(hidden) -> softmax head.
- double: the simplified source. attention on the inputs, Dense(hidden), then attention
  again over those hidden units (`attention_vec_2`), then the head.
- lstm: the sequel. A softmax over time steps (one per feature, as the source's
  attention_3d_block), placed before or after an LSTM.

model.attention replaces that gate (for double the first one) by a fixed vector: uniform
(1/size), oracle (1 on the key) or none (no multiply at all). Each replica has its own mode
and key, so cells of different modes train as one model (attnlab.engine.layers.ReplicaGate).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import KerasTensor, layers, ops

from attnlab.engine.config import DataConfig, ModelConfig
from attnlab.engine.layers import (
    MergeLastAxes,
    ReplicaDense,
    ReplicaGate,
    ReplicaLSTM,
    SwapBatchReplica,
    TakeReplicas,
)

ATTENTION_LAYER = "attention_vec"
LOGITS_LAYER = "logits"


# What a replica's gate is, by its model.attention and its key: (modes, keys) per replica.
Gates = tuple[list[str], list[int]]
# Builds the learned softmax over the key's axis of (some replicas') inputs: (inputs, their
# seeds, the name of its last layer) -> probs of the inputs' shape.
LearnedProbs = Callable[[KerasTensor, list[int], str], KerasTensor]


def build_model(
    model_cfg: ModelConfig,
    data_cfg: DataConfig,
    seeds: list[int],
    classes: list[int] | None = None,
    attention: list[str] | None = None,
    keys: list[int] | None = None,
) -> keras.Model:
    """The model for every seed at once: (batch, replicas, ...) -> (batch, replicas, classes).

    Inside, tensors are replica-major (replicas, batch, ...); see attnlab.engine.layers. classes,
    if given, is each replica's own class count (cells trained together, attnlab.sweep.packing):
    the head is as wide as the largest, and narrower replicas' extra logits are masked out.
    attention and keys, if given, are each replica's model.attention and key column
    (default: model_cfg's and data_cfg's for every replica).
    """
    builders = {"dense": _dense, "double": _double, "lstm": _lstm, "custom": _custom}
    seeds = list(seeds)
    gates = (
        list(attention or [model_cfg.attention] * len(seeds)),
        list(keys or [data_cfg.attention_column] * len(seeds)),
    )
    sample_shape = (data_cfg.time_steps,) if model_cfg.sequence else ()
    inputs = keras.Input(shape=(len(seeds), *sample_shape, data_cfg.features), name="inputs")
    x = SwapBatchReplica(name="to_replica_major")(inputs)  # (replicas, batch, ...)
    hidden = builders[model_cfg.variant](x, model_cfg, data_cfg, seeds, gates)
    classes = list(classes) if classes is not None else [data_cfg.classes] * len(seeds)
    widths = classes if len(set(classes)) > 1 else None  # a mask only where widths differ
    logits = ReplicaDense(max(classes), seeds, salt=2, valid_units=widths, name="head")(hidden)
    logits = SwapBatchReplica(name=LOGITS_LAYER)(logits)  # (batch, replicas, classes)
    outputs = layers.Softmax(name="output")(logits)
    return keras.Model(inputs, outputs, name=f"{model_cfg.variant}_attention")


def logits_model(model: keras.Model) -> keras.Model:
    """The same model up to the logits, for a numerically stable training loss."""
    return keras.Model(model.input, model.get_layer(LOGITS_LAYER).output, name="logits")


def fixed_attention(mode: str, size: int, key: int) -> np.ndarray:
    """The vector a fixed mode multiplies an axis of `size` by (float32): uniform 1/size,
    oracle one-hot on key, none ones (multiplying by it changes nothing); learned: zeros,
    unused."""
    vector = np.zeros(size, np.float32)
    if mode == "uniform":
        vector[:] = np.float32(1.0) / np.float32(size)
    elif mode == "oracle":
        vector[key] = 1.0
    elif mode == "none":
        vector[:] = 1.0
    return vector


def _gate(
    x: KerasTensor, seeds: list[int], learned_probs: LearnedProbs, gates: Gates
) -> KerasTensor:
    """x times each replica's attention over axis 2 (its output is `attention_vec`).

    All learned: the learned softmax, as the seed. All none: x itself, no gate. Otherwise
    a ReplicaGate gives every replica its own: the learned softmax, computed for the
    learned replicas only (their slices of x, their seeds), or its fixed vector.
    """
    modes, keys = gates
    if all(mode == "learned" for mode in modes):
        probs = learned_probs(x, seeds, ATTENTION_LAYER)
        return layers.Multiply(name="attention_mul")([x, probs])
    if all(mode == "none" for mode in modes):
        return x
    size = int(x.shape[2])
    fixed = [fixed_attention(m, size, k).tolist() for m, k in zip(modes, keys, strict=True)]
    learned = [mode == "learned" for mode in modes]
    if any(learned):
        rows = [r for r, flag in enumerate(learned) if flag]
        x_learned = TakeReplicas(rows, name="learned_replicas")(x)
        probs = learned_probs(x_learned, [seeds[r] for r in rows], "attention_learned")
        gate = ReplicaGate(fixed, learned, name=ATTENTION_LAYER)([x, probs])
    else:
        gate = ReplicaGate(fixed, name=ATTENTION_LAYER)(x)
    return layers.Multiply(name="attention_mul")([x, gate])


def _dense(
    x: KerasTensor, m: ModelConfig, d: DataConfig, seeds: list[int], gates: Gates
) -> KerasTensor:
    def learned_probs(h: KerasTensor, seeds: list[int], name: str) -> KerasTensor:
        # h: (replicas, batch, features)
        for i in range(m.attn_layers - 1):
            h = ReplicaDense(
                d.features,
                seeds,
                salt=10 + i,
                activation=m.attn_activation,
                name=f"attention_dense_{i + 1}",
            )(h)
        return ReplicaDense(d.features, seeds, salt=0, activation="softmax", name=name)(h)

    gated = _gate(x, seeds, learned_probs, gates)
    return ReplicaDense(m.hidden, seeds, salt=1, activation=m.hidden_activation, name="hidden")(
        gated
    )


def _double(
    x: KerasTensor, m: ModelConfig, d: DataConfig, seeds: list[int], gates: Gates
) -> KerasTensor:
    def learned_probs(h: KerasTensor, seeds: list[int], name: str) -> KerasTensor:
        return ReplicaDense(d.features, seeds, salt=0, activation="softmax", name=name)(h)

    gated = _gate(x, seeds, learned_probs, gates)
    hidden = ReplicaDense(m.hidden, seeds, salt=1, activation=m.hidden_activation, name="hidden")(
        gated
    )
    probs2 = ReplicaDense(m.hidden, seeds, salt=3, activation="softmax", name="attention_vec_2")(
        hidden
    )
    return layers.Multiply(name="attention_mul_2")([hidden, probs2])


def _time_attention(x: KerasTensor, seeds: list[int], gates: Gates) -> KerasTensor:
    """Softmax over time steps, one per channel (the source's attention_3d_block).

    (replicas, batch, time, channels) -> x * probs, same shape; probs is `attention_vec`.
    A fixed mode's vector spans the time steps, the same for every channel.
    """
    steps = x.shape[2]

    def learned_probs(h: KerasTensor, seeds: list[int], name: str) -> KerasTensor:
        by_channel = layers.Permute((1, 3, 2))(h)  # (replicas, batch, channels, time)
        probs = ReplicaDense(
            steps, seeds, salt=0, activation="softmax", name="attention_by_channel"
        )(by_channel)
        return layers.Permute((1, 3, 2), name=name)(probs)  # (replicas, batch, time, channels)

    return _gate(x, seeds, learned_probs, gates)


def _lstm(
    x: KerasTensor, m: ModelConfig, d: DataConfig, seeds: list[int], gates: Gates
) -> KerasTensor:
    if m.attention_position == "before":
        gated = _time_attention(x, seeds, gates)
        return ReplicaLSTM(m.lstm_units, seeds, salt=4, name="lstm")(gated)
    seq = ReplicaLSTM(m.lstm_units, seeds, salt=4, return_sequences=True, name="lstm")(x)
    return MergeLastAxes(name="flatten")(
        _time_attention(seq, seeds, gates)
    )  # (replicas, batch, time*units)


@dataclass
class BuildContext:
    """What a model.builder function (model=custom) receives beside its inputs.

    The contract, docs/own-data-and-models.md: `builder(x, context) -> hidden`, x is
    (replicas, batch, features) replica-major, hidden is (replicas, batch, units); build
    with attnlab's replica layers (ReplicaDense and friends, one weight slice per seed, drawn
    from that seed's stream) and name the layer whose output is the attention over the
    features `attention_vec` (or let `gate` do it). attnlab adds the softmax head.
    """

    seeds: list[int]  # one replica per seed, in order
    features: int  # the input columns (the last axis of x)
    model: ModelConfig  # model.hidden, model.hidden_activation, ... as configured
    data: DataConfig
    gates: Gates  # each replica's model.attention and key column

    def gate(self, x: KerasTensor, learned_probs: LearnedProbs) -> KerasTensor:
        """x times each replica's attention, as the built-in models do: the learned one
        learned_probs(h, seeds, name) builds (it must name its last layer `name`), or the
        fixed vector of model.attention=uniform, oracle or none."""
        return _gate(x, self.seeds, learned_probs, self.gates)


def _custom(
    x: KerasTensor, m: ModelConfig, d: DataConfig, seeds: list[int], gates: Gates
) -> KerasTensor:
    from attnlab.engine.config import load_builder

    return load_builder(m.builder)(x, BuildContext(list(seeds), d.features, m, d, gates))


def attention_model(model: keras.Model) -> keras.Model:
    """Sub-model from the inputs to the attention over the key's axis.

    Output (batch, replicas, key_axis): for lstm the per-channel time attention is averaged
    over channels, giving one distribution over time steps per sample. A model without a
    gate (model.attention=none) reads as ones: what it multiplies the inputs by, in effect.
    """
    if ATTENTION_LAYER not in {layer.name for layer in model.layers}:
        ones = layers.Lambda(
            lambda x: ops.ones_like(x if len(x.shape) == 3 else x[..., 0]), name="attention"
        )(model.input)  # (batch, replicas, key_axis)
        return keras.Model(model.input, ones, name="attention")
    probs = model.get_layer(ATTENTION_LAYER).output  # (replicas, batch, key_axis[, channels])
    if len(probs.shape) == 4:
        probs = layers.Lambda(lambda p: ops.mean(p, axis=-1), name="time_attention")(probs)
    return keras.Model(model.input, SwapBatchReplica(name="attention")(probs), name="attention")


class ShardedModel:
    """Replicas split over several models (shards: contiguous slices of the replica axis,
    see attnlab.engine.train), called like one model: (batch, replicas, ...) in, the shards'
    outputs joined on the replica axis out.

    Shards of cells with fewer classes have narrower heads: their outputs are padded with
    zeros, the probability of a class those replicas do not have.
    """

    def __init__(self, models: list[keras.Model]) -> None:
        self.models = models
        self.slices, start = [], 0
        for model in models:
            self.slices.append(slice(start, start + int(model.input.shape[1])))
            start = self.slices[-1].stop

    def __call__(self, x: Any, training: bool = False) -> np.ndarray:
        def call(shard: int) -> np.ndarray:
            return np.asarray(self.models[shard](x[:, self.slices[shard]], training=training))

        # Each shard on its own thread, as they train (TensorFlow runs each single-threaded):
        # the measurements after training take about half as long on two cores.
        with ThreadPoolExecutor(len(self.models)) as pool:
            parts = list(pool.map(call, range(len(self.models))))
        width = max(p.shape[-1] for p in parts)
        pads = [[(0, 0)] * (p.ndim - 1) + [(0, width - p.shape[-1])] for p in parts]
        return np.concatenate([np.pad(p, pad) for p, pad in zip(parts, pads, strict=True)], axis=1)

    def attention(self) -> ShardedModel:
        """The shards' attention sub-models (attention_model), joined the same way."""
        return ShardedModel([attention_model(m) for m in self.models])
