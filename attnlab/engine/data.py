"""Each seed's data, one independent draw per seed, by data.kind:

- default (the seed experiment): x ~ N(0, 1); y uniform in [0, classes); the key column
  (for sequences: the whole key time step) is set to y.
- informative: x ~ N(0, 1); y is a random linear score of the relevant columns (weights
  drawn per seed from its TASK_STREAM) cut at the score's quantiles into equal classes.
- xor: x ~ N(0, 1); y = (x[a] > 0) xor (x[b] > 0) for the two relevant columns a, b.
- csv: a user's table (attnlab.engine.tables); per seed a shuffle of its rows, the
  training rows first, then the validation rows, whose first probe_samples are the probe
  set; every column standardised with the seed's training rows' mean and sd.

informative and xor may turn data.distractors of the other columns into noisy copies of
relevant ones. Each seed owns separate random streams for its training draw, its probe
draw, its initialisation and its shuffling, so seed s gives the same numbers whatever other
seeds train beside it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from attnlab.engine.config import DataConfig, split_sizes

# Stream ids under a seed: numpy's SeedSequence([seed, stream]) gives independent streams.
# TASK_STREAM: a synthetic family's per-seed task (data=informative's weights).
TRAIN_STREAM, PROBE_STREAM, INIT_STREAM, SHUFFLE_STREAM, ABLATION_STREAM, TASK_STREAM = range(6)


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


def feature_names(cfg: DataConfig) -> list[str]:
    """The names of the key axis's columns: the table's for data=csv, else x0, x1, ..."""
    if cfg.kind == "csv":
        from attnlab.engine.tables import read_table

        return list(read_table(cfg.path, cfg.target, cfg.columns).names)
    return [f"x{i}" for i in range(cfg.features)]


def relevant_columns(cfg: DataConfig) -> list[int]:
    """Indices of the columns known to matter: data.relevant by name, or for data=default
    the key column (data.attention_column)."""
    if cfg.kind == "default":
        return [cfg.attention_column]
    names = feature_names(cfg)
    return [names.index(name) for name in cfg.relevant]


def key_column(cfg: DataConfig) -> int:
    """The column the key metrics (attn_key_weight, focus, key ablation) and the oracle gate
    refer to: data.attention_column for data=default, else the first relevant column (a
    table without data.relevant: data.attention_column)."""
    relevant = relevant_columns(cfg)
    return relevant[0] if relevant else cfg.attention_column


def make_synthetic(
    cfg: DataConfig, n: int, rng: np.random.Generator, task: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One draw of data=informative or data=xor: x (n, features), y (n,) int.

    task: the seed's TASK_STREAM (informative's weights), the same for its training and
    probe draws, so both come from one task.
    """
    from statistics import NormalDist

    relevant = relevant_columns(cfg)
    x = rng.standard_normal(size=(n, cfg.features))
    if cfg.kind == "xor":
        y = ((x[:, relevant[0]] > 0) ^ (x[:, relevant[1]] > 0)).astype(np.int64)
    else:
        weights = task.standard_normal(len(relevant))
        score = x[:, relevant] @ weights  # ~ N(0, |w|^2): equal classes at its quantiles
        spread = max(float(np.linalg.norm(weights)), 1e-12)
        cuts = [NormalDist(0.0, spread).inv_cdf(q / cfg.classes) for q in range(1, cfg.classes)]
        y = np.searchsorted(np.array(cuts), score)
    others = [c for c in range(cfg.features) if c not in relevant]
    for i, column in enumerate(others[len(others) - cfg.distractors :] if cfg.distractors else []):
        source = relevant[i % len(relevant)]
        x[:, column] = x[:, source] + cfg.distractor_noise * rng.standard_normal(n)
    return x.astype(np.float32), y.astype(np.int32)


def table_split(
    cfg: DataConfig, seed: int, validation_split: float
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """data=csv, one seed: ((x, y) of data.samples rows, training rows first; (x, y) of the
    probe rows), standardised with the training rows' statistics only."""
    from attnlab.engine.tables import read_table, standardise

    table = read_table(cfg.path, cfg.target, cfg.columns)
    n_val, n_train = split_sizes(cfg.samples, validation_split)
    order = rng_for(seed, TRAIN_STREAM).permutation(table.rows)[: cfg.samples]
    train, val = order[:n_train], order[n_train:]
    probe = val[: cfg.probe_samples]
    x_train, x_val, x_probe = standardise(table.x[train], table.x[val], table.x[probe])
    x = np.concatenate([x_train, x_val])  # (samples, features)
    return (x, table.y[order]), (x_probe, table.y[probe])


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

    def task(seed: int) -> np.random.Generator:
        return rng_for(seed, TASK_STREAM)

    def draw(c: DataConfig, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        if c.kind == "csv":
            return table_split(c, seed, validation_split)
        if c.kind != "default":
            # A fresh TASK_STREAM generator per draw: the same weights for both.
            return (
                make_synthetic(
                    c, c.samples, rng_for(seed, TRAIN_STREAM), rng_for(seed, TASK_STREAM)
                ),
                make_synthetic(
                    c, c.probe_samples, rng_for(seed, PROBE_STREAM), rng_for(seed, TASK_STREAM)
                ),
            )
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
