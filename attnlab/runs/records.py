"""The sweep's files: where each cell lives, and the one reader and writer of its records.

Everything that touches a sweep dir on disk asks this module; it imports neither TensorFlow
nor Hydra, so it is testable on its own. A sweep dir holds:

    .sweep.json      the latest run: run_id, command, start time, pid, host, its cells
    .attnlab.lock    held (flock, as is the dir itself) by the sweep, or report rebuild,
                     running in the dir
    .attnlab.holder.json   who holds it: pid, host, since, command
    .attnlab.workers.lock  shared (flock) by the launcher workers running a job in the dir
    .jobs/           pack specs, and the Hydra dirs (.hydra/, log) of the jobs that ran them
    <cell>/          one per cell, named by its readable overrides plus a hash of its identity
        cell.json      the cell's config; written once, it is what the dir holds
        metrics.json   the finished result; written once, never replaced
        run.json       the latest run's account of the cell: completed, cached or failed
        attention.csv, attention.png, history.csv   written before metrics.json
        seeds/<seed>/  a seed added by a later run: history.csv, attention.csv, then its
                       own metrics.json (one run record), written once as metrics.json is
    report.csv, summary.csv, report.md, figures/   derived: rebuilt from the cells at will

A cell's identity is its full config but for its seeds and keys that cannot change its
numbers; two different cells never share a dir, and the same cell always gets the same dir,
however its overrides were spelled. Its seeds are records of their own: the first training
writes metrics.json (every seed it trained), a later run that asks for more seeds adds one
seeds/<seed>/metrics.json per new seed, and read_cell merges them. A dir of an older
attnlab (named by a hash that held the seeds) is found by its cell.json, not its name: it
stays the cell's home, its bytes untouched (read_cells merges several homes of one cell).

metrics.json is created with a hard link, which fails if the file
exists, so no code path can overwrite a finished result; a failure goes to run.json.

Reading is strict and safe for dirs of unknown origin: anything that is not what attnlab
writes becomes a `failed` record naming the file and what is wrong (never an exception);
symlinks out of the sweep dir, FIFOs, devices and oversized files are not opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnlab.engine.config import dotted
from attnlab.runs.files import TEMP_PREFIX, write_json

METRICS_FILE = "metrics.json"
CELL_FILE = "cell.json"
RUN_FILE = "run.json"
ATTENTION_CSV = "attention.csv"
ATTENTION_PNG = "attention.png"
HISTORY_CSV = "history.csv"
SWEEP_STATE = ".sweep.json"
LOCK_FILE = ".attnlab.lock"
JOBS_DIR = ".jobs"
REPORT_FILES = (
    "report.csv",
    "summary.csv",
    "comparisons.csv",
    "claims.csv",
    "boundary.csv",
    "report.md",
)
FIGURES_DIR = "figures"

SEEDS_DIR = "seeds"  # <cell>/seeds/<seed>/: a seed added after the cell's first training

# Config keys that are not part of a cell's identity: those that cannot change its numbers,
# and its seeds (each seed is a record of its own: a cell grows by seeds).
NOT_IDENTITY = frozenset({"trainer.verbose", "trainer.threads", "objective", "claims", "seeds"})
NOT_IDENTITY_PREFIXES = ("logger.",)

# Run statuses a finished metrics.json may hold; a run counts in the summary unless diverged.
FINISHED_STATUSES = frozenset({"completed", "cached", "diverged"})

# Caps on what the reader opens (a 128-seed metrics.json is ~100 kB; history.csv of 1000
# epochs x 128 seeds ~6 MB).
MAX_JSON_BYTES = 64 << 20
MAX_CSV_BYTES = 256 << 20

NAME_CHARS = 120  # readable part of a cell dir's name; the hash keeps it unique
HASH_CHARS = 10
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+\-\[\]]+")


class RecordError(ValueError):
    """A file in a sweep dir is not what attnlab writes; the message is one line."""


# --- identity and names ---------------------------------------------------------------


def as_json(value: Any) -> Any:
    """value as it reads back from JSON (tuples become lists, and so on)."""
    return json.loads(json.dumps(value))


# Keys added after sweeps were recorded, with the value a record without them means (the
# data and model attnlab had before): at that value a key stays out of the cell's identity,
# so an older sweep's cells keep their names and are reused on resume.
ADDED_KEYS: dict[str, Any] = {
    "data.kind": "default",
    "data.path": "",
    "data.target": "",
    "data.columns": [],
    "data.relevant": [],
    "data.distractors": 0,
    "data.distractor_noise": 0.5,
    "model.builder": "",
}


def cell_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The flat config values that make a cell: all but its seeds, those that cannot change
    its numbers, and ADDED_KEYS at the value their absence means."""
    return {
        k: v
        for k, v in as_json(config).items()
        if k not in NOT_IDENTITY
        and not k.startswith(NOT_IDENTITY_PREFIXES)
        and not (k in ADDED_KEYS and v == ADDED_KEYS[k])
    }


def identity_key(config: dict[str, Any]) -> str:
    """The cell's identity as one canonical string (a dict key)."""
    return json.dumps(cell_identity(config), sort_keys=True)


def identity_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(identity_key(config).encode()).hexdigest()[:HASH_CHARS]


def cell_name(config: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The cell's dir name: its values that differ from the defaults, readable and safe
    (no `/`, `..` or control characters; capped), then a hash of its whole identity.

    The name depends on the cell alone, so `data.classes=20` and a preset that sets the same
    value share a dir, and so do `seeds=[0,1]` and `seeds=[0,1,2,3]`: seeds are not part of
    a cell's identity (dirs of attnlab before seed records hashed them: read_cells finds
    such a dir by its cell.json).
    """
    identity = cell_identity(config)
    parts = [
        f"{k}={_short(v)}"
        for k, v in sorted(identity.items())
        if k != "seeds" and (k not in defaults or as_json(defaults[k]) != v)
    ]
    return f"{_readable(parts)}-{identity_hash(config)}"


def _readable(parts: list[str]) -> str:
    """The parts, safe, joined by commas and capped at NAME_CHARS at a part's end: a name
    never shows a value cut short (`learning_rate=100` of 1e6); `+` marks dropped parts."""
    safe = [_UNSAFE.sub("_", part) for part in parts]
    kept: list[str] = []
    for part in safe:
        if len(",".join([*kept, part])) > NAME_CHARS - 1:
            break
        kept.append(part)
    readable = ",".join(kept).strip("._")
    if len(kept) < len(safe):  # one part alone too long: cut, and marked so
        readable = (readable or safe[0][: NAME_CHARS - 1].strip("._")) + "+"
    return readable or "defaults"


def _short(value: Any) -> str:
    return (
        json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else str(value)
    )


def fallback_name(text: str) -> str:
    """Dir name of a cell whose config cannot even be resolved (its job records why)."""
    return f"unresolved-{hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]}"


# --- writing ----------------------------------------------------------------------------


def write_cell(cell_dir: Path, config: dict[str, Any]) -> None:
    """cell.json: what the dir holds. Written once; a dir that holds another cell is an error."""
    path = cell_dir / CELL_FILE
    if path.exists():
        held = read_json(path, cell_dir.parent)
        if identity_key(held.get("config", {})) != identity_key(config):
            raise RecordError(f"{cell_dir} holds another cell (its {CELL_FILE} differs)")
        return
    with contextlib.suppress(FileExistsError):  # a concurrent job of the same cell
        write_json(path, {"config": config}, replace=False)


def other_cell(cell_dir: Path, config: dict[str, Any]) -> str:
    """Why cell_dir cannot take this cell (its cell.json names another cell, or cannot be
    read), or "": the planner then records that cell failed, and the rest run."""
    path = cell_dir / CELL_FILE
    if not (path.exists() or path.is_symlink()):
        return ""
    try:
        held = read_json(path, cell_dir.parent)
    except RecordError as err:
        return f"{cell_dir}: {err}: move it away to run this cell"
    if identity_key(held.get("config", {})) != identity_key(config):
        return f"{cell_dir} holds another cell (its {CELL_FILE} differs): move it away to run it"
    return ""


def write_result(cell_dir: Path, doc: dict[str, Any]) -> bool:
    """metrics.json, once: True if written, False if the cell already had one (kept as is)."""
    check_metrics(doc, "metrics.json")
    try:
        write_json(cell_dir / METRICS_FILE, doc, replace=False)
    except FileExistsError:
        return False
    return True


def write_attempt(cell_dir: Path, outcome: str, run_id: str | None, error: str = "") -> None:
    """run.json: this run's account of the cell (completed, cached or failed)."""
    doc = {"outcome": outcome, "run_id": run_id, "error": error, "time": time.time()}
    write_json(cell_dir / RUN_FILE, doc)


def set_aside_broken(cell_dir: Path, root: Path) -> Path | None:
    """Move a metrics.json that is not a finished result (corrupt, of the wrong shape, an
    old failure record) out of the way of a retry: renamed, never deleted."""
    path = cell_dir / METRICS_FILE
    if not (path.exists() or path.is_symlink()) or read_cell(cell_dir, root).finished:
        return None
    unread = unreadable_result(cell_dir)
    if unread:  # maybe a finished result: never moved, and the cell is not retrained
        raise RecordError(unread)
    aside = cell_dir / f"metrics.broken-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    path.rename(aside)
    return aside


def unreadable_result(cell_dir: Path) -> str:
    """Why the cell's metrics.json, a regular file, cannot be read as a whole (its
    permissions, over MAX_JSON_BYTES), or "". Such a file may be a finished result: it is
    never set aside, and its cell is not retrained until the user fixes it."""
    path = cell_dir / METRICS_FILE
    try:
        info = path.stat()
    except OSError:
        return ""
    if not stat.S_ISREG(info.st_mode):
        return ""
    if info.st_size > MAX_JSON_BYTES:
        return (
            f"{path} is {info.st_size} bytes, over the {MAX_JSON_BYTES} byte limit: "
            "move it away to run this cell"
        )
    if not os.access(path, os.R_OK):
        return f"{path} cannot be read (permission denied): make it readable to reuse it"
    return ""


def seed_dir(cell_dir: Path, seed: int) -> Path:
    """Where a seed added after the cell's first training keeps its record and CSVs."""
    return cell_dir / SEEDS_DIR / str(int(seed))


def write_seed_result(cell_dir: Path, seed: int, doc: dict[str, Any]) -> bool:
    """seeds/<seed>/metrics.json, once (as write_result): True if written, False if that
    seed already had one (kept as is). doc: metrics.json's shape for this seed alone."""
    check_metrics(doc, f"{SEEDS_DIR}/{seed}/{METRICS_FILE}")
    if doc["config"]["seeds"] != [seed]:
        raise RecordError(f"{SEEDS_DIR}/{seed}/{METRICS_FILE}: its config 'seeds' is not [{seed}]")
    try:
        write_json(seed_dir(cell_dir, seed) / METRICS_FILE, doc, replace=False)
    except FileExistsError:
        return False
    return True


def set_aside_broken_seed(cell_dir: Path, seed: int, root: Path) -> Path | None:
    """Move a seed's dir whose metrics.json is not a finished result of this cell out of
    the way of retraining that seed: renamed (seeds/<seed>.broken-<time>-<pid>), never
    deleted. A seed dir without metrics.json (a killed write) stays: retraining replaces
    its CSVs, which no finished record vouches for."""
    place = seed_dir(cell_dir, seed)
    path = place / METRICS_FILE
    if not (path.exists() or path.is_symlink()):
        return None
    runs, errors, _ = _seed_records(cell_dir, root, _held_config(cell_dir, root))
    if seed in runs and seed not in errors:
        return None
    aside = place.with_name(f"{seed}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    place.rename(aside)
    return aside


def one_line(message: str, limit: int = 500) -> str:
    return " ".join(str(message).split())[:limit]


# --- reading ----------------------------------------------------------------------------


def inside(path: Path, root: Path) -> bool:
    """path (symlinks resolved) lies within root."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def read_bytes(path: Path, root: Path, cap: int) -> bytes:
    """A regular file's bytes, if it lies within root and is at most cap bytes; else
    RecordError (no FIFO, device or symlink out of root is ever opened)."""
    if not inside(path, root):
        raise RecordError(f"{path.name} points outside the sweep dir")
    try:
        info = path.stat()
    except OSError as err:
        raise RecordError(f"{path.name} cannot be read ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise RecordError(f"{path.name} is not a regular file")
    if info.st_size > cap:
        raise RecordError(f"{path.name} is {info.st_size} bytes, over the {cap} byte limit")
    try:
        with open(path, "rb") as f:
            return f.read(cap + 1)
    except OSError as err:
        raise RecordError(f"{path.name} cannot be read ({err.strerror})") from None


def read_json(path: Path, root: Path) -> dict[str, Any]:
    """A JSON object from path, or RecordError saying what is wrong."""
    raw = read_bytes(path, root, MAX_JSON_BYTES)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise RecordError(f"{path.name} is corrupt ({one_line(str(err), 120)})") from None
    if not isinstance(doc, dict):
        raise RecordError(f"{path.name} is not a JSON object")
    return doc


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_config(config: Any, where: str) -> dict[str, Any]:
    """A flat config as attnlab writes it: str keys, scalar values or lists of names
    (data.columns, data.relevant), `seeds` a list of ints."""
    if not isinstance(config, dict) or not config:
        raise RecordError(f"{where}: 'config' is not a non-empty object")
    for key, value in config.items():
        scalar = value is None or isinstance(value, str | int | float | bool)
        names = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not (scalar or names) and key != "seeds":
            raise RecordError(f"{where}: config value {key} is not a scalar")
    seeds = config.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(_is_seed(s) for s in seeds):
        raise RecordError(f"{where}: config 'seeds' is not a non-empty list of integers >= 0")
    return config


def check_metrics(doc: dict[str, Any], where: str) -> None:
    """metrics.json of a finished cell: its config and one run record per seed."""
    config = check_config(doc.get("config"), where)
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        raise RecordError(f"{where}: 'runs' is not a non-empty list")
    for run in runs:
        if not isinstance(run, dict):
            raise RecordError(f"{where}: a run record is not an object")
        if not _is_seed(run.get("seed")):
            raise RecordError(f"{where}: a run's 'seed' is not an integer >= 0")
        if run.get("status") not in FINISHED_STATUSES:
            raise RecordError(f"{where}: run status {run.get('status')!r} is not finished")
        for key, value in run.items():
            if key not in ("seed", "status") and not (
                _is_number(value) or isinstance(value, bool | str)
            ):
                raise RecordError(f"{where}: run value {key} is not a number or text")
    if sorted(r["seed"] for r in runs) != sorted(config["seeds"]):
        raise RecordError(f"{where}: its runs' seeds differ from config 'seeds'")


@dataclass
class CellRecord:
    """What one cell dir says: its config, and either its runs or why it has none."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "failed"  # completed | cached | failed
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    run_id: str | None = None  # the run that last touched it (run.json), if any
    attempt: str | None = None  # that run's outcome: completed, cached or failed
    result_run_id: str | None = None  # the run that wrote metrics.json
    attempt_error: str = ""  # run.json's error of a finished cell's latest attempt
    # Each recorded seed's run id (the run that wrote its record) and the dir of its record
    # and CSVs (the cell dir for metrics.json's seeds, seeds/<seed>/ for a seed added later,
    # or another dir of the same cell: read_cells).
    seed_run_ids: dict[int, str | None] = field(default_factory=dict)
    seed_sources: dict[int, Path] = field(default_factory=dict)
    # Seeds whose own record (seeds/<seed>/metrics.json) is not what attnlab writes: why.
    seed_errors: dict[int, str] = field(default_factory=dict)
    duplicates: int = 0  # seed records ignored: the seed was recorded already (home wins)
    merged: list[str] = field(default_factory=list)  # other dirs of this cell read into it

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "cached")


def read_cell(cell_dir: Path, root: Path) -> CellRecord:
    """The record of one cell dir, never an exception: anything unexpected is `failed`."""
    record = CellRecord(name=cell_dir.name)
    try:
        os.listdir(cell_dir)
    except OSError as err:  # mode 000, say: the row says so, the report goes on
        record.error = f"{cell_dir.name} cannot be read ({err.strerror})"
        return record
    attempt = _read_optional(cell_dir / RUN_FILE, root)
    if isinstance(attempt, dict):
        record.run_id = attempt.get("run_id") if isinstance(attempt.get("run_id"), str) else None
        record.attempt = attempt.get("outcome") if isinstance(attempt.get("outcome"), str) else None
    record.config = _known_config(cell_dir, root)
    held = _read_optional(cell_dir / CELL_FILE, root)  # what the dir holds, if it says
    held_config = _checked_or(held.get("config"), {}) if isinstance(held, dict) else {}
    path = cell_dir / METRICS_FILE
    if path.exists() or path.is_symlink():
        try:
            doc = read_json(path, root)
            if doc.get("status") == "failed":  # attnlab < 0.2 wrote failures here
                record.error = one_line(doc.get("error") or "failed (no error recorded)")
                record.config = _checked_or(doc.get("config"), record.config)
                return record
            check_metrics(doc, METRICS_FILE)
            if held_config and identity_key(doc["config"]) != identity_key(held_config):
                raise RecordError(f"{METRICS_FILE} holds another cell than {CELL_FILE} says")
        except RecordError as err:
            record.error = str(err)
            return record
        record.config, record.runs = doc["config"], doc["runs"]
        record.result_run_id = doc.get("run_id") if isinstance(doc.get("run_id"), str) else None
        cached = isinstance(attempt, dict) and attempt.get("outcome") == "cached"
        record.status = "cached" if cached else "completed"
        if isinstance(attempt, dict) and attempt.get("outcome") == "failed":
            record.attempt_error = one_line(attempt.get("error") or "failed (no error recorded)")
        record.seed_run_ids = {run["seed"]: record.result_run_id for run in record.runs}
        record.seed_sources = {run["seed"]: cell_dir for run in record.runs}
        add_seed_records(record, cell_dir, root, held_config or doc["config"])
        return record
    if isinstance(attempt, dict) and attempt.get("outcome") == "failed":
        record.error = one_line(attempt.get("error") or "failed (no error recorded)")
    elif isinstance(attempt, RecordError):
        record.error = str(attempt)
    else:
        record.error = (
            f"{METRICS_FILE} is missing (the job was killed, is still running, or crashed)"
        )
    return record


def add_seed_records(
    record: CellRecord, cell_dir: Path, root: Path, config: dict[str, Any]
) -> None:
    """Merge the cell's seeds/<seed>/ records into its finished record, in seed order: a
    seed metrics.json holds already is a duplicate (metrics.json wins); a malformed seed
    record is that seed's failure, never the cell's."""
    runs, errors, run_ids = _seed_records(cell_dir, root, config)
    held = {run["seed"] for run in record.runs}
    for seed, run in runs.items():
        if seed in held:
            record.duplicates += 1
            continue
        record.runs.append(run)
        record.seed_run_ids[seed] = run_ids[seed]
        record.seed_sources[seed] = seed_dir(cell_dir, seed)
    record.seed_errors.update({s: why for s, why in errors.items() if s not in held})
    record.runs.sort(key=lambda run: run["seed"])
    record.config = {**record.config, "seeds": [run["seed"] for run in record.runs]}


def _seed_records(
    cell_dir: Path, root: Path, config: dict[str, Any]
) -> tuple[dict[int, dict[str, Any]], dict[int, str], dict[int, str | None]]:
    """The seed records under cell_dir/seeds/: runs by seed, why each malformed one is not
    a record, and each run's run id. Names other than a seed (a dir set aside as broken,
    anything else) are not seed records; a seed dir without metrics.json (a killed write)
    is no record either."""
    runs: dict[int, dict[str, Any]] = {}
    errors: dict[int, str] = {}
    run_ids: dict[int, str | None] = {}
    seeds_dir = cell_dir / SEEDS_DIR
    if seeds_dir.is_symlink() or not seeds_dir.is_dir():
        return runs, errors, run_ids
    try:
        names = sorted(os.listdir(seeds_dir))
    except OSError:
        return runs, errors, run_ids
    for name in names:
        if not name.isdigit() or str(int(name)) != name:
            continue
        seed, path = int(name), seeds_dir / name / METRICS_FILE
        where = f"{SEEDS_DIR}/{name}/{METRICS_FILE}"
        if not (path.exists() or path.is_symlink()):
            continue
        try:
            doc = read_json(path, root)
            check_metrics(doc, where)
            if doc["config"]["seeds"] != [seed]:
                raise RecordError(f"{where}: its config 'seeds' is not [{seed}]")
            if config and identity_key(doc["config"]) != identity_key(config):
                raise RecordError(f"{where} holds another cell than {CELL_FILE} says")
        except RecordError as err:
            text = str(err)
            errors[seed] = text if text.startswith(where) else f"{SEEDS_DIR}/{name}/{text}"
            continue
        runs[seed] = doc["runs"][0]
        run_ids[seed] = doc.get("run_id") if isinstance(doc.get("run_id"), str) else None
    return runs, errors, run_ids


def _held_config(cell_dir: Path, root: Path) -> dict[str, Any]:
    """The config the cell dir holds: its cell.json's, else its metrics.json's, else {}."""
    for name in (CELL_FILE, METRICS_FILE):
        doc = _read_optional(cell_dir / name, root)
        if isinstance(doc, dict):
            config = _checked_or(doc.get("config"), {})
            if config:
                return config
    return {}


def _read_optional(path: Path, root: Path) -> dict[str, Any] | RecordError | None:
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        return read_json(path, root)
    except RecordError as err:
        return err


def _checked_or(config: Any, fallback: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_config(config, "")
    except RecordError:
        return fallback


def _known_config(cell_dir: Path, root: Path) -> dict[str, Any]:
    """The cell's config from cell.json, or from Hydra's .hydra/config.yaml (read as plain
    YAML: interpolations stay text, nothing from the environment gets in)."""
    doc = _read_optional(cell_dir / CELL_FILE, root)
    if isinstance(doc, dict):
        return _checked_or(doc.get("config"), {})
    path = cell_dir / ".hydra" / "config.yaml"
    if not path.exists():
        return {}
    try:
        import yaml

        tree = yaml.safe_load(read_bytes(path, root, MAX_JSON_BYTES))
    except Exception:  # unreadable or broken YAML: no config, not a crash
        return {}
    return dotted(tree) if isinstance(tree, dict) else {}


def cell_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's cell dirs, sorted: real dirs (no symlinks) that hold a cell.json, a
    metrics.json or Hydra's .hydra/ (dirs of attnlab < 0.2); hidden dirs are not cells."""
    try:
        entries = list(os.scandir(sweep_dir))
    except OSError:
        return []
    dirs = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        markers = (path / CELL_FILE, path / METRICS_FILE, path / ".hydra")
        try:
            if any(m.exists() or m.is_symlink() for m in markers):
                dirs.append(path)
        except OSError:  # a dir that cannot be read: reported as such (read_cell)
            dirs.append(path)
    return sorted(dirs)


def read_cell_dirs(sweep_dir: Path) -> list[CellRecord]:
    """Each cell dir's own record, by dir (several dirs of one cell stay apart): what each
    dir's latest attempt says, for the end of a sweep and its progress lines."""
    return [read_cell(d, sweep_dir) for d in cell_dirs(sweep_dir)]


def read_cells(sweep_dir: Path) -> list[CellRecord]:
    """Every cell of the sweep dir once (merge_homes), with every seed recorded for it."""
    return merge_homes(read_cell_dirs(sweep_dir))


def merge_homes(cells: list[CellRecord]) -> list[CellRecord]:
    """One record per cell: dirs that hold the same cell (older attnlab named dirs by a
    hash that held the seeds, so `seeds=[0,1]` and later `seeds=[0..9]` made two) are read
    as one, named by its home: the finished dir with the most seeds (tie: the first name).
    The others' seeds join it (a seed recorded twice: the home's record wins, counted in
    `duplicates`), and an unfinished dir of a cell that has a home adds nothing. Cells of
    which no dir finished stay apart, each dir with its own failure."""
    groups: dict[str, list[CellRecord]] = {}
    for record in cells:
        if record.finished:
            groups.setdefault(identity_key(record.config), []).append(record)
    homes: dict[str, CellRecord] = {}
    for key, group in groups.items():
        group.sort(key=lambda r: (-len(r.runs), r.name))
        home = group[0]
        for other in group[1:]:
            _merge_into(home, other)
        homes[key] = home
    out = []
    for record in cells:
        its_home = homes.get(identity_key(record.config)) if record.config else None
        if its_home is None or its_home is record:
            out.append(record)
    return out


def _merge_into(home: CellRecord, other: CellRecord) -> None:
    held = {run["seed"] for run in home.runs}
    for run in other.runs:
        seed = run["seed"]
        if seed in held:
            home.duplicates += 1
            continue
        held.add(seed)
        home.runs.append(run)
        home.seed_run_ids[seed] = other.seed_run_ids.get(seed)
        home.seed_sources[seed] = other.seed_sources[seed]
    home.seed_errors.update({s: e for s, e in other.seed_errors.items() if s not in held})
    home.duplicates += other.duplicates
    home.merged.append(other.name)
    home.runs.sort(key=lambda run: run["seed"])
    home.config = {**home.config, "seeds": [run["seed"] for run in home.runs]}


def finished_cells(sweep_dir: Path) -> dict[str, Path]:
    """identity_key -> home dir of every finished cell in the sweep dir (merge_homes)."""
    return {
        identity_key(record.config): sweep_dir / record.name
        for record in read_cells(sweep_dir)
        if record.finished
    }


# --- the sweep's own files ----------------------------------------------------------------


def read_state(sweep_dir: Path) -> dict[str, Any]:
    """.sweep.json of the latest run, or {} if there is none or it is unreadable."""
    try:
        return read_json(sweep_dir / SWEEP_STATE, sweep_dir)
    except RecordError:
        return {}


def requested_seeds(state: dict[str, Any]) -> dict[str, list[int]]:
    """Each cell's seeds the run of .sweep.json asked for, by dir name (state["seeds"],
    written by attnlab's sweeper); {} where it records none (older sweep dirs, other
    sweepers): the report then uses every seed a cell holds. Entries that are not a list
    of seeds are skipped."""
    given = state.get("seeds")
    if not isinstance(given, dict):
        return {}
    return {
        str(name): sorted(set(seeds))
        for name, seeds in given.items()
        if isinstance(seeds, list) and seeds and all(_is_seed(s) for s in seeds)
    }


def new_state(command: str, cells: list[str]) -> dict[str, Any]:
    return {
        "run_id": os.urandom(8).hex(),
        "command": command,
        "started": time.time(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "cells": cells,
    }


HOLDER_FILE = ".attnlab.holder.json"


def command_line(program: str = "attnlab") -> str:
    """This process's command as a user would retype it."""
    import shlex
    import sys

    return shlex.join([*shlex.split(program), *sys.argv[1:]])


class SweepLock:
    """The sweep dir's lock: an flock on the dir itself, which removing a file cannot undo
    (a lock file removed by hand would let a second process lock a new one), and on
    LOCK_FILE (the lock earlier versions of attnlab take). Both are released
    when the process ends, however it ends."""

    def __init__(self, sweep_dir: Path) -> None:
        from filelock import FileLock

        self.sweep_dir = sweep_dir
        self._file = FileLock(str(sweep_dir / LOCK_FILE))
        self._dir_fd: int | None = None

    def try_acquire(self) -> bool:
        import fcntl

        from filelock import Timeout

        fd = os.open(self.sweep_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:  # a filesystem without flock on dirs (NFS): the file lock alone
            os.close(fd)
            fd = -1
        try:
            self._file.acquire(timeout=0)
        except Timeout:
            if fd >= 0:
                os.close(fd)
            return False
        self._dir_fd = fd
        return True

    def release(self) -> None:
        self._file.release()
        if self._dir_fd is not None:
            if self._dir_fd >= 0:
                os.close(self._dir_fd)
            self._dir_fd = None

    def __enter__(self) -> SweepLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_sweep_dir(sweep_dir: Path, command: str) -> SweepLock:
    """Hold the sweep dir's lock (SweepLock) and say who holds it; RecordError naming the
    holder if another process does.

    A sweep holds it for its whole run, `python -m attnlab.report` while it rebuilds the
    report: the sweep's files have one owner at a time.
    """
    lock = SweepLock(sweep_dir)
    if not lock.try_acquire():
        raise RecordError(f"{sweep_dir} is in use by {holder_text(sweep_dir)}; wait for it to end")
    try:
        wait_for_workers(sweep_dir)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        write_json(sweep_dir / HOLDER_FILE, {**holder, "command": command})
    except BaseException:
        lock.release()
        raise
    return lock


def holder_text(sweep_dir: Path, wait: float = 3.0) -> str:
    """Who holds the sweep dir's lock, as the holder file says. A process that has just won
    the lock writes that file a moment later: a holder file naming a process that is gone
    is re-read for up to `wait` seconds, and never named."""
    deadline = time.monotonic() + wait
    while True:
        held = _read_optional(sweep_dir / HOLDER_FILE, sweep_dir)
        held = held if isinstance(held, dict) else {}
        if _alive(held):
            break
        if time.monotonic() > deadline:
            return "another process"
        time.sleep(0.05)
    pid, host = one_line(str(held.get("pid", "?")), 20), one_line(str(held.get("host", "?")), 80)
    return (
        f"another process (pid {pid} on {host}, since {_clock(held.get('since'))}: "
        f"{one_line(str(held.get('command', '?')), 300)})"
    )


def _alive(held: dict[str, Any]) -> bool:
    """The holder file names a running process (on another host: taken as running)."""
    pid = held.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if held.get("host") != socket.gethostname():
        return bool(held.get("host"))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: running, as another user
        return True
    return True


def _clock(since: Any) -> str:
    """A holder's start time as HH:MM:SS, or "?" for anything but a sane timestamp."""
    try:
        return time.strftime("%H:%M:%S", time.localtime(float(since)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


WORKERS_LOCK = ".attnlab.workers.lock"
# The sweep process's pid, set by the sweep for the launcher workers it starts.
OWNER_ENV = "ATTNLAB_SWEEP_OWNER"


@contextlib.contextmanager
def worker_share(sweep_dir: Path) -> Iterator[None]:
    """Held by a launcher's worker while it runs a job in sweep_dir (a shared flock): the
    next sweep or report waits for it (wait_for_workers), so a worker that outlived a
    killed sweep never races its resume."""
    import fcntl

    with _flocked(sweep_dir / WORKERS_LOCK, fcntl.LOCK_SH):
        yield


CELL_LOCK = ".attnlab.cell.lock"


@contextlib.contextmanager
def cell_lock(cell_dir: Path) -> Iterator[None]:
    """Held (an exclusive flock in the cell's dir) by a job that trains one cell under a
    sweeper other than attnlab's: two jobs of one cell (`seeds=[0,1],[2,3]` under the basic
    sweeper and a parallel launcher; a seed list is not part of the cell) then run one after
    the other, and the second trains only the seeds the first did not, as seed records,
    instead of both writing the first training's files."""
    import fcntl

    cell_dir.mkdir(parents=True, exist_ok=True)
    with _flocked(cell_dir / CELL_LOCK, fcntl.LOCK_EX):
        yield


@contextlib.contextmanager
def _flocked(path: Path, mode: int) -> Iterator[None]:
    """An flock of mode (fcntl.LOCK_SH or LOCK_EX) on path, made if missing, held until the
    block ends; released by closing the file (the kernel also releases it when the process
    dies)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def wait_for_workers(sweep_dir: Path, timeout: float = 120.0) -> None:
    """Wait until no worker of an earlier sweep runs a job in sweep_dir (they end with
    their sweep: attnlab.sweep.jobs.die_with_sweep); RecordError after timeout seconds."""
    import fcntl
    import logging

    path = sweep_dir / WORKERS_LOCK
    if not path.exists():
        return
    fd = os.open(path, os.O_RDWR)
    try:
        deadline = time.monotonic() + timeout
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RecordError(
                        f"workers of an earlier run still write cells in {sweep_dir} (they "
                        f"hold {WORKERS_LOCK} after {timeout:.0f} s)"
                    ) from None
                if not said:
                    said = True
                    logging.getLogger(__name__).info(
                        "waiting for the workers of an earlier run in %s to end", sweep_dir
                    )
                time.sleep(0.05)
    finally:
        os.close(fd)


def remove_temp_files(sweep_dir: Path) -> int:
    """Delete temp files that killed writes left in the sweep dir, its cells (a dir whose
    first cell.json a killed planning was writing holds nothing else), figures/ and .jobs/;
    return how many. Call only while holding the sweep's lock."""
    removed = 0
    try:
        subdirs = [Path(e.path) for e in os.scandir(sweep_dir) if e.is_dir(follow_symlinks=False)]
    except OSError:
        subdirs = []
    seed_dirs = []  # a kill while a seed's record was being written
    for sub in subdirs:
        with contextlib.suppress(OSError):  # no seeds/, or an unreadable cell dir
            if (sub / SEEDS_DIR).is_symlink():
                continue
            seed_dirs += [
                Path(e.path) for e in os.scandir(sub / SEEDS_DIR) if e.is_dir(follow_symlinks=False)
            ]
    places = [sweep_dir, *subdirs, *seed_dirs]
    for place in places:
        if place.is_symlink() or not place.is_dir():
            continue
        for path in place.glob(f"{TEMP_PREFIX}*"):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def iter_legacy(sweep_dir: Path) -> Iterator[tuple[Path, CellRecord]]:
    """Cell dirs of attnlab < 0.2 (named by overrides alone, no cell.json) with a result."""
    for cell_dir in cell_dirs(sweep_dir):
        if (cell_dir / CELL_FILE).exists():
            continue
        record = read_cell(cell_dir, sweep_dir)
        if record.config:
            yield cell_dir, record
