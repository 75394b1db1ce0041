"""docker-compose.yml checked against the code (no Docker engine here): settings, schema files, ports, health."""

import re
from urllib.parse import urlsplit

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from database.schema import SCHEMA_FILES
from ml_service.openapi import build_spec
from settings import SETTING_NAMES, Settings
from tests.conftest import ROOT
from tests.unit.test_env_example import parse_env_file, variables_read_by_code

DATABASES = {"user": "user_db", "catalog": "catalog_db", "engagement": "engagement_db"}
REQUIRED = {"USER_DB_URL", "CATALOG_DB_URL", "ENGAGEMENT_DB_URL"}  # Settings.from_env refuses to start without them


def interpolate(value, variables: dict[str, str]):
    """Compose's ${VAR:-default} and $$ for the values in `variables` (else the default)."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value
    value = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: variables.get(m[1]) or m[2] or "", value.replace("$$", "\0"))
    return value.replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return interpolate(raw, {})  # no .env: the defaults written in the file


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_the_service_reads_nothing_that_is_neither_set_nor_defaulted(compose):
    service = compose["services"]["ml-service"]
    env = service_env(service)
    assert REQUIRED <= set(env), "compose must set the database URLs"
    with_defaults = set(SETTING_NAMES) - REQUIRED
    gunicorn = {"BIND", "GUNICORN_WORKERS", "GUNICORN_THREADS", "GUNICORN_TIMEOUT", "PROMETHEUS_MULTIPROC_DIR", "MODEL_SHARE_DIR"}
    unknown = variables_read_by_code() - set(env) - with_defaults - gunicorn
    assert not unknown, f"read by the code but neither set in compose nor defaulted in the code: {sorted(unknown)}"
    settings = Settings.from_env({k: str(v) for k, v in env.items()})  # what the container would start with
    assert settings.databases.model == settings.databases.engagement
    assert service["env_file"] == [{"path": ".env", "required": False}]  # optional: .env.example is only a template


def test_database_urls_point_at_the_databases_the_init_script_creates(compose):
    env = service_env(compose["services"]["ml-service"])
    postgres = compose["services"]["postgres"]
    script = (ROOT / "docker" / "postgres" / "init-databases.sh").read_text()
    created = set(re.search(r"for database in ([\w ]+); do", script)[1].split())
    assert created == set(DATABASES.values())
    for part, name in DATABASES.items():
        url = urlsplit(env[f"{part.upper()}_DB_URL"])
        assert (url.hostname, url.port, url.path.lstrip("/")) == ("postgres", 5432, name)
    assert postgres["image"] == "postgres:16"


@pytest.mark.parametrize("service", ["ml-service", "movielens", "refresh", "refresh-scheduler"])
def test_credentials_reach_libpq_as_pguser_and_pgpassword_never_inside_a_url(compose, service):
    env = service_env(compose["services"][service])
    postgres = compose["services"]["postgres"]["environment"]
    # libpq's defaults for what a URL leaves out (tests/db/test_database_password_from_environment.py)
    assert (env["PGUSER"], env["PGPASSWORD"]) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    for name in ("USER_DB_URL", "CATALOG_DB_URL", "ENGAGEMENT_DB_URL", "MODEL_DB_URL"):
        url = urlsplit(env[name])
        assert (url.username, url.password) == (None, None), f"{service}: {name} carries credentials"
        assert not {"user", "password"} & set(conninfo_to_dict(env[name])), env[name]


PASSWORD = "p@ss:w/rd#1%2F?x=y&"  # everything a URL gives a meaning to


def test_a_password_with_url_characters_is_passed_intact():
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose = interpolate(raw, {"POSTGRES_USER": "ml:admin@x", "POSTGRES_PASSWORD": PASSWORD})
    postgres = compose["services"]["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"]) == ("ml:admin@x", PASSWORD)
    for service in ("ml-service", "movielens", "refresh", "refresh-scheduler"):
        env = service_env(compose["services"][service])
        assert (env["PGUSER"], env["PGPASSWORD"]) == ("ml:admin@x", PASSWORD)
        settings = Settings.from_env({k: str(v) for k, v in env.items()})
        for url in (settings.databases.user, settings.databases.catalog, settings.databases.engagement):
            assert PASSWORD not in url and "admin" not in url
            assert conninfo_to_dict(url)["host"] == "postgres"


def test_every_schema_file_is_mounted_and_applied_to_its_database(compose):
    volumes = compose["services"]["postgres"]["volumes"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in volumes if v.startswith("./")}
    assert (ROOT / mounts["/schema"]).resolve() == (ROOT / "database" / "schema").resolve()
    init = mounts["/docker-entrypoint-initdb.d/10-init-databases.sh"]
    script = (ROOT / init).read_text()
    applied = re.findall(r"^apply (\w+) (\S+\.sql)$", script, re.MULTILINE)
    expected = {(DATABASES.get(part, "engagement_db"), filename) for part, filename in SCHEMA_FILES.items()}
    assert set(applied) == expected  # model.sql goes to engagement_db: compose sets MODEL_DB_URL there
    assert {f for _, f in applied} == {p.name for p in (ROOT / "database" / "schema").glob("*.sql")}
    for source in mounts.values():
        assert (ROOT / source).exists(), source


def test_ports_and_health_checks_match_the_code(compose):
    service = compose["services"]["ml-service"]
    env = service_env(service)
    container_port = int(env.get("BIND", "0.0.0.0:5000").rsplit(":", 1)[1])
    published = [str(p) for p in service["ports"]]
    assert published == [f"5000:{container_port}"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"EXPOSE {container_port}" in dockerfile
    assert "healthcheck" not in service  # the image's HEALTHCHECK (test_dockerfile.py), declared once
    from ml_service.healthcheck import health_url

    assert health_url(env["BIND"]) == f"http://127.0.0.1:{container_port}/health"
    assert "/health" in build_spec()["paths"]
    assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    # TCP, not the socket: the server the init script runs against listens on the socket only.
    assert "pg_isready -h 127.0.0.1" in " ".join(compose["services"]["postgres"]["healthcheck"]["test"])


def test_jobs_import_movielens_and_refresh(compose):
    services = compose["services"]
    movielens = services["movielens"]
    command = " ".join(movielens["command"])
    assert "python -m ml_service import-movielens /data/ml-latest-small && python -m ml_service refresh" in command
    source, target, _ = movielens["volumes"][0].split(":")
    assert target == "/data/ml-latest-small" and (ROOT / source / "ratings.csv").exists()
    assert movielens["restart"] == "no" and movielens["profiles"] == ["setup"]
    assert services["refresh"]["command"] == ["python", "-m", "ml_service", "refresh"]
    assert "python -m ml_service refresh" in " ".join(services["refresh-scheduler"]["command"])
    for job in ("movielens", "refresh", "refresh-scheduler"):
        assert services[job]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert REQUIRED <= set(service_env(services[job]))


def test_compose_variables_are_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text)) | set(re.findall(r"\$\$\{(\w+)", text))
    example = parse_env_file((ROOT / ".env.example").read_text())
    assert used - set(example) == set()
