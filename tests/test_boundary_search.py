"""The boundary search (issue 24): its options' one-line refusals, its groups, the round loop
against a fake trainer that draws from a known logistic curve (quick, no TensorFlow), the
outputs' table, and (slow) real tiny searches on the CLI: outputs, a rerun that trains
nothing, a SIGKILL mid-search and a resume that trains nothing twice."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from scipy import special

from attnlab.engine.boundary import BoundaryEstimate
from attnlab.engine.config import ConfigError
from attnlab.runs import boundary as outputs
from attnlab.sweep import boundary_search as bs
from attnlab.sweep.cells import Cell
from attnlab.sweep.planner import expand
from tests.conftest import DEBUG_TINY, one_line_error, run_cli, shown

KEY = "hydra.sweeper.boundary"


def parse(*lines: str) -> list[Any]:
    return OverridesParser.create().parse_overrides(list(lines))


def options(**given: Any) -> bs.BoundaryOptions:
    return bs.BoundaryOptions(**{"axis": "data.classes", "low": 2, "high": 64, **given})


# ---------------------------------------------------------------- options: one-line refusals


@pytest.mark.parametrize(
    ("given", "lines", "words"),
    [
        ({"axis": "trainer.learning_rate"}, [], ["axis=trainer.learning_rate", "integer"]),
        ({"axis": "data.kind"}, [], ["axis=data.kind", "data.classes"]),
        ({"axis": "trainer.verbose"}, [], ["axis=trainer.verbose", "integer config key"]),
        ({"axis": None}, [], [f"{KEY}.low=2", f"needs {KEY}.axis"]),
        ({"low": 10, "high": 10}, [], [f"{KEY}.high=10", "empty range"]),
        ({"low": 30, "high": 4}, [], [f"{KEY}.high=4", "empty range"]),
        ({"high": None}, [], [f"{KEY}.high is not set"]),
        ({"metric": "train_loss"}, [], ["metric=train_loss", "a rate or a per-seed"]),
        ({"metric": "attn_margin"}, [], ["metric=attn_margin", "focus_rate"]),
        ({"level": 1.5}, [], ["level=1.5", "focus_rate's range (0, 1)"]),
        ({"level": 0.0}, [], ["level=0.0", "(0, 1)"]),
        (
            {"metric": "key_ablation_drop", "level": -1.0},
            [],
            ["level=-1.0", "key_ablation_drop's range (-1, 1)"],
        ),
        ({}, ["data.classes=2,5,20"], ["data.classes=2,5,20", "search chooses the axis"]),
        ({}, ["data.classes=20"], ["data.classes=20", "remove it"]),
        ({}, ["seeds=[0,1],[2,3]"], ["seeds=[0,1],[2,3]", "seeds_per_probe"]),
        ({"width": -1.0}, [], [f"{KEY}.width=-1.0", "positive"]),
        ({"low": 0}, [], [f"{KEY}.low=0", "log axis"]),
        ({"direction": "up"}, [], [f"{KEY}.direction='up'", "falling"]),
        ({"max_models": 10}, [], [f"{KEY}.max_models=10", "initial_cells * seeds_per_probe"]),
    ],
)
def test_bad_options_are_refused_in_one_line_naming_key_value_and_allowed(
    given: dict[str, Any], lines: list[str], words: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        options(**given).check(parse(*lines))
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_good_options_give_the_engine_rule_with_the_level_on_the_unit_range() -> None:
    rule = options(width=6, max_models=120, seeds_per_probe=6).check(parse("model.attn_layers=1,2"))
    assert (rule.low, rule.high, rule.width, rule.max_models, rule.level) == (2, 64, 6, 120, 0.5)
    mapped = options(metric="key_ablation_drop", level=0.2).check(parse())
    assert mapped.level == pytest.approx(0.6)  # [-1, 1] onto [0, 1]
    assert options(metric="attn_key_weight_mean").metric_name == "attn_key_weight"


def test_integer_keys_are_the_schema_int_fields_that_change_a_cell() -> None:
    keys = bs.integer_keys()
    for key in ("data.classes", "data.features", "model.attn_layers", "trainer.epochs"):
        assert key in keys
    for key in ("trainer.learning_rate", "data.kind", "trainer.verbose", "trainer.threads"):
        assert key not in keys


def test_off_unless_an_option_is_set() -> None:
    assert not bs.BoundaryOptions().on
    assert bs.BoundaryOptions.from_config({"axis": "data.classes"}).on
    assert not bs.BoundaryOptions.from_config(None).on


# ---------------------------------------------------------------- groups


def fake_compose(lines: list[str], index: int) -> Cell:
    """A cell named by its group and axis value only (seed-level records: more seeds for a
    probe go into the same dir), its config the overrides' values."""
    config: dict[str, Any] = {"seeds": [0, 1, 2, 3, 4]}
    for line in lines:
        key, value = line.split("=", 1)
        config[key] = json.loads(value) if value[:1] in "[0123456789" else value
    axis = config.get("data.classes", "none")
    return Cell(list(lines), config, f"g{index}-x{axis}")


def test_the_other_swept_keys_make_one_group_each() -> None:
    overrides = parse("model.attn_layers=1,2", "data.features=32,128", "trainer.epochs=3")
    jobs = expand(overrides)
    keys = bs.swept_keys(overrides)
    groups = bs.make_groups(jobs, keys, fake_compose, cap=40)
    assert keys == ["model.attn_layers", "data.features"]
    assert [g.keys for g in groups] == [
        {"model.attn_layers": 1, "data.features": 32},
        {"model.attn_layers": 1, "data.features": 128},
        {"model.attn_layers": 2, "data.features": 32},
        {"model.attn_layers": 2, "data.features": 128},
    ]
    assert groups[0].order[:7] == [0, 1, 2, 3, 4, 5, 6] and len(groups[0].order) == 40
    assert all("trainer.epochs=3" in g.job for g in groups)


def test_a_probe_has_the_group_overrides_the_axis_value_and_its_seeds() -> None:
    lines = bs.with_axis(["model.attn_layers=2", "seeds=[7]"], "data.classes", 23, [7, 8])
    assert lines == ["model.attn_layers=2", "data.classes=23", "seeds=[7,8]"]
    assert bs.seed_order([3, 1], 5) == [3, 1, 4, 5, 6]


# ---------------------------------------------------------------- rounds, with a fake trainer


def truth(features: int) -> Any:
    """The known curve: focus falls with classes, crossing 0.5 at 20 (32 features) or 40."""
    center = 20.0 if features == 32 else 40.0
    return lambda x: special.expit(-(x - center) / 3.0)


class FakeTrainer:
    """Trains a round by drawing each seed's focus from the known curve (deterministic in
    cell and seed); keeps what it trained, so a replay can be checked to train nothing."""

    def __init__(self, fail_at_round: int | None = None) -> None:
        self.trained: dict[str, set[int]] = {}
        self.rounds: list[list[Cell]] = []
        self.fail_at_round = fail_at_round
        self.new_seeds: list[tuple[str, int]] = []

    def value(self, cell: str, seed: int, features: int, x: int) -> float:
        draw = zlib.crc32(f"{cell}/{seed}".encode()) / 2**32
        return float(draw < truth(features)(x))

    def train(self, cells: list[Cell], round_index: int) -> list[Any]:
        if self.fail_at_round is not None and round_index == self.fail_at_round:
            raise KeyboardInterrupt  # a Ctrl-C while the round trains
        self.rounds.append(cells)
        for cell in cells:
            have = self.trained.setdefault(cell.name, set())
            self.new_seeds += [(cell.name, s) for s in cell.config["seeds"] if s not in have]
            have.update(cell.config["seeds"])
        return [cells]

    def values(self, cells: dict[str, Cell]) -> Any:
        def probe_values(sweep_dir: Path, cell: str, seeds: list[int], metric: str) -> list[float]:
            config = cells[cell].config
            have = self.trained.get(cell, set())
            x, features = config["data.classes"], config["data.features"]
            return [self.value(cell, s, features, x) for s in seeds if s in have]

        return probe_values


def run_fake_search(
    tmp_path: Path, trainer: FakeTrainer, monkeypatch: pytest.MonkeyPatch, **given: Any
) -> tuple[bs.BoundarySearch, dict[str, Any]]:
    """The search over data.features=32,128 along data.classes in [2, 80], trained by the
    fake trainer, its probes' values read from it."""
    opts = options(**{"low": 2, "high": 80, "width": 10, "max_models": 160, **given})
    overrides = parse("data.features=32,128")
    rule = opts.check(overrides)
    composed: dict[str, Cell] = {}

    def compose(lines: list[str], index: int) -> Cell:
        cell = fake_compose(lines, index)
        composed[cell.name] = cell
        return cell

    groups = bs.make_groups(expand(overrides), bs.swept_keys(overrides), compose, rule.max_models)
    search = bs.BoundarySearch(opts, rule, groups, compose)
    monkeypatch.setattr(bs, "probe_values", trainer.values(composed))
    state: dict[str, Any] = {}
    search.run(tmp_path, state, trainer.train)
    return search, state


def test_rounds_train_every_group_in_one_round_until_each_is_done(tmp_path, monkeypatch) -> None:
    trainer = FakeTrainer()
    search, state = run_fake_search(tmp_path, trainer, monkeypatch)
    first = trainer.rounds[0]
    assert len(first) == 8  # 4 opening cells for each of the 2 groups, one round
    assert {c.name.split("-")[0] for c in trainer.rounds[1]} == {"g0", "g1"}
    assert all(len(r) <= 2 for r in trainer.rounds[1:])  # then one probe per live group
    doc = state["boundary"]
    assert doc["rounds"] == len(trainer.rounds)
    for group, center in zip(search.groups, (20.0, 40.0), strict=True):
        assert group.stop, group.label
        probes, _ = search.probes(tmp_path, group)
        estimate = outputs.fit_boundary(probes, search.rule)
        assert estimate.ci_low <= center <= estimate.ci_high, (group.label, estimate)
        assert estimate.width <= 10 or "max_models" in group.stop
    saved = json.loads((tmp_path / ".sweep.json").read_text())
    assert saved["boundary"]["groups"][1]["keys"] == {"data.features": 128}


def test_more_seeds_for_a_probe_extend_its_seed_list_into_the_same_cell(
    tmp_path, monkeypatch
) -> None:
    trainer = FakeTrainer()
    # A narrow range and width: the search must come back to axis values it probed.
    narrow = {"low": 16, "high": 24, "width": 2, "log_axis": False, "max_models": 96}
    search, _ = run_fake_search(tmp_path, trainer, monkeypatch, **narrow)
    names = [c.name for r in trainer.rounds for c in r]
    repeated = {n for n in names if names.count(n) > 1}
    assert repeated, "no probe got more seeds: the test's curve should make one"
    for group in search.groups:
        for probe in group.probes.values():
            assert probe.seeds == group.order[: len(probe.seeds)]  # a prefix of the order
            assert len(probe.seeds) % search.rule.seeds_per_probe == 0
    # Each seed of each cell was new when it was asked for: nothing trained twice.
    assert len(trainer.new_seeds) == len(set(trainer.new_seeds))


def test_a_replay_of_a_finished_search_trains_nothing(tmp_path, monkeypatch) -> None:
    trainer = FakeTrainer()
    first, _ = run_fake_search(tmp_path, trainer, monkeypatch)
    trained_before = len(trainer.new_seeds)
    second, _ = run_fake_search(tmp_path, trainer, monkeypatch)
    assert len(trainer.new_seeds) == trained_before  # every probe found trained
    assert [g.doc() for g in second.groups] == [g.doc() for g in first.groups]


def test_a_search_stopped_mid_round_resumes_without_training_anything_twice(
    tmp_path, monkeypatch
) -> None:
    trainer = FakeTrainer(fail_at_round=3)
    with pytest.raises(KeyboardInterrupt):
        run_fake_search(tmp_path, trainer, monkeypatch)
    stopped = json.loads((tmp_path / ".sweep.json").read_text())["boundary"]
    assert not all(g["stop"] for g in stopped["groups"])  # recorded as not finished
    trainer.fail_at_round = None
    resumed, _ = run_fake_search(tmp_path, trainer, monkeypatch)
    assert len(trainer.new_seeds) == len(set(trainer.new_seeds))
    clean = FakeTrainer()
    uninterrupted, _ = run_fake_search(tmp_path, clean, monkeypatch)
    assert [g.doc() for g in resumed.groups] == [g.doc() for g in uninterrupted.groups]
    assert sorted(trainer.new_seeds) == sorted(clean.new_seeds)


def test_a_probe_that_gives_no_usable_seed_stops_its_group_only(tmp_path, monkeypatch) -> None:
    trainer = FakeTrainer()
    real_train = trainer.train

    def lose_group_0(cells: list[Cell], round_index: int) -> list[Any]:
        return real_train([c for c in cells if not c.name.startswith("g0")], round_index)

    trainer.train = lose_group_0  # type: ignore[method-assign]
    search, _ = run_fake_search(tmp_path, trainer, monkeypatch)
    assert "gave no new usable seed" in search.groups[0].stop
    assert "gave no new usable seed" not in search.groups[1].stop


# ---------------------------------------------------------------- outputs (pure)


def test_boundary_table_has_the_group_keys_then_the_fixed_columns() -> None:
    doc = {"axis": "data.classes", "metric": "focus_rate", "level": 0.5}
    doc["rule"] = {"low": 2, "high": 64, "level": 0.5, "width": 8.0}
    estimate = BoundaryEstimate(22.5, 19.0, 26.0, -3.0, 1.0, 9, 88)
    results = [
        outputs.GroupResult({"model.attn_layers": 1, "data.features": 32}, [], estimate, "w", 96),
        outputs.GroupResult({"model.attn_layers": 2, "data.features": 32}, [], None, "", 16),
    ]
    table = outputs.boundary_table(results, doc)
    assert list(table.columns) == [
        "model.attn_layers",
        "data.features",
        "metric",
        "level",
        "boundary",
        "boundary_ci_low",
        "boundary_ci_high",
        "cells_probed",
        "models_trained",
    ]
    assert table.loc[0, "boundary"] == 22.5 and table.loc[0, "models_trained"] == 96
    assert math.isnan(table.loc[1, "boundary"])
    section = outputs.boundary_markdown(table, results, doc)
    assert "## Boundary" in section and "[19.0, 26.0]" in section
    assert "not finished (rerun the command to resume)" in section


def test_plot_data_draws_the_fitted_curve_through_the_level_at_the_boundary() -> None:
    doc = {"axis": "data.classes", "metric": "focus_rate", "level": 0.5}
    doc["rule"] = {"low": 2, "high": 64, "level": 0.5}
    estimate = BoundaryEstimate(20.0, 15.0, 26.0, -4.0, 1.0, 6, 48)
    point = outputs.ProbePoint(8, 8, 1.0, 0.68, 1.0)
    (panel,) = outputs.boundary_plot_data([outputs.GroupResult({}, [point], estimate)], doc)
    at = np.interp(20.0, panel.curve_x, panel.curve_y)
    assert at == pytest.approx(0.5, abs=0.01)
    assert panel.curve_y[0] > 0.9 and panel.curve_y[-1] < 0.1
    assert (panel.boundary, panel.ci_low, panel.ci_high) == (20.0, 15.0, 26.0)
    fig = outputs.boundary_figure([panel], "data.classes", "focus_rate", 0.5, True)
    assert fig.axes  # renders (a plain Figure)


def test_a_mean_metric_is_fitted_on_its_range_mapped_onto_the_unit_interval() -> None:
    probe = outputs.make_probe(10, [-1.0, 0.0, 1.0], "key_ablation_drop")
    assert (probe.successes, probe.trials) == (1.5, 3)
    assert outputs.from_unit(0.75, "key_ablation_drop") == pytest.approx(0.5)


# ---------------------------------------------------------------- slow: real tiny searches

# A search that ends in 3 rounds: 4 opening cells of 4 seeds, then at most 2 more probes
# (max_models 24); a crossing inside [2, 12] at this shrink (focus 3/4 at 2 and 4 classes,
# 1/4 at 7 and 12).
SEARCH = [
    "-m",
    DEBUG_TINY,
    "data.samples=2000",
    "data.probe_samples=300",
    "trainer.epochs=4",
    "model.attn_layers=1,2",
    f"{KEY}.axis=data.classes",
    f"{KEY}.low=2",
    f"{KEY}.high=12",
    f"{KEY}.width=12",
    f"{KEY}.seeds_per_probe=4",
    f"{KEY}.max_models=24",
]


def metrics_bytes(sweep_dir: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sweep_dir.glob("*/metrics.json")}


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("boundary")
    proc = run_cli([*SEARCH, f"hydra.sweep.dir={work / 'sweep'}"], cwd=work)
    return work / "sweep", proc


@pytest.mark.slow
def test_a_tiny_search_writes_boundary_csv_the_figure_and_the_report_section(searched) -> None:
    sweep_dir, proc = searched
    assert proc.returncode == 0, shown(proc)
    table = pd.read_csv(sweep_dir / "boundary.csv")
    assert list(table.columns) == ["model.attn_layers", *outputs.COLUMNS]
    assert sorted(table["model.attn_layers"]) == [1, 2]
    assert (table["cells_probed"] >= 4).all() and (table["models_trained"] <= 24).all()
    assert (sweep_dir / "figures" / "boundary_focus_rate.png").stat().st_size > 10_000
    report_md = (sweep_dir / "report.md").read_text()
    assert "## Boundary" in report_md and "boundary_focus_rate.png" in report_md
    rounds = [line for line in proc.stdout.splitlines() if "boundary round" in line]
    assert any("boundary round 2, model.attn_layers=1" in line for line in rounds), rounds
    assert all("probe data.classes=" in line for line in rounds)
    # Every probe is an ordinary cell of report.csv and summary.csv.
    state = json.loads((sweep_dir / ".sweep.json").read_text())["boundary"]
    summary = pd.read_csv(sweep_dir / "summary.csv")
    for group in state["groups"]:
        assert group["stop"]
        for probe in group["probes"]:
            assert probe["cell"] in set(summary["job"]), probe
    # The report command rebuilds the same table from the cells and .sweep.json.
    before = (sweep_dir / "boundary.csv").read_bytes()
    rebuilt = subprocess.run(
        [sys.executable, "-m", "attnlab.report", str(sweep_dir)], capture_output=True, text=True
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (sweep_dir / "boundary.csv").read_bytes() == before


@pytest.mark.slow
def test_a_rerun_of_a_finished_search_trains_nothing(searched, tmp_path) -> None:
    sweep_dir, first = searched
    assert first.returncode == 0, shown(first)
    results = metrics_bytes(sweep_dir)
    before = pd.read_csv(sweep_dir / "boundary.csv")
    proc = run_cli([*SEARCH, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    assert "training " not in proc.stdout, proc.stdout[-2000:]
    assert " 0 to train" in proc.stdout, proc.stdout[-2000:]
    assert metrics_bytes(sweep_dir) == results
    pd.testing.assert_frame_equal(pd.read_csv(sweep_dir / "boundary.csv"), before)


@pytest.mark.slow
def test_a_bad_boundary_option_exits_2_in_one_line_and_makes_no_dir(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    for bad, words in [
        (f"{KEY}.axis=trainer.learning_rate", ["axis=trainer.learning_rate", "integer"]),
        (f"{KEY}.metric=train_loss", ["metric=train_loss"]),
        (f"{KEY}.level=2", ["level=2", "(0, 1)"]),
        ("data.classes=2,5", ["data.classes=2,5", "search chooses"]),
        (  # two modes that choose the next cells from results: one at a time
            "hydra.sweeper.adaptive.half_width=0.2",
            ["hydra.sweeper.adaptive and hydra.sweeper.boundary", "not allowed together"],
        ),
    ]:
        args = [a for a in SEARCH if not a.startswith(f"{KEY}.axis")]
        args = [*args, f"{KEY}.axis=data.classes", bad, f"hydra.sweep.dir={sweep_dir}"]
        proc = run_cli(args, cwd=tmp_path)
        assert proc.returncode == 2, shown(proc)
        one_line_error(proc, *words)
        assert not sweep_dir.exists()
    empty = [*SEARCH, f"{KEY}.low=12", f"hydra.sweep.dir={sweep_dir}"]
    proc = run_cli(empty, cwd=tmp_path)
    assert proc.returncode == 2, shown(proc)
    one_line_error(proc, f"{KEY}.high=12", "empty range")
    assert not sweep_dir.exists()


@pytest.mark.slow
def test_a_search_killed_mid_way_resumes_and_keeps_every_finished_probe(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = [sys.executable, "-m", "attnlab", *SEARCH, f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state_file, deadline = sweep_dir / ".sweep.json", time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # kill once round 2 is planned
        try:
            rounds = json.loads(state_file.read_text()).get("boundary", {}).get("rounds", 0)
        except (OSError, ValueError):
            rounds = 0
        if rounds >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before round 2: nothing to resume"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = metrics_bytes(sweep_dir)
    assert len(kept) >= 8  # the opening round's cells of both groups
    resumed = run_cli([*SEARCH, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert resumed.returncode == 0, shown(resumed)
    after = metrics_bytes(sweep_dir)
    assert {name: after[name] for name in kept} == kept  # finished probes' bytes untouched
    assert "8 reused" in resumed.stdout, resumed.stdout[-3000:]
    assert (sweep_dir / "boundary.csv").exists()
