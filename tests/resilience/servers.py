"""Three separate embedded PostgreSQL servers that tests can stop and start again."""

from __future__ import annotations

from pathlib import Path

import psycopg

from database.embedded import start_embedded


class StoppableServer:
    """One pgserver PostgreSQL holding one database; stop() and start() keep its socket and data."""

    def __init__(self, data_dir: Path, database: str) -> None:
        self._server = start_embedded(data_dir, cleanup_mode="delete")
        with psycopg.connect(self._server.get_uri(), autocommit=True) as conn:
            # No fsync, as the tests' main server (tests/conftest.py): stopping is a clean
            # shutdown, and each one's checkpoint synced every file (seconds when the disk is busy).
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))
        self.url = self._server.get_uri(database)

    def stop(self) -> None:
        """Fast shutdown, as a failover or a crash looks to clients: sessions are cut."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user, timeout=30)

    def start(self) -> None:
        """Start the stopped server on the same socket directory (pgserver derives it from the data dir)."""
        with self._server._lock:  # pgserver's inter-process lock around (re)starting a server
            self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        """Stop the server and delete its data directory."""
        self._server.cleanup()
