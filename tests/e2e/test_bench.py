"""The load benchmark runs end to end on tiny data (a smoke run: it checks the report, never timings)."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, database_env

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="--baseline-ref needs the git repository")
def test_benchmark_runs_every_scenario_beside_a_baseline_revision_and_writes_its_report(db_urls, tmp_path):
    output = tmp_path / "RESULTS.md"
    command = [
        sys.executable, "-m", "bench.run", "--data", "synthetic", "--users", "200", "--media", "120",
        "--interactions", "6000", "--workers", "2", "--threads", "2", "--connections", "2",
        "--duration", "1", "--rounds", "2", "--warmup", "0.2", "--live-sql-requests", "4", "--profile-requests", "10",
        "--profile-layers", "1", "--baseline-ref", "HEAD", "--output", str(output),
    ]
    env = {**os.environ, **database_env(db_urls), "TMPDIR": str(tmp_path)}  # the worktree goes there
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = [line for line in lines if "baseline" not in line and "scenario" in line]
    assert [r["scenario"] for r in results] == [
        "health", "single", "batch", "filtered", "excluded", "similar", "because", "live_sql", "single_alone",
        "batch_alone"]
    assert [r["runs"] for r in results] == [2, 2, 2, 2, 2, 2, 2, 1, 1, 1]  # the first seven alternate in rounds
    for result in results:
        assert result["ok"] > 0 and result["errors"] == 0, result
        # CPU of the Gunicorn processes and of the (embedded, local) PostgreSQL, per request (in
        # clock ticks: a scenario of a few milliseconds may have used none)
        assert result["server_cpu_ms_per_request"] >= 0, result
        postgres = result["postgres_cpu_ms_per_request"]
        # measured when the server runs on this machine, as the embedded one does
        assert postgres >= 0 if not os.environ.get("TEST_ADMIN_DB_URL") else postgres is None or postgres >= 0, result
    assert sum(r["server_cpu_ms_per_request"] for r in results) > 0
    baseline = [line for line in lines if "baseline" in line]
    assert [(b["baseline"].split()[0], b["scenario"], b["runs"]) for b in baseline] == [
        ("HEAD", "single", 2), ("HEAD", "batch", 2)]  # measured in every round, as this checkout is
    for result in baseline:
        assert result["ok"] > 0 and result["errors"] == 0, result
        assert result["server_cpu_ms_per_request"] >= 0 and "server_cpu_ratio" in result, result
    report = output.read_text()
    # Media count: the live ones (the generator deletes a few in the catalog).
    assert re.search(r"200 users, 1[01]\d media, 6,000 interactions", report), report[:600]
    for heading in ("GET /health", "1 random user", "50 random users", "live co-interaction SQL", "one connection",
                    "Little's law", "CPU is the limit", "Worker memory", "a filtered row", "more like this", "x the single-user",
                    "rank_for_user", "whole request through Flask", "Where the workers' CPU goes, per layer"):
        assert heading in report
    assert report.count(" MB") >= 2  # one RSS figure per worker
    assert "## This checkout vs the baseline HEAD" in report
    for scenario in ("1 random user", "50 random users"):
        assert re.search(re.escape(scenario) + r"\): Gunicorn [\d.,]+x \(round by round: [\d., ]+\), PostgreSQL ",
                         report), report
    assert "Baseline worker memory" in report
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert str(tmp_path) not in worktrees  # removed at the end
