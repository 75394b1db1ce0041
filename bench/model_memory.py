"""The workers' memory at a catalog of 1 million media: `python -m bench.model_memory [options]`.

1. Finds or makes the data: an embedded PostgreSQL in --pgdata holding `generate-synthetic
   --media 1000000` (162,000 users, 25M interactions by default).
2. Publishes a model if none is: the refresh at this size does not finish in hours on 2 cores
   (its tail step, per block of media), so the model is a stand-in of the refresh's shape,
   built here from the catalog: every live media, its genres, type and year, popularity from a
   Zipf law, and --neighbours random neighbours per media (seeded). It serves real requests;
   what it ranks is beside the point, its size is what is measured.
3. Starts Gunicorn with the production config (4 workers), waits until every worker loaded the
   model, sends requests to each, and reads each worker's RSS and PSS (/proc/PID/smaps_rollup:
   a page mapped by n processes counts 1/n in each) and the size of the model file they map.
   With --baseline-ref REV, the same for git revision REV (a temporary worktree).
4. Writes --output (default bench/RESULTS-memory.md).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psycopg

from bench import run

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--pgdata", type=Path, default=ROOT.parent / "bench-data" / "media1m")
    parser.add_argument("--users", type=int, default=162_000)
    parser.add_argument("--media", type=int, default=1_000_000)
    parser.add_argument("--interactions", type=int, default=25_000_000)
    parser.add_argument("--neighbours", type=int, default=50, help="neighbours per media of the stand-in model")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200, help="single GETs sent before reading the memory")
    parser.add_argument("--baseline-ref", metavar="REV", help="also measure git revision REV")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-memory.md")
    args = parser.parse_args(argv)

    urls, server = run._databases(args.pgdata)
    with psycopg.connect(urls.engagement) as conn:
        empty = conn.execute("SELECT NOT EXISTS (SELECT FROM interaction)").fetchone()[0]
    if empty:
        from services.synthetic import generate_synthetic

        generate_synthetic(urls, args.users, args.media, args.interactions, 0)
    _ensure_model(urls, args.neighbours)
    size = run._data_size(urls)
    ids = run._user_ids(urls, 0, count=args.requests)
    measured = {"this checkout": _measure(urls, ROOT, args, ids)}
    print(json.dumps({"this checkout": measured["this checkout"]}), flush=True)
    if args.baseline_ref:
        with tempfile.TemporaryDirectory(prefix="ml-bench-memory-") as tmp, \
                run._worktree(args.baseline_ref, Path(tmp) / "baseline") as (worktree, commit):
            measured[f"baseline {args.baseline_ref} ({commit})"] = _measure(urls, worktree, args, ids)
    report = _report(measured, size, args, argv)
    args.output.write_text(report)
    print(report)
    del server
    return 0


def _ensure_model(urls, neighbours: int) -> None:
    """Publish the stand-in model (see the module docstring) unless a model is published."""
    from database.catalog_repository import CatalogRepository
    from database.model_repository import ModelRepository, NewModel
    from database.pools import open_databases
    from settings import Settings

    with psycopg.connect(urls.model) as conn:
        if conn.execute("SELECT EXISTS (SELECT FROM ml.model_builds)").fetchone()[0]:
            return
    databases = open_databases(Settings(databases=urls), statement_timeout_ms=0, application_name="ml-bench")
    try:
        live = CatalogRepository(databases.catalog).live_media()
        count = len(live.ids)
        rng = np.random.default_rng(0)
        popularity = (1.0 / np.arange(1, count + 1) ** 0.8)[rng.permutation(count)].astype(np.float32)
        media = np.repeat(np.arange(count, dtype=np.int64), neighbours)
        # Media i's neighbours: i + each of `neighbours` distinct offsets (never 0), modulo count.
        offsets = rng.choice(np.arange(1, count), size=neighbours, replace=False)
        other = ((media + np.tile(offsets, count)) % count).astype(np.int32)
        media = media.astype(np.int32)
        model = NewModel(
            media_ids=live.ids,
            popularity=popularity,
            media_genres=[live.genres.get(raw.tobytes(), []) for raw in live.ids],
            media_types=live.media_types,
            release_years=live.release_years,
            neighbour_media=media,
            neighbour_idx=other,
            neighbour_similarity=rng.random(len(media), dtype=np.float32),
            interactions_count=0,
            users_count=0,
            newest_interaction=None,
            build_seconds=0.0,
        )
        with ModelRepository(databases.model).refresh_lock() as writer:
            version = writer.publish(model, keep=2)
        print(f"published the stand-in model {version}: {count:,} media, {len(media):,} neighbour pairs", flush=True)
    finally:
        databases.close()


def _measure(urls, root: Path, args, ids: list[str]) -> dict:
    """Gunicorn of the code in `root`: every worker's memory once each served requests."""
    with tempfile.TemporaryDirectory(prefix="ml-bench-memory-") as tmp:
        port, log, models = run._free_port(), Path(tmp) / "gunicorn.log", Path(tmp) / "models"
        gunicorn = run._start_gunicorn(
            urls, port, argparse.Namespace(workers=args.workers, threads=2), log, root=root,
            MODEL_SHARE_DIR=str(models), PROMETHEUS_MULTIPROC_DIR=str(Path(tmp) / "metrics"),
        )
        try:
            base = f"http://127.0.0.1:{port}"
            run._wait_ready(base, gunicorn, log, timeout=600)
            started = time.monotonic()
            # No request before every worker has the model (ml_workers_without_model is 0): a
            # request to a worker without one is answered from the stand-in (services/
            # fallback_model.py), whose own catalog of a million media would be measured too.
            while not re.search(r"^ml_workers_without_model 0\.0$", _get(f"{base}/metrics"), re.MULTILINE):
                if time.monotonic() - started > 1800:
                    raise SystemExit(f"the workers did not all load the model within 1800 s:\n{log.read_text()}")
                time.sleep(5)
            loaded = time.monotonic() - started
            statuses: dict[int, int] = {}
            for user_id in ids:
                try:
                    _get(f"{base}/api/recommendations/{user_id}")
                    status = 200
                except urllib.error.HTTPError as error:  # a 503 when a database misses the deadline
                    status = error.code
                statuses[status] = statuses.get(status, 0) + 1
            memory = run._worker_memory(gunicorn.pid)
            return {**memory, "model_bytes": sum(p.stat().st_size for p in models.glob("*.model")),
                    "loaded_s": loaded, "statuses": statuses}
        finally:
            run._stop(gunicorn)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read().decode()


def _report(measured: dict, size: dict, args, argv) -> str:
    command = "python -m bench.model_memory " + " ".join(argv if argv is not None else sys.argv[1:])
    model_bytes = measured["this checkout"]["model_bytes"]
    lines = [
        "# Worker memory with a catalog of 1 million media",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command.strip()}` (bench/model_memory.py).",
        "",
        f"- Data: `generate-synthetic --users {args.users} --media {args.media} --interactions {args.interactions}` "
        f"({size['media']:,} live media); the model: {size['neighbours']:,} neighbour pairs, a stand-in of the "
        "refresh's shape (see bench/model_memory.py).",
        f"- Machine: {run._machine()}.",
        f"- Gunicorn, production config, {args.workers} workers; memory read once every worker had the model "
        f"(ml_workers_without_model 0) and {args.requests} single GETs were answered.",
        "",
        "| code | every worker has the model after | answers (status: count) | RSS per worker (MB) | summed PSS (MB) | one model + 4 x 60 MB (MB) | within |",
        "| --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    budget = model_bytes + args.workers * 60 * MB
    for label, memory in measured.items():
        pss = sum(memory["pss"])
        answers = ", ".join(f"{status}: {count}" for status, count in sorted(memory["statuses"].items()))
        lines.append(f"| {label} | {memory['loaded_s']:.0f} s | {answers} | {', '.join(f'{r / MB:.0f}' for r in memory['rss'])} | {pss / MB:.0f} | "
                     f"{budget / MB:.0f} | {'yes' if pss <= budget else 'no'} |")
    lines += ["", f"The model file the workers map: {model_bytes / MB:.0f} MB (its arrays, derived ones included).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
