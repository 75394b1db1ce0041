"""Latency of the two recommendation calls over HTTP, through the production Gunicorn config.

    .venv/bin/python bench/http_latency.py [PGDATA]

Starts (or reuses) an embedded PostgreSQL in PGDATA (default: a new temporary directory),
imports the bundled MovieLens, refreshes, starts Gunicorn (4 workers x 2 threads), then times
200 sequential single calls and 20 sequential 50-user batch calls from one client and prints
the median, p95 and max. One client, sequential: this is latency, not throughput.
"""

from __future__ import annotations

import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from database.embedded import create_databases, start_embedded  # noqa: E402
from database.schema import apply_schema  # noqa: E402
from ml_service.jobs import run_refresh  # noqa: E402
from services.movielens_import import import_movielens, user_uuid  # noqa: E402
from tests.conftest import free_port, settings_for, start_gunicorn, wait_for_http  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    return sorted(values)[max(0, int(len(values) * fraction) - 1)]


def report(name: str, values: list[float]) -> None:
    print(f"{name}: median {statistics.median(values):.1f} ms, p95 {percentile(values, 0.95):.1f} ms, max {max(values):.1f} ms")


def main(pgdata: str | None = None) -> None:
    data_dir = Path(pgdata or tempfile.mkdtemp(prefix="ml-service-bench-")) / "pg"
    # A temporary server is deleted when this process exits; one in PGDATA is only stopped.
    server = start_embedded(data_dir, cleanup_mode="stop" if pgdata else "delete")
    urls = create_databases(server)
    apply_schema(urls, sources=True)
    import_movielens(ROOT / "data" / "ml-latest-small", urls, progress=False)
    run_refresh(settings_for(urls), progress=False)
    port, log = free_port(), data_dir.parent / "gunicorn.log"
    process = start_gunicorn(urls, port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health/ready", process, log)
        session = requests.Session()
        for i in range(1, 20):  # warm every worker's model and pools
            session.get(f"{base}/api/recommendations/{user_uuid(i)}", timeout=30)
        single = []
        for i in range(1, 201):
            started = time.perf_counter()
            session.get(f"{base}/api/recommendations/{user_uuid(i)}", timeout=30).raise_for_status()
            single.append((time.perf_counter() - started) * 1000)
        batch = []
        for k in range(20):
            ids = [str(user_uuid(i)) for i in range(1 + 25 * k, 51 + 25 * k)]
            started = time.perf_counter()
            session.post(f"{base}/api/recommendations/batch", json={"user_ids": ids}, timeout=30).raise_for_status()
            batch.append((time.perf_counter() - started) * 1000)
        report("single user, limit 10 (200 calls)", single)
        report("batch of 50 users, limit 10 (20 calls)", batch)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        if not pgdata:
            log.unlink(missing_ok=True)  # the data directory itself goes with the server


if __name__ == "__main__":
    main(*sys.argv[1:2])
