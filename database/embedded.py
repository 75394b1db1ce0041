"""An embedded PostgreSQL 16 (the `pgserver` wheel) holding the three databases: for the demo and tests."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psycopg

from settings import DatabaseUrls

DATABASES = {"user": "user_db", "catalog": "catalog_db", "engagement": "engagement_db"}


def start_embedded(data_dir: Path, cleanup_mode: str | None = "stop"):
    """Start (or join) the server in `data_dir`; returns the pgserver handle.

    cleanup_mode "stop" stops it when the last process using it exits, "delete" also removes
    `data_dir`, None leaves it running.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ensure_runtime_dir(data_dir.parent)
    import pgserver  # only the demo and the tests need it (requirements-demo.txt)

    # pgserver logs every command it runs with its whole output (initdb's alone is 40 lines) at INFO.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver.get_server(data_dir, cleanup_mode=cleanup_mode)


def ensure_runtime_dir(parent: Path) -> None:
    """Give platformdirs (used by pgserver) a private runtime directory: it warns without one, as in CI."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(parent) / "runtime"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def create_databases(server, names: dict[str, str] = DATABASES) -> DatabaseUrls:
    """Create the databases in `server` if missing; returns their URLs (model tables in engagement)."""
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in names.values():
            if name not in existing:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    urls = {key: server.get_uri(name) for key, name in names.items()}
    return DatabaseUrls(user=urls["user"], catalog=urls["catalog"], engagement=urls["engagement"], model=urls["engagement"])
