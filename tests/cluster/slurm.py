"""A one-node SLURM cluster with job accounting, for the test suite (issue 15).

`python -m tests.cluster.slurm up|down|env [DIR]` as root on Debian: `up` installs the Debian
packages if they are missing, writes every config, socket, log, pid file and database under
one dir (default /tmp/attnlab-slurm, or $ATTNLAB_SLURM_DIR) and starts the daemons in the
foreground, detached (there is no systemd): munged, mariadbd (private datadir, socket only),
slurmdbd, slurmctld and slurmd. It returns once `sinfo` shows the node idle and `sacct`
answers. `down` stops the daemons it started (by the pids it wrote) and removes the dir.
Clients find the cluster through SLURM_CONF=DIR/slurm.conf (`env` prints it), so nothing is
written to /etc.

Why accounting: submitit polls job states with `sacct` only (no `squeue` fallback), so a
cluster without slurmdbd leaves a sweep's parent polling forever.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PACKAGES = [
    "slurmctld",
    "slurmd",
    "slurm-client",
    "munge",
    "slurmdbd",
    "mariadb-server-core",
    "mariadb-client-core",
]
# Binaries the cluster runs, by the package that brings them (presence = installed).
BINARIES = ["slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mariadbd"]
DEFAULT_DIR = Path(os.environ.get("ATTNLAB_SLURM_DIR", "/tmp/attnlab-slurm"))
# Started in this order, stopped in the reverse one: each needs the ones before it.
DAEMONS = ["munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"]
CLUSTER = "attnlab"
PARTITION = "debug"


class ClusterUnavailable(RuntimeError):
    """This machine cannot run the cluster; the message says why, in one line."""


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its state dir and the environment its clients need."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Variables to add to a client's environment (sbatch, sacct, a sweep's parent)."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str) -> str:
        """A client command's stdout (raises CalledProcessError with its stderr on failure)."""
        return _run(list(cmd), self).stdout

    def states(self, array_ids: list[str]) -> dict[str, str]:
        """sacct's State of every job (array task) of these job ids: {"12_0": "COMPLETED"}."""
        if not array_ids:
            return {}
        jobs = [a for i in array_ids for a in ("-j", i)]
        out = self.run("sacct", "-X", "-n", "-P", "-o", "JobID,State", *jobs)
        return dict(line.split("|", 1) for line in out.splitlines() if line)

    def queued(self) -> dict[str, str]:
        """squeue's view (no accounting needed): {"12_0": "RUNNING"} for jobs not yet gone."""
        out = self.run("squeue", "-h", "-r", "-o", "%i|%T")
        return dict(line.split("|", 1) for line in out.splitlines() if line)

    def cancel(self, *job_ids: str) -> None:
        """scancel these jobs (array ids or single tasks); ids already gone are no error."""
        if job_ids:
            _run(["scancel", *job_ids], self, check=False)

    def stop(self, daemon: str) -> None:
        """Stop one daemon (e.g. slurmdbd, to run without accounting); `up` restarts all."""
        _stop(self.root, daemon)


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b, path=_path()) is None]


def install() -> None:
    """apt-get the packages, once: skipped when every binary is already there."""
    if not missing_binaries():
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable("SLURM is not installed and installing it needs root")
    if shutil.which("apt-get") is None:
        raise ClusterUnavailable("SLURM is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise ClusterUnavailable(f"`{' '.join(cmd[:2])}` failed: {last}")
    if missing := missing_binaries():
        raise ClusterUnavailable(f"installed {' '.join(PACKAGES)} but {missing} are missing")


def is_up(root: Path = DEFAULT_DIR) -> bool:
    """Every daemon started under root is alive and the cluster answers."""
    return all(_alive(root, d) for d in DAEMONS) and _ready(Cluster(root))


def up(root: Path = DEFAULT_DIR, timeout: float = 90) -> Cluster:
    """Start the cluster under root (installing SLURM if needed); idempotent.

    Raises ClusterUnavailable when the machine cannot run it (not root, no apt-get, install
    failed); RuntimeError with the daemons' log tail when it starts but never becomes ready.
    """
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting SLURM's daemons needs root")
    install()
    cluster = Cluster(root)
    if is_up(root):
        return cluster
    down(root)  # a half-started or stale cluster: start afresh
    for sub in ("munge", "db", "ctld", "spool", "log", "run"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    _start_munge(root)
    _start_mariadb(root)
    _write_slurm_confs(root)
    _start(root, "slurmdbd", ["slurmdbd", "-D"])
    _wait(lambda: _sacctmgr_answers(cluster), timeout, root, "slurmdbd")
    _run(["sacctmgr", "-i", "add", "cluster", CLUSTER], cluster, check=False)
    _start(root, "slurmctld", ["slurmctld", "-D", "-i", "-f", str(cluster.conf)])
    _start(root, "slurmd", ["slurmd", "-D", "-f", str(cluster.conf)])
    _wait(lambda: _ready(cluster), timeout, root, "slurmctld and slurmd")
    return cluster


def down(root: Path = DEFAULT_DIR) -> None:
    """Cancel the cluster's jobs, stop the daemons started under root (by their pid files)
    and remove root. Jobs go first: their processes (slurmstepd's) outlive slurmd."""
    if _alive(root, "slurmctld"):
        cluster = Cluster(root)
        _run(["scancel", "--full", f"--user={os.geteuid()}"], cluster, check=False)
        squeue = ["squeue", "-h", "-o", "%i"]
        _wait_quietly(lambda: not _run(squeue, cluster, check=False).stdout.strip(), 20)
    for name in reversed(DAEMONS):
        _stop(root, name)
    shutil.rmtree(root, ignore_errors=True)


def _stop(root: Path, name: str) -> None:
    if _alive(root, name):
        pid = _pid(root, name)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid, 15)


def _start_munge(root: Path) -> None:
    key = root / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    munge = _uid_gid("munge")
    for path in (root / "munge", key):
        os.chown(path, *munge)
    (root / "munge").chmod(0o755)  # clients reach the socket through it
    key.chmod(0o400)
    state = root / "munge" / "munged"
    cmd = [
        "setpriv", f"--reuid={munge[0]}", f"--regid={munge[1]}", "--init-groups",
        "munged", "-F", "--force", f"--key-file={key}", f"--socket={_munge_socket(root)}",
        f"--pid-file={state}.pid", f"--log-file={state}.log", f"--seed-file={state}.seed",
    ]  # fmt: skip
    _start(root, "munged", cmd)
    _wait(lambda: Path(_munge_socket(root)).exists(), 20, root, "munged")


def _start_mariadb(root: Path) -> None:
    datadir = root / "db" / "data"
    if not (datadir / "mysql").exists():
        done = subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": _path()},
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stderr[-2000:]}")
    cmd = [
        "mariadbd", "--no-defaults", f"--datadir={datadir}", "--user=root", "--skip-networking",
        f"--socket={_db_socket(root)}", f"--pid-file={root / 'db' / 'mariadbd.pid'}",
        f"--log-error={root / 'log' / 'mariadbd.log'}",
        "--innodb-buffer-pool-size=32M", "--performance-schema=OFF",
    ]  # fmt: skip
    _start(root, "mariadbd", cmd)
    _wait(lambda: Path(_db_socket(root)).exists(), 60, root, "mariadbd")


def _write_slurm_confs(root: Path) -> None:
    host = socket.gethostname()
    node = _node_line()
    auth = f"AuthInfo=socket={_munge_socket(root)}"
    slurm_conf = f"""\
ClusterName={CLUSTER}
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
{auth}
StateSaveLocation={root / "ctld"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "run" / "slurmctld.pid"}
SlurmdPidFile={root / "run" / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
# No cgroups in this container: track processes by their parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# The munge socket for talking to slurmdbd (AuthInfo does not reach that connection).
AccountingStoragePass={_munge_socket(root)}
JobCompType=jobcomp/none
# Kills are quick (submitit ignores SIGTERM until KillWait runs out) and finished jobs leave
# slurmctld's memory soon; sacct still has them.
KillWait=5
MinJobAge=30
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
{node} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    dbd_conf = f"""\
{auth}
DbdHost=localhost
SlurmUser=root
PidFile={root / "run" / "slurmdbd.pid"}
LogFile={root / "log" / "slurmdbd.log"}
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
"""
    (root / "slurm.conf").write_text(slurm_conf)
    dbd = root / "slurmdbd.conf"
    dbd.write_text(dbd_conf)
    dbd.chmod(0o600)  # slurmdbd refuses a readable one: it may hold the database password


def _node_line() -> str:
    """`slurmd -C`'s NodeName line (this machine's CPUs and memory), as SLURM sees them."""
    env = {**os.environ, "PATH": _path()}
    done = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True, env=env)
    return next(line for line in done.stdout.splitlines() if line.startswith("NodeName="))


def _start(root: Path, name: str, cmd: list[str]) -> None:
    """Start one daemon detached (own session, output to log/NAME.out); record its pid."""
    # slurmdbd's MariaDB client finds the private socket through MYSQL_UNIX_PORT.
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"),
           "MYSQL_UNIX_PORT": _db_socket(root), "PATH": _path()}  # fmt: skip
    with open(root / "log" / f"{name}.out", "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
    (root / "run" / f"{name}.started").write_text(str(proc.pid))


def _ready(cluster: Cluster) -> bool:
    """The node is idle in sinfo and sacct answers (submitit needs both)."""
    sinfo = _run(["sinfo", "-h", "-N", "-o", "%T"], cluster, check=False)
    sacct = _run(["sacct", "-n", "-X", "-S", "now-1minutes"], cluster, check=False)
    return sinfo.returncode == 0 and sinfo.stdout.split() == ["idle"] and sacct.returncode == 0


def _sacctmgr_answers(cluster: Cluster) -> bool:
    return _run(["sacctmgr", "-n", "list", "cluster"], cluster, check=False).returncode == 0


def _run(cmd: list[str], cluster: Cluster, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **cluster.env, "PATH": _path()}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=check)


def _wait(ready: Callable[[], bool], timeout: float, root: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s; logs:\n{_log_tail(root)}")
        time.sleep(0.5)


def _wait_quietly(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.5)


def _log_tail(root: Path, lines: int = 15) -> str:
    parts = []
    for log in sorted((root / "log").glob("*")) + sorted((root / "munge").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(parts)


def _pid(root: Path, name: str) -> int | None:
    try:
        return int((root / "run" / f"{name}.started").read_text())
    except (OSError, ValueError):
        return None


def _alive(root: Path, name: str) -> bool:
    """The daemon's recorded pid runs that daemon (a stale pid may be another process now)."""
    pid = _pid(root, name)
    if pid is None or not _pid_alive(pid):
        return False
    try:
        program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return Path(program.decode()).name == name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.2)


def _uid_gid(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _munge_socket(root: Path) -> str:
    return str(root / "munge" / "munge.socket.2")


def _db_socket(root: Path) -> str:
    return str(root / "db" / "mysqld.sock")


def _path() -> str:
    """PATH with the sbin dirs, where Debian puts the daemons (a non-login root may lack them)."""
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] not in ("up", "down", "env"):
        print("usage: python -m tests.cluster.slurm up|down|env [DIR]", file=sys.stderr)
        return 2
    root = Path(argv[1]) if len(argv) == 2 else DEFAULT_DIR
    if argv[0] == "down":
        down(root)
        return 0
    if argv[0] == "up":
        try:
            up(root)
        except ClusterUnavailable as err:
            print(f"SLURM unavailable: {err}", file=sys.stderr)
            return 1
    print(f"export SLURM_CONF={Cluster(root).conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
