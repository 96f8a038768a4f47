"""Model variants, presets and the faithfulness (ablation) metrics."""

from pathlib import Path

import keras
import numpy as np
import pytest

from attnlab.engine.config import from_hydra
from attnlab.engine.data import make_replica_data
from attnlab.engine.experiment import ablation_drops, train_and_measure
from attnlab.engine.models import ATTENTION_LAYER, attention_model, build_model

from .conftest import compose_config

PRESETS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml"))


def test_all_presets_are_listed():
    assert {
        "capacity",
        "blog_binary",
        "blog_classes",
        "blog_wide",
        "blog_deep",
        "blog_all",
        "double",
        "lstm_before",
        "lstm_after",
    } <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_validates_and_builds(preset):
    sweeper = ["hydra/sweeper=optuna"] if preset.endswith("_optuna") else []
    cfg = from_hydra(compose_config([f"+experiment={preset}", "seeds=[0,1]", *sweeper]))
    cfg.validate()
    model = build_model(cfg.model, cfg.data, cfg.seeds)
    key_axis = cfg.data.time_steps if cfg.model.sequence else cfg.data.features
    sample = (
        (cfg.data.time_steps, cfg.data.features) if cfg.model.sequence else (cfg.data.features,)
    )
    x = np.zeros((3, 2, *sample), np.float32)
    assert model(x).shape == (3, 2, cfg.data.classes)
    alpha = np.asarray(attention_model(model)(x))
    assert alpha.shape == (3, 2, key_axis)
    np.testing.assert_allclose(alpha.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize(
    ("overrides", "key_axis"),
    [
        (["model=double"], 32),
        (
            [
                "model=lstm",
                "model.attention_position=before",
                "data.features=2",
                "data.attention_column=10",
            ],
            20,
        ),
        (
            [
                "model=lstm",
                "model.attention_position=after",
                "data.features=2",
                "data.attention_column=10",
            ],
            20,
        ),
    ],
    ids=["double", "lstm_before", "lstm_after"],
)
def test_variant_trains_and_reads_attention_over_the_key_axis(make_config, overrides, key_axis):
    cfg = make_config(
        *overrides, "data.samples=4000", "trainer.epochs=3", "trainer.learning_rate=0.01"
    )
    records, attention, _ = train_and_measure(cfg)
    assert len(attention) == 2 * key_axis  # one weight per key-axis position per seed
    assert attention.groupby("seed")["weight"].sum().to_numpy() == pytest.approx([1, 1], abs=1e-4)
    for r in records:
        assert r["status"] == "completed"
        assert 0 <= r["attn_peak_column"] < key_axis
        assert 0 <= r["attn_entropy"] <= 1
        assert r["probe_accuracy"] > 0.8  # chance is 0.5: every variant learns the key


def test_double_gates_both_the_inputs_and_the_hidden_units(make_config):
    cfg = make_config("model=double")
    model = build_model(cfg.model, cfg.data, cfg.seeds)
    assert model.get_layer(ATTENTION_LAYER).output.shape[-1] == 32  # over the inputs
    assert model.get_layer("attention_vec_2").output.shape[-1] == 16  # over Dense(16)


def test_scaled_key_encoding_maps_classes_onto_minus_one_one(make_config):
    cfg = make_config("data.key_encoding=scaled", "data.classes=5")
    data = make_replica_data(cfg.data, cfg.seeds, 0.2)
    key = data.x_train[:, :, 1]
    np.testing.assert_allclose(key, 2 * data.y_train / 4 - 1, rtol=1e-6)
    assert key.min() == -1 and key.max() == 1


def _column_model(column):
    """A hand-built model that predicts the binary label from one column only."""
    inputs = keras.Input((2, 32))  # (batch, replicas, features)
    p1 = keras.layers.Lambda(lambda x: keras.ops.clip(x[..., column : column + 1], 0.0, 1.0))(
        inputs
    )
    probs = keras.layers.Lambda(lambda p: keras.ops.concatenate([1 - p, p], axis=-1))(p1)
    return keras.Model(inputs, probs)


@pytest.mark.parametrize(
    ("column", "peak", "key_drop", "peak_drop"),
    [(1, 5, 0.5, 0.0), (5, 5, 0.0, 0.5), (5, 7, 0.0, 0.0)],
)
def test_ablation_drop_on_hand_built_models(make_config, column, peak, key_drop, peak_drop):
    """Column 5 of the probe set is made a copy of the key, so a model can depend on the key
    (column 1) or on column 5 alone. Each drop is that of the column ablated: the key's, and
    the most-attended non-key column's (`peak`, set by alpha), never another's."""
    cfg = make_config("data.probe_samples=4000")
    data = make_replica_data(cfg.data, cfg.seeds, 0.2)
    x_probe = data.x_probe.copy()  # (probe, replicas, features)
    x_probe[..., 5] = x_probe[..., cfg.data.attention_column]
    model = _column_model(column)
    probs = np.asarray(model(x_probe))
    probe_acc = (probs.argmax(-1) == data.y_probe).mean(axis=0)
    np.testing.assert_allclose(probe_acc, 1.0)  # either column carries the label
    alpha = np.full((4000, 2, 32), 0.01)
    alpha[:, :, peak] = 0.5  # the most-attended non-key column
    alpha[:, :, cfg.data.attention_column] = 0.9  # the key's weight is never the peak's
    keys = np.full(len(cfg.seeds), cfg.data.attention_column)
    drops = ablation_drops(model, x_probe, data.y_probe, alpha, keys, cfg.seeds, probe_acc)
    # Shuffling the column the model reads drops it to chance (0.5); any other costs nothing.
    np.testing.assert_allclose(drops["key"], key_drop, atol=0.03)
    np.testing.assert_allclose(drops["peak"], peak_drop, atol=0.03)
