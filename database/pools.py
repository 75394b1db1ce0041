"""The databases a process talks to: per database a connection pool, its availability, bounded access.

Every read on the request path goes through `Database.connection(deadline)`, the one place that
- skips a database known to be down (`Unavailable` at once: the answer is degraded or 503),
- waits for a pooled connection no longer than the deadline,
- cuts the connection when the deadline passes, whatever the server does (database/deadline.py),
- and marks the database down on any connection failure, so that the other requests of this
  process skip it at once instead of each finding out again; except a deadline passed with the
  server's answer already waiting unread (this process was late, not the database).

A database marked down is probed by a thread of its own with a fresh connection (never through
the pool, whose queue may hold requests), every DB_PROBE_INTERVAL seconds. When a probe
succeeds, the pool is replaced by a new one that has a working connection (a pool that stopped
reconnecting during a long outage is never used again), and one request is let through as a
trial while the others still skip the database: if it succeeds the database is available
again, if it fails (a database that answers a probe but not real queries in time, such as one
behind a slow link) it is marked down again. So a slow database costs one waiting request per
probe interval, not every request.

Gunicorn forks workers and libpq connections cannot cross a fork, so all of this is created in
the worker (gunicorn.conf.py does not preload the app).
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from database.deadline import WATCHDOG, Deadline, DeadlineExceeded
from settings import Settings

log = logging.getLogger(__name__)

# Seconds to establish a connection (psycopg enforces it over the whole handshake; 2 is its minimum).
CONNECT_TIMEOUT = 2
# Seconds a probe's SELECT 1 may take, and a replacement pool may take to hold a connection.
PROBE_TIMEOUT = 1.0
# libpq's TCP settings (ignored on Unix sockets): an idle connection to a host that vanished is
# found dead within about 5 + 2 × 3 s, and unacknowledged data gives up after 10 s. They bound
# the offline jobs too, which run without a deadline.
TCP_SETTINGS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
# A request with less time left than this (seconds) skips the database without trying it and
# without marking it down: its time went elsewhere (queued behind others, a CPU stall), and a
# query started now would miss the deadline through no fault of the database.
MIN_ATTEMPT = 0.05
# Seconds a request waits for a pooled connection at a time before it looks whether the pool's
# last attempt to connect failed (then it gives up at once instead of waiting out its deadline).
WAIT_SLICE = 0.05
# Seconds a pool keeps retrying a failed connection in the background before leaving it to the
# next request that needs one (psycopg_pool's default, 5 minutes, is moot: a failing database
# is probed and its pool replaced).
RECONNECT_TIMEOUT = 2.0


class Unavailable(Exception):
    """The database is marked down: the read was skipped, or failed just now and marked it down."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is unavailable")
        self.name = name


class Database:
    """One database: a pool (replaced after an outage), whether it answers, bounded connections."""

    def __init__(
        self,
        name: str,
        url: str,
        options: dict,
        settings: Settings,
        pool_timeout: float,
        connection_class: type[psycopg.Connection] = psycopg.Connection,
    ) -> None:
        self.name = name
        self._url = url
        self._options = options  # libpq and psycopg connection options, for pools and probes alike
        self._settings = settings
        self._pool_timeout = pool_timeout
        self._connection_class = connection_class
        # The error of the pool's last attempt to connect, None after a success.
        self.connect_error: Exception | None = None
        database = self

        class Tracked(connection_class):  # type: ignore[valid-type, misc]
            """The pool's connections: each attempt to connect records whether it failed."""

            @classmethod
            def connect(cls, *args, **kwargs):
                try:
                    conn = super().connect(*args, **kwargs)
                except Exception as error:
                    database.connect_error = error
                    raise
                database.connect_error = None
                return conn

        self._pool_connection_class = Tracked
        self._pool = self._new_pool()
        self._lock = threading.Lock()
        self._down_since: float | None = None  # None: available
        self._trial_open = False  # after a successful probe: the next request may try the database
        self._probing = False
        self._closed = threading.Event()

    @property
    def pool(self) -> ConnectionPool:
        """The current pool (a new one after each outage)."""
        return self._pool

    @property
    def available(self) -> bool:
        """False from a failure until a request succeeds after a successful probe."""
        return self._down_since is None

    @contextlib.contextmanager
    def connection(self, deadline: Deadline | None = None) -> Iterator[psycopg.Connection]:
        """A pooled connection for the body; bounded by `deadline` when one is given.

        With a deadline (the request path): Unavailable when the database is marked down or
        less than MIN_ATTEMPT is left, and any connection failure, pool timeout or deadline
        passed marks it down and raises Unavailable. Without one (offline jobs): `pool_timeout`
        to get a connection (none when the database refuses connections), no limit on the work,
        errors as they are.
        """
        if deadline is None:
            with self._borrowed(Deadline.after(self._pool_timeout)) as conn:
                yield conn
            return
        if deadline.remaining() < MIN_ATTEMPT:
            raise Unavailable(self.name)
        trial = not self.available
        if trial and not self._take_trial():
            raise Unavailable(self.name)
        try:
            with self._borrowed(deadline) as conn, WATCHDOG.guard(conn, deadline):
                yield conn
        except psycopg.OperationalError as error:  # includes PoolTimeout and DeadlineExceeded
            if isinstance(error, DeadlineExceeded) and error.answered:
                # The server had answered; this process was late to read it (a loaded machine).
                log.info("%s answered in time but was read after the deadline: not marked down", self.name)
                if trial:
                    self._trial_open = True
                raise Unavailable(self.name) from error
            self.trip(error)
            raise Unavailable(self.name) from error
        except BaseException:
            if trial:  # not the database's fault: let another request try
                self._trial_open = True
            raise
        if trial:
            self._mark_available()

    def _take_trial(self) -> bool:
        with self._lock:
            taken, self._trial_open = self._trial_open, False
        return taken

    def _mark_available(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            down_for = time.monotonic() - self._down_since
            self._down_since = None
        log.warning("%s available again after %.1f s", self.name, down_for)

    @contextlib.contextmanager
    def _borrowed(self, deadline: Deadline) -> Iterator[psycopg.Connection]:
        """A connection of the current pool whose socket shows nothing, got within the deadline.

        An idle connection receives nothing unless the server closed it (a restart or a
        terminated backend sends a message and EOF) or a keepalive found its host gone: a
        readable socket means the connection is discarded (the pool replaces it in the
        background) and the next one tried, without a round trip and without psycopg_pool's
        one-second pause between checks. While none is ready, it looks every WAIT_SLICE whether
        the pool's last attempt to connect failed, and then gives up at once: a database that
        refuses connections costs no waiting. (psycopg_pool keeps a timed-out waiter queued
        until a connection comes back, which is why the pools have no `max_waiting`: such
        waiters would count against it, and once full it would refuse every request and never
        grow again, the wedge this design replaces.)
        """
        pool = self._pool
        while True:
            try:
                conn = pool.getconn(timeout=min(WAIT_SLICE, deadline.remaining()))
            except PoolTimeout:
                if self.connect_error is not None:
                    raise psycopg.OperationalError(f"cannot connect: {self.connect_error}") from None
                if deadline.remaining() > 0:
                    continue
                raise
            if not conn.closed and not select.select([conn.pgconn.socket], [], [], 0)[0]:
                break
            conn.close()
            pool.putconn(conn)
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def trip(self, error: BaseException | None = None) -> None:
        """Mark the database down and start probing it (once per failure of an available database or a trial)."""
        with self._lock:
            if self._closed.is_set():
                return
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("%s unavailable, serving degraded: %s: %s", self.name, type(error).__name__, error)
            elif self._probing:
                return
            else:  # the trial after a successful probe failed
                log.info("%s failed the trial request, probing again: %s: %s", self.name, type(error).__name__, error)
            self._probing = True
            self._trial_open = False
        threading.Thread(target=self._probe_until_back, name=f"probe-{self.name}", daemon=True).start()

    def close(self) -> None:
        """Stop probing and close the pool."""
        self._closed.set()
        self._pool.close()

    def _probe_until_back(self) -> None:
        while not self._closed.wait(self._settings.db_probe_interval):
            try:
                self._probe()
                pool = self._fresh_pool()
            except Exception as error:  # still down: any failure means "try again later"
                log.debug("%s probe failed: %s", self.name, error)
                continue
            old, self._pool = self._pool, pool
            with self._lock:
                self._probing = False
                self._trial_open = True
            log.info("%s answers a probe again; the next request tries it", self.name)
            threading.Thread(target=old.close, kwargs={"timeout": 1.0}, daemon=True).start()
            if self._closed.is_set():
                pool.close()
            return

    def _probe(self) -> None:
        """SELECT 1 on a connection of its own, within PROBE_TIMEOUT."""
        with (
            self._connection_class.connect(self._url, **self._options) as conn,
            WATCHDOG.guard(conn, Deadline.after(PROBE_TIMEOUT)),
        ):
            conn.execute("SELECT 1")

    def _new_pool(self) -> ConnectionPool:
        """A pool connecting in the background (a worker starts even when its database is down)."""
        pool = ConnectionPool(
            self._url,
            connection_class=self._pool_connection_class,
            name=self.name,
            min_size=self._settings.pool_min_size,
            max_size=self._settings.pool_max_size,
            timeout=self._pool_timeout,
            reconnect_timeout=RECONNECT_TIMEOUT,
            kwargs=self._options,
            open=False,
        )
        pool.open(wait=False)
        return pool

    def _fresh_pool(self) -> ConnectionPool:
        """A new pool holding a working connection, or an error (its threads stopped)."""
        self.connect_error = None
        pool = self._new_pool()
        try:
            pool.wait(timeout=PROBE_TIMEOUT)
        except Exception:
            pool.close(timeout=1.0)
            raise
        return pool


@dataclass(frozen=True)
class Databases:
    """The databases the repositories read; `model` may be `engagement` itself."""

    user: Database
    catalog: Database
    engagement: Database
    model: Database

    def by_name(self) -> dict[str, Database]:
        """Every distinct database by name (model_db only when it has a database of its own)."""
        named = {"user_db": self.user, "catalog_db": self.catalog, "engagement_db": self.engagement}
        if self.model is not self.engagement:
            named["model_db"] = self.model
        return named

    def close(self) -> None:
        """Stop every probe and close every pool."""
        for db in self.by_name().values():
            db.close()


def open_databases(
    settings: Settings,
    connection_class: type[psycopg.Connection] = psycopg.Connection,
    statement_timeout_ms: int | None = None,
    pool_timeout: float = 30.0,
    application_name: str = "ml-service",
) -> Databases:
    """Open a pool per database without waiting for them, so a worker starts even when one is down.

    The server-side statement timeout defaults to the request deadline (the server gives up on
    a query nobody waits for any more); offline jobs pass 0 (none), a longer `pool_timeout` and
    their own `application_name` (ml_service/jobs.py).
    """
    urls = settings.databases
    if statement_timeout_ms is None:
        statement_timeout_ms = settings.request_deadline_ms
    options = {
        "autocommit": True,
        "application_name": application_name,
        "connect_timeout": CONNECT_TIMEOUT,
        "options": f"-c statement_timeout={statement_timeout_ms}",
        **TCP_SETTINGS,
    }

    def database(name: str, url: str) -> Database:
        return Database(name, url, options, settings, pool_timeout, connection_class)

    engagement = database("engagement_db", urls.engagement)
    return Databases(
        user=database("user_db", urls.user),
        catalog=database("catalog_db", urls.catalog),
        engagement=engagement,
        model=engagement if urls.model == urls.engagement else database("model_db", urls.model),
    )
