"""How long a 100k rows x 50 columns CSV takes to load as data=csv's table, and its memory.

    python benchmarks/table_load.py [rows] [columns]

Writes a random table (numeric columns and a 3-class integer target) to a temporary dir,
then times attnlab.engine.tables.read_table (pandas' read_csv, checks, float32 matrix) and
its peak traced memory (tracemalloc: numpy and pandas buffers), and the process's peak RSS.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from attnlab.engine.tables import read_table


def main(rows: int = 100_000, columns: int = 50) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.standard_normal((rows, columns)), columns=[f"c{i}" for i in range(columns)]
    )
    frame["label"] = rng.integers(0, 3, rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.csv"
        frame.to_csv(path, index=False)
        del frame
        size = path.stat().st_size / 2**20
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tracemalloc.start()
        start = time.perf_counter()
        table = read_table(str(path), "label")
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{rows} rows x {columns} columns ({size:.0f} MB CSV): read_table {seconds:.2f} s, "
        f"peak traced {peak:.0f} MB, table {table.x.nbytes / 2**20:.0f} MB, "
        f"process peak RSS {before:.0f} -> {after:.0f} MB"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
