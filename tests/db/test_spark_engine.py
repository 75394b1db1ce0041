"""The refresh on Apache Spark (services/spark_engine.py) builds the in-process engine's model.

ml-latest-small in a PostgreSQL of this module's own that also listens on TCP (JDBC connects
over TCP only; the run's shared server listens on a Unix socket), both engines on the same
data and settings, the models held equal: the same media, popularity, neighbour lists (ties at
the k-th neighbour aside) and weights within 1e-9. Spark runs in local mode (local[2]), one
session for the module: starting one takes 5 to 10 s.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.records import InteractionWeights
from ml_service import jobs
from services import neighbours, spark_engine
from services.refresh import NumpyEngine, RefreshFailed
from tests.conftest import ROOT, database_env, settings_for
from tests.model_equality import assert_same_model, assert_same_neighbours, by_row, published

# pyspark is required, not skipped without: make test installs requirements-spark.txt.
import pyspark.sql  # noqa: E402,F401


@pytest.fixture(scope="module")
def urls(movielens_tcp):
    return movielens_tcp


@pytest.fixture(scope="module")
def spark():
    # The command's own session (the JDBC jar, UTC), with fewer shuffle partitions for small data.
    session = spark_engine.start_session("local[2]", {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def numpy_model(urls):
    # The Spark engine keeps no pairs to tune on: both build with the settings given.
    return published(settings_for(urls, refresh_tune=False))


def test_spark_over_jdbc_publishes_the_numpy_model(urls, spark, numpy_model):
    """refresh --engine spark as the command runs it (jobs.spark_engine, jobs.run_refresh), the
    interactions read over JDBC in 3 ranges of id: the model published is numpy's."""
    settings = settings_for(urls)
    started = time.perf_counter()
    with jobs.spark_engine(settings, spark=spark) as engine:
        engine.source = spark_engine.JdbcSource(urls.engagement, partitions=3)
        model = published(settings, engine)
    print(f"spark refresh over JDBC: {time.perf_counter() - started:.1f} s")
    assert model.info.version == numpy_model.info.version + 1
    # EASE on the most liked media, damped cosine for the tail: both are compared
    assert len(model.media_ids) > 9_000 and len(model.neighbour_idx) > 800_000
    compared, worst = assert_same_model(numpy_model, model, k=settings.neighbours_k)
    print(f"{compared} of {len(model.neighbour_idx)} neighbour weights in both (the others tied at the k-th), "
          f"largest difference {worst:.2e}")


@pytest.fixture(scope="module")
def parquet_reads(urls, spark, tmp_path_factory):
    """ml-latest-small read by Spark from a Parquet snapshot of the interaction table (written by
    Spark from JDBC), and by the numpy engine from the database: (Spark's read, numpy's read)."""
    jdbc_url, properties = spark_engine.jdbc_options(urls.engagement)
    snapshot = str(tmp_path_factory.mktemp("snapshot") / "interaction.parquet")
    spark.read.jdbc(jdbc_url, "interaction", properties={**properties, "preferTimestampNTZ": "true"}).write.parquet(snapshot)
    weights = InteractionWeights.of(settings_for(urls))
    with jobs.offline_databases(settings_for(urls), "test") as databases:
        ids = CatalogRepository(databases.catalog).live_media().ids
        expected = NumpyEngine(EngagementRepository(databases.engagement, weights)).read(ids, False)
    return spark_engine.SparkEngine(spark, spark_engine.ParquetSource(snapshot), weights).read(ids, False), expected


def test_a_parquet_snapshot_reads_as_the_database(urls, parquet_reads):
    """--source parquet: the numpy engine's counts, per-media likes and positive users, and
    popularity; the rest of the build is the JDBC test's."""
    read, expected = parquet_reads
    assert (read.interactions_count, read.users_count, read.newest) == (
        expected.interactions_count, expected.users_count, expected.newest)
    interactions = expected.interactions
    media_count = len(read.likes)
    assert np.array_equal(read.likes, np.bincount(interactions.media[interactions.liked], minlength=media_count))
    assert np.array_equal(read.positives, np.bincount(interactions.media[interactions.positive], minlength=media_count))
    half_life = settings_for(urls).popularity_half_life_days
    np.testing.assert_allclose(read.popularity(half_life), expected.popularity(half_life), rtol=1e-6, atol=0)


def test_a_user_cap_builds_the_same_table(parquet_reads, monkeypatch):
    """NEIGHBOURS_USER_CAP: both engines count each user's 60 most recent liked and positive
    media (most of ml-latest-small's users have more), and build the same table. The EASE head's
    co-occurrence is counted in 7 tasks per core here (blocks of 142 or 143 rows on 2 cores)."""
    monkeypatch.setattr(spark_engine, "PAIR_TASKS_PER_CORE", 7)
    read, expected = parquet_reads
    interactions = expected.interactions
    per_user = np.bincount(interactions.user[interactions.positive])
    assert (per_user > 60).mean() > 0.5  # the cap binds for most users
    settings = dataclasses.replace(jobs.neighbour_settings(settings_for(None)), user_cap=60, ease_media=2_000)
    want = neighbours.assemble(expected.sums(settings), settings, False)
    got = neighbours.assemble(read.sums(settings), settings, False)
    uncapped = neighbours.assemble(expected.sums(dataclasses.replace(settings, user_cap=0)), settings, False)
    assert len(want[0]) != len(uncapped[0])  # the cap changes the table
    compared, worst = assert_same_neighbours(by_row(*want), by_row(*got), settings.k)
    print(f"user cap 60: {compared} of {len(got[0])} neighbour weights in both, largest difference {worst:.2e}")


def run_cli(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "ml_service", "refresh", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, **env},
    )


def test_command_line_failures_are_one_line(urls):
    env = database_env(urls)
    cases = [
        (("--engine", "spark", "--source", "parquet"), "--source parquet needs the snapshot's PATH"),
        (("--engine", "spark", "--source", "parquet", "/nonexistent/x.parquet"), "does not exist"),
        (("--master", "local[1]"), "are for --engine spark"),
        (("--conf", "spark.driver.memory=2g"), "are for --engine spark"),
        (("--engine", "spark", "--conf", "spark.driver.memory"), "--conf takes KEY=VALUE, not 'spark.driver.memory'"),
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


def test_without_pyspark_the_command_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # import pyspark.sql raises ImportError
    with pytest.raises(RefreshFailed, match=r"^pyspark is not installed: pip install -r requirements-spark.txt$"):
        spark_engine.start_session("local[1]")


def test_no_interactions_build_an_empty_table(spark, tmp_path):
    """An empty interaction table: no counts, zero popularity, no neighbours (as numpy)."""
    empty = str(tmp_path / "empty.parquet")
    spark.createDataFrame(
        [], "id long, user_id string, media_id string, type string, interaction_value double, timestamp timestamp_ntz"
    ).write.parquet(empty)
    ids = np.frombuffer(b"".join(uuid.UUID(int=n).bytes for n in (1, 2, 3)), dtype="V16")
    read = spark_engine.SparkEngine(spark, spark_engine.ParquetSource(empty), InteractionWeights()).read(ids, False)
    assert (read.interactions_count, read.users_count, read.newest) == (0, 0, None)
    assert np.array_equal(read.popularity(365.0), np.zeros(3, np.float32))
    settings = jobs.neighbour_settings(settings_for(None))
    assert all(len(part) == 0 for part in neighbours.assemble(read.sums(settings), settings, False))
