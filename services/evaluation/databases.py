"""Fresh databases for one evaluation run: on the server *_DB_URL point at, else the embedded one."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from settings import DatabaseUrls

# Evaluation writes only into databases of its own, dropped and recreated on every run, so it
# never touches the data of a service that shares the server.
EVAL_DATABASES = {"user": "eval_user_db", "catalog": "eval_catalog_db", "engagement": "eval_engagement_db"}


class EvalDatabases:
    """Creates the eval databases on a server; keeps an embedded server alive while in use."""

    def __init__(self, pgdata: Path, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._server = None
        if env.get("USER_DB_URL"):
            # The server of USER_DB_URL; its user must be allowed to create databases.
            admin_url = env["USER_DB_URL"]
            self._url_for = lambda name: conninfo.make_conninfo(admin_url, dbname=name)
            self.where = "the server of USER_DB_URL"
        else:
            from database.embedded import start_embedded

            self._server = start_embedded(Path(pgdata).resolve(), cleanup_mode="stop")
            admin_url = self._server.get_uri()
            self._url_for = self._server.get_uri
            self.where = f"embedded PostgreSQL in {pgdata}"
        self._admin_url = admin_url

    def recreate(self) -> DatabaseUrls:
        """Drop and create the eval databases; returns their URLs (model tables in engagement)."""
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            for name in EVAL_DATABASES.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        urls = {key: self._url_for(name) for key, name in EVAL_DATABASES.items()}
        return DatabaseUrls(user=urls["user"], catalog=urls["catalog"], engagement=urls["engagement"], model=urls["engagement"])

    def close(self) -> None:
        """Let go of the embedded server (it stops when no process uses it)."""
        self._server = None
