"""Fault scenarios against the production configuration: three database hosts, Gunicorn, steady traffic.

A `Stack` is three PostgreSQL hosts (tests/faults/hosts.py) holding user_db, catalog_db and
engagement_db (with the model tables, the default), the small data set of tests/resilience,
a published model, and Gunicorn started with the production config and nothing tuned: only
the database URLs and the port are set. `Traffic` is several clients asking for one user's
recommendations in a steady loop, each request with its own X-Request-ID, so that the
Gunicorn log tells which worker answered it. `run_fault` stages one fault on one database
under that traffic and measures what the issue asks: the slowest answer, the status counts,
and the time from the end of the fault until every worker gives full answers again.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import requests

from database.schema import apply_schema
from settings import DatabaseUrls, Settings
from tests.faults.hosts import NetnsPostgres

DATABASES = ("user_db", "catalog_db", "engagement_db")
# Seconds of traffic watched after a fault ends (recovery must come within 5).
OBSERVE_AFTER = 8.0
RECOVERY_BOUND = 5.0
WORKERS = 4  # gunicorn.conf.py's default
# Log lines shown of the slowest worker when a fault's requirements are not met.
MAX_TIMELINE = 40
# The slowest acceptable answer: the request deadline (production default) plus half a second.
ANSWER_BOUND = Settings.request_deadline_ms / 1000 + 0.5


@dataclass(frozen=True)
class Fault:
    """What is done to a database host, for how long, and how it is undone."""

    name: str
    inject: Callable[[NetnsPostgres], None]
    heal: Callable[[NetnsPostgres], None]
    seconds: float


FAULTS = {
    f.name: f
    for f in (
        Fault("stopped 15 s", NetnsPostgres.stop, NetnsPostgres.start, 15),
        Fault("stopped 60 s", NetnsPostgres.stop, NetnsPostgres.start, 60),
        Fault("restarted", NetnsPostgres.stop, NetnsPostgres.start, 0),
        Fault("frozen 10 s", NetnsPostgres.freeze, NetnsPostgres.thaw, 10),
        Fault("cut off 10 s", NetnsPostgres.cut, NetnsPostgres.restore, 10),
        Fault("slowed 10 s", NetnsPostgres.slow, NetnsPostgres.unslow, 10),
    )
}


@dataclass
class Answer:
    request_id: str
    started: float
    elapsed: float
    status: int  # 0: no HTTP answer at all (connection error or client timeout)
    degraded: tuple[str, ...] = ()
    retry_after: str | None = None
    body: dict = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return self.status == 200 and not self.degraded


class Traffic:
    """`clients` threads each asking for `url` about `rate` times a second until stopped."""

    def __init__(self, url: str, clients: int = 6, rate: float = 5.0) -> None:
        self.url = url
        self.answers: list[Answer] = []
        self._pause = 1.0 / rate
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, client: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            request_id = f"fault-c{client}-{n}"
            started = time.monotonic()
            try:
                # A new connection each time, so that every worker gets requests (a kept-alive one
                # stays with the worker that accepted it).
                response = requests.get(
                    self.url, headers={"X-Request-ID": request_id, "Connection": "close"}, timeout=60
                )
                body = response.json()
                answer = Answer(
                    request_id, started, time.monotonic() - started, response.status_code,
                    tuple(body.get("degraded", ())), response.headers.get("Retry-After"), body,
                )
            except (requests.RequestException, ValueError):
                answer = Answer(request_id, started, time.monotonic() - started, 0)
            self.answers.append(answer)
            self._stop.wait(self._pause)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in list(self.answers) if start <= a.started < end]

    def full_since(self, start: float) -> float:
        """When the answers after `start` became full and stayed so (inf: the last one is not)."""
        return max(start, recovered_at(self.between(start, float("inf"))))


def recovered_at(answers: list[Answer]) -> float:
    """When `answers` (in order) became full and stayed so: the start of the first answer after
    the last one that was not full; -inf when all are full, inf when the last one is not."""
    last_bad = max((i for i, a in enumerate(answers) if not a.full), default=None)
    if last_bad is None:
        return float("-inf")
    return answers[last_bad + 1].started if last_bad + 1 < len(answers) else float("inf")


@dataclass
class Row:
    """What one fault did to the answers."""

    database: str
    fault: str
    answers: int
    slowest: float
    statuses: Counter
    recovery: float  # seconds after the fault ended until every worker answered in full (inf: never)
    workers: int
    problems: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        statuses = ", ".join(f"{count} × {status or 'none'}" for status, count in sorted(self.statuses.items()))
        recovery = "never" if self.recovery == float("inf") else f"{self.recovery:.1f} s"
        return f"| {self.database} | {self.fault} | {self.slowest:.2f} s | {statuses} | {recovery} ({self.workers} workers) |"


TABLE_HEADER = (
    "| database | fault | slowest answer | statuses (answers) | every worker in full service after |\n"
    "| --- | --- | ---: | --- | --- |"
)


class Stack:
    """Three database hosts with data and a model, and Gunicorn (production config) in front."""

    def __init__(self, root: Path, slot: int) -> None:
        self.root = root
        self.slot = slot
        self.hosts: dict[str, NetnsPostgres] = {}
        self._gunicorn = None
        self.base_url = ""
        self.log = root / "gunicorn.log"

    def __enter__(self) -> "Stack":
        from ml_service.jobs import run_refresh
        from tests.conftest import free_port, start_gunicorn, wait_for_http
        from tests.resilience.dataset import fill

        try:
            for i, name in enumerate(DATABASES):
                self.hosts[name] = NetnsPostgres(self.root / name, self.slot * len(DATABASES) + i)
            urls = {name: host.create_database(name) for name, host in self.hosts.items()}
            self.urls = DatabaseUrls(
                user=urls["user_db"], catalog=urls["catalog_db"],
                engagement=urls["engagement_db"], model=urls["engagement_db"],
            )
            apply_schema(self.urls, sources=True)
            fill(self.urls)
            run_refresh(Settings(databases=self.urls), progress=False)
            port = free_port()
            self._gunicorn = start_gunicorn(self.urls, port, self.log)
            self.base_url = f"http://127.0.0.1:{port}"
            wait_for_http(f"{self.base_url}/health/ready", self._gunicorn, self.log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._gunicorn is not None:
            self._gunicorn.send_signal(signal.SIGTERM)
            self._gunicorn.wait(60)
        for host in self.hosts.values():
            host.cleanup()

    @property
    def gunicorn_pid(self) -> int:
        """The Gunicorn master's pid (its children are the workers)."""
        return self._gunicorn.pid

    def log_entries(self) -> list[dict]:
        """Every JSON line Gunicorn and its workers logged so far."""
        entries = []
        for line in self.log.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries

    def workers(self) -> dict[str, int]:
        """Request id -> pid of the worker that answered it, from the access lines logged so far."""
        return {
            entry["request_id"]: entry["pid"]
            for entry in self.log_entries()
            if entry.get("logger") == "ml_service.access" and "request_id" in entry
        }

    def timeline(self, pid: int, since: float, healed: float) -> str:
        """What worker `pid` logged about its databases from `since` on (wall-clock seconds),
        each line timed from `healed`: why a worker recovered late."""
        lines = []
        for entry in self.log_entries():
            if entry.get("pid") != pid or entry.get("logger") not in ("database.pools", "psycopg.pool"):
                continue
            at = datetime.fromisoformat(entry["time"]).timestamp()
            if at >= since:
                lines.append(f"  {at - healed:+.2f} s {entry['message'][:160]}")
        return "\n".join(lines[-MAX_TIMELINE:])


def run_fault(stack: Stack, traffic: Traffic, database: str, fault: Fault) -> Row:
    """Stage `fault` on `database` under `traffic`; measure the answers from its start to OBSERVE_AFTER after it ends."""
    wait_for_full_service(traffic)
    host = stack.hosts[database]
    started, started_wall = time.monotonic(), time.time()
    fault.inject(host)
    time.sleep(fault.seconds)
    fault.heal(host)
    healed, healed_wall = time.monotonic(), time.time()
    time.sleep(OBSERVE_AFTER)
    answers = traffic.between(started, time.monotonic())
    time.sleep(1.0)  # the access lines of the last answers reach the log
    pids = stack.workers()
    by_worker: dict[int, list[Answer]] = {}
    for answer in answers:
        if answer.request_id in pids:
            by_worker.setdefault(pids[answer.request_id], []).append(answer)
    recoveries = {
        pid: recovered_at(sorted(worker_answers, key=lambda a: a.started)) - healed
        for pid, worker_answers in by_worker.items()
    }
    recovery = max(recoveries.values(), default=0.0)
    row = Row(
        database, fault.name, len(answers), max((a.elapsed for a in answers), default=0.0),
        Counter(a.status for a in answers), max(recovery, 0.0), len(by_worker),
    )
    row.problems = check(row, answers)
    if row.problems and recoveries:  # what the slowest worker went through, for the failure's message
        pid = max(recoveries, key=recoveries.get)
        row.problems.append(f"worker {pid}'s database events:\n{stack.timeline(pid, started_wall, healed_wall)}")
    return row


def check(row: Row, answers: list[Answer]) -> list[str]:
    """What the issue requires of every fault, as a list of what went wrong (empty: all met)."""
    problems = []
    if row.slowest > ANSWER_BOUND:
        problems.append(f"slowest answer {row.slowest:.2f} s > {ANSWER_BOUND:.1f} s")
    allowed = {200, 503} if row.database == "catalog_db" else {200}
    if set(row.statuses) - allowed:
        problems.append(f"statuses {dict(row.statuses)}, only {sorted(allowed)} allowed")
    if any(a.status == 503 and not a.retry_after for a in answers):
        problems.append("a 503 without Retry-After")
    if row.recovery > RECOVERY_BOUND:
        problems.append(f"full service in every worker only after {row.recovery:.1f} s > {RECOVERY_BOUND:.0f} s")
    if row.workers < WORKERS:
        problems.append(f"answers came from {row.workers} of the {WORKERS} workers: not every worker was watched")
    return problems


def wait_for_full_service(traffic: Traffic, streak_seconds: float = 2.0, timeout: float = 60.0) -> None:
    """Until every answer of the last `streak_seconds` is full (a fault starts from full service)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        recent = traffic.between(now - streak_seconds, now)
        if len(recent) >= 5 and all(a.full for a in recent):
            return
        time.sleep(0.2)
    raise AssertionError("the service did not give full answers before the fault")


def run_lane(root: Path, slot: int, database: str, faults: list[Fault], rows: list[Row]) -> None:
    """One stack; every fault in `faults` staged on `database` in turn, under steady traffic."""
    from tests.resilience.dataset import USER

    with Stack(root, slot) as stack, Traffic(f"{stack.base_url}/api/recommendations/{USER}?limit=5") as traffic:
        for fault in faults:
            rows.append(run_fault(stack, traffic, database, fault))


def run_matrix(root: Path, databases=DATABASES, faults=tuple(FAULTS.values())) -> list[Row]:
    """Every fault on every database: one stack per database, the stacks run at the same time."""
    rows: list[Row] = []
    errors: list[BaseException] = []

    def lane(slot: int, database: str) -> None:
        try:
            run_lane(root / database, slot, database, list(faults), rows)
        except BaseException as error:  # reported by the caller
            errors.append(error)

    threads = [threading.Thread(target=lane, args=(slot, db)) for slot, db in enumerate(databases)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    order = {(db, f.name): i for i, (db, f) in enumerate((db, f) for db in databases for f in faults)}
    return sorted(rows, key=lambda r: order[(r.database, r.fault)])
