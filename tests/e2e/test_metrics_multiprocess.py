"""Gunicorn with 4 workers in Prometheus multiprocess mode: /metrics adds up every worker, logs are JSON."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from services.movielens_import import user_uuid
from tests.conftest import ROOT, free_port, start_gunicorn, wait_for_http

pytestmark = pytest.mark.e2e
RULE = "/api/recommendations/<user_id:user_id>"  # the rule as Flask names it (converter excludes "batch")
SINGLE, BATCH = 60, 6


@pytest.fixture(scope="module")
def server(movielens_urls, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    metrics_dir = tmp / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over from an earlier run")
    port = free_port()
    log = tmp / "gunicorn.log"
    process = start_gunicorn(movielens_urls, port, log, GUNICORN_WORKERS="4", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", process, log)
        yield base, process, log, metrics_dir, port
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()


def scrape(base: str) -> dict[tuple, float]:
    text = requests.get(f"{base}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)


def access_lines(log) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "ml_service.access"]


def all_workers_ready(base: str, metrics_dir, workers: int = 4, timeout: float = 60.0) -> None:
    """Wait until every worker has loaded its model (the first answers /health before the others)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(metrics_dir.glob("gauge_livesum_*.db"))) == workers and \
                value(scrape(base), "ml_workers_without_model") == 0:
            return
        time.sleep(0.2)
    pytest.fail("the workers did not all load their model")


def test_counts_add_up_across_workers_and_dead_workers_are_marked(server):
    base, process, log, metrics_dir, _ = server
    assert not (metrics_dir / "counter_999999.db").exists(), "the directory was not cleaned on start"
    all_workers_ready(base, metrics_dir)
    users = [str(user_uuid(i)) for i in range(1, SINGLE + 1)]
    single_sent = batch_sent = 0
    served_by: set[int] = set()
    # Requests go to whichever worker accepts first; on a busy machine one worker may take a
    # whole round, so rounds go on until at least two workers have served (nothing to add up otherwise).
    for _ in range(20):
        with ThreadPoolExecutor(8) as pool:
            singles = list(pool.map(lambda u: requests.get(f"{base}/api/recommendations/{u}", timeout=30), users))
            batches = list(pool.map(
                lambda i: requests.post(f"{base}/api/recommendations/batch", json={"user_ids": users[i:i + 5]}, timeout=30),
                range(BATCH),
            ))
        assert [r.status_code for r in singles + batches] == [200] * (SINGLE + BATCH)
        single_sent, batch_sent = single_sent + SINGLE, batch_sent + BATCH
        served_by = {line["pid"] for line in access_lines(log) if line["path"].startswith("/api/recommendations/")}
        if len(served_by) >= 2:
            break
    assert len(served_by) >= 2, "all requests went to one worker: nothing was aggregated"

    count = "flask_http_request_duration_seconds_count"
    for _ in range(4):  # whichever worker answers the scrape reports every worker's requests
        samples = scrape(base)
        assert value(samples, count, method="GET", status=200, url_rule=RULE) == single_sent
        assert value(samples, count, method="POST", status=200, url_rule="/api/recommendations/batch") == batch_sent
        assert value(samples, "ml_recommendation_duration_seconds_count", endpoint="single") == single_sent
        assert value(samples, "ml_recommendation_pages_total", endpoint="single", fallback="none") == single_sent
        assert value(samples, "ml_db_pool_max_connections", database="user_db") == 4 * 4
        assert sum(value(samples, "ml_recommended_items_total", source=s) for s in ("hybrid", "popular")) == (
            single_sent * 10 + batch_sent * 5 * 10
        )
        assert value(samples, "ml_workers_without_model") == 0
    assert not any(user in requests.get(f"{base}/metrics", timeout=10).text for user in users)

    # Kill a worker that served requests: Gunicorn replaces it, child_exit drops its live gauges,
    # its counters stay in the totals.
    victim = sorted(served_by)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("gauge_livesum_*.db")}
        if victim not in live and len(live) == 4:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"live gauge files after the kill: {sorted(live)} (victim {victim})\n{log.read_text()[-3000:]}")
    time.sleep(1)  # the replacement worker sets its gauges right after creating them
    samples = scrape(base)
    assert value(samples, "ml_db_pool_max_connections", database="user_db") == 4 * 4
    assert value(samples, count, method="GET", status=200, url_rule=RULE) == single_sent


def test_one_json_access_line_per_request_with_the_request_id(server):
    base, _, log, _, _ = server
    response = requests.get(f"{base}/api/recommendations/{user_uuid(7)}", headers={"X-Request-ID": "e2e-check-1"}, timeout=30)
    assert response.headers["X-Request-ID"] == "e2e-check-1"
    generated = requests.get(f"{base}/nowhere", timeout=10)
    assert generated.status_code == 404
    time.sleep(0.5)
    lines = access_lines(log)
    [mine] = [line for line in lines if line["request_id"] == "e2e-check-1"]
    assert (mine["method"], mine["path"], mine["status"]) == ("GET", f"/api/recommendations/{user_uuid(7)}", 200)
    assert mine["duration_ms"] > 0
    [missing] = [line for line in lines if line["request_id"] == generated.headers["X-Request-ID"]]
    assert missing["status"] == 404
    # Gunicorn's own lines are JSON too (booting workers, the worker killed above).
    everything = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in everything)


def test_the_container_health_check_command(server):
    _, _, _, _, port = server
    env = {**os.environ, "BIND": f"0.0.0.0:{port}"}
    ok = subprocess.run([sys.executable, "-m", "ml_service.healthcheck"], cwd=ROOT, env=env, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    env["BIND"] = f"0.0.0.0:{free_port()}"
    down = subprocess.run([sys.executable, "-m", "ml_service.healthcheck"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and "unhealthy" in down.stderr
