"""Real TensorFlow training on shrunk configs: convergence, focus, seeds, determinism, files."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from attnlab.engine.experiment import train_and_measure
from attnlab.runs.cell import run_experiment

RECORD_KEYS = [
    "seed",
    "status",
    "val_accuracy",
    "probe_accuracy",
    "attn_key_weight",
    "attn_peak_column",
    "attn_peak_weight",
    "attn_focused",
    "attn_hit_rate",
    "attn_key_rank",
    "attn_entropy",
    "attn_margin",
    "attn_peak_column_name",
    "attn_relevant_weight",
    "attn_topk_precision",
    "key_ablation_drop",
    "peak_ablation_drop",
    "train_seconds",
    "epochs_run",
    "still_improving",
]


def _numbers(record):
    return {k: v for k, v in record.items() if k != "train_seconds"}


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_binary_case_learns_and_attends_to_column_1(make_config):
    # 4000 samples, 3 epochs: a short run, at a learning rate that converges in it.
    cfg = make_config("data.samples=4000", "trainer.epochs=3", "trainer.learning_rate=0.01")
    records, attention, _ = train_and_measure(cfg)
    assert [r["seed"] for r in records] == [0, 1]
    for r in records:
        assert r["status"] == "completed"
        assert r["val_accuracy"] > 0.99
        assert r["probe_accuracy"] > 0.99
        assert r["attn_focused"] is True and r["attn_peak_column"] == 1
        assert r["attn_key_rank"] == 1 and r["attn_margin"] > 0
        assert r["key_ablation_drop"] > 0.3  # shuffling the key costs ~half the accuracy
        assert abs(r["peak_ablation_drop"]) < 0.05
    assert len(attention) == 2 * 32
    sums = attention.groupby("seed")["weight"].sum()
    assert sums.to_numpy() == pytest.approx([1.0, 1.0], abs=1e-5)


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize("others", [5, 32])
def test_seed_gives_same_numbers_alone_or_among_others(make_config, others):
    seeds = ",".join(str(s) for s in range(others))
    alone = train_and_measure(make_config("seeds=[3]", "data.classes=5"))[0][0]
    among = train_and_measure(make_config(f"seeds=[{seeds}]", "data.classes=5"))[0][3]
    assert among["seed"] == alone["seed"] == 3
    assert among["val_accuracy"] == pytest.approx(alone["val_accuracy"], abs=0.005)
    assert among["attn_key_weight"] == pytest.approx(alone["attn_key_weight"], abs=0.005)
    # In fact bit for bit equal on this machine; allow for a matmul library that sums in
    # another order for another number of replicas.
    assert among["attn_key_weight"] == pytest.approx(alone["attn_key_weight"], abs=1e-4)
    assert among["attn_peak_column"] == alone["attn_peak_column"]


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_same_config_gives_same_numbers(make_config):
    cfg = make_config("data.classes=5", "seeds=[7]")
    first, second = train_and_measure(cfg)[0], train_and_measure(cfg)[0]
    assert [_numbers(r) for r in first] == [_numbers(r) for r in second]


def test_exploding_learning_rate_is_recorded_as_diverged(make_config):
    result = train_and_measure(make_config("trainer.learning_rate=1000", "data.classes=20"))
    for r in result.records:
        assert r["status"] == "diverged"
        assert math.isnan(r["val_accuracy"]) and math.isnan(r["attn_key_weight"])
        assert math.isnan(r["still_improving"])
        assert 1 <= r["epochs_run"] <= 4
        # Its curves end in the epoch it blew up, with the loss that blew it up.
        rows = result.history[result.history["seed"] == r["seed"]]
        assert list(rows["epoch"]) == list(range(1, r["epochs_run"] + 1))
        last = rows.iloc[-1]
        assert not last["train_loss"] <= 10 * math.log(20)  # NaN, inf or far above
        assert math.isnan(last["val_accuracy"]) and math.isnan(last["attn_key_weight"])


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_run_writes_metrics_attention_csv_and_png(make_config, tmp_path):
    cfg = make_config("trainer.epochs=1")
    run_experiment(cfg, tmp_path)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["config"]["data.classes"] == 2 and doc["config"]["seeds"] == [0, 1]
    assert [list(r) for r in doc["runs"]] == [RECORD_KEYS, RECORD_KEYS]
    attention = pd.read_csv(tmp_path / "attention.csv")
    assert list(attention.columns) == ["seed", "column", "weight", "column_name"]
    assert len(attention) == 2 * 32
    assert (tmp_path / "attention.png").stat().st_size > 10_000
    assert not list(tmp_path.glob(".*"))  # no temp files left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_a_billion_epochs_cost_only_the_epochs_trained(make_config):
    # Nothing is allocated per configured epoch (the sample orders once took 11.9 GiB at a
    # million epochs): every seed blows up within a few epochs and training stops there.
    cfg = make_config("trainer.learning_rate=1000", "data.classes=20", "trainer.epochs=1000000000")
    result = train_and_measure(cfg)
    assert [r["status"] for r in result.records] == ["diverged", "diverged"]
    assert len(result.history) == sum(r["epochs_run"] for r in result.records) <= 8


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_run_writes_history_csv_whose_last_epoch_is_metrics_json(make_config, tmp_path):
    cfg = make_config("data.classes=3", "seeds=[0,4,9]")  # 4 epochs, 400 validation samples
    run_experiment(cfg, tmp_path)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns) == [
        "seed",
        "epoch",
        "train_loss",
        "val_accuracy",
        "attn_key_weight",
    ]
    assert list(history["seed"]) == [0] * 4 + [4] * 4 + [9] * 4
    assert list(history["epoch"]) == [1, 2, 3, 4] * 3
    assert history.notna().all().all()
    counts = history["val_accuracy"] * 400  # correct samples of 400
    np.testing.assert_allclose(counts, counts.round(), atol=1e-9)
    assert history["attn_key_weight"].between(0, 1).all()
    last = history[history["epoch"] == 4].set_index("seed")
    for record in doc["runs"]:
        assert record["val_accuracy"] == last.loc[record["seed"], "val_accuracy"]  # exactly
        assert isinstance(record["still_improving"], bool)
    first = history[history["epoch"] == 1].set_index("seed")
    assert (last["train_loss"] < first["train_loss"]).all()  # it trained


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_training_freezes_the_imported_heap_and_shards_measure_as_one(make_config):
    """The first training of a process takes what is alive then out of the cyclic garbage
    collector (gc.freeze: each full collection walked all of TensorFlow and Keras, ~0.2 s).
    And shards measured side by side on their own threads give what one shard gives: 8 seeds
    as two shards (trainer.threads=2) against one (threads=1)."""
    import gc

    seeds = "seeds=[0,1,2,3,4,5,6,7]"
    two = train_and_measure(make_config(seeds, "data.classes=5", "trainer.threads=2"))[0]
    assert gc.get_freeze_count() > 100_000  # TensorFlow and Keras at least: ~400,000 objects
    one = train_and_measure(make_config(seeds, "data.classes=5", "trainer.threads=1"))[0]
    assert [r["seed"] for r in two] == [r["seed"] for r in one] == list(range(8))
    for a, b in zip(two, one, strict=True):
        # Within float rounding: batched matmuls over another number of replicas may sum in
        # another order (a seed alone and among others: ~3e-8, docs/sweeps-and-files.md).
        assert _numbers(a) == pytest.approx(_numbers(b), abs=1e-5, nan_ok=True)
