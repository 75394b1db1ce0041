"""Where one request's time goes: `python -m bench.profile_request [--batch 50] [--requests 300]`.

Runs in one process against the databases named by *_DB_URL (no HTTP, no concurrency): times
each stage of a recommendation (the three queries, user signals, ranking) and the whole
request through Flask (routing, schema, JSON) with random real user ids, and prints medians.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from uuid import UUID

import psycopg

from ml_service.app import create_app
from services import scoring
from services.recommendation_service import DELETED_SLACK
from settings import Settings


def _loaded_model(models, wait: float = 300.0):
    """The serving model, once the loader has it (a large one takes longer than the app's boot wait)."""
    from services.errors import ModelUnavailable

    deadline = time.monotonic() + wait
    while True:
        try:
            return models.current()
        except ModelUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Print the median and p99 milliseconds of each stage."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_request")
    parser.add_argument("--batch", type=int, default=1, help="users per request")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    app = create_app(settings)
    client = app.test_client()
    runtime = app.extensions["ml_service"]
    service = runtime.recommender
    model = _loaded_model(runtime.models)
    with psycopg.connect(settings.databases.user) as conn:
        ids = [row[0] for row in conn.execute("SELECT user_id FROM user_preferences")]
    rng = random.Random(1)
    stages: dict[str, list[float]] = {}

    def timed(name: str, started: float) -> float:
        now = time.perf_counter()
        stages.setdefault(name, []).append(1000 * (now - started))
        return now

    for round_ in range(args.requests + 20):
        users = rng.sample(ids, min(args.batch, len(ids)))
        t = time.perf_counter()
        profiles = service._users.profiles_by_ids(users)
        t = timed("query user_db (profiles)", t)
        histories = service._engagement.histories_by_user_ids(users)
        t = timed("query engagement_db (histories)", t)
        signals = {u: scoring.user_signals(model, profiles[u].genres, histories.get(u)) for u in users}
        t = timed("user_signals", t)
        weights = service._defaults(model).weights
        rankings = {u: scoring.rank_for_user(model, signals[u], weights, 10 + DELETED_SLACK) for u in users}
        t = timed("rank_for_user", t)
        candidates = {int(i) for r in rankings.values() for i in r.media_idx}
        service._catalog.media_by_ids([UUID(bytes=model.media_ids[i].tobytes()) for i in candidates])
        t = timed("query catalog_db (media)", t)
        if args.batch == 1:
            response = client.get(f"/api/recommendations/{users[0]}")
        else:
            response = client.post("/api/recommendations/batch", json={"user_ids": [str(u) for u in users]})
        assert response.status_code == 200, response.get_data(as_text=True)
        timed("whole request through Flask", t)
        if round_ == 19:
            stages.clear()  # warm-up: prepared statements, caches
    print(f"{args.requests} requests of {args.batch} user(s); model: {len(model.media_ids):,} media, "
          f"{len(model.neighbour_idx):,} neighbour pairs")
    print(f"{'stage':34s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, values in stages.items():
        values.sort()
        print(f"{name:34s} {statistics.median(values):8.2f} {values[int(0.99 * (len(values) - 1))]:8.2f}")
    runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
