"""What a media product's pages ask besides "for you": more like this, because you watched,
weights per interaction type, new titles without a refresh, and diversity. Real PostgreSQL."""

import time
import uuid

import numpy as np
import psycopg
import pytest

from ml_service.app import build_runtime
from ml_service.jobs import run_refresh
from services import scoring
from services.errors import MediaNotFound, NotInHistory
from services.movielens_import import user_uuid
from tests.conftest import settings_for
from tests.db.helpers import add_interactions, add_media, add_user, new_id

SYNC_INTERVAL = 1.0


@pytest.fixture
def world(db_urls):
    """Dramas d0-d7 and comedies c0-c7; 6 users each watched d0-d3 (d0 most), 6 others c0-c3.

    So d0's neighbours are d1-d3, and the other dramas are its genre fill.
    """
    dramas = [new_id() for _ in range(8)]
    comedies = [new_id() for _ in range(8)]
    for n, (drama, comedy) in enumerate(zip(dramas, comedies)):
        add_media(db_urls, drama, title=f"d{n}", genres=["Drama"])
        add_media(db_urls, comedy, title=f"c{n}", genres=["Comedy"])
    rows = []
    for group in (dramas, comedies):
        for u in range(6):
            user = new_id()
            rows += [(user, group[i], "WATCH", 4.0) for i in range(4) if u < 6 - i]
    # some popularity for the fill: d7 is the most popular of the dramas without neighbours
    rows += [(new_id(), dramas[7], "LIKE", 5.0) for _ in range(3)]
    add_interactions(db_urls, rows)
    run_refresh(settings_for(db_urls))
    return dramas, comedies


def runtime_for(db_urls, **settings):
    return build_runtime(settings_for(db_urls, **settings))


@pytest.fixture
def runtime(db_urls, world):
    runtime = runtime_for(db_urls)
    yield runtime
    runtime.close()


def neighbours_of(model, media_id):
    idx, known = scoring.media_indices(model, np.frombuffer(media_id.bytes, dtype="V16"))
    assert known[0]
    i = int(idx[0])
    return [uuid.UUID(bytes=model.media_ids[j].tobytes()) for j in model.neighbour_idx[model.neighbour_indptr[i]:model.neighbour_indptr[i + 1]]]


def test_more_like_this_is_the_neighbours_then_same_genre_popular_media(world, runtime):
    dramas, comedies = world
    model = runtime.models.current()
    neighbours = neighbours_of(model, dramas[0])
    assert set(neighbours) == set(dramas[1:4])
    page = runtime.recommender.similar(dramas[0], limit=6)
    ids = [item.media.id for item in page.items]
    assert page.media.id == dramas[0] and page.count == 6
    assert ids[:3] == neighbours and ids[3] == dramas[7]  # the neighbours, most similar first, then d7
    assert set(ids[3:]) <= set(dramas[4:])  # the fill shares the seed's genre
    assert [item.source for item in page.items] == ["hybrid"] * 3 + ["popular"] * 3
    assert all(item.because[0].id == dramas[0] for item in page.items[:3])
    assert runtime.recommender.similar(dramas[0], limit=3, offset=3).items == page.items[3:6]


def test_more_like_this_skips_deleted_media_and_what_the_user_has_seen(db_urls, world, runtime):
    dramas, comedies = world
    neighbours = neighbours_of(runtime.models.current(), dramas[0])
    with psycopg.connect(db_urls.catalog) as conn:
        conn.execute("UPDATE medias SET deleted_at = now() WHERE id = %s", (neighbours[0],))
    ids = [item.media.id for item in runtime.recommender.similar(dramas[0], limit=6).items]
    assert neighbours[0] not in ids and ids[:2] == neighbours[1:]
    # A user who watched d0 and the second neighbour, and prefers comedies.
    user = new_id()
    add_user(db_urls, user, genres=["Comedy"])
    add_interactions(db_urls, [(user, dramas[0], "WATCH", 4.0), (user, neighbours[1], "LIKE", 5.0)])
    page = runtime.recommender.similar(dramas[0], limit=10, user_id=user)
    ids = [item.media.id for item in page.items]
    assert not {dramas[0], neighbours[0], neighbours[1]} & set(ids) and page.user_id == user
    scores = [item.score for item in page.items]
    assert scores == sorted(scores, reverse=True) and page.count == 10  # the user's order
    assert page.items[0].media.id == neighbours[2]  # co-watched with both of the user's media


def test_more_like_this_for_a_media_newer_than_the_model_and_for_an_unknown_id(db_urls, world, runtime):
    dramas, comedies = world
    newer = new_id()
    add_media(db_urls, newer, title="new comedy", genres=["Comedy"])
    page = runtime.recommender.similar(newer, limit=5)  # no sync has run: genre only
    assert page.media.title == "new comedy"
    ids = [item.media.id for item in page.items]
    assert ids[:4] == comedies[:4] and ids[4] in comedies[4:] and {i.source for i in page.items} == {"popular"}
    with pytest.raises(MediaNotFound):
        runtime.recommender.similar(new_id())
    with psycopg.connect(db_urls.catalog) as conn:
        conn.execute("UPDATE medias SET deleted_at = now() WHERE id = %s", (dramas[0],))
    with pytest.raises(MediaNotFound):
        runtime.recommender.similar(dramas[0])


def test_because_names_the_users_media_that_add_to_each_items_score(movielens_urls):
    runtime = runtime_for(movielens_urls)
    try:
        model = runtime.models.current()
        checked = 0
        for n in range(1, 21):
            user = user_uuid(n)
            page = runtime.recommender.recommend(user, limit=20)
            history = runtime.recommender._engagement.histories_by_user_ids([user])[user]
            liked = {bytes(m) for m, v in zip(history.media_ids, history.positive_value) if v > 0}
            for item in page.items:
                if item.source != "hybrid" or item.collaborative_score == 0:
                    assert item.because == ()
                    continue
                assert 1 <= len(item.because) <= 2
                for source in item.because:
                    assert source.id.bytes in liked and item.media.id in neighbours_of(model, source.id)
                    checked += 1
        assert checked > 100
    finally:
        runtime.close()


def test_a_because_row_is_seeded_by_one_media_of_the_users_history(db_urls, world, runtime):
    dramas, comedies = world
    user = new_id()
    add_interactions(db_urls, [(user, dramas[0], "WATCH", 4.0), (user, dramas[1], "WATCH", 3.0),
                               (user, comedies[0], "DISLIKE", 1.0)])
    row = runtime.recommender.recommend(user, limit=5, because=dramas[0])
    ids = [item.media.id for item in row.items]
    assert ids[:2] == [m for m in neighbours_of(runtime.models.current(), dramas[0]) if m != dramas[1]]
    assert dramas[1] not in ids and row.count == 5 and row.because.id == dramas[0]  # the seed, to title the row
    assert all(item.because == (row.items[0].because[0],) and item.because[0].id == dramas[0] for item in row.items[:2])
    for not_liked in (comedies[0], comedies[1], new_id()):  # disliked, never seen, unknown
        with pytest.raises(NotInHistory) as refused:
            runtime.recommender.recommend(user, because=not_liked)
        assert list(refused.value.details) == ["because"]


def test_interaction_weights_per_type(db_urls, world):
    dramas, comedies = world
    user = new_id()
    add_interactions(db_urls, [(user, dramas[0], "WATCH", 4.0), (user, comedies[0], "DISLIKE", 1.0)])
    default = runtime_for(db_urls)
    try:
        page = default.recommender.recommend(user, limit=16)
        assert page.items[0].source == "hybrid" and page.items[0].media.id in dramas
        comedy_ranks = [i for i, item in enumerate(page.items) if item.media.id in comedies[1:4]]
    finally:
        default.close()
    # WATCH no positive signal: no co-interaction for this user (the refresh is unchanged here)
    no_watch = runtime_for(db_urls, watch_weight=0.0)
    try:
        assert {item.source for item in no_watch.recommender.recommend(user, limit=10).items} == {"popular"}
    finally:
        no_watch.close()
    # A dislike that counts: c0's neighbours (c1-c3) fall below media nothing lowered
    disliking = runtime_for(db_urls, dislike_weight=1.0)
    try:
        page = disliking.recommender.recommend(user, limit=16)
        lowered = [i for i, item in enumerate(page.items) if item.media.id in comedies[1:4]]
        assert min(lowered) > max(comedy_ranks) and all(page.items[i].collaborative_score < 0 for i in lowered)
    finally:
        disliking.close()
    # And in the refresh: with WATCH weighted 0 only LIKEs build neighbours (d7's likers saw nothing else)
    run_refresh(settings_for(db_urls, watch_weight=0.0), force=True)
    refreshed = runtime_for(db_urls)
    try:
        assert refreshed.models.current().info.neighbours_count == 0
    finally:
        refreshed.close()


def test_a_new_title_is_recommended_by_genre_within_the_sync_interval(db_urls, world):
    runtime = runtime_for(db_urls, catalog_sync_interval=SYNC_INTERVAL)
    try:
        user = new_id()
        add_user(db_urls, user, genres=["Documentary"])  # a genre no media of the model has
        assert runtime.recommender.recommend(user, limit=5).items[0].content_score == 0
        version = runtime.models.current().info.version
        title = new_id()
        add_media(db_urls, title, title="brand new", genres=["Documentary"], media_type="series")
        added = time.monotonic()
        while runtime.recommender.recommend(user, limit=5).items[0].media.id != title:
            assert time.monotonic() - added < SYNC_INTERVAL + 5, "the new title was not recommended"
            time.sleep(0.1)
        first = runtime.recommender.recommend(user, limit=5).items[0]
        assert first.content_score == 1 and first.source == "hybrid"
        assert runtime.models.current().info.version == version  # no refresh
        from services.filters import MediaFilter  # filters see the new title's type too

        series = runtime.recommender.recommend(user, limit=1, filters=MediaFilter(media_types=frozenset({"series"})))
        assert series.items[0].media.id == title
    finally:
        runtime.close()


def intra_list_diversity(items) -> float:
    """Mean genre distance (1 - Jaccard) over the pairs of a page."""
    genres = [set(item.media.genres) for item in items]
    pairs = [(a, b) for i, a in enumerate(genres) for b in genres[i + 1:]]
    return float(np.mean([1 - len(a & b) / len(a | b) if a | b else 0.0 for a, b in pairs]))


def test_diversity_raises_the_genre_variety_of_a_page(movielens_urls):
    runtime = runtime_for(movielens_urls)
    try:
        users = [user_uuid(n) for n in range(1, 31)]
        plain = runtime.recommender.recommend_many(users, limit=10)
        varied = runtime.recommender.recommend_many(users, limit=10, diversity=1.0)
        assert all(varied[u].count == 10 for u in users)
        before = np.mean([intra_list_diversity(plain[u].items) for u in users])
        after = np.mean([intra_list_diversity(varied[u].items) for u in users])
        assert after > before + 0.05, (before, after)
        # each page keeps its best item, and diversity 0 is today's ranking
        assert all(varied[u].items[0] == plain[u].items[0] for u in users)
        assert runtime.recommender.recommend_many(users, limit=10, diversity=0.0) == plain
    finally:
        runtime.close()


def test_diverse_pages_continue_one_another(movielens_urls):
    runtime = runtime_for(movielens_urls)
    try:
        for user in (user_uuid(1), user_uuid(7)):
            whole = runtime.recommender.recommend(user, limit=20, diversity=0.5).items
            pages = [runtime.recommender.recommend(user, limit=5, offset=o, diversity=0.5).items for o in (0, 5, 10, 15)]
            assert [item for page in pages for item in page] == whole
    finally:
        runtime.close()
