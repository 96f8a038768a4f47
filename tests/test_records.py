"""The records layer alone (no TensorFlow): names, the strict reader, write-once results."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from attnlab.runs import records
from attnlab.runs.report import collect_runs

CONFIG = {"data.classes": 5, "model.attn_layers": 1, "trainer.verbose": 0, "seeds": [0, 1]}
DEFAULTS = {"data.classes": 2, "model.attn_layers": 1, "trainer.verbose": 0, "seeds": [0]}


def _run(seed, status="completed"):
    return {"seed": seed, "status": status, "val_accuracy": 0.5, "attn_focused": True}


def _finished(seeds=(0, 1)):
    return {"config": {**CONFIG, "seeds": list(seeds)}, "runs": [_run(s) for s in seeds]}


def test_a_cell_name_is_readable_and_depends_on_the_cell_alone():
    name = records.cell_name(CONFIG, DEFAULTS)
    assert name.startswith("data.classes=5-") and len(name.rsplit("-", 1)[1]) == 10
    # The cell-making values change the hash; log settings and seeds do not (issue 21: a
    # cell grows by seeds, in one dir).
    assert records.cell_name({**CONFIG, "data.classes": 6}, DEFAULTS) != name
    assert records.cell_name({**CONFIG, "seeds": [0]}, DEFAULTS) == name
    assert records.cell_name({**CONFIG, "trainer.verbose": 1}, DEFAULTS) == name
    assert records.cell_name(DEFAULTS, DEFAULTS).startswith("defaults-")


@pytest.mark.parametrize(
    "value", ["../../../x", "a/b", "..", "x\ny\x00z", "é" * 10, "/etc/passwd", "." * 300]
)
def test_a_cell_name_cannot_leave_the_sweep_dir(value, tmp_path):
    name = records.cell_name({**CONFIG, "model.attn_activation": value}, DEFAULTS)
    assert "/" not in name and "\n" not in name and "\x00" not in name
    assert not name.startswith(".") and len(name) <= records.NAME_CHARS + 11
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_many_overrides_still_make_a_short_name():
    config = {f"data.key{i}": "v" * 30 for i in range(40)} | {"seeds": [0]}
    name = records.cell_name(config, {})
    assert len(name) <= records.NAME_CHARS + 11
    other = records.cell_name({**config, "data.key39": "w" * 30}, {})
    assert other != name  # the cut-off tail still tells them apart through the hash


def test_metrics_json_is_written_once(tmp_path):
    assert records.write_result(tmp_path, _finished())
    before = (tmp_path / "metrics.json").read_bytes()
    assert not records.write_result(tmp_path, _finished(seeds=(0, 1)))
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert not list(tmp_path.glob(f"{records.TEMP_PREFIX}*"))  # no temp file left


def test_a_result_of_the_wrong_shape_is_never_written(tmp_path):
    with pytest.raises(records.RecordError, match="runs"):
        records.write_result(tmp_path, {"config": CONFIG, "runs": []})
    assert not (tmp_path / "metrics.json").exists()


MALFORMED = {
    "runs_of_numbers": ('{"runs": [1]}', "config"),
    "config_a_list": ('{"config": [1], "runs": []}', "config"),
    "seed_text": (
        json.dumps({"config": CONFIG, "runs": [{"seed": "x", "status": "completed"}]}),
        "seed",
    ),
    "old_failure_with_bad_seeds": ('{"status": "failed", "config": {"seeds": 5}}', None),
    "config_null": ('{"config": null, "runs": []}', "config"),
    "no_runs": (json.dumps({"config": CONFIG, "runs": []}), "runs"),
    "seeds_mismatch": (json.dumps({"config": CONFIG, "runs": [_run(0)]}), "seeds"),
    "unfinished_status": (
        json.dumps({"config": CONFIG, "runs": [_run(0, "x"), _run(1)]}),
        "status",
    ),
    "not_an_object": ("[1, 2]", "object"),
    "truncated": ('{"config": {"data.cla', "corrupt"),
    "binary": ("\udcff\x00\x01", "corrupt"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_metrics_json_is_a_failed_record_naming_the_file(case, tmp_path):
    text, what = MALFORMED[case]
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "metrics.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    record = records.read_cell(cell, tmp_path)
    assert record.status == "failed" and not record.finished
    if what:
        assert "metrics.json" in record.error and what in record.error
    report = collect_runs(tmp_path)  # and the report shows it, one failed row at least
    assert set(report["status"]) == {"failed"} and len(report) >= 1


def test_a_fifo_device_or_outside_link_is_never_opened(tmp_path):
    for name, make in {
        "fifo": lambda p: os.mkfifo(p),
        "zero": lambda p: p.symlink_to("/dev/zero"),
        "outside": lambda p: p.symlink_to("/etc/hostname"),
    }.items():
        cell = tmp_path / name
        cell.mkdir()
        make(cell / "metrics.json")
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "metrics.json", "wb") as f:
        f.truncate(records.MAX_JSON_BYTES + 1)  # sparse: no real disk used
    errors = {r.name: r.error for r in records.read_cells(tmp_path)}
    assert "not a regular file" in errors["fifo"]
    assert "outside the sweep dir" in errors["zero"] and "outside" in errors["outside"]
    assert "byte limit" in errors["big"]


def test_hydra_config_is_read_without_resolving_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_SECRET", "s3cret")
    cell = tmp_path / "cell"
    (cell / ".hydra").mkdir(parents=True)
    (cell / ".hydra" / "config.yaml").write_text(
        "data:\n  classes: ${oc.env:ATTNLAB_SECRET}\nseeds: [0]\n"
    )
    report = collect_runs(tmp_path)
    assert "s3cret" not in report.to_csv()
    assert report["data.classes"].iloc[0] == "${oc.env:ATTNLAB_SECRET}"


def test_leftover_temp_files_are_removed_and_nothing_else(tmp_path):
    cell = tmp_path / "cell"
    (tmp_path / "figures").mkdir()
    records.write_result(cell, _finished())
    leftovers = [
        cell / f"{records.TEMP_PREFIX}metrics.json.abc.json",
        tmp_path / "figures" / f"{records.TEMP_PREFIX}grid.png.x.png",
        tmp_path / f"{records.TEMP_PREFIX}report.csv.y.csv",
    ]
    for path in leftovers:
        path.write_text("half")
    (cell / "notes.txt").write_text("mine")
    assert records.remove_temp_files(tmp_path) == 3
    assert not any(p.exists() for p in leftovers)
    assert (cell / "notes.txt").exists() and (cell / "metrics.json").exists()


def test_cell_json_refuses_a_dir_that_holds_another_cell(tmp_path):
    records.write_cell(tmp_path, CONFIG)
    records.write_cell(tmp_path, {**CONFIG, "trainer.verbose": 1})  # same cell
    with pytest.raises(records.RecordError, match="another cell"):
        records.write_cell(tmp_path, {**CONFIG, "data.classes": 7})
    records.write_cell(tmp_path, {**CONFIG, "seeds": [7]})  # the same cell, more seeds


def test_cached_and_failed_attempts_as_the_report_shows_them(tmp_path):
    done, failed = tmp_path / "done", tmp_path / "failed"
    records.write_cell(done, CONFIG)
    records.write_result(done, _finished())
    records.write_attempt(done, "cached", "run2")
    records.write_cell(failed, {**CONFIG, "data.classes": 1, "seeds": [3]})
    records.write_attempt(failed, "failed", "run2", "data.classes=1 is not allowed")
    # A later failure of a finished cell (say, trainer.threads=-1) never hides its result.
    records.write_attempt(done, "failed", "run3", "trainer.threads=-1 is not allowed")
    report = collect_runs(tmp_path)
    rows = {(r.job, r.seed): r for r in report.itertuples()}
    assert rows[("done", 0)].status == "completed" and rows[("done", 0)].val_accuracy == 0.5
    assert rows[("failed", 3)].status == "failed"
    assert rows[("failed", 3)].error == "data.classes=1 is not allowed"


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_the_records_layer_never_imports_tensorflow():
    code = textwrap.dedent(
        """
        import sys
        import attnlab.engine.resources
        import attnlab.runs.records
        import attnlab.runs.report
        import attnlab.sweep.packing
        import attnlab.sweep.planner
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_broken_result_is_set_aside_for_a_retry_never_a_finished_one(tmp_path):
    broken, done = tmp_path / "broken", tmp_path / "done"
    broken.mkdir()
    (broken / "metrics.json").write_text('{"config": {"data.cla')
    records.write_result(done, _finished())
    before = (done / "metrics.json").read_bytes()
    aside = records.set_aside_broken(broken, tmp_path)
    assert aside is not None and aside.read_text() == '{"config": {"data.cla'
    assert not (broken / "metrics.json").exists()
    assert records.set_aside_broken(done, tmp_path) is None
    assert (done / "metrics.json").read_bytes() == before


def test_a_failed_atomic_write_names_its_target_not_the_temp_file(tmp_path):
    """run.json that is a directory: the error is the target's, of the same type, and no
    temp file is left behind."""
    from attnlab.runs.files import os_error_text, write_text

    target = tmp_path / "run.json"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        write_text(target, "{}")
    assert os_error_text(caught.value) == f"{target}: Is a directory"
    (tmp_path / "metrics.json").write_text("kept")
    with pytest.raises(FileExistsError) as caught:
        write_text(tmp_path / "metrics.json", "new", replace=False)
    assert caught.value.filename == str(tmp_path / "metrics.json")
    assert (tmp_path / "metrics.json").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "run.json"]


def test_a_write_error_that_names_no_file_gets_the_target_named(tmp_path):
    """A full disk: write() raises ENOSPC without a file name; the line needs one."""
    import errno

    from attnlab.runs.files import os_error_text, write_atomic

    def fill(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as caught:
        write_atomic(tmp_path / "report.csv", fill)
    assert os_error_text(caught.value) == f"{tmp_path / 'report.csv'}: No space left on device"
    assert caught.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())


def test_signals_held_until_the_steps_that_belong_together_are_done():
    """Ctrl-C inside the block: the block finishes, then the handler acts (here Python's
    own, KeyboardInterrupt), and the handler in place before is back."""
    import signal
    import time

    from attnlab.runs.files import signals_held

    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt), signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # without the hold, KeyboardInterrupt would be raised here
        done.append("the rest of the block")
    assert done == ["the rest of the block"]
    assert signal.getsignal(signal.SIGINT) is before
