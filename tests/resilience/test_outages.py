"""Real outages: three PostgreSQL servers (user_db, catalog_db, engagement_db), each stopped and
restarted while requests flow to Gunicorn. Degraded answers during the outage, full service
again within 5 seconds of the restart, without restarting the service.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from database.schema import apply_schema
from ml_service.__main__ import run_refresh
from ml_service.config import DatabaseUrls
from tests.conftest import free_port, serving, settings_for, start_gunicorn, wait_for_http
from tests.resilience.dataset import USER, assert_full_service, assert_without_engagement_db, assert_without_user_db, fill
from tests.resilience.servers import StoppableServer

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 3.0
RECOVERY_BOUND = 5.0
# Full answers in a row (from 3 clients, over both workers) that count as "recovered".
RECOVERED_STREAK = 20
SERVICE_ENV = {"GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "2", "POOL_TIMEOUT": "1", "DB_PROBE_INTERVAL": "0.5"}


@dataclass
class Answer:
    started: float
    elapsed: float
    status: int
    body: dict
    retry_after: str | None


class Traffic:
    """Clients requesting recommendations in a loop, recording every answer."""

    def __init__(self, base_url: str, clients: int = 3) -> None:
        self.url = f"{base_url}/api/recommendations/{USER}?limit=5"
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            response = requests.get(self.url, timeout=10)
            self.answers.append(
                Answer(started, time.monotonic() - started, response.status_code, response.json(), response.headers.get("Retry-After"))
            )
            time.sleep(0.02)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in list(self.answers) if start <= a.started < end]

    def wait_for_full_service(self, since: float, bound: float) -> float:
        """Seconds from `since` to the first answer of a lasting streak of full answers."""
        deadline = since + bound + 10
        while time.monotonic() < deadline:
            answers = self.between(since, float("inf"))
            streak = 0
            for answer in reversed(answers):
                if answer.status != 200 or answer.body["degraded"]:
                    break
                streak += 1
            if streak >= RECOVERED_STREAK:
                return answers[len(answers) - streak].started - since
            time.sleep(0.1)
        pytest.fail(f"no full service within {bound + 10} s of the restart")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("outages")
    servers = {name: StoppableServer(root / name / "data", f"{name}_db") for name in ("user", "catalog", "engagement")}
    urls = DatabaseUrls(
        user=servers["user"].url, catalog=servers["catalog"].url,
        engagement=servers["engagement"].url, model=servers["engagement"].url,
    )
    apply_schema(urls)
    fill(urls)
    run_refresh(settings_for(urls), progress=False)
    yield servers, urls
    for server in servers.values():
        server.start()  # in case a failed test left it stopped; cleanup stops and deletes it
        server.cleanup()


@pytest.fixture(scope="module")
def service(servers, tmp_path_factory):
    _, urls = servers
    with serving(urls, tmp_path_factory.mktemp("gunicorn"), **SERVICE_ENV) as base:
        yield base


def outage(servers, name: str, traffic: Traffic) -> tuple[list[Answer], list[Answer], float]:
    """Stop `name`'s server for OUTAGE_SECONDS; the answers during it, all answers, seconds to recover."""
    server = servers[0][name]
    stopped = time.monotonic()
    server.stop()
    time.sleep(OUTAGE_SECONDS)
    during = traffic.between(stopped + 1.5, time.monotonic())
    server.start()
    restarted = time.monotonic()
    recovery = traffic.wait_for_full_service(restarted, RECOVERY_BOUND)
    print(f"\noutage {name}_db: down {restarted - stopped:.1f} s, full service {recovery:.2f} s after the restart")
    return during, traffic.between(stopped, float("inf")), recovery


def test_user_db_outage_degrades_then_recovers(servers, service):
    with Traffic(service) as traffic:
        time.sleep(0.5)
        during, everything, recovery = outage(servers, "user", traffic)
    assert len(during) >= 10
    for answer in during:
        assert answer.status == 200
        assert_without_user_db(answer.body)
        assert answer.elapsed < 1.0  # known down: no waiting for the pool
    assert all(a.status == 200 for a in everything)
    assert recovery <= RECOVERY_BOUND


def test_engagement_db_outage_degrades_then_recovers(servers, service):
    with Traffic(service) as traffic:
        time.sleep(0.5)
        during, everything, recovery = outage(servers, "engagement", traffic)
    assert len(during) >= 10
    for answer in during:
        assert answer.status == 200
        assert_without_engagement_db(answer.body)
        assert answer.elapsed < 1.0
    assert all(a.status == 200 for a in everything)
    assert recovery <= RECOVERY_BOUND


def test_catalog_db_outage_answers_503_with_retry_after_then_recovers(servers, service):
    with Traffic(service) as traffic:
        time.sleep(0.5)
        during, everything, recovery = outage(servers, "catalog", traffic)
    assert len(during) >= 10
    for answer in during:
        assert answer.status == 503 and answer.retry_after == "1"
        assert answer.body["error"]["code"] == "database_unavailable"
        assert answer.elapsed < 1.0
    assert {a.status for a in everything} <= {200, 503}
    assert recovery <= RECOVERY_BOUND


def test_a_worker_started_without_its_model_database_recovers_the_model(servers, tmp_path):
    server_map, urls = servers
    server_map["engagement"].stop()  # holds the model tables too
    port = free_port()
    log = tmp_path / "gunicorn.log"
    process = start_gunicorn(urls, port, log, **SERVICE_ENV)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", process, log)
        ready = requests.get(f"{base}/health/ready", timeout=10).json()
        assert ready["status"] == "degraded" and ready["checks"]["model"] == "missing"
        with Traffic(base) as traffic:
            time.sleep(2.0)
            starting = time.monotonic()
            server_map["engagement"].start()
            restarted = time.monotonic()
            recovery = traffic.wait_for_full_service(restarted, RECOVERY_BOUND)
        print(f"\nfresh workers without engagement_db (model): full service {recovery:.2f} s after the restart")
        during = traffic.between(0, starting)
        assert len(during) >= 10
        for answer in during:
            assert answer.status == 200
            assert_without_engagement_db(answer.body, also=("model",))
        assert recovery <= RECOVERY_BOUND
        assert_full_service(traffic.answers[-1].body)
    finally:
        server_map["engagement"].start()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
