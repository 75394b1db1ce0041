"""The production Gunicorn configuration, started for real and called over HTTP."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from services.movielens_import import user_uuid
from tests.conftest import free_port, serving

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base_url(movielens_urls, tmp_path_factory):
    # the config's defaults: 4 workers x 2 threads
    with serving(movielens_urls, tmp_path_factory.mktemp("gunicorn")) as base:
        yield base


def test_health_and_readiness(base_url):
    assert requests.get(f"{base_url}/health", timeout=5).json()["status"] == "healthy"
    assert requests.get(f"{base_url}/health/ready", timeout=5).json()["status"] == "ready"


def test_recommendations_over_http_from_every_worker(base_url):
    users = [user_uuid(i) for i in range(1, 41)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda u: requests.get(f"{base_url}/api/recommendations/{u}", timeout=10), users))
    assert [r.status_code for r in responses] == [200] * len(users)
    assert all(r.json()["count"] == 10 for r in responses)
    hybrid = sum(item["source"] == "hybrid" for r in responses for item in r.json()["recommendations"])
    assert hybrid / (10 * len(users)) > 0.8


def test_batch_and_errors_over_http(base_url):
    users = [str(user_uuid(i)) for i in range(1, 51)]
    response = requests.post(f"{base_url}/api/recommendations/batch", json={"user_ids": users, "limit": 3}, timeout=10)
    assert response.status_code == 200 and response.json()["total_users"] == 50
    too_many = requests.post(
        f"{base_url}/api/recommendations/batch", json={"user_ids": users + [str(uuid.uuid4())]}, timeout=10
    )
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "invalid_request"
    assert requests.get(f"{base_url}/api/recommendations/xyz", timeout=5).status_code == 400


def test_a_configuration_error_stops_gunicorn_with_a_clear_message(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "ml_service" / "gunicorn.conf.py")],
        cwd=ROOT, env={**env, "BIND": f"127.0.0.1:{free_port()}"}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "missing required environment variable(s): USER_DB_URL" in result.stderr
