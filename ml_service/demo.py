"""`make demo`: a working service on real MovieLens data with nothing installed but Python."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from database.schema import apply_schema
from services.movielens_import import import_movielens, media_uuid, user_uuid

GUNICORN_CONFIG = Path(__file__).parent / "gunicorn.conf.py"
URL_VARIABLES = ("USER_DB_URL", "CATALOG_DB_URL", "ENGAGEMENT_DB_URL", "MODEL_DB_URL")
# A table per database whose rows mean someone's data is there (the demo would mix MovieLens in).
DATA_TABLES = {
    "user": ("user_db", "user_preferences"),
    "catalog": ("catalog_db", "medias"),
    "engagement": ("engagement_db", "interaction"),
    "model": ("the model database", "ml.model_builds"),
}


class DemoRefused(Exception):
    """The demo will not run as asked (busy port, incomplete or non-empty external databases)."""


def run_demo(data_dir: Path, pgdata: Path, host: str, port: int, yes: bool = False) -> int:
    """Set up the databases (embedded unless *_DB_URL are set), import, refresh, serve until Ctrl-C.

    Everything that can refuse is checked before anything is written: the port is free, and
    external databases are complete and empty (or `yes`).
    """
    from ml_service.jobs import run_refresh
    from settings import ConfigError, Settings

    bind = f"{host}:{port}"
    check_port_free(host, port)
    server = None
    if any(os.environ.get(name) for name in URL_VARIABLES):
        try:
            urls = Settings.from_env().databases
        except ConfigError as error:
            raise DemoRefused(f"configuration error: {error} (or unset every *_DB_URL for the embedded server)") from None
        held = [] if yes else databases_holding_data(urls)
        if held:
            raise DemoRefused(
                f"the databases named by *_DB_URL hold data ({', '.join(held)}); the demo would import MovieLens "
                "and publish a model into them. Use empty databases, unset *_DB_URL for an embedded server, "
                "or pass --yes"
            )
        print("using the databases named by *_DB_URL")
    else:
        from database.embedded import create_databases, start_embedded

        print(f"starting embedded PostgreSQL in {pgdata} ...")
        server = start_embedded(pgdata.resolve(), cleanup_mode="stop")
        urls = create_databases(server)
    for name, url in (("user_db", urls.user), ("catalog_db", urls.catalog), ("engagement_db", urls.engagement),
                      ("model tables", urls.model)):
        print(f"  {name:14} {redact(url)}")
    env = {
        **os.environ,
        "USER_DB_URL": urls.user,
        "CATALOG_DB_URL": urls.catalog,
        "ENGAGEMENT_DB_URL": urls.engagement,
        "MODEL_DB_URL": urls.model,
        "BIND": bind,
    }
    os.environ.update(env)
    apply_schema(urls, sources=True)
    summary = import_movielens(data_dir, urls, progress=sys.stderr.isatty())
    print(f"imported {summary.media} media, {summary.users} users, {summary.interactions} interactions")
    # Told --yes, the databases may hold a larger model than MovieLens: publish anyway.
    version = run_refresh(Settings.from_env(), progress=sys.stderr.isatty(), force=yes)
    print(f"published model version {version}")
    _print_examples(bind, None if server is None else urls)
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


def check_port_free(host: str, port: int) -> None:
    """DemoRefused unless Gunicorn will be able to listen on host:port."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Gunicorn does
            probe.bind((host, port))
    except OSError as error:
        raise DemoRefused(
            f"cannot serve on {host}:{port}: {error.strerror or error}; choose another port "
            "(make demo PORT=5050, or --port 5050)"
        ) from None


def databases_holding_data(urls) -> list[str]:
    """Which of the databases hold rows in their data table (a missing table holds none)."""
    held = []
    for field, (name, table) in DATA_TABLES.items():
        with psycopg.connect(getattr(urls, field), connect_timeout=5) as conn:
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
            if exists and conn.execute(f"SELECT EXISTS (SELECT FROM {table})").fetchone()[0]:
                held.append(f"{name}: {table}")
    return held


def redact(url: str) -> str:
    """`url` with its password, if any, replaced by ***."""
    url = re.sub(r"(://[^:/@?]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(password=)[^\s&]*", r"\1***", url)


def _print_examples(bind: str, embedded) -> None:
    """What to try: requests, and (on the embedded server) the command line and psql on its databases."""
    base = f"http://{bind}"
    user = f"{base}/api/recommendations/{user_uuid(1)}"
    print(
        f"""
ml-service is starting on {base} (Ctrl-C stops it). Try:

  {base}/docs                                   # every route, with "Try it out"
  curl -s {base}/health/ready
  curl -s '{user}?limit=10'                     # MovieLens user 1
  curl -s '{user}?genres=comedy&release_year_min=1990&limit=5'   # a row: comedies since 1990
  curl -s '{user}?because={media_uuid(1)}&limit=5'   # because user 1 watched Toy Story
  curl -s '{base}/api/media/{media_uuid(1527)}/similar?limit=5'  # more like The Fifth Element
  curl -s '{base}/api/recommendations/{uuid.UUID(int=0)}'        # unknown user: popular media
  curl -s {base}/api/genres                     # what the genres filter takes
  curl -s -X POST {base}/api/recommendations/batch \\
       -H 'Content-Type: application/json' \\
       -d '{{"user_ids": ["{user_uuid(1)}", "{user_uuid(2)}"], "limit": 5}}'
""",
        flush=True,
    )
    if embedded is None:
        print("The command line reads the same *_DB_URL: python -m ml_service models (refresh, rollback ...)\n", flush=True)
        return
    from pgserver._commands import POSTGRES_BIN_PATH

    python = Path(sys.executable)
    python = python.relative_to(Path.cwd()) if python.is_relative_to(Path.cwd()) else python
    print(
        f"""The command line and psql on the demo's databases (another shell, while it runs):

  export USER_DB_URL='{embedded.user}'
  export CATALOG_DB_URL='{embedded.catalog}'
  export ENGAGEMENT_DB_URL='{embedded.engagement}'
  {python} -m ml_service models        # then refresh, rollback, experiments ...
  {POSTGRES_BIN_PATH / "psql"} "$CATALOG_DB_URL"
""",
        flush=True,
    )
