"""Cells trained together as one model give the numbers they give alone."""

import numpy as np
import pytest

from attnlab.engine.config import DataConfig, ModelConfig, TrainerConfig
from attnlab.engine.data import make_replica_data
from attnlab.engine.experiment import train_and_measure, train_cells
from attnlab.engine.models import ShardedModel, build_model
from attnlab.engine.train import fit
from attnlab.sweep import packing


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize("shard_replicas", [64, 2])  # 64: one shard; 2: shards mix cells
def test_cells_trained_together_give_the_numbers_they_give_alone(
    make_config, monkeypatch, shard_replicas
):
    monkeypatch.setattr("attnlab.engine.train.SHARD_REPLICAS", shard_replicas)
    cells = [
        make_config("data.classes=2"),
        make_config("data.classes=7", "data.attention_column=4", "seeds=[0,5,9]"),
        make_config("data.classes=4", "data.key_encoding=scaled"),
    ]
    together = train_cells(cells)
    for cfg, (records, attention, history) in zip(cells, together, strict=True):
        alone, alone_attention, alone_history = train_and_measure(cfg)
        # Each cell its own curves: its seeds, every epoch, the numbers it gets alone.
        assert list(history["seed"]) == [s for s in cfg.seeds for _ in range(4)]
        np.testing.assert_allclose(history["train_loss"], alone_history["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(
            history["val_accuracy"], alone_history["val_accuracy"], atol=0.005
        )
        last = history[history["epoch"] == 4]
        assert list(last["val_accuracy"]) == [r["val_accuracy"] for r in records]
        assert [r["seed"] for r in records] == list(cfg.seeds)
        for packed, single in zip(records, alone, strict=True):
            assert packed["status"] == single["status"] == "completed"
            assert packed["val_accuracy"] == pytest.approx(single["val_accuracy"], abs=0.005)
            # Equal up to float32 rounding, as a seed among other seeds.
            assert packed["attn_key_weight"] == pytest.approx(single["attn_key_weight"], abs=1e-4)
            assert packed["attn_peak_column"] == single["attn_peak_column"]
            assert packed["key_ablation_drop"] == pytest.approx(
                single["key_ablation_drop"], abs=0.005
            )
        np.testing.assert_allclose(attention["weight"], alone_attention["weight"], atol=1e-4)


def test_padded_logits_get_no_weight_and_no_probability():
    data_cfgs = [DataConfig(classes=c, samples=500, probe_samples=50) for c in (2, 5)]
    seeds = [0, 1]
    model = build_model(ModelConfig(), data_cfgs[0], seeds, classes=[2, 5])
    data = make_replica_data(data_cfgs, seeds, 0.2)
    keys = np.array([1, 1])
    fit(ShardedModel([model]), data, seeds, TrainerConfig(epochs=2), np.array([2, 5]), keys)
    kernel = model.get_layer("head").kernel.numpy()  # (replicas, hidden, 5)
    assert np.all(kernel[0, :, 2:] == 0.0)  # replica 0 has 2 classes: columns 2..4 unused
    assert np.any(kernel[1, :, 2:] != 0.0)
    probs = np.asarray(model(data.x_probe))  # (probe, replicas, 5)
    assert np.all(probs[:, 0, 2:] == 0.0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_plan_packs_groups_cells_that_share_a_model(make_config):
    a2, a5, a20 = (make_config(f"data.classes={c}") for c in (2, 5, 20))
    deep = make_config("data.classes=5", "model.attn_layers=2")
    wide = make_config("data.classes=5", "data.features=64")
    scaled = make_config("data.classes=3", "data.key_encoding=scaled", "seeds=[4]")
    packs = packing.plan_packs([a20, deep, a2, wide, a5, scaled], max_replicas=128)
    assert packs == [[a2, scaled, a5, a20], [deep], [wide]]  # by class count within a pack
    # Two seeds a cell, at most four seeds a pack: a cell is never split.
    assert packing.plan_packs([a20, a2, a5], max_replicas=4) == [[a2, a5], [a20]]
    assert packing.plan_packs([a2], max_replicas=1) == [[a2]]
