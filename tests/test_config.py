"""Bad input stops before training with one line naming the key, the value and what is allowed."""

import pytest
from hydra.errors import ConfigCompositionException

from attnlab.engine.config import ConfigError, ExperimentConfig, flatten

from .conftest import compose_config, run_cli

BAD = [
    ("data.classes=1", "data.classes=1"),
    ("data.features=1", "data.features=1"),
    ("data.attention_column=32", "data.attention_column=32"),
    ("data.attention_column=-1", "data.attention_column=-1"),
    ("data.samples=60", "data.samples=60"),
    ("data.probe_samples=0", "data.probe_samples=0"),
    ("model.attn_layers=0", "model.attn_layers=0"),
    ("model.hidden=0", "model.hidden=0"),
    ("trainer.epochs=0", "trainer.epochs=0"),
    ("trainer.batch_size=0", "trainer.batch_size=0"),
    ("trainer.learning_rate=0", "trainer.learning_rate=0.0"),
    ("trainer.learning_rate=-0.1", "trainer.learning_rate=-0.1"),
    ("trainer.validation_split=0", "trainer.validation_split=0.0"),
    ("trainer.validation_split=1", "trainer.validation_split=1.0"),
    ("seeds=[]", "seeds=[]"),
    ("seeds=[1,2,1]", "seeds=[1, 2, 1]"),
    ("model.hidden_activation=nope", "model.hidden_activation='nope'"),
    ("+data.extra=3", "data.extra=3"),
]


@pytest.mark.parametrize(("override", "named"), BAD)
def test_bad_value_is_rejected_with_key_and_value(make_config, override, named):
    with pytest.raises(ConfigError) as err:
        make_config(override).validate()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(named)


@pytest.mark.parametrize(
    "override", ["data.classez=3", "data.classes=abc", "trainer.epochs=1.5", "seeds=3"]
)
def test_unknown_keys_and_wrong_types_fail_at_compose_time(override):
    with pytest.raises(ConfigCompositionException):
        compose_config([override])


def test_defaults_are_the_seed_experiment(make_config):
    cfg = make_config(tiny=False)
    cfg.validate()
    assert cfg == ExperimentConfig()
    flat = flatten(cfg)
    assert flat["data.features"] == 32 and flat["data.classes"] == 2
    assert flat["data.attention_column"] == 1 and flat["model.hidden"] == 64
    assert flat["trainer.epochs"] == 20 and flat["seeds"] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("override", "named"),
    [("data.classes=1", "data.classes=1"), ("data.classes=abc", "data.classes=abc")],
)
def test_cli_bad_input_exits_nonzero_with_one_line(tmp_path, override, named):
    proc = run_cli([override, f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("attnlab: error:")]
    assert len(lines) == 1 and named in lines[0], proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_capacity_experiment_declares_its_grid():
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from attnlab.sweep.planner import expand

    with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=capacity"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params["data.classes"] == "2,5,20,30,50,100"
    assert params["model.attn_layers"] == "1,2,3"
    lines = [f"{k}={v}" for k, v in params.items()]
    assert len(expand(OverridesParser.create().parse_overrides(lines))) == 18
