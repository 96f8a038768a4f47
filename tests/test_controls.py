"""model.attention: the controls (uniform, oracle, none) beside learned attention."""

import math

import numpy as np
import pytest
from hydra import compose, initialize_config_module

from attnlab.engine.config import ConfigError, from_hydra
from attnlab.engine.data import make_replica_data
from attnlab.engine.experiment import train_and_measure, train_cells
from attnlab.engine.metrics import ATTENTION_METRICS, NO_ATTENTION
from attnlab.engine.models import ATTENTION_LAYER, ShardedModel, attention_model, build_model
from attnlab.engine.train import fit
from attnlab.runs.cell import run_experiment
from attnlab.runs.report import write_report

from .conftest import compose_config

MODES = ("learned", "uniform", "oracle", "none")
VARIANTS = {
    "dense": [],
    "double": ["model=double"],
    "lstm_before": [
        "model=lstm",
        "model.attention_position=before",
        "data.features=2",
        "data.time_steps=8",
        "data.attention_column=5",
    ],
    "lstm_after": [
        "model=lstm",
        "model.attention_position=after",
        "data.features=2",
        "data.time_steps=8",
        "data.attention_column=5",
    ],
}


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_mode_trains_and_fixed_modes_report_their_vectors(make_config, variant):
    """One model holds all four modes (two seeds each); each reports its own attention."""
    cells = [
        make_config(*VARIANTS[variant], f"model.attention={mode}", "trainer.epochs=2")
        for mode in MODES
    ]
    results = dict(zip(MODES, train_cells(cells), strict=True))
    cfg = cells[0]
    key = cfg.data.attention_column
    size = cfg.data.key_axis_size(cfg.model.sequence)
    for mode, (records, _attention, curves) in results.items():
        assert [r["status"] for r in records] == ["completed", "completed"], mode
        assert all(0 <= r["val_accuracy"] <= 1 for r in records)
        if mode == "none":  # no attention, no curve of it
            assert curves["attn_key_weight"].isna().all()
        elif mode == "oracle":
            assert (curves["attn_key_weight"] == 1.0).all()
    oracle, uniform = results["oracle"], results["uniform"]
    for r in oracle[0]:  # exactly one-hot on the key
        assert r["attn_key_weight"] == 1.0 and r["attn_peak_column"] == key
        assert r["attn_hit_rate"] == 1.0 and r["attn_entropy"] == 0.0
    weights = oracle[1].pivot(index="seed", columns="column", values="weight").to_numpy()
    np.testing.assert_array_equal(weights, np.eye(size)[[key, key]])
    for r in uniform[0]:  # exactly 1/size everywhere (size a power of 2: exact in float32)
        assert r["attn_key_weight"] == 1 / size and r["attn_margin"] == 0.0
        assert r["attn_entropy"] == pytest.approx(1.0, abs=1e-12)
    assert (uniform[1]["weight"] == 1 / size).all()
    for r in results["none"][0]:
        assert all(math.isnan(r[m]) for m in ATTENTION_METRICS)
        assert math.isnan(r["peak_ablation_drop"]) and math.isfinite(r["key_ablation_drop"])
    assert results["none"][1]["weight"].isna().all()
    for r in results["learned"][0]:
        assert 0 < r["attn_key_weight"] < 1


def test_fixed_modes_build_no_attention_weights_and_none_no_gate(make_config):
    cfg = make_config()
    trainable = {}
    for mode in MODES:
        model = build_model(cfg.model, cfg.data, cfg.seeds, attention=[mode] * 2)
        names = {layer.name for layer in model.layers}
        trainable[mode] = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert (ATTENTION_LAYER in names) == (mode != "none")
        assert ("attention_mul" in names) == (mode != "none")
    attention_weights = 2 * (32 * 32 + 32)  # two replicas' Dense(32, softmax)
    assert trainable["learned"] - trainable["oracle"] == attention_weights
    assert trainable["uniform"] == trainable["oracle"] == trainable["none"]
    # A model without a gate multiplies its inputs by ones, in effect; that is what it reads.
    gate_free = build_model(cfg.model, cfg.data, cfg.seeds, attention=["none"] * 2)
    x = np.random.default_rng(0).standard_normal((3, 2, 32)).astype(np.float32)
    np.testing.assert_array_equal(attention_model(gate_free)(x), np.ones((3, 2, 32)))


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize("shard_replicas", [64, 2])  # 64: one shard; 2: shards mix modes
def test_cells_of_every_mode_trained_together_give_their_numbers_alone(
    make_config, monkeypatch, shard_replicas
):
    monkeypatch.setattr("attnlab.engine.train.SHARD_REPLICAS", shard_replicas)
    cells = [
        make_config("model.attention=none", "data.classes=5"),
        make_config("model.attention=learned", "data.classes=2"),
        make_config("model.attention=oracle", "data.classes=7", "data.attention_column=4"),
        make_config("model.attention=uniform", "data.classes=3", "seeds=[3]"),
        make_config("model.attention=learned", "data.classes=5", "data.attention_column=9"),
    ]
    for cfg, (records, attention, _) in zip(cells, train_cells(cells), strict=True):
        alone, alone_attention, _ = train_and_measure(cfg)
        assert [r["seed"] for r in records] == list(cfg.seeds)
        for packed, single in zip(records, alone, strict=True):
            assert packed["status"] == single["status"] == "completed"
            # Tolerances of tests/test_packing.py: equal up to float32 rounding.
            assert packed["val_accuracy"] == pytest.approx(single["val_accuracy"], abs=0.005)
            assert packed["probe_accuracy"] == pytest.approx(single["probe_accuracy"], abs=0.005)
            assert packed["key_ablation_drop"] == pytest.approx(
                single["key_ablation_drop"], abs=0.005
            )
            assert packed["attn_key_weight"] == pytest.approx(
                single["attn_key_weight"], abs=1e-4, nan_ok=True
            )
        np.testing.assert_allclose(attention["weight"], alone_attention["weight"], atol=1e-4)


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_a_learned_replica_among_fixed_ones_trains_its_attention_as_alone(make_config):
    """In a mixed model the softmax Dense holds the learned replicas' slices only, and the
    fixed replicas add exactly zero to their gradients: a learned replica ends with the
    attention weights it ends with alone."""
    cfg = make_config("trainer.epochs=2")
    seeds = [0, 1, 2, 3]
    data = make_replica_data(cfg.data, seeds, 0.2)
    mixed = build_model(
        cfg.model, cfg.data, seeds, attention=["oracle", "learned", "none", "uniform"]
    )
    keys = np.full(4, cfg.data.attention_column)
    fit(ShardedModel([mixed]), data, seeds, cfg.trainer, np.full(4, cfg.data.classes), keys)
    layer = mixed.get_layer("attention_learned")
    assert layer.kernel.shape == (1, 32, 32)  # seed 1's slice only
    alone = build_model(cfg.model, cfg.data, [1])
    alone_data = make_replica_data(cfg.data, [1], 0.2)
    fit(ShardedModel([alone]), alone_data, [1], cfg.trainer, np.full(1, cfg.data.classes), keys[:1])
    reference = alone.get_layer(ATTENTION_LAYER)
    np.testing.assert_allclose(layer.kernel.numpy(), reference.kernel.numpy(), atol=1e-6)
    np.testing.assert_allclose(layer.bias.numpy(), reference.bias.numpy(), atol=1e-6)
    assert np.abs(layer.kernel.numpy() - layer.kernel.numpy().mean()).max() > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.attention=random"],
            "model.attention='random' is not allowed: one of learned, uniform, oracle, none",
        ),
        (
            ["model.attention=oracle", "model.attn_layers=2"],
            "model.attn_layers=2 is not allowed: 1 with model.attention=oracle "
            "(only learned attention has layers)",
        ),
    ],
)
def test_a_mode_that_cannot_apply_is_refused_in_one_line_before_training(
    make_config, tmp_path, overrides, message
):
    cfg = make_config(*overrides)
    with pytest.raises(ConfigError) as err:
        run_experiment(cfg, tmp_path)
    assert str(err.value) == message
    assert list(tmp_path.iterdir()) == []  # refused before training: nothing written


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_report_says_why_the_attention_columns_of_none_are_empty(make_config, tmp_path):
    for mode in ("none", "oracle", "learned"):
        cfg = make_config(f"model.attention={mode}", "trainer.epochs=1")
        run_experiment(cfg, tmp_path / f"model.attention={mode}")
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert f"in the cells without attention: {NO_ATTENTION}." in text
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()]
    cells = {row[0]: row for row in rows if row[0] in ("none", "oracle", "learned")}
    # mode | n_seeds | focus rate | val_accuracy | acc focused / unfocused | attn_key_weight
    # | key_ablation_drop | still improving
    assert cells["none"][2] == cells["none"][5] == "–"
    assert cells["none"][3] != "–" and cells["none"][6] != "–"
    assert cells["oracle"][2].startswith("2/2 ") and cells["oracle"][5] == "1.000 [1.000, 1.000]"
    for mode in ("none", "oracle", "learned"):  # every cell wrote its files
        assert (tmp_path / f"model.attention={mode}" / "attention.png").exists()


PRESETS = {
    "blog_controls": {
        "model.attention": "learned,uniform,oracle,none",
        "data.classes": "2,5,20,30,50,100",
    },
    "blog_budget": {
        "trainer.epochs": "20,80,320",
        "data.classes": "20,50,100",
        "model.attention": "learned,oracle",
    },
    "blog_nonlinear": {
        "model.hidden_activation": "linear,relu,tanh",
        "data.classes": "20,50,100",
    },
}


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize("preset", PRESETS)
def test_control_presets_compose_with_ten_seeds_and_their_grids(preset):
    with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
        cfg = compose("config", [f"+experiment={preset}"], return_hydra_config=True)
    assert list(cfg.seeds) == list(range(10))
    assert dict(cfg.hydra.sweeper.params) == PRESETS[preset]
    exp = from_hydra(compose_config([f"+experiment={preset}", "seeds=[0]"]))
    exp.validate()  # the defaults the sweep varies from
    for key, values in PRESETS[preset].items():  # every cell of the grid is valid
        for value in values.split(","):
            one = from_hydra(compose_config([f"+experiment={preset}", f"{key}={value}"]))
            one.validate()


def test_a_diverged_learned_replica_leaves_the_fixed_ones_finite(make_config):
    cfg = make_config()
    modes = ["oracle", "learned", "none", "uniform"]
    model = build_model(cfg.model, cfg.data, [0, 1, 2, 3], attention=modes)
    kernel = model.get_layer("attention_learned").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    x = np.random.default_rng(0).standard_normal((5, 4, 32)).astype(np.float32)
    probs = np.asarray(model(x))  # (batch, replicas, classes)
    assert np.isnan(probs[:, 1]).all()
    assert np.isfinite(probs[:, [0, 2, 3]]).all()
