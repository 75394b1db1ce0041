"""A batch of 50 users costs the same statements as one user: one per source database."""

import collections
import threading

import psycopg
import pytest

from database.pools import open_databases
from ml_service.app import build_runtime
from services.filters import MediaFilter
from services.movielens_import import media_uuid, user_uuid
from tests.conftest import settings_for

STATEMENTS: collections.Counter = collections.Counter()
_lock = threading.Lock()


class CountingCursor(psycopg.Cursor):
    """Counts every statement and COPY the test's own thread (the request's) sends, per database:
    the background threads (model loader, impression writer) are not part of a request."""

    def _count(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with _lock:
            STATEMENTS[self.connection.info.dbname] += 1

    def execute(self, query, *args, **kwargs):
        if query != "":  # the pool's connection check sends an empty query: not a statement
            self._count()
        return super().execute(query, *args, **kwargs)

    def copy(self, *args, **kwargs):
        self._count()
        return super().copy(*args, **kwargs)


class CountingConnection(psycopg.Connection):
    """A connection whose cursors (also behind Connection.execute) count statements."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cursor_factory = CountingCursor


@pytest.fixture
def runtime(movielens_urls):
    settings = settings_for(movielens_urls)
    runtime = build_runtime(settings, open_databases(settings, connection_class=CountingConnection))
    runtime.models.current()  # the model is loaded once per worker, not per request
    yield runtime
    runtime.close()


def statements_for(runtime, user_ids, limit=10, **row):
    STATEMENTS.clear()
    results = runtime.recommender.recommend_many(user_ids, limit, **row)
    assert all(r.count == limit for r in results.values())
    return dict(STATEMENTS)


def test_fifty_users_issue_the_same_statements_as_one(runtime):
    one = statements_for(runtime, [user_uuid(1)])
    fifty = statements_for(runtime, [user_uuid(i) for i in range(1, 51)])
    assert one == fifty
    assert sum(one.values()) == 3 and len(one) == 3  # user_db, engagement_db, catalog_db: one each


def test_a_filtered_row_with_exclusions_costs_the_same_statements(runtime):
    row = {
        "filters": MediaFilter(media_types=frozenset({"movie"}), genres=frozenset({"Comedy"}), release_year_min=1990),
        "exclude": [media_uuid(m) for m in range(1, 200)],
    }
    one = statements_for(runtime, [user_uuid(1)], **row)
    fifty = statements_for(runtime, [user_uuid(i) for i in range(1, 51)], **row)
    assert one == fifty and sum(one.values()) == 3 and len(one) == 3


def test_more_like_this_costs_one_catalog_query_and_a_users_rows_stay_at_three(runtime):
    STATEMENTS.clear()
    similar = runtime.recommender.similar(media_uuid(1), limit=10)
    assert similar.count == 10 and sum(STATEMENTS.values()) == 1  # the seed and its similar media at once
    STATEMENTS.clear()
    similar = runtime.recommender.similar(media_uuid(1), limit=10, user_id=user_uuid(1))
    assert similar.count == 10 and sum(STATEMENTS.values()) == 3 and len(STATEMENTS) == 3
    history = runtime.recommender.recommend(user_uuid(1), limit=20).items
    seed = next(m.id for item in history for m in item.because)
    STATEMENTS.clear()
    row = runtime.recommender.recommend(user_uuid(1), limit=10, because=seed)
    assert row.count == 10 and sum(STATEMENTS.values()) == 2  # engagement_db, catalog_db
    one = statements_for(runtime, [user_uuid(1)], diversity=1.0)
    fifty = statements_for(runtime, [user_uuid(i) for i in range(1, 51)], diversity=0.5)
    assert one == fifty and sum(one.values()) == 3
