"""Applying database/schema/*.sql to the databases (idempotent: every statement is IF NOT EXISTS).

By default only the service's own tables (model.sql: schema `ml`, in MODEL_DB_URL's database):
the source tables belong to the services that own user_db, catalog_db and engagement_db, and
the service only reads them (docs/source-databases.md). `sources=True` creates the
source tables too, for development, tests, the demo and the importers; it needs the right to
create tables in those databases' schema `public`, which a least-privilege role does not have.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from database.pools import CONNECT_TIMEOUT, TCP_SETTINGS
from settings import DatabaseUrls

SCHEMA_DIR = Path(__file__).parent / "schema"

# Which file goes to which database (a DatabaseUrls field), in the order they are applied.
SCHEMA_FILES = {
    "user": "user_db.sql",
    "catalog": "catalog_db.sql",
    "engagement": "engagement_db.sql",
    "model": "model.sql",
}
# The databases other services own; the service reads them only.
SOURCE_DATABASES = ("user", "catalog", "engagement")


class SchemaError(RuntimeError):
    """A schema file could not be applied; the message names the file, the database and the reason."""


def apply_schema(urls: DatabaseUrls, sources: bool = False) -> list[str]:
    """Create the tables and indexes that are missing; returns the files applied, in order.

    Only model.sql (into `urls.model`) by default; with `sources`, first user_db.sql,
    catalog_db.sql and engagement_db.sql into their databases. Raises SchemaError (its
    __cause__ the psycopg error) at the first file that fails, e.g. for lack of privileges;
    the files before it stay applied (each is idempotent, so running again is safe).
    """
    databases = [*SOURCE_DATABASES, "model"] if sources else ["model"]
    applied = []
    for database in databases:
        filename = SCHEMA_FILES[database]
        url = getattr(urls, database)
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **TCP_SETTINGS) as conn:
                conn.execute((SCHEMA_DIR / filename).read_text())
        except psycopg.Error as error:
            where = psycopg.conninfo.conninfo_to_dict(url).get("dbname") or database
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise SchemaError(f"applying {filename} to {where} failed: {reason}") from error
        applied.append(filename)
    return applied
