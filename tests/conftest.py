"""Fixtures: a real PostgreSQL server, throwaway databases with the schema, and MovieLens data.

The server is the embedded PostgreSQL 16 of the `pgserver` wheel, started once per test run
in a temporary directory, or the server at TEST_ADMIN_DB_URL (a URL whose user may create
databases) when that is set.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from database.schema import apply_schema
from settings import DatabaseUrls, Settings

ROOT = Path(__file__).resolve().parent.parent
MOVIELENS_DIR = ROOT / "data" / "ml-latest-small"
_names = itertools.count()


class Server:
    """A PostgreSQL server the tests may create and drop databases in."""

    def __init__(self, admin_url: str, url_for) -> None:
        self.admin_url = admin_url
        self.url_for = url_for  # database name -> URL

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(statement)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def create_urls(self, prefix: str, template_prefix: str | None = None) -> DatabaseUrls:
        """Three new databases named prefix_user, prefix_catalog, prefix_engagement."""
        urls = {
            part: self.create_database(f"{prefix}_{part}", f"{template_prefix}_{part}" if template_prefix else None)
            for part in ("user", "catalog", "engagement")
        }
        return DatabaseUrls(user=urls["user"], catalog=urls["catalog"], engagement=urls["engagement"], model=urls["engagement"])

    def drop_urls(self, prefix: str) -> None:
        for part in ("user", "catalog", "engagement"):
            self.drop_database(f"{prefix}_{part}")

    def dump_urls(self, urls: DatabaseUrls, directory: Path) -> None:
        """pg_dump the three databases into `directory` (pgserver's binaries)."""
        from pgserver._commands import POSTGRES_BIN_PATH

        for part in ("user", "catalog", "engagement"):
            subprocess.run(
                [POSTGRES_BIN_PATH / "pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                 f"--file={directory / part}.dump", f"--dbname={getattr(urls, part)}"],
                check=True, capture_output=True,
            )

    def restore_urls(self, prefix: str, directory: Path) -> DatabaseUrls:
        """Three new databases named prefix_*, restored from the dumps of dump_urls."""
        from pgserver._commands import POSTGRES_BIN_PATH

        urls = self.create_urls(prefix)
        for part in ("user", "catalog", "engagement"):
            subprocess.run(
                [POSTGRES_BIN_PATH / "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                 f"--dbname={getattr(urls, part)}", directory / f"{part}.dump"],
                check=True, capture_output=True,
            )
        return urls


# Run first: the fault matrix takes about three minutes, mostly waiting out its faults. With
# pytest-xdist (make test: -n 2 --dist loadfile --no-loadscope-reorder) one worker stages it while
# the other runs the rest, instead of it ending the run alone. The Spark refresh's test (about
# three minutes of local-mode Spark, the longest file after it) comes next, so that it runs
# beside the fault matrix's waiting instead of ending the run alone.
RUN_FIRST = ("tests/faults/", "tests/db/test_spark_engine.py")


# Run only when named, each by a make target of its own: tests/container (make test-container)
# needs root and a Docker engine; tests/cluster (make test-spark) starts a Spark standalone
# cluster, a few minutes that make test's 10 have no room for.
SEPARATE_TESTS = (ROOT / "tests" / "container", ROOT / "tests" / "cluster")


def pytest_ignore_collect(collection_path, config):
    if collection_path in SEPARATE_TESTS:
        named = (Path(arg.split("::")[0]).resolve() for arg in config.args)
        return not any(path == collection_path or collection_path in path.parents for path in named)
    return None


def pytest_collection_modifyitems(config, items):
    unique_node_ids(items)
    def rank(item) -> int:
        return next((n for n, prefix in enumerate(RUN_FIRST) if item.nodeid.startswith(prefix)), len(RUN_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


def unique_node_ids(items) -> None:
    """Give every test an id of its own.

    pytest 9.2 builds a test's id from its function's name and its parametrize() ids only, so
    schemathesis' tests, one per API operation named in the test's name, all share one id; and
    pytest-xdist schedules tests by id: it would run one of them and drop the others without a
    word. Such a test gets its name, operation included, as its id, and ids are checked unique.
    """
    counts = collections.Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1 and item.nodeid.rsplit("::", 1)[-1] != item.name:
            item._id = item.parent.id.child(item.name)
    duplicated = sorted(nodeid for nodeid, n in collections.Counter(item.nodeid for item in items).items() if n > 1)
    if duplicated:
        raise pytest.UsageError(f"several tests share an id (pytest-xdist would run only one): {duplicated}")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Server:
    """The PostgreSQL server of this test run."""
    admin_url = os.environ.get("TEST_ADMIN_DB_URL")
    if admin_url:
        yield Server(admin_url, lambda name: psycopg.conninfo.make_conninfo(admin_url, dbname=name))
        return
    from database.embedded import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    # A throwaway server: no fsync (which matters only when the machine itself goes down).
    # DROP DATABASE forces a checkpoint, which otherwise syncs every file the test's databases
    # wrote: 1-3 s per test that drops its databases, on this disk.
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("SELECT pg_reload_conf()")
    yield Server(server.get_uri(), server.get_uri)
    server.cleanup()


@pytest.fixture(scope="session")
def schema_template(pg_server: Server) -> str:
    """Prefix of three template databases that hold the schema and no rows."""
    prefix = f"tmpl_{os.getpid()}"
    urls = pg_server.create_urls(prefix)
    apply_schema(urls, sources=True)
    yield prefix
    pg_server.drop_urls(prefix)


@pytest.fixture
def db_urls(pg_server: Server, schema_template: str) -> DatabaseUrls:
    """Three empty databases with the schema, dropped after the test."""
    prefix = f"t{os.getpid()}_{next(_names)}"
    urls = pg_server.create_urls(prefix, schema_template)
    yield urls
    pg_server.drop_urls(prefix)


def settings_for(urls: DatabaseUrls, **overrides) -> Settings:
    """Settings pointing at `urls`, with test-friendly defaults; `overrides` count as given in the
    environment (Settings.explicit: a refresh does not tune them, the service serves them)."""
    values = {"model_reload_interval": 3600.0, **overrides}
    return Settings(databases=urls, explicit=frozenset(overrides), **values)


@pytest.fixture(scope="session")
def movielens_urls(pg_server: Server, schema_template: str, tmp_path_factory) -> DatabaseUrls:
    """The bundled ml-latest-small imported and refreshed once per run; tests must not write to it.

    Under pytest-xdist on the embedded servers (make test), the first worker to need it builds
    it (a minute: the refresh tunes) and dumps it beside the workers' temporary directories;
    the other restores that dump in seconds instead of building it again.
    """
    from ml_service.jobs import run_refresh
    from services.movielens_import import import_movielens

    prefix = f"movielens_{os.getpid()}"

    def build() -> DatabaseUrls:
        urls = pg_server.create_urls(prefix, schema_template)
        import_movielens(MOVIELENS_DIR, urls, progress=False)
        run_refresh(settings_for(urls), progress=False)
        return urls

    if not os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("TEST_ADMIN_DB_URL"):
        urls = build()
    else:
        shared = tmp_path_factory.getbasetemp().parent / "movielens-dump"  # this run's, not another's
        shared.mkdir(exist_ok=True)
        with open(shared / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (shared / "done").exists():
                urls = pg_server.restore_urls(prefix, shared)
            else:
                urls = build()
                pg_server.dump_urls(urls, shared)
                (shared / "done").touch()
    yield urls
    pg_server.drop_urls(prefix)


@pytest.fixture(scope="module")
def tcp_server(tmp_path_factory):
    """A PostgreSQL of the test module's own that also listens on 127.0.0.1: JDBC (the Spark
    refresh) connects over TCP only, and the run's shared server listens on a Unix socket
    (restarted by pgserver's bundled pg_ctl)."""
    from database.embedded import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("pg-tcp") / "data", cleanup_mode="delete")
    from pgserver._commands import pg_ctl  # after start_embedded: it gives pgserver its runtime directory

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET fsync = off")
    port = free_port()
    pg_ctl(["-w", "restart", "-m", "fast", "-o", f"-h 127.0.0.1 -p {port}"], pgdata=server.pgdata,
           user=server.system_user, timeout=120)
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    yield Server(admin, lambda name: psycopg.conninfo.make_conninfo(admin, dbname=name))
    # pgserver knows the server it started, not the one pg_ctl restarted: stop that one first,
    # or cleanup deletes the data directory under a running server.
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    server.cleanup()


@pytest.fixture(scope="module")
def movielens_tcp(tcp_server) -> DatabaseUrls:
    """ml-latest-small imported (not refreshed) into databases of the module's `tcp_server`."""
    from services.movielens_import import import_movielens

    urls = tcp_server.create_urls("movielens")
    apply_schema(urls, sources=True)
    import_movielens(MOVIELENS_DIR, urls, progress=False)
    return urls


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_env(urls: DatabaseUrls) -> dict[str, str]:
    """The environment variables naming `urls`."""
    return {
        "USER_DB_URL": urls.user,
        "CATALOG_DB_URL": urls.catalog,
        "ENGAGEMENT_DB_URL": urls.engagement,
        "MODEL_DB_URL": urls.model,
    }


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Poll `url` until it answers 200; fail with the process log if it dies or times out."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"process exited with {process.returncode} before {url} answered:\n{log.read_text()}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            # Gunicorn's master accepts connections before a worker can answer (slow on a
            # loaded machine): not ready yet, poll again until the deadline.
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"{url} did not answer 200 within {timeout} s:\n{log.read_text()}")


def start_gunicorn(urls: DatabaseUrls, port: int, log: Path, wsgi_app: str | None = None, **env) -> subprocess.Popen:
    """Gunicorn with the production config file, serving `urls` on 127.0.0.1:`port`; output to `log`.

    `wsgi_app` replaces the config's app (a test wrapper around it).
    """
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "ml_service" / "gunicorn.conf.py"), *filter(None, [wsgi_app])],
            cwd=ROOT,
            env={**os.environ, **database_env(urls), "BIND": f"127.0.0.1:{port}", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def serving(urls: DatabaseUrls, log_dir: Path, **env):
    """Gunicorn (production config) on a free port, ready; yields its base URL, then stops it.

    It must stop cleanly on SIGTERM, as under a container runtime.
    """
    port = free_port()
    log = log_dir / "gunicorn.log"
    process = start_gunicorn(urls, port, log, **env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health/ready", process, log)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert code == 0, log.read_text()
