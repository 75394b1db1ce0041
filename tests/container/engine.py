"""A private Docker engine for the container test, and the host state it must leave as it found.

dockerd runs from Debian's docker.io with every path of its own under one state directory
(data root, exec root, socket, pid file, config, trust key) and in a mount namespace of its own,
so its overlay mounts never reach the host's mount table. What it still changes on the host is
network state: the docker0 bridge (and one bridge per compose network), iptables chains and rules
with the FORWARD policy set to DROP, and net.ipv4.ip_forward=1. `HostState` records all of it
before the engine starts; `PrivateEngine.stop` stops the engine and puts every piece back, then
checks that the host reads as before and raises if it does not.

A run that was killed before it could clean up leaves its record behind (`host-state.json` in the
state directory); the next run stops the old engine and restores that record before it starts.
One engine at a time per machine: runs wait for a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_DIR = Path(os.environ.get("ML_SERVICE_CONTAINER_STATE", "/tmp/ml-service-container-test"))
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
# The links dockerd makes: its default bridge, one bridge per network, a veth per container. Only
# these are looked at: other tests on the machine (tests/faults) make links of their own.
DOCKER_LINK = re.compile(r"docker0|br-[0-9a-f]{12}|veth[0-9a-f]{7}")
FAMILIES = {"ipv4": ("iptables-save", "iptables-restore", "ip"), "ipv6": ("ip6tables-save", "ip6tables-restore", "ip6")}


def run(*command: str, input: str | None = None, check: bool = True) -> str:
    result = subprocess.run(command, input=input, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _rules(save: str) -> str:
    """An iptables-save dump without its comments and packet counters: what the rules are."""
    lines = [line for line in run(save).splitlines() if not line.startswith("#")]
    return "\n".join(line.split(" [", 1)[0] if line.startswith(":") else line for line in lines)


def _tables(rules: str) -> set[str]:
    return {line[1:] for line in rules.splitlines() if line.startswith("*")}


@dataclass
class HostState:
    """What dockerd changes on the host: its links, iptables rules per family, IP forwarding, paths."""

    links: list[str]
    rules: dict[str, str]
    ip_forward: str
    paths: dict[str, bool]  # fixed paths dockerd or containerd create when missing: did it exist?

    PATHS = ("/run/containerd", "/etc/docker/key.json")

    @classmethod
    def capture(cls) -> HostState:
        links = [link["ifname"] for link in json.loads(run("ip", "-json", "link", "show"))]
        return cls(
            links=sorted(name for name in links if DOCKER_LINK.fullmatch(name)),
            rules={family: _rules(save) for family, (save, _, _) in FAMILIES.items()},
            ip_forward=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
            paths={path: os.path.exists(path) for path in cls.PATHS},
        )

    def differences(self, other: HostState) -> list[str]:
        """What `other` (now) has that differs from this record, in words."""
        found = []
        if other.links != self.links:
            found.append(f"network links {other.links}, were {self.links}")
        for family, rules in self.rules.items():
            if other.rules[family] != rules:
                found.append(f"{family} iptables rules:\n{other.rules[family]}\nwere:\n{rules}")
        if other.ip_forward != self.ip_forward:
            found.append(f"net.ipv4.ip_forward {other.ip_forward}, was {self.ip_forward}")
        for path, existed in self.paths.items():
            if other.paths[path] != existed:
                found.append(f"{path} {'exists' if other.paths[path] else 'is gone'}, {'existed' if existed else 'did not exist'} before")
        return found

    def restore(self) -> None:
        """Put back what dockerd changed: delete its links, restore the rules and IP forwarding."""
        now = HostState.capture()
        for link in set(now.links) - set(self.links):
            run("ip", "link", "delete", link, check=False)  # a veth's peer goes with it
        for family, (_, restore, nft_family) in FAMILIES.items():
            if now.rules[family] != self.rules[family]:
                if self.rules[family]:
                    run(restore, input=self.rules[family] + "\n")  # replaces the tables it names
                for table in _tables(now.rules[family]) - _tables(self.rules[family]):
                    # A table that did not exist: iptables-nft can delete it, legacy only empty it.
                    if "nf_tables" in run(restore.replace("-restore", ""), "--version"):
                        run("nft", "delete", "table", nft_family, table, check=False)
                    else:
                        run(restore, input=f"*{table}\nCOMMIT\n")
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward + "\n")
        for path, existed in self.paths.items():
            if not existed and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif not existed and os.path.exists(path):
                os.unlink(path)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> HostState:
        return cls(**json.loads(path.read_text()))


class PrivateEngine:
    """dockerd with all its paths under `STATE_DIR`, for one test run; `stop()` undoes it on the host."""

    def __init__(self, state_dir: Path = STATE_DIR):
        self.dir = state_dir
        self.socket = state_dir / "docker.sock"
        self.log = state_dir / "dockerd.log"
        self._record = state_dir / "host-state.json"
        self._lock = None
        self._process: subprocess.Popen | None = None
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def start(self, plugins: Path) -> None:
        """Start dockerd (waiting for the machine's lock first); `plugins` holds compose and buildx."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir.parent / f"{self.dir.name}.lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._recover()
        before = HostState.capture()
        if "docker0" in before.links:
            self._lock.close()
            raise RuntimeError("another Docker engine runs here (docker0 exists): stop it first; "
                               "the test's engine needs the default bridge and the iptables chains to itself")
        before.save(self._record)
        for name in ("data", "exec", "config"):
            (self.dir / name).mkdir(exist_ok=True)
        (self.dir / "config" / "cli-plugins").mkdir(exist_ok=True)
        for plugin in plugins.iterdir():
            shutil.copy2(plugin, self.dir / "config" / "cli-plugins" / plugin.name)
        self.env["DOCKER_CONFIG"] = str(self.dir / "config")
        daemon_json = self.dir / "daemon.json"
        # deprecated-key-path: dockerd 20.10 writes its trust key to /etc/docker/key.json otherwise.
        daemon_json.write_text(json.dumps({"deprecated-key-path": str(self.dir / "key.json")}))
        command = [
            "unshare", "--mount", "--propagation", "private",  # its mounts stay out of the host's table
            "dockerd", "--config-file", str(daemon_json), "--data-root", str(self.dir / "data"),
            "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.dir / "dockerd.pid"),
            "--host", f"unix://{self.socket}", "--storage-driver", "overlay2",
        ]
        with open(self.log, "w") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while subprocess.run(["docker", "version"], env=self.env, capture_output=True).returncode != 0:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not start: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self) -> None:
        """Stop dockerd (its containers, containerd and shims with it), restore the host, check it."""
        try:
            if self._process is not None:
                self._process.terminate()  # dockerd stops its containers, then its containerd
                try:
                    self._process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
                self._process = None
            self._kill_leftovers()
            if self._record.exists():
                before = HostState.load(self._record)
                before.restore()
                left = before.differences(HostState.capture())
                if left:
                    raise AssertionError("the host is not as it was before the engine started:\n" + "\n".join(left))
                self._record.unlink()
        finally:
            shutil.rmtree(self.dir / "data", ignore_errors=True)
            shutil.rmtree(self.dir / "exec", ignore_errors=True)
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _recover(self) -> None:
        """Undo what a killed run left: its engine still running, its host record not restored."""
        pidfile = self.dir / "dockerd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            if str(self.dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)  # stops its containers first, as in stop()
                deadline = time.monotonic() + STOP_TIMEOUT
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
        self._kill_leftovers()
        if self._record.exists():
            HostState.load(self._record).restore()
            self._record.unlink()
        shutil.rmtree(self.dir / "data", ignore_errors=True)
        shutil.rmtree(self.dir / "exec", ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """SIGKILL every process started with a path under the state directory: dockerd,
        containerd and containerd's shims, of a run that did not stop in time or was killed."""
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ProcessLookupError):
                    if str(self.dir).encode() in (entry / "cmdline").read_bytes():
                        os.kill(int(entry.name), signal.SIGKILL)
