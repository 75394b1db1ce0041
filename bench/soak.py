"""Soak: the service under steady load for a long time, watching errors and each worker's memory.

    python -m bench.soak                      # 10 minutes, embedded PostgreSQL with MovieLens
    python -m bench.soak --duration 180 --rate 40 --clients 4 --workers 2

Sets up like `make demo` (embedded PostgreSQL in bench/out/soak-pg, MovieLens imported and
refreshed once, kept for later runs), starts Gunicorn with the production config, and sends
`--rate` requests per second (a mix: 70% single user, 20% batch of 10, 10% unknown user) from
`--clients` threads for `--duration` seconds. Every `--sample-every` seconds it records the RSS
of each Gunicorn worker. At the end it prints, and writes to bench/out/soak-<time>.json, the
request and error counts, latency percentiles and, per worker, the RSS at start and end and
the least-squares slope of RSS over time after the warm-up and over the last half of the run
(MiB per hour): a leak shows as a slope that stays positive however long the run. Not run in CI (it takes minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
MIB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second in total (default 50)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="Gunicorn workers (default 2)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds excluded from the slope")
    parser.add_argument("--pgdata", type=Path, default=OUT / "soak-pg")
    parser.add_argument("--port", type=int, default=5099)
    args = parser.parse_args(argv)

    urls = prepare_databases(args.pgdata)
    log = OUT / "soak-gunicorn.log"
    env = {
        **os.environ,
        "USER_DB_URL": urls.user, "CATALOG_DB_URL": urls.catalog,
        "ENGAGEMENT_DB_URL": urls.engagement, "MODEL_DB_URL": urls.model,
        "BIND": f"127.0.0.1:{args.port}", "GUNICORN_WORKERS": str(args.workers), "LOG_LEVEL": "WARNING",
    }
    with log.open("w") as out:
        master = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "ml_service" / "gunicorn.conf.py")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{args.port}"
    try:
        wait_ready(base, master)
        report = soak(base, master.pid, args)
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(60)
    report["gunicorn_log"] = str(log)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print_report(report, path)
    return 0 if report["errors"] == 0 else 1


def prepare_databases(pgdata: Path):
    """The embedded server with MovieLens imported and a model published (done once, then reused)."""
    sys.path.insert(0, str(ROOT))
    from database.embedded import create_databases, start_embedded
    from database.schema import apply_schema
    from ml_service.__main__ import run_refresh
    from ml_service.config import Settings
    from services.movielens_import import import_movielens

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = start_embedded(pgdata.resolve(), cleanup_mode="stop")
    urls = create_databases(server)
    prepare_databases.server = server  # keep the handle: the server stops when it is collected
    marker = pgdata / ".soak-ready"
    if not marker.exists():
        apply_schema(urls)
        import_movielens(ROOT / "data" / "ml-latest-small", urls, progress=False)
        run_refresh(Settings(databases=urls), progress=False)
        marker.touch()
    return urls


def wait_ready(base: str, master: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise SystemExit(f"gunicorn exited with {master.returncode}; see bench/out/soak-gunicorn.log")
        try:
            if requests.get(f"{base}/health/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit("the service did not become ready")


def soak(base: str, master_pid: int, args) -> dict:
    from services.movielens_import import user_uuid

    users = [str(user_uuid(i)) for i in range(1, 611)]
    statuses: Counter = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    interval = args.clients / args.rate  # each client paces itself to rate / clients per second

    def client(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        next_at = time.monotonic()
        while not stop.is_set():
            roll = rng.random()
            started = time.monotonic()
            try:
                if roll < 0.7:
                    response = session.get(f"{base}/api/recommendations/{rng.choice(users)}", timeout=30)
                elif roll < 0.9:
                    response = session.post(
                        f"{base}/api/recommendations/batch", json={"user_ids": rng.sample(users, 10)}, timeout=30
                    )
                else:
                    response = session.get(f"{base}/api/recommendations/{rng.getrandbits(128):032x}", timeout=30)
                outcome = response.status_code
                if outcome == 200 and response.json().get("degraded"):
                    outcome = "200-degraded"
            except requests.RequestException as error:
                outcome = type(error).__name__
            with lock:
                statuses[outcome] += 1
                latencies.append(time.monotonic() - started)
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    master = psutil.Process(master_pid)
    samples: list[dict] = []
    threads = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(args.clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while time.monotonic() - started < args.duration:
        rss = {}
        for worker in master.children():
            try:
                rss[str(worker.pid)] = worker.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        samples.append({"t": round(time.monotonic() - started, 1), "rss": rss})
        time.sleep(min(args.sample_every, max(0.0, args.duration - (time.monotonic() - started))))
    stop.set()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started

    workers = {}
    for pid in sorted({pid for sample in samples for pid in sample["rss"]}):
        series = [(s["t"], s["rss"][pid]) for s in samples if pid in s["rss"]]
        steady = [(t, r) for t, r in series if t >= args.warmup] or series
        workers[pid] = {
            "rss_start_mib": round(series[0][1] / MIB, 1),
            "rss_end_mib": round(series[-1][1] / MIB, 1),
            "rss_max_mib": round(max(r for _, r in series) / MIB, 1),
            "slope_mib_per_hour": round(slope(steady) * 3600 / MIB, 2),
            # Allocator and cache warm-up can last minutes: the second half shows a leak alone.
            "slope_last_half_mib_per_hour": round(slope(series[len(series) // 2 :]) * 3600 / MIB, 2),
            "samples": len(series),
        }
    ordered = sorted(latencies)
    total = sum(statuses.values())
    errors = sum(n for status, n in statuses.items() if status not in (200,))
    return {
        "duration_s": round(elapsed, 1),
        "requests": total,
        "rate_per_s": round(total / elapsed, 1),
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "latency_ms": {
            "p50": round(1000 * ordered[len(ordered) // 2], 1) if ordered else None,
            "p99": round(1000 * ordered[int(len(ordered) * 0.99)], 1) if ordered else None,
            "max": round(1000 * ordered[-1], 1) if ordered else None,
            "mean": round(1000 * statistics.fmean(ordered), 1) if ordered else None,
        },
        "workers": workers,
        "rss_samples": samples,
        "settings": {k: v for k, v in vars(args).items() if k != "pgdata"},
    }


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value) points; 0 for fewer than two."""
    if len(points) < 2:
        return 0.0
    ts = [t for t, _ in points]
    vs = [v for _, v in points]
    mean_t, mean_v = statistics.fmean(ts), statistics.fmean(vs)
    denominator = sum((t - mean_t) ** 2 for t in ts)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / denominator if denominator else 0.0


def print_report(report: dict, path: Path) -> None:
    print(
        f"soak: {report['duration_s']} s, {report['requests']} requests ({report['rate_per_s']}/s), "
        f"errors {report['errors']}, statuses {report['statuses']}, latency ms {report['latency_ms']}"
    )
    for pid, worker in report["workers"].items():
        print(
            f"  worker {pid}: RSS {worker['rss_start_mib']} -> {worker['rss_end_mib']} MiB "
            f"(max {worker['rss_max_mib']}), slope after warm-up {worker['slope_mib_per_hour']} MiB/h, "
            f"over the last half {worker['slope_last_half_mib_per_hour']} MiB/h ({worker['samples']} samples)"
        )
    print(f"report: {path}")


if __name__ == "__main__":
    sys.exit(main())
