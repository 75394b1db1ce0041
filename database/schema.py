"""Applying database/schema/*.sql to the databases (idempotent: every statement is IF NOT EXISTS)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from ml_service.config import DatabaseUrls

SCHEMA_DIR = Path(__file__).parent / "schema"

# Which file goes to which database.
SCHEMA_FILES = {
    "user": "user_db.sql",
    "catalog": "catalog_db.sql",
    "engagement": "engagement_db.sql",
    "model": "model.sql",
}


def apply_schema(urls: DatabaseUrls) -> list[str]:
    """Create every table and index that is missing; returns the files applied, in order."""
    applied = []
    for database, filename in SCHEMA_FILES.items():
        with psycopg.connect(getattr(urls, database), autocommit=True) as conn:
            conn.execute((SCHEMA_DIR / filename).read_text())
        applied.append(filename)
    return applied
