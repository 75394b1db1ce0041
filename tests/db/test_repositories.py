"""Repositories against real PostgreSQL."""

import numpy as np
import psycopg
import pytest
from psycopg import sql

from database import binary_copy
from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.pools import open_databases
from database.user_repository import UserRepository
from tests.conftest import settings_for
from tests.db.helpers import add_interactions, add_media, add_user, new_id


@pytest.fixture
def databases(db_urls):
    databases = open_databases(settings_for(db_urls))
    yield databases
    databases.close()


def test_profiles_tell_known_from_unknown_users_and_carry_genres(db_urls, databases):
    known, without_genres, unknown = new_id(), new_id(), new_id()
    add_user(db_urls, known, ["Drama", "Comedy"])
    add_user(db_urls, without_genres)
    profiles = UserRepository(databases.user).profiles_by_ids([known, without_genres, unknown])
    assert profiles[known].exists and profiles[known].genres == {"Drama", "Comedy"}
    assert profiles[without_genres].exists and profiles[without_genres].genres == frozenset()
    assert not profiles[unknown].exists and profiles[unknown].genres == frozenset()


def test_media_by_ids_skips_deleted_and_unknown_media(db_urls, databases):
    live, deleted, unknown = new_id(), new_id(), new_id()
    add_media(db_urls, live, "Live", ["Drama", "Action"])
    add_media(db_urls, deleted, "Gone", ["Drama"], deleted=True)
    media = CatalogRepository(databases.catalog).media_by_ids([live, deleted, unknown])
    assert list(media) == [live]
    assert media[live].title == "Live" and media[live].genres == ("Action", "Drama")
    assert media[live].cover_url.endswith(".jpg") and media[live].release_year == 2000


def test_live_media_lists_every_live_media_sorted_with_type_year_and_genres(db_urls, databases):
    ids = sorted(new_id() for _ in range(3))
    add_media(db_urls, ids[0], genres=["Drama"], year=1999)
    add_media(db_urls, ids[1], media_type="series", year=None)
    add_media(db_urls, ids[2], genres=["Drama"], deleted=True)
    live = CatalogRepository(databases.catalog).live_media()
    assert live.ids.tolist() == [i.bytes for i in ids[:2]]
    assert live.media_types == ["movie", "series"] and live.release_years.tolist() == [1999, 0]
    assert live.genres == {ids[0].bytes: ["Drama"]}


def test_histories_aggregate_each_users_interactions_per_media(db_urls, databases):
    a, b, c = new_id(), new_id(), new_id()
    m = sorted(new_id() for _ in range(6))
    add_interactions(
        db_urls,
        [
            (a, m[0], "WATCH", 4.0), (a, m[0], "LIKE", 2.0),  # the largest LIKE/WATCH value
            (a, m[1], "LIKE", None),  # a missing value counts as 1
            (a, m[2], "WATCH", 5.0), (a, m[2], "DISLIKE", 1.0),  # ever disliked: no positive weight
            (a, m[3], "WATCH", -3.0),  # never below 0
            (a, m[4], "SHARE", 5.0),  # not an interaction type the service knows: ignored
            (b, m[5], "DISLIKE", 1.0),
            (c, m[0], "WATCH", 1.0),  # not requested
        ],
    )
    histories = EngagementRepository(databases.engagement).histories_by_user_ids([a, b, new_id()])
    assert set(histories) == {a, b}
    got_a = dict(zip((bytes(x) for x in histories[a].media_ids), histories[a].positive_value.tolist()))
    assert got_a == {m[0].bytes: 4.0, m[1].bytes: 1.0, m[2].bytes: 0.0, m[3].bytes: 0.0}
    assert histories[b].media_ids.tolist() == [m[5].bytes] and histories[b].positive_value.tolist() == [0.0]
    assert histories[a].positive_value.dtype == np.float64


def test_user_media_pairs_aggregate_per_user_and_media(db_urls, databases):
    a, b, m1, m2 = new_id(), new_id(), new_id(), new_id()
    add_interactions(
        db_urls,
        [(a, m1, "WATCH", 3.0, 1), (a, m1, "LIKE", 5.0, 2), (a, m2, "DISLIKE", 1.0, 3), (b, m1, "WATCH", None, 4)],
    )
    rows = np.concatenate(list(EngagementRepository(databases.engagement).user_media_pairs(chunk_rows=1)))
    got = {(bytes(r["user"]), bytes(r["media"])): (bool(r["disliked"]), bool(r["liked"]), float(r["positive_value"]), int(r["interactions"])) for r in rows}
    assert got == {
        (a.bytes, m1.bytes): (False, True, 5.0, 2),
        (a.bytes, m2.bytes): (True, False, 0.0, 1),
        (b.bytes, m1.bytes): (False, False, 1.0, 1),
    }
    assert rows["user"].tolist() == sorted(rows["user"].tolist())


def test_binary_copy_round_trips_fixed_width_rows(db_urls):
    columns = [("a", "int4"), ("b", "float8"), ("c", "uuid"), ("d", "bool"), ("e", "int8")]
    ids = [new_id() for _ in range(1000)]
    arrays = [
        np.arange(1000, dtype=np.int32),
        np.linspace(0, 1, 1000),
        np.frombuffer(b"".join(i.bytes for i in ids), dtype="V16"),
        np.arange(1000) % 2 == 0,
        np.arange(1000, dtype=np.int64) * 10**12,
    ]
    with psycopg.connect(db_urls.engagement) as conn:
        conn.execute("CREATE TEMP TABLE t (a int, b float8, c uuid, d bool, e bigint)")
        assert binary_copy.write_rows(conn, sql.Identifier("t"), columns, arrays, chunk_rows=300) == 1000
        assert conn.execute("SELECT c FROM t WHERE a = 7").fetchone()[0] == ids[7]
        chunks = list(binary_copy.read_rows(conn, "SELECT a, b, c, d, e FROM t ORDER BY a", columns, chunk_rows=100))
        assert len(chunks) > 1
        rows = np.concatenate(chunks)
        for (name, _), values in zip(columns, arrays):
            assert (rows[name] == values).all()


def test_binary_copy_refuses_null_values(db_urls):
    with psycopg.connect(db_urls.engagement) as conn:
        with pytest.raises(ValueError, match="fixed width|NULL"):
            binary_copy.read_all(conn, "SELECT NULL::int4 UNION ALL SELECT 1", [("a", "int4")])
