"""Experiments on real PostgreSQL: what a variant changes, the model a variant serves, impressions
and their partitions, and the experiment commands' one-line failures."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from database.experiment_repository import ExperimentExists, ExperimentRepository, NoSuchExperiment
from database.pools import open_databases
from ml_service.app import build_runtime
from ml_service.jobs import publish, run_refresh, start_experiment, stop_experiment
from services.experiments.assignment import ExperimentError, assign, define
from tests.conftest import ROOT, database_env, settings_for
from tests.db.helpers import add_interactions, add_media
from tests.resilience import dataset


@pytest.fixture
def urls(db_urls):
    dataset.fill(db_urls)
    assert run_refresh(settings_for(db_urls)) == 1
    return db_urls


@pytest.fixture
def runtime_for(urls):
    runtimes = []

    def start(**overrides):
        settings = settings_for(urls, **overrides)
        runtime = build_runtime(settings, open_databases(settings))
        runtime.models.current()
        runtimes.append(runtime)
        return runtime

    yield start
    for runtime in runtimes:
        runtime.close()


def users_in(experiment, variant: str, count: int) -> list[uuid.UUID]:
    """`count` user ids (the dataset's users first) that `experiment` puts in `variant`."""
    found, n = [], 0
    while len(found) < count:
        user = dataset.USER if n == 0 else uuid.UUID(int=0x5000 + n - 1) if n <= 6 else uuid.UUID(int=0x9000 + n)
        if assign(experiment, user).name == variant:
            found.append(user)
        n += 1
    return found


def cli(urls, *args):
    return subprocess.run([sys.executable, "-m", "ml_service", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **database_env(urls)}, timeout=120)


def test_a_variant_changes_what_its_users_get_and_nothing_else(urls, runtime_for):
    runtime = runtime_for()
    users = [dataset.USER, *(uuid.UUID(int=0x5000 + i) for i in range(6)), *(uuid.uuid4() for _ in range(40))]
    before = runtime.recommender.recommend_many(users, limit=5)
    assert all(page.experiment is None for page in before.values())

    # A salt that puts the dataset's user (a comedy fan who watched DRAMA_1) on the popular variant.
    salt = next(f"s{n}" for n in range(100) if assign(define("p", ["control", "popular"], salt=f"s{n}"),
                                                      dataset.USER).name == "popular")
    experiment = start_experiment(settings_for(urls), "popular-baseline", ["control", "popular:popular_only=true"],
                                  salt=salt)
    runtime.models.reload()
    after = runtime.recommender.recommend_many(users, limit=5)
    assert {assign(experiment, user).name for user in users} == {"control", "popular"}
    for user in users:
        variant = assign(experiment, user).name
        assert (after[user].experiment.name, after[user].experiment.variant) == ("popular-baseline", variant)
        if variant == "control":
            assert after[user].items == before[user].items  # nothing else changes
        else:
            assert all(item.source == "popular" and item.score == 0 for item in after[user].items)
    # Personalised, their row led with DRAMA_2 and the comedies; by popularity alone HORROR leads.
    assert before[dataset.USER].items[0].media.id != dataset.HORROR
    assert after[dataset.USER].items[0].media.id == dataset.HORROR
    assert dataset.DRAMA_1 not in {item.media.id for item in after[dataset.USER].items}  # seen: still excluded

    stop_experiment(settings_for(urls), "popular-baseline")
    runtime.models.reload()
    assert runtime.recommender.recommend_many(users, limit=5) == before


def test_a_model_variant_serves_its_kept_version_and_the_others_the_serving_one(urls, runtime_for):
    comedy = uuid.UUID("00000000-0000-4000-8000-000000000199")
    add_media(urls, comedy, title="Comedy new", genres=["Comedy"])
    add_interactions(urls, [(uuid.UUID(int=0x8000 + i), comedy, "LIKE", None, 20) for i in range(20)])
    assert run_refresh(settings_for(urls), publish=False) == 2  # kept, not serving
    runtime = runtime_for()
    assert runtime.models.current().info.version == 1

    experiment = start_experiment(settings_for(urls), "model-2", ["control", "new:model=2"], salt="s")
    runtime.models.reload()
    new_users = users_in(experiment, "new", 3)
    control_users = users_in(experiment, "control", 3)
    pages = runtime.recommender.recommend_many(new_users + control_users, limit=6)
    for user in new_users:
        assert pages[user].model_version == 2 and pages[user].variant_model
    for user in control_users:
        assert pages[user].model_version == 1 and not pages[user].variant_model
    from ml_service.schemas import batch_json

    assert batch_json(pages)["model_version"] == 1  # the batch's serving model
    similar = runtime.recommender.similar(dataset.DRAMA_1, user_id=new_users[0])
    assert similar.model_version == 2 and similar.experiment.variant == "new"

    # A kept model an experiment serves is not pruned; publish serves it to everyone.
    assert publish(settings_for(urls), 2) == (1, 2)
    with pytest.raises(Exception, match="already serving"):
        publish(settings_for(urls), 2)


def test_one_experiment_at_a_time_and_definitions_are_checked(urls):
    settings = settings_for(urls)
    start_experiment(settings, "first", ["control", "b:CONTENT_WEIGHT=0.5"])
    with pytest.raises(ExperimentExists, match="'first' is running"):
        start_experiment(settings, "second", ["control", "b:diversity=0.3"])
    stop_experiment(settings, "first")
    with pytest.raises(ExperimentExists, match="named 'first' exists"):
        start_experiment(settings, "first", ["control", "b:diversity=0.3"])
    with pytest.raises(NoSuchExperiment, match="not running"):
        stop_experiment(settings, "first")
    with pytest.raises(ExperimentError, match="model version 7 is not kept"):
        start_experiment(settings, "third", ["control", "b:model=7"])


def test_the_experiment_commands_fail_in_one_line(urls):
    started = cli(urls, "experiments", "start", "ab", "--variant", "control", "--variant", "blend:CONTENT_WEIGHT=0.5",
                  "--split", "90,10")
    assert started.returncode == 0, started.stderr
    assert "started experiment ab (control 90%, blend 10%)" in started.stdout
    listed = cli(urls, "experiments", "list")
    assert listed.returncode == 0 and "ab" in listed.stdout and "content_weight=0.5" in listed.stdout
    for args, code, message in [
        (["experiments", "start", "cd", "--variant", "control", "--variant", "x:diversity=0.2"], 1,
         "experiment 'ab' is running"),
        (["experiments", "stop", "nope"], 1, "no experiment 'nope'"),
        (["experiments", "report", "nope"], 1, "no experiment 'nope'"),
        (["experiments", "start", "cd", "--variant", "control", "--variant", "x:colour=red"], 2,
         "'colour=red' is not KEY=VALUE"),
        (["experiments", "start", "cd", "--variant", "control", "--variant", "x:diversity=2"], 2,
         "must be between 0 and 1"),
        (["experiments", "start", "cd", "--variant", "control", "--split", "50,50"], 2, "at least two variants"),
        (["experiments", "start", "cd", "--variant", "a", "--variant", "b", "--split", "x"], 2, "comma-separated"),
        (["publish", "9"], 1, "version 9 is not kept"),
    ]:
        if code == 2 and args[1] == "start":
            cli(urls, "experiments", "stop", "ab")
        result = cli(urls, *args)
        assert result.returncode == code, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_impressions_are_written_in_daily_partitions_and_old_ones_dropped(urls, runtime_for):
    runtime = runtime_for()
    start_experiment(settings_for(urls), "imp", ["control", "b:diversity=0.5"], salt="x")
    runtime.models.reload()
    runtime.impressions.close()  # no background writes: this test flushes itself
    users = [uuid.uuid4() for _ in range(20)]
    pages = runtime.recommender.recommend_many(users, limit=3)
    runtime.recommender.recommend(dataset.USER, limit=2, because=dataset.DRAMA_1)
    runtime.recommender.similar(dataset.DRAMA_1, limit=2, user_id=dataset.USER)
    runtime.recommender.similar(dataset.DRAMA_1, limit=2)  # no user: nothing to attribute, not recorded
    assert runtime.impressions.pending == 22
    with psycopg.connect(urls.model, autocommit=True) as conn:  # a partition past the retention
        conn.execute("CREATE TABLE ml.impressions_20200101 PARTITION OF ml.impressions"
                     " FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-01-02 00:00+00')")
    assert runtime.impressions.flush() == 22
    with psycopg.connect(urls.model) as conn:
        rows = conn.execute("SELECT request_id, user_id, experiment, variant, model_version, row_kind, media_ids,"
                            " tableoid::regclass::text FROM ml.impressions").fetchall()
        partitions = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'ml.impressions'::regclass").fetchall()}
    today = datetime.now(timezone.utc).date()
    assert partitions == {"impressions_default", f"impressions_{today:%Y%m%d}",
                          f"impressions_{today + timedelta(days=1):%Y%m%d}"}
    assert {r[7] for r in rows} == {f"ml.impressions_{today:%Y%m%d}"}
    kinds = [r[5] for r in rows]
    assert kinds.count("recommendations") == 20 and kinds.count("because") == 1 and kinds.count("similar") == 1
    batch = [r for r in rows if r[5] == "recommendations"]
    assert len({r[0] for r in batch}) == 1  # one request id for the batch
    for r in batch:
        page = pages[r[1]]
        assert (r[2], r[3], r[4]) == ("imp", page.experiment.variant, 1)
        assert r[6] == [item.media.id for item in page.items]


def test_reading_the_experiments_of_an_old_schema_is_no_experiment(urls):
    with psycopg.connect(urls.model, autocommit=True) as conn:
        conn.execute("DROP TABLE ml.experiments")
    databases = open_databases(settings_for(urls))
    try:
        assert ExperimentRepository(databases.model).running() is None
    finally:
        databases.close()


def test_an_experiment_and_its_impressions_add_no_query_to_a_request(urls):
    from tests.db.test_query_count import STATEMENTS, CountingConnection

    assert run_refresh(settings_for(urls), publish=False) == 2
    start_experiment(settings_for(urls), "counted", ["control", "b:model=2,CONTENT_WEIGHT=0.6", "c:popular_only=true"])
    settings = settings_for(urls)
    runtime = build_runtime(settings, open_databases(settings, connection_class=CountingConnection))
    try:
        assert runtime.models.experiment.name == "counted" and runtime.models.variant_model(2) is not None
        users = [dataset.USER, *(uuid.uuid4() for _ in range(49))]
        for batch in ([dataset.USER], users):
            STATEMENTS.clear()
            pages = runtime.recommender.recommend_many(batch, limit=3)
            assert sum(STATEMENTS.values()) == 3 and len(STATEMENTS) == 3, STATEMENTS
        assert {page.experiment.variant for page in pages.values()} == {"control", "b", "c"}
        assert {page.model_version for page in pages.values()} == {1, 2}  # two models, one catalog query
        assert runtime.impressions.pending + runtime.impressions.written == 51
    finally:
        runtime.close()
