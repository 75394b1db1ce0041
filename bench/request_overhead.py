"""What the metrics and the JSON request log add to each request, in one process and one run.

    .venv/bin/python bench/request_overhead.py [requests]

Times GET /health (touches no database) through the Flask test client, with and without
register_metrics and register_request_logging, alternating the two apps five times, and
prints the best and median microseconds per request of each and their difference. Run on a
quiet machine; compare numbers from the same run only.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ml_service.app as app_module  # noqa: E402
from settings import DatabaseUrls, Settings  # noqa: E402

# /health touches no database; the pools try this closed port in the background and give up.
URL = "postgresql://bench@127.0.0.1:1/none"
SETTINGS = Settings(databases=DatabaseUrls(URL, URL, URL, URL))


def build(instrumented: bool):
    real = app_module.register_metrics, app_module.register_request_logging
    if not instrumented:
        app_module.register_metrics = app_module.register_request_logging = lambda app: None
    try:
        return app_module.create_app(SETTINGS)
    finally:
        app_module.register_metrics, app_module.register_request_logging = real


def main(n: int = 2000) -> None:
    logging.getLogger().handlers[:] = [logging.NullHandler()]  # format nothing: measure the hooks
    logging.getLogger().setLevel("INFO")
    apps = {"instrumented": build(True), "bare": build(False)}
    clients = {name: app.test_client() for name, app in apps.items()}
    times: dict[str, list[float]] = {name: [] for name in apps}
    for client in clients.values():
        for _ in range(200):
            client.get("/health")
    for _ in range(5):
        for name, client in clients.items():
            started = time.perf_counter()
            for _ in range(n):
                client.get("/health")
            times[name].append((time.perf_counter() - started) / n * 1e6)
    for name, values in times.items():
        print(f"{name:>12}: best {min(values):6.1f} us/request, median {statistics.median(values):6.1f}")
    print(f"  difference: {min(times['instrumented']) - min(times['bare']):6.1f} us/request (best vs best)")
    for app in apps.values():
        app.extensions["ml_service"].close()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
