"""Your own data: data=csv (errors, per-seed split, training-only standardisation), the
synthetic families data=informative and data=xor, and the identification metrics."""

from __future__ import annotations

import json
import math
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlab.engine.config import ConfigError, from_hydra
from attnlab.engine.data import TRAIN_STREAM, relevant_columns, rng_for, table_split
from attnlab.engine.metrics import SUMMARY_METRICS, attention_metrics, identification_metrics
from attnlab.engine.tables import read_table

from .conftest import DEBUG_TINY, compose_config, one_line_error, run_cli


def write_table(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """f0..f4 numeric, `label` (text, from f2's sign), `note` (text, not a feature)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_normal((rows, 5)), columns=[f"f{i}" for i in range(5)])
    frame["label"] = np.where(frame["f2"] > 0, "yes", "no")
    frame["note"] = "text"
    frame.to_csv(path, index=False)
    return path


def csv_config(path: Path, *overrides: str):
    base = ["data=csv", f"data.path={path}", "data.target=label", "seeds=[0,1]"]
    return from_hydra(compose_config([*base, *overrides]))


def csv_error(path: Path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        csv_config(path, *overrides).validate(activations=False)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_csv_fills_sizes_from_the_table(tmp_path):
    cfg = csv_config(write_table(tmp_path / "t.csv"), "data.relevant=[f2]")
    cfg.validate(activations=False)
    d = cfg.data
    # every numeric column but the target: f0..f4 (note is text and left out)
    assert (d.features, d.classes, d.samples, d.probe_samples) == (5, 2, 400, 80)
    assert relevant_columns(d) == [2]


def test_csv_missing_file(tmp_path):
    message = csv_error(tmp_path / "nope.csv")
    assert message.startswith("data.path=") and "nope.csv" in message and "existing" in message


def test_csv_missing_target(tmp_path):
    message = csv_error(write_table(tmp_path / "t.csv"), "data.target=labl")
    assert message.startswith("data.target='labl'") and "label" in message


def test_csv_non_categorical_target(tmp_path):
    path = write_table(tmp_path / "t.csv")
    message = csv_error(path, "data.target=f1")
    assert message.startswith("data.target='f1'") and "categorical" in message


def test_csv_non_numeric_feature_columns_are_named(tmp_path):
    message = csv_error(write_table(tmp_path / "t.csv"), "data.columns=[f0,note,f1]")
    assert message.startswith("data.columns=") and "not numeric: note" in message


def test_csv_nans_say_how_many_and_where(tmp_path):
    path = write_table(tmp_path / "t.csv")
    frame = pd.read_csv(path)
    frame.loc[[3, 10], "f1"] = np.nan
    frame.loc[[7], "label"] = np.nan
    frame.to_csv(path, index=False)
    message = csv_error(path)
    assert message.startswith("data.path=") and "3 NaN" in message
    assert "f1: 2 (file lines 5, 12)" in message and "label: 1 (file lines 9)" in message


def test_csv_too_few_rows_for_the_split(tmp_path):
    message = csv_error(write_table(tmp_path / "t.csv", rows=60))
    assert message.startswith("data.path=") and "enough rows" in message and "60 rows" in message


def test_csv_relevant_column_that_is_not_a_feature(tmp_path):
    message = csv_error(write_table(tmp_path / "t.csv"), "data.relevant=[f2,note]")
    assert message.startswith("data.relevant=['f2', 'note']") and "not features: note" in message


def test_csv_features_given_must_match_the_table(tmp_path):
    message = csv_error(write_table(tmp_path / "t.csv"), "data.features=7")
    assert message.startswith("data.features=7") and "5" in message


def test_csv_keys_only_with_data_csv():
    with pytest.raises(ConfigError, match=r"^data.path='x.csv' is not allowed: only with data=csv"):
        from_hydra(compose_config(["data.path=x.csv"])).validate(activations=False)


def test_csv_standardises_with_training_rows_only(tmp_path):
    # Rows far from the rest: wherever the shuffle puts them, statistics over all rows
    # would differ from the training rows' ones.
    path = write_table(tmp_path / "t.csv", rows=200)
    frame = pd.read_csv(path)
    frame.loc[150:, "f0"] += 100.0
    frame.to_csv(path, index=False)
    cfg = csv_config(path)
    cfg.validate(activations=False)
    (x, y), (x_probe, y_probe) = table_split(cfg.data, seed=3, validation_split=0.2)
    raw = read_table(str(path), "label").x.astype(np.float64)
    order = rng_for(3, TRAIN_STREAM).permutation(200)
    train, val = order[:160], order[160:]
    mean, sd = raw[train].mean(0), raw[train].std(0)
    np.testing.assert_allclose(x[:160].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x[160:], (raw[val] - mean) / sd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_probe, x[160 : 160 + len(x_probe)])
    assert (y == read_table(str(path), "label").y[order]).all()


def test_csv_split_is_drawn_from_each_seed_stream(tmp_path):
    cfg = csv_config(write_table(tmp_path / "t.csv"))
    a0, _ = table_split(cfg.data, 0, 0.2)
    again, _ = table_split(cfg.data, 0, 0.2)
    a1, _ = table_split(cfg.data, 1, 0.2)
    np.testing.assert_array_equal(a0[0], again[0])
    assert not np.array_equal(a0[1], a1[1])


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_csv_100k_rows_50_columns_loads_within_bound(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((100_000, 50)), columns=[f"c{i}" for i in range(50)])
    frame["label"] = rng.integers(0, 3, 100_000)
    frame.to_csv(tmp_path / "big.csv", index=False)
    tracemalloc.start()
    start = time.perf_counter()
    table = read_table(str(tmp_path / "big.csv"), "label")
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert table.x.shape == (100_000, 50) and len(table.classes) == 3
    # Measured on the 2-core dev machine: 1.0-1.7 s, 78 MB traced peak (docs/performance.md).
    assert seconds < 10.0, seconds
    assert peak < 400 * 2**20, peak / 2**20


# --- synthetic families ----------------------------------------------------------------


def synthetic(*overrides: str):
    tiny = ["data.samples=2000", "data.probe_samples=300", "seeds=[0,1]"]
    cfg = from_hydra(compose_config([*tiny, *overrides]))
    cfg.validate(activations=False)
    return cfg


def test_xor_label_is_the_xor_of_the_relevant_signs():
    from attnlab.engine.data import make_replica_data

    cfg = synthetic("data=xor", "data.features=6", "data.relevant=[x0,x3]")
    data = make_replica_data(cfg.data, cfg.seeds, 0.2)
    x, y = data.x_train[:, 0], data.y_train[:, 0]
    np.testing.assert_array_equal(y, (x[:, 0] > 0) ^ (x[:, 3] > 0))
    # neither column alone predicts the label
    for column in (0, 3):
        assert abs(((x[:, column] > 0) == y).mean() - 0.5) < 0.05


def test_informative_classes_are_balanced_and_use_one_task_per_seed():
    from attnlab.engine.data import make_replica_data

    cfg = synthetic("data=informative", "data.classes=4", "data.distractors=2")
    data = make_replica_data(cfg.data, cfg.seeds, 0.2)
    shares = np.bincount(data.y_train[:, 0], minlength=4) / len(data.y_train)
    assert np.all(np.abs(shares - 0.25) < 0.05), shares
    # the probe set comes from the same task: a least-squares score fitted on the
    # training rows ranks the probe rows' classes as well
    x, y = data.x_train[:, 0][:, [1, 2, 3, 4]], data.y_train[:, 0]
    w = np.linalg.lstsq(x, y - y.mean(), rcond=None)[0]
    xp, yp = data.x_probe[:, 0][:, [1, 2, 3, 4]], data.y_probe[:, 0]
    assert np.corrcoef(xp @ w, yp)[0, 1] > 0.8
    # distractors: the last two columns are noisy copies of relevant ones
    full = data.x_train[:, 0]
    assert np.corrcoef(full[:, 31], full[:, 2])[0, 1] > 0.8


@pytest.mark.parametrize(
    ("override", "start"),
    [
        ("data.relevant=[x1,x40]", "data.relevant=['x1', 'x40']"),
        ("data.relevant=[x1,x2,x3]", "data.relevant=['x1', 'x2', 'x3']"),
        ("data.classes=3", "data.classes=3"),
        ("data.distractors=31", "data.distractors=31"),
    ],
)
def test_synthetic_bad_values(override, start):
    with pytest.raises(ConfigError) as err:
        synthetic("data=xor", override)
    assert str(err.value).startswith(start)


def test_default_relevant_set_is_the_key_column():
    with pytest.raises(ConfigError, match=r"^data.relevant=\['x2'\] is not allowed"):
        synthetic("data.relevant=[x2]")
    assert relevant_columns(synthetic().data) == [1]


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@pytest.mark.parametrize(
    ("overrides", "chance"),
    [
        (["data=informative", "data.features=8", "data.relevant=[x1,x2]"], 0.5),
        (["data=xor", "data.features=8", "model.hidden_activation=relu", "model.hidden=32"], 0.5),
    ],
)
def test_synthetic_families_learn_above_chance(overrides, chance):
    from attnlab.engine.experiment import train_and_measure

    cfg = synthetic(*overrides, "trainer.epochs=8")
    result = train_and_measure(cfg)
    accuracy = np.mean([r["val_accuracy"] for r in result.records])
    assert accuracy > chance + 0.1, accuracy
    for record in result.records:
        assert 0.0 <= record["attn_relevant_weight"] <= 1.0
        assert record["attn_peak_column_name"].startswith("x")
    assert list(result.attention["column_name"][:3]) == ["x0", "x1", "x2"]


# --- identification metrics -------------------------------------------------------------


def test_identification_metrics_on_hand_made_attention():
    alpha = np.array(
        [
            [0.1, 0.4, 0.3, 0.1, 0.1],
            [0.1, 0.2, 0.5, 0.1, 0.1],
        ]
    )  # mean: 0.1, 0.3, 0.4, 0.1, 0.1
    out = identification_metrics(alpha.mean(0), [1, 2])
    assert out["attn_relevant_weight"] == pytest.approx(0.7)
    assert out["attn_topk_precision"] == 1.0
    out = identification_metrics(alpha.mean(0), [2, 4])  # top 2: columns 2 and 1
    assert out["attn_relevant_weight"] == pytest.approx(0.5)
    assert out["attn_topk_precision"] == 0.5
    out = identification_metrics(alpha.mean(0), [0, 3, 4])  # top 3: 2, 1, then 0 (tie: lowest)
    assert out["attn_topk_precision"] == pytest.approx(1 / 3)
    nan = identification_metrics(alpha.mean(0), [])
    assert math.isnan(nan["attn_relevant_weight"]) and math.isnan(nan["attn_topk_precision"])


def test_identification_metrics_with_one_relevant_column_are_the_key_metrics():
    alpha = np.array([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]])  # mean: 0.4, 0.35, 0.25
    for key in range(3):
        out = attention_metrics(alpha, key, names=["a", "b", "c"])
        assert out["attn_relevant_weight"] == out["attn_key_weight"]
        assert out["attn_topk_precision"] == float(out["attn_focused"])
        assert out["attn_peak_column_name"] == "a"


def test_identification_metrics_enter_the_summary():
    assert {"attn_relevant_weight", "attn_topk_precision"} <= set(SUMMARY_METRICS)


# --- the command line --------------------------------------------------------------------


def test_csv_error_on_the_command_line_exits_2_in_one_line(tmp_path):
    path = write_table(tmp_path / "t.csv")
    run = tmp_path / "run"
    args = ["data=csv", f"data.path={path}", "data.target=f1", DEBUG_TINY, f"hydra.run.dir={run}"]
    proc = run_cli(args, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    one_line_error(proc, "data.target='f1'", "categorical")
    assert not (run / "metrics.json").exists()


@pytest.mark.slow
def test_csv_error_in_a_sweep_fails_its_cells_in_the_parent(tmp_path):
    # As for any invalid cell of a sweep (attnlab.sweep.planner.sort_cells): the parent
    # checks it, records it failed with its one-line reason, and trains nothing.
    path = write_table(tmp_path / "t.csv")
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            "data=csv",
            f"data.path={path}",
            "data.target=f1",
            "model.hidden=8,16",
            DEBUG_TINY,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not list(sweep.glob("*/metrics.json")) and not (sweep / ".jobs").exists()
    report = pd.read_csv(sweep / "report.csv")
    assert all(e.startswith("data.target='f1' is not allowed") for e in report["error"])


@pytest.mark.slow
def test_csv_sweep_reports_columns_by_name(tmp_path):
    path = write_table(tmp_path / "t.csv", rows=800)
    proc = run_cli(
        [
            "-m",
            "data=csv",
            f"data.path={path}",
            "data.target=label",
            "data.relevant=[f2]",
            "model.hidden=16,32",
            DEBUG_TINY,
            f"hydra.sweep.dir={tmp_path}/sweep",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "sweep" / "summary.csv")
    assert len(summary) == 2
    for column in ("attn_relevant_weight_ci_low", "attn_topk_precision_mean"):
        assert column in summary
    report = pd.read_csv(tmp_path / "sweep" / "report.csv")
    assert set(report["attn_peak_column_name"]) <= {f"f{i}" for i in range(5)}
    cell = next(p for p in (tmp_path / "sweep").iterdir() if (p / "metrics.json").exists())
    doc = json.loads((cell / "metrics.json").read_text())
    assert doc["config"]["data.relevant"] == ["f2"] and doc["config"]["data.features"] == 5
    assert set(pd.read_csv(cell / "attention.csv")["column_name"]) == {f"f{i}" for i in range(5)}


def test_new_keys_at_their_defaults_keep_older_cells_identity():
    # A sweep recorded before data.kind & co existed: its cells keep their names and hashes.
    from attnlab.engine.config import ExperimentConfig, flatten
    from attnlab.runs import records
    from attnlab.sweep.cells import default_values

    config = flatten(ExperimentConfig())
    config["data.classes"] = 20
    older = {k: v for k, v in config.items() if k not in records.ADDED_KEYS}
    assert records.identity_key(older) == records.identity_key(config)
    assert records.cell_name(older, default_values()) == records.cell_name(config, default_values())
    assert records.identity_key({**config, "data.kind": "xor"}) != records.identity_key(config)


def test_cells_pack_only_with_the_same_data_source(tmp_path):
    from attnlab.sweep.packing import pack_key

    a, b = write_table(tmp_path / "a.csv"), write_table(tmp_path / "b.csv", seed=1)
    same = [csv_config(a, f"model.attention={m}") for m in ("learned", "uniform")]
    assert pack_key(same[0]) == pack_key(same[1])  # one table: shapes and data shared
    assert pack_key(csv_config(a)) != pack_key(csv_config(b))
    kinds = [synthetic(f"data={k}", "data.relevant=[x1,x2]") for k in ("informative", "xor")]
    assert len({pack_key(c) for c in [*kinds, synthetic()]}) == 3


def test_attention_figure_labels_a_tables_columns_by_name():
    from attnlab.runs.plots import attention_matrix

    frame = pd.DataFrame(
        {"seed": [0, 0], "column": [0, 1], "weight": [0.3, 0.7], "column_name": ["age", "dose"]}
    )
    assert attention_matrix(frame).names == ("age", "dose")
    synthetic_names = frame.assign(column_name=["x0", "x1"])
    assert attention_matrix(synthetic_names).names == ()  # the index says as much
    assert attention_matrix(frame.drop(columns="column_name")).names == ()
