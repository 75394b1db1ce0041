"""Which databases answer right now: one small circuit breaker per database.

A request that finds a database failing marks it unavailable; later requests then skip it at
once (and answer degraded) instead of each waiting POOL_TIMEOUT for a connection. A background
thread probes the database through its own pool every `probe_interval` seconds and marks it
available again as soon as a connection works, so full service resumes without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds a probe waits for a connection from the pool.
PROBE_TIMEOUT = 1.0


class Unavailable(Exception):
    """The database is marked unavailable: the read was skipped or has just failed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is unavailable")
        self.name = name


class Breaker:
    """Tracks whether one database is usable and probes it back after a failure."""

    def __init__(self, name: str, probe: Callable[[], None], probe_interval: float) -> None:
        self.name = name
        self._probe = probe
        self._probe_interval = probe_interval
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._stop = threading.Event()

    @classmethod
    def for_pool(cls, name: str, pool: ConnectionPool, probe_interval: float) -> "Breaker":
        """A breaker whose probe borrows a connection from `pool` and runs SELECT 1."""

        def probe() -> None:
            with pool.connection(timeout=PROBE_TIMEOUT) as conn:
                conn.execute("SELECT 1")

        return cls(name, probe, probe_interval)

    @property
    def available(self) -> bool:
        """False from a failure until a probe succeeds."""
        return self._down_since is None

    def call(self, read: Callable[[], T]) -> T:
        """`read()`, or Unavailable when the database is marked down or fails now.

        Operational errors (no connection, pool timeout or queue full, statement timeout,
        server shutting down) mark the database down; other errors propagate unchanged.
        """
        if not self.available:
            raise Unavailable(self.name)
        try:
            return read()
        except psycopg.OperationalError as error:
            self.trip(error)
            raise Unavailable(self.name) from error

    def trip(self, error: BaseException | None = None) -> None:
        """Mark the database unavailable and start probing it (once)."""
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        log.warning("%s unavailable, serving degraded: %s: %s", self.name, type(error).__name__, error)
        threading.Thread(target=self._probe_until_back, name=f"probe-{self.name}", daemon=True).start()

    def close(self) -> None:
        """Stop probing (the app is shutting down)."""
        self._stop.set()

    def _probe_until_back(self) -> None:
        while not self._stop.wait(self._probe_interval):
            try:
                self._probe()
            except Exception as error:  # still down: any failure means "try again later"
                log.debug("%s probe failed: %s", self.name, error)
                continue
            with self._lock:
                down_for = time.monotonic() - (self._down_since or time.monotonic())
                self._down_since = None
            log.warning("%s available again after %.1f s", self.name, down_for)
            return


class Availability:
    """The breakers of every database, by name (user_db, catalog_db, engagement_db, model_db)."""

    def __init__(self, breakers: dict[str, Breaker]) -> None:
        self._breakers = breakers

    def __getitem__(self, name: str) -> Breaker:
        return self._breakers[name]

    def unavailable(self) -> list[str]:
        """Names of the databases marked unavailable right now (a shared breaker under its first name)."""
        return [name for name, breaker in self._distinct().items() if not breaker.available]

    def _distinct(self) -> dict[str, Breaker]:
        seen: dict[int, tuple[str, Breaker]] = {}
        for name, breaker in self._breakers.items():
            seen.setdefault(id(breaker), (name, breaker))
        return dict(seen.values())

    def close(self) -> None:
        """Stop every probe."""
        for breaker in self._distinct().values():
            breaker.close()
