"""What wraps each job of a run or sweep: resume from cache, failure records, progress, report.

Hydra skips on_multirun_end when a job raises, and its joblib/submitit launchers run job
callbacks in worker processes, so a job never raises in a sweep: it writes its own
metrics.json (completed, cached or failed), and the parent builds the report from the
job dirs on disk.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from attnlab.config import ExperimentConfig, as_json, cell_identity, dotted, flatten, from_hydra
from attnlab.errors import config_error_line, is_config_error
from attnlab.experiment import ATTENTION_CSV, ATTENTION_PNG, METRICS_FILE, run_experiment
from attnlab.files import write_atomic, write_json
from attnlab.launchers import apply_threads
from attnlab.packing import take
from attnlab.report import objective_value

log = logging.getLogger(__name__)

SWEEP_STATE = ".sweep.json"

# Jobs of the last multirun of this process that failed: the CLI exits non-zero on them.
failed_jobs: list[str] = []


def run_job(cfg: DictConfig) -> float:
    """Run one job: reuse a finished identical cell, else train; record any failure."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    start = time.perf_counter()
    try:
        exp = from_hydra(cfg)
        exp.validate()  # before any training, and before any cache look-up
        doc = reuse_cached(Path(hc.sweep.dir), out_dir, exp) if multirun else None
        if doc is None:
            if multirun:
                set_aside_other_cell(out_dir, exp)
            apply_threads(exp.trainer.threads, hc)  # TensorFlow only: the config stays as written
            doc = run_experiment(exp, out_dir, take(exp))  # take: trained in a pack, if so
    except Exception as err:
        if not multirun:
            _fail_single_run(err)
        doc = failure_doc(cfg, err)
        # Tags the failure with this sweep's run, which alone decides the exit status.
        doc["run_id"] = (_read(Path(hc.sweep.dir) / SWEEP_STATE) or {}).get("run_id")
        write_json(out_dir / METRICS_FILE, doc)
        # A crash (not bad input) keeps its traceback in the job's log.
        log.error("job failed: %s", doc["error"], exc_info=not is_config_error(err))
    if multirun:
        log.info(progress_line(Path(hc.sweep.dir), hc.job.override_dirname, doc, start))
    return objective_value(doc, cfg.objective)


def _fail_single_run(err: Exception) -> None:
    """A single run with bad input exits 2 with one line; other errors keep their traceback."""
    if not is_config_error(err):
        raise err
    print(f"attnlab: error: {config_error_line(err)}", file=sys.stderr)
    sys.exit(2)


def failure_doc(cfg: DictConfig, err: BaseException) -> dict[str, Any]:
    """metrics.json of a job that failed: its config, no runs, the error in one line."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    config = dotted(container)  # data.*, model.*, trainer.*, seeds: flatten()'s order
    message = config_error_line(err) if is_config_error(err) else f"{type(err).__name__}: {err}"
    error = " ".join(message.split())[:500]  # one line; a TensorFlow error can run long
    return {"config": config, "runs": [], "status": "failed", "error": error}


def set_aside_other_cell(out_dir: Path, exp: ExperimentConfig) -> None:
    """Move a finished run of another config out of this job dir before training into it.

    Dir names leave out keys like `seeds`, so a later run with other seeds lands in the same
    dir; its predecessor's files go to <dir>/replaced/<time>/ instead of being overwritten.
    """
    doc = _read(out_dir / METRICS_FILE)
    if doc is None or doc.get("status") == "failed":
        return
    if cell_identity(doc.get("config", {})) == cell_identity(as_json(flatten(exp))):
        return
    aside = out_dir / "replaced" / time.strftime("%Y-%m-%d_%H-%M-%S")
    aside.mkdir(parents=True, exist_ok=True)
    for name in (METRICS_FILE, ATTENTION_CSV, ATTENTION_PNG):  # metrics.json first: see report
        if (out_dir / name).exists():
            os.replace(out_dir / name, aside / name)
    log.warning("%s held another config's results: moved to %s", out_dir.name, aside)


def reuse_cached(sweep_dir: Path, out_dir: Path, exp: ExperimentConfig) -> dict[str, Any] | None:
    """If any job dir of this sweep holds a finished run of exactly this config, copy it.

    A cell's identity is its full resolved config (seeds included), never its job number
    or dir. Reused runs get status `cached` (diverged ones stay `diverged`); numbers are
    unchanged.
    """
    found = find_cached(sweep_dir, exp)
    if found is None:
        return None
    path, doc = found
    runs = [
        {**run, "status": "diverged" if run["status"] == "diverged" else "cached"}
        for run in doc.get("runs", [])
    ]
    if path.parent.resolve() != out_dir.resolve():
        for name in (ATTENTION_CSV, ATTENTION_PNG):
            if (path.parent / name).exists():
                _copy_atomic(path.parent / name, out_dir / name)
    cached = {"config": as_json(flatten(exp)), "runs": runs}
    write_json(out_dir / METRICS_FILE, cached)
    log.info("reusing finished cell from %s", path.parent.name)
    return cached


def find_cached(sweep_dir: Path, exp: ExperimentConfig) -> tuple[Path, dict[str, Any]] | None:
    """The metrics.json (path and contents) of a finished run of exactly this config in
    any job dir of the sweep, if there is one."""
    identity = cell_identity(as_json(flatten(exp)))
    for path in sorted(sweep_dir.glob(f"*/{METRICS_FILE}")):
        doc = _read(path)
        if doc is None or doc.get("status") == "failed":
            continue
        if cell_identity(doc.get("config", {})) == identity:
            return path, doc
    return None


def _copy_atomic(source: Path, target: Path) -> None:
    write_atomic(target, lambda tmp: shutil.copyfile(source, tmp))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def progress_line(sweep_dir: Path, cell: str, doc: dict[str, Any], start: float) -> str:
    """`[3/6] data.classes=20 model.attn_layers=1: val_acc 0.71 ± 0.05, focused 4/5 seeds,
    8.1 s, ~40 s left`."""
    state = _read(sweep_dir / SWEEP_STATE) or {}
    total, began = state.get("total", 0), state.get("started", time.time())
    done = sum(1 for p in sweep_dir.glob(f"*/{METRICS_FILE}") if p.stat().st_mtime >= began)
    seconds = time.perf_counter() - start
    left = (time.time() - began) / max(done, 1) * max(total - done, 0)
    head = f"[{done}/{total}] {cell.replace(',', ' ') or '(defaults)'}:"
    if doc.get("status") == "failed":
        return f"{head} FAILED: {doc['error']}, {seconds:.1f} s, ~{left:.0f} s left"
    accs = [r["val_accuracy"] for r in doc["runs"] if _finite(r.get("val_accuracy"))]
    mean = sum(accs) / len(accs) if accs else math.nan
    sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
    focused = sum(1 for r in doc["runs"] if r.get("attn_focused") is True)
    cached = " (cached)" if any(r["status"] == "cached" for r in doc["runs"]) else ""
    return (
        f"{head} val_acc {mean:.2f} ± {sd:.2f}, focused {focused}/{len(doc['runs'])} seeds, "
        f"{seconds:.1f} s{cached}, ~{left:.0f} s left"
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def count_jobs(config: DictConfig) -> int:
    """How many jobs the basic sweeper will make of this multirun's overrides."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(lines)
    return len(BasicSweeper.split_arguments(overrides, None)[0])


class SweepCallback(Callback):
    """Progress at start, the report at the end (in the parent process, from disk)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            total = count_jobs(config)
        except Exception:  # a sweeper other than the basic one: progress shows no total
            total = 0
        state = {"total": total, "started": time.time(), "run_id": uuid.uuid4().hex}
        write_json(sweep_dir / SWEEP_STATE, state)
        log.info("sweep of %d jobs into %s", total, sweep_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hc = config.hydra
        if hc.mode == RunMode.MULTIRUN:
            state = _read(Path(hc.sweep.dir) / SWEEP_STATE) or {}
            cell = hc.job.override_dirname.replace(",", " ") or "(defaults)"
            log.info("[job %d of %s] %s: started", hc.job.num + 1, state.get("total", "?"), cell)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from attnlab.report import job_dirs, read_job, write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        # Only this run's failures decide the exit status (cells left in the dir by earlier
        # runs stay in the report); counted before anything is written, in case writing fails.
        run_id = (_read(sweep_dir / SWEEP_STATE) or {}).get("run_id")
        docs = {d.name: read_job(d) for d in job_dirs(sweep_dir)}
        failed = sorted(
            name
            for name, doc in docs.items()
            if doc.get("status") == "failed" and doc.get("run_id") == run_id
        )
        # Hydra turns an exception raised here into a warning, so the CLI reads this instead.
        failed_jobs[:] = failed
        try:
            write_report(sweep_dir)
            log.info("report: %s", sweep_dir / "report.csv")
        except Exception:
            log.exception("writing the report failed; rebuild it with python -m attnlab.report")
            failed_jobs.append("(report)")
        if failed:
            log.error("%d job(s) failed; %s lists the errors", len(failed), sweep_dir / "report.md")
