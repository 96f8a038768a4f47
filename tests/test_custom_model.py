"""model=custom: a user's model body through model.builder (the contract in
attnlab.engine.models.BuildContext), and the shipped example examples/custom_gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlab.engine.config import ConfigError, from_hydra

from .conftest import DEBUG_TINY, compose_config, run_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "model.builder=examples.custom_gate.gate:build"


@pytest.mark.parametrize(
    ("overrides", "start"),
    [
        (["model=custom", "model.builder=nodots"], "model.builder='nodots'"),
        (["model=custom", "model.builder=no_such_pkg.mod:build"], "model.builder="),
        (["model.builder=examples.custom_gate.gate:build"], "model.builder="),
    ],
)
def test_bad_builder_is_one_line(overrides, start):
    with pytest.raises(ConfigError) as err:
        from_hydra(compose_config(overrides)).validate(activations=False)
    assert str(err.value).startswith(start) and "\n" not in str(err.value)


def test_builder_that_is_not_a_function_fails_in_the_activation_check():
    cfg = from_hydra(
        compose_config(["model=custom", "model.builder=examples.custom_gate.gate:nope"])
    )
    cfg.validate(activations=False)  # the parent: the module is found, not run
    with pytest.raises(ConfigError, match=r"^model.builder='examples.custom_gate.gate:nope'"):
        cfg.validate()


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_custom_gate_trains_and_reads_its_gate_as_shares():
    from attnlab.engine.experiment import train_and_measure

    cfg = from_hydra(
        compose_config(
            [
                "model=custom",
                EXAMPLE,
                "data=informative",
                "data.features=8",
                "data.relevant=[x1,x2]",
                "data.samples=2000",
                "data.probe_samples=200",
                "trainer.epochs=4",
                "seeds=[0,1]",
            ]
        )
    )
    cfg.validate()
    result = train_and_measure(cfg)
    assert np.mean([r["val_accuracy"] for r in result.records]) > 0.6
    weights = result.attention.groupby("seed")["weight"].sum()
    np.testing.assert_allclose(weights, 1.0, atol=1e-5)  # sigmoid gates, read as shares


@pytest.mark.slow
def test_custom_gate_example_runs_through_a_sweep_and_its_report(tmp_path):
    # The command of examples/custom_gate/README.md, shrunk.
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            "model=custom",
            EXAMPLE,
            "data=xor",
            "model.hidden_activation=relu",
            "model.attention=learned,uniform",
            DEBUG_TINY,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["model.attention"]) == ["learned", "uniform"]
    assert summary["attn_relevant_weight_mean"].notna().all()
    report = (sweep / "report.md").read_text()
    assert "attn_relevant_weight [95% CI]" in report
    assert (sweep / "figures" / "attn_topk_precision_vs_model.attention.png").exists()
