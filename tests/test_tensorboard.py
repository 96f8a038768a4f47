"""logger=tensorboard: per-seed, per-epoch scalars and the HParams summary, read back."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from attnlab.engine.config import flatten
from attnlab.runs.tensorboard import hparam_values, write_events


def _history() -> pd.DataFrame:
    rows = []
    for seed in (0, 3):
        for epoch in (1, 2, 3):
            rows.append(
                {
                    "seed": seed,
                    "epoch": epoch,
                    "train_loss": 1.0 / epoch + seed,
                    "val_accuracy": 0.5 + 0.1 * epoch,
                    # seed 3 diverges in epoch 3: its attention number is NaN there
                    "attn_key_weight": math.nan if (seed, epoch) == (3, 3) else 0.2 * epoch,
                }
            )
    return pd.DataFrame(rows)


def _read(seed_dir):
    """{tag: {step: value}} of the scalars, and the plugin names of every summary."""
    import tensorflow as tf

    scalars: dict[str, dict[int, float]] = {}
    plugins = set()
    for path in sorted(seed_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                plugins.add(plugin)
                if plugin == "scalars":
                    number = float(tf.make_ndarray(value.tensor))
                    scalars.setdefault(value.tag, {})[event.step] = number
    return scalars, plugins


def test_events_hold_each_seeds_curves_and_the_hparams(make_config, tmp_path):
    run_dir = tmp_path / "data.classes=5"
    hparams = flatten(make_config("data.classes=5"))
    dirs = write_events(run_dir, _history(), hparams)
    assert dirs == [run_dir / "tensorboard" / "seed_0", run_dir / "tensorboard" / "seed_3"]
    scalars, plugins = _read(dirs[1])
    assert scalars["train_loss"] == pytest.approx({1: 4.0, 2: 3.5, 3: 4.0 / 3 + 2})
    assert scalars["val_accuracy"] == pytest.approx({1: 0.6, 2: 0.7, 3: 0.8})
    assert scalars["attn_key_weight"] == pytest.approx({1: 0.2, 2: 0.4})  # NaN skipped
    assert {"scalars", "hparams"} <= plugins


def test_hparams_summary_carries_the_config(make_config, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams = flatten(make_config("data.classes=5", "model.attn_layers=2"))
    (seed_dir,) = write_events(tmp_path / "run", _history().query("seed == 0"), hparams)
    acc = EventAccumulator(str(seed_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["data.classes"].number_value == 5
    assert info.hparams["model.attn_layers"].number_value == 2
    assert info.hparams["seeds"].string_value == "[0, 1]"
    assert info.hparams["seed"].number_value == 0
    assert (
        info.group_name == "run/seed_0" and info.hparams["objective"].string_value == "val_accuracy"
    )


def test_hparam_values_keep_scalars_and_write_lists_as_json():
    assert hparam_values({"a": 1, "b": True, "c": "x", "d": 0.5, "seeds": [0, 1]}) == {
        "a": 1,
        "b": True,
        "c": "x",
        "d": 0.5,
        "seeds": "[0, 1]",
    }


def test_history_without_the_columns_is_refused(tmp_path):
    with pytest.raises(ValueError, match="attn_key_weight"):
        write_events(tmp_path, _history().drop(columns="attn_key_weight"), {})


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_a_run_with_logger_tensorboard_writes_its_curves_as_events(make_config, tmp_path):
    import json

    from attnlab.runs.cell import run_experiment

    doc = run_experiment(make_config("logger=tensorboard", "trainer.epochs=2"), tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    for run in doc["runs"]:
        scalars, plugins = _read(tmp_path / "tensorboard" / f"seed_{run['seed']}")
        assert sorted(scalars["val_accuracy"]) == [1, 2] and {"hparams"} <= plugins
        # The events hold the same numbers as history.csv and metrics.json.
        assert scalars["val_accuracy"][2] == pytest.approx(run["val_accuracy"], abs=1e-6)
        mine = history[history["seed"] == run["seed"]]
        assert scalars["train_loss"][1] == pytest.approx(mine["train_loss"].iloc[0], abs=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text())["runs"] == doc["runs"]
