"""The cost of experiments at scale: `python -m bench.experiments [--pages 1000000]`.

On an embedded PostgreSQL of its own (--pgdata, emptied first): writes PAGES impressions of 10
media each the way a worker's writer does (ImpressionLog.flush: binary COPY in batches), for
the write cost per 1,000 pages (the writer's CPU, the server's, the disk), then the users'
interactions, and times `experiments report` over them.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg

from database.experiment_repository import ExperimentRepository
from database.pools import open_databases
from database.records import Impression
from services.impressions import ImpressionLog

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments", description=__doc__.splitlines()[0])
    parser.add_argument("--pgdata", type=Path, default=ROOT / ".bench" / "experiments-pgdata")
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--media", type=int, default=20_000)
    args = parser.parse_args(argv)

    from database.embedded import create_databases, start_embedded
    from database.schema import apply_schema
    from ml_service.jobs import experiment_report, start_experiment
    from settings import Settings

    shutil.rmtree(args.pgdata, ignore_errors=True)
    server = start_embedded(args.pgdata.resolve(), cleanup_mode="delete")
    urls = create_databases(server)
    apply_schema(urls, sources=True)
    settings = Settings(databases=urls)
    start_experiment(settings, "scale", ["control", "b:CONTENT_WEIGHT=0.3"], salt="bench")
    with psycopg.connect(urls.model) as conn:  # started before the hour of pages below
        conn.execute("UPDATE ml.experiments SET started_at = now() - interval '2 hours' WHERE name = 'scale'")
    rng = np.random.default_rng(0)
    users = [uuid.UUID(bytes=rng.bytes(16)) for _ in range(args.users)]
    media = [uuid.UUID(bytes=rng.bytes(16)) for _ in range(args.media)]
    from services.experiments.assignment import assign

    experiment = ExperimentRepository(open_databases(settings).model).running()
    now = datetime.now(timezone.utc)
    page_user = rng.integers(0, args.users, args.pages)
    page_media = rng.zipf(1.3, (args.pages, 10)) % args.media
    offsets = rng.uniform(0, 3600, args.pages)

    databases = open_databases(settings, statement_timeout_ms=0)
    log = ImpressionLog(ExperimentRepository(databases.model), capacity=args.pages, retention_days=30)
    variant = {u: assign(experiment, u).name for u in users}
    impressions = [
        Impression(now - timedelta(seconds=float(offsets[i])), uuid.uuid4().hex, users[page_user[i]], "scale",
                   variant[users[page_user[i]]], 1, "recommendations", tuple(media[m] for m in page_media[i]))
        for i in range(args.pages)
    ]
    log.record(impressions)
    del impressions
    with psycopg.connect(urls.model) as conn:
        before = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    cpu, wall = time.process_time(), time.perf_counter()
    server_cpu = _server_cpu(server)
    written = log.flush()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server_cpu = _server_cpu(server) - server_cpu
    with psycopg.connect(urls.model, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        after = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    per = 1000 / written
    print(f"wrote {written:,} pages of 10 media in {wall:.1f} s: per 1,000 pages {wall * per * 1000:.1f} ms wall, "
          f"{cpu * per * 1000:.1f} ms writer CPU, {server_cpu * per * 1000:.1f} ms PostgreSQL CPU, "
          f"{(after - before) * per / 1024:.0f} KiB on disk")

    # A third of the users like or watch 1-3 media in the day after: some shown to them, some not.
    rows = []
    start = now - timedelta(hours=1)
    by_user = np.argsort(page_user, kind="stable")
    bounds = np.searchsorted(page_user[by_user], np.arange(args.users + 1))
    for u in rng.choice(args.users, args.users // 3, replace=False).tolist():
        for _ in range(int(rng.integers(1, 4))):
            shown = page_media[by_user[bounds[u]:bounds[u + 1]]]
            m = int(shown[rng.integers(len(shown)), rng.integers(10)]) if len(shown) and rng.random() < 0.5 \
                else int(rng.integers(args.media))
            at = start + timedelta(seconds=float(rng.uniform(0, 30 * 3600)))
            rows.append((len(rows) + 1, users[u], media[m], "LIKE" if rng.random() < 0.3 else "WATCH",
                         at.replace(tzinfo=None)))
    with psycopg.connect(urls.engagement) as conn, conn.cursor() as cur:
        with cur.copy('COPY interaction (id, user_id, media_id, type, "timestamp") FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
    databases.close()
    wall, peak = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = experiment_report(settings, "scale", 24.0)
    wall = time.perf_counter() - wall
    exposed = sum(v["users"] for v in report["variants"].values())
    print(f"report over {written:,} impressions, {exposed:,} exposed users, {len(rows):,} interactions: "
          f"{wall:.1f} s (attribution and statistics {report['seconds']:.1f} s)")
    for name, v in report["variants"].items():
        print(f"  {name}: users {v['users']:,} converted {v['converted_users']:,} rate {v['conversion_rate']:.4f}")
    server.cleanup()
    return 0


def _server_cpu(server) -> float:
    """CPU seconds used so far by the server's processes (postmaster and backends)."""
    import psutil

    with psycopg.connect(server.get_uri()) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    root = psutil.Process(pid).parent()
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


if __name__ == "__main__":
    raise SystemExit(main())
