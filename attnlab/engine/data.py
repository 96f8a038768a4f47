"""Synthetic data of the seed experiment, one independent draw per seed.

x ~ N(0, 1); y uniform in [0, classes); the key column (for sequences: the whole key time
step) is set to y. Each seed owns separate random streams for its training draw, its probe
draw, its initialisation and its shuffling, so seed s gives the same numbers whatever other
seeds train beside it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from attnlab.engine.config import DataConfig, split_sizes

# Stream ids under a seed: numpy's SeedSequence([seed, stream]) gives independent streams.
TRAIN_STREAM, PROBE_STREAM, INIT_STREAM, SHUFFLE_STREAM, ABLATION_STREAM = range(5)


def rng_for(seed: int, stream: int, *more: int) -> np.random.Generator:
    """The generator of one seed's named stream (see the *_STREAM constants).

    SeedSequence ignores trailing zeros: rng_for(s, k, 0) is rng_for(s, k). No two streams
    in use collide; salt new sub-streams from 1.
    """
    return np.random.default_rng([seed, stream, *more])


def encode_key(y: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """The value written into the key: the class index (raw) or the index mapped to [-1, 1]."""
    if cfg.key_encoding == "scaled":
        return 2.0 * y / (cfg.classes - 1) - 1.0
    return y.astype(np.float64)


def make_dataset(
    cfg: DataConfig, n: int, rng: np.random.Generator, sequence: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One draw of n samples: x (n, features) or (n, time_steps, features), y (n,) int."""
    shape = (n, cfg.time_steps, cfg.features) if sequence else (n, cfg.features)
    x = rng.standard_normal(size=shape)
    y = rng.integers(0, cfg.classes, size=n)
    key = encode_key(y, cfg)
    if sequence:
        x[:, cfg.attention_column, :] = key[:, None]
    else:
        x[:, cfg.attention_column] = key
    return x.astype(np.float32), y.astype(np.int32)


@dataclass
class ReplicaData:
    """Every seed's data stacked on a replica axis (axis 1, after the sample axis)."""

    x_train: np.ndarray  # (n_train, replicas, *sample_shape)
    y_train: np.ndarray  # (n_train, replicas)
    x_val: np.ndarray  # (n_val, replicas, *sample_shape)
    y_val: np.ndarray  # (n_val, replicas)
    x_probe: np.ndarray  # (probe_samples, replicas, *sample_shape)
    y_probe: np.ndarray  # (probe_samples, replicas)


def make_replica_data(
    data: DataConfig | list[DataConfig],
    seeds: list[int],
    validation_split: float,
    sequence: bool = False,
) -> ReplicaData:
    """Draw each seed's training and probe sets and stack them on the replica axis.

    data is one config for every seed, or replica r's own config (cells trained together,
    see attnlab.sweep.packing: their classes and key may differ, never their shapes). The
    validation split is the last samples of each draw, as in Keras' fit.
    """
    configs = data if isinstance(data, list) else [data] * len(seeds)
    first = configs[0]
    shapes = {(c.samples, c.probe_samples, c.features, c.time_steps) for c in configs}
    assert len(configs) == len(seeds) and len(shapes) == 1, "replicas need one data shape"
    n_val, n_train = split_sizes(first.samples, validation_split)

    def draw(c: DataConfig, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        return (
            make_dataset(c, c.samples, rng_for(seed, TRAIN_STREAM), sequence),
            make_dataset(c, c.probe_samples, rng_for(seed, PROBE_STREAM), sequence),
        )

    # numpy's generators release the GIL while they fill arrays, so seeds draw in parallel
    # (each from its own streams: the same numbers in any order).
    from attnlab.engine.resources import available_cpus

    with ThreadPoolExecutor(available_cpus()) as pool:
        train, probe = zip(*pool.map(draw, configs, seeds), strict=True)
    x = np.stack([d[0] for d in train], axis=1)  # (samples, replicas, ...)
    y = np.stack([d[1] for d in train], axis=1)  # (samples, replicas)
    return ReplicaData(
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_val=x[n_train:],
        y_val=y[n_train:],
        x_probe=np.stack([d[0] for d in probe], axis=1),
        y_probe=np.stack([d[1] for d in probe], axis=1),
    )
