"""attnlab's sweeper: the grid's cells checked, deduplicated and packed before any job runs.

Hydra's basic sweeper hands each cell to the launcher as its own job and learns of a bad
value only when that job fails. This one (the default; hydra_plugins/attnlab_sweeper is its
thin plugin shell) composes every cell first, in the parent:

- a cell that is invalid (bad value, unresolvable interpolation, too big for memory) gets
  its failure recorded in its own dir, and no job;
- a cell finished in the sweep dir by an earlier run is reused as it is (`cached`);
- the rest are grouped into packs (attnlab.sweep.packing: cells that share a model shape, at most
  `max_replicas` seeds and what fits in a job's memory), and each pack is one job for
  whichever launcher the user chose (basic, joblib, submitit, Ray): the job trains the pack
  as one model and writes each of its cells (attnlab.sweep.jobs.run_pack_job).

A launcher that loses a job (a cancelled or timed-out SLURM task, a killed worker) raises
here; the cells without a result are then recorded as failed by the end-of-sweep callback,
and the report is written as for any sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from attnlab.engine.config import ConfigError, ExperimentConfig, dotted
from attnlab.engine.resources import BASE_BYTES, GIB, USABLE_SHARE, available_memory, estimate_bytes
from attnlab.runs import records
from attnlab.runs.files import write_json, write_text
from attnlab.sweep import adaptive, boundary_search
from attnlab.sweep.callback import open_sweep_dir
from attnlab.sweep.cells import PACK_ENV, Cell, hydra_value, make_cell, strip_hydra
from attnlab.sweep.controllers import quiet_controllers
from attnlab.sweep.packing import plan_packs
from attnlab.sweep.signals import raise_if_stopped

log = logging.getLogger(__name__)


def expand(overrides: list[Override]) -> list[list[str]]:
    """Every job's overrides: the product of the sweep lists (as Hydra's basic sweeper)."""
    lists = []
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                given = override.input_line or key
                raise ConfigError(
                    f"{given} is not allowed under attnlab's sweeper: interval() "
                    "is a continuous range for an optimizing sweeper (hydra/sweeper=optuna); "
                    f"a grid takes a list or a range, e.g. {key}=1,2,3 or {key}=range(1,4)"
                )
            lists.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            lists.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(job) for job in itertools.product(*lists)]


def check_baselines(overrides: list[Override], baselines: dict[str, Any]) -> None:
    """Refuse, before anything runs, a baseline (hydra.sweeper.baseline.<key>) whose key is
    not swept or whose value is not one of that key's values (one line, as comparisons.csv
    would word it)."""
    if not baselines:
        return
    from attnlab.runs.comparisons import choose_baselines

    axes = {
        override.get_key_element().lstrip("+~"): list(override.sweep_iterator())
        for override in overrides
        if override.is_discrete_sweep()
    }
    choose_baselines({k: v for k, v in axes.items() if len(v) > 1}, baselines)


def job_memory(launcher_cfg: Any) -> int:
    """Bytes one job may use: the launcher's per-job memory (submitit's mem_gb) if it sets
    one, else what this machine has free."""
    mem_gb = OmegaConf.select(launcher_cfg, "mem_gb") if launcher_cfg is not None else None
    return int(float(mem_gb) * GIB) if mem_gb else available_memory()


def pack_bytes(pack: list[ExperimentConfig]) -> int:
    """A pack's estimated peak memory: its cells, their heads padded to the widest."""
    widest = max(c.data.classes for c in pack)
    need = sum(
        estimate_bytes(dataclasses.replace(c, data=dataclasses.replace(c.data, classes=widest)))
        for c in pack
    )
    return need + BASE_BYTES


def pack_fits(pack: list[ExperimentConfig], memory: int) -> bool:
    """The pack's cells, their heads padded to the widest, fit in one job's memory."""
    return pack_bytes(pack) <= USABLE_SHARE * memory


@dataclass
class SweepRequest:
    """What the sweeper was asked: hydra.sweeper's options and the command line's overrides."""

    # Swept keys and their comma-separated values from a preset (hydra.sweeper.params).
    params: dict[str, str] = field(default_factory=dict)
    # The command line's overrides, added after params.
    arguments: list[str] = field(default_factory=list)
    # Train cells that share a model shape as one model (one job per pack).
    pack: bool = True
    # Seeds one job trains at most.
    max_replicas: int = 128
    # Swept axes' baselines for comparisons.csv, nested by key ({"model": {"attn_layers": 2}}).
    baseline: Any = None
    # List the cells, packs and memory estimates, then stop: nothing trained or written.
    dry_run: bool = False
    # hydra.sweeper.adaptive: rounds of more seeds where the answer is undecided (off: unset).
    adaptive: adaptive.AdaptiveOptions = field(default_factory=adaptive.AdaptiveOptions)
    # hydra.sweeper.boundary: search where a rate crosses a level along an integer key (off:
    # every option unset).
    boundary: boundary_search.BoundaryOptions = field(
        default_factory=boundary_search.BoundaryOptions
    )

    def baselines(self) -> dict[str, Any]:
        """The baselines by dotted key ({"model.attn_layers": 2})."""
        if not self.baseline:
            return {}
        tree = (
            OmegaConf.to_container(self.baseline)
            if OmegaConf.is_config(self.baseline)
            else self.baseline
        )
        return dotted(tree) if isinstance(tree, dict) else {}

    def check(self) -> None:
        """One-line error for an option out of range, before anything is written."""
        if self.max_replicas < 1:
            raise ConfigError(
                f"hydra.sweeper.max_replicas={self.max_replicas} is not allowed: an integer >= 1"
            )


@dataclass
class Plan:
    """The sweep's cells sorted: every name of the run in order, the cells to train, and
    counts for the plan's log line; blocked: cell name -> why its dir cannot be written."""

    names: list[str] = field(default_factory=list)
    pending: list[Cell] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    reused: int = 0
    invalid: int = 0
    grown: int = 0  # pending cells that have a home: only their missing seeds train
    # Each cell's requested seeds (sorted), by the name of its dir.
    seeds: dict[str, list[int]] = field(default_factory=dict)


def sweep(
    config: DictConfig, hydra_context: Any, launcher: Any, request: SweepRequest
) -> list[Sequence[JobReturn]]:
    """Compose every cell, record the invalid ones, reuse the finished ones, pack the rest
    into jobs and launch them; a lost job's cells are recorded failed with the reason."""
    request.check()
    check_app(config)
    sweep_dir = Path(config.hydra.sweep.dir)
    lines = [f"{k}={v}" for k, v in request.params.items()] + request.arguments
    parser = OverridesParser.create(config_loader=hydra_context.config_loader)
    overrides = parser.parse_overrides(lines)
    check_baselines(overrides, request.baselines())
    jobs = expand(overrides)
    if request.adaptive.on and request.boundary.on:
        raise ConfigError(
            "hydra.sweeper.adaptive and hydra.sweeper.boundary are not allowed together: a "
            "boundary search chooses its own seeds per probe; set one of them"
        )
    if request.boundary.on:
        search = prepare_boundary(overrides, jobs, request, config, hydra_context)
        cells: list[Cell] = []
    else:
        cells = compose_all(hydra_context, config, jobs)
        refuse_hopeless(jobs, cells)
    if request.adaptive.on:
        valid = [c.exp for c in cells if c.exp is not None]
        claims = sorted({text for c in cells for text in adaptive.cell_claims(c)})
        request.adaptive.check(max((len(e.seeds) for e in valid), default=1), claims)
    if request.dry_run:  # read only: no sweep dir is made, no file written
        lines_out = (
            [
                "dry run: a boundary search chooses its cells round by round from the results of "
                "the last; there is no plan to list before training"
            ]
            if request.boundary.on
            else dry_run_lines(sweep_dir, cells, request, config)
        )
        for line in lines_out:
            log.info("%s", line)
        return []
    # Every check passed: now the sweep dir is made, locked and written (the sweeper's own
    # job, as in Hydra's basic sweeper; attnlab's callback leaves it to the sweeper).
    open_sweep_dir(sweep_dir)
    # As Hydra's basic sweeper does, but atomically: a kill leaves the old file or the new.
    write_text(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(config))

    state = records.read_state(sweep_dir)
    if request.boundary.on:
        return search.run(
            sweep_dir,
            state,
            lambda round_cells, index: run_round(
                sweep_dir, round_cells, state, request, config, launcher, index
            ),
        )
    if not request.adaptive.on:
        return run_round(sweep_dir, cells, state, request, config, launcher)
    options = request.adaptive
    return adaptive.run_adaptive(
        sweep_dir,
        cells,
        state,
        options,
        targets_of=lambda by_key: adaptive.targets_for(by_key, options),
        train_round=lambda round_cells, index: run_round(
            sweep_dir, round_cells, state, request, config, launcher, index
        ),
        compose_seeds=lambda position, seeds: compose(
            hydra_context, config, adaptive.with_seeds(jobs[position], seeds), position
        ),
    )


def prepare_boundary(
    overrides: list[Override],
    jobs: list[list[str]],
    request: SweepRequest,
    config: DictConfig,
    hydra_context: Any,
) -> boundary_search.BoundarySearch:
    """The boundary search, checked before any dir is made: its options, and every group's
    opening cells composed (a value out of range in all of them is refused in one line)."""
    options = request.boundary
    rule = options.check(overrides)

    def compose_cell(lines: list[str], index: int) -> Cell:
        return compose(hydra_context, config, lines, index)

    keys = boundary_search.swept_keys(overrides)
    groups = boundary_search.make_groups(jobs, keys, compose_cell, rule.max_models)
    search = boundary_search.BoundarySearch(options, rule, groups, compose_cell)
    refuse_hopeless(*search.opening_cells())
    return search


def run_round(
    sweep_dir: Path,
    cells: list[Cell],
    state: dict[str, Any],
    request: SweepRequest,
    config: DictConfig,
    launcher: Any,
    round_index: int = 0,
) -> list[Sequence[JobReturn]]:
    """One round of training in an open (locked) sweep dir: sort the cells (invalid,
    reused, pending), pack the pending ones, record the plan in .sweep.json, launch.

    A plain grid is one round. A sweep that chooses its next cells from the results of the
    last (more seeds where a claim is undecided, probes along an axis) calls this once per
    round with that round's cells: .sweep.json's cells and work then grow with each round,
    and round_index keeps each round's pack ids apart.
    """
    run_id = state.get("run_id")
    plan = sort_cells(sweep_dir, cells, run_id)
    memory = job_memory(OmegaConf.select(config, "hydra.launcher"))
    packs = plan_packs(
        [c.exp for c in plan.pending if c.exp is not None],
        request.max_replicas if request.pack else 1,
        (lambda p: pack_fits(p, memory)) if request.pack else (lambda p: len(p) == 1),
    )
    # Every round's cells, in order, each once: the report covers them all.
    state["cells"] = list(dict.fromkeys([*(state.get("cells") or []), *plan.names]))
    if request.baselines():  # read by the report (attnlab.runs.comparisons)
        state["baselines"] = request.baselines()
    if plan.blocked:
        state["blocked"] = {**state.get("blocked", {}), **plan.blocked}
    # The seeds each cell was asked for: the report uses these (records.requested_seeds).
    state["seeds"] = {**(state.get("seeds") or {}), **plan.seeds}
    # Seed-epochs each cell to train takes: progress lines measure speed in these.
    state["work"] = {c.name: work(c.exp) for c in plan.pending if c.exp is not None}
    write_json(sweep_dir / records.SWEEP_STATE, state)
    batch, packs_cells = write_packs(
        sweep_dir, run_id, plan.pending, packs, state["work"], round_index
    )
    log.info(
        "%s %d cells into %s: %d to train in %d job(s)%s, %d reused, %d invalid",
        "sweep of" if round_index == 0 else f"round {round_index + 1}:",
        len(plan.names),
        sweep_dir,
        len(plan.pending),
        len(batch),
        f" ({plan.grown} of them only their missing seeds)" if plan.grown else "",
        plan.reused,
        plan.invalid,
    )
    if not batch:
        return []
    return launch(launcher, batch, sweep_dir, run_id, packs_cells, config)


def check_app(config: DictConfig) -> None:
    """ConfigError (one line, before anything is written) for another app's config: the
    sweeper composes and trains attnlab's cells, and would only fail every job there."""
    keys = {str(k) for k in config if k != "hydra"}
    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    if {"data", "model", "trainer"} <= keys and keys <= known:
        return
    raise ConfigError(
        f"hydra/sweeper=attnlab is not allowed for this app (its config has "
        f"{', '.join(sorted(keys)) or 'no keys'}): attnlab's sweeper runs attnlab's task "
        "only; use hydra/sweeper=basic"
    )


def refuse_hopeless(jobs: list[list[str]], cells: list[Cell]) -> None:
    """ConfigError (one line, before any dir is made) for a value that is out of range in
    every cell it appears in: it cannot succeed, and a sweep dir of failed cells would
    only look like a crash. A value bad only in combination with another axis's value
    fails its own cells; so do a cell too big for memory and an unresolvable interpolation."""
    cells_of: dict[str, list[Cell]] = {}
    for job, cell in zip(jobs, cells, strict=True):
        for line in job:
            cells_of.setdefault(line, []).append(cell)
    for line, its_cells in cells_of.items():
        if all(c.out_of_range for c in its_cells):
            key = line.lstrip("+~").split("=", 1)[0]
            named = [c.error for c in its_cells if c.error.startswith(f"{key}=")]
            raise ConfigError((named or [its_cells[0].error])[0])


# A dir that refuses writes (mode bits, a read-only mount): a finished cell there is reused.
READ_ONLY_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def sort_cells(sweep_dir: Path, cells: list[Cell], run_id: str | None) -> Plan:
    """Each distinct cell blocked, invalid (its failure recorded), reused or pending.

    A cell's seeds are not its identity: a cell listed with several seed lists asks for
    their union; one whose seeds are all recorded in its home dir (records.read_cells) is
    reused; one with some of them trains only the missing ones, into that home.
    """
    homes = {records.identity_key(r.config): r for r in records.read_cells(sweep_dir) if r.finished}
    plan = Plan()
    for cell in merge_seed_lists(cells):
        key = records.identity_key(cell.config)
        home = homes.get(key)
        name = home.name if home is not None else cell.name
        asked = requested_seeds(cell)
        plan.seeds[name] = asked
        blocked = blocked_dir(sweep_dir / name)
        if not blocked and home is None:  # a cell.json edited by hand: this cell only
            blocked = records.other_cell(sweep_dir / cell.name, cell.config)
        missing = sorted(set(asked) - {run["seed"] for run in home.runs} if home else asked)
        if not blocked and missing:  # seeds to write: the dir must take them
            blocked = unwritable_dir(sweep_dir / name) or records.unreadable_result(
                sweep_dir / name
            )
        if blocked:  # nothing is written through it; the run fails with the reason
            plan.names.append(name)
            plan.blocked[name] = blocked
            log.error("%s", blocked)
            plan.invalid += 1
        elif cell.error:  # checked first: a bad value is an error even for a finished cell
            plan.names.append(name)
            record_invalid(sweep_dir, dataclasses.replace(cell, name=name), run_id)
            plan.invalid += 1
        elif home is not None and not missing:
            plan.names.append(name)
            try:
                records.write_attempt(sweep_dir / name, "cached", run_id)
            except OSError as err:  # a read-only dir: its result is reused all the same
                if err.errno not in READ_ONLY_ERRNOS:  # e.g. run.json a directory: say so
                    raise
            plan.reused += 1
        else:
            plan.names.append(name)
            plan.pending.append(with_seeds(cell, name, missing))
            if home is not None:
                plan.grown += 1
    return plan


def requested_seeds(cell: Cell) -> list[int]:
    """The cell's seeds, sorted, each once (an invalid cell's as its config gives them)."""
    seeds = cell.exp.seeds if cell.exp is not None else cell.config.get("seeds")
    if not isinstance(seeds, list | tuple):
        return []
    return sorted({int(s) for s in seeds if isinstance(s, int) and not isinstance(s, bool)})


def merge_seed_lists(cells: list[Cell]) -> list[Cell]:
    """Each cell once, in order of first appearance; a cell listed again (a sweep over
    trainer.verbose, or over seed lists: `seeds=[0,1],[2,3]`) asks for the union of its
    lists' seeds."""
    first: dict[str, Cell] = {}
    for cell in cells:
        key = records.identity_key(cell.config)
        if key not in first:
            first[key] = cell
            continue
        held = first[key]
        union = sorted({*requested_seeds(held), *requested_seeds(cell)})
        if held.exp is not None and union != requested_seeds(held):
            first[key] = with_seeds(held, held.name, union)
    return list(first.values())


def with_seeds(cell: Cell, name: str, seeds: list[int]) -> Cell:
    """The cell under name (its home dir) training these seeds."""
    if cell.exp is None:
        return cell
    exp = dataclasses.replace(cell.exp, seeds=list(seeds))
    config = {**cell.config, "seeds": list(seeds)}
    return dataclasses.replace(cell, name=name, config=config, exp=exp)


def write_packs(
    sweep_dir: Path,
    run_id: str | None,
    pending: list[Cell],
    packs: list[list[ExperimentConfig]],
    work_of: dict[str, int],
    round_index: int = 0,
) -> tuple[list[list[str]], list[list[str]]]:
    """Each pack's spec and its cells' cell.json; return the jobs' overrides and each job's
    cell names. A pack's place says how much work the sweep has left after it."""
    by_exp = {id(c.exp): c for c in pending}
    batch, packs_cells = [], []
    left = sum(work_of.values())
    for index, members in enumerate(packs):
        pack_cells = [by_exp[id(exp)] for exp in members]
        packs_cells.append([c.name for c in pack_cells])
        left -= sum(work(exp) for exp in members)
        place = {"index": index, "of": len(packs), "after": left}
        batch.append(write_pack(sweep_dir, run_id, place, pack_cells, round_index))
    return batch, packs_cells


def launch(
    launcher: Any,
    batch: list[list[str]],
    sweep_dir: Path,
    run_id: str | None,
    packs_cells: list[list[str]],
    config: DictConfig,
) -> list[Sequence[JobReturn]]:
    """Run the jobs on the launcher; record the cells of jobs it lost or that failed
    outside a cell's own record keeping."""
    try:
        with quiet_controllers(OmegaConf.select(config, "hydra.launcher")):
            returns = launcher.launch(batch, initial_job_idx=0)
    except Exception as err:  # a lost job (cancelled, timed out, its worker killed)
        raise_if_stopped()  # or a Ctrl-C that Hydra's code turned into another error
        log.error(
            "the launcher lost a job: %s", records.one_line(f"{type(err).__name__}: {err}", 300)
        )
        reasons = lost_reasons(err, config, len(batch))
        if type(err).__name__ == "TerminatedWorkerError":  # joblib: one dead worker ends all
            reasons = retry_alone(launcher, batch, sweep_dir, run_id, packs_cells, reasons)
        record_lost(sweep_dir, run_id, packs_cells, reasons)
        return []
    raise_if_stopped()  # a signal swallowed inside a job (Hydra: a FAILED return)
    failed = {}
    for index, ret in enumerate(returns):
        if ret.status == JobStatus.FAILED:  # raised outside a cell's own record keeping
            raised = ret._return_value  # Hydra keeps the exception only here (no public API)
            failed[index] = records.one_line(f"{type(raised).__name__}: {raised}", 300)
            log.error("job %d failed: %s", index, failed[index])
    record_lost(sweep_dir, run_id, packs_cells, failed)
    return [returns]


def retry_alone(
    launcher: Any,
    batch: list[list[str]],
    sweep_dir: Path,
    run_id: str | None,
    packs_cells: list[list[str]],
    reasons: dict[int, str],
) -> dict[int, str]:
    """Rerun, one at a time, the jobs whose cells got no record of this run; return the
    reasons of the jobs lost again.

    joblib's loky kills every worker once one dies (say, the OOM killer's victim), so the
    healthy jobs beside it are lost too and which one died is unknown: each runs again
    alone, and only a job lost alone is recorded failed.
    """
    left = {}
    for index, names in enumerate(packs_cells):
        cells = [records.read_cell(sweep_dir / name, sweep_dir) for name in names]
        if all(c.run_id == run_id or c.finished for c in cells):
            continue
        log.info("running job %d again, alone: a worker beside it was lost", index)
        try:
            launcher.launch([batch[index]], initial_job_idx=index)
        except Exception as err:
            raise_if_stopped()
            left[index] = records.one_line(f"{type(err).__name__}: {err}", 200)
    return left


def blocked_dir(cell_dir: Path) -> str:
    """Why a cell's dir cannot be written (a symlink, a file), or ""."""
    if cell_dir.is_symlink():
        return f"{cell_dir} is a symlink: move it away to run this cell"
    if cell_dir.exists() and not cell_dir.is_dir():
        return f"{cell_dir} is a file, not a cell dir: move it away to run this cell"
    return ""


def unwritable_dir(cell_dir: Path) -> str:
    """Why a cell's existing dir cannot take the cell's files (its permissions), or "":
    found before training, not after."""
    if cell_dir.is_dir() and not os.access(cell_dir, os.W_OK | os.X_OK):
        return f"{cell_dir} cannot be written (permission denied): make it writable to run it"
    return ""


def compose_all(
    hydra_context: Any,
    config: DictConfig,
    jobs: list[list[str]],
    every: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> list[Cell]:
    """Every job's cell, composed in order; a grid that takes longer than `every` seconds
    says how far it is every `every` seconds: composing is the slow part of planning (500
    cells took 152 s on a loaded 2-core machine, docs/cli-and-config.md)."""
    cells: list[Cell] = []
    start = last = clock()
    for index, job in enumerate(jobs):
        cells.append(compose(hydra_context, config, job, index))
        now, done = clock(), index + 1
        if now - last >= every and done < len(jobs):
            last = now
            left = (now - start) / done * (len(jobs) - done)
            log.info(
                "planning: composed %d of %d cells in %.0f s, ~%.0f s left",
                done,
                len(jobs),
                now - start,
                left,
            )
    return cells


def compose(hydra_context: Any, config: DictConfig, overrides: list[str], index: int = 0) -> Cell:
    """One job's cell, composed as the job will be (a compose error, e.g. an unknown key
    or option, stops the whole sweep before anything runs, as in Hydra's sweepers).

    A `${hydra:...}` in a value resolves here, per cell, as under Hydra's basic sweeper
    with one job per cell: hydra.job.num and hydra.job.id are the cell's index in the grid
    (docs/sweeps-and-files.md lists the keys); a pack's job trains several cells, so its own
    Hydra settings cannot stand for any one of them."""
    composed = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(composed):
        composed.hydra.job.num = index
        composed.hydra.job.id = str(index)
    check_hydra_refs(composed)
    held = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(composed)
    try:
        return make_cell(strip_hydra(composed), list(overrides), activations=False)
    finally:
        HydraConfig.instance().cfg = held


_HYDRA_REF = re.compile(r"\$\{hydra:([^}]*)\}")


def check_hydra_refs(composed: DictConfig) -> None:
    """ConfigError for a `${hydra:KEY}` in a value that has no value while cells are
    planned (hydra.runtime.output_dir: a cell's dir is named from its resolved config)."""
    from attnlab.engine.config import dotted

    raw = OmegaConf.to_container(strip_hydra(composed), resolve=False)
    for key, value in dotted(raw if isinstance(raw, dict) else {}).items():
        for ref in _HYDRA_REF.findall(str(value)):
            if OmegaConf.select(composed.hydra, ref, default=None) is None:
                raise ConfigError(
                    f"{key}={value} is not allowed under attnlab's sweeper: hydra.{ref} has no "
                    "value when the cells are planned, before any job exists (see "
                    "docs/sweeps-and-files.md for the ${hydra:} keys a cell resolves); or use "
                    "hydra/sweeper=basic"
                )


def record_invalid(sweep_dir: Path, cell: Cell, run_id: str | None) -> None:
    """A cell that cannot run: its failure goes into its own dir (never over a result)."""
    cell_dir = sweep_dir / cell.name
    with contextlib.suppress(records.RecordError):
        records.write_cell(cell_dir, cell.config)
    records.write_attempt(cell_dir, "failed", run_id, cell.error)
    log.error("%s: %s", cell.name, cell.error)


def work(exp: ExperimentConfig) -> int:
    """A cell's training work in seed-epochs."""
    return len(exp.seeds) * exp.trainer.epochs


def write_pack(
    sweep_dir: Path,
    run_id: str | None,
    place: dict[str, int],
    cells: list[Cell],
    round_index: int = 0,
) -> list[str]:
    """Write the pack's spec (its cells' configs and dirs, its place among the sweep's
    packs) and each cell's cell.json; return the job's overrides: its first cell's, plus
    the pack's id."""
    pack_id = pack_name(run_id, place["index"], round_index)
    entries = []
    for cell in cells:
        assert cell.exp is not None
        records.write_cell(sweep_dir / cell.name, cell.config)
        records.set_aside_broken(sweep_dir / cell.name, sweep_dir)
        entries.append(
            {"name": cell.name, "config": OmegaConf.to_container(OmegaConf.structured(cell.exp))}
        )
    spec = {"run_id": run_id, **place, "cells": entries}
    write_json(sweep_dir / records.JOBS_DIR / f"{pack_id}.json", spec)
    return [*cells[0].overrides, pack_override(pack_id)]


def pack_name(run_id: str | None, index: int, round_index: int = 0) -> str:
    """A pack's id: its spec is <sweep>/.jobs/<id>.json, its job's dir <sweep>/.jobs/<id>;
    a later round's packs carry the round (r2, r3, ...), so no round rewrites another's."""
    stem = (run_id or "run")[:8]
    return f"{stem}-{index:03d}" if round_index == 0 else f"{stem}-r{round_index + 1}-{index:03d}"


def pack_override(pack_id: str) -> str:
    """The override that makes a job the pack's; the id quoted where Hydra would read it as
    another type (a run id of 7 digits and an `e` reads as a float)."""
    return f"++hydra.job.env_set.{PACK_ENV}={hydra_value(pack_id)}"


_SUBMITIT_LOST = re.compile(r"Job (\d+)_(\d+) .*?\(state: ([A-Z_]+)")


def lost_reasons(err: Exception, config: DictConfig, jobs: int) -> dict[int, str]:
    """Why each lost job gave no result, by job index; "" for jobs whose fate is unknown.

    submitit (SLURM) raises for the first array task that ended without a result, while
    the others may still run: they are waited for (they write their own cells), and every
    task that ended without a result gets its SLURM state (CANCELLED, TIMEOUT, OUT_OF_MEMORY,
    NODE_FAIL, ...) as the reason.
    """
    text = str(err)
    match = _SUBMITIT_LOST.search(text.replace("\n", " "))
    generic = records.one_line(f"{type(err).__name__}: {text}", 200)
    if match is None:
        return dict.fromkeys(range(jobs), generic)
    array, task, state = match.groups()
    reasons = {int(task): f"its SLURM job {array}_{task} ended {state}"}
    folder = OmegaConf.select(config, "hydra.launcher.submitit_folder")
    if folder and OmegaConf.select(config, "hydra.launcher._target_", default="").endswith(
        "SlurmLauncher"
    ):
        reasons.update(settle_array(str(folder), array, jobs, skip=int(task)))
    return reasons


def settle_array(folder: str, array: str, jobs: int, skip: int) -> dict[int, str]:
    """Wait for the array's other tasks to end; the SLURM state of each that failed."""
    import submitit

    reasons = {}
    for task in range(jobs):
        if task == skip:
            continue
        job: Any = submitit.SlurmJob(folder=folder, job_id=f"{array}_{task}")
        try:
            job.wait()
        except Exception:  # an unreachable scheduler: these cells stay unknown
            continue
        state = str(job.state)
        if state != "COMPLETED":
            reasons[task] = f"its SLURM job {array}_{task} ended {state}"
    return reasons


def record_lost(
    sweep_dir: Path, run_id: str | None, packs: list[list[str]], reasons: dict[int, str]
) -> None:
    """Record the cells of lost jobs that have no result of this run, with the reason."""
    for index, names in enumerate(packs):
        reason = reasons.get(index)
        if not reason:
            continue
        for name in names:
            record = records.read_cell(sweep_dir / name, sweep_dir)
            if record.finished or record.run_id == run_id:
                continue
            with contextlib.suppress(OSError):  # a full disk: the sweep's end counts it failed
                records.write_attempt(sweep_dir / name, "failed", run_id, f"no result: {reason}")


def dry_run_lines(
    sweep_dir: Path, cells: list[Cell], request: SweepRequest, config: DictConfig
) -> list[str]:
    """What the sweep would do, read only (hydra.sweeper.dry_run=true): each cell's status
    (cached, to train, invalid with its reason), each pack's cells and seeds, and each job's
    estimated peak memory. Nothing is written: no record, no cell.json, no sweep dir."""
    # As sort_cells decides, without its writes: a cell's home, its missing seeds.
    found = records.read_cells(sweep_dir) if sweep_dir.is_dir() else []
    homes = {records.identity_key(r.config): r for r in found if r.finished}
    statuses, pending = [], []
    for cell in merge_seed_lists(cells):
        key = records.identity_key(cell.config)
        home = homes.get(key)
        name = home.name if home is not None else cell.name
        asked = requested_seeds(cell)
        missing = sorted(set(asked) - {run["seed"] for run in home.runs} if home else asked)
        cell_dir = sweep_dir / name
        why = blocked_dir(cell_dir)
        if not why and home is None and cell_dir.is_dir():
            why = records.other_cell(cell_dir, cell.config)
        if not why and missing:
            why = unwritable_dir(cell_dir)
        why = why or cell.error
        if why:
            statuses.append(f"  invalid   {name}: {why}")
        elif home is not None and not missing:
            statuses.append(f"  cached    {name}")
        else:
            grown = f" (seeds {missing}: the rest are recorded)" if home is not None else ""
            statuses.append(f"  to train  {name}{grown}")
            pending.append(with_seeds(cell, name, missing))
    memory = job_memory(OmegaConf.select(config, "hydra.launcher"))
    exps = [c.exp for c in pending if c.exp is not None]
    packs = plan_packs(
        exps,
        request.max_replicas if request.pack else 1,
        (lambda p: pack_fits(p, memory)) if request.pack else (lambda p: len(p) == 1),
    )
    name_of = {id(c.exp): c.name for c in pending}
    lines = [
        f"dry run of {len(statuses)} cells into {sweep_dir} (nothing is trained or written): "
        f"{len(pending)} to train in {len(packs)} job(s), "
        f"{sum(s.startswith('  cached') for s in statuses)} cached, "
        f"{sum(s.startswith('  invalid') for s in statuses)} invalid",
        *statuses,
        f"jobs (each may use {memory / GIB:.1f} GiB, {USABLE_SHARE:.0%} of it planned):",
    ]
    for index, pack in enumerate(packs):
        seeds = sum(len(exp.seeds) for exp in pack)
        lines.append(
            f"  job {index + 1}: {len(pack)} cell(s), {seeds} seed(s), "
            f"~{pack_bytes(pack) / GIB:.2f} GiB: " + ", ".join(name_of[id(e)] for e in pack)
        )
    return lines
