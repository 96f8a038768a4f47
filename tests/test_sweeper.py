"""attnlab's sweeper and pack jobs in process: grid expansion, and a pack job's records."""

import logging
from dataclasses import asdict

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from attnlab.engine.config import flatten
from attnlab.runs import records
from attnlab.runs.files import write_json
from attnlab.sweep.cells import default_values
from attnlab.sweep.jobs import run_pack_job
from attnlab.sweep.planner import expand


def _expand(*lines):
    return expand(OverridesParser.create().parse_overrides(list(lines)))


def test_expand_makes_the_product_of_the_sweep_lists():
    jobs = _expand("data.classes=2,5", "model.attn_layers=1,2", "trainer.epochs=1")
    assert len(jobs) == 4
    assert jobs[0] == ["data.classes=2", "model.attn_layers=1", "trainer.epochs=1"]
    assert _expand("seeds=[0],[1]") == [["seeds=[0]"], ["seeds=[1]"]]
    assert _expand() == [[]]  # a bare -m: one job with the defaults


def test_expand_refuses_ranges_it_cannot_enumerate():
    with pytest.raises(ValueError, match="optimizing sweeper"):
        _expand("trainer.learning_rate=interval(0.001,0.1)")


def _pack(tmp_path, cells):
    """A sweep dir holding the spec of one pack of these typed configs."""
    entries = []
    for cfg in cells:
        name = records.cell_name(flatten(cfg), default_values())
        records.write_cell(tmp_path / name, flatten(cfg))
        entries.append({"name": name, "config": asdict(cfg)})
    write_json(tmp_path / records.JOBS_DIR / "p-000.json", {"run_id": "r1", "cells": entries})
    return [e["name"] for e in entries]


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_a_pack_job_writes_each_of_its_cells(make_config, tmp_path, caplog):
    cells = [make_config(f"data.classes={c}", "trainer.epochs=1") for c in (2, 3)]
    names = _pack(tmp_path, cells)
    caplog.set_level(logging.INFO)
    run_pack_job(tmp_path, "p-000", None)
    assert "training 2 cells as one model (4 seeds; classes 2, 3)" in caplog.text
    for name, cfg in zip(names, cells, strict=True):
        record = records.read_cell(tmp_path / name, tmp_path)
        assert record.status == "completed" and record.result_run_id == "r1"
        assert [r["seed"] for r in record.runs] == [0, 1]
        assert record.config == flatten(cfg)


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_a_pack_that_fails_trains_its_cells_one_by_one(make_config, tmp_path, monkeypatch, caplog):
    from attnlab.engine import experiment

    alone = experiment.train_cells

    def fails_when_packed(cfgs, **kwargs):
        if len(cfgs) > 1:
            raise RuntimeError("out of memory")
        return alone(cfgs, **kwargs)

    monkeypatch.setattr(experiment, "train_cells", fails_when_packed)
    cells = [make_config("data.classes=2", "trainer.epochs=1"), make_config("data.classes=1")]
    names = _pack(tmp_path, cells)
    run_pack_job(tmp_path, "p-000", None)
    assert "training the pack failed; its cells will train one by one" in caplog.text
    good, bad = (records.read_cell(tmp_path / n, tmp_path) for n in names)
    assert good.status == "completed" and len(good.runs) == 2
    assert bad.status == "failed" and bad.error.startswith("data.classes=1 is not allowed")
    assert not (tmp_path / names[1] / "metrics.json").exists()
