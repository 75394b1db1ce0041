"""One psycopg connection pool per database, opened inside the process that uses it."""

from __future__ import annotations

import select
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from ml_service.config import Settings

# Seconds a pool keeps retrying a failed connection in the background (1 s, then 2 s apart)
# before it leaves reconnecting to the next request that needs one. psycopg_pool's default
# (5 minutes with exponential backoff) could leave a pool waiting half a minute after its
# database came back; a short one lets the availability probe (services/availability.py)
# reconnect within a second or two.
RECONNECT_TIMEOUT = 2.0


@dataclass(frozen=True)
class Pools:
    """The pools the repositories borrow connections from; `model` may be `engagement` itself."""

    user: ConnectionPool
    catalog: ConnectionPool
    engagement: ConnectionPool
    model: ConnectionPool

    def by_name(self) -> dict[str, ConnectionPool]:
        """Pools keyed by database name, as /health/ready and logs report them."""
        return {"user_db": self.user, "catalog_db": self.catalog, "engagement_db": self.engagement, "model_db": self.model}

    def close(self) -> None:
        """Close every distinct pool."""
        for pool in {id(p): p for p in self.by_name().values()}.values():
            pool.close()


def check_connection(conn: psycopg.Connection) -> None:
    """Before lending a connection: ping it only if its socket has something to read.

    An idle connection receives nothing unless the server closed it (a restart or a
    terminated backend sends a message and EOF) or sent a notice, so a readable socket is
    the sign to run psycopg_pool's check, which raises for a broken connection and makes the
    pool replace it. Pinging every time (ConnectionPool.check_connection) would add a round
    trip to each of a request's three queries.
    """
    if conn.closed:
        raise psycopg.OperationalError("connection is closed")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


def open_pools(settings: Settings, connection_class: type[psycopg.Connection] = psycopg.Connection) -> Pools:
    """Open the pools without waiting for the databases, so a worker starts even when one is down.

    Gunicorn forks workers: libpq connections cannot cross a fork, so this must run in the
    worker (the app is created there; gunicorn.conf.py does not preload it).
    """
    urls = settings.databases

    def pool(name: str, url: str) -> ConnectionPool:
        p = ConnectionPool(
            url,
            connection_class=connection_class,
            name=name,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout=settings.pool_timeout,
            # Overload or a hung database: the next request is refused at once (TooManyRequests,
            # answered 503) rather than queueing for POOL_TIMEOUT.
            max_waiting=settings.pool_max_waiting,
            reconnect_timeout=RECONNECT_TIMEOUT,
            # A connection broken by a database restart is detected and replaced before use.
            check=check_connection,
            kwargs={
                "autocommit": True,
                "application_name": "ml-service",
                "connect_timeout": max(1, int(settings.pool_timeout)),
                "options": f"-c statement_timeout={settings.statement_timeout_ms}",
            },
            open=False,
        )
        p.open(wait=False)
        return p

    user = pool("user_db", urls.user)
    catalog = pool("catalog_db", urls.catalog)
    engagement = pool("engagement_db", urls.engagement)
    model = engagement if urls.model == urls.engagement else pool("model_db", urls.model)
    return Pools(user=user, catalog=catalog, engagement=engagement, model=model)
