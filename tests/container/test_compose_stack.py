"""The container deployment for real: docs/deploy.md's compose steps on a private Docker engine.

The project's Dockerfile and docker-compose.yml are used as they are; only the two base images are
stand-ins (standins.py), under their real names. The tests run in file order, as an adopter
would: build, up, import and refresh, ask for recommendations, refresh on a schedule, down.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from services.movielens_import import user_uuid
from tests.conftest import ROOT, free_port
from tests.container.conftest import phase

UP_TIMEOUT = 300  # seconds: the service's health check starts after 30 s, then runs every 15 s
REFRESH_TIMEOUT = 180  # seconds for the scheduler's first refresh of ml-latest-small
ANSWER_TIMEOUT = 120  # seconds for the workers to load the published model (MODEL_RELOAD_INTERVAL)
IMAGE_USER = "10001:10001"  # the Dockerfile's USER


# The first step (docs/deploy.md) is `cp .env.example .env`, then change POSTGRES_PASSWORD. This one has
# every character that means something in a URL, and " #" and "$", which .env takes literally
# only in single quotes (docs/deploy.md): the credentials must reach PostgreSQL and libpq intact.
PASSWORD = "p@ss:w/rd #1%2F?x=$y"


def adopters_checkout(target: Path) -> Path:
    """The project's files as a clone has them (tracked and new, not ignored), plus the .env an
    adopter makes from .env.example; a developer's own .env stays out of the test."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)  # keeps the init script executable
    env = (ROOT / ".env.example").read_text()
    assert "\nPOSTGRES_PASSWORD=change-me\n" in env
    (target / ".env").write_text(env.replace("\nPOSTGRES_PASSWORD=change-me\n", f"\nPOSTGRES_PASSWORD='{PASSWORD}'\n"))
    return target


@pytest.fixture(scope="module")
def compose(docker, tmp_path_factory):
    """`docker compose` in an adopter's checkout, the stack up; down -v at the end, whatever happened."""
    docker.cwd = adopters_checkout(tmp_path_factory.mktemp("checkout"))
    port = free_port()
    docker.engine.env["ML_SERVICE_PORT"] = str(port)  # the environment wins over .env's 5000

    def compose(*args: str, timeout: float = 600) -> str:
        return docker("compose", *args, timeout=timeout)

    def down() -> None:
        # The containers' logs first, for a post-mortem (ML_SERVICE_CONTAINER_STATE/compose.log).
        logs = compose("--profile", "scheduler", "logs", "--no-color")
        if logs:
            (docker.engine.dir / "compose.log").write_text(logs)
        compose("--profile", "scheduler", "down", "--volumes")

    compose.port = port
    compose.down = down
    try:
        with phase("build the service image from the Dockerfile (docker compose build)"):
            compose("build")
        with phase("docker compose up --wait: PostgreSQL and the service healthy"):
            compose("up", "--detach", "--wait", "--wait-timeout", str(UP_TIMEOUT), timeout=UP_TIMEOUT + 60)
        yield compose
    finally:
        compose.down()


def container(docker, service: str) -> dict:
    ids = docker("compose", "ps", "--all", "--quiet", service).split()
    assert len(ids) == 1, f"{service}: containers {ids}"
    return json.loads(docker("inspect", ids[0]))[0]


def test_the_service_runs_as_the_images_non_root_user(docker, compose):
    assert json.loads(docker("image", "inspect", "ml-service:latest"))[0]["Config"]["User"] == IMAGE_USER
    uids = compose("exec", "-T", "ml-service", "sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status").split("\n")
    uids = {line.split()[1] for line in uids if line}  # real uid of every process: Gunicorn, its workers
    assert uids == {IMAGE_USER.split(":")[0]}


def test_both_services_are_healthy_by_their_own_checks(docker, compose):
    service = container(docker, "ml-service")
    image = json.loads(docker("image", "inspect", "ml-service:latest"))[0]
    # compose declares no health check for the service: the image's HEALTHCHECK is the one that ran.
    assert service["Config"]["Healthcheck"] == image["Config"]["Healthcheck"]
    assert image["Config"]["Healthcheck"]["Test"] == ["CMD", "python", "-m", "ml_service.healthcheck"]
    assert service["State"]["Health"]["Status"] == "healthy"
    assert service["State"]["Health"]["Log"][-1]["ExitCode"] == 0
    assert container(docker, "postgres")["State"]["Health"]["Status"] == "healthy"


def test_the_password_in_env_reaches_postgres_and_the_service_intact(docker, compose):
    # The service's answers below then prove libpq authenticated with it, over TCP (scram-sha-256).
    assert f"POSTGRES_PASSWORD={PASSWORD}" in container(docker, "postgres")["Config"]["Env"]
    assert f"PGPASSWORD={PASSWORD}" in container(docker, "ml-service")["Config"]["Env"]


def test_the_one_shot_job_imports_movielens_and_publishes_a_model(compose):
    with phase("docker compose run --rm movielens: import ml-latest-small, refresh"):
        output = compose("run", "--rm", "movielens")
    assert "imported 9742 media, 610 users" in output
    assert "published model version 1" in output


def test_the_service_answers_with_full_hybrid_recommendations(compose):
    url = f"http://127.0.0.1:{compose.port}/api/recommendations/{user_uuid(1)}"
    unavailable = []
    with phase("first answer from the published model"):
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    page = json.load(response)
            except urllib.error.HTTPError as error:
                # 503 is the service's answer when a database call outlives the request
                # deadline (a loaded machine, the workers loading the new model): ask again.
                assert error.code == 503 and time.monotonic() < deadline, f"{error}: {error.read()!r}"
                unavailable.append(json.load(error)["error"]["message"])
                time.sleep(1)
                continue
            if page["model_version"] is not None or time.monotonic() > deadline:
                break
            time.sleep(1)
    if unavailable:
        print(f"[container] {len(unavailable)} answers of 503 first: {sorted(set(unavailable))}")
    assert page["model_version"] == 1, page
    assert page["degraded"] == []
    assert page["count"] == page["limit"] == len(page["recommendations"]) == 10
    assert {item["source"] for item in page["recommendations"]} == {"hybrid"}
    assert all(item["collaborative_score"] > 0 and item["because"] for item in page["recommendations"])
    # Each worker loads the model on its own (within MODEL_RELOAD_INTERVAL): ask until the one
    # that answers /health/ready has it too.
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{compose.port}/health/ready", timeout=10) as response:
            readiness = json.load(response)
        if readiness["status"] == "ready" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert readiness["status"] == "ready", readiness


def test_the_refresh_scheduler_publishes_and_stops_when_asked(docker, compose):
    with phase("refresh-scheduler: a refresh, then docker compose stop"):
        compose("--profile", "scheduler", "up", "--detach", "refresh-scheduler")
        deadline = time.monotonic() + REFRESH_TIMEOUT
        while "published model version 2" not in compose("logs", "refresh-scheduler"):
            assert time.monotonic() < deadline, compose("logs", "refresh-scheduler")
            time.sleep(1)
        compose("--profile", "scheduler", "stop", "refresh-scheduler")
    state = container(docker, "refresh-scheduler")["State"]
    # 137 (SIGKILL): SIGTERM did nothing and docker killed it when its stop timeout ran out.
    assert state["ExitCode"] != 137, state


def test_down_removes_the_stack(docker, compose):
    with phase("docker compose down --volumes"):
        compose.down()  # with --profile scheduler, as docs/deploy.md says: down leaves it behind otherwise
    assert docker("ps", "--all", "--quiet") == ""
    assert docker("volume", "ls", "--quiet") == ""
    assert set(docker("network", "ls", "--format", "{{.Name}}").split()) == {"bridge", "host", "none"}
