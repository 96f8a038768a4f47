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
"""

from __future__ import annotations

import keras
from keras import layers, ops

from attnlab.config import DataConfig, ModelConfig
from attnlab.layers import ReplicaDense, ReplicaLSTM

ATTENTION_LAYER = "attention_vec"


def build_model(model_cfg: ModelConfig, data_cfg: DataConfig, seeds: list[int]) -> keras.Model:
    """The model for every seed at once: (batch, replicas, ...) -> (batch, replicas, classes)."""
    builders = {"dense": _dense, "double": _double, "lstm": _lstm}
    return builders[model_cfg.variant](model_cfg, data_cfg, list(seeds))


def _dense(m: ModelConfig, d: DataConfig, seeds: list[int]) -> keras.Model:
    inputs = keras.Input(
        shape=(len(seeds), d.features), name="inputs"
    )  # (batch, replicas, features)
    h = inputs
    for i in range(m.attn_layers - 1):
        h = ReplicaDense(
            d.features,
            seeds,
            salt=10 + i,
            activation=m.attn_activation,
            name=f"attention_dense_{i + 1}",
        )(h)
    probs = ReplicaDense(d.features, seeds, salt=0, activation="softmax", name=ATTENTION_LAYER)(h)
    gated = layers.Multiply(name="attention_mul")([inputs, probs])
    hidden = ReplicaDense(m.hidden, seeds, salt=1, activation=m.hidden_activation, name="hidden")(
        gated
    )
    outputs = ReplicaDense(d.classes, seeds, salt=2, activation="softmax", name="output")(hidden)
    return keras.Model(inputs, outputs, name="dense_attention")


def _double(m: ModelConfig, d: DataConfig, seeds: list[int]) -> keras.Model:
    inputs = keras.Input(
        shape=(len(seeds), d.features), name="inputs"
    )  # (batch, replicas, features)
    probs = ReplicaDense(d.features, seeds, salt=0, activation="softmax", name=ATTENTION_LAYER)(
        inputs
    )
    gated = layers.Multiply(name="attention_mul")([inputs, probs])
    hidden = ReplicaDense(m.hidden, seeds, salt=1, activation=m.hidden_activation, name="hidden")(
        gated
    )
    probs2 = ReplicaDense(m.hidden, seeds, salt=3, activation="softmax", name="attention_vec_2")(
        hidden
    )
    gated2 = layers.Multiply(name="attention_mul_2")([hidden, probs2])
    outputs = ReplicaDense(d.classes, seeds, salt=2, activation="softmax", name="output")(gated2)
    return keras.Model(inputs, outputs, name="double_attention")


def _time_attention(x: keras.KerasTensor, seeds: list[int], name: str) -> keras.KerasTensor:
    """Softmax over time steps, one per channel: (batch, replicas, time, ch) -> same shape."""
    steps = x.shape[2]
    by_channel = layers.Permute((1, 3, 2))(x)  # (batch, replicas, channels, time)
    probs = ReplicaDense(steps, seeds, salt=0, activation="softmax", name=f"{name}_by_channel")(
        by_channel
    )
    probs = layers.Permute((1, 3, 2), name=name)(probs)  # (batch, replicas, time, channels)
    return layers.Multiply(name="attention_mul")([x, probs])


def _lstm(m: ModelConfig, d: DataConfig, seeds: list[int]) -> keras.Model:
    shape = (len(seeds), d.time_steps, d.features)
    inputs = keras.Input(shape=shape, name="inputs")  # (batch, replicas, time, features)
    if m.attention_position == "before":
        gated = _time_attention(inputs, seeds, ATTENTION_LAYER)
        hidden = ReplicaLSTM(m.lstm_units, seeds, salt=4, name="lstm")(gated)
    else:
        seq = ReplicaLSTM(m.lstm_units, seeds, salt=4, return_sequences=True, name="lstm")(inputs)
        gated = _time_attention(seq, seeds, ATTENTION_LAYER)
        hidden = layers.Reshape((len(seeds), -1), name="flatten")(
            gated
        )  # (batch, replicas, time*units)
    outputs = ReplicaDense(d.classes, seeds, salt=2, activation="softmax", name="output")(hidden)
    return keras.Model(inputs, outputs, name=f"lstm_attention_{m.attention_position}")


def attention_model(model: keras.Model) -> keras.Model:
    """Sub-model from the inputs to the attention over the key's axis.

    Output (batch, replicas, key_axis): for lstm the per-channel time attention is averaged
    over channels, giving one distribution over time steps per sample.
    """
    probs = model.get_layer(ATTENTION_LAYER).output
    if len(probs.shape) == 4:
        probs = layers.Lambda(lambda p: ops.mean(p, axis=-1), name="time_attention")(probs)
    return keras.Model(model.inputs, probs, name="attention")
