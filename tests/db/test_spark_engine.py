"""The refresh on Apache Spark (services/spark_engine.py) builds the in-process engine's model.

ml-latest-small in a PostgreSQL of this module's own that also listens on TCP (JDBC connects
over TCP only; the run's shared server listens on a Unix socket), both engines on the same
data and settings, the models held equal: the same media, popularity, neighbour lists (ties at
the k-th neighbour aside) and weights within 1e-9. Spark runs in local mode (local[2]), one
session for the module: starting one takes 5 to 10 s.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.model_repository import ModelRepository
from database.records import InteractionWeights
from database.schema import apply_schema
from ml_service import jobs
from services import neighbours, spark_engine
from services.refresh import NumpyEngine, RefreshFailed
from tests.conftest import MOVIELENS_DIR, ROOT, Server, database_env, free_port, settings_for

# pyspark is required, not skipped without: make test installs requirements-spark.txt.
from pyspark.sql import SparkSession  # noqa: E402


@pytest.fixture(scope="module")
def tcp_server(tmp_path_factory):
    """A PostgreSQL of this module's own, listening on 127.0.0.1 (restarted by its bundled pg_ctl)."""
    from database.embedded import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("pg-tcp") / "data", cleanup_mode="delete")
    from pgserver._commands import pg_ctl  # after start_embedded: it gives pgserver its runtime directory

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET fsync = off")
    port = free_port()
    pg_ctl(["-w", "restart", "-m", "fast", "-o", f"-h 127.0.0.1 -p {port}"], pgdata=server.pgdata,
           user=server.system_user, timeout=120)
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    yield Server(admin, lambda name: psycopg.conninfo.make_conninfo(admin, dbname=name))
    server.cleanup()


@pytest.fixture(scope="module")
def urls(tcp_server):
    urls = tcp_server.create_urls("spark")
    apply_schema(urls, sources=True)
    from services.movielens_import import import_movielens

    import_movielens(MOVIELENS_DIR, urls, progress=False)
    return urls


@pytest.fixture(scope="module")
def spark():
    session = (
        SparkSession.builder.master("local[2]")
        .appName("ml-service tests")
        .config("spark.jars", spark_engine.JDBC_JAR)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def build(urls, engine_for, **overrides):
    """(media ids, counts, popularity, table) as the refresh builds them with the engine
    `engine_for(engagement repository, settings)`, without publishing."""
    settings = settings_for(urls, **overrides)
    with jobs.offline_databases(settings, "test") as databases:
        live = CatalogRepository(databases.catalog).live_media()
        engine = engine_for(EngagementRepository(databases.engagement, InteractionWeights.of(settings)), settings)
        read = engine.read(live.ids, False)
        popularity = read.popularity(settings.popularity_half_life_days)
        nb_settings = jobs.neighbour_settings(settings)
        table = neighbours.assemble(read.sums(nb_settings), nb_settings, False)
    counts = (read.interactions_count, read.users_count, read.newest)
    return live.ids, counts, popularity, table


def by_row(table):
    rows: dict[int, dict[int, float]] = {}
    for m, j, w in zip(*(part.tolist() for part in table)):
        rows.setdefault(m, {})[j] = w
    return rows


def assert_same_model(numpy_model, spark_model, k):
    ids, counts, popularity, table = numpy_model
    spark_ids, spark_counts, spark_popularity, spark_table = spark_model
    assert np.array_equal(ids, spark_ids)
    assert counts == spark_counts
    np.testing.assert_allclose(spark_popularity, popularity, rtol=1e-6, atol=0)
    expected, got = by_row(table), by_row(spark_table)
    assert expected.keys() == got.keys()
    compared = 0
    worst = 0.0
    for media, neighbours_of in expected.items():
        spark_neighbours = got[media]
        assert len(spark_neighbours) == len(neighbours_of), media
        if len(neighbours_of) < k:  # every neighbour with a weight: no tie left any out
            assert spark_neighbours.keys() == neighbours_of.keys(), media
            clear = neighbours_of.keys()
        else:  # ties at the k-th weight may keep either: only those clearly above it
            kth = min(abs(w) for w in neighbours_of.values())
            clear = {j for j, w in neighbours_of.items() if abs(w) > kth + 1e-9}
            kth_spark = min(abs(w) for w in spark_neighbours.values())
            assert abs(kth - kth_spark) <= 1e-9, media
        for j in clear:
            assert j in spark_neighbours, (media, j)
        for j in neighbours_of.keys() - spark_neighbours.keys():  # another of the tied at the k-th weight
            assert abs(abs(neighbours_of[j]) - kth) <= 1e-9, (media, j)
        for j in neighbours_of.keys() & spark_neighbours.keys():
            difference = abs(neighbours_of[j] - spark_neighbours[j])
            worst = max(worst, difference)
            compared += 1
    assert worst <= 1e-9, worst
    return compared, worst


@pytest.fixture(scope="module")
def numpy_model(urls):
    return build(urls, lambda engagement, settings: NumpyEngine(engagement))


def test_spark_over_jdbc_builds_the_numpy_model(urls, spark, numpy_model):
    started = time.perf_counter()
    model = build(
        urls,
        lambda engagement, settings: spark_engine.SparkEngine(
            spark, spark_engine.JdbcSource(urls.engagement, partitions=3), InteractionWeights.of(settings)
        ),
    )
    print(f"spark build over JDBC: {time.perf_counter() - started:.1f} s")
    # EASE on the most liked media and damped cosine for the tail, both present
    assert len(np.unique(numpy_model[3][0])) > 8_000
    compared, worst = assert_same_model(numpy_model, model, k=settings_for(urls).neighbours_k)
    print(f"{compared} of {len(model[3][0])} neighbour weights in both (the others tied at the k-th), "
          f"largest difference {worst:.2e}")


def test_spark_from_a_parquet_snapshot_builds_the_numpy_model(urls, spark, numpy_model, tmp_path):
    jdbc_url, properties = spark_engine.jdbc_options(urls.engagement)
    snapshot = str(tmp_path / "interaction.parquet")
    spark.read.jdbc(jdbc_url, "interaction", properties={**properties, "preferTimestampNTZ": "true"}).write.parquet(snapshot)
    model = build(
        urls,
        lambda engagement, settings: spark_engine.SparkEngine(
            spark, spark_engine.ParquetSource(snapshot), InteractionWeights.of(settings)
        ),
    )
    assert_same_model(numpy_model, model, k=settings_for(urls).neighbours_k)


def test_the_spark_refresh_publishes_through_the_guarded_path(urls, spark, tcp_server, numpy_model):
    """jobs.run_refresh with the Spark engine: the model published, its counts those of numpy's."""
    prefix = "spark_publish"
    publish_urls = tcp_server.create_urls(prefix, template_prefix="spark")
    try:
        settings = settings_for(publish_urls)
        with jobs.spark_engine(settings, spark=spark) as engine:
            version = jobs.run_refresh(settings, engine=engine)
        with jobs.offline_databases(settings, "test") as databases:
            model = ModelRepository(databases.model).load()
            builds, serving = ModelRepository(databases.model).builds()
        assert serving == version
    finally:
        tcp_server.drop_urls(prefix)
    interactions, users, newest = numpy_model[1]
    assert (builds[0].interactions_count, builds[0].users_count) == (interactions, users) == (builds[0].interactions_count, 610)
    assert np.array_equal(model.media_ids, numpy_model[0])
    assert len(model.neighbour_idx) == len(numpy_model[3][1])


def run_cli(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "ml_service", "refresh", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, **env},
    )


def test_command_line_failures_are_one_line(urls):
    env = database_env(urls)
    cases = [
        (("--source", "parquet"), "--source parquet needs the snapshot's PATH"),
        (("--engine", "spark", "--source", "parquet", "/nonexistent/x.parquet"), "does not exist"),
        (("--master", "local[1]"), "are for --engine spark"),
    ]
    for args, message in cases:
        done = run_cli(*args, **env)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    socket_url = "postgresql://postgres@/engagement?host=/tmp"
    done = run_cli("--engine", "spark", **{**env, "ENGAGEMENT_DB_URL": socket_url})
    assert done.returncode == 1, done.stderr
    assert "needs a TCP host" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_jdbc_options_from_a_libpq_url():
    url, properties = spark_engine.jdbc_options(
        "postgresql://ml:s%40cret@db.example:6543/engagement_db?sslmode=require", environ={}
    )
    assert url == "jdbc:postgresql://db.example:6543/engagement_db"
    assert properties == {"driver": "org.postgresql.Driver", "user": "ml", "password": "s@cret", "sslmode": "require"}
    url, properties = spark_engine.jdbc_options(
        "postgresql:///engagement_db", environ={"PGHOST": "10.0.0.5", "PGUSER": "svc", "PGPASSWORD": "pw"}
    )
    assert url == "jdbc:postgresql://10.0.0.5:5432/engagement_db"
    assert properties["user"] == "svc" and properties["password"] == "pw"
    with pytest.raises(RefreshFailed, match="Unix socket"):
        spark_engine.jdbc_options("postgresql://u@/db?host=/run/postgresql", environ={})
