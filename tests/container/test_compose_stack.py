"""The container deployment for real: the README's compose steps on a private Docker engine.

The project's Dockerfile and docker-compose.yml are used as they are; only the two base images are
stand-ins (standins.py), under their real names. The tests run in file order, as an adopter
would: build, up, import and refresh, ask for recommendations, down.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from services.movielens_import import user_uuid
from tests.conftest import free_port
from tests.container.conftest import phase

UP_TIMEOUT = 300  # seconds: the service's health check starts after 30 s, then runs every 15 s
ANSWER_TIMEOUT = 120  # seconds for the workers to load the published model (MODEL_RELOAD_INTERVAL)
IMAGE_USER = "10001:10001"  # the Dockerfile's USER


@pytest.fixture(scope="module")
def compose(docker):
    """`docker compose` of the project's compose file, the stack up; down -v at the end, whatever happened."""
    port = free_port()
    docker.engine.env["ML_SERVICE_PORT"] = str(port)

    def compose(*args: str, timeout: float = 600) -> str:
        return docker("compose", *args, timeout=timeout)

    compose.port = port
    with phase("build the service image from the Dockerfile (docker compose build)"):
        compose("build")
    with phase("docker compose up --wait: PostgreSQL and the service healthy"):
        compose("up", "--detach", "--wait", "--wait-timeout", str(UP_TIMEOUT), timeout=UP_TIMEOUT + 60)
    try:
        yield compose
    finally:
        compose("down", "--volumes", "--remove-orphans")


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


def test_the_one_shot_job_imports_movielens_and_publishes_a_model(compose):
    with phase("docker compose run --rm movielens: import ml-latest-small, refresh"):
        output = compose("run", "--rm", "movielens")
    assert "imported 9742 media, 610 users" in output
    assert "published model version 1" in output


def test_the_service_answers_with_full_hybrid_recommendations(compose):
    url = f"http://127.0.0.1:{compose.port}/api/recommendations/{user_uuid(1)}"
    with phase("first answer from the published model"):
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            with urllib.request.urlopen(url, timeout=10) as response:
                page = json.load(response)
            if page["model_version"] is not None or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert page["model_version"] == 1, page
    assert page["degraded"] == []
    assert page["count"] == page["limit"] == len(page["recommendations"]) == 10
    assert {item["source"] for item in page["recommendations"]} == {"hybrid"}
    assert all(item["collaborative_score"] > 0 and item["because"] for item in page["recommendations"])
    with urllib.request.urlopen(f"http://127.0.0.1:{compose.port}/health/ready", timeout=10) as response:
        assert json.load(response)["status"] == "ready"


def test_down_removes_the_stack(docker, compose):
    with phase("docker compose down --volumes"):
        compose("down", "--volumes", "--remove-orphans")
    assert docker("ps", "--all", "--quiet") == ""
    assert docker("volume", "ls", "--quiet") == ""
    assert set(docker("network", "ls", "--format", "{{.Name}}").split()) == {"bridge", "host", "none"}
