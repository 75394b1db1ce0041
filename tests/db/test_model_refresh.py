"""The refresh job and the model tables: what it computes, what it refuses, history and rollback."""

import dataclasses
import os
import time

import numpy as np
import psycopg
import pytest

from database import model_repository
from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.model_repository import REFRESH_LOCK_KEY, ModelRepository, NoSuchModel, RefreshInProgress
from database.pools import open_databases
from database.schema import apply_schema
from ml_service import jobs
from services.refresh import Guard, ModelRejected, RefreshFailed, refresh
from settings import Settings
from tests.conftest import settings_for
from tests.db.helpers import add_interactions, add_media, new_id


@pytest.fixture
def databases(db_urls):
    databases = open_databases(settings_for(db_urls), statement_timeout_ms=0)
    yield databases
    databases.close()


def neighbour_settings(**changes):
    """The production defaults (Settings), with `changes`."""
    return dataclasses.replace(jobs.neighbour_settings(Settings.from_env(URLS)), **changes)


URLS = {"USER_DB_URL": "postgresql:///x", "CATALOG_DB_URL": "postgresql:///x", "ENGAGEMENT_DB_URL": "postgresql:///x"}


def run_refresh(databases, half_life_days=365.0, guard=Guard(), keep=3, **neighbours):
    return refresh(
        CatalogRepository(databases.catalog),
        EngagementRepository(databases.engagement),
        ModelRepository(databases.model),
        neighbour_settings=neighbour_settings(**neighbours),
        half_life_days=half_life_days,
        progress=False,
        guard=guard,
        keep=keep,
    )


def index_of(model, media_id):
    return int(np.searchsorted(model.media_ids, np.frombuffer(media_id.bytes, dtype="V16"))[0])


def neighbours_of(model, media_id):
    i = index_of(model, media_id)
    lo, hi = model.neighbour_indptr[i], model.neighbour_indptr[i + 1]
    return {
        bytes(model.media_ids[j]): float(s)
        for j, s in zip(model.neighbour_idx[lo:hi], model.neighbour_similarity[lo:hi])
    }


def test_neighbours_are_cosine_similarities_of_positive_user_sets(db_urls, databases):
    m = [new_id() for _ in range(4)]
    u = [new_id() for _ in range(3)]
    for media in m:
        add_media(db_urls, media, genres=["Drama"])
    add_interactions(
        db_urls,
        [
            (u[0], m[0], "WATCH", 4.0), (u[0], m[1], "LIKE", 5.0),
            (u[1], m[0], "WATCH", 3.0), (u[1], m[1], "WATCH", 2.0), (u[1], m[2], "WATCH", 5.0),
            (u[2], m[2], "WATCH", 5.0), (u[2], m[0], "WATCH", 1.0), (u[2], m[0], "DISLIKE", 1.0),
        ],
    )
    assert run_refresh(databases, ease_media=0, user_damping=0.0, shrinkage=0.0) == 1
    model = ModelRepository(databases.model).load()
    # users(m0) = {u0, u1} (u2 disliked it), users(m1) = {u0, u1}, users(m2) = {u1, u2}
    assert neighbours_of(model, m[0]) == pytest.approx({m[1].bytes: 1.0, m[2].bytes: 0.5})
    assert neighbours_of(model, m[2]) == pytest.approx({m[0].bytes: 0.5, m[1].bytes: 0.5})
    assert neighbours_of(model, m[3]) == {}
    assert model.info.interactions_count == 8 and model.info.users_count == 3 and model.info.media_count == 4
    assert model.genre_names == ("Drama",) and len(model.media_genres[0]) == 4


def test_neighbours_keep_the_top_k(db_urls, databases):
    m = [new_id() for _ in range(6)]
    for media in m:
        add_media(db_urls, media)
    users = [new_id() for _ in range(6)]
    # m0 shares users with m1..m5, with m5 the most.
    rows = [(users[j], m[0], "WATCH", 4.0) for j in range(6)]
    rows += [(users[j], m[i], "WATCH", 4.0) for i in range(1, 6) for j in range(i)]
    add_interactions(db_urls, rows)
    run_refresh(databases, k=2, ease_media=0)
    model = ModelRepository(databases.model).load()
    assert set(neighbours_of(model, m[0])) == {m[5].bytes, m[4].bytes}


def test_by_default_neighbours_are_the_ease_weights_largest_in_magnitude(db_urls, databases):
    m = [new_id() for _ in range(5)]
    users = [new_id() for _ in range(8)]
    for media in m:
        add_media(db_urls, media)
    liked = [(0, 1), (0, 2), (1, 2), (2, 3), (3, 0), (3, 1), (4, 1), (4, 2), (4, 3), (5, 0), (6, 4), (7, 0), (7, 4)]
    watched = [(5, 1), (6, 2), (7, 3), (1, 0)]  # positive, but not liked: EASE learns from LIKEs only
    add_interactions(db_urls, [(users[u], m[i], "LIKE", 4.0) for u, i in liked]
                     + [(users[u], m[i], "WATCH", 4.0) for u, i in watched])
    run_refresh(databases, k=2)
    model = ModelRepository(databases.model).load()
    # EASE's closed form on the binary user x media matrix of likes, in the model's (sorted id) order
    order = [index_of(model, media) for media in m]
    x = np.zeros((8, 5))
    for u, i in liked:
        x[u, order[i]] = 1.0
    inverse = np.linalg.inv(x.T @ x + neighbour_settings().ease_lambda * np.eye(5))
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    for i, media in enumerate(m):
        row = weights[order[i]]
        expected = {bytes(model.media_ids[j]): row[j] for j in np.argsort(-np.abs(row))[:2] if row[j] != 0}
        assert neighbours_of(model, media) == pytest.approx(expected, rel=1e-5), i


def test_popularity_decays_with_age_from_the_newest_interaction(db_urls, databases):
    old, new, disliked = new_id(), new_id(), new_id()
    for media in (old, new, disliked):
        add_media(db_urls, media)
    add_interactions(
        db_urls,
        [(new_id(), old, "WATCH", 4.0, 0), (new_id(), old, "WATCH", 4.0, 0),
         (new_id(), new, "LIKE", 5.0, 10), (new_id(), disliked, "DISLIKE", 1.0, 10)],
    )
    run_refresh(databases, half_life_days=10)
    model = ModelRepository(databases.model).load()
    popularity = {bytes(model.media_ids[i]): float(p) for i, p in enumerate(model.popularity)}
    assert popularity == pytest.approx({old.bytes: 1.0, new.bytes: 1.0, disliked.bytes: 0.0})


def test_deleted_media_are_left_out_of_the_model(db_urls, databases):
    live, gone, user = new_id(), new_id(), new_id()
    add_media(db_urls, live)
    add_media(db_urls, gone, deleted=True)
    add_interactions(db_urls, [(user, live, "WATCH", 4.0), (user, gone, "WATCH", 4.0)])
    run_refresh(databases)
    model = ModelRepository(databases.model).load()
    assert model.media_ids.tolist() == [live.bytes]
    assert len(model.neighbour_idx) == 0


def test_an_empty_model_is_refused_unless_forced(databases):
    models = ModelRepository(databases.model)
    with pytest.raises(ModelRejected, match=r"no media \(catalog_db has no live media\); nothing was published"):
        run_refresh(databases)
    assert models.serving_version() is None and models.load() is None
    assert run_refresh(databases, guard=Guard(force=True)) == 1
    model = models.load()
    assert model.info.version == 1 and len(model.media_ids) == 0


def test_a_model_that_lost_too_many_media_or_interactions_is_refused(db_urls, databases):
    media = [new_id() for _ in range(4)]
    for m in media:
        add_media(db_urls, m)
    users = [new_id() for _ in range(4)]
    add_interactions(db_urls, [(u, m, "WATCH", 4.0) for u in users for m in media])
    assert run_refresh(databases) == 1
    with psycopg.connect(db_urls.catalog) as conn:  # 3 of 4 media deleted: 75 % fewer
        conn.execute("UPDATE medias SET deleted_at = now() WHERE id = ANY(%s)", (media[1:],))
    with pytest.raises(ModelRejected, match=r"1 media, 75% fewer than the serving model \(version 1: 4\); "
                       r"MODEL_MAX_SHRINK allows 50%; nothing was published \(--force publishes it anyway\)"):
        run_refresh(databases)
    assert run_refresh(databases, guard=Guard(max_shrink=0.8)) == 2  # a looser limit lets it through
    with psycopg.connect(db_urls.catalog) as conn:
        conn.execute("UPDATE medias SET deleted_at = NULL")
    assert run_refresh(databases) == 3  # growing is always fine
    with psycopg.connect(db_urls.engagement) as conn:  # 16 interactions down to 4 (the media all stay)
        conn.execute("DELETE FROM interaction WHERE user_id <> %s", (users[0],))
    with pytest.raises(ModelRejected, match=r"4 interactions, 75% fewer than the serving model \(version 3: 16\)"):
        run_refresh(databases)
    assert ModelRepository(databases.model).serving_version() == 3
    assert run_refresh(databases, guard=Guard(force=True)) == 4


def test_publishing_keeps_the_last_models_and_drops_older_ones(db_urls, databases):
    for _ in range(4):
        add_media(db_urls, new_id())
        run_refresh(databases, keep=3)
    builds, serving = ModelRepository(databases.model).builds()
    assert [info.version for info in builds] == [4, 3, 2] and serving == 4
    assert [info.media_count for info in builds] == [4, 3, 2]
    with psycopg.connect(db_urls.model) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'ml'")}
    assert tables == {"model_builds", "serving", "experiments", "impressions", "impressions_default"} | {
        f"{t}_{v}" for t in ("model_media", "media_neighbours") for v in (2, 3, 4)}


def test_rollback_serves_an_earlier_model_and_a_refresh_then_publishes_a_new_one(db_urls, databases):
    for _ in range(3):
        add_media(db_urls, new_id())
        run_refresh(databases)
    models = ModelRepository(databases.model)
    with models.refresh_lock() as writer:
        assert writer.rollback() == (3, 2)
    assert models.serving_version() == 2 and len(models.load().media_ids) == 2
    with models.refresh_lock() as writer:
        assert writer.rollback(1) == (2, 1)
        with pytest.raises(NoSuchModel, match=r"version 7 is not kept \(kept: 3, 2, 1\)"):
            writer.rollback(7)
        with pytest.raises(NoSuchModel, match="no model older than the serving version 1 is kept"):
            writer.rollback()
    assert models.load().info.version == 1
    add_media(db_urls, new_id())
    assert run_refresh(databases, keep=2) == 4  # versions are never reused
    builds, serving = models.builds()
    assert [info.version for info in builds] == [4, 3] and serving == 4


def test_a_worker_still_loading_an_old_model_keeps_its_tables_until_a_later_publish(db_urls, databases, monkeypatch):
    monkeypatch.setattr(model_repository, "PRUNE_LOCK_TIMEOUT", "100ms")
    add_media(db_urls, new_id())
    run_refresh(databases)
    reader = psycopg.connect(db_urls.model)  # a worker part-way through loading version 1
    reader.execute("LOCK TABLE ml.model_media_1, ml.media_neighbours_1 IN ACCESS SHARE MODE")
    try:
        add_media(db_urls, new_id())
        assert run_refresh(databases, keep=1) == 2  # published, version 1 left in place
        assert reader.execute("SELECT count(*) FROM ml.model_media_1").fetchone()[0] == 1
    finally:
        reader.close()
    assert ModelRepository(databases.model).serving_version() == 2
    add_media(db_urls, new_id())
    run_refresh(databases, keep=1)
    assert [info.version for info in ModelRepository(databases.model).builds()[0]] == [3]


class UnreadCatalog:
    """A catalog a refresh must not read."""

    def live_media(self):
        raise AssertionError("the refresh read the catalog while another refresh held the lock")


def test_a_second_refresh_is_refused_at_once_naming_the_running_one(db_urls, databases):
    with psycopg.connect(db_urls.model, autocommit=True, application_name="ml-service refresh (host-a, pid 42)") as other:
        other_pid = other.info.backend_pid
        other.execute("SELECT pg_advisory_lock(%s)", (REFRESH_LOCK_KEY,))
        with pytest.raises(RefreshFailed, match=r"another refresh or rollback is running: 'ml-service refresh "
                           r"\(host-a, pid 42\)' .*server pid \d+, connected since"):
            refresh(UnreadCatalog(), EngagementRepository(databases.engagement), ModelRepository(databases.model),
                    neighbour_settings=neighbour_settings(), half_life_days=1.0, progress=False)
        with pytest.raises(RefreshInProgress):
            with ModelRepository(databases.model).refresh_lock():
                pass
    # The lock goes with the other session: once its server process has ended (the server
    # handles a client's goodbye on its own time; on a loaded machine, after our next query).
    with psycopg.connect(db_urls.model, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (other_pid,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the other session's server process did not end"
            time.sleep(0.05)
    add_media(db_urls, new_id())
    assert run_refresh(databases) == 1


def test_a_model_published_before_versioned_tables_is_kept_and_serves(pg_server, db_urls):
    """init-db on a model database of the earlier layout (one ml.model_media, ml.media_neighbours)."""
    model_url = pg_server.create_database(f"legacy_{os.getpid()}_{new_id().hex[:6]}")
    try:
        with psycopg.connect(model_url, autocommit=True) as conn:
            conn.execute(LEGACY_MODEL_SQL)
            conn.execute("INSERT INTO ml.model_builds VALUES (6, now(), 0, 0, 2, 1, NULL, 0.5)")
            conn.execute("INSERT INTO ml.model_media VALUES (0, %s, 1, '{Drama}'), (1, %s, 2, '{}')", (new_id(), new_id()))
            conn.execute("INSERT INTO ml.media_neighbours VALUES (0, 1, 0.5)")
        urls = dataclasses.replace(db_urls, model=model_url)
        apply_schema(urls)
        apply_schema(urls)  # idempotent
        databases = open_databases(settings_for(urls), statement_timeout_ms=0)
        try:
            model = ModelRepository(databases.model).load()
            assert model.info.version == 6 and len(model.media_ids) == 2 and len(model.neighbour_idx) == 1
            add_media(db_urls, new_id())
            add_media(db_urls, new_id())
            assert run_refresh(databases) == 7
            assert [info.version for info in ModelRepository(databases.model).builds()[0]] == [7, 6]
        finally:
            databases.close()
    finally:
        pg_server.drop_database(model_url.rsplit("/", 1)[-1].split("?")[0])


# database/schema/model.sql as it was before versioned tables.
LEGACY_MODEL_SQL = """
CREATE SCHEMA ml;
CREATE TABLE ml.model_builds (version bigint PRIMARY KEY, built_at timestamptz NOT NULL DEFAULT now(),
    interactions_count bigint NOT NULL, users_count bigint NOT NULL, media_count bigint NOT NULL,
    neighbours_count bigint NOT NULL, newest_interaction timestamp, build_seconds double precision NOT NULL);
CREATE TABLE ml.model_media (idx int PRIMARY KEY, media_id uuid NOT NULL UNIQUE, popularity real NOT NULL,
    genres text[] NOT NULL);
CREATE TABLE ml.media_neighbours (media_idx int NOT NULL, neighbour_idx int NOT NULL, similarity real NOT NULL,
    PRIMARY KEY (media_idx, neighbour_idx));
"""
