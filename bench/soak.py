"""Soak: the service under steady load for a long time, watching errors and each worker's memory.

    python -m bench.soak                      # 10 minutes, embedded PostgreSQL with MovieLens
    python -m bench.soak --duration 180 --rate 40 --clients 4 --workers 2
    python -m bench.soak --faults             # on the fault harness, a database fault every minute (root)

Sets up like `make demo` (embedded PostgreSQL in bench/out/soak-pg, MovieLens imported and
refreshed once, kept for later runs), starts Gunicorn with the production config, and sends
`--rate` requests per second (a mix: 70% single user, 20% batch of 10, 10% unknown user) from
`--clients` threads for `--duration` seconds. Every `--sample-every` seconds it records the RSS
of each Gunicorn worker. At the end it prints, and writes to bench/out/soak-<time>.json, the
request and error counts, latency percentiles and, per worker, the RSS at start and end and
the least-squares slope of RSS over time after the warm-up and over the last half of the run
(MiB per hour): a leak shows as a slope that stays positive however long the run. Not run in CI (it takes minutes).

With `--faults` the same load goes to the fault harness's stack instead (tests/faults/scenario.py:
user_db, catalog_db and engagement_db on three PostgreSQL hosts in network namespaces, Gunicorn
with the production config and defaults, 4 workers × 2 threads; `--workers`, `--pgdata` and
`--port` do not apply), MovieLens imported into it beside its small data set and refreshed, each
request on a new connection so that every worker meets every fault. Every `--fault-every` seconds,
from half an interval in, one (database, fault) of DATABASES × FAULTS but "stopped 60 s" is
staged for its duration (0-15 s) and healed. An error is then any answer but a 200, except a
503 while catalog_db is faulted or within 5 s after it healed; the report adds the schedule
with each fault's statuses and slowest answer, and writes bench/out/soak-faults-<time>.json.
Needs root (network namespaces, nftables, tc).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
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
    parser.add_argument("--faults", action="store_true", help="on the fault harness (tests/faults), with faults (root)")
    parser.add_argument("--fault-every", type=float, default=60.0, help="with --faults: seconds between faults")
    args = parser.parse_args(argv)

    report = soak_with_faults(args) if args.faults else soak_embedded(args)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"soak-{'faults-' if args.faults else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print_report(report, path)
    return 0 if report["errors"] == 0 else 1


def soak_embedded(args) -> dict:
    """The soak on the embedded server, with Gunicorn started here."""
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
    return report


def soak_with_faults(args) -> dict:
    """The soak on the fault harness's stack with MovieLens, a fault staged every `--fault-every` seconds."""
    from tests.faults.hosts import network_namespaces_work
    from tests.faults.scenario import Stack

    reason = network_namespaces_work()
    if reason:
        raise SystemExit(f"--faults: {reason}")
    log = OUT / "soak-faults-gunicorn.log"
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ml-soak-faults-") as root:
        Path(root).chmod(0o755)  # PostgreSQL runs as pgserver, in directories below it
        with Stack(Path(root), slot=0) as stack:
            master_pid = stack.gunicorn_pid
            try:
                load_movielens(stack, master_pid)
                report = soak(stack.base_url, master_pid, args, FaultCycle(stack, args.fault_every, args.duration))
            finally:
                shutil.copy(stack.log, log)  # the stack's directory goes with it
    report["gunicorn_log"] = str(log)
    return report


def prepare_databases(pgdata: Path):
    """The embedded server with MovieLens imported and a model published (done once, then reused)."""
    sys.path.insert(0, str(ROOT))
    from database.embedded import create_databases, start_embedded
    from database.schema import apply_schema
    from ml_service.jobs import run_refresh
    from services.movielens_import import import_movielens
    from settings import Settings

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = start_embedded(pgdata.resolve(), cleanup_mode="stop")
    urls = create_databases(server)
    prepare_databases.server = server  # keep the handle: the server stops when it is collected
    marker = pgdata / ".soak-ready"
    if not marker.exists():
        apply_schema(urls, sources=True)
        import_movielens(ROOT / "data" / "ml-latest-small", urls, progress=False)
        run_refresh(Settings(databases=urls), progress=False)
        marker.touch()
    return urls


def load_movielens(stack, master_pid: int, timeout: float = 120.0) -> None:
    """MovieLens into the running stack's databases, refreshed; returns once every worker serves that model."""
    from ml_service.jobs import run_refresh
    from services.movielens_import import import_movielens
    from settings import Settings

    import_movielens(ROOT / "data" / "ml-latest-small", stack.urls, progress=False)
    version = run_refresh(Settings(databases=stack.urls), progress=False)
    # Each worker looks for a new model every MODEL_RELOAD_INTERVAL: ask until each has answered with it.
    waiting = {worker.pid for worker in psutil.Process(master_pid).children()}
    deadline = time.monotonic() + timeout
    n = 0
    while waiting:
        if time.monotonic() > deadline:
            raise SystemExit(f"workers {sorted(waiting)} did not load the MovieLens model in {timeout:.0f} s")
        n += 1
        request_id = f"soak-model-{n}"
        body = requests.get(
            f"{stack.base_url}/health/ready", headers={"X-Request-ID": request_id, "Connection": "close"}, timeout=10
        ).json()
        time.sleep(0.2)  # the access line reaches the log
        if (body.get("model") or {}).get("version") == version:
            waiting.discard(stack.workers().get(request_id))


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


def fault_cycle() -> list:
    """Every (database, Fault) of the harness but the 60 s stop, each lasting 0-15 s.

    In rounds over the faults, each round shifting the databases by one, so that any few
    consecutive faults hit every database and every kind of fault.
    """
    from tests.faults.scenario import DATABASES, FAULTS

    faults = [fault for name, fault in FAULTS.items() if name != "stopped 60 s"]
    return [
        (DATABASES[(round_ + i) % len(DATABASES)], fault)
        for round_ in range(len(DATABASES))
        for i, fault in enumerate(faults)
    ]


class FaultCycle:
    """Stages `fault_cycle()` on `stack`: one fault every `every` seconds from `every / 2`, healed before the next."""

    def __init__(self, stack, every: float, duration: float) -> None:
        from tests.faults.scenario import RECOVERY_BOUND

        self.stack = stack
        self.every = every
        self.duration = duration
        self.after = RECOVERY_BOUND  # seconds after a fault still counted as its own
        self.schedule: list[dict] = []  # database, fault, start_s, healed_s (seconds since the soak began)
        self.failure: str | None = None
        self.began_at = ""  # UTC, to find the schedule in the Gunicorn log

    def run(self, began: float, stop: threading.Event) -> None:
        self.began_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            for k, (database, fault) in enumerate(itertools.cycle(fault_cycle())):
                at = (k + 0.5) * self.every
                if at + fault.seconds + self.after > self.duration:
                    return  # it would not be over (and watched) before the end
                if stop.wait(max(0.0, began + at - time.monotonic())):
                    return
                host = self.stack.hosts[database]
                start = time.monotonic() - began
                fault.inject(host)
                time.sleep(fault.seconds)
                fault.heal(host)
                self.schedule.append(
                    {"database": database, "fault": fault.name, "start_s": start, "healed_s": time.monotonic() - began}
                )
        except Exception as error:  # reported: the soak goes on without faults
            self.failure = f"{type(error).__name__}: {error}"

    def overlaps(self, fault: dict, answer: tuple) -> bool:
        """Whether the answer was under way while `fault` lasted or in the `after` seconds past its healing."""
        sent, elapsed, _ = answer
        return sent <= fault["healed_s"] + self.after and sent + elapsed >= fault["start_s"]

    def during(self, answer: tuple, database: str | None = None) -> bool:
        """Whether a fault (on `database`, or any) overlaps the answer."""
        return any(self.overlaps(f, answer) for f in self.schedule if database in (None, f["database"]))


def soak(base: str, master_pid: int, args, faults: FaultCycle | None = None) -> dict:
    from services.movielens_import import user_uuid

    users = [str(user_uuid(i)) for i in range(1, 611)]
    answers: list[tuple[float, float, int | str]] = []  # sent (s since start), elapsed (s), outcome
    stop = threading.Event()
    interval = args.clients / args.rate  # each client paces itself to rate / clients per second
    # On the fault stack a new connection each time, so that every worker gets requests (a
    # kept-alive one stays with the worker that accepted it).
    headers = {"Connection": "close"} if faults else {}

    def client(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        next_at = time.monotonic()
        while not stop.is_set():
            roll = rng.random()
            sent = time.monotonic()
            try:
                if roll < 0.7:
                    user = rng.choice(users)
                    response = session.get(f"{base}/api/recommendations/{user}", headers=headers, timeout=30)
                elif roll < 0.9:
                    response = session.post(
                        f"{base}/api/recommendations/batch", json={"user_ids": rng.sample(users, 10)},
                        headers=headers, timeout=30,
                    )
                else:
                    response = session.get(
                        f"{base}/api/recommendations/{rng.getrandbits(128):032x}", headers=headers, timeout=30
                    )
                outcome = response.status_code
                if outcome == 200 and response.json().get("degraded"):
                    outcome = "200-degraded"
            except requests.RequestException as error:
                outcome = type(error).__name__
            answers.append((sent - started, time.monotonic() - sent, outcome))
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    master = psutil.Process(master_pid)
    samples: list[dict] = []
    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(args.clients)]
    if faults:
        threads.append(threading.Thread(target=faults.run, args=(started, stop), daemon=True))
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
    ordered = sorted(e for _, e, _ in answers)
    statuses = Counter(outcome for _, _, outcome in answers)
    errors = [a for a in answers if is_error(a, faults)]
    report = {
        "duration_s": round(elapsed, 1),
        "requests": len(answers),
        "rate_per_s": round(len(answers) / elapsed, 1),
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": len(errors),
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
    if faults:
        report.update(fault_report(answers, errors, faults, samples))
    return report


def is_error(answer: tuple, faults: FaultCycle | None) -> bool:
    """Anything but a full 200; with faults, a degraded 200, or a 503 during a catalog_db fault, is expected."""
    outcome = answer[2]
    if faults is None:
        return outcome != 200
    if outcome in (200, "200-degraded"):
        return False
    return not (outcome == 503 and faults.during(answer, "catalog_db"))


def fault_report(answers: list[tuple], errors: list[tuple], faults: FaultCycle, samples: list[dict]) -> dict:
    """What the faults did: the schedule with each fault's answers, the errors, and whether any worker was replaced."""

    def slowest(of: list[tuple]) -> dict | None:
        if not of:
            return None
        sent, elapsed, outcome = max(of, key=lambda a: a[1])
        return {"t_s": round(sent, 1), "ms": round(1000 * elapsed, 1), "status": str(outcome)}

    schedule = []
    for fault in faults.schedule:
        during = [a for a in answers if faults.overlaps(fault, a)]
        schedule.append({
            **fault, "start_s": round(fault["start_s"], 1), "healed_s": round(fault["healed_s"], 1),
            "answers": len(during), "statuses": {str(k): v for k, v in Counter(a[2] for a in during).items()},
            "slowest": slowest(during),
        })
    first = set(samples[0]["rss"]) if samples else set()
    degraded_outside = [a for a in answers if a[2] == "200-degraded" and not faults.during(a)]
    return {
        "began_at": faults.began_at,
        "fault_every_s": faults.every,
        "faults": schedule,
        "fault_failure": faults.failure,
        "slowest": slowest(answers),
        "degraded_outside_faults": len(degraded_outside),
        "degraded_outside_faults_at_s": [round(a[0], 1) for a in degraded_outside[:50]],
        "error_statuses": {str(k): v for k, v in Counter(a[2] for a in errors).items()},
        "first_errors": [{"t_s": round(s, 2), "ms": round(1000 * e, 1), "status": str(o)} for s, e, o in errors[:20]],
        "workers_replaced": any(set(s["rss"]) != first for s in samples),
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
    for fault in report.get("faults", ()):
        print(
            f"  {fault['start_s']:6.1f}-{fault['healed_s']:.1f} s {fault['database']} {fault['fault']}: "
            f"{fault['answers']} answers {fault['statuses']}, slowest {fault['slowest']}"
        )
    if "faults" in report:
        print(
            f"  began {report['began_at']}; slowest overall {report['slowest']}; "
            f"degraded outside faults (+5 s) {report['degraded_outside_faults']} "
            f"at {report['degraded_outside_faults_at_s'][:10]} s; "
            f"errors {report['error_statuses']}, first {report['first_errors'][:5]}"
        )
        print(f"  workers replaced: {'yes' if report['workers_replaced'] else 'no'}")
        if report["fault_failure"]:
            print(f"  staging a fault failed, no more faults after it: {report['fault_failure']}")
    for pid, worker in report["workers"].items():
        print(
            f"  worker {pid}: RSS {worker['rss_start_mib']} -> {worker['rss_end_mib']} MiB "
            f"(max {worker['rss_max_mib']}), slope after warm-up {worker['slope_mib_per_hour']} MiB/h, "
            f"over the last half {worker['slope_last_half_mib_per_hour']} MiB/h ({worker['samples']} samples)"
        )
    print(f"report: {path}")


if __name__ == "__main__":
    sys.exit(main())
