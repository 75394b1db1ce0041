"""The production Gunicorn configuration, started for real and called over HTTP."""

import contextlib
import json
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from services.movielens_import import user_uuid
from settings import DatabaseUrls
from tests.conftest import free_port, serving, start_gunicorn, wait_for_http

pytestmark = pytest.mark.e2e
CLOSED = DatabaseUrls(*(["postgresql://nobody@127.0.0.1:1/none"] * 4))  # /health needs no database


@contextlib.contextmanager
def gunicorn_log(tmp_path, **env):
    """Gunicorn (production config, no database) on a free port, answering /health; yields its base URL
    and a list that receives the JSON lines of its log (stdout and stderr) once it has stopped."""
    port, log, lines = free_port(), tmp_path / "gunicorn.log", []
    process = start_gunicorn(CLOSED, port, log, **env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, log)
        yield f"http://127.0.0.1:{port}", lines
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    text = log.read_text()
    assert all(line.startswith("{") for line in text.splitlines()), text  # every line is JSON
    lines.extend(json.loads(line) for line in text.splitlines())


@pytest.fixture(scope="module")
def base_url(movielens_urls, tmp_path_factory):
    # the config's defaults: 4 workers x 2 threads
    with serving(movielens_urls, tmp_path_factory.mktemp("gunicorn")) as base:
        yield base


def test_health_and_readiness(base_url):
    assert requests.get(f"{base_url}/health", timeout=5).json()["status"] == "healthy"
    assert requests.get(f"{base_url}/health/ready", timeout=5).json()["status"] == "ready"


def test_recommendations_over_http_from_every_worker(base_url):
    users = [user_uuid(i) for i in range(1, 41)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda u: requests.get(f"{base_url}/api/recommendations/{u}", timeout=10), users))
    assert [r.status_code for r in responses] == [200] * len(users)
    assert all(r.json()["count"] == 10 for r in responses)
    hybrid = sum(item["source"] == "hybrid" for r in responses for item in r.json()["recommendations"])
    assert hybrid / (10 * len(users)) > 0.8


def test_batch_and_errors_over_http(base_url):
    users = [str(user_uuid(i)) for i in range(1, 51)]
    response = requests.post(f"{base_url}/api/recommendations/batch", json={"user_ids": users, "limit": 3}, timeout=10)
    assert response.status_code == 200 and response.json()["total_users"] == 50
    too_many = requests.post(
        f"{base_url}/api/recommendations/batch", json={"user_ids": users + [str(uuid.uuid4())]}, timeout=10
    )
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "invalid_request"
    assert requests.get(f"{base_url}/api/recommendations/xyz", timeout=5).status_code == 400


def test_a_streamed_body_over_64_kib_is_413_and_one_of_64_kib_is_read_whole(base_url):
    """A chunked body (no Content-Length) over the limit is a 413, as one with Content-Length is;
    werkzeug alone would cut it at the limit and answer 400 invalid JSON."""

    def chunked(body: bytes):
        yield from (body[i:i + 8192] for i in range(0, len(body), 8192))  # requests sends a generator chunked

    headers = {"Content-Type": "application/json"}
    url = f"{base_url}/api/recommendations/batch"
    big = json.dumps({"user_ids": [str(user_uuid(1))] * 2000}).encode()
    assert len(big) > 64 * 1024
    response = requests.post(url, data=chunked(big), headers=headers, timeout=10)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    exact = b'{"user_ids": ["%s"]}' % str(user_uuid(1)).encode()
    exact = exact[:-1] + b" " * (64 * 1024 - len(exact)) + b"}"  # JSON of exactly 64 KiB
    response = requests.post(url, data=chunked(exact), headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["total_users"] == 1


def test_a_query_string_holds_175_excluded_media(base_url):
    """Gunicorn's request line (limit_request_line 8190) has room for the 175 ids docs/api.md promises."""
    excluded = "&".join(f"exclude={uuid.uuid4()}" for _ in range(175))
    response = requests.get(f"{base_url}/api/recommendations/{user_uuid(1)}?{excluded}", timeout=10)
    assert response.status_code == 200 and response.json()["count"] == 10


def test_a_configuration_error_stops_gunicorn_with_a_clear_message(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "ml_service" / "gunicorn.conf.py")],
        cwd=ROOT, env={**env, "BIND": f"127.0.0.1:{free_port()}"}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "missing required environment variable(s): USER_DB_URL" in result.stderr


@pytest.mark.parametrize(
    "cmd_args",
    ["", "--access-logfile -", "--access-logfile - --access-logformat '%(r)s %(s)s'"],
    ids=["defaults", "access-logfile", "access-logformat"],
)
def test_one_log_line_per_request_carrying_its_request_id(tmp_path, cmd_args):
    user, request_id = str(uuid.uuid4()), f"trace-{uuid.uuid4().hex}"
    with gunicorn_log(tmp_path, GUNICORN_WORKERS="1", GUNICORN_CMD_ARGS=cmd_args) as (base, lines):
        response = requests.get(f"{base}/api/recommendations/{user}?limit=3", headers={"X-Request-ID": request_id}, timeout=10)
        assert response.headers["X-Request-ID"] == request_id
    about_it = [line for line in lines if user in json.dumps(line)]
    assert len(about_it) == 1, about_it
    [line] = about_it
    assert line["logger"] == "ml_service.access" and line["request_id"] == request_id
    assert (line["path"], line["status"]) == (f"/api/recommendations/{user}", response.status_code)
    assert any(line["logger"] == "gunicorn.error" for line in lines)  # Gunicorn's own lines still come through


def rate_limit_warnings(lines) -> list[dict]:
    return [line for line in lines if "RATE_LIMIT=" in line["message"]]


def test_a_rate_limit_counted_per_worker_is_warned_about_once(tmp_path):
    with gunicorn_log(tmp_path, GUNICORN_WORKERS="2", RATE_LIMIT="100/second", RATE_LIMIT_STORAGE_URL="") as (_, lines):
        pass
    [warning] = rate_limit_warnings(lines)
    assert warning["logger"] == "gunicorn.error" and warning["level"] == "WARNING"
    master = [line["pid"] for line in lines if "Starting gunicorn" in line["message"]]
    assert [warning["pid"]] == master  # the master, not each worker
    message = warning["message"]
    assert "RATE_LIMIT=100/second" in message and "with 2 workers" in message and "2x" in message
    assert "RATE_LIMIT_STORAGE_URL=redis://" in message


@pytest.mark.parametrize(
    "env",
    [
        {"GUNICORN_WORKERS": "1", "RATE_LIMIT": "100/second"},
        {"GUNICORN_WORKERS": "2", "RATE_LIMIT": "100/second", "RATE_LIMIT_STORAGE_URL": "redis://127.0.0.1:1/0"},
        {"GUNICORN_WORKERS": "2", "RATE_LIMIT": ""},
    ],
    ids=["one-worker", "redis", "no-limit"],
)
def test_no_rate_limit_warning_when_the_limit_is_shared_or_off(tmp_path, env):
    with gunicorn_log(tmp_path, **{"RATE_LIMIT_STORAGE_URL": "", **env}) as (_, lines):
        pass
    assert lines and rate_limit_warnings(lines) == []
