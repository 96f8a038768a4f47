"""Refused commands (issue 19, items 6, 10, 11, 13): one line that names the key, the value
and the right form, exit 2, and nothing written: no run dir, no sweep dir."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from attnlab.sweep import callback
from attnlab.sweep.errors import config_error_line, is_config_error
from attnlab.sweep.signals import Abort

from .conftest import DEBUG_TINY, one_line_error, run_cli


def refusal(overrides: list[str]) -> str:
    """The CLI's error line for a single run of these overrides, composed in process."""
    GlobalHydra.instance().clear()
    with (
        initialize_config_module(config_module="attnlab.conf", version_base="1.3"),
        pytest.raises(Exception) as raised,
    ):
        compose("config", overrides=overrides)
    assert is_config_error(raised.value)
    return config_error_line(raised.value, overrides)


def test_a_sweep_without_m_keeps_hydras_hint_to_add_multirun():
    line = refusal(["data.classes=5,20"])
    assert "data.classes=5,20" in line and "add --multirun" in line and "\n" not in line


@pytest.mark.parametrize("override", ["seeds=range(0,3)", "seeds=0"])
def test_seeds_in_the_wrong_form_get_an_example_of_the_right_one(override):
    line = refusal([override])
    assert "seeds=[0,1,2]" in line, line
    assert override in line and "\n" not in line


def test_a_bad_value_of_a_single_run_is_refused_before_its_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
        config = compose("config", overrides=["model.attention=orcale"], return_hydra_config=True)
    with pytest.raises(Abort) as refused:
        callback.SweepCallback().on_run_start(config)
    assert refused.value.status == 2
    assert refused.value.message.startswith("model.attention='orcale' is not allowed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["model.attention=orcale"], ["model.attention='orcale'", "oracle"]),
        (["data.classes=1"], ["data.classes=1 is not allowed"]),
        (["-m", "data.classes=5,20", "model.attention=orcale"], ["model.attention='orcale'"]),
        (["-m", "data.classes=interval(1,3)"], ["interval(1,3)", "range(1,4)"]),
        (["-m", "hydra/sweeper=basic", "data.classes=interval(1,3)"], ["INTERVAL_SWEEP"]),
        (["-m", "data.classes=2", "hydra.sweeper.max_replicas=0"], ["max_replicas=0"]),
        (["seeds=0"], ["seeds=[0,1,2]"]),
    ],
)
def test_a_refused_command_writes_nothing(tmp_path, args, words):
    proc = run_cli([*args, DEBUG_TINY], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    one_line_error(proc, *words)
    assert list(tmp_path.iterdir()) == []  # no outputs/runs/<time>/, no sweep dir
