"""Replica training vs one Keras `fit` per seed, on the 20-class cell, side by side in one run.

What it measures, on this machine, in one run:

- A, "the seed's way": one plain Keras 3 functional model per seed and one `model.fit` per
  seed, sequentially, TensorFlow imported once. Reported: the median seconds per model
  (build + compile + fit; the per-seed data draw is not timed).
- B, attnlab: `train_and_measure` with R seeds trained as replicas, for several R, each in a
  fresh child process (attnlab sizes TensorFlow's thread pools when it first trains, and
  this process has them fixed by A). The whole call is timed inside the child (data draw,
  tracing, training, measuring; not the import), so R=1 shows the fixed cost
  and large R the throughput.
- The same R=32 cell through the CLI (`python -m attnlab ...`) as a subprocess, timed
  wall-clock: what a user waits for, Python and TensorFlow import included.
- Memory: each child's peak RSS, and that of a child training 32 and 128 seeds of the
  100-class, 128-feature cell (1 epoch: memory, not time, is the point there).

Why: one cell is tiny. Per sample, the forward pass is 32*32 + 32*64 + 64*20 = 4352
multiply-adds; training is ~3x the forward (forward + 2x backward), 2 FLOP per MAC, over
8000 training samples and 20 epochs: ~4.2 GFLOP per model (~4.5 with the forward passes of
Keras' per-epoch validation, which the FLOP count below leaves out). A CPU core does tens
of GFLOP/s, so a `fit` of ~2500 steps of 64 samples spends nearly all its time in per-step
overhead, not arithmetic. The "FLOP limit" column says how close each way gets: the time
the training FLOPs would take at this machine's measured float32 matmul rate, divided by
the measured seconds per model.

Run: .venv/bin/python benchmarks/replicas_vs_fit.py [--quick] [--replicas 1 8 32] [--fits 5]
"""

from __future__ import annotations

import argparse
import os

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) would hide the table.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The cell: 20 classes, 32 features, the label in column 1, the default model and trainer.
CLASSES = 20
FEATURES = 32
KEY_COLUMN = 1
HIDDEN = 64
SAMPLES = 10000
EPOCHS = 20
BATCH_SIZE = 64
LEARNING_RATE = 0.001
VALIDATION_SPLIT = 0.2
TRAIN_SAMPLES = int(SAMPLES * (1 - VALIDATION_SPLIT))  # 8000, as Keras splits

# The memory probe: a bigger cell, where the stacked data dominates.
MEM_CLASSES = 100
MEM_FEATURES = 128
MEM_EPOCHS = 1
PROBE_SAMPLES = 1000  # attnlab's DataConfig.probe_samples default


# --- the FLOP count and the machine's rate --------------------------------------------------


def forward_macs(features: int, hidden: int, classes: int) -> int:
    """Multiply-adds of one sample's forward pass (biases, softmax, multiply ignored)."""
    return features * features + features * hidden + hidden * classes


def training_flops() -> float:
    """FLOPs of one model's training: 3x forward, 2 FLOP/MAC, every sample every epoch."""
    per_sample = 3 * 2 * forward_macs(FEATURES, HIDDEN, CLASSES)
    return float(per_sample * TRAIN_SAMPLES * EPOCHS)


def matmul_gflops(n: int = 1024, reps: int = 15) -> float:
    """Median float32 GFLOP/s of an (n, n) @ (n, n) matmul in a tf.function."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    b = tf.constant(rng.standard_normal((n, n), dtype=np.float32))

    @tf.function
    def product() -> Any:
        # The sum forces the product to be computed; it costs n*n adds against 2*n^3 FLOPs.
        return tf.reduce_sum(tf.matmul(a, b))

    for _ in range(3):  # trace, then warm the thread pool
        product().numpy()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        product().numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


# --- A: one Keras fit per seed -------------------------------------------------------------


def seed_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seed's draw: x (samples, features) standard normal, y in [0, classes), x[:, 1] = y."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((SAMPLES, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=SAMPLES)
    x[:, KEY_COLUMN] = y
    return x, y


def seed_model() -> Any:
    """The seed's model: softmax attention over the inputs, a linear hidden layer, a head."""
    import keras
    from keras import layers

    inputs = keras.Input((FEATURES,))
    a = layers.Dense(FEATURES, activation="softmax", name="attention_vec")(inputs)
    gated = layers.Multiply()([inputs, a])
    hidden = layers.Dense(HIDDEN)(gated)
    outputs = layers.Dense(CLASSES, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def time_seed_fit(seed: int) -> tuple[float, Any]:
    """Seconds to build, compile and fit one seed's model; and the model's jit_compile."""
    import keras

    x, y = seed_data(seed)
    keras.backend.clear_session()  # each fit starts from a clean slate, as a fresh script
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = seed_model()
    model.fit(
        x,
        y,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        validation_split=VALIDATION_SPLIT,
        verbose=0,
    )
    return time.perf_counter() - start, model.jit_compile


# --- B: attnlab's replicas -----------------------------------------------------------------


REPLICAS_SCRIPT = """
import os, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # imported before the clock starts, as in the parent's A
from attnlab.engine.config import DataConfig, ExperimentConfig, ModelConfig, TrainerConfig
from attnlab.engine.experiment import train_and_measure
cfg = ExperimentConfig(
    data=DataConfig(classes={classes}),
    model=ModelConfig(),
    trainer=TrainerConfig(),
    seeds=list(range({replicas})),
)
start = time.perf_counter()
records = train_and_measure(cfg).records
assert len(records) == {replicas}
print(time.perf_counter() - start)
"""


def time_replicas(replicas: int) -> Child:
    """One train_and_measure call training `replicas` seeds of the cell, in a fresh child:
    attnlab sets TensorFlow's thread pools as it trains (one single-threaded shard per
    core), and a process that already ran A has them fixed at TensorFlow's defaults.
    Child.seconds is the call's own time, from the child; import is not counted."""
    code = REPLICAS_SCRIPT.format(classes=CLASSES, replicas=replicas)
    with tempfile.TemporaryDirectory(prefix="attnlab-replicas-") as tmp:
        child = run_child([sys.executable, "-c", code], Path(tmp))
        out = (Path(tmp) / "child.stdout").read_text().split()
    if child.returncode != 0 or not out:
        sys.exit(f"B at R={replicas} failed:\n{child.stderr_tail}")
    child.seconds = float(out[-1])
    return child


def peak_rss_mb() -> float:
    """This process's peak resident set so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- children: the CLI, and the memory probe ------------------------------------------------


GNU_TIME = "/usr/bin/time"


@dataclass
class Child:
    command: list[str]
    seconds: float  # wall clock, start to exit
    peak_rss_mb: float  # the child's own peak RSS (GNU time's %M), NaN if unavailable
    returncode: int
    stderr_tail: str


def run_child(command: list[str], cwd: Path) -> Child:
    """Run command in cwd; its wall time and its own peak RSS.

    The peak RSS comes from GNU time, not from os.wait4/RUSAGE_CHILDREN: a child that
    Python forks (or vforks) and execs inherits this process's high-water mark into its
    ru_maxrss, so it would report at least this process's peak (~1 GB once TF trained).
    GNU time's own child is forked from a small process, so its number is clean.
    """
    out, err, rss = cwd / "child.stdout", cwd / "child.stderr", cwd / "child.maxrss"
    wrapped = [GNU_TIME, "-f", "%M", "-o", str(rss), *command]
    have_time = Path(GNU_TIME).exists()
    start = time.perf_counter()
    with out.open("wb") as fout, err.open("wb") as ferr:
        proc = subprocess.run(wrapped if have_time else command, cwd=cwd, stdout=fout, stderr=ferr)
    seconds = time.perf_counter() - start
    tail = "\n".join(err.read_text(errors="replace").splitlines()[-5:])
    peak = float("nan")
    if have_time and rss.exists():
        # GNU time writes "Command exited with non-zero status N" before %M on failure.
        peak = int(rss.read_text().split()[-1]) / 1024  # KiB -> MiB
    return Child(command, seconds, peak, proc.returncode, tail)


def cli_child(replicas: int) -> Child:
    """`python -m attnlab` on the cell with `replicas` seeds, in a throw-away directory."""
    seeds = ",".join(str(s) for s in range(replicas))
    with tempfile.TemporaryDirectory(prefix="attnlab-bench-") as tmp:
        command = [
            sys.executable,
            "-m",
            "attnlab",
            f"data.classes={CLASSES}",
            f"seeds=[{seeds}]",
            f"hydra.run.dir={tmp}/run",
        ]
        return run_child(command, Path(tmp))


MEMORY_SCRIPT = """
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from attnlab.engine.config import DataConfig, ExperimentConfig, ModelConfig, TrainerConfig
from attnlab.engine.experiment import train_and_measure
cfg = ExperimentConfig(
    data=DataConfig(classes={classes}, features={features}),
    model=ModelConfig(),
    trainer=TrainerConfig(epochs={epochs}),
    seeds=list(range({replicas})),
)
cfg.validate()
train_and_measure(cfg)
"""


def memory_child(replicas: int) -> Child:
    """train_and_measure on the 100-class, 128-feature cell in a child, for its peak RSS."""
    code = MEMORY_SCRIPT.format(
        classes=MEM_CLASSES, features=MEM_FEATURES, epochs=MEM_EPOCHS, replicas=replicas
    )
    with tempfile.TemporaryDirectory(prefix="attnlab-mem-") as tmp:
        return run_child([sys.executable, "-c", code], Path(tmp))


def stacked_data_mb(replicas: int) -> float:
    """float32 x of every seed (samples + probe), as attnlab stacks it: one copy, in MiB."""
    return replicas * (SAMPLES + PROBE_SAMPLES) * MEM_FEATURES * 4 / 2**20


# --- the table -----------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    replicas: int
    seconds: float  # for the whole row (A: the median per model)
    rss_mb: float

    @property
    def models_per_s(self) -> float:
        return self.replicas / self.seconds


def print_table(rows: list[Row], a_models_per_s: float, limit_s: float) -> None:
    """One line per way of training; B/A and the FLOP-limit fraction per model."""
    header = (
        f"{'way':<42} {'R':>4} {'seconds':>8} {'s/model':>8} {'models/s':>9} "
        f"{'B/A':>7} {'FLOP limit':>10} {'peak RSS':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        per_model = row.seconds / row.replicas
        print(
            f"{row.label:<42} {row.replicas:>4} {row.seconds:>8.2f} {per_model:>8.3f} "
            f"{row.models_per_s:>9.2f} {row.models_per_s / a_models_per_s:>6.1f}x "
            f"{limit_s / per_model:>9.1%} {row.rss_mb:>6.0f} MB"
        )


def report_memory(replica_counts: tuple[int, int]) -> None:
    """Peak RSS of the 100-class, 128-feature cell at two seed counts, and the growth per seed."""
    print(
        f"memory: {MEM_CLASSES} classes, {MEM_FEATURES} features, {MEM_EPOCHS} epoch, "
        "train_and_measure in a child (its own peak RSS, via GNU time)"
    )
    peaks = []
    for replicas in replica_counts:
        child = memory_child(replicas)
        status = "ok" if child.returncode == 0 else f"FAILED (exit {child.returncode})"
        print(
            f"  R={replicas:>3}: peak RSS {child.peak_rss_mb:>6.0f} MB, {child.seconds:.1f} s, "
            f"{status}; one copy of the stacked x: {stacked_data_mb(replicas):.0f} MB"
        )
        if child.returncode != 0:
            print(child.stderr_tail)
        peaks.append(child.peak_rss_mb)
    (r0, r1), (m0, m1) = replica_counts, peaks
    per_seed = (m1 - m0) / (r1 - r0)  # linear in seeds: the stacked data and its copies
    print(
        f"  growth: {per_seed:.1f} MB per seed (= {per_seed / stacked_data_mb(1):.1f} copies of "
        f"one seed's x); extrapolated fixed part at R=0: {m0 - per_seed * r0:.0f} MB"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 fits, R = 1 8 32")
    parser.add_argument("--replicas", type=int, nargs="+", help="R values (default 1 8 32 128)")
    parser.add_argument("--fits", type=int, help="Keras fits for A (default 5)")
    args = parser.parse_args(argv)
    if args.replicas is None:
        args.replicas = [1, 8, 32] if args.quick else [1, 8, 32, 128]
    if args.fits is None:
        args.fits = 3 if args.quick else 5
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *sys.argv])
    flops = training_flops()
    print(f"command: {command}")
    print(f"cores: {os.cpu_count()}; A: TensorFlow imported once; B: each R in a fresh child")

    rate_start = matmul_gflops()
    print(f"float32 matmul 1024x1024: {rate_start:.1f} GFLOP/s (start)")

    # A first: attnlab turns on TensorFlow op determinism for the rest of the process.
    fits = [time_seed_fit(seed) for seed in range(args.fits)]
    a_seconds = statistics.median(t for t, _ in fits)
    print(
        f"A: {args.fits} Keras fits, s/model {', '.join(f'{t:.2f}' for t, _ in fits)}; "
        f"median {a_seconds:.2f} s (model.jit_compile={fits[0][1]})"
    )
    rows = [Row("A: Keras fit per seed (median)", 1, a_seconds, peak_rss_mb())]

    for replicas in args.replicas:
        child = time_replicas(replicas)
        rows.append(Row("B: attnlab train_and_measure", replicas, child.seconds, child.peak_rss_mb))
        print(f"B: R={replicas}: {child.seconds:.2f} s, peak RSS {child.peak_rss_mb:.0f} MB")

    cli = cli_child(32)
    print(f"CLI: {shlex.join(cli.command)}\n  exit {cli.returncode}, {cli.seconds:.2f} s wall")
    if cli.returncode == 0:
        rows.append(Row("B: python -m attnlab, whole process", 32, cli.seconds, cli.peak_rss_mb))
    else:
        print(f"  CLI failed:\n{cli.stderr_tail}")

    rate_end = matmul_gflops()
    rate = max(rate_start, rate_end)  # the better of the two: the machine's rate, less noise
    limit_s = flops / (rate * 1e9)
    print(f"float32 matmul 1024x1024: {rate_end:.1f} GFLOP/s (end); limit uses {rate:.1f}")

    print()
    print(
        f"cell: {CLASSES} classes, {FEATURES} features, hidden {HIDDEN}, {SAMPLES} samples, "
        f"{EPOCHS} epochs, batch {BATCH_SIZE}, Adam {LEARNING_RATE}, val split {VALIDATION_SPLIT}"
    )
    print(
        f"FLOPs per model: {flops / 1e9:.2f} GFLOP (training only: 3x forward of "
        f"{forward_macs(FEATURES, HIDDEN, CLASSES)} MAC/sample, x2, x{TRAIN_SAMPLES} x{EPOCHS}; "
        "validation/probe forward passes not counted)"
    )
    print(f"FLOP limit per model at {rate:.1f} GFLOP/s: {limit_s * 1e3:.0f} ms")
    print(f"A median: {a_seconds:.2f} s/model")
    print()
    print_table(rows, rows[0].models_per_s, limit_s)
    print("(peak RSS: A, this process's ru_maxrss; B and the CLI, each child's own)")

    print()
    report_memory((32, 128))


if __name__ == "__main__":
    main()
