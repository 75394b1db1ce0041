"""PostgreSQL servers on hosts of their own, so that faults can be staged the way they happen.

Each server runs in a network namespace of its own (`ip netns`), reached from this machine over
a veth pair, on TCP like a database on another host. Faults:
- stop / start: the server shuts down (fast: sessions are cut) and comes back;
- freeze / thaw: SIGSTOP on every server process, as a hung host looks to clients (the kernel
  still accepts connections and acknowledges packets; nothing answers);
- cut / restore: nftables drops every packet to and from the server (a network partition);
- slow / unslow: a token-bucket filter on both ends of the link (Linux `tbf`: this kernel has no
  `netem`), so every answer crawls through a thin link.

Needs root (network namespaces, nftables, tc); scripts/install-test-tools.sh installs nftables.
The addresses are in the 10.213.0.0/16 range, on links that exist only inside this machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import psycopg

from database.embedded import ensure_runtime_dir

SYSTEM_USER = "pgserver"  # the unprivileged user pgserver runs PostgreSQL as (it creates it)
PORT = 5432
# The "slowed" link: 32 kbit/s each way (4 KB/s), queueing up to 2 s of data: a page of results
# takes longer than the request deadline to arrive.
SLOW_RATE = "32kbit"


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=60)


def network_namespaces_work() -> str | None:
    """None when this machine can run the hosts, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables, tc)"
    for tool in ("ip", "nft", "tc", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-test-tools.sh installs it)"
    return None


class NetnsPostgres:
    """One PostgreSQL 16 (pgserver's binaries) in network namespace `name`, listening on `address`:5432."""

    def __init__(self, root: Path, slot: int) -> None:
        ensure_runtime_dir(root.parent)
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        self._bin = POSTGRES_BIN_PATH
        tag = f"{os.getpid() % 100000}x{slot}"
        self.namespace = f"mlsvc{tag}"
        self._host_link = f"mh{tag}"[:15]
        self._ns_link = f"mn{tag}"[:15]
        subnet = (os.getpid() % 250, slot * 4)
        self._host_address = f"10.213.{subnet[0]}.{subnet[1] + 1}"
        self.address = f"10.213.{subnet[0]}.{subnet[1] + 2}"
        self._data = root / "data"
        self._log = root / "postgres.log"
        self._frozen: list[psutil.Process] = []
        self._slowed = False
        self._cut = False

        _run("ip", "netns", "add", self.namespace)
        try:
            _run("ip", "link", "add", self._host_link, "type", "veth", "peer", "name", self._ns_link)
            _run("ip", "link", "set", self._ns_link, "netns", self.namespace)
            _run("ip", "addr", "add", f"{self._host_address}/30", "dev", self._host_link)
            _run("ip", "link", "set", self._host_link, "up")
            self._in_ns("ip", "addr", "add", f"{self.address}/30", "dev", self._ns_link)
            self._in_ns("ip", "link", "set", self._ns_link, "up")
            self._in_ns("ip", "link", "set", "lo", "up")

            ensure_user_exists(SYSTEM_USER)
            self._data.mkdir(parents=True)
            ensure_prefix_permissions(self._data)
            shutil.chown(self._data, SYSTEM_USER, SYSTEM_USER)
            self._log.touch()
            shutil.chown(self._log, SYSTEM_USER, SYSTEM_USER)
            self._as_postgres(
                str(self._bin / "initdb"), "-D", str(self._data), "--auth=trust", "-U", "postgres", "--encoding=utf8"
            )
            with (self._data / "pg_hba.conf").open("a") as hba:
                hba.write("host all all 10.213.0.0/16 trust\n")
            self.start()
        except BaseException:  # leave no namespace, link or server behind
            self.cleanup()
            raise

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.address}:{PORT}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return self.url(name)

    # --- faults -----------------------------------------------------------------------------

    def start(self) -> None:
        options = f"-c listen_addresses={self.address} -p {PORT} -k ''"  # TCP only: no Unix socket
        self._pg_ctl("-w", "-t", "60", "-l", str(self._log), "-o", options, "start")

    def stop(self) -> None:
        """Fast shutdown, as a failover or a crash looks to clients: sessions are cut."""
        self._pg_ctl("-w", "-t", "60", "-m", "fast", "stop")

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend."""
        postmaster = psutil.Process(int((self._data / "postmaster.pid").read_text().split()[0]))
        self._frozen = [postmaster, *postmaster.children(recursive=True)]
        for process in self._frozen:
            process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for process in self._frozen:
            try:
                process.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass
        self._frozen = []

    def cut(self) -> None:
        """Drop every packet to and from the server's port."""
        rules = (
            "table inet mlfault {\n"
            f"  chain input {{ type filter hook input priority 0; tcp dport {PORT} drop; }}\n"
            f"  chain output {{ type filter hook output priority 0; tcp sport {PORT} drop; }}\n"
            "}\n"
        )
        subprocess.run(["ip", "netns", "exec", self.namespace, "nft", "-f", "-"], input=rules, text=True, check=True)
        self._cut = True

    def restore(self) -> None:
        self._in_ns("nft", "delete", "table", "inet", "mlfault")
        self._cut = False

    def slow(self, rate: str = SLOW_RATE) -> None:
        """Shape both directions of the link to `rate`."""
        shaping = ("root", "tbf", "rate", rate, "burst", "1600", "latency", "2s")
        _run("tc", "qdisc", "add", "dev", self._host_link, *shaping)
        self._in_ns("tc", "qdisc", "add", "dev", self._ns_link, *shaping)
        self._slowed = True

    def unslow(self) -> None:
        _run("tc", "qdisc", "del", "dev", self._host_link, "root")
        self._in_ns("tc", "qdisc", "del", "dev", self._ns_link, "root")
        self._slowed = False

    def cleanup(self) -> None:
        """Undo every fault, stop the server, remove the namespace and the link."""
        self.thaw()
        if self._cut:
            self.restore()
        if self._slowed:
            self.unslow()
        self._pg_ctl("-w", "-t", "60", "-m", "immediate", "stop", check=False)
        _run("ip", "netns", "del", self.namespace, check=False)
        _run("ip", "link", "del", self._host_link, check=False)

    # --- helpers ----------------------------------------------------------------------------

    def _in_ns(self, *command: str) -> None:
        _run("ip", "netns", "exec", self.namespace, *command)

    def _as_postgres(self, *command: str, check: bool = True) -> None:
        # pg_ctl's server inherits stdout: never capture it (the call would wait for the server).
        subprocess.run(
            ["ip", "netns", "exec", self.namespace, "runuser", "-u", SYSTEM_USER, "--", *command],
            check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90,
        )

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        self._as_postgres(str(self._bin / "pg_ctl"), "-D", str(self._data), *args, check=check)
