"""A worker with a stuck request reports unhealthy and is replaced, without anyone restarting it."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import pytest
import requests

from ml_service.app import create_app
from ml_service.liveness import STUCK_GRACE, Liveness
from settings import Settings
from tests.conftest import free_port, settings_for, start_gunicorn, wait_for_http

pytestmark = pytest.mark.e2e


@pytest.fixture
def make_app(movielens_urls):
    apps = []

    def make():
        apps.append(create_app(settings_for(movielens_urls)))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["ml_service"].close()


def test_a_request_running_too_long_counts_as_stuck():
    liveness = Liveness(stuck_after=0.2)
    release = threading.Event()

    def request():
        liveness.started()
        release.wait()
        liveness.finished()

    thread = threading.Thread(target=request)
    thread.start()
    try:
        assert liveness.stuck() == 0
        time.sleep(0.3)
        assert liveness.stuck() == 1
    finally:
        release.set()
        thread.join()
    assert liveness.stuck() == 0


def test_health_fails_while_a_request_is_stuck(make_app):
    app = make_app()
    liveness = app.extensions["ml_service.liveness"]
    client = app.test_client()
    assert client.get("/health").status_code == 200
    liveness.stuck_after = 0.2
    release = threading.Event()
    thread = threading.Thread(target=lambda: (liveness.started(), release.wait(), liveness.finished()))
    thread.start()
    try:
        time.sleep(0.3)
        response = client.get("/health")
        assert response.status_code == 503 and response.get_json()["status"] == "unhealthy"
    finally:
        release.set()
        thread.join()
    assert client.get("/health").status_code == 200


def test_a_worker_with_a_stuck_request_replaces_itself(movielens_urls, tmp_path):
    port = free_port()
    log = tmp_path / "gunicorn.log"
    # The production config with one worker, so that /health reaches the stuck one.
    process = start_gunicorn(movielens_urls, port, log, "tests.e2e.hanging_wsgi:app", GUNICORN_WORKERS="1")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", process, log)
        first = requests.get(f"{base}/test/pid", timeout=5).json()["pid"]
        def hang():
            with contextlib.suppress(requests.RequestException):  # cut when the worker goes
                requests.get(f"{base}/test/hang", timeout=120)

        threading.Thread(target=hang, daemon=True).start()
        time.sleep(Settings.request_deadline_ms / 1000 + STUCK_GRACE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/test/pid", timeout=2).json()["pid"] != first:
                    break
            except requests.RequestException:
                pass  # between the old worker and the new one
            time.sleep(0.5)
        else:
            pytest.fail(f"the stuck worker was not replaced:\n{log.read_text()[-3000:]}")
        assert requests.get(f"{base}/health", timeout=5).status_code == 200
        assert "this worker cannot serve; stopping it" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
