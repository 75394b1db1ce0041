"""A hung database or overload is answered within the request deadline, never piled up.

A second connection holds an ACCESS EXCLUSIVE lock on a table the request path reads, so the
service's query waits: the deadline (production default) ends it, the database is marked down
and later requests skip it at once. All settings are the production defaults.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from ml_service.app import create_app
from settings import Settings
from tests.conftest import settings_for
from tests.resilience.dataset import USER, assert_without_user_db

DEADLINE = Settings.request_deadline_ms / 1000  # the production default
SLACK = 0.5


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


def make_app(urls):
    return create_app(settings_for(urls))


def test_a_hung_catalog_is_a_fast_503(urls):
    app = make_app(urls)
    try:
        client = app.test_client()
        assert client.get(f"/api/recommendations/{USER}").status_code == 200  # warm: model loaded
        with locked(urls.catalog, "medias"):
            response, elapsed = timed_get(client)
            assert response.status_code == 503 and response.headers["Retry-After"] == "1"
            assert "canceling statement" not in response.get_data(as_text=True)
            assert elapsed < DEADLINE + SLACK
            response, elapsed = timed_get(client)  # marked down: no second wait
            assert response.status_code == 503 and elapsed < 0.3
    finally:
        app.extensions["ml_service"].close()


def test_a_hung_user_db_degrades_within_its_share_of_the_deadline(urls):
    app = make_app(urls)
    try:
        client = app.test_client()
        assert client.get(f"/api/recommendations/{USER}").status_code == 200
        with locked(urls.user, "tb_user_genre"):
            response, elapsed = timed_get(client)
            assert response.status_code == 200 and elapsed < DEADLINE + SLACK
            assert_without_user_db(response.get_json())
            response, elapsed = timed_get(client)  # marked down: skipped without waiting
            assert_without_user_db(response.get_json())
            assert elapsed < 0.3
        deadline = time.monotonic() + 5
        while client.get(f"/api/recommendations/{USER}").get_json()["degraded"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get(f"/api/recommendations/{USER}").get_json()["degraded"] == []
    finally:
        app.extensions["ml_service"].close()


def test_a_burst_against_a_hung_catalog_is_answered_within_the_deadline(urls):
    app = make_app(urls)
    try:
        warm = app.test_client()
        assert warm.get(f"/api/recommendations/{USER}").status_code == 200
        with locked(urls.catalog, "medias"), ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: timed_get(app.test_client()), range(32)))
        statuses = [response.status_code for response, _ in results]
        elapsed = [seconds for _, seconds in results]
        assert set(statuses) == {503}, statuses
        assert max(elapsed) < DEADLINE + SLACK
        assert sum(seconds < 0.3 for seconds in elapsed) >= 16  # the later ones skip it at once
    finally:
        app.extensions["ml_service"].close()
