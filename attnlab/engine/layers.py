"""Keras 3 layers whose weights carry a leading replica axis: one independent model per seed.

Inside a model, tensors are replica-major, (replicas, batch, ...): a replica's matmul is then
one slice of a batched matmul, about twice as fast on CPU as an einsum over (batch,
replicas, ...), which TensorFlow transposes on every call. `SwapBatchReplica` converts at
the model's edges, so users feed and read (batch, replicas, ...).

Replica r only ever touches weight slice r, so training the sum of per-replica losses
gives each replica exactly its own gradients and Adam state.
Each slice is initialised from its own seed's stream, so a replica's start does not depend
on which other seeds train beside it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from attnlab.engine.data import INIT_STREAM, rng_for


class ReplicaInitializer(keras.initializers.Initializer):
    """Glorot-uniform, orthogonal, zeros or ones, drawn per replica from that replica's seed.

    `salt` tells apart the weights of one model (layer and weight index), so that two
    layers of the same shape do not start equal. `widths`, if given, is each replica's own
    size of the last axis: its slice is drawn at that size (as it would be alone) and
    zero-padded to the full shape.
    """

    def __init__(
        self,
        seeds: list[int],
        salt: int,
        kind: str = "glorot_uniform",
        widths: list[int] | None = None,
    ) -> None:
        self.seeds = list(seeds)
        self.salt = salt
        self.kind = kind
        self.widths = None if widths is None else list(widths)

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        shape = tuple(shape[1:])
        widths = self.widths or [shape[-1]] * len(self.seeds)
        slices = [np.zeros(shape, np.float32) for _ in self.seeds]
        for piece, seed, width in zip(slices, self.seeds, widths, strict=True):
            piece[..., :width] = self._one(seed, (*shape[:-1], width))
        return ops.convert_to_tensor(np.stack(slices), dtype=dtype or "float32")

    def _one(self, seed: int, shape: tuple[int, ...]) -> np.ndarray:
        if self.kind == "zeros":
            return np.zeros(shape, np.float32)
        if self.kind == "ones":
            return np.ones(shape, np.float32)
        rng = rng_for(seed, INIT_STREAM, self.salt)
        fan_in, fan_out = (shape[0], shape[-1]) if len(shape) > 1 else (shape[0], shape[0])
        if self.kind == "orthogonal":
            q, r = np.linalg.qr(rng.standard_normal((max(shape), min(shape))))
            q = q * np.sign(np.diag(r))  # make the draw unique, as Keras' Orthogonal does
            return (q if shape[0] >= shape[1] else q.T).astype(np.float32)
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"seeds": self.seeds, "salt": self.salt, "kind": self.kind, "widths": self.widths}


@keras.saving.register_keras_serializable(package="attnlab")
class ReplicaDense(keras.layers.Layer):
    """Dense over the last axis with one kernel per replica.

    Input (replicas, batch, ..., in) -> output (replicas, batch, ..., units).

    `valid_units` (one count per replica) gives replicas fewer outputs than `units`: a
    classifier head shared by cells with different class counts. Replica r's outputs from
    valid_units[r] on are pinned to -1e9, so a softmax gives them exactly 0, their weights
    get zero gradients (and zero Adam steps), and the replica trains as it would alone.
    """

    def __init__(
        self,
        units: int,
        seeds: list[int],
        salt: int,
        activation: str | None = None,
        valid_units: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.seeds = list(seeds)
        self.salt = salt
        self.activation = keras.activations.get(activation)
        self.valid_units = None if valid_units is None else [int(v) for v in valid_units]
        self.padding: np.ndarray | None = None
        if self.valid_units is not None:
            masked = np.arange(units)[None, :] >= np.array(self.valid_units)[:, None]
            self.padding = np.where(masked, -1e9, 0.0).astype(np.float32)  # (replicas, units)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        replicas, fan_in = len(self.seeds), int(input_shape[-1])  # type: ignore[arg-type]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(replicas, fan_in, self.units),
            initializer=ReplicaInitializer(self.seeds, 2 * self.salt, widths=self.valid_units),
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(replicas, self.units),
            initializer=ReplicaInitializer(self.seeds, 2 * self.salt + 1, "zeros"),
        )

    def call(self, x: Any) -> Any:
        extra = len(x.shape) - 3  # axes between batch and features: 0, or 1 for (time)
        kernel = ops.reshape(
            self.kernel, (self.kernel.shape[0],) + (1,) * extra + self.kernel.shape[1:]
        )
        bias = ops.reshape(self.bias, (self.bias.shape[0],) + (1,) * (extra + 1) + (self.units,))
        out = ops.matmul(x, kernel) + bias
        if self.padding is not None:
            out = out + ops.reshape(self.padding, bias.shape)
        return self.activation(out)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "seeds": self.seeds,
            "salt": self.salt,
            "activation": keras.activations.serialize(self.activation),
            "valid_units": self.valid_units,
        }


@keras.saving.register_keras_serializable(package="attnlab")
class ReplicaGate(keras.layers.Layer):
    """Per replica, a learned attention or a fixed vector over the key's axis (axis 2).

    Called on x (replicas, batch, axis[, channels]) alone, every replica is fixed: the
    output is fixed[r] broadcast to x's shape. Called on [x, probs], where probs is the
    learned softmax of the learned replicas only (in order, see TakeReplicas), replica r
    outputs its probs where learned[r], else fixed[r] (a select, not arithmetic: a fixed
    replica never sees another's probs, not even a NaN, and sends them an exactly zero
    gradient), so cells of different attention modes train as one model, each as it
    would alone.
    """

    def __init__(
        self, fixed: list[list[float]], learned: list[bool] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.fixed = [[float(v) for v in row] for row in fixed]  # (replicas, axis)
        self.learned = [bool(v) for v in learned] if learned is not None else None
        flags = np.array(self.learned or [False] * len(self.fixed))
        self.vectors = np.array(self.fixed, np.float32)
        self.mask = flags
        # Replica r's row in probs: its rank among the learned replicas (fixed ones: row 0,
        # not selected).
        self.rows = np.maximum(np.cumsum(flags) - 1, 0).astype(np.int32)

    def call(self, inputs: Any) -> Any:
        x, probs = inputs if isinstance(inputs, list | tuple) else (inputs, None)
        extra = len(x.shape) - 3  # 1 for (time, channels): the vector spans time steps
        replicas = len(self.fixed)
        fixed = ops.reshape(
            ops.convert_to_tensor(self.vectors), (replicas, 1, len(self.fixed[0])) + (1,) * extra
        )
        if probs is None:
            return ops.zeros_like(x) + fixed
        mask = ops.reshape(ops.convert_to_tensor(self.mask), (replicas,) + (1,) * (2 + extra))
        every = ops.take(probs, ops.convert_to_tensor(self.rows), axis=0)  # x's shape
        return ops.where(mask, every, fixed)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fixed": self.fixed, "learned": self.learned}


@keras.saving.register_keras_serializable(package="attnlab")
class TakeReplicas(keras.layers.Layer):
    """(replicas, ...) -> (len(rows), ...): the listed replicas, in order."""

    def __init__(self, rows: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows = [int(r) for r in rows]

    def call(self, x: Any) -> Any:
        return ops.take(x, ops.convert_to_tensor(np.array(self.rows, np.int32)), axis=0)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (len(self.rows), *input_shape[1:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rows": self.rows}


@keras.saving.register_keras_serializable(package="attnlab")
class ReplicaLSTM(keras.layers.Layer):
    """An LSTM (Keras' default gates and initialisers) with one set of weights per replica.

    Input (replicas, batch, time, in) -> (replicas, batch, time, units) if return_sequences,
    else the last state (replicas, batch, units). The loop over time steps is unrolled:
    sequences here are short (time_steps ~ 20).
    """

    def __init__(
        self,
        units: int,
        seeds: list[int],
        salt: int,
        return_sequences: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.seeds = list(seeds)
        self.salt = salt
        self.return_sequences = return_sequences

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        replicas, fan_in, u = len(self.seeds), int(input_shape[-1]), self.units  # type: ignore[arg-type]
        salt = 3 * self.salt
        self.kernel = self.add_weight(
            name="kernel",
            shape=(replicas, fan_in, 4 * u),
            initializer=ReplicaInitializer(self.seeds, salt),
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(replicas, u, 4 * u),
            initializer=ReplicaInitializer(self.seeds, salt + 1, "orthogonal"),
        )
        # Keras' unit_forget_bias: the forget gate starts at 1, the rest at 0.
        bias0 = np.concatenate([np.zeros(u), np.ones(u), np.zeros(2 * u)]).astype(np.float32)
        self.bias = self.add_weight(
            name="bias",
            shape=(replicas, 4 * u),
            initializer=keras.initializers.Constant(np.tile(bias0, (replicas, 1))),
        )

    def call(self, x: Any) -> Any:
        replicas, steps, u = x.shape[0], x.shape[2], self.units
        h = c = ops.tile(ops.zeros_like(x[:, :, 0, :1]), [1, 1, u])  # (replicas, batch, units)
        # The input projection of every time step in one batched matmul.
        projected = ops.matmul(ops.reshape(x, (replicas, -1, x.shape[-1])), self.kernel)
        projected = ops.reshape(projected, (replicas, -1, steps, 4 * u))
        bias = self.bias[:, None, :]
        outputs = []
        for t in range(steps):
            z = projected[:, :, t, :] + ops.matmul(h, self.recurrent_kernel) + bias
            i, f, g, o = ops.split(z, 4, axis=-1)
            c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
            h = ops.sigmoid(o) * ops.tanh(c)
            outputs.append(h)
        return ops.stack(outputs, axis=2) if self.return_sequences else h

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "seeds": self.seeds,
            "salt": self.salt,
            "return_sequences": self.return_sequences,
        }


@keras.saving.register_keras_serializable(package="attnlab")
class SwapBatchReplica(keras.layers.Layer):
    """(batch, replicas, ...) <-> (replicas, batch, ...): the model's edges."""

    def call(self, x: Any) -> Any:
        return ops.swapaxes(x, 0, 1)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (input_shape[1], input_shape[0], *input_shape[2:])


@keras.saving.register_keras_serializable(package="attnlab")
class MergeLastAxes(keras.layers.Layer):
    """(replicas, batch, a, b) -> (replicas, batch, a * b): a per-replica Flatten."""

    def call(self, x: Any) -> Any:
        return ops.reshape(x, (x.shape[0], -1, x.shape[2] * x.shape[3]))

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (input_shape[0], input_shape[1], input_shape[2] * input_shape[3])
