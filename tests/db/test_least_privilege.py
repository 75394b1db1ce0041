"""docs/source-databases.md, for real: the service runs with exactly the privileges it lists.

A PostgreSQL of its own (roles are server-wide) holds user_db, catalog_db, engagement_db and
model_db with PUBLIC's default privileges revoked, so that only what the contract grants counts.
The administrator, standing in for the services that own the sources, creates the source
tables and loads the train ratings of the evaluation's split of the bundled MovieLens; then the
The contract's SQL block runs as it is, with psql. As the roles it creates: init-db (the model schema
only; the source tables are refused), refresh (`python -m ml_service refresh`), Gunicorn over
HTTP, and the evaluation's ranking. The roles' privileges are compared with the contract's
table, so that a privilege creeping in fails here too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from psycopg import sql

from database.schema import SCHEMA_DIR, SCHEMA_FILES, SOURCE_DATABASES, SchemaError, apply_schema
from settings import DatabaseUrls
from tests.conftest import MOVIELENS_DIR, ROOT, database_env, serving, settings_for

DATABASES = {"user": "user_db", "catalog": "catalog_db", "engagement": "engagement_db", "model": "model_db"}
SERVING, REFRESH = "ml_service", "ml_refresh"
PASSWORD = "change-me"  # the contract's (pgserver trusts local connections, so it is not checked)
K = 10
KNOWN_USER = 1  # a MovieLens user with many ratings and liked genres

# What each role may do beyond CONNECT, per source database: SELECT on these tables (and
# USAGE on schema public when there is any); nothing else anywhere (the contract's table).
SOURCE_SELECT = {
    "user_db": {SERVING: {"user_preferences", "tb_user_genre"}, REFRESH: {"user_preferences", "tb_user_genre"}},
    "catalog_db": {SERVING: {"medias", "tb_media_genre"}, REFRESH: {"medias", "tb_media_genre"}},
    "engagement_db": {SERVING: {"interaction"}, REFRESH: {"interaction"}},
}
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def contract_sql() -> list[str]:
    """The SQL blocks of docs/source-databases.md: the grants, then the hand-over."""
    section = (ROOT / "docs" / "source-databases.md").read_text()
    blocks = re.findall(r"^```sql\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert len(blocks) == 2, "expected the grants and the hand-over of an existing schema ml"
    return blocks


class Cluster:
    """An embedded server with the four databases, hardened, the source tables created by the admin.

    Its directory is not under pytest's temporary root: pgserver opens the directories above
    its data to the user it runs PostgreSQL as (when run by root), and another pytest session
    starting meanwhile closes that root again (mode 0700), locking the server out.
    """

    def __init__(self) -> None:
        from database.embedded import start_embedded

        self.root = Path(tempfile.mkdtemp(prefix="ml-service-least-privilege-"))
        self.server = start_embedded(self.root / "data", cleanup_mode="delete")
        self.admin = self.urls(None)
        try:
            self._create_databases()
        except BaseException:
            self.cleanup()
            raise

    def _create_databases(self) -> None:
        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
            # A throwaway server, as the tests' main one (tests/conftest.py): no fsync.
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("SELECT pg_reload_conf()")
            for name in DATABASES.values():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        for name in DATABASES.values():
            with psycopg.connect(self.server.get_uri(name), autocommit=True) as conn:
                # Nothing from PUBLIC: CONNECT, TEMPORARY and USAGE on public must come from the contract.
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
                conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for part in SOURCE_DATABASES:  # what the owning services have
            with psycopg.connect(getattr(self.admin, part), autocommit=True) as conn:
                conn.execute((SCHEMA_DIR / SCHEMA_FILES[part]).read_text())

    def urls(self, role: str | None) -> DatabaseUrls:
        """The four databases as `role` (None: the administrator)."""

        def url(name: str) -> str:
            uri = self.server.get_uri(name)
            return uri if role is None else psycopg.conninfo.make_conninfo(uri, user=role, password=PASSWORD)

        return DatabaseUrls(**{part: url(name) for part, name in DATABASES.items()})

    def psql(self, script: str) -> None:
        """Run `script` with psql as the administrator, stopping at the first error."""
        import pgserver

        uri = urlsplit(self.server.get_uri())
        result = subprocess.run(
            [str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"), "-v", "ON_ERROR_STOP=1",
             "--no-psqlrc", "--quiet", "--host", parse_qs(uri.query)["host"][0], "--username", uri.username,
             "--dbname", "postgres"],
            input=script, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def refresh(self, role: str | None) -> subprocess.CompletedProcess:
        """`python -m ml_service refresh` as `role`."""
        return subprocess.run(
            [sys.executable, "-m", "ml_service", "refresh"],
            cwd=ROOT, env={**os.environ, **database_env(self.urls(role))},
            capture_output=True, text=True, timeout=120,
        )

    def cleanup(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


def schema_ml(cluster: Cluster) -> tuple[str | None, set[tuple[str, str]]]:
    """The owner of schema ml (None: no schema) and (table, owner) of each table in it."""
    with psycopg.connect(cluster.admin.model) as conn:
        owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'ml'").fetchone()
        tables = conn.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'ml'").fetchall()
    return (owner[0] if owner else None), set(tables)


def assert_denied(url: str, statement: str) -> None:
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as error:  # a role without CONNECT cannot even get there
        assert "permission denied for database" in str(error), error
        return
    with conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    """pgserver's runtime directory (its lock file) where it outlives every Cluster: under pytest's root."""
    from database.embedded import ensure_runtime_dir

    ensure_runtime_dir(tmp_path_factory.mktemp("least_privilege"))


@pytest.fixture(scope="module")
def contract(runtime_dir):
    """The contract's roles on the hardened cluster, the train split loaded; init-db and refresh run as ml_refresh."""
    from services.evaluation.split import temporal_split
    from services.movielens_import import import_data, read_movies, read_ratings

    cluster = Cluster()
    try:
        cluster.movies = read_movies(MOVIELENS_DIR / "movies.csv")
        cluster.split = temporal_split(read_ratings(MOVIELENS_DIR / "ratings.csv"))
        import_data(cluster.movies, cluster.split.train, cluster.admin, progress=False)
        cluster.psql(contract_sql()[0])
        cluster.schema_before_init = schema_ml(cluster)
        cluster.applied = apply_schema(cluster.urls(REFRESH))  # init-db
        cluster.refreshed = cluster.refresh(REFRESH)
        yield cluster
    finally:
        cluster.cleanup()


def test_init_db_creates_the_model_schema_without_touching_the_sources(contract):
    assert contract.schema_before_init == (None, set())
    assert contract.applied == ["model.sql"]
    owner, tables = schema_ml(contract)
    assert owner == REFRESH and tables and {table_owner for _, table_owner in tables} == {REFRESH}
    assert apply_schema(contract.urls(REFRESH)) == ["model.sql"]  # idempotent
    # The failure, now only where it belongs: creating the source tables needs their owner.
    with pytest.raises(SchemaError, match=r"^applying user_db\.sql to user_db failed: permission denied") as raised:
        apply_schema(contract.urls(SERVING), sources=True)
    assert isinstance(raised.value.__cause__, psycopg.errors.InsufficientPrivilege)
    with pytest.raises(SchemaError, match=r"^applying user_db\.sql to user_db failed: permission denied"):
        apply_schema(contract.urls(REFRESH), sources=True)
    # The web workers' role cannot create the model schema either.
    with pytest.raises(SchemaError, match=r"^applying model\.sql to model_db failed: permission denied"):
        apply_schema(contract.urls(SERVING))


def test_refresh_as_ml_refresh_publishes_a_model_ml_service_can_read(contract):
    result = contract.refreshed
    assert result.returncode == 0, result.stdout + result.stderr
    assert "permission denied" not in (result.stdout + result.stderr).lower(), result.stderr
    with psycopg.connect(contract.admin.engagement) as conn:
        interactions = conn.execute("SELECT count(*) FROM interaction").fetchone()[0]
    with psycopg.connect(contract.urls(SERVING).model) as conn:
        built = conn.execute("SELECT interactions_count FROM ml.model_builds").fetchall()
    assert built == [(interactions,)]


@pytest.mark.e2e
def test_gunicorn_as_ml_service_serves_full_hybrid_recommendations(contract, tmp_path):
    from services.movielens_import import user_uuid

    with serving(contract.urls(SERVING), tmp_path, GUNICORN_WORKERS="2") as base:
        ready = requests.get(f"{base}/health/ready", timeout=10)
        single = requests.get(f"{base}/api/recommendations/{user_uuid(KNOWN_USER)}", params={"limit": 20}, timeout=10)
        batch = requests.post(
            f"{base}/api/recommendations/batch",
            json={"user_ids": [str(user_uuid(u)) for u in (1, 2, 3)], "limit": 5}, timeout=10,
        )
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    assert single.status_code == 200, single.text
    body = single.json()
    assert body["degraded"] == [] and body["count"] == 20, body
    assert {item["source"] for item in body["recommendations"]} == {"hybrid"}, body
    assert any(item["collaborative_score"] > 0 for item in body["recommendations"]), body
    assert any(item["content_score"] > 0 for item in body["recommendations"]), body
    assert batch.status_code == 200 and batch.json()["degraded"] == [], batch.text
    assert "permission denied" not in (tmp_path / "gunicorn.log").read_text().lower()
    # The workers recorded what they showed (a stopping worker writes what it still holds).
    with psycopg.connect(contract.admin.model) as conn:
        assert conn.execute("SELECT count(*) FROM ml.impressions").fetchone()[0] == 1 + 3


def test_the_evaluation_ranks_as_ml_service_exactly_as_the_administrator(contract):
    """The evaluation's own steps (import, refresh) write, so they run as the admin and ml_refresh
    above; its ranking, RecommendationService.recommend_many in batches of 50, runs here as
    ml_service and must give every evaluated user what the administrator gets, undegraded."""
    from ml_service.app import build_runtime
    from services.evaluation import baselines, metrics
    from services.evaluation.run import BATCH_USERS
    from services.movielens_import import media_uuid, user_uuid

    split = contract.split
    movie_of = {media_uuid(m.movie_id): m.movie_id for m in contract.movies}

    def ranked(urls: DatabaseUrls) -> tuple[dict[int, list[int]], set[str]]:
        runtime = build_runtime(settings_for(urls))
        try:
            result, degraded = {}, set()
            for start in range(0, len(split.users), BATCH_USERS):
                batch = split.users[start : start + BATCH_USERS]
                pages = runtime.recommender.recommend_many([user_uuid(u) for u in batch], limit=K)
                for user in batch:
                    degraded.update(pages[user_uuid(user)].degraded)
                    result[user] = [movie_of[item.media.id] for item in pages[user_uuid(user)].items]
            return result, degraded
        finally:
            runtime.close()

    as_role, degraded = ranked(contract.urls(SERVING))
    assert degraded == set()
    assert as_role == ranked(contract.admin)[0]
    hybrid = metrics.summarise(as_role, split.relevant, split.users, K)
    train = baselines.TrainMatrix.from_ratings(split.train, [m.movie_id for m in contract.movies])
    popularity = metrics.summarise(baselines.popularity(train, split.users, K), split.relevant, split.users, K)
    assert hybrid["user_coverage"] == 1.0
    assert hybrid["ndcg"] > popularity["ndcg"], (hybrid, popularity)


def test_the_roles_cannot_write_the_source_tables(contract):
    # Qualified: a role without USAGE on schema public would not even find the tables.
    user_id, media_id = uuid.uuid4(), uuid.uuid4()
    writes = {
        "user_db": [
            f"INSERT INTO public.user_preferences (id, user_id) VALUES ('{uuid.uuid4()}', '{user_id}')",
            f"INSERT INTO public.tb_user_genre (user_id, genre_name) VALUES ('{user_id}', 'Drama')",
            "DELETE FROM public.tb_user_genre",
            "CREATE TABLE public.ml_scratch (a int)",
        ],
        "catalog_db": [
            f"INSERT INTO public.medias (id, title, media_type) VALUES ('{media_id}', 'x', 'movie')",
            "UPDATE public.medias SET deleted_at = now()",
            f"INSERT INTO public.tb_media_genre (media_id, genre_name) VALUES ('{media_id}', 'Drama')",
            "TRUNCATE public.tb_media_genre",
            "CREATE TABLE public.ml_scratch (a int)",
        ],
        "engagement_db": [
            "INSERT INTO public.interaction (id, user_id, media_id, type, \"timestamp\")"
            f" VALUES (-1, '{user_id}', '{media_id}', 'LIKE', now())",
            "DELETE FROM public.interaction",
            "CREATE INDEX ON public.interaction (\"timestamp\")",
            "CREATE TABLE public.ml_scratch (a int)",
        ],
    }
    for role in (SERVING, REFRESH):
        urls = contract.urls(role)
        for part in SOURCE_DATABASES:
            for statement in writes[DATABASES[part]]:
                assert_denied(getattr(urls, part), statement)


def test_ml_service_cannot_change_the_model(contract):
    model_db = contract.urls(SERVING).model
    _, tables = schema_ml(contract)
    assert_denied(model_db, "CREATE TABLE ml.scratch (a int)")
    assert_denied(model_db, "DELETE FROM ml.model_builds")
    for table, _ in tables:
        assert_denied(model_db, f"DROP TABLE ml.{table}")


def test_the_roles_hold_exactly_the_privileges_the_readme_lists(contract):
    def privileges(database: str, role: str) -> set[tuple]:
        with psycopg.connect(contract.server.get_uri(database)) as conn:
            held = {
                ("database", p)
                for p in ("CONNECT", "CREATE", "TEMPORARY")
                if conn.execute("SELECT has_database_privilege(%s, current_database(), %s)", (role, p)).fetchone()[0]
            }
            held |= set(conn.execute(
                """
                SELECT 'schema', n.nspname, p
                  FROM pg_namespace n, unnest(ARRAY['USAGE', 'CREATE']) AS p
                 WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
                   AND has_schema_privilege(%s, n.oid, p)
                """,
                (role,),
            ).fetchall())
            held |= set(conn.execute(
                """
                SELECT 'table', n.nspname || '.' || c.relname, p
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, unnest(%s::text[]) AS p
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
                   AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
                   AND has_table_privilege(%s, c.oid, p)
                """,
                (list(TABLE_PRIVILEGES), role),
            ).fetchall())
        return held

    for database, roles in SOURCE_SELECT.items():
        for role, tables in roles.items():
            # A role reads a database (CONNECT, USAGE on public, SELECT) or has no business there.
            expected = {("table", f"public.{t}", "SELECT") for t in tables}
            if tables:
                expected |= {("database", "CONNECT"), ("schema", "public", "USAGE")}
            assert privileges(database, role) == expected, (database, role)
    _, ml_tables = schema_ml(contract)
    assert privileges("model_db", SERVING) == {("database", "CONNECT"), ("schema", "ml", "USAGE")} | {
        ("table", f"ml.{t}", "SELECT") for t, _ in ml_tables
    } | {("table", "ml.impressions", "INSERT")}  # model.sql grants it to PUBLIC: append-only answered pages
    assert privileges("model_db", REFRESH) == {
        ("database", "CONNECT"), ("database", "CREATE"), ("schema", "ml", "USAGE"), ("schema", "ml", "CREATE")
    } | {("table", f"ml.{t}", p) for t, _ in ml_tables for p in TABLE_PRIVILEGES}  # the owner's


def test_a_schema_ml_created_by_an_administrator_is_handed_over(runtime_dir):
    """An existing deployment: init-db and refresh ran as an administrator; then the contract's two blocks."""
    from ml_service.app import build_runtime
    from tests.resilience.dataset import DRAMA_2, USER, fill

    cluster = Cluster()
    try:
        fill(cluster.admin)
        apply_schema(cluster.admin)
        first = cluster.refresh(None)
        assert first.returncode == 0, first.stderr
        grants, hand_over = contract_sql()
        cluster.psql(grants)
        with pytest.raises(SchemaError, match="permission denied for schema ml"):
            apply_schema(cluster.urls(REFRESH))  # before the hand-over
        cluster.psql(hand_over)
        assert apply_schema(cluster.urls(REFRESH)) == ["model.sql"]
        second = cluster.refresh(REFRESH)  # replaces the administrator's model tables
        assert second.returncode == 0, second.stdout + second.stderr
        owner, tables = schema_ml(cluster)
        assert owner == REFRESH and {table_owner for _, table_owner in tables} == {REFRESH}
        runtime = build_runtime(settings_for(cluster.urls(SERVING)))
        try:
            page = runtime.recommender.recommend_many([USER], limit=5)[USER]
        finally:
            runtime.close()
        assert page.degraded == ()
        assert any(item.media.id == DRAMA_2 and item.collaborative_score > 0 for item in page.items), page
    finally:
        cluster.cleanup()
