"""The Spark refresh on a real cluster (`make test-spark`): a Spark standalone master and two
workers on this machine, started with the `spark-class` script the pyspark wheel ships, each
worker with one core and an executor JVM of its own. The refresh is submitted as
docs/spark.md says, with `spark-submit` in client mode, and reads PostgreSQL over TCP (JDBC),
then a Parquet snapshot of the interaction table; each model it publishes is the numpy engine's
on the same data (ml-latest-small).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests

from database.schema import apply_schema
from services import spark_engine
from tests.conftest import MOVIELENS_DIR, ROOT, database_env, free_port, settings_for
from tests.model_equality import assert_same_model, published

import pyspark  # noqa: E402  (required: make test-spark installs requirements-spark.txt)

SPARK_HOME = Path(pyspark.__file__).parent
WORKERS = 2


@pytest.fixture(scope="module")
def urls(tcp_server):
    urls = tcp_server.create_urls("cluster")
    apply_schema(urls, sources=True)
    from services.movielens_import import import_movielens

    import_movielens(MOVIELENS_DIR, urls, progress=False)
    return urls


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """spark://127.0.0.1:PORT of a running master with WORKERS workers registered, and its web UI's URL."""
    logs = tmp_path_factory.mktemp("spark-cluster")
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_LOG_DIR": str(logs), "SPARK_WORKER_DIR": str(logs / "work")}
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port, ui = free_port(), free_port()
    master = f"spark://127.0.0.1:{port}"
    commands = [[spark_class, "org.apache.spark.deploy.master.Master",
                 "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)]]
    commands += [[spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1",
                  "--cores", "1", "--memory", "2g", "--webui-port", str(free_port())] for _ in range(WORKERS)]
    processes = []
    try:
        for n, command in enumerate(commands):
            with (logs / f"{'master' if n == 0 else f'worker-{n}'}.log").open("w") as log:
                processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        status = f"http://127.0.0.1:{ui}/json/"
        deadline = time.monotonic() + 120
        while alive_workers(status) < WORKERS:
            assert time.monotonic() < deadline, f"the cluster did not come up: logs in {logs}"
            assert all(p.poll() is None for p in processes), f"a Spark daemon exited: logs in {logs}"
            time.sleep(0.5)
        yield master, status
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


def submit(master: str, urls, *args: str) -> subprocess.CompletedProcess:
    """`spark-submit ... ml_service/__main__.py refresh --engine spark ARGS`, as docs/spark.md shows."""
    command = [
        str(SPARK_HOME / "bin" / "spark-submit"), "--master", master, "--deploy-mode", "client",
        "--jars", spark_engine.JDBC_JAR, "--driver-memory", "2g",
        "--executor-cores", "1", "--executor-memory", "1g",
        "--conf", "spark.sql.shuffle.partitions=8", "--conf", "spark.ui.enabled=false",
        str(ROOT / "ml_service" / "__main__.py"), "refresh", "--engine", "spark", *args,
    ]
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}, **database_env(urls),
           "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def application(status: str, name_part: str) -> dict:
    """The finished application of the master whose name holds `name_part`, as its status page gives it."""
    finished = requests.get(status, timeout=5).json()["completedapps"]
    return next(app for app in reversed(finished) if name_part in app["name"])


@pytest.fixture(scope="module")
def numpy_model(urls):
    return published(settings_for(urls, refresh_tune=False))


@pytest.fixture(scope="module")
def snapshot(urls, tmp_path_factory):
    """A Parquet snapshot of the interaction table, written by Spark (local mode) from JDBC."""
    path = str(tmp_path_factory.mktemp("snapshot") / "interaction.parquet")
    spark = spark_engine.start_session("local[1]", {"spark.ui.enabled": "false"})
    try:
        jdbc_url, properties = spark_engine.jdbc_options(urls.engagement)
        spark.read.jdbc(jdbc_url, "interaction", properties={**properties, "preferTimestampNTZ": "true"}).write.parquet(path)
    finally:
        spark.stop()
    return path


@pytest.mark.parametrize("source", ["jdbc", "parquet"])
def test_the_cluster_publishes_the_numpy_model(cluster, urls, numpy_model, snapshot, source):
    master, status = cluster
    started = time.perf_counter()
    done = submit(master, urls, *(["--source", "parquet", snapshot] if source == "parquet" else []))
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-4000:]
    # spark-submit passes the command's stderr (its log) on to its stdout: the answer is the last line.
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("published model version "), done.stdout[-4000:]
    version = int(last.split()[-1])
    with psycopg.connect(urls.model) as conn:
        serving = conn.execute("SELECT version FROM ml.serving").fetchone()[0]
    assert serving == version
    from database.model_repository import ModelRepository
    from ml_service import jobs

    with jobs.offline_databases(settings_for(urls), "test") as databases:
        model = ModelRepository(databases.model).load()
    compared, worst = assert_same_model(numpy_model, model, k=settings_for(urls).neighbours_k)
    # It ran on the cluster: both workers' cores, an executor on each.
    app = application(status, "ml-service refresh")
    assert app["cores"] == WORKERS and app["state"] == "FINISHED", app
    print(f"standalone cluster ({WORKERS} workers), {source}: published in {seconds:.0f} s; {compared} neighbour "
          f"weights in both, largest difference {worst:.2e}")
