"""The refresh job and the model tables: what it computes, and that a swap is atomic."""

import threading

import numpy as np
import psycopg
import pytest

from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.model_repository import ModelRepository, RefreshInProgress, REFRESH_LOCK_KEY
from database.pools import open_databases
from services.refresh import refresh
from tests.conftest import settings_for
from tests.db.helpers import add_interactions, add_media, new_id


@pytest.fixture
def databases(db_urls):
    databases = open_databases(settings_for(db_urls), statement_timeout_ms=0)
    yield databases
    databases.close()


def run_refresh(databases, k=50, half_life_days=365.0):
    return refresh(
        CatalogRepository(databases.catalog),
        EngagementRepository(databases.engagement),
        ModelRepository(databases.model),
        neighbours_k=k,
        half_life_days=half_life_days,
        progress=False,
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
    assert run_refresh(databases) == 1
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
    run_refresh(databases, k=2)
    model = ModelRepository(databases.model).load()
    assert set(neighbours_of(model, m[0])) == {m[5].bytes, m[4].bytes}


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


def test_a_refresh_on_empty_databases_publishes_an_empty_model(databases):
    assert ModelRepository(databases.model).load() is None
    assert ModelRepository(databases.model).current_version() is None
    run_refresh(databases)
    model = ModelRepository(databases.model).load()
    assert model.info.version == 1 and len(model.media_ids) == 0


def test_refresh_replaces_the_model_and_leaves_no_build_tables(db_urls, databases):
    a, b, user = new_id(), new_id(), new_id()
    add_media(db_urls, a)
    run_refresh(databases)
    add_media(db_urls, b)
    add_interactions(db_urls, [(user, a, "WATCH", 4.0), (user, b, "WATCH", 4.0)])
    assert run_refresh(databases) == 2
    repository = ModelRepository(databases.model)
    assert repository.current_version() == 2
    assert len(repository.load().media_ids) == 2
    with psycopg.connect(db_urls.model) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'ml'")}
        builds = conn.execute("SELECT version, interactions_count FROM ml.model_builds ORDER BY version").fetchall()
    assert tables == {"model_builds", "model_media", "media_neighbours"}
    assert builds == [(1, 0), (2, 2)]


def test_a_reader_holding_the_model_sees_the_old_one_until_it_finishes(db_urls, databases):
    a = new_id()
    add_media(db_urls, a)
    run_refresh(databases)
    add_media(db_urls, new_id())
    reader = psycopg.connect(db_urls.model)
    reader.execute("LOCK TABLE ml.model_builds, ml.model_media, ml.media_neighbours IN ACCESS SHARE MODE")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (run_refresh(databases), done.set()))
    thread.start()
    try:
        assert not done.wait(1.5), "the swap must wait for the reader"
        # Mid-refresh, the reader still sees the complete old model.
        assert reader.execute("SELECT count(*) FROM ml.model_media").fetchone()[0] == 1
        assert reader.execute("SELECT max(version) FROM ml.model_builds").fetchone()[0] == 1
    finally:
        reader.rollback()
        reader.close()
    thread.join(30)
    assert done.is_set()
    assert len(ModelRepository(databases.model).load().media_ids) == 2


def test_a_second_concurrent_refresh_is_refused(db_urls, databases):
    with psycopg.connect(db_urls.model, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (REFRESH_LOCK_KEY,))
        with pytest.raises(RefreshInProgress):
            run_refresh(databases)
