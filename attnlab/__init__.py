"""attnlab: Hydra-driven sweeps that measure when softmax attention finds the feature that
carries the label, over many seeds trained together.

The Python API (attnlab/api.py), for notebooks:

    report, summary = attnlab.load_report(sweep_dir)   # DataFrames, rebuilt if stale
    doc = attnlab.run_cell(["data.classes=20"], out_dir)  # metrics.json's document
    rows = attnlab.compare(sweep_dir, axis="model.attn_layers")  # paired, Holm-corrected

Both are imported on first use, so `import attnlab` loads neither TensorFlow nor pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attnlab.quiet import quiet_start

__version__ = "0.1.0"
__all__ = ["__version__", "compare", "load_report", "run_cell"]

# Here, not only in the CLI: a launcher's worker processes (joblib's loky, submitit, ray)
# import attnlab's modules but never attnlab.__main__, and load TensorFlow to train.
quiet_start()

if TYPE_CHECKING:
    from attnlab.api import compare, load_report, run_cell


def __getattr__(name: str) -> Any:
    if name in ("compare", "load_report", "run_cell"):
        from attnlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'attnlab' has no attribute {name!r}")
