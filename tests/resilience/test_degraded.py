"""Each database can fail on its own: the service answers degraded, says so, and 503s only without catalog_db.

Here a failing database is one whose URL points at a closed port (one real PostgreSQL server
holds the others); tests/faults stops, freezes, cuts off and slows real servers.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

import psycopg
from psycopg import sql

from ml_service.app import create_app
from tests.conftest import settings_for
from tests.resilience.dataset import (
    COMEDY_1,
    COMEDY_2,
    DRAMA_1,
    HORROR,
    USER,
    assert_full_service,
    assert_without_engagement_db,
    assert_without_user_db,
    by_media,
    fill,
)

CLOSED = "postgresql://nobody@127.0.0.1:1/none"


def serve(urls, **settings):
    app = create_app(settings_for(urls, **settings))
    return app, app.test_client()


def get(client, user=USER):
    response = client.get(f"/api/recommendations/{user}?limit=5")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_full_service_lists_nothing_degraded(urls):
    app, client = serve(urls)
    try:
        assert_full_service(get(client))
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
        assert ready.get_json()["degraded"] == []
    finally:
        app.extensions["ml_service"].close()


def test_without_user_db_collaborative_and_popular(urls):
    app, client = serve(dataclasses.replace(urls, user=CLOSED))
    try:
        assert_without_user_db(get(client))
        started = time.monotonic()
        assert_without_user_db(get(client))  # known down: skipped without waiting for the pool
        assert time.monotonic() - started < 0.5
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.get_json()["status"] == "degraded" and ready.get_json()["degraded"] == ["user_db"]
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'ml_degraded_responses_total{missing="user_db"} 2.0' in metrics
    finally:
        app.extensions["ml_service"].close()


def test_without_engagement_db_genre_match_and_popular(urls):
    app, client = serve(dataclasses.replace(urls, engagement=CLOSED))
    try:
        body = get(client)
        assert_without_engagement_db(body)
        assert by_media(body)[COMEDY_1]["source"] == "hybrid"
        batch = client.post("/api/recommendations/batch", json={"user_ids": [str(USER)] * 3, "limit": 5})
        assert batch.status_code == 200 and batch.get_json()["degraded"] == ["engagement_db"]
        assert batch.get_json()["total_users"] == 1
    finally:
        app.extensions["ml_service"].close()


def test_without_catalog_db_503_with_retry_after(urls):
    app, client = serve(dataclasses.replace(urls, catalog=CLOSED))
    try:
        for _ in range(2):  # the first finds it down, the second knows it is down
            started = time.monotonic()
            response = client.get(f"/api/recommendations/{USER}")
            assert response.status_code == 503 and response.headers["Retry-After"] == "1"
            assert response.get_json()["error"]["code"] == "database_unavailable"
            assert time.monotonic() - started < 3
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.get_json()["checks"]["catalog_db"] == "unavailable"
    finally:
        app.extensions["ml_service"].close()


def test_without_a_model_genre_match_and_recently_popular(db_urls):
    fill(db_urls)  # no refresh has run: the model tables are empty
    app, client = serve(db_urls)
    try:
        body = get(client)
        assert body["degraded"] == ["model"]
        items = by_media(body)
        ranked = [uuid.UUID(item["media_id"]) for item in body["recommendations"]]
        assert set(ranked[:2]) == {COMEDY_1, COMEDY_2} and items[COMEDY_1]["content_score"] == 1.0
        assert DRAMA_1 not in items  # the user's history still excludes what they watched
        assert ranked[2] == HORROR  # then the most popular among recent interactions
        assert all(item["collaborative_score"] == 0 for item in body["recommendations"])
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.get_json()["degraded"] == ["model"]
    finally:
        app.extensions["ml_service"].close()


def test_without_a_model_nor_engagement_db_the_newest_releases(db_urls):
    fill(db_urls)
    app, client = serve(dataclasses.replace(db_urls, engagement=CLOSED, model=CLOSED))
    try:
        body = get(client)
        assert body["degraded"] == ["engagement_db", "model"]
        assert body["count"] == 5 and body["recommendations"][0]["content_score"] == 1.0
    finally:
        app.extensions["ml_service"].close()


def test_a_stale_model_is_served_and_reported(urls):
    with psycopg.connect(urls.model, autocommit=True) as conn:
        conn.execute("UPDATE ml.model_builds SET built_at = now() - interval '3 days'")
    app, client = serve(urls, model_max_age_hours=24.0)
    try:
        body = get(client)
        assert body["degraded"] == ["model_stale"]
        assert by_media(body)  # still ranked by the stale model
        ready = client.get("/health/ready").get_json()
        assert ready["status"] == "degraded" and ready["checks"]["model"] == "stale"
    finally:
        app.extensions["ml_service"].close()


def test_a_lost_model_table_keeps_the_model_in_memory(urls):
    app, client = serve(urls, model_reload_interval=0.0)
    try:
        assert_full_service(get(client))
        with psycopg.connect(urls.model, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA ml CASCADE"))
        for _ in range(3):
            assert_full_service(get(client))
            time.sleep(0.05)
    finally:
        app.extensions["ml_service"].close()
