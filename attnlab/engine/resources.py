"""What this process may use (cores, memory) and what a cell needs, checked before training.

Without a bound, a config that cannot fit fails late and badly: `data.features=20000`
segfaults TensorFlow, `data.classes=3000000` kills a whole sweep. estimate_bytes is a pure,
deliberately generous model of a cell's peak memory; check_fits turns "does not fit" into
one line naming the key that drives the need, before anything trains.
"""

from __future__ import annotations

import dataclasses
import os
import resource
from pathlib import Path

from attnlab.engine.config import ConfigError, ExperimentConfig

GIB = 1 << 30
# TensorFlow, Keras and the Python process before any cell (measured: ~0.7-0.8 GB).
BASE_BYTES = int(0.8 * GIB)
# Share of the available memory a job may plan to use: the estimate is rough, and the
# rest of the machine keeps running.
USABLE_SHARE = 0.85
FLOAT = 4  # bytes of a float32


def available_cpus() -> int:
    """Cores this process may run on: Slurm's and taskset's pinning count, unlike cpu_count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS)
        return os.cpu_count() or 1


def available_memory() -> int:
    """Bytes this process may still allocate: the least of the kernel's MemAvailable, its
    memory cgroups' headroom (page cache counted as free) and the address-space rlimit."""
    limits = [_meminfo_available(), _cgroup_headroom()]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    known = [x for x in limits if x is not None]
    return min(known) if known else 1 << 62


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """The least headroom of this process's memory cgroup and its ancestors (each limit
    applies), or None when none sets a limit. The page cache a cgroup holds counts as free:
    the kernel reclaims it before it kills (a cgroup's usage includes every file it read or
    wrote, so after a pip install or a test run usage alone can near the limit)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    headrooms = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2
            for mount in (root, root / "unified"):
                headrooms += _headrooms(mount, path, "memory.max", "memory.current", "")
        elif "memory" in controllers.split(","):  # cgroup v1
            headrooms += _headrooms(
                root / "memory", path, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_"
            )
    return min(headrooms) if headrooms else None


def _headrooms(mount: Path, path: str, limit: str, usage: str, stat_prefix: str) -> list[int]:
    """limit - usage + reclaimable page cache of each cgroup from `path` up to `mount`."""
    found = []
    node = mount / path.strip("/")
    while True:
        try:
            text = (node / limit).read_text().strip()
            if text != "max" and int(text) < 1 << 60:
                used = int((node / usage).read_text().strip())
                found.append(int(text) - used + _page_cache(node / "memory.stat", stat_prefix))
        except (OSError, ValueError):
            pass
        if node == mount or mount not in node.parents:
            return found
        node = node.parent


def _page_cache(stat: Path, prefix: str) -> int:
    """Bytes of file pages on the cgroup's LRU lists (tmpfs pages are not among them)."""
    wanted = {f"{prefix}active_file", f"{prefix}inactive_file"}
    try:
        fields = (line.split() for line in stat.read_text().splitlines())
        return sum(int(f[1]) for f in fields if len(f) == 2 and f[0] in wanted)
    except (OSError, ValueError):
        return 0


def weight_count(cfg: ExperimentConfig) -> int:
    """Trainable weights of one replica's model (attnlab.engine.models), exactly: Keras'
    count_params for a one-seed model (tests/test_resources.py checks every variant, attention
    position and mode). Only model.attention=learned has attention weights; an LSTM with
    attention after it feeds every time step's output to the head."""
    d, m = cfg.data, cfg.model
    learned = m.attention == "learned"
    if m.variant == "lstm":
        steps, units = d.time_steps, m.lstm_units
        attention = steps * steps + steps if learned else 0  # a softmax over time steps
        lstm = 4 * (d.features + units + 1) * units
        head_in = units * steps if m.attention_position == "after" else units
        return attention + lstm + head_in * d.classes + d.classes
    depth = m.attn_layers if m.variant == "dense" else 1  # double's input attention: one layer
    attention = depth * (d.features * d.features + d.features) if learned else 0
    hidden = d.features * m.hidden + m.hidden
    if m.variant == "double":  # its second attention, over the hidden units, is never gated
        hidden += m.hidden * m.hidden + m.hidden
    return attention + hidden + m.hidden * d.classes + d.classes


def estimate_parts(cfg: ExperimentConfig, replicas: int) -> dict[str, int]:
    """Peak bytes of one cell trained as `replicas` seeds, by what needs them."""
    d, m, t = cfg.data, cfg.model, cfg.trainer
    sample = d.features * (d.time_steps if m.sequence else 1)
    n_val = d.samples - int(d.samples * (1 - t.validation_split))
    width = d.features * max(m.attn_layers, 1) + m.hidden + d.classes
    if m.sequence:
        width += d.time_steps * (m.lstm_units * 6 + d.features)
    return {
        # weights, gradients and Adam's two moments
        "weights": 4 * FLOAT * weight_count(cfg) * replicas,
        # the draw, its stacked copy and the training graph's constants
        "data": 3 * FLOAT * (d.samples + 2 * d.probe_samples) * sample * replicas,
        # one step's activations, forward and backward
        "activations": 3 * FLOAT * t.batch_size * width * replicas,
        # predicted probabilities for validation and probe sets (two concatenated copies)
        "predictions": 2 * FLOAT * (n_val + d.probe_samples) * d.classes * replicas,
        # one epoch's sample orders, and the per-epoch history
        "bookkeeping": 4 * d.samples * replicas + 8 * 4 * t.epochs * replicas,
    }


def estimate_bytes(cfg: ExperimentConfig, replicas: int | None = None) -> int:
    replicas = len(cfg.seeds) if replicas is None else replicas
    return sum(estimate_parts(cfg, replicas).values())


# Keys whose growth a cell's memory follows; the one that drives it is named in the error.
_DRIVERS = (
    ("data", "features"),
    ("data", "classes"),
    ("data", "samples"),
    ("data", "probe_samples"),
    ("data", "time_steps"),
    ("model", "hidden"),
    ("model", "attn_layers"),
    ("model", "lstm_units"),
    ("trainer", "batch_size"),
)


def driver(cfg: ExperimentConfig) -> tuple[str, object]:
    """The key (and its value) whose doubling would add the most memory (the seed count
    scales everything alike, so it is named only if no key does)."""
    base = estimate_bytes(cfg)
    best: tuple[str, object] = ("seeds", cfg.seeds)
    growth = 0.0
    for group, key in _DRIVERS:
        part = getattr(cfg, group)
        value = getattr(part, key)
        bigger = dataclasses.replace(cfg, **{group: dataclasses.replace(part, **{key: 2 * value})})
        extra = estimate_bytes(bigger) - base
        if extra > growth:
            best, growth = (f"{group}.{key}", value), extra
    return best


def check_fits(cfg: ExperimentConfig, available: int | None = None) -> None:
    """ConfigError (one line) if the cell cannot fit in this process's memory."""
    available = available_memory() if available is None else available
    need = estimate_bytes(cfg) + BASE_BYTES
    if need <= USABLE_SHARE * available:
        return
    key, value = driver(cfg)
    raise ConfigError(
        f"{key}={value}: the cell needs ~{need / GIB:.1f} GiB for {len(cfg.seeds)} seeds; "
        f"{available / GIB:.1f} GiB available (lower it, or run fewer seeds per cell)"
    )
