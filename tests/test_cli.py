"""The `attnlab` command: --version, --help, shell completion, a quiet start, presets without -m."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attnlab import __version__
from attnlab.cli import version_line
from attnlab.engine.config import ConfigError
from attnlab.quiet import is_noise, keep_lines
from attnlab.sweep.cells import require_multirun

from .conftest import DEBUG_TINY, shown

BIN = Path(sys.executable).parent
ATTNLAB = shutil.which("attnlab", path=str(BIN))
needs_command = pytest.mark.skipif(
    ATTNLAB is None, reason="attnlab not installed (pip install -e .)"
)

# attnlab's own console lines: Hydra's log format for attnlab's loggers, and its error lines.
# The console's log format (conf/hydra/job_logging/attnlab.yaml), or the CLI's error line.
OWN_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] |^attnlab: error: ")


def _env(**extra: str) -> dict[str, str]:
    """The test process's environment without TensorFlow settings: the defaults are tested."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def _attnlab(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert ATTNLAB is not None
    return subprocess.run(
        [ATTNLAB, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def test_version_line_only_for_version_flag():
    assert version_line(["--version"], "1.2.3") == "attnlab 1.2.3"
    assert version_line(["data.classes=5"], "1.2.3") is None


@needs_command
def test_version_prints_and_exits_zero_without_tensorflow(tmp_path):
    proc = _attnlab(["--version"], tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"attnlab {__version__}\n", "")
    probe = (
        "import sys; sys.argv = ['attnlab', '--version']\n"
        "import attnlab.__main__ as m\n"
        "try:\n    m.cli()\nexcept SystemExit as e:\n"
        "    print(e.code, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "0 False False"


def test_import_attnlab_does_not_load_tensorflow():
    probe = "import sys, attnlab; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


@needs_command
def test_help_starts_with_attnlab_and_lists_only_real_options(tmp_path):
    proc = _attnlab(["--help"], tmp_path)
    assert proc.returncode == 0, shown(proc)
    text = proc.stdout
    assert text.startswith("attnlab: train a softmax attention model")
    assert text.count("\n  attnlab ") == 3  # three example commands
    groups = dict(
        line.split(": ", 1) for line in text.splitlines() if re.match(r"^[a-z]+: [a-z_]", line)
    )
    assert groups["model"] == "custom, dense, double, lstm"
    assert groups["data"] == "csv, default, informative, xor" and groups["trainer"] == "default"
    assert groups["debug"] == "tiny"
    assert groups["logger"] == "none, tensorboard"
    assert "capacity" in groups["experiment"].split(", ")
    assert "base_" not in text  # the schemas are not options


@needs_command
def test_bash_completion_offers_config_keys(tmp_path):
    script = (
        'eval "$(attnlab --shell-completion install=bash)"\n'
        'COMP_LINE="attnlab data.cl"; COMP_POINT=${#COMP_LINE}\n'
        "COMP_WORDS=(attnlab data.cl); COMP_CWORD=1\n"
        "hydra_bash_completion\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.split() == ["data.classes="], proc.stderr
    install = _attnlab(["--shell-completion", "install=bash"], tmp_path)
    assert install.stdout.rstrip().endswith("-F hydra_bash_completion attnlab")


def test_single_run_of_a_sweep_preset_is_refused():
    with pytest.raises(ConfigError) as err:
        require_multirun(False, {"data.classes": "50"})
    assert str(err.value).startswith("hydra.sweeper.params={data.classes=50} is not allowed")
    assert "add -m" in str(err.value)
    require_multirun(True, {"data.classes": "50"})
    require_multirun(False, None)
    require_multirun(False, {})


@needs_command
def test_preset_without_m_exits_2_before_training(tmp_path):
    proc = _attnlab(["+experiment=blog_deep", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "attnlab: error: hydra.sweeper.params={data.classes=50} is not allowed without -m: "
        "this config defines a sweep; add -m (attnlab -m ...) to run it"
    ]
    assert not (tmp_path / "run" / "metrics.json").exists()


@needs_command
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-m", "--cfg", "job"], ["Only one of --run, --multirun, --cfg"]),
        (["--resolve"], ["--resolve flag can only be used"]),
        # Hydra ignores the preset's own sweeper choice: the line says what to add.
        (["-m", "+experiment=capacity_optuna"], ["'direction'", "hydra/sweeper=optuna"]),
    ],
)
def test_flag_misuse_and_a_preset_for_another_sweeper_get_one_line(tmp_path, args, words):
    proc = _attnlab([*args, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnlab: error: "), proc.stderr[-2000:]
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "sweep").exists()


def test_startup_notices_are_recognised_and_other_lines_kept():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796116566.493215    8268 port.cc:153] oneDNN custom operations are on. "
        "You may see slightly different numerical results\n"
        "I0000 00:00:1796116566.499506    8268 cudart_stub.cc:31] Could not find cuda drivers "
        "on your machine, GPU will not be used.\n"
        "E0000 00:00:1796116574.341058    8268 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error\n"
        "E0000 00:00:1796116574.341058    8268 op_kernel.cc:1] OOM when allocating tensor\n"
        "UserWarning: something real\n"
    )
    assert keep_lines(text) == (
        "E0000 00:00:1796116574.341058    8268 op_kernel.cc:1] OOM when allocating tensor\n"
        "UserWarning: something real\n"
    )
    assert not is_noise("[2026-12-01 09:14:23,209][attnlab.sweep.launchers][INFO] - training")


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_tensorflow_import_is_quiet_but_real_stderr_stays():
    probe = (
        "import os, sys\n"
        "from attnlab.quiet import quiet_start, filtered_stderr\n"
        "quiet_start()\n"
        "import tensorflow as tf\n"
        "tf.constant(1.0) + 1\n"
        "with filtered_stderr():\n"
        "    os.write(2, b'W0000 x port.cc:153] oneDNN custom operations are on. y\\n')\n"
        "    os.write(2, b'a real error\\n')\n"
        "print('tf', tf.__version__, os.environ['TF_CPP_MIN_LOG_LEVEL'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, shown(proc)
    assert proc.stderr == "a real error\n"
    assert proc.stdout.startswith("tf 2.") and proc.stdout.endswith(" 2\n")
    kept = subprocess.run(
        [sys.executable, "-c", probe.replace("tf.__version__", "'x'")],
        env=_env(TF_CPP_MIN_LOG_LEVEL="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert kept.stdout.strip() == "tf x 1"  # a value the user set is kept


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
@needs_command
def test_normal_run_console_shows_only_attnlab_lines(tmp_path):
    proc = _attnlab(
        ["data.samples=600", "trainer.epochs=1", "seeds=[0]", f"hydra.run.dir={tmp_path}/run"],
        tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, shown(proc)
    lines = (proc.stdout + proc.stderr).splitlines()
    assert lines, "a run says what it did"
    assert [ln for ln in lines if not OWN_LINE.match(ln)] == []
    assert (tmp_path / "run" / "metrics.json").exists()


@needs_command
@pytest.mark.slow
def test_joblib_workers_start_quietly_too(tmp_path):
    # Workers import attnlab's modules, never attnlab.__main__: attnlab/__init__ quiets them.
    args = ["-m", "data.classes=2,5", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    args.append(DEBUG_TINY)
    proc = _attnlab([*args, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, timeout=600)
    assert proc.returncode == 0, shown(proc)
    hydra_line = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[HYDRA\] ")
    lines = (proc.stdout + proc.stderr).splitlines()
    assert [ln for ln in lines if not (OWN_LINE.match(ln) or hydra_line.match(ln))] == []
