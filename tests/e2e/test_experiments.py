"""Experiments through the production Gunicorn (4 workers, MODEL_RELOAD_INTERVAL 10 s) over HTTP:
every worker serves a user the same variant, a simulated experiment's report finds the effect it
was given (and an A/A run finds none), and impressions survive a model-database outage."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta

import numpy as np
import psycopg
import pytest
import requests

from database.schema import apply_schema
from ml_service.jobs import run_refresh
from services.experiments.assignment import assign, define
from settings import DatabaseUrls, Settings
from tests.conftest import ROOT, database_env, serving, settings_for
from tests.faults.scenario import Traffic
from tests.resilience import dataset
from tests.resilience.servers import StoppableServer

pytestmark = pytest.mark.e2e

INTERVAL = Settings.model_reload_interval  # the production default
SLACK = 5.0
BATCH = 50
H = 3600


@pytest.fixture
def urls(pg_server, schema_template):
    prefix = f"experiments_{os.getpid()}"
    urls = pg_server.create_urls(prefix, schema_template)
    dataset.fill(urls)
    assert run_refresh(settings_for(urls)) == 1
    yield urls
    pg_server.drop_urls(prefix)


def cli(urls: DatabaseUrls, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "ml_service", *args], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **database_env(urls)}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def workers_serving(log_text: str, name: str | None) -> set[int]:
    """Pids of the workers whose latest experiment log line names `name` (None: none running)."""
    latest: dict[int, str | None] = {}
    for line in log_text.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if re.fullmatch(r"experiment .+", record["message"]) and "experiment" in record:
                latest[record["pid"]] = record["experiment"]
    return {pid for pid, running in latest.items() if running == name}


def wait_for_every_worker(log, name: str | None, since: float) -> None:
    """Every one of the 4 workers logs the experiment within the interval, without a request."""
    while time.monotonic() < since + INTERVAL + SLACK:
        if len(workers_serving(log.read_text(), name)) == 4:
            return
        time.sleep(0.2)
    pytest.fail(f"not every worker serves experiment {name} after {INTERVAL + SLACK} s: "
                f"{workers_serving(log.read_text(), name)}")


def show_pages(base: str, users: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
    """Each user's page (batches of 50), as a client would show it."""
    pages = {}
    for start in range(0, len(users), BATCH):
        chunk = users[start:start + BATCH]
        response = requests.post(f"{base}/api/recommendations/batch", json={"user_ids": [str(u) for u in chunk],
                                                                          "limit": 3}, timeout=30)
        assert response.status_code == 200, response.text
        pages.update({uuid.UUID(k): v for k, v in response.json()["results"].items()})
    return pages


def shown_at(urls: DatabaseUrls, experiment: str, users: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """When each user's page was shown, once the workers' writers have stored them all."""
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(urls.model) as conn:
            rows = conn.execute("SELECT user_id, shown_at AT TIME ZONE 'UTC' FROM ml.impressions"
                                " WHERE experiment = %s AND user_id = ANY(%s)", (experiment, users)).fetchall()
        if len(rows) >= len(users) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rows) == len(users)
    return dict(rows)


def simulate(urls: DatabaseUrls, base: str, name: str, users: list[uuid.UUID], like: dict[str, float],
             experiment, seed: int) -> dict[str, int]:
    """Users look at their page; each likes one of its media with their variant's probability, a
    little after it was shown. Every user also does what must never count: likes a media their
    page did not show, likes a shown one before it was shown, and one after the window. Returns
    the likes that count, per variant."""
    pages = show_pages(base, users)
    assert all(page["experiment"] == {"name": name, "variant": assign(experiment, user).name}
               for user, page in pages.items())
    when = shown_at(urls, name, users)
    rng = np.random.default_rng(seed)
    rows, counted = [], dict.fromkeys(like, 0)
    everything = set(dataset.GENRES)
    for user in users:
        variant = assign(experiment, user).name
        shown = [uuid.UUID(item["media_id"]) for item in pages[user]["recommendations"]]
        at = when[user]
        if rng.random() < like[variant]:
            rows.append((user, shown[rng.integers(len(shown))], "LIKE", at + timedelta(seconds=float(rng.uniform(1, 23 * H)))))
            counted[variant] += 1
        rows.append((user, sorted(everything - set(shown))[0], "WATCH", at + timedelta(hours=1)))  # not shown
        rows.append((user, shown[0], "LIKE", at - timedelta(hours=1)))  # before it was shown
        rows.append((user, shown[-1], "WATCH", at + timedelta(hours=25)))  # after the window
    with psycopg.connect(urls.engagement) as conn, conn.cursor() as cur:
        first = cur.execute("SELECT coalesce(max(id), 0) + 1 FROM interaction").fetchone()[0]
        with cur.copy('COPY interaction (id, user_id, media_id, type, interaction_value, "timestamp") FROM STDIN') as copy:
            for n, (user, media, kind, at) in enumerate(rows):
                copy.write_row((first + n, user, media, kind, None, at))
    return counted


def report(urls: DatabaseUrls, name: str, out) -> dict:
    return json.loads(cli(urls, "experiments", "report", name, "--json", "--out", str(out)).stdout)


def test_every_worker_serves_one_variant_and_the_report_finds_a_simulated_effect(urls, tmp_path):
    with serving(urls, tmp_path) as base:
        log = tmp_path / "gunicorn.log"
        assert requests.get(f"{base}/api/experiments", timeout=5).json() == {"experiments": []}
        started = time.monotonic()
        cli(urls, "experiments", "start", "sim", "--variant", "control", "--variant", "better:diversity=0.2",
            "--salt", "simulation")
        experiment = define("sim", ["control", "better:diversity=0.2"], salt="simulation")
        wait_for_every_worker(log, "sim", started)
        listed = requests.get(f"{base}/api/experiments", timeout=5).json()["experiments"]
        assert [(e["name"], [(v["name"], v["share"], v["overrides"]) for v in e["variants"]]) for e in listed] == [
            ("sim", [("control", 0.5, {}), ("better", 0.5, {"diversity": 0.2})])]

        # One user, asked 24 times on new connections (so every worker answers): one variant.
        variant = assign(experiment, dataset.USER).name
        answers = [requests.get(f"{base}/api/recommendations/{dataset.USER}", timeout=5,
                                headers={"Connection": "close", "X-Request-ID": f"same-{i}"}) for i in range(24)]
        assert {(a.headers["X-Experiment"], a.json()["experiment"]["variant"]) for a in answers} == {
            (f"sim/{variant}", variant)}
        pids = {json.loads(line)["pid"] for line in log.read_text().splitlines()
                if line.startswith("{") and '"request_id": "same-' in line}
        assert len(pids) >= 2, pids

        # 6,000 simulated users, 15 % against 20 %: the report finds the difference.
        users = [uuid.UUID(int=0xA000_0000 + i) for i in range(6000)]
        counted = simulate(urls, base, "sim", users, {"control": 0.15, "better": 0.20}, experiment, seed=1)
        result = report(urls, "sim", tmp_path / "sim")
        metrics = requests.get(f"{base}/metrics", timeout=5).text
        for name in ("control", "better"):
            answered = sum(assign(experiment, u).name == name for u in users) + 24 * (variant == name)
            assert metric(metrics, f'ml_experiment_answers_total{{experiment="sim",variant="{name}"}}') == answered
        control, better = result["variants"]["control"], result["variants"]["better"]
        assert control["users"] + better["users"] == 6001  # and the one user asked 24 times
        assert control["impressions"] + better["impressions"] == 6000 + 24
        users_in = {v: sum(assign(experiment, u).name == v for u in users) for v in ("control", "better")}
        for name, truth in (("control", 0.15), ("better", 0.20)):
            row = result["variants"][name]
            assert row["converted_users"] == counted[name]  # nothing that must not count did
            assert row["users"] == users_in[name] + (variant == name)
            assert row["ci95"][0] <= truth <= row["ci95"][1], (name, row)
        assert better["p_value"] < 0.01 and better["lift"] > 0 and better["lift_ci95"][0] > 0
        assert result["srm_p_value"] > 0.001 and result["warnings"] == []
        assert {p.name for p in (tmp_path / "sim").iterdir()} == {"report.md", "report.json", "conversion.svg"}
        print("\n" + cli(urls, "experiments", "report", "sim").stdout)

        # An A/A run on other users: the same probability for both, no difference found.
        cli(urls, "experiments", "stop", "sim")
        started = time.monotonic()
        cli(urls, "experiments", "start", "aa", "--variant", "a", "--variant", "b", "--salt", "aa")
        wait_for_every_worker(log, "aa", started)
        experiment = define("aa", ["a", "b"], salt="aa")
        users = [uuid.UUID(int=0xB000_0000 + i) for i in range(6000)]
        counted = simulate(urls, base, "aa", users, {"a": 0.175, "b": 0.175}, experiment, seed=2)
        result = report(urls, "aa", tmp_path / "aa")
        assert [result["variants"][v]["converted_users"] for v in ("a", "b")] == [counted["a"], counted["b"]]
        assert result["variants"]["b"]["p_value"] >= 0.01
        print(cli(urls, "experiments", "report", "aa").stdout)


def test_impressions_survive_a_model_database_outage_and_the_drops_are_counted(pg_server, schema_template, tmp_path):
    prefix = f"outage_{os.getpid()}"
    sources = pg_server.create_urls(prefix, schema_template)
    model_server = StoppableServer(tmp_path / "model" / "data", "model_db")
    urls = DatabaseUrls(sources.user, sources.catalog, sources.engagement, model_server.url)
    try:
        apply_schema(urls)
        dataset.fill(urls)
        run_refresh(settings_for(urls))
        # The queue's capacity is small enough for a 20-second outage at this traffic to overflow it.
        with serving(urls, tmp_path, IMPRESSION_QUEUE_SIZE="50") as base:
            with Traffic(f"{base}/api/recommendations/{dataset.USER}?limit=3", clients=3, rate=10) as traffic:
                time.sleep(3)
                stopped = time.monotonic()
                model_server.stop()
                time.sleep(20)  # a long outage: every worker's queue fills and drops its oldest
                restarted = time.monotonic()
                model_server.start()
                time.sleep(5)
            before = [a.elapsed for a in traffic.between(0, stopped)]
            during = traffic.between(stopped, restarted)
            assert len(during) > 2 * 4 * 50 and all(a.status == 200 for a in traffic.answers)
            assert all(a.body["degraded"] == [] for a in traffic.answers)  # the model database is not on the path
            assert statistics.median(a.elapsed for a in during) <= 3 * statistics.median(before) + 0.05
            assert max(a.elapsed for a in during) < Settings.request_deadline_ms / 1000
            answered = len(traffic.answers)
            deadline = time.monotonic() + 30  # writing resumes by itself
            while time.monotonic() < deadline:
                metrics = requests.get(f"{base}/metrics", timeout=5).text
                written = metric(metrics, "ml_impressions_written_total")
                dropped = metric(metrics, "ml_impressions_dropped_total")
                if written + dropped >= answered:
                    break
                time.sleep(0.5)
            with psycopg.connect(urls.model) as conn:
                stored = conn.execute("SELECT count(*) FROM ml.impressions").fetchone()[0]
            print(f"\n{answered} pages answered, {stored} impressions stored, {dropped:.0f} dropped during the outage")
            assert dropped > 0 and stored == written and stored + dropped == answered
    finally:
        model_server.cleanup()
        pg_server.drop_urls(prefix)


def metric(text: str, sample: str) -> float:
    """A counter's value: `sample` is its name, summed over its labels, or a name with its labels."""
    labels = "" if "{" in sample else r"(?:\{[^}]*\})?"
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(sample)}{labels} (\S+)$", text, re.MULTILINE))
