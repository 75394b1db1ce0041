"""One-command load benchmark: `python -m bench.run [options]` (see `make bench`).

1. Finds the databases: the *_DB_URL environment variables, or an embedded PostgreSQL in
   --pgdata (started and left running, so a large data set is generated once).
2. Loads data if the databases are empty (--data movielens: the bundled ml-latest-small;
   --data synthetic: `generate-synthetic` with --users/--media/--interactions) and runs the
   refresh if no model is published.
3. Starts Gunicorn with the production config (ml_service/gunicorn.conf.py) serving
   bench.reference_wsgi:app (the production app plus the original design's live SQL query).
4. Drives it from a separate process (bench.load, asyncio + aiohttp) with a fixed number of
   connections, one scenario after the other: GET /health (the ceiling), single-user GET with
   random real user ids, batch POST of 50 random users, the live SQL reference, and the
   single and batch requests again from one connection (their latency when no request waits
   for another).
5. Reads each worker's memory (RSS, and PSS, which counts a page the workers share once across
   them) and the size of the model file they map, and writes the report (--output, default
   bench/RESULTS.md).

With --baseline-ref REV it also serves the code of git revision REV (a temporary worktree) from a
second Gunicorn, measures the single and batch scenarios on both servers in alternation and
reports their cost side by side: what a change costs per request, within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from bench import layers
from bench.load import figures

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = ROOT / "ml_service" / "gunicorn.conf.py"
MOVIELENS_DIR = ROOT / "data" / "ml-latest-small"
SCENARIO_NAMES = {
    "health": "GET /health (ceiling: no database work)",
    "single": "GET /api/recommendations/<id> (1 random user)",
    "batch": "POST /api/recommendations/batch (50 random users)",
    "live_sql": "original design: live co-interaction SQL (1 user)",
    "single_alone": "GET /api/recommendations/<id>, one connection (latency without queueing)",
    "batch_alone": "POST /api/recommendations/batch, one connection (latency without queueing)",
    "filtered": "GET /api/recommendations/<id>?genres=..&release_year_min=.. (a filtered row)",
    "excluded": "GET /api/recommendations/<id>?exclude=<20 media ids> (a row leaving out what a page shows)",
    "similar": "GET /api/media/<id>/similar (more like this, 1 random media)",
    "because": "GET /api/recommendations/<id>?because=<a media they liked> (because you watched)",
}
REQUIRED_SCENARIOS = ("health", "single", "batch", "live_sql")
INTERLEAVED = ("health", "single", "batch", "filtered", "excluded", "similar", "because")
COMPARED = ("single", "batch")  # also measured on the --baseline-ref server


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--pgdata", type=Path, default=ROOT / ".bench" / "pgdata",
                        help="embedded PostgreSQL directory, used unless USER_DB_URL is set")
    parser.add_argument("--data", choices=("movielens", "synthetic"), default="movielens",
                        help="what to load when the databases are empty")
    parser.add_argument("--users", type=int, default=162_000)
    parser.add_argument("--media", type=int, default=59_000)
    parser.add_argument("--interactions", type=int, default=25_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unrecorded load before each scenario")
    parser.add_argument("--live-sql-requests", type=int, default=16,
                        help="requests of the (slow) live SQL reference; it stops at --duration too")
    parser.add_argument("--scenarios", default="health,single,batch,filtered,excluded,similar,because,live_sql,single_alone,batch_alone",
                        help="comma-separated subset to run (the report needs the first four)")
    parser.add_argument("--profile-requests", type=int, default=200,
                        help="requests timed stage by stage in one process after the load (0: skip)")
    parser.add_argument("--profile-layers", type=float, default=10.0, metavar="SECONDS",
                        help="then sample the workers with py-spy for this long under the single and the batch load, "
                             "on each server, and report where their CPU goes per layer (0: skip; bench/layers.py)")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=4,
                        help="health, single, batch, filtered, excluded, similar and because alternate in this many rounds of "
                             "duration / rounds seconds")
    parser.add_argument("--experiment", action="store_true",
                        help="run an A/A experiment (two variants, no overrides: what the experiment machinery costs) while measuring: every answer is "
                             "assigned a variant; with --baseline-ref, the baseline server reads a copy of the model database without it "
                             "(--experiment --baseline-ref HEAD: the same code with and without a running experiment)")
    parser.add_argument("--baseline-ref", metavar="REV",
                        help="also serve git revision REV (a temporary worktree) from a second Gunicorn and "
                             "alternate single and batch between the two servers in every round")
    args = parser.parse_args(argv)

    urls, server = _databases(args.pgdata)
    _ensure_data(urls, args)
    size = _data_size(urls)
    size["server"] = _server_settings(urls)
    ids = _user_ids(urls, args.seed)
    port = args.port or _free_port()
    with tempfile.TemporaryDirectory(prefix="ml-bench-") as tmp, contextlib.ExitStack() as stack:
        baseline_urls = urls
        if args.experiment:
            if args.baseline_ref:  # the baseline serves the same model, without the experiment
                baseline_urls = stack.enter_context(_model_database_copy(server, urls))
            stack.enter_context(_experiment(urls))
        ids_file = Path(tmp) / "ids.txt"
        ids_file.write_text("\n".join(ids))
        (Path(tmp) / "media.txt").write_text("\n".join(_media_ids(urls, args.seed)))
        (Path(tmp) / "liked.txt").write_text("\n".join(_liked(urls, ids[:2_000])))
        log = Path(tmp) / "gunicorn.log"
        models_dir = Path(tmp) / "models"
        gunicorn = _start_gunicorn(urls, port, args, log, MODEL_SHARE_DIR=str(models_dir))
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, gunicorn, log)
            processes = {"server": gunicorn.pid, "postgres": _postmaster(urls)}
            scenarios = args.scenarios.split(",")
            parts: dict[str, list[dict]] = {s: [] for s in scenarios}
            # Each server measured: its URL, the processes whose CPU counts, its runs per scenario.
            servers = [(base, processes, parts)]
            baseline = None
            if args.baseline_ref:
                baseline = stack.enter_context(_baseline_server(args.baseline_ref, baseline_urls, args, Path(tmp)))
                baseline["processes"] = {**processes, "server": baseline["pid"]}
                baseline["parts"] = {s: [] for s in scenarios if s in COMPARED}
                servers.append((baseline["base"], baseline["processes"], baseline["parts"]))
            # The ceiling and what it is compared with alternate in rounds, so that a busy moment
            # of a shared machine hits each of them alike; the other scenarios run once. With a
            # baseline, COMPARED run on both servers in turn, which of them first alternating by round.
            interleaved = [s for s in scenarios if s in INTERLEAVED]
            for round_ in range(args.rounds):
                for scenario in interleaved:
                    turns = [server for server in servers if scenario in server[2]]
                    for url, measured, into in turns[::-1] if round_ % 2 else turns:
                        into[scenario].append(_measure(
                            url, scenario, ids_file, args, measured, Path(tmp),
                            duration=args.duration / args.rounds, warmup=args.warmup if round_ == 0 else 1.0,
                        ))
            for scenario in scenarios:
                if scenario not in INTERLEAVED:
                    parts[scenario].append(_measure(
                        base, scenario, ids_file, args, processes, Path(tmp), duration=args.duration,
                        warmup=0 if scenario == "live_sql" else args.warmup,
                    ))
            results = {}
            for scenario in scenarios:
                results[scenario] = _merge(scenario, parts[scenario], processes)
                print(json.dumps(results[scenario]), flush=True)
            by_layer = {}
            if args.profile_layers > 0:
                for label, url, measured in [("this checkout", base, processes)] + (
                        [(f"baseline {baseline['label']}", baseline["base"], baseline["processes"])] if baseline else []):
                    for scenario in ("single", "batch"):
                        by_layer[(label, scenario)] = _layers(url, scenario, ids_file, args, measured, Path(tmp))
            memory = _worker_memory(gunicorn.pid)
            memory["model_bytes"] = sum(path.stat().st_size for path in models_dir.glob("*.model"))
            if baseline:
                baseline["results"] = {s: _merge(s, runs, baseline["processes"]) for s, runs in baseline["parts"].items()}
                baseline["memory"] = _worker_memory(baseline["pid"])
                for scenario, result in baseline["results"].items():
                    print(json.dumps({"baseline": baseline["label"], **result,
                                      "server_cpu_ratio": _cpu_ratio(results[scenario], result, "server")}), flush=True)
        finally:
            _stop(gunicorn)
    print(json.dumps({"worker_rss_mb": [round(r / 2**20) for r in memory["rss"]],
                      "worker_pss_mb": round(sum(memory["pss"]) / 2**20), "model_mb": round(memory["model_bytes"] / 2**20)}))
    profiles = []
    if args.profile_requests > 0:
        for batch, count in ((1, args.profile_requests), (50, max(1, args.profile_requests // 10))):
            profiles.append(_profile(urls, batch, count))
            print(profiles[-1], flush=True)
    if set(REQUIRED_SCENARIOS) <= set(results):
        report = _report(results, memory, size, args, argv, profiles)
        if baseline:
            report += _comparison(results, parts, baseline, args, memory["model_bytes"])
        if by_layer:
            report += _layers_section(by_layer, results, baseline, args)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
        print(f"wrote {args.output}")
    del server
    return 0


def _databases(pgdata: Path):
    from settings import Settings

    if os.environ.get("USER_DB_URL"):
        return Settings.from_env().databases, None
    from database.embedded import create_databases, start_embedded
    from database.schema import apply_schema

    server = start_embedded(pgdata.resolve(), cleanup_mode=None)
    _tune_embedded(server, pgdata.resolve())
    urls = create_databases(server)
    apply_schema(urls, sources=True)
    return urls, server


# PostgreSQL settings for the embedded benchmark server, sized for 25M interactions on a
# 24 GiB machine (the defaults, 128MB of shared buffers, keep re-reading the 1.8 GB index).
EMBEDDED_SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "12GB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",
}


def _tune_embedded(server, pgdata: Path) -> None:
    """Apply EMBEDDED_SETTINGS to the embedded server, restarting it once if they changed."""
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        current = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in EMBEDDED_SETTINGS}
        if current == EMBEDDED_SETTINGS:
            return
        for name, value in EMBEDDED_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    from pgserver._commands import pg_ctl  # the embedded server's own pg_ctl

    pg_ctl(["-w", "restart", "-m", "fast"], pgdata=pgdata, user=server.system_user, timeout=120)


def _server_settings(urls) -> str:
    with psycopg.connect(urls.engagement) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        values = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                  for name in ("shared_buffers", "work_mem", "effective_cache_size")}
    return f"PostgreSQL {version} (" + ", ".join(f"{k}={v}" for k, v in values.items()) + ")"


def _env(urls) -> dict[str, str]:
    return {
        **os.environ,
        "USER_DB_URL": urls.user,
        "CATALOG_DB_URL": urls.catalog,
        "ENGAGEMENT_DB_URL": urls.engagement,
        "MODEL_DB_URL": urls.model,
    }


def _ensure_data(urls, args) -> None:
    from ml_service.jobs import run_refresh
    from settings import Settings

    with psycopg.connect(urls.engagement) as conn:
        empty = conn.execute("SELECT NOT EXISTS (SELECT FROM interaction)").fetchone()[0]
    if empty:
        if args.data == "movielens":
            from services.movielens_import import import_movielens

            import_movielens(MOVIELENS_DIR, urls)
        else:
            from services.synthetic import generate_synthetic

            generate_synthetic(urls, args.users, args.media, args.interactions, args.seed)
    with psycopg.connect(urls.model) as conn:
        published = conn.execute("SELECT EXISTS (SELECT FROM ml.model_builds)").fetchone()[0]
    if empty or not published:
        run_refresh(Settings(databases=urls), progress=True)


def _data_size(urls) -> dict:
    with psycopg.connect(urls.model) as conn:
        row = conn.execute(
            """
            SELECT interactions_count, users_count, media_count, neighbours_count, build_seconds
              FROM ml.model_builds
          ORDER BY version DESC
             LIMIT 1
            """
        ).fetchone()
    return dict(zip(("interactions", "users", "media", "neighbours", "build_seconds"), row))


def _user_ids(urls, seed: int, count: int = 20_000) -> list[str]:
    """Random real user ids: users who have interactions."""
    with psycopg.connect(urls.user) as conn:
        ids = [str(row[0]) for row in conn.execute("SELECT user_id FROM user_preferences")]
    random.Random(seed).shuffle(ids)
    return ids[:count]


def _media_ids(urls, seed: int, count: int = 2_000) -> list[str]:
    """Random live media ids (what the excluded scenario leaves out, and the similar one asks about)."""
    with psycopg.connect(urls.catalog) as conn:
        ids = [str(row[0]) for row in conn.execute("SELECT id FROM medias WHERE deleted_at IS NULL")]
    random.Random(seed).shuffle(ids)
    return ids[:count]


def _liked(urls, user_ids: list[str]) -> list[str]:
    """"USER MEDIA" pairs: for each of `user_ids` with one, the media they rated highest among
    those they liked or watched and never disliked (what `because` accepts), if it is live."""
    with psycopg.connect(urls.engagement) as conn:
        rows = conn.execute(
            """
            SELECT DISTINCT ON (user_id) user_id, media_id
              FROM interaction i
             WHERE user_id = ANY(%s::uuid[]) AND type IN ('LIKE', 'WATCH') AND coalesce(interaction_value, 1) > 0
               AND NOT EXISTS (SELECT FROM interaction d
                                WHERE d.user_id = i.user_id AND d.media_id = i.media_id AND d.type = 'DISLIKE')
          ORDER BY user_id, interaction_value DESC NULLS LAST, media_id
            """,
            (user_ids,),
        ).fetchall()
    with psycopg.connect(urls.catalog) as conn:
        live = {row[0] for row in conn.execute(
            "SELECT id FROM medias WHERE id = ANY(%s::uuid[]) AND deleted_at IS NULL", ([media for _, media in rows],)
        )}
    return [f"{user} {media}" for user, media in rows if media in live]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_gunicorn(urls, port: int, args, log: Path, root: Path = ROOT, **extra_env: str) -> subprocess.Popen:
    env = {
        **_env(urls),
        "BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(args.workers),
        "GUNICORN_THREADS": str(args.threads),
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(root / GUNICORN_CONFIG.relative_to(ROOT)),
             "bench.reference_wsgi:app"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def _baseline_server(ref: str, urls, args, tmp: Path):
    """Gunicorn serving the code of git revision `ref` from a temporary worktree, ready.

    The same databases, configuration and Python environment as the measured checkout; its own
    port and metrics directory. Yields its "base" URL, master "pid" and a "label" naming `ref`.
    """
    with _worktree(ref, tmp / "baseline") as (worktree, commit):
        port, log = _free_port(), tmp / "gunicorn-baseline.log"
        gunicorn = _start_gunicorn(urls, port, args, log, root=worktree,
                                   PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics-baseline"))
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, gunicorn, log)
            yield {"base": base, "pid": gunicorn.pid, "label": f"{ref} ({commit})" if ref != commit else ref}
        finally:
            _stop(gunicorn)


@contextlib.contextmanager
def _worktree(ref: str, path: Path):
    """A temporary git worktree of revision `ref` at `path`; yields it and the short commit."""
    commit = _git("rev-parse", "--short", "--verify", f"{ref}^{{commit}}")
    _git("worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield path, commit
    finally:
        _git("worktree", "remove", "--force", str(path))


@contextlib.contextmanager
def _model_database_copy(server, urls):
    """`urls` with the model tables in a copy of the model database (CREATE DATABASE ... TEMPLATE),
    dropped afterwards: what the baseline server of `--experiment` reads and writes."""
    from dataclasses import replace

    from psycopg import sql

    source = psycopg.conninfo.conninfo_to_dict(urls.model)["dbname"]
    name = f"{source}_without_experiment"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source)))
    try:
        yield replace(urls, model=server.get_uri(name))
    finally:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def _experiment(urls):
    """An experiment running for the duration (started before the servers, so they load it at boot)."""
    from ml_service.jobs import start_experiment, stop_experiment
    from settings import Settings

    settings = Settings(databases=urls)
    name = f"bench-{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
    start_experiment(settings, name, ["control", "same"])  # A/A: its cost is the machinery alone
    try:
        yield name
    finally:
        stop_experiment(settings, name)


def _stop(gunicorn: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    gunicorn.terminate()
    try:
        gunicorn.wait(timeout=30)
    except subprocess.TimeoutExpired:
        gunicorn.kill()


def _git(*command: str) -> str:
    done = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(command)} failed:\n{done.stderr}")
    return done.stdout.strip()


def _wait_ready(base: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    """Wait until every worker could have loaded the model: /health/ready answers 200 repeatedly."""
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=10) as response:
                ready = ready + 1 if response.status == 200 else 0
        except OSError:
            ready = 0
        if ready >= 20:
            return
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{base}/health/ready did not answer 200 within {timeout} s:\n{log.read_text()}")


def _measure(base: str, scenario: str, ids_file: Path, args, processes: dict, tmp: Path,
             duration: float, warmup: float) -> dict:
    """One run of the load client, with its raw latencies and the CPU each process tree used."""
    latencies = tmp / "latencies.json"
    command = [
        sys.executable, "-m", "bench.load", "--url", base, "--ids", str(ids_file), "--media", str(tmp / "media.txt"),
        "--liked", str(tmp / "liked.txt"), "--scenario", scenario.removesuffix("_alone"),
        "--connections", str(1 if scenario.endswith("_alone") else args.connections),
        "--duration", str(duration), "--warmup", str(warmup), "--seed", str(args.seed),
        "--latencies", str(latencies),
    ]
    if scenario == "live_sql":
        command += ["--max-requests", str(args.live_sql_requests)]
    before = {name: _cpu_seconds(pid) for name, pid in processes.items()}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"load client failed for {scenario}:\n{done.stderr}")
    cpu = {name: _cpu_seconds(pid) - before[name] for name, pid in processes.items()}
    return {**json.loads(done.stdout), "latencies": json.loads(latencies.read_text()), "cpu": cpu}


def _layers(base: str, scenario: str, ids_file: Path, args, processes: dict, tmp: Path):
    """py-spy's samples of the workers, per layer (bench/layers.py), during one run of `scenario`."""
    output = tmp / f"py-spy-{scenario}.txt"
    sampler = layers.record(processes["server"], args.profile_layers, output)
    try:
        _measure(base, scenario, ids_file, args, processes, tmp, duration=args.profile_layers, warmup=0)
    finally:
        _, errors = sampler.communicate(timeout=args.profile_layers + 60)
    if sampler.returncode != 0 or not output.exists():
        raise SystemExit(f"py-spy failed ({sampler.returncode}): {errors.strip()}")
    return layers.attribute(output.read_text())


def _layers_section(found: dict, results: dict, baseline: dict | None, args) -> str:
    """The report's section on where the workers' CPU goes, per layer and server."""
    lines = [
        "",
        "## Where the workers' CPU goes, per layer",
        "",
        f"py-spy sampled every Gunicorn worker for {args.profile_layers:g} s under each load (after the "
        "measured runs; `python -m bench.run --profile-layers`); each sample counts for the layer of its "
        "innermost frame that has one (bench/layers.py: psycopg's frames for the repository that called them, "
        "numpy's for the Python function that called it). Milliseconds are the layer's share times the "
        "Gunicorn CPU per request measured above for that server.",
    ]
    for (label, scenario), samples in found.items():
        measured = results if label == "this checkout" else baseline["results"]
        lines += ["", f"{SCENARIO_NAMES[scenario]}, {label}:", "",
                  *layers.table(samples, measured[scenario].get("server_cpu_ms_per_request"))]
    return "\n".join(lines) + "\n"


def _merge(scenario: str, parts: list[dict], processes: dict) -> dict:
    """The figures of a scenario over all its runs."""
    seconds = sum(p["seconds"] for p in parts)
    error_kinds: dict[str, int] = {}
    for part in parts:
        for kind, count in part["error_kinds"].items():
            error_kinds[kind] = error_kinds.get(kind, 0) + count
    merged = {
        "scenario": scenario,
        "connections": parts[0]["connections"],
        "runs": len(parts),
        "seconds": round(seconds, 3),
        "ok": sum(p["ok"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "error_kinds": error_kinds,
        **figures([latency for p in parts for latency in p["latencies"]], seconds),
        "warmup_requests": sum(p["warmup_requests"] for p in parts),
    }
    requests = merged["ok"] + merged["errors"] + merged["warmup_requests"]
    for name, pid in processes.items():
        used = sum(p["cpu"][name] for p in parts)
        merged[f"{name}_cpu_ms_per_request"] = round(1000 * used / requests, 3) if pid and requests else None
    return merged


def _profile(urls, batch: int, requests: int) -> str:
    """The output of bench.profile_request: each stage of a request timed in one process."""
    command = [sys.executable, "-m", "bench.profile_request", "--batch", str(batch), "--requests", str(requests)]
    done = subprocess.run(command, cwd=ROOT, env=_env(urls), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"profile_request failed:\n{done.stderr}")
    return done.stdout.strip()


def _postmaster(urls) -> int | None:
    """The PostgreSQL server's main process when it runs on this machine (its CPU is then measured)."""
    with psycopg.connect(urls.user) as conn:  # read while the backend lives: it exits on close
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            parent = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
            return parent if "postgres" in Path(f"/proc/{parent}/comm").read_text() else None
        except (OSError, ValueError, IndexError):
            return None  # a server elsewhere


def _cpu_seconds(root: int | None) -> float:
    """CPU time (user + system) used so far by `root` and every process below it, from /proc.

    Each process counts with its reaped children (cutime, cstime), so that a process that exits
    meanwhile (a PostgreSQL backend whose connection was closed, a Gunicorn worker replaced)
    keeps its CPU in the total instead of taking it away.
    """
    if root is None:
        return 0.0
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = sum(int(field) for field in fields[11:15])  # utime, stime, cutime, cstime
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total / os.sysconf("SC_CLK_TCK")


def _worker_memory(master: int) -> dict[str, list[int]]:
    """Each Gunicorn worker's resident memory ("rss", bytes) and proportional set size ("pss":
    a page mapped by n processes counts 1/n in each, so the workers' sum counts it once)."""
    memory: dict[str, list[int]] = {"rss": [], "pss": []}
    for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("Rss", "Pss"):
                memory[name.lower()].append(int(value.split()[0]) * 1024)
    return memory


def _memory_line(memory: dict, model_bytes: int, workers: int) -> str:
    """The workers' RSS and summed PSS against the rule: one model plus 60 MB per worker."""
    mb = 2**20
    pss, budget = sum(memory["pss"]), model_bytes + workers * 60 * mb
    return (
        f"RSS {', '.join(f'{r / mb:.0f}' for r in memory['rss'])} MB; summed PSS {pss / mb:.0f} MB "
        f"(the model's arrays: {model_bytes / mb:.0f} MB; one model + {workers} x 60 MB = {budget / mb:.0f} MB: "
        f"{'within' if pss <= budget else 'over'})"
    )


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    return f"{os.cpu_count()} cores ({cpu}), {mem_kib / 1024 / 1024:.1f} GiB memory, {platform.platform()}"


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _report(results: dict, memory: dict, size: dict, args, argv, profiles: list[str]) -> str:
    health, single, batch, live = (results[k] for k in ("health", "single", "batch", "live_sql"))
    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    lines = [
        "# Load benchmark results",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command.strip()}`.",
        "",
        f"- Data: {size['users']:,} users, {size['media']:,} media, {size['interactions']:,} interactions, "
        f"{size['neighbours']:,} neighbour pairs in the model.",
        f"- Machine: {_machine()}. Server, PostgreSQL and load client share it (and, when measured, "
        f"other jobs did too: compare figures within one run, not across runs).",
        f"- Database: {size['server']}.",
        f"- Server: Gunicorn, production config, {args.workers} workers x {args.threads} threads, "
        f"LOG_LEVEL=WARNING (no access log line per request); "
        f"load: {args.connections} concurrent keep-alive connections (closed loop, asyncio + aiohttp, "
        f"separate process), {args.duration:g} s per scenario after {args.warmup:g} s of warm-up; "
        f"/health, single, batch, filtered, excluded, similar and because alternate in {args.rounds} rounds of "
        f"{args.duration / args.rounds:g} s "
        f"(1 s of warm-up after the first), so a busy moment of the machine hits each alike; "
        f"the live SQL reference at most {args.live_sql_requests} requests.",
        "",
        "| scenario | requests/s | p50 ms | p95 ms | p99 ms | errors | requests | throughput vs /health "
        "| CPU ms per request: Gunicorn | PostgreSQL |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, result in results.items():
        ratio = result["requests_per_second"] / health["requests_per_second"] if health["requests_per_second"] else None
        lines.append(
            f"| {SCENARIO_NAMES[key]} | {_fmt(result['requests_per_second'])} | {_fmt(result['p50_ms'], 2)} | "
            f"{_fmt(result['p95_ms'], 2)} | {_fmt(result['p99_ms'], 2)} | {result['errors']} | "
            f"{result['ok'] + result['errors']} | {_fmt(None if ratio is None else 100 * ratio)} % | "
            f"{_fmt(result.get('server_cpu_ms_per_request'), 2)} | {_fmt(result.get('postgres_cpu_ms_per_request'), 2)} |"
        )
    speedup_p50 = live["p50_ms"] / single["p50_ms"] if live["p50_ms"] and single["p50_ms"] else None
    speedup_rps = (single["requests_per_second"] / live["requests_per_second"]
                   if live["requests_per_second"] else None)
    lines += [
        "",
        "Ratios (same run):",
        "",
        f"- single-user GET throughput = {_fmt(None if not health['requests_per_second'] else 100 * single['requests_per_second'] / health['requests_per_second'])} % of /health's",
        f"- single-user GET vs the original live SQL: {_fmt(speedup_p50)}x lower p50 latency, "
        f"{_fmt(speedup_rps)}x the throughput",
        f"- batch of 50 p50 = {_fmt(batch['p50_ms'] / single['p50_ms'] if batch['p50_ms'] and single['p50_ms'] else None)}x a single user's p50",
        f"- {args.connections} connections in a closed loop: a request also waits for the others, and the "
        f"mean latency is {args.connections} / throughput (Little's law; "
        f"{_fmt(1000 * args.connections / single['requests_per_second'] if single['requests_per_second'] else None, 2)} ms "
        f"for the single-user GET here)",
    ]
    cpu = [batch.get("server_cpu_ms_per_request"), batch.get("postgres_cpu_ms_per_request")]
    if None not in cpu:
        lines.append(
            f"- CPU is the limit: a batch of 50 costs {_fmt(sum(cpu), 1)} ms of CPU (Gunicorn + PostgreSQL), so "
            f"{args.connections} in flight on {os.cpu_count()} cores take about {args.connections} x {_fmt(sum(cpu), 1)} / "
            f"{os.cpu_count()} = {_fmt(args.connections * sum(cpu) / os.cpu_count(), 1)} ms each (measured mean: "
            f"{_fmt(batch['mean_ms'], 1)} ms); the load client uses the same cores"
        )
    for key in ("filtered", "excluded", "similar", "because"):
        if key in results:
            lines.append(
                f"- {SCENARIO_NAMES[key]}: {_fmt(_cpu_ratio(results[key], single, 'server'), 3)}x the single-user "
                f"GET's Gunicorn CPU per request, p50 {_fmt(results[key]['p50_ms'], 2)} ms"
            )
    for key, what in (("single_alone", "single-user GET"), ("batch_alone", "batch of 50")):
        if key in results:
            alone = results[key]
            lines.append(f"- {what} from one connection: p50 {_fmt(alone['p50_ms'], 2)} ms, "
                         f"p99 {_fmt(alone['p99_ms'], 2)} ms (no request waits behind another)")
    lines += [
        "",
        f"Worker memory after the run: {_memory_line(memory, memory['model_bytes'], args.workers)}.",
        "",
    ]
    if profiles:
        lines += [
            "Where a request's time goes (`python -m bench.profile_request`: one process, no HTTP, no",
            "concurrency, same databases; the last line includes routing, schemas and JSON):",
            "",
        ]
        for profile in profiles:
            lines += ["```", profile, "```", ""]
    return "\n".join(lines)


def _cpu_ratio(new: dict, old: dict, process: str) -> float | None:
    """CPU per request of `process` ("server" or "postgres") in `new` / in `old`."""
    a, b = new.get(f"{process}_cpu_ms_per_request"), old.get(f"{process}_cpu_ms_per_request")
    return round(a / b, 3) if a is not None and b else None


def _round_ratios(new_parts: list[dict], old_parts: list[dict]) -> list[float]:
    """Gunicorn CPU per request, new / old, round by round, sorted (their spread shows the noise)."""
    def per_request(part: dict) -> float:
        return part["cpu"]["server"] / max(1, part["ok"] + part["errors"] + part["warmup_requests"])

    return sorted(per_request(new) / per_request(old) for new, old in zip(new_parts, old_parts) if per_request(old))


def _comparison(results: dict, parts: dict, baseline: dict, args, model_bytes: int) -> str:
    """The report's section comparing this checkout with the --baseline-ref server."""
    label, head = baseline["label"], _git("rev-parse", "--short", "HEAD")
    lines = [
        "",
        f"## This checkout vs the baseline {label}",
        "",
        f"Same run, same databases: a second Gunicorn (the production configuration of its own revision, "
        f"the same settings) serves `{args.baseline_ref}` from a temporary git worktree. Each round runs "
        f"each scenario below on both servers in turn (which of them first alternates by round), so a busy "
        "moment of the machine hits both alike."
        + (" This checkout runs an A/A experiment (every answer assigned a variant and tagged with it); the "
           "baseline reads a copy of the model database without one. Both record impressions, when their "
           "revision does." if args.experiment else ""),
        "",
        "| scenario | code | requests/s | p50 ms | p95 ms | p99 ms | errors | requests "
        "| CPU ms per request: Gunicorn | PostgreSQL |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratios = []
    for key, old in baseline["results"].items():
        for code, result in ((f"this checkout (HEAD {head} + working tree)", results[key]), (f"baseline {label}", old)):
            lines.append(
                f"| {SCENARIO_NAMES[key]} | {code} | {_fmt(result['requests_per_second'])} | "
                f"{_fmt(result['p50_ms'], 2)} | {_fmt(result['p95_ms'], 2)} | {_fmt(result['p99_ms'], 2)} | "
                f"{result['errors']} | {result['ok'] + result['errors']} | "
                f"{_fmt(result.get('server_cpu_ms_per_request'), 2)} | {_fmt(result.get('postgres_cpu_ms_per_request'), 2)} |"
            )
        rounds = _round_ratios(parts[key], baseline["parts"][key])
        ratios.append(f"- {SCENARIO_NAMES[key]}: Gunicorn {_fmt(_cpu_ratio(results[key], old, 'server'), 3)}x "
                      f"(round by round: {', '.join(_fmt(r, 2) for r in rounds)}), "
                      f"PostgreSQL {_fmt(_cpu_ratio(results[key], old, 'postgres'), 3)}x")
    return "\n".join([
        *lines,
        "",
        "CPU per request, this checkout / baseline (same run; errors and warm-up requests count as requests):",
        "",
        *ratios,
        "",
        f"Baseline worker memory after the run: {_memory_line(baseline['memory'], model_bytes, args.workers)}.",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
