"""A published model, and a rollback, reach every Gunicorn worker within MODEL_RELOAD_INTERVAL,
with no request in between; answers, /api/model, /health/ready and /metrics say which model;
the machine holds one copy of each model, read from the database once and mapped by every worker."""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import requests

from ml_service.jobs import run_refresh
from settings import Settings
from tests.conftest import ROOT, database_env, serving, settings_for
from tests.db.helpers import add_interactions, add_media
from tests.resilience import dataset

pytestmark = pytest.mark.e2e

INTERVAL = Settings.model_reload_interval  # the production default
# Seconds a worker may take beyond the interval to load a model this small.
LOAD_SLACK = 3.0


@pytest.fixture
def urls(pg_server, schema_template):
    prefix = f"versions_{os.getpid()}"
    urls = pg_server.create_urls(prefix, schema_template)
    dataset.fill(urls)
    yield urls
    pg_server.drop_urls(prefix)


def worker_loads(log_text: str) -> dict[int, list[tuple[int, float]]]:
    """Per worker pid, the (model version, time) of each "model loaded" line."""
    loads: dict[int, list[tuple[int, float]]] = {}
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "model_version" in record and re.fullmatch(r"model \d+ loaded", record["message"]):
            at = datetime.fromisoformat(record["time"]).timestamp()
            loads.setdefault(record["pid"], []).append((record["model_version"], at))
    return loads


def mapped_models(workers) -> dict[int, set[str]]:
    """Per worker pid, the names of the model files it maps (services/shared_models.py)."""
    return {
        pid: {line.rsplit("/", 1)[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
              if line.endswith(".model")}
        for pid in workers
    }


def written(log_text: str) -> list[str]:
    """The files of model versions that a worker read from the database and wrote for the others
    to map, in order (not those of a model the catalog sync extended)."""
    found = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            match = re.fullmatch(r"model file (v\d+\.model) written for the other workers to map.*",
                                 json.loads(line)["message"])
            found += [match.group(1)] if match else []
    return found


def served_versions(base: str) -> tuple[float, float]:
    text = requests.get(f"{base}/metrics", timeout=5).text
    low = re.search(r"^ml_model_version (\S+)$", text, re.MULTILINE)
    high = re.search(r"^ml_model_version_max (\S+)$", text, re.MULTILINE)
    return float(low.group(1)), float(high.group(1))


def answer(base: str) -> requests.Response:
    response = requests.get(f"{base}/api/recommendations/{dataset.USER}", timeout=5)
    assert response.status_code == 200
    return response


def assert_every_worker_switched(log, workers, version: int, since: float) -> None:
    """Each worker logs loading `version` within the interval (the log is watched: no request is sent)."""
    while time.time() < since + INTERVAL + LOAD_SLACK:
        loads = worker_loads(log.read_text())
        if all(any(v == version and at >= since - 1 for v, at in loads.get(pid, [])) for pid in workers):
            break
        time.sleep(0.2)
    loads = worker_loads(log.read_text())
    for pid in workers:
        switched = [at for v, at in loads.get(pid, []) if v == version and at >= since - 1]
        assert switched, f"worker {pid} never loaded model {version}: {loads.get(pid)}"
        assert switched[0] - since <= INTERVAL + LOAD_SLACK, f"worker {pid} took {switched[0] - since:.1f} s"


def test_a_refresh_and_a_rollback_reach_every_worker_without_traffic(urls, tmp_path):
    assert run_refresh(settings_for(urls)) == 1
    with serving(urls, tmp_path) as base:  # production defaults: 4 workers, MODEL_RELOAD_INTERVAL 10 s
        log = tmp_path / "gunicorn.log"
        first = answer(base)
        assert first.headers["X-Model-Version"] == "1" and first.json()["model_version"] == 1
        deadline = time.monotonic() + 60
        while len(workers := set(worker_loads(log.read_text()))) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)  # the other workers are still booting
        assert len(workers) == 4, log.read_text()
        assert written(log.read_text()) == ["v1.model"]  # one worker read it, the others mapped its file
        assert all("v1.model" in names for names in mapped_models(workers).values())

        # A new comedy many users liked: version 2 ranks it for the comedy fan.
        comedy = uuid.UUID("00000000-0000-4000-8000-000000000199")
        add_media(urls, comedy, title="Comedy new", genres=["Comedy"])
        add_interactions(urls, [(uuid.UUID(int=0x8000 + i), comedy, "LIKE", None, 20) for i in range(20)])
        assert run_refresh(settings_for(urls)) == 2
        published = time.time()
        assert_every_worker_switched(log, workers, 2, published)
        assert served_versions(base) == (2.0, 2.0)
        assert written(log.read_text()) == ["v1.model", "v2.model"]
        assert all("v2.model" in names for names in mapped_models(workers).values())
        second = answer(base)
        assert second.headers["X-Model-Version"] == "2" and str(comedy) in second.text
        model = requests.get(f"{base}/api/model", timeout=5).json()
        assert (model["version"], model["media"]) == (2, 6)
        assert requests.get(f"{base}/health/ready", timeout=5).json()["model"]["version"] == 2

        rollback = subprocess.run(
            [sys.executable, "-m", "ml_service", "rollback"],
            cwd=ROOT, env={**os.environ, **database_env(urls)}, capture_output=True, text=True, timeout=60,
        )
        assert rollback.returncode == 0, rollback.stderr
        rolled_back = time.time()
        assert_every_worker_switched(log, workers, 1, rolled_back)
        assert served_versions(base) == (1.0, 1.0)
        assert written(log.read_text()) == ["v1.model", "v2.model"]  # version 1's file was still there
        # The earlier version's answers, exactly, but for the new comedy: not in model 1, it is
        # still recommended to the comedy fan by genre (the catalog sync), without model 2's neighbours.
        again = answer(base)
        assert again.headers["X-Model-Version"] == "1"
        items = again.json()["recommendations"]
        assert [i for i in items if i["media_id"] != str(comedy)] == first.json()["recommendations"]
        assert [(i["content_score"] > 0, i["collaborative_score"]) for i in items if i["media_id"] == str(comedy)] == [
            (True, 0.0)]
