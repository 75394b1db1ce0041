"""A Spark standalone cluster on this machine, and the refresh submitted to it as docs/spark.md
shows (`make test-spark`'s tests/cluster and bench/refresh_engines.py's spark-cluster runs).

The master and the workers are started with the `spark-class` script the pyspark wheel ships,
each worker with its own cores and memory and an executor JVM of its own per application; the
refresh is `spark-submit ml_service/__main__.py refresh --engine spark` in client mode.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

from services import spark_engine

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 120


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


@dataclass(frozen=True)
class Cluster:
    master: str  # spark://127.0.0.1:PORT
    status: str  # the master's status as JSON (its web UI's /json/)
    daemons: tuple[int, ...]  # the master's and the workers' process ids
    work: Path  # the workers' directory: an executor's working directory is work/<application>/<executor>

    def application(self, name_part: str) -> dict:
        """The finished application whose name holds `name_part`, as the master's status gives it."""
        finished = requests.get(self.status, timeout=5).json()["completedapps"]
        return next(app for app in reversed(finished) if name_part in app["name"])


@contextlib.contextmanager
def standalone_cluster(workers: int, logs: Path, cores: int = 1, memory: str = "2g") -> Iterator[Cluster]:
    """A running master with `workers` workers registered (each `cores` cores and `memory` for
    its executors), their logs in `logs`; stopped at the end."""
    logs.mkdir(parents=True, exist_ok=True)
    home = spark_home()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_LOG_DIR": str(logs), "SPARK_WORKER_DIR": str(logs / "work")}
    spark_class = str(home / "bin" / "spark-class")
    port, ui = free_port(), free_port()
    master = f"spark://127.0.0.1:{port}"
    commands = [[spark_class, "org.apache.spark.deploy.master.Master",
                 "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)]]
    commands += [[spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1",
                  "--cores", str(cores), "--memory", memory, "--webui-port", str(free_port())] for _ in range(workers)]
    processes: list[subprocess.Popen] = []
    try:
        for n, command in enumerate(commands):
            with (logs / f"{'master' if n == 0 else f'worker-{n}'}.log").open("w") as log:
                processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        status = f"http://127.0.0.1:{ui}/json/"
        deadline = time.monotonic() + STARTUP_SECONDS
        while alive_workers(status) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Spark cluster did not come up in {STARTUP_SECONDS} s: logs in {logs}")
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a Spark daemon exited: logs in {logs}")
            time.sleep(0.5)
        yield Cluster(master, status, tuple(p.pid for p in processes), logs / "work")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def alive_workers(status: str) -> int:
    try:
        return requests.get(status, timeout=2).json().get("aliveworkers", 0)
    except (requests.RequestException, ValueError):
        return 0


def submission(master: str, refresh_args: list[str], database_env: dict[str, str], driver_memory: str = "2g",
               executor_memory: str = "1g", executor_cores: int = 1, conf: dict[str, str] | None = None,
               environment_archive: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The command `spark-submit ... ml_service/__main__.py refresh --engine spark REFRESH_ARGS`
    and its environment, as docs/spark.md shows: this environment without its *_DB_URL, then
    `database_env`'s; the driver runs this interpreter, with the project on its path, and so do
    the executors, or with `environment_archive` (a venv-pack archive of
    requirements-spark-executors.txt) the archive's Python, which Spark unpacks beside each
    executor (spark.archives)."""
    command = [str(spark_home() / "bin" / "spark-submit"), "--master", master, "--deploy-mode", "client",
               "--jars", spark_engine.JDBC_JAR, "--driver-memory", driver_memory,
               "--executor-cores", str(executor_cores), "--executor-memory", executor_memory]
    if environment_archive is not None:
        command += ["--archives", f"{environment_archive}#environment"]
    for key, value in {"spark.ui.enabled": "false", **(conf or {})}.items():
        command += ["--conf", f"{key}={value}"]
    command += [str(ROOT / "ml_service" / "__main__.py"), "refresh", "--engine", "spark", *refresh_args]
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}, **database_env,
           "PYTHONPATH": str(ROOT), "PYSPARK_DRIVER_PYTHON": sys.executable,
           "PYSPARK_PYTHON": sys.executable if environment_archive is None else "./environment/bin/python",
           "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1"}
    return command, env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
