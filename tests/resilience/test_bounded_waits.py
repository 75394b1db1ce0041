"""A hung database or overload is answered within a bound, never piled up.

A second connection holds an ACCESS EXCLUSIVE lock on a table the request path reads, so the
service's query waits until its statement_timeout; with one connection per pool and a cap of
one waiting request, further requests are refused at once.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from ml_service.app import create_app
from tests.conftest import settings_for
from tests.resilience.dataset import USER, assert_without_user_db

STATEMENT_TIMEOUT_MS = 500


@contextlib.contextmanager
def locked(url: str, table: str):
    """Hold an exclusive lock on `table` (as a long migration or a stuck transaction would)."""
    with psycopg.connect(url) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # test-owned constant, not input
        yield
        conn.rollback()


def timed_get(client):
    started = time.monotonic()
    response = client.get(f"/api/recommendations/{USER}?limit=5")
    return response, time.monotonic() - started


def make_app(urls, **settings):
    settings = {"statement_timeout_ms": STATEMENT_TIMEOUT_MS, "pool_timeout": 1.0, **settings}
    return create_app(settings_for(urls, **settings))


def test_a_hung_catalog_is_a_fast_503(urls):
    app = make_app(urls)
    try:
        client = app.test_client()
        assert client.get(f"/api/recommendations/{USER}").status_code == 200  # warm: model loaded
        with locked(urls.catalog, "medias"):
            response, elapsed = timed_get(client)
            assert response.status_code == 503 and response.headers["Retry-After"] == "1"
            assert "canceling statement" not in response.get_data(as_text=True)
            assert STATEMENT_TIMEOUT_MS / 1000 <= elapsed < 2.0
            response, elapsed = timed_get(client)  # marked down: no second wait
            assert response.status_code == 503 and elapsed < 0.3
    finally:
        app.extensions["ml_service"].close()


def test_a_hung_user_db_degrades_within_the_statement_timeout(urls):
    app = make_app(urls)
    try:
        client = app.test_client()
        assert client.get(f"/api/recommendations/{USER}").status_code == 200
        with locked(urls.user, "tb_user_genre"):
            response, elapsed = timed_get(client)
            assert response.status_code == 200 and elapsed < 2.0
            assert_without_user_db(response.get_json())
        deadline = time.monotonic() + 5
        while client.get(f"/api/recommendations/{USER}").get_json()["degraded"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get(f"/api/recommendations/{USER}").get_json()["degraded"] == []
    finally:
        app.extensions["ml_service"].close()


def test_overload_is_refused_at_once_instead_of_queueing(urls):
    # One connection per pool, one request allowed to wait for it: the rest are refused.
    app = make_app(urls, pool_min_size=1, pool_max_size=1, pool_max_waiting=1, statement_timeout_ms=2000)
    try:
        warm = app.test_client()
        assert warm.get(f"/api/recommendations/{USER}").status_code == 200
        with locked(urls.catalog, "medias"), ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: timed_get(app.test_client()), range(8)))
        statuses = [response.status_code for response, _ in results]
        elapsed = [seconds for _, seconds in results]
        assert set(statuses) == {503}, statuses
        assert max(elapsed) < 2.0 + 1.0 + 1.0  # statement timeout, pool wait, slack
        assert sum(seconds < 0.5 for seconds in elapsed) >= 5  # refused without waiting
    finally:
        app.extensions["ml_service"].close()
