"""A real single-node SLURM for the tests: munged, slurmctld and slurmd started from a generated configuration in
a folder of their own (SLURM_CONF, munge socket and key, state and spool dirs, free ports), one 2-CPU node in a
one-line partition, tuned so that a requeued job starts again within seconds (cred_expire).

`python tests/slurm_cluster.py DIR` starts one by hand and prints the environment to use it (Ctrl-C stops it).
Debian/Ubuntu: `apt-get install -y slurmctld slurmd slurm-client munge`."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INSTALL = "apt-get install -y slurmctld slurmd slurm-client munge (Debian/Ubuntu, as root)"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel")
CPUS = 2


def missing_binaries() -> list[str]:
    """The SLURM and munge programs this machine lacks (daemons live in sbin, which a user's PATH may omit)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    return [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name, path=path) is None]


def _binary(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    return shutil.which(name, path=path) or name


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


SLURM_CONF = """\
ClusterName=vggtest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
# cred_expire also bounds how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket={munge_socket},cred_expire=5
StateSaveLocation={state}
SlurmdSpoolDir={spool}/%n
SlurmctldPidFile={run}/slurmctld.pid
SlurmdPidFile={run}/slurmd-%n.pid
SlurmctldLogFile={log}/slurmctld.log
SlurmdLogFile={log}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
MessageTimeout=10
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
OverTimeLimit=0
UnkillableStepTimeout=60
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


@dataclass
class SlurmCluster:
    """The running daemons and the environment that points SLURM's clients (and submitit) at them."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def run(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, env={**os.environ, **self.env}, capture_output=True, text=True, check=check, **kwargs
        )

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))

    def stop(self) -> None:
        """Cancel what is left of the tests' jobs (no step outlives the run), then stop the daemons."""
        if all(process.poll() is None for process in self.processes):
            self.run("scancel", "--full", "--user", getpass.getuser(), check=False)
            deadline = time.monotonic() + 20
            while self.run("squeue", "-h", check=False).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.5)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def _wait(condition, what: str, cluster: SlurmCluster, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for process in cluster.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited with {process.returncode}\n{cluster.logs()}")
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}\n{cluster.logs()}")


def start_cluster(root: Path) -> SlurmCluster:
    """munged, slurmctld and slurmd in the foreground of their own processes, all files under `root`."""
    root = Path(root).resolve()
    dirs = {name: root / name for name in ("munge", "state", "spool", "run", "log")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    os.chmod(dirs["munge"], 0o700)
    key = dirs["munge"] / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o600)
    munge_socket = dirs["munge"] / "munge.socket"
    host = socket.gethostname().split(".")[0]
    ctld_port, slurmd_port = _free_ports(2)

    conf = root / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=host,
            ctld_port=ctld_port,
            slurmd_port=slurmd_port,
            user=getpass.getuser(),
            munge_socket=munge_socket,
            state=dirs["state"],
            spool=dirs["spool"],
            run=dirs["run"],
            log=dirs["log"],
            cpus=CPUS,
        )
    )
    cluster = SlurmCluster(root, env={"SLURM_CONF": str(conf)})
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    env = {**os.environ, **cluster.env}
    cluster.processes.append(
        subprocess.Popen(
            [
                _binary("munged"),
                "--foreground",
                "--force",
                f"--socket={munge_socket}",
                f"--key-file={key}",
                f"--pid-file={dirs['run'] / 'munged.pid'}",
                f"--log-file={dirs['log'] / 'munged.log'}",
                f"--seed-file={dirs['munge'] / 'munged.seed'}",
            ],
            env=env,
            **quiet,
        )
    )
    _wait(munge_socket.exists, "munged's socket", cluster)
    cluster.processes.append(subprocess.Popen([_binary("slurmctld"), "-D", "-i"], env=env, **quiet))
    _wait(lambda: cluster.run("scontrol", "ping", check=False).stdout.count("UP") > 0, "slurmctld", cluster)
    cluster.processes.append(subprocess.Popen([_binary("slurmd"), "-D"], env=env, **quiet))

    def node_idle() -> bool:
        state = cluster.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
        return state.startswith("idle")

    _wait(node_idle, "the node to be idle", cluster)
    return cluster


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> SlurmCluster:
    """A SLURM cluster for this test run (one per xdist worker; the SLURM tests share the group "slurm", so one
    worker runs them all), or a skip naming what to install."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"no SLURM here ({', '.join(missing)} not found): {INSTALL}")
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()


if __name__ == "__main__":
    cluster = start_cluster(Path(sys.argv[1] if len(sys.argv) > 1 else "slurm-test"))
    print(f"export SLURM_CONF={cluster.env['SLURM_CONF']}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
