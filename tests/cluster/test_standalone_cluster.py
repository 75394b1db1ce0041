"""The Spark refresh on a real cluster (`make test-spark`): a Spark standalone master and two
workers on this machine (services/spark_cluster.py), started with the `spark-class` script the
pyspark wheel ships, each worker with one core and an executor JVM of its own. The refresh is
submitted as docs/spark.md says, with `spark-submit` in client mode, and reads PostgreSQL over
TCP (JDBC), then a Parquet snapshot of the interaction table; each model it publishes is the
numpy engine's on the same data (ml-latest-small).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from services import spark_cluster, spark_engine
from tests.conftest import ROOT, database_env, settings_for
from tests.model_equality import assert_same_model, published

import pyspark  # noqa: E402,F401  (required: make test-spark installs requirements-spark.txt)

WORKERS = 2


@pytest.fixture(scope="module")
def urls(movielens_tcp):
    return movielens_tcp


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with spark_cluster.standalone_cluster(WORKERS, tmp_path_factory.mktemp("spark-cluster")) as running:
        yield running


def submit(master: str, urls, *args: str, environment_archive: Path | None = None) -> subprocess.CompletedProcess:
    command, env = spark_cluster.submission(master, list(args), database_env(urls),
                                            conf={"spark.sql.shuffle.partitions": "8"},
                                            environment_archive=environment_archive)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def packed_environment(tmp_path_factory) -> Path:
    """requirements-spark-executors.txt in a venv of its own, packed with venv-pack, as
    docs/spark.md says (uv installs it, from its cache, instead of pip)."""
    where = tmp_path_factory.mktemp("executors")
    bin_dir = Path(sys.executable).parent
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where / "env")], check=True)
    subprocess.run([str(bin_dir / "uv"), "pip", "install", "--quiet", "--native-tls", "--python",
                    str(where / "env" / "bin" / "python"), "-r", str(ROOT / "requirements-spark-executors.txt")],
                   check=True, cwd=ROOT)
    archive = where / "environment.tar.gz"
    subprocess.run([str(bin_dir / "venv-pack"), "-p", str(where / "env"), "-o", str(archive), "-q"], check=True)
    return archive


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


@pytest.mark.parametrize("source", ["jdbc", "parquet", "jdbc, packed environment"])
def test_the_cluster_publishes_the_numpy_model(cluster, urls, numpy_model, snapshot, packed_environment, source):
    """The executors run this interpreter, or (packed environment) the Python of a venv-pack
    archive of requirements-spark-executors.txt that spark.archives unpacks beside each of them:
    without this project or pyspark, so the tasks' code reaches them by value."""
    started = time.perf_counter()
    done = submit(cluster.master, urls, *(["--source", "parquet", snapshot] if source == "parquet" else []),
                  environment_archive=packed_environment if "packed" in source else None)
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
    app = cluster.application("ml-service refresh")
    assert app["cores"] == WORKERS and app["state"] == "FINISHED", app
    unpacked = sorted((cluster.work / app["id"]).glob("*/environment/bin/python"))
    assert len(unpacked) == (WORKERS if "packed" in source else 0), unpacked
    print(f"standalone cluster ({WORKERS} workers), {source}: published in {seconds:.0f} s; {compared} neighbour "
          f"weights in both, largest difference {worst:.2e}")
