"""The memory a job may use, read from fake cgroup trees (v1 and v2) laid out as the kernel does."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlab.engine.resources import _cgroup_headroom, weight_count

MIB = 1 << 20


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_page_cache_counts_as_free_and_the_tightest_ancestor_wins(tmp_path):
    root = tmp_path / "cgroup"
    proc = tmp_path / "proc_cgroup"
    write(proc, "0::/ci/job\n")
    # The job's own cgroup: 1000 MiB limit, 900 used of which 600 page cache (400 + 200).
    write(root / "ci/job/memory.max", f"{1000 * MIB}\n")
    write(root / "ci/job/memory.current", f"{900 * MIB}\n")
    stat = [("anon", 300), ("file", 650), ("active_file", 400), ("inactive_file", 200)]
    stat += [("shmem", 50)]
    write(root / "ci/job/memory.stat", "".join(f"{k} {v * MIB}\n" for k, v in stat))
    assert _cgroup_headroom(proc, root) == 700 * MIB  # 1000 - 900 + 600, tmpfs not freeable
    # A parent with a tighter limit and no cache governs.
    write(root / "ci/memory.max", f"{500 * MIB}\n")
    write(root / "ci/memory.current", f"{450 * MIB}\n")
    assert _cgroup_headroom(proc, root) == 50 * MIB
    # "max" everywhere: no limit known.
    write(root / "ci/memory.max", "max\n")
    write(root / "ci/job/memory.max", "max\n")
    assert _cgroup_headroom(proc, root) is None


def test_v1_reads_the_process_own_cgroup_not_the_hierarchy_root(tmp_path):
    root = tmp_path / "cgroup"
    proc = tmp_path / "proc_cgroup"
    write(proc, "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n")
    unlimited = str(9223372036854771712)
    write(root / "memory/memory.limit_in_bytes", unlimited)
    write(root / "memory/memory.usage_in_bytes", str(5000 * MIB))
    job = root / "memory/process_api/abc"
    write(job / "memory.limit_in_bytes", str(2000 * MIB))
    write(job / "memory.usage_in_bytes", str(1900 * MIB))
    write(
        job / "memory.stat",
        f"cache {MIB}\ntotal_cache {1500 * MIB}\ntotal_active_file {1000 * MIB}\n"
        f"total_inactive_file {400 * MIB}\n",
    )
    assert _cgroup_headroom(proc, root) == 1500 * MIB  # 2000 - 1900 + 1400


def test_no_cgroup_file_means_no_limit(tmp_path):
    assert _cgroup_headroom(tmp_path / "absent", tmp_path) is None
    write(tmp_path / "proc_cgroup", "0::/\n")
    assert _cgroup_headroom(tmp_path / "proc_cgroup", tmp_path / "no_mount") is None


MODELS = [
    ["model=dense"],
    ["model=dense", "model.attn_layers=3"],
    ["model=double", "model.attn_layers=2"],
    ["model=lstm", "model.attention_position=before"],
    ["model=lstm", "model.attention_position=after"],
]


@pytest.mark.slow  # builds 20 Keras models
@pytest.mark.parametrize("mode", ["learned", "uniform", "oracle", "none"])
@pytest.mark.parametrize("model", MODELS, ids=lambda m: " ".join(m))
def test_weight_count_is_keras_count_of_one_replica(make_config, model, mode):
    """The memory bound's weight term counts what Keras builds, for every variant, attention
    position and mode (7 classes: a head that is neither the default nor square)."""
    from attnlab.engine.models import build_model

    cfg = make_config(*model, f"model.attention={mode}", "data.classes=7")
    assert weight_count(cfg) == build_model(cfg.model, cfg.data, [0]).count_params()
