"""docker/postgres/init-databases.sh (what compose's PostgreSQL runs on an empty volume), run for real with psql."""

import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg

from tests.conftest import ROOT

COLUMNS = """
SELECT table_schema, table_name, column_name, data_type
  FROM information_schema.columns
 WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
"""
INDEXES = "SELECT schemaname, indexname FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog')"


def describe(url: str) -> set:
    with psycopg.connect(url) as conn:
        return set(conn.execute(COLUMNS).fetchall()) | set(conn.execute(INDEXES).fetchall())


def test_the_init_script_creates_the_databases_with_the_schema_the_service_applies(tmp_path, pg_server, schema_template):
    import pgserver

    from database.embedded import start_embedded

    server = start_embedded(tmp_path / "data", cleanup_mode="delete")  # a fresh server: an empty volume
    try:
        # A throwaway server, as the tests' main one (tests/conftest.py): no fsync.
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("SELECT pg_reload_conf()")
        socket_dir = parse_qs(urlsplit(server.get_uri()).query)["host"][0]
        bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"
        result = subprocess.run(
            ["sh", str(ROOT / "docker" / "postgres" / "init-databases.sh")],
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PGHOST": socket_dir,
                 "POSTGRES_USER": "postgres", "SCHEMA_DIR": str(ROOT / "database" / "schema")},
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        for part, name in (("user", "user_db"), ("catalog", "catalog_db"), ("engagement", "engagement_db")):
            expected = describe(pg_server.url_for(f"{schema_template}_{part}"))  # database.schema.apply_schema's result
            assert expected and describe(server.get_uri(name)) == expected, name
    finally:
        server.cleanup()
