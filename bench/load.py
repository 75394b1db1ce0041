"""The load client: a separate process driving one scenario with a fixed number of connections.

`python -m bench.load --url http://127.0.0.1:PORT --scenario single --ids FILE --connections 8
--duration 20` runs `connections` coroutines, each with its own keep-alive connection, each
sending its next request as soon as the previous one answered (a closed loop), until
`duration` seconds or `max_requests` requests; prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import aiohttp

SCENARIOS = ("health", "single", "batch", "live_sql", "filtered", "excluded", "similar", "because")
BATCH_SIZE = 50
# A row of the "filtered" scenario: genres both data sets have, and a range of years.
FILTERED_ROW = "genres=Comedy&genres=Romance&release_year_min=1990&release_year_max=2009"
# Media ids a page already shows, left out in the "excluded" scenario.
EXCLUDED_PER_REQUEST = 20


def request_for(
    scenario: str, ids: list[str], rng: random.Random, media: list[str] = (), liked: list[str] = ()
) -> tuple[str, str, dict | None]:
    """(method, path, JSON body) of one request of `scenario` with random real user (and media) ids;
    `liked` holds "USER MEDIA" pairs, a media each user liked or watched (the because scenario)."""
    if scenario == "health":
        return "GET", "/health", None
    if scenario == "single":
        return "GET", f"/api/recommendations/{rng.choice(ids)}", None
    if scenario == "filtered":
        return "GET", f"/api/recommendations/{rng.choice(ids)}?{FILTERED_ROW}", None
    if scenario == "excluded":
        excluded = "&".join(f"exclude={m}" for m in rng.sample(media, min(EXCLUDED_PER_REQUEST, len(media))))
        return "GET", f"/api/recommendations/{rng.choice(ids)}?{excluded}", None
    if scenario == "because":
        user, seed = rng.choice(liked).split()
        return "GET", f"/api/recommendations/{user}?because={seed}", None
    if scenario == "similar":
        return "GET", f"/api/media/{rng.choice(media)}/similar", None
    if scenario == "batch":
        return "POST", "/api/recommendations/batch", {"user_ids": rng.sample(ids, min(BATCH_SIZE, len(ids)))}
    if scenario == "live_sql":
        return "GET", f"/bench/live-sql/{rng.choice(ids)}", None
    raise ValueError(f"unknown scenario {scenario!r}")


async def run(url: str, scenario: str, ids: list[str], connections: int, duration: float,
              max_requests: int, warmup: float, seed: int, media: list[str] = (), liked: list[str] = ()) -> dict:
    """Drive the load; returns counts, errors, throughput and latency percentiles (ms)."""
    rng = random.Random(seed)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    warmup_requests = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def one(record: bool) -> None:
            method, path, body = request_for(scenario, ids, rng, media, liked)
            started = time.perf_counter()
            try:
                async with session.request(method, path, json=body) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                status = type(error).__name__
            elapsed = time.perf_counter() - started
            if record:
                if status == 200:
                    latencies.append(elapsed)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        async def warm() -> None:
            nonlocal warmup_requests
            end = time.perf_counter() + warmup
            while time.perf_counter() < end:
                warmup_requests += 1
                await one(record=False)

        async def loop(end: float) -> None:
            nonlocal sent
            while time.perf_counter() < end and sent < max_requests:
                sent += 1
                await one(record=True)

        if warmup > 0:
            await asyncio.gather(*(warm() for _ in range(connections)))
        started = time.perf_counter()
        await asyncio.gather(*(loop(started + duration) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {
        "scenario": scenario,
        "connections": connections,
        "seconds": round(elapsed, 3),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        **figures(latencies, elapsed),
        "warmup_requests": warmup_requests,
        "latencies": latencies,
    }


def figures(latencies: list[float], seconds: float) -> dict:
    """Throughput and latency percentiles (ms) of the successful requests' latencies (s)."""
    latencies = sorted(latencies)

    def percentile(p: float) -> float | None:
        if not latencies:
            return None
        return round(1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 3)

    return {
        "requests_per_second": round(len(latencies) / seconds, 2) if seconds > 0 else 0.0,
        "p50_ms": percentile(50),
        "p95_ms": percentile(95),
        "p99_ms": percentile(99),
        "mean_ms": round(1000 * sum(latencies) / len(latencies), 3) if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run one scenario, print its JSON figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--ids", help="file with one user id per line (not needed for health)")
    parser.add_argument("--media", help="file with one media id per line (the excluded and similar scenarios)")
    parser.add_argument("--liked", help='file with one "USER_ID MEDIA_ID" pair per line, a media the user liked '
                        "or watched (the because scenario)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--max-requests", type=int, default=10**9)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latencies", help="also write every successful request's latency (s) to this JSON file")
    args = parser.parse_args(argv)
    ids = open(args.ids).read().split() if args.ids else []
    if args.scenario != "health" and not ids:
        parser.error("--ids with at least one user id is required for this scenario")
    media = open(args.media).read().split() if args.media else []
    if args.scenario in ("excluded", "similar") and not media:
        parser.error(f"--media with media ids is required for the {args.scenario} scenario")
    liked = open(args.liked).read().splitlines() if args.liked else []
    if args.scenario == "because" and not liked:
        parser.error("--liked with user and media id pairs is required for the because scenario")
    result = asyncio.run(run(args.url, args.scenario, ids, args.connections, args.duration,
                             args.max_requests, args.warmup, args.seed, media, liked))
    if args.latencies:
        Path(args.latencies).write_text(json.dumps(result["latencies"]))
    json.dump({k: v for k, v in result.items() if k != "latencies"}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
