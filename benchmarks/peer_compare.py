"""attnlab against the JAX peer (an expert's hand-written JAX version), side by side in one run.

The peer lives outside this repository (`shared/peers/` of the workplace; its README says
how to make its venv): this script only runs it, as a child, and never includes its code.
For each R in --replicas (default 32 128), --repeats times (default 3), interleaved (attnlab
R, peer R, attnlab next R, ...), each side runs in a fresh child and times itself from after
its imports: the data draw, build (tracing or XLA's compile), 20 epochs of training and the
measurements of the 20-class cell of benchmarks/replicas_vs_fit.py.

  attnlab: this script's own child (`--child R`): `train_and_measure` on seeds 0..R-1.
  peer:    `$PEERS/jax_vmap.py --replicas R` under the peer's venv.

It prints each run, then per R the median s/model of each side, the ratio (peer / attnlab:
above 1 attnlab is faster), each side's fraction of the FLOP limit (the training FLOPs at
this machine's float32 matmul rate, measured in TensorFlow at the start and the end), the
CPU seconds per model (all threads; steadier than wall time on a shared machine) and the
share of seeds whose val accuracy agrees within 0.005 (both train the same seeds on the
same numbers, so they should all agree). Last, where each side's call goes: data, compile
(attnlab: building and tracing its shards; the peer: XLA's compile), train and measure.

Run (the peer's venv made by its setup.sh; see docs/performance.md):

    .venv/bin/python benchmarks/peer_compare.py --peers ../shared/peers \\
        --peer-python ~/.cache/attnlab-peers/venv/bin/python       # ~5 min quiet

--baseline DIR adds a third side, another checkout of attnlab timed the same way (e.g.
`git archive <commit> | tar -x -C DIR`): a change's before/after beside the peer, in one run.

--peers defaults to $ATTNLAB_PEERS; --peer-python to $PEERS_DIR/venv/bin/python (else
~/.cache/attnlab-peers/venv/bin/python). Without either the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
# Run as a script, its folder is on sys.path, not the checkout: benchmarks.replicas_vs_fit
# (the FLOP count and the matmul rate) and this checkout's attnlab come from REPO (a
# --baseline child's attnlab from that checkout).
sys.path.insert(0, os.environ.get("ATTNLAB_CHECKOUT", str(REPO)))


def default_peer_python() -> Path:
    peers_dir = os.environ.get("PEERS_DIR", os.path.expanduser("~/.cache/attnlab-peers"))
    return Path(peers_dir) / "venv" / "bin" / "python"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, nargs="+", default=[32, 128])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peers", type=Path, default=os.environ.get("ATTNLAB_PEERS"))
    p.add_argument("--peer-python", type=Path, default=default_peer_python())
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another attnlab checkout (e.g. main's) timed as a third side, the same way",
    )
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)  # attnlab's side
    return p.parse_args(argv)


# --- attnlab's side: one train_and_measure call in this child ----------------------------


def attnlab_child(replicas: int) -> None:
    """Times train_and_measure on the cell (after importing Keras, as the peer imports
    jax before its clock) and prints one JSON line with the peer's keys."""
    import keras  # noqa: F401  (before the clock)
    import numpy as np

    from attnlab.engine.config import DataConfig, ExperimentConfig, ModelConfig, TrainerConfig
    from attnlab.engine.experiment import train_and_measure

    cfg = ExperimentConfig(
        data=DataConfig(classes=20),
        model=ModelConfig(),
        trainer=TrainerConfig(),
        seeds=list(range(replicas)),
    )
    phases = PhaseTimer()  # wraps the phases before the call
    start, cpu_start = time.perf_counter(), time.process_time()
    records = train_and_measure(cfg).records
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    accuracy = [float(r["val_accuracy"]) for r in records]
    doc = {
        "seconds": seconds,
        "s_per_model": seconds / replicas,
        "cpu_s_per_model": cpu_s / replicas,
        "val_accuracy_mean": float(np.mean(accuracy)),
        "val_accuracy": accuracy,
        **phases.seconds(seconds),
    }
    print(json.dumps(doc))


class PhaseTimer:
    """Wall seconds of train_and_measure's phases, named as the peer names its own: data
    (drawing every seed's data), compile (building the shards' models and tracing their
    epoch and validation functions: attnlab's counterpart of the peer's XLA compile),
    train (the epochs, each with its validation pass, and the first call's graph
    optimisation) and measure (the rest: probe accuracy, attention, ablations, records).

    It wraps attnlab.engine's module functions, which train_cells imports when it runs; a
    --baseline checkout without one of them leaves that phase in the next.
    """

    def __init__(self) -> None:
        import attnlab.engine.data as data
        import attnlab.engine.models as models
        import attnlab.engine.train as train

        self.spent = {"data": 0.0, "build": 0.0, "trace": 0.0, "fit": 0.0}
        for module, name, phase in (
            (data, "make_replica_data", "data"),
            (models, "build_model", "build"),
            (train, "_prepare", "trace"),
            (train, "fit", "fit"),
        ):
            if hasattr(module, name):
                setattr(module, name, self._timed(getattr(module, name), phase))

    def _timed(self, function: Any, phase: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[phase] += time.perf_counter() - start

        return timed

    def seconds(self, total: float) -> dict[str, float]:
        s = self.spent
        return {
            "data_s": s["data"],
            "compile_s": s["build"] + s["trace"],
            "train_s": s["fit"] - s["trace"],  # fit traces the shards, then trains them
            "measure_s": total - s["data"] - s["build"] - s["fit"],
        }


# --- the parent: both sides in turn --------------------------------------------------------

# The phases both sides report (PhaseTimer; the peer's own keys).
PHASES = ("data", "compile", "train", "measure")


def run_side(side: str, replicas: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run of one side in a fresh child; its JSON line (the last line it prints)."""
    if side in ("attnlab", "baseline"):
        # This script's child, importing attnlab from this checkout or the baseline's.
        checkout = REPO if side == "attnlab" else args.baseline.resolve()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(replicas)]
        env = {**os.environ, "PYTHONPATH": str(checkout), "ATTNLAB_CHECKOUT": str(checkout)}
    else:
        cmd = [str(args.peer_python), str(args.peers / "jax_vmap.py"), "--replicas", str(replicas)]
        env = dict(os.environ)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        sys.exit(f"{side} R={replicas} failed:\n" + "\n".join(out.stderr.splitlines()[-8:]))
    return json.loads(lines[-1])


def machine_gflops() -> float:
    """TensorFlow's float32 1024^2 matmul rate (all threads), as replicas_vs_fit.py measures."""
    from benchmarks.replicas_vs_fit import matmul_gflops

    return matmul_gflops()


def peer_missing(args: argparse.Namespace) -> str | None:
    """Why the peer cannot run here, or None."""
    if args.peers is None or not (args.peers / "jax_vmap.py").exists():
        return f"no peer at --peers {args.peers} (set it or $ATTNLAB_PEERS to shared/peers)"
    if not args.peer_python.exists():
        return f"no peer venv: {args.peer_python} (make it with the peer's setup.sh)"
    return None


def agree(a: list[float], b: list[float]) -> float:
    """Share of seeds whose val accuracy is within 0.005 on both sides."""
    return sum(abs(u - v) <= 0.005 for u, v in zip(a, b, strict=True)) / len(a)


def identical(a: list[float], b: list[float]) -> float:
    """Share of seeds whose val accuracy is exactly equal on both sides (the peer rounds its
    to 4 decimals: compared at that)."""
    return sum(round(u, 4) == round(v, 4) for u, v in zip(a, b, strict=True)) / len(a)


def print_table(
    runs: dict[tuple[str, int], list[dict[str, Any]]],
    replicas: list[int],
    limit_s: float,
    other: str,
) -> None:
    med = lambda rs, key: statistics.median(d[key] for d in rs)  # noqa: E731
    o = other[:8]
    print(
        f"{'R':>4} | {'attnlab s/model':>15} {o + ' s/model':>16} {o + '/attnlab':>16} | "
        f"{'attnlab FLOP%':>13} {o + ' FLOP%':>14} | {'attnlab CPU':>11} {o + ' CPU':>12} | "
        f"{'same acc':>8} {'identical':>9}"
    )
    for r in replicas:
        a, p = runs[("attnlab", r)], runs[(other, r)]
        sa, sp = med(a, "s_per_model"), med(p, "s_per_model")
        print(
            f"{r:>4} | {sa:>15.3f} {sp:>16.3f} {sp / sa:>15.2f}x | {limit_s / sa:>13.1%} "
            f"{limit_s / sp:>14.1%} | {med(a, 'cpu_s_per_model'):>11.3f} "
            f"{med(p, 'cpu_s_per_model'):>12.3f} | "
            f"{agree(a[-1]['val_accuracy'], p[-1]['val_accuracy']):>8.0%} "
            f"{identical(a[-1]['val_accuracy'], p[-1]['val_accuracy']):>9.0%}"
        )
    print(f"({o}/attnlab > 1: attnlab is faster; CPU: s/model, all threads; same acc: share of")
    print(
        " seeds whose val accuracy agrees within 0.005, last repeat; identical: equal to 4"
        " decimals)"
    )
    print(f"where the time goes, s a call (median): {' / '.join(PHASES)}")
    for r in replicas:
        for side in ("attnlab", other):
            cells = [
                f"{statistics.median(d.get(f'{phase}_s', math.nan) for d in runs[(side, r)]):.2f}"
                for phase in PHASES
            ]
            print(f"{r:>4} {side:<8} " + " / ".join(cells))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        attnlab_child(args.child)
        return
    missing = peer_missing(args)
    if missing:
        print(f"peer_compare: skipped: {missing}")
        return
    from benchmarks.replicas_vs_fit import training_flops

    print(f"R {args.replicas}, {args.repeats} repeats, load {os.getloadavg()[0]:.1f} at start")
    rate_start = machine_gflops()
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    sides = ["attnlab", *(["baseline"] if args.baseline else []), "peer"]
    for repeat in range(args.repeats):
        for r in args.replicas:
            # Alternating which side goes first, so a drift in load favours neither.
            for side in sides if repeat % 2 == 0 else sides[::-1]:
                doc = run_side(side, r, args)
                runs.setdefault((side, r), []).append(doc)
                print(
                    f"  repeat {repeat + 1} R={r:>3} {side:<8}: {doc['s_per_model']:.3f} s/model, "
                    f"CPU {doc['cpu_s_per_model']:.3f}, val acc {doc['val_accuracy_mean']:.3f}, "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    rate = max(rate_start, machine_gflops())  # the better of the two: less noise
    limit_s = training_flops() / (rate * 1e9)
    print(f"\nfloat32 matmul rate {rate:.0f} GFLOP/s: FLOP limit {limit_s * 1e3:.1f} ms/model")
    print(f"median of {args.repeats}; s/model = the child's timed call / R")
    print_table(runs, args.replicas, limit_s, "peer")
    if args.baseline:
        print(f"\nthis checkout against the baseline ({args.baseline}), the same way:")
        print_table(runs, args.replicas, limit_s, "baseline")
    print(f"load {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
