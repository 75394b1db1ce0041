"""`python -m ml_service demo` (what `make demo` runs) serves real recommendations."""

import os
import re
import signal
import socket
import subprocess
import sys

import psycopg
import pytest
import requests

from services.movielens_import import user_uuid
from tests.conftest import ROOT, database_env, free_port, wait_for_http
from tests.db.helpers import add_media, new_id

pytestmark = pytest.mark.e2e


def test_demo_serves_ten_recommendations_for_a_movielens_user(tmp_path):
    port = free_port()
    log = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}
    with log.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "ml_service", "demo", "--pgdata", str(tmp_path / "pg"), "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health/ready", demo, log, timeout=180)
        body = requests.get(f"http://127.0.0.1:{port}/api/recommendations/{user_uuid(1)}", timeout=10).json()
        assert body["count"] == 10
        assert {item["source"] for item in body["recommendations"]} == {"hybrid"}
        printed = log.read_text()
        assert f"curl -s 'http://127.0.0.1:{port}/api/recommendations/{user_uuid(1)}" in printed
        # The databases it writes to, named before anything is written.
        for name in ("user_db", "catalog_db", "engagement_db"):
            assert re.search(rf"^  {name} +postgresql://\S+/{name}\?host=", printed, re.MULTILINE), printed
        assert "initdb" not in printed and "pgserver:" not in printed  # no embedded server's chatter
        try_what_it_prints(printed, port)
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
    assert code == 0, log.read_text()
    # Ctrl-C stops Gunicorn and the embedded PostgreSQL with it.
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


def try_what_it_prints(printed: str, port: int) -> None:
    """Every request the demo suggests answers 200, and its command line and psql lines work."""
    base = f"http://127.0.0.1:{port}"
    assert re.search(rf"^  {base}/docs ", printed, re.MULTILINE)
    assert requests.get(f"{base}/docs", timeout=10).status_code == 200
    urls = re.findall(r"^  curl -s '?(http://\S+?)'?(?:\s|$)", printed, re.MULTILINE)
    assert len(urls) == 7, printed  # readiness, user 1, a row, because, similar, an unknown user, genres
    for url in urls:
        response = requests.get(url, timeout=10)
        assert response.status_code == 200 and response.json(), (url, response.text)
    assert {"recommendations", "similar", "genres"} <= {key for url in urls for key in requests.get(url, timeout=10).json()}
    exports = dict(re.findall(r"^  export (\w+_DB_URL)='(\S+)'$", printed, re.MULTILINE))
    assert set(exports) == {"USER_DB_URL", "CATALOG_DB_URL", "ENGAGEMENT_DB_URL"}
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}, **exports}
    [python] = re.findall(r"^  (\S+) -m ml_service models ", printed, re.MULTILINE)
    models = subprocess.run([python, "-m", "ml_service", "models"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert models.returncode == 0 and models.stdout.splitlines()[1].split()[:2] == ["*", "1"], models.stderr
    [psql] = re.findall(r'^  (\S+/psql) "\$CATALOG_DB_URL"$', printed, re.MULTILINE)
    count = subprocess.run([psql, exports["CATALOG_DB_URL"], "-Atc", "SELECT count(*) FROM medias"],
                           capture_output=True, text=True, timeout=30)
    assert count.stdout.strip() == "9742", count.stderr


def run_demo(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "ml_service", "demo", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_busy_port_fails_the_demo_before_anything_is_set_up(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_demo("--pgdata", str(tmp_path / "pg"), "--port", str(port), env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"ml-service demo: cannot serve on 127.0.0.1:{port}: Address already in use; choose another port "
        "(make demo PORT=5050, or --port 5050)"
    )
    assert not (tmp_path / "pg").exists() and result.stdout == ""


def test_the_demo_refuses_external_databases_that_hold_data(db_urls, tmp_path):
    add_media(db_urls, new_id())
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}, **database_env(db_urls)}
    result = run_demo("--port", str(free_port()), env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "ml-service demo: the databases named by *_DB_URL hold data (catalog_db: medias); the demo would import "
        "MovieLens and publish a model into them. Use empty databases, unset *_DB_URL for an embedded server, "
        "or pass --yes"
    )
    with psycopg.connect(db_urls.catalog) as conn:
        assert conn.execute("SELECT count(*) FROM medias").fetchone()[0] == 1
    with psycopg.connect(db_urls.engagement) as conn:
        assert conn.execute("SELECT count(*) FROM interaction").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM ml.model_builds").fetchone()[0] == 0
