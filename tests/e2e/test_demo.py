"""`python -m ml_service demo` (what `make demo` runs) serves real recommendations."""

import os
import signal
import subprocess
import sys

import pytest
import requests

from services.movielens_import import user_uuid
from tests.conftest import ROOT, free_port, wait_for_http

pytestmark = pytest.mark.e2e


def test_demo_serves_ten_recommendations_for_a_movielens_user(tmp_path):
    port = free_port()
    log = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}
    with log.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "ml_service", "demo", "--pgdata", str(tmp_path / "pg"), "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health/ready", demo, log, timeout=180)
        body = requests.get(f"http://127.0.0.1:{port}/api/recommendations/{user_uuid(1)}", timeout=10).json()
        assert body["count"] == 10
        assert {item["source"] for item in body["recommendations"]} == {"hybrid"}
        assert f"curl -s 'http://127.0.0.1:{port}/api/recommendations/{user_uuid(1)}" in log.read_text()
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
    assert code == 0, log.read_text()
    # Ctrl-C stops Gunicorn and the embedded PostgreSQL with it.
    assert not (tmp_path / "pg" / "postmaster.pid").exists()
