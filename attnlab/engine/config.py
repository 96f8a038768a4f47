"""Typed configuration: the dataclass schemas behind `conf/` and their validation.

The YAML files in `conf/` extend these schemas (registered in Hydra's ConfigStore by
attnlab.sweep.schemas; this module imports no Hydra), so a misspelled key or a wrong type
fails when Hydra composes the config. Range checks that a
type cannot express live in `validate()`, which names the key, the value and what is
allowed, and runs before any training starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from attnlab.engine.metrics import SUMMARY_METRICS

MODEL_VARIANTS = ("dense", "double", "lstm", "custom")
# model.builder: an importable module path, a colon, a function name.
BUILDER = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
LOGGERS = ("none", "tensorboard")
# What a job returns to Hydra (its mean over the cell's usable seeds): focus_rate or a
# summary metric.
OBJECTIVES = ("focus_rate", *SUMMARY_METRICS)
ATTENTION_POSITIONS = ("before", "after")
KEY_ENCODINGS = ("raw", "scaled")
# Depth and sequence length are unrolled into the graph: its build time grows with them
# (model.attn_layers=100000 never finishes building), so they have named limits. Memory is
# bounded per cell by attnlab.engine.resources.check_fits.
MAX_ATTN_LAYERS = 32
MAX_TIME_STEPS = 1000
ATTENTION_MODES = ("learned", "uniform", "oracle", "none")
# Where a seed's data comes from (attnlab/engine/data.py): the seed's key-column generator,
# a user's table, or a synthetic family with known relevant columns.
DATA_KINDS = ("default", "csv", "informative", "xor")
# data=csv: these sizes left at 0 are filled in from the table (fill_from_table).
FROM_TABLE = ("features", "classes", "samples", "probe_samples")


class ConfigError(ValueError):
    """A config value outside its allowed range; the message is one line."""


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


@dataclass
class DataConfig:
    # Number of input features (columns); one of them carries the label.
    features: int = 32
    # Number of classes; the label is uniform in [0, classes).
    classes: int = 2
    # The column (for sequence data: the time step) that equals the label.
    attention_column: int = 1
    # Samples drawn per seed; validation_split of them are held out for validation.
    samples: int = 10000
    # Fresh samples, drawn from a stream independent of training, to read attention on.
    probe_samples: int = 1000
    # Sequence length for model=lstm (x has shape (samples, time_steps, features)).
    time_steps: int = 20
    # How the label is written into the key: raw = class index, scaled = index mapped to [-1, 1].
    key_encoding: str = "raw"
    # Where the data comes from: default (the key column above), csv (data.path's table),
    # informative (a random linear score of the relevant columns, bucketed into classes) or
    # xor (the label is the xor of the signs of the two relevant columns).
    kind: str = "default"
    # data=csv: the table file (CSV, or Parquet by its .parquet suffix), relative to the
    # directory attnlab runs in.
    path: str = ""
    # data=csv: the label column (text, bool or whole numbers; classes are its distinct values).
    target: str = ""
    # data=csv: the feature columns by name; empty = every numeric column but the target.
    columns: list[str] = field(default_factory=list)
    # The columns known to matter, by name (csv: the table's; synthetic kinds: x0, x1, ...);
    # they define attn_relevant_weight and attn_topk_precision. default: data.attention_column.
    relevant: list[str] = field(default_factory=list)
    # informative and xor: this many of the other columns become noisy copies of relevant
    # columns (distractors that correlate with the label but are not its cause).
    distractors: int = 0
    # The sd of the noise added to a distractor's copy (the relevant columns have sd 1).
    distractor_noise: float = 0.5

    def key_axis_size(self, sequence: bool) -> int:
        """Length of the axis the key lives on: time steps for sequences, else features."""
        return self.time_steps if sequence else self.features

    def validate(self, sequence: bool = False) -> None:
        _require(self.features >= 2, "data.features", self.features, "an integer >= 2")
        _require(self.classes >= 2, "data.classes", self.classes, "an integer >= 2")
        _require(
            2 <= self.time_steps <= MAX_TIME_STEPS,
            "data.time_steps",
            self.time_steps,
            f"an integer in [2, {MAX_TIME_STEPS}]",
        )
        size = self.key_axis_size(sequence)
        axis = "data.time_steps" if sequence else "data.features"
        _require(
            0 <= self.attention_column < size,
            "data.attention_column",
            self.attention_column,
            f"an integer in [0, {axis}={size})",
        )
        _require(
            self.probe_samples >= 1, "data.probe_samples", self.probe_samples, "an integer >= 1"
        )
        _require(
            self.key_encoding in KEY_ENCODINGS,
            "data.key_encoding",
            self.key_encoding,
            f"one of {', '.join(KEY_ENCODINGS)}",
        )
        _require(self.kind in DATA_KINDS, "data.kind", self.kind, f"one of {', '.join(DATA_KINDS)}")
        _require(
            self.kind == "default" or not sequence,
            "data.kind",
            self.kind,
            "default with model.variant=lstm (tables and synthetic families are not sequences)",
        )
        for key in ("path", "target", "columns"):
            value = getattr(self, key)
            _require(self.kind == "csv" or not value, f"data.{key}", value, "only with data=csv")
        if self.kind in ("informative", "xor"):
            self._validate_synthetic()
        elif self.kind == "default":
            _require(
                not self.relevant,
                "data.relevant",
                self.relevant,
                "empty with data=default (its relevant column is data.attention_column)",
            )

    def _validate_synthetic(self) -> None:
        names = [f"x{i}" for i in range(self.features)]
        relevant = self.relevant
        _require(
            all(name in names for name in relevant) and len(set(relevant)) == len(relevant),
            "data.relevant",
            relevant,
            f"distinct column names among x0 ... x{self.features - 1}",
        )
        if self.kind == "xor":
            _require(len(relevant) == 2, "data.relevant", relevant, "two columns with data=xor")
            _require(self.classes == 2, "data.classes", self.classes, "2 with data=xor")
        _require(len(relevant) >= 1, "data.relevant", relevant, "at least one column")
        free = self.features - len(relevant)
        _require(
            0 <= self.distractors <= free,
            "data.distractors",
            self.distractors,
            f"an integer in [0, {free}] (the columns that are not relevant)",
        )
        _require(
            math.isfinite(self.distractor_noise) and self.distractor_noise >= 0,
            "data.distractor_noise",
            self.distractor_noise,
            "a number >= 0",
        )


@dataclass
class ModelConfig:
    # Architecture: dense (the seed), double (attention on inputs and on hidden units), lstm.
    variant: str = "dense"
    # Depth of the attention branch: 1 = one Dense(features, softmax); n adds n-1 Dense before it.
    attn_layers: int = 1
    # Activation of the extra attention-branch layers (attn_layers > 1).
    attn_activation: str = "linear"
    # Width of the Dense layer after the attention multiply (double: the gated hidden units).
    hidden: int = 64
    # Activation of that Dense layer (the seed's is linear).
    hidden_activation: str = "linear"
    # model=lstm only: apply attention over time steps before or after the LSTM.
    attention_position: str = "after"
    # model=lstm only: LSTM units.
    lstm_units: int = 32
    # What multiplies the key's axis (double: the first gate): learned (the softmax Dense),
    # uniform (1/size everywhere, fixed), oracle (1 on data.attention_column, fixed), none
    # (no multiply). The controls that separate what attention buys from what the head does.
    attention: str = "learned"
    # model=custom: the function that builds the model's body, as package.module:function
    # (docs/own-data-and-models.md); importable from the directory attnlab runs in.
    builder: str = ""

    @property
    def sequence(self) -> bool:
        return self.variant == "lstm"

    def validate(self) -> None:
        _require(
            self.variant in MODEL_VARIANTS,
            "model.variant",
            self.variant,
            f"one of {', '.join(MODEL_VARIANTS)}",
        )
        _require(
            1 <= self.attn_layers <= MAX_ATTN_LAYERS,
            "model.attn_layers",
            self.attn_layers,
            f"an integer in [1, {MAX_ATTN_LAYERS}]",
        )
        _require(self.hidden >= 1, "model.hidden", self.hidden, "an integer >= 1")
        _require(self.lstm_units >= 1, "model.lstm_units", self.lstm_units, "an integer >= 1")
        _require(
            self.attention_position in ATTENTION_POSITIONS,
            "model.attention_position",
            self.attention_position,
            f"one of {', '.join(ATTENTION_POSITIONS)}",
        )
        _require(
            self.attention in ATTENTION_MODES,
            "model.attention",
            self.attention,
            f"one of {', '.join(ATTENTION_MODES)}",
        )
        if self.variant == "custom":
            _require(
                bool(BUILDER.match(self.builder)) and _module_found(self.builder),
                "model.builder",
                self.builder,
                "an importable package.module:function (from the directory attnlab runs in "
                "or PYTHONPATH), e.g. examples.custom_gate.gate:build",
            )
        else:
            _require(not self.builder, "model.builder", self.builder, "only with model=custom")
        # A fixed attention has no layers to deepen: refuse rather than ignore attn_layers.
        _require(
            self.attention == "learned" or self.attn_layers == 1,
            "model.attn_layers",
            self.attn_layers,
            f"1 with model.attention={self.attention} (only learned attention has layers)",
        )

    def validate_activations(self) -> None:
        """Checked last: it imports Keras (and TensorFlow, ~2 s)."""
        for key in ("attn_activation", "hidden_activation"):
            value = getattr(self, key)
            _require(_is_activation(value), f"model.{key}", value, "a Keras activation name")
        if self.variant == "custom":
            try:
                load_builder(self.builder)
            except Exception as err:  # the user's module: any error it raises is theirs
                reason = f"{type(err).__name__}: {err}".splitlines()[0]
                _require(False, "model.builder", self.builder, f"a callable function ({reason})")


@dataclass
class TrainerConfig:
    # Passes over the training split.
    epochs: int = 20
    # Samples per gradient step (per seed: every seed sees batches of this size).
    batch_size: int = 64
    # Adam's learning rate.
    learning_rate: float = 0.001
    # Share of each seed's samples held out (the last ones, as Keras' validation_split).
    validation_split: float = 0.2
    # 0 = quiet, 1 = log every epoch's mean loss.
    verbose: int = 0
    # Cores this job trains on (one shard of replicas each, attnlab/engine/train.py); 0 = its
    # launcher's share: all cores, divided by n_jobs under joblib (attnlab/sweep/launchers.py).
    threads: int = 0

    def validate(self, samples: int) -> None:
        _require(self.epochs >= 1, "trainer.epochs", self.epochs, "an integer >= 1")
        _require(self.batch_size >= 1, "trainer.batch_size", self.batch_size, "an integer >= 1")
        _require(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "trainer.learning_rate",
            self.learning_rate,
            "a number > 0",
        )
        _require(
            0 < self.validation_split < 1,
            "trainer.validation_split",
            self.validation_split,
            "a number in (0, 1)",
        )
        _require(self.threads >= 0, "trainer.threads", self.threads, "an integer >= 0")
        n_val, n_train = split_sizes(samples, self.validation_split)
        _require(
            n_val >= 1 and n_train >= self.batch_size,
            "data.samples",
            samples,
            f"enough for one training batch (trainer.batch_size={self.batch_size}) and one "
            f"validation sample at trainer.validation_split={self.validation_split}",
        )


@dataclass
class LoggerConfig:
    # Where curves go besides metrics.json: none, or tensorboard (event files per run,
    # attnlab/runs/tensorboard.py; needs the `tensorboard` extra only to view them).
    kind: str = "none"
    # The sub-directory of the run dir that holds the event files.
    subdir: str = "tensorboard"

    def validate(self) -> None:
        _require(self.kind in LOGGERS, "logger.kind", self.kind, f"one of {', '.join(LOGGERS)}")
        _require(
            bool(self.subdir) and "/" not in self.subdir and self.subdir not in (".", ".."),
            "logger.subdir",
            self.subdir,
            "a plain directory name",
        )


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # The number a job returns to Hydra (for optimizing sweepers such as optuna): this
    # summary metric's mean over the cell's usable seeds, or focus_rate.
    objective: str = "val_accuracy"
    # What the researcher expects, judged in the report (claims.csv, report.md), e.g.
    # "at data.classes=20: focus_rate > 0.5" or "val_accuracy of model.attention=oracle <=
    # learned" (docs/claims.md); not part of a cell's identity.
    claims: list[str] = field(default_factory=list)
    # One model per seed; seed s drives its data draw and initialisation. Last, as in the
    # report's columns (the cell's config, then its seeds).
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])

    def validate(self, activations: bool = True) -> None:
        """Every range check; activations=False skips the one that imports Keras."""
        _require(
            self.objective in OBJECTIVES,
            "objective",
            self.objective,
            f"one of {', '.join(OBJECTIVES)}",
        )
        self.validate_claims()
        self.logger.validate()
        self.model.validate()
        self.data.validate(sequence=self.model.sequence)
        if self.data.kind == "csv":
            validate_table(self)
        self.trainer.validate(self.data.samples)
        _require(len(self.seeds) >= 1, "seeds", self.seeds, "a non-empty list of integers")
        _require(
            len(set(self.seeds)) == len(self.seeds),
            "seeds",
            self.seeds,
            "a list of integers without duplicates",
        )
        _require(min(self.seeds) >= 0, "seeds", self.seeds, "integers >= 0")
        if activations:
            self.model.validate_activations()

    def validate_claims(self) -> None:
        """Every claim parses and names known metrics and keys (attnlab.engine.claims)."""
        from attnlab.engine.claims import ClaimError, parse_claims  # deferred: loads pandas

        try:
            parse_claims(self.claims, [k for k in flatten(self) if k not in ("seeds", "claims")])
        except ClaimError as err:
            raise ConfigError(str(err)) from None


def validate_table(cfg: ExperimentConfig) -> None:
    """data=csv: the table exists and fits the config (sizes, relevant columns, enough rows
    for the split). Reads the file (cached: attnlab.engine.tables.read_table)."""
    d, trainer = cfg.data, cfg.trainer
    table = _table(d)
    derived = {"features": len(table.names), "classes": len(table.classes), "samples": table.rows}
    for key, value in derived.items():
        what = "rows" if key == "samples" else f"{key} of the table"
        _require(
            getattr(d, key) == value or (key == "samples" and 0 < d.samples <= value),
            f"data.{key}",
            getattr(d, key),
            f"the {what}: {value}"
            + (" or fewer" if key == "samples" else "")
            + " (left at 0 it is filled in from the table)",
        )
    n_val, n_train = split_sizes(d.samples, trainer.validation_split)
    _require(
        n_val >= 1 and n_train >= trainer.batch_size,
        "data.path",
        d.path,
        f"a table with enough rows for one training batch (trainer.batch_size="
        f"{trainer.batch_size}) and one validation row at trainer.validation_split="
        f"{trainer.validation_split}; data.samples={d.samples} of its {table.rows} rows",
    )
    _require(
        1 <= d.probe_samples <= n_val,
        "data.probe_samples",
        d.probe_samples,
        f"an integer in [1, {n_val}]: the probe rows are the validation split's "
        "(left at 0: all of them)",
    )
    outside = [name for name in d.relevant if name not in table.names]
    _require(
        not outside and len(set(d.relevant)) == len(d.relevant),
        "data.relevant",
        d.relevant,
        f"distinct feature columns (not features: {', '.join(outside) or 'none'}; features: "
        f"{', '.join(table.names[:20])}{' ...' if len(table.names) > 20 else ''})",
    )


def fill_from_table(cfg: ExperimentConfig) -> ExperimentConfig:
    """data=csv: the sizes left at 0 (FROM_TABLE) set from the table, so every process
    (the sweep's parent, its jobs) names and trains the cell with the same numbers."""
    d = cfg.data
    if d.kind != "csv" or all(getattr(d, key) for key in FROM_TABLE) or not d.path:
        return cfg
    table = _table(d)
    d.features = d.features or len(table.names)
    d.classes = d.classes or len(table.classes)
    d.samples = d.samples or table.rows
    d.probe_samples = d.probe_samples or split_sizes(d.samples, cfg.trainer.validation_split)[0]
    return cfg


def _table(d: DataConfig) -> Any:
    from attnlab.engine.tables import TableError, read_table  # deferred: reads pandas

    try:
        return read_table(d.path, d.target, d.columns)
    except TableError as err:
        raise ConfigError(str(err)) from None


def split_sizes(samples: int, validation_split: float) -> tuple[int, int]:
    """(validation, training) sample counts, split as Keras' fit(validation_split=...) does."""
    n_train = int(samples * (1.0 - validation_split))
    return samples - n_train, n_train


def _module_found(builder: str) -> bool:
    """Whether builder's module can be found, without running it (the sweep's parent never
    loads TensorFlow, which the module surely imports): its parent packages are imported."""
    import importlib.util

    module = builder.split(":")[0]
    with _cwd_on_path():
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False


def load_builder(builder: str) -> Any:
    """The function model.builder names (imports its module: Keras, TensorFlow)."""
    import importlib

    module, name = builder.split(":")
    with _cwd_on_path():
        function = getattr(importlib.import_module(module), name)
    if not callable(function):
        raise TypeError(f"{name} is not callable")
    return function


class _cwd_on_path:
    """The current directory on sys.path while a user's module is found or imported (the
    `attnlab` script, unlike `python -m attnlab`, does not put it there)."""

    def __enter__(self) -> None:
        import os
        import sys

        self.added = os.getcwd() not in sys.path and "" not in sys.path
        if self.added:
            sys.path.insert(0, os.getcwd())

    def __exit__(self, *exc: object) -> None:
        import os
        import sys

        if self.added and os.getcwd() in sys.path:
            sys.path.remove(os.getcwd())


def _is_activation(name: str) -> bool:
    import keras  # deferred: importing Keras loads TensorFlow (~2 s)

    try:
        keras.activations.get(name)
    except (ValueError, TypeError):
        return False
    return True


def from_hydra(cfg: Mapping[str, Any]) -> ExperimentConfig:
    """Convert the composed Hydra config (hydra node excluded; a DictConfig or any mapping
    of the same shape) into typed dataclasses.

    The schemas reject unknown keys at compose time, except ones added with `+key=...`
    (Hydra's force-add), which are caught here.
    """
    groups = {
        "data": DataConfig,
        "model": ModelConfig,
        "trainer": TrainerConfig,
        "logger": LoggerConfig,
    }
    top = (*groups, "seeds", "objective", "claims")
    for key in cfg:
        _require(key in top, str(key), cfg[key], f"not a config key (allowed: {', '.join(top)})")
    for group, schema in groups.items():
        allowed = [f.name for f in fields(schema)]
        for key in cfg[group]:
            _require(
                key in allowed,
                f"{group}.{key}",
                cfg[group][key],
                f"not a key of {group} (allowed: {', '.join(allowed)})",
            )
    data = dict(cfg["data"])
    for key in ("columns", "relevant"):  # OmegaConf's ListConfig -> list, as flatten shows
        if key in data:
            data[key] = [str(v) for v in data[key]]
    exp = ExperimentConfig(
        data=DataConfig(**data),
        model=ModelConfig(**cfg["model"]),
        trainer=TrainerConfig(**cfg["trainer"]),
        logger=LoggerConfig(**cfg["logger"]),
        objective=cfg["objective"],
        claims=[str(c) for c in cfg.get("claims", [])],
        seeds=list(cfg["seeds"]),
    )
    return fill_from_table(exp)


def flatten(cfg: ExperimentConfig) -> dict[str, Any]:
    """Dotted key -> value for every config value, e.g. {"data.classes": 20, "seeds": [0, 1]}."""
    out: dict[str, Any] = {}
    for group in ("data", "model", "trainer", "logger"):
        for key, value in vars(getattr(cfg, group)).items():
            out[f"{group}.{key}"] = value
    out["objective"] = cfg.objective
    out["claims"] = list(cfg.claims)
    out["seeds"] = list(cfg.seeds)
    return out


def dotted(tree: dict[Any, Any], prefix: str = "") -> dict[str, Any]:
    """{"data": {"classes": 5}, "seeds": [0]} -> {"data.classes": 5, "seeds": [0]}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
