"""The model database and the refresh job when a database dies: three PostgreSQL servers
(user_db, catalog_db, engagement_db holding the model tables) that the tests stop and start.

Every fault of the serving path under traffic is in tests/faults (the fault matrix); here:
a worker started without its model database, the model database dying during a reload, and
engagement_db dying in the middle of a refresh.
"""

from __future__ import annotations

import signal
import time

import pytest
import requests

from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.model_repository import ModelRepository
from database.pools import Unavailable, open_databases
from database.schema import apply_schema
from ml_service.app import build_runtime
from ml_service.jobs import neighbour_settings, run_refresh
from services.refresh import RefreshFailed, refresh
from settings import DatabaseUrls
from tests.conftest import free_port, settings_for, start_gunicorn, wait_for_http
from tests.faults.scenario import Traffic, wait_for_full_service
from tests.resilience.dataset import USER, assert_full_service, assert_without_engagement_db, fill
from tests.resilience.servers import StoppableServer

pytestmark = pytest.mark.e2e

RECOVERY_BOUND = 5.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("outages")
    servers = {name: StoppableServer(root / name / "data", f"{name}_db") for name in ("user", "catalog", "engagement")}
    urls = DatabaseUrls(
        user=servers["user"].url, catalog=servers["catalog"].url,
        engagement=servers["engagement"].url, model=servers["engagement"].url,
    )
    apply_schema(urls, sources=True)
    fill(urls)
    run_refresh(settings_for(urls), progress=False)
    yield servers, urls
    for server in servers.values():
        server.start()  # in case a failed test left it stopped; cleanup stops and deletes it
        server.cleanup()


def test_a_worker_started_without_its_model_database_recovers_the_model(servers, tmp_path):
    server_map, urls = servers
    server_map["engagement"].stop()  # holds the model tables too
    port = free_port()
    log = tmp_path / "gunicorn.log"
    process = start_gunicorn(urls, port, log)  # production defaults
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", process, log)
        ready = requests.get(f"{base}/health/ready", timeout=10).json()
        assert ready["status"] == "degraded" and ready["checks"]["model"] == "missing"
        with Traffic(f"{base}/api/recommendations/{USER}?limit=5", clients=3) as traffic:
            time.sleep(2.0)
            starting = time.monotonic()
            server_map["engagement"].start()
            restarted = time.monotonic()
            wait_for_full_service(traffic, timeout=RECOVERY_BOUND + 10)
            recovery = traffic.full_since(restarted) - restarted
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


def test_the_model_database_dying_during_a_reload_leaves_the_model_serving(servers):
    server_map, urls = servers
    runtime = build_runtime(settings_for(urls, model_reload_interval=0.5))
    try:
        served = runtime.models.current().info.version
        server_map["engagement"].stop()
        with pytest.raises(Unavailable):
            runtime.models.reload()  # what the loader runs every MODEL_RELOAD_INTERVAL
        assert runtime.models.current().info.version == served
        page = runtime.recommender.recommend(USER, limit=5)
        assert page.count == 5 and page.degraded == ("engagement_db",)
        server_map["engagement"].start()
        newer = run_refresh(settings_for(urls), progress=False)
        deadline = time.monotonic() + 10
        while runtime.models.current().info.version != newer and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runtime.models.current().info.version == newer  # picked up with no request in between
    finally:
        server_map["engagement"].start()
        runtime.close()


class DyingEngagement(EngagementRepository):
    """Stops engagement_db's server (which holds the model tables too) before or after the interactions are read."""

    def __init__(self, db, server: StoppableServer, when: str) -> None:
        super().__init__(db)
        self._server = server
        self._when = when

    def user_media_pairs(self, chunk_rows: int = 1_000_000):
        if self._when == "before reading":
            self._server.stop()
        yield from super().user_media_pairs(chunk_rows=2)
        if self._when == "before publishing":
            self._server.stop()


@pytest.mark.parametrize(
    "when, failed_step",
    [
        ("before reading", "reading interactions from engagement_db"),
        ("before publishing", "publishing to the model database"),
    ],
)
def test_engagement_db_dying_mid_refresh_fails_clearly_and_publishes_nothing(servers, when, failed_step):
    server_map, urls = servers
    databases = open_databases(settings_for(urls), statement_timeout_ms=0, pool_timeout=10.0)
    models = ModelRepository(databases.model)
    published = models.serving_version()
    started = time.monotonic()
    try:
        with pytest.raises(RefreshFailed, match=f"^{failed_step} failed: .*; nothing was published$"):
            refresh(
                CatalogRepository(databases.catalog),
                DyingEngagement(databases.engagement, server_map["engagement"], when),
                models,
                neighbour_settings=neighbour_settings(settings_for(urls)),
                half_life_days=365.0,
                progress=False,
            )
        assert time.monotonic() - started < 5.0  # a refused connection is not waited for
    finally:
        server_map["engagement"].start()
        databases.close()
    databases = open_databases(settings_for(urls), statement_timeout_ms=0)
    try:
        assert ModelRepository(databases.model).serving_version() == published
    finally:
        databases.close()
