"""`make demo`: a working service on real MovieLens data with nothing installed but Python."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from database.schema import apply_schema
from services.movielens_import import import_movielens, user_uuid

GUNICORN_CONFIG = Path(__file__).parent / "gunicorn.conf.py"


def run_demo(data_dir: Path, pgdata: Path, bind: str) -> int:
    """Set up the databases (embedded unless *_DB_URL are set), import, refresh, serve until Ctrl-C."""
    from ml_service.__main__ import run_refresh
    from ml_service.config import Settings

    server = None
    if os.environ.get("USER_DB_URL"):
        urls = Settings.from_env().databases
        print("using the databases named by *_DB_URL")
    else:
        from database.embedded import create_databases, start_embedded

        print(f"starting embedded PostgreSQL in {pgdata} ...")
        server = start_embedded(pgdata.resolve(), cleanup_mode="stop")
        urls = create_databases(server)
    env = {
        **os.environ,
        "USER_DB_URL": urls.user,
        "CATALOG_DB_URL": urls.catalog,
        "ENGAGEMENT_DB_URL": urls.engagement,
        "MODEL_DB_URL": urls.model,
        "BIND": bind,
    }
    os.environ.update(env)
    apply_schema(urls)
    summary = import_movielens(data_dir, urls)
    print(f"imported {summary.media} media, {summary.users} users, {summary.interactions} interactions")
    version = run_refresh(Settings.from_env())
    print(f"published model version {version}")
    _print_examples(bind)
    gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG)], env=env)

    def stop(signum, frame):
        # Ctrl-C or `kill`: stop Gunicorn gracefully; the embedded server stops when we exit.
        gunicorn.terminate()

    # Set explicitly: a shell starting us in the background would leave SIGINT ignored.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = gunicorn.wait()
    del server  # the embedded server stops when the last handle on it goes
    return 0 if code in (0, -signal.SIGTERM) else code


def _print_examples(bind: str) -> None:
    base = f"http://{bind}"
    known = user_uuid(1)
    print(
        f"""
ml-service is starting on {base} (Ctrl-C stops it). Try:

  curl -s {base}/health
  curl -s {base}/health/ready
  curl -s '{base}/api/recommendations/{known}?limit=10'          # MovieLens user 1
  curl -s '{base}/api/recommendations/{uuid.UUID(int=0)}'        # unknown user: popular media
  curl -s -X POST {base}/api/recommendations/batch \\
       -H 'Content-Type: application/json' \\
       -d '{{"user_ids": ["{known}", "{user_uuid(2)}"], "limit": 5}}'
""",
        flush=True,
    )
