"""blog_controls' 24 cells trained as models that mix attention modes (2 of 120 replicas,
as attnlab's launcher packs them) against models of one mode each (4 of 60), alternated in
one process; prints each way's training time (train_cells only, no files).

    .venv/bin/python benchmarks/attention_modes.py   # ~4 min; --repeats N
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hydra import compose, initialize_config_module  # noqa: E402

from attnlab.engine.config import ExperimentConfig, from_hydra, register_configs  # noqa: E402
from attnlab.engine.experiment import train_cells  # noqa: E402
from attnlab.sweep import packing  # noqa: E402

MODES = ("learned", "uniform", "oracle", "none")


def controls_cells() -> list[ExperimentConfig]:
    register_configs()
    cells = []
    with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
        for mode in MODES:
            for classes in (2, 5, 20, 30, 50, 100):
                overrides = [
                    "+experiment=blog_controls",
                    f"model.attention={mode}",
                    f"data.classes={classes}",
                ]
                cells.append(from_hydra(compose("config", overrides)))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cells = controls_cells()
    ways = {
        "mixed": packing.plan_packs(cells, 128),
        "one mode a model": [
            pack
            for mode in MODES
            for pack in packing.plan_packs([c for c in cells if c.model.attention == mode], 128)
        ],
    }
    for name, packs in ways.items():
        print(f"{name}: models of {[sum(len(c.seeds) for c in p) for p in packs]} seeds")
    for repeat in range(args.repeats):
        order = list(ways.items()) if repeat % 2 == 0 else list(ways.items())[::-1]
        for name, packs in order:
            start = time.perf_counter()
            for pack in packs:
                train_cells(pack)
            print(f"repeat {repeat + 1}, {name}: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
