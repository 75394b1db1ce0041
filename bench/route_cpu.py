"""Process CPU per request of the recommendation routes, in one process through Flask's test
client (no HTTP, no concurrency), on the demo's databases (`make demo` once first):

    python -m bench.route_cpu [--pgdata .demo/pgdata] [--requests 200]

For A/B figures, run it from two checkouts in turn, several rounds, and compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from database.embedded import create_databases, start_embedded
from ml_service.app import create_app
from services.movielens_import import media_uuid, user_uuid
from settings import Settings

ROUTES = {
    "single": lambda user: f"/api/recommendations/{user}",
    "similar": lambda user: f"/api/media/{media_uuid(1527)}/similar",
    "similar_user": lambda user: f"/api/media/{media_uuid(1527)}/similar?user_id={user}",
    "because": lambda user: f"/api/recommendations/{user_uuid(1)}?because={media_uuid(1)}",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pgdata", type=Path, default=Path(".demo/pgdata"))
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    urls = create_databases(start_embedded(args.pgdata.resolve(), cleanup_mode=None))
    logging.disable(logging.WARNING)
    app = create_app(Settings(databases=urls, model_reload_interval=3600.0))
    client = app.test_client()
    deadline = time.monotonic() + 30
    while client.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    users = [user_uuid(n) for n in range(1, args.requests + 1)]
    ms = {}
    for name, path in ROUTES.items():
        for user in users[:20]:  # warm-up
            client.get(path(user))
        started = time.process_time()
        for user in users:
            assert client.get(path(user)).status_code == 200
        ms[name] = round((time.process_time() - started) / len(users) * 1e3, 3)
    print(json.dumps(ms))
    app.extensions["ml_service"].close()


if __name__ == "__main__":
    main()
