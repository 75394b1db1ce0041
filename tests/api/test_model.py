"""Which model answered: GET /api/model, and the version every recommendation carries."""

import os

import psycopg

from ml_service.app import create_app
from ml_service.jobs import run_refresh
from services.movielens_import import user_uuid
from tests.api.conftest import check_documented
from tests.conftest import settings_for


def test_the_serving_model_is_described_as_the_model_database_records_it(client, movielens_urls, spec):
    response = client.get("/api/model")
    assert response.status_code == 200
    check_documented(spec, "get", "/api/model", response)
    body = response.get_json()
    with psycopg.connect(movielens_urls.model) as conn:
        version, media, users, interactions, neighbours, settings, validation = conn.execute(
            "SELECT version, media_count, users_count, interactions_count, neighbours_count, settings, validation"
            "  FROM ml.model_builds JOIN ml.serving USING (version)"
        ).fetchone()
    assert (body["version"], body["media"], body["users"], body["interactions"], body["neighbours"]) == (
        version, media, users, interactions, neighbours
    )
    # What the refresh chose and measured on ml-latest-small, served as chosen (no setting given).
    assert body["settings"] == settings and set(settings["tuned"]) == {
        "ease_lambda", "neighbours_k", "blend", "history_weighting"}
    assert body["validation"] == validation and validation["users"] > 500 and validation["user_coverage"] == 1.0
    assert response.headers["X-Model-Version"] == str(version)
    assert body["age_seconds"] >= 0 and body["stale"] is False and body["built_at"]
    ready = client.get("/health/ready").get_json()
    assert ready["model"]["version"] == version and ready["status"] == "ready"


def test_every_recommendation_answer_names_the_model_that_ranked_it(client, spec):
    version = client.get("/api/model").get_json()["version"]
    single = client.get(f"/api/recommendations/{user_uuid(1)}")
    batch = client.post("/api/recommendations/batch", json={"user_ids": [str(user_uuid(1)), str(user_uuid(2))]})
    for response, method, path in [(single, "get", "/api/recommendations/{user_id}"), (batch, "post", "/api/recommendations/batch")]:
        assert response.status_code == 200
        check_documented(spec, method, path, response)
        assert response.headers["X-Model-Version"] == str(version)
        assert response.get_json()["model_version"] == version
    assert {page["model_version"] for page in batch.get_json()["results"].values()} == {version}


def test_a_forced_empty_model_leaves_the_worker_degraded(pg_server, schema_template):
    """Only --force publishes a model without media; readiness then says model_empty."""
    prefix = f"empty_model_{os.getpid()}"
    urls = pg_server.create_urls(prefix, schema_template)
    try:
        assert run_refresh(settings_for(urls), force=True) == 1
        app = create_app(settings_for(urls))
        try:
            ready = app.test_client().get("/health/ready")
            assert ready.status_code == 200 and ready.get_json()["degraded"] == ["model_empty"]
            assert ready.get_json()["checks"]["model"] == "empty" and ready.get_json()["status"] == "degraded"
        finally:
            app.extensions["ml_service"].close()
    finally:
        pg_server.drop_urls(prefix)
