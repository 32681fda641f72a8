"""Start and stop a real single-node SLURM cluster (with accounting) on this machine, for tests.

Debian packages ``slurmctld slurmd slurm-client munge slurmdbd mariadb-server``; every daemon is started by
hand in the foreground (no systemd needed), so the cluster knows the PID of each one and stops exactly those.
Everything lives in a private directory: munge socket, MariaDB data directory, SLURM state, spool and logs.
Ports are picked free at start. The only file outside it is ``/etc/slurm/slurm.conf`` (SLURM jobs need the
configuration at its compiled-in path), a symlink that is removed (and any previous file restored) at stop.

Facts behind the recipe: ``/work/shared/notes/local-slurm.md`` (SLURM 22.05, Debian 12, root, no systemd).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hscseq.runner import machine_memory_mb

logger = logging.getLogger(__name__)

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")
BINARIES = (
    "slurmctld",
    "slurmd",
    "slurmdbd",
    "sbatch",
    "sacct",
    "sacctmgr",
    "scontrol",
    "munged",
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
)
SLURM_CONF = Path("/etc/slurm/slurm.conf")
LOCK_FILE = Path(tempfile.gettempdir()) / "hscseq-slurm-cluster.lock"
# daemons are stopped in this order (reverse of start)
STOP_ORDER = ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")


def why_unavailable() -> str | None:
    """Why no cluster can start here (``None`` if it can): needs root, and apt if packages are missing."""
    if os.geteuid() != 0:
        return "not running as root: starting SLURM daemons (slurmctld, slurmd, slurmdbd, munged) needs root"
    if missing_binaries() and shutil.which("apt-get") is None:
        return (
            f"SLURM/munge/MariaDB binaries missing ({', '.join(missing_binaries())}) and no apt-get to "
            f"install the Debian packages {' '.join(PACKAGES)}"
        )
    return None


def missing_binaries() -> list[str]:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [b for b in BINARIES if shutil.which(b, path=search) is None]


def install_packages(log: Path) -> None:
    """``apt-get install`` the Debian packages if any binary is missing (``apt-get update`` once first)."""
    if not missing_binaries():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("a") as out:
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
        ):
            logger.info("running %s", " ".join(cmd))
            subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
    if missing_binaries():
        msg = f"after apt-get install, still missing: {missing_binaries()} (see {log})"
        raise RuntimeError(msg)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found is None:
        msg = f"{name} not found"
        raise FileNotFoundError(msg)
    return found


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def slurmstepd_pids() -> list[int]:
    """PIDs of running ``slurmstepd`` processes (job step daemons forked by slurmd)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "cmdline").read_bytes().startswith(b"slurmstepd"):
                pids.append(int(entry.name))
    return pids


@dataclass
class SlurmCluster:
    """A single-node SLURM cluster (partition ``debug``, account ``root``) with slurmdbd accounting.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (idempotent, also registered atexit).
    """

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hscseq-slurm-")))
    cpus: int = 8
    cluster_name: str = "hscseqci"
    partition: str = "debug"
    account: str = "root"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    started_pids: dict[str, int] = field(default_factory=dict)
    _lock: object | None = None
    _conf_backup: Path | None = None

    # ------------------------------------------------------------------ paths
    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket.2"

    @property
    def logdir(self) -> Path:
        return self.root / "log"

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 120) -> None:
        """Install packages if needed, then start munged, MariaDB, slurmdbd, slurmctld and slurmd."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # munge and mysql users must traverse it
        self.logdir.mkdir(exist_ok=True)
        # one cluster per machine at a time: /etc/slurm/slurm.conf and the daemons' names are global
        self._lock = LOCK_FILE.open("w")
        deadline = time.monotonic() + 1800
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                logger.warning("another SLURM test cluster is running on this machine; waiting")
                time.sleep(5)
        atexit.register(self.stop)
        try:
            install_packages(self.logdir / "apt.log")
            self._start_munge(timeout)
            self._start_mariadb(timeout)
            self._write_slurm_conf()
            self._start_slurmdbd(timeout)
            self._start_slurmctld(timeout)
            self._start_slurmd(timeout)
        except BaseException:
            logger.error("SLURM cluster failed to start; logs in %s:\n%s", self.logdir, self.log_tail())
            self.stop()
            raise

    def _spawn(self, name: str, argv: list[str], *, user: str | None = None, env: dict | None = None) -> None:
        out = (self.logdir / f"{name}.out").open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
            env=env or os.environ.copy(),
        )
        out.close()
        self.procs[name] = proc
        self.started_pids[name] = proc.pid
        logger.info("started %s (pid %d)", name, proc.pid)

    def _wait_until(self, name: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                msg = f"{name} exited with code {proc.returncode} while starting; see {self.logdir}"
                raise RuntimeError(msg)
            if check():
                return
            time.sleep(0.5)
        msg = f"{name} not ready after {timeout:.0f} s; see {self.logdir}"
        raise TimeoutError(msg)

    def _ok(self, argv: list[str], **kwargs) -> bool:
        try:
            res = subprocess.run(argv, capture_output=True, timeout=20, **kwargs)
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0

    def _start_munge(self, timeout: float) -> None:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run([_sbin("mungekey"), "--create"], check=True)
            shutil.chown(key, "munge", "munge")
        mdir = self.munge_socket.parent
        mdir.mkdir(exist_ok=True)
        shutil.chown(mdir, "munge", "munge")
        mdir.chmod(0o755)
        self._spawn(
            "munged",
            [
                _sbin("munged"),
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--pid-file={mdir / 'munged.pid'}",
                f"--seed-file={mdir / 'munged.seed'}",
                f"--log-file={mdir / 'munged.log'}",
            ],
            user="munge",
        )

        def ready() -> bool:
            cred = subprocess.run(["munge", "-n", "-S", str(self.munge_socket)], capture_output=True)
            return cred.returncode == 0 and self._ok(
                ["unmunge", "-S", str(self.munge_socket)], input=cred.stdout
            )

        self._wait_until("munged", ready, timeout)

    def _start_mariadb(self, timeout: float) -> None:
        datadir = self.root / "mysql"
        self.db_socket = self.root / "mysqld" / "mysqld.sock"
        self.db_socket.parent.mkdir(exist_ok=True)
        shutil.chown(self.db_socket.parent, "mysql", "mysql")
        self.db_port = _free_port()
        self.db_password = secrets.token_hex(12)
        with (self.logdir / "mariadb-install-db.out").open("wb") as out:
            subprocess.run(
                [
                    _sbin("mariadb-install-db"),
                    "--no-defaults",
                    "--user=mysql",
                    f"--datadir={datadir}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
            )
        self._spawn(
            "mariadbd",
            [
                _sbin("mariadbd"),
                "--no-defaults",
                "--user=mysql",
                f"--datadir={datadir}",
                f"--socket={self.db_socket}",
                "--bind-address=127.0.0.1",
                f"--port={self.db_port}",
                f"--pid-file={self.root / 'mysqld' / 'mysqld.pid'}",
                f"--log-error={self.logdir / 'mariadbd.log'}",
            ],
        )
        client = [_sbin("mariadb"), "--no-defaults", f"--socket={self.db_socket}", "-u", "root"]
        self._wait_until("mariadbd", lambda: self._ok([*client, "-e", "SELECT 1"]), timeout)
        sql = "CREATE DATABASE IF NOT EXISTS slurm_acct_db;\n" + "".join(
            f"CREATE USER IF NOT EXISTS 'slurm'@'{host}' IDENTIFIED BY '{self.db_password}';\n"
            f"GRANT ALL ON slurm_acct_db.* TO 'slurm'@'{host}';\n"
            for host in ("localhost", "127.0.0.1")
        )
        subprocess.run(client, input=sql.encode(), check=True, capture_output=True, timeout=60)

    def _write_slurm_conf(self) -> None:
        etc = self.conf.parent
        for sub in ("etc", "state", "spool", "run"):
            (self.root / sub).mkdir(exist_ok=True)
        self.ctld_port, self.slurmd_port, self.dbd_port = _free_port(), _free_port(), _free_port()
        real_mem = machine_memory_mb() or 4000  # slurmd accepts a node declared with no more than it has
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket}\n"
        # The node is declared with at least `cpus` CPUs (SlurmdParameters=config_overrides) so the per-rule
        # requests of the shipped profile are schedulable as written on a small CI machine; the data is tiny.
        self.conf.write_text(
            f"ClusterName={self.cluster_name}\nSlurmctldHost=localhost\n"
            f"SlurmctldPort={self.ctld_port}\nSlurmdPort={self.slurmd_port}\n"
            "SlurmUser=root\nSlurmdUser=root\n" + auth + "CredType=cred/munge\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=5\n"
            "AccountingStoreFlags=job_comment\n"  # sacct shows the rule name the executor puts there
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            "DefMemPerCPU=1000\nMinJobAge=600\nReturnToService=2\nMpiDefault=none\nMailProg=/bin/true\n"
            "SlurmdParameters=config_overrides\n"
            "AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort={self.dbd_port}\n"
            # the munge socket used towards slurmdbd (sacct, sacctmgr, slurmctld): not AuthInfo's
            f"AccountingStoragePass={self.munge_socket}\n"
            f"StateSaveLocation={self.root / 'state'}\nSlurmdSpoolDir={self.root / 'spool'}\n"
            f"SlurmctldPidFile={self.root / 'run' / 'slurmctld.pid'}\n"
            f"SlurmdPidFile={self.root / 'run' / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={self.logdir / 'slurmctld.log'}\nSlurmdLogFile={self.logdir / 'slurmd.log'}\n"
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={max(self.cpus, os.cpu_count() or 1)} "
            f"RealMemory={max(real_mem, 32000)} State=UNKNOWN\n"
            f"PartitionName={self.partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n"
        )
        dbd = etc / "slurmdbd.conf"
        dbd.write_text(
            auth + f"DbdHost=localhost\nDbdPort={self.dbd_port}\nSlurmUser=root\n"
            f"LogFile={self.logdir / 'slurmdbd.log'}\nPidFile={self.root / 'run' / 'slurmdbd.pid'}\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={self.db_port}\n"
            f"StorageUser=slurm\nStoragePass={self.db_password}\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)
        # SLURM jobs (srun inside the job) read the compiled-in path: link it, keep whatever was there
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if SLURM_CONF.is_symlink() and "hscseq-slurm-" in os.readlink(SLURM_CONF):
            SLURM_CONF.unlink()  # left over by a killed test run
        elif SLURM_CONF.exists() or SLURM_CONF.is_symlink():
            self._conf_backup = SLURM_CONF.with_name(f"slurm.conf.hscseq-backup-{os.getpid()}")
            SLURM_CONF.rename(self._conf_backup)
        SLURM_CONF.symlink_to(self.conf)

    def _daemon_env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _start_slurmdbd(self, timeout: float) -> None:
        self._spawn("slurmdbd", [_sbin("slurmdbd"), "-D"], env=self._daemon_env())
        self._wait_until("slurmdbd", lambda: self._ok(["sacctmgr", "-n", "list", "cluster"]), timeout)

    def _start_slurmctld(self, timeout: float) -> None:
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-f", str(self.conf)], env=self._daemon_env())
        self._wait_until("slurmctld", lambda: self._ok(["scontrol", "ping"]), timeout)

        def registered() -> bool:  # the cluster registers itself in slurmdbd; account root then exists
            res = subprocess.run(
                ["sacctmgr", "-n", "-P", "list", "account", self.account], capture_output=True, text=True
            )
            return res.returncode == 0 and self.account in res.stdout

        self._wait_until("slurmctld", registered, timeout)

    def _start_slurmd(self, timeout: float) -> None:
        self._spawn(
            "slurmd", [_sbin("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)], env=self._daemon_env()
        )

        def idle() -> bool:
            res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
            return res.returncode == 0 and res.stdout.strip() == "idle"

        self._wait_until("slurmd", idle, timeout)

    # ------------------------------------------------------------------ use
    def sacct(self, *args: str) -> str:
        """``sacct`` output (all users, all jobs since the cluster started), parsable, no header."""
        res = subprocess.run(
            ["sacct", "-a", "-n", "-P", "-S", "2000-01-01", *args], capture_output=True, text=True, check=True
        )
        return res.stdout

    def log_tail(self, n: int = 20) -> str:
        parts = []
        if self.logdir.exists():
            for log in sorted(self.logdir.iterdir()):
                with contextlib.suppress(OSError):
                    lines = log.read_text(errors="replace").splitlines()[-n:]
                    parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def running(self) -> dict[str, int]:
        """The daemons this cluster started that are still alive, name -> pid."""
        return {name: pid for name, pid in self.started_pids.items() if _alive(pid)}

    # ------------------------------------------------------------------ stop
    def stop(self, timeout: float = 30) -> None:
        """Cancel all jobs, stop each daemon this cluster started by PID (SIGTERM, then SIGKILL), clean up."""
        if self.procs and "slurmctld" in self.running():
            with contextlib.suppress(Exception):
                subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True, timeout=20)
            deadline = time.monotonic() + timeout
            while slurmstepd_pids() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in STOP_ORDER:
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("%s (pid %d) ignored SIGTERM; killing it", name, proc.pid)
                    proc.kill()
                    proc.wait(timeout=timeout)
            logger.info("stopped %s (pid %d, exit %s)", name, proc.pid, proc.returncode)
        self.procs.clear()
        if SLURM_CONF.is_symlink() and os.readlink(SLURM_CONF) == str(self.conf):
            SLURM_CONF.unlink()
            if self._conf_backup is not None and self._conf_backup.exists():
                self._conf_backup.rename(SLURM_CONF)
                self._conf_backup = None
        if not os.environ.get("HSCSEQ_KEEP_SLURM_DIR") and not self.running():
            shutil.rmtree(self.root, ignore_errors=True)  # HSCSEQ_KEEP_SLURM_DIR=1 keeps the daemons' logs
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
        atexit.unregister(self.stop)
