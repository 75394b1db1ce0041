"""Every bad request gets a JSON error with a 4xx status, and database failures a 503."""

import uuid

import pytest

from ml_service.app import create_app
from ml_service.config import DatabaseUrls
from tests.conftest import settings_for

USER = str(uuid.uuid4())


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize(
    "path, field",
    [
        ("/api/recommendations/not-a-uuid", "user_id"),
        (f"/api/recommendations/{USER}?limit=0", "limit"),
        (f"/api/recommendations/{USER}?limit=101", "limit"),
        (f"/api/recommendations/{USER}?limit=abc", "limit"),
        (f"/api/recommendations/{USER}?offset=-1", "offset"),
        (f"/api/recommendations/{USER}?offset=99999999999999999999", "offset"),
        ("/api/recommendations/1'%20OR%20'1'='1", "user_id"),
    ],
)
def test_invalid_parameters_are_400_naming_the_field(client, path, field):
    error = error_of(client.get(path), 400)
    assert error["code"] == "invalid_request" and field in error["details"]
    assert error["message"].startswith(field)


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "bad_request"),
        ({"data": "user_ids=1", "content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"json": [USER]}, 400, "invalid_request"),
        ({"json": {"user_ids": [USER], "limit": 0}}, 400, "invalid_request"),
        ({"json": {"user_ids": [USER], "extra": 1}}, 400, "invalid_request"),
        ({"json": {"user_ids": ["nope"]}}, 400, "invalid_request"),
        ({"json": {"user_ids": [USER] * 4000}}, 413, "payload_too_large"),
    ],
)
def test_bad_batch_bodies_get_clear_errors(client, kwargs, status, code):
    assert error_of(client.post("/api/recommendations/batch", **kwargs), status)["code"] == code


def test_unknown_paths_and_methods_are_json(client):
    assert error_of(client.get("/api/nothing"), 404)["code"] == "not_found"
    response = client.delete(f"/api/recommendations/{USER}")
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_health_touches_no_database():
    app = create_app(settings_for(DatabaseUrls(*(["postgresql://nobody@127.0.0.1:1/none"] * 4))))
    try:
        body = app.test_client().get("/health").get_json()
        assert body["status"] == "healthy" and body["service"] == "ml-service" and body["version"]
    finally:
        app.extensions["ml_service"].close()


def test_unreachable_databases_give_503_without_internals():
    url = "postgresql://nobody@127.0.0.1:1/none"
    app = create_app(settings_for(DatabaseUrls(url, url, url, url)))
    try:
        client = app.test_client()
        for response in (
            client.get(f"/api/recommendations/{USER}"),
            client.post("/api/recommendations/batch", json={"user_ids": [USER]}),
        ):
            error = error_of(response, 503)
            assert error["code"] == "database_unavailable"
            assert "Retry-After" in response.headers
            text = response.get_data(as_text=True)
            assert "127.0.0.1" not in text and "SELECT" not in text and "Traceback" not in text
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["user_db"] == "unavailable"
    finally:
        app.extensions["ml_service"].close()


def test_ready_when_databases_answer_and_a_model_is_loaded(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready" and body["model"]["version"] >= 1 and body["model"]["media"] == 9742
