"""Where the Gunicorn workers' CPU goes, per layer: py-spy samples them while the load client runs.

`bench.run --profile-layers SECONDS` calls `record` for the single GET and the batch of 50:
py-spy samples every worker of the server (`--subprocesses`; `--gil`: only threads holding the
GIL, which is the CPU a worker's Python spends, not its waits for PostgreSQL or a socket;
`--nonblocking`: the workers are never paused) while a run of the load client drives the
scenario. `attribute` assigns each sample to a layer by its innermost frame that belongs to
one (LAYERS, first rule that matches wins), so that psycopg's frames count for the repository
that called them, numpy's (native, not sampled as frames) for the Python function that called
numpy, and so on. A sample's share times the scenario's measured Gunicorn CPU per request
gives that layer's milliseconds.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (layer, path fragment, function names or None for any): the first rule matching a frame wins,
# and frames are tried innermost first.
LAYERS: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("query user_db", "database/user_repository.py", None),
    ("query engagement_db", "database/engagement_repository.py", None),
    ("query catalog_db", "database/catalog_repository.py", None),
    ("connection pool and deadline", "database/pools.py", None),
    ("connection pool and deadline", "database/deadline.py", None),
    ("connection pool and deadline", "psycopg_pool/", None),
    ("ranking: because", "services/scoring.py", ("because", "_explain")),
    ("ranking: user signals", "services/scoring.py", ("user_signals", "centred_weights", "media_indices",
                                                      "excluded_indices")),
    ("ranking: scores and top items", "services/scoring.py", None),
    ("ranking: scores and top items", "services/filters.py", None),
    ("experiments and impressions", "services/experiments/", None),
    ("experiments and impressions", "services/impressions.py", None),
    ("experiments and impressions", "ml_service/api/experiments.py", None),
    ("service: orchestration and items", "services/recommendation_service.py", None),
    ("service: orchestration and items", "services/model_settings.py", None),
    ("response: building the body", "ml_service/schemas.py", ("page_json", "batch_json", "items_json",
                                                             "similar_json", "experiment_json")),
    ("JSON encoding and decoding", "json/", None),  # the standard library's, and flask/json/
    ("arguments: parsing and validation", "marshmallow/", None),
    ("arguments: parsing and validation", "webargs/", None),
    ("arguments: parsing and validation", "ml_service/schemas.py", None),
    ("arguments: parsing and validation", "ml_service/api/blueprint.py", None),
    ("arguments: parsing and validation", "flask_smorest/", None),
    ("logging", "ml_service/request_log.py", None),
    ("logging", "logging/", None),
    ("metrics", "prometheus_client/", None),
    ("metrics", "prometheus_flask_exporter/", None),
    ("metrics", "ml_service/metrics.py", None),
    ("deadline and liveness", "ml_service/liveness.py", None),
    ("deadline and liveness", "ml_service/arrival.py", None),
    ("security: API keys, CORS, headers", "ml_service/security.py", None),
    ("security: API keys, CORS, headers", "flask_cors/", None),
    ("security: API keys, CORS, headers", "flask_limiter/", None),
    ("view", "ml_service/api/", None),
    ("Flask and Werkzeug: routing, request and response", "flask/", None),
    ("Flask and Werkzeug: routing, request and response", "werkzeug/", None),
    ("Gunicorn: HTTP and its worker", "gunicorn/", None),
    ("background threads (model loader, pools, impressions)", "services/model_store.py", None),
    ("background threads (model loader, pools, impressions)", "threading.py", None),
]
OTHER = "other"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def record(master_pid: int, seconds: float, output: Path, rate: int = 250) -> subprocess.Popen:
    """Start py-spy sampling Gunicorn `master_pid` and its workers for `seconds` into `output`
    (collapsed stacks); the caller runs the load meanwhile and waits for the process."""
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(master_pid), "--subprocesses", "--gil", "--nonblocking",
         "--rate", str(rate), "--duration", str(max(1, round(seconds))), "--format", "raw",
         "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def layer_of(frames: list[str]) -> str:
    """The layer of one sample, its frames outermost first (py-spy's collapsed order)."""
    for frame in reversed(frames):
        match = _FRAME.match(frame.strip())
        if match is None:
            continue
        path, function = match["file"].replace("\\", "/"), match["function"]
        for layer, fragment, functions in LAYERS:
            if fragment in path and (functions is None or function.split(".")[0] in functions):
                return layer
    return OTHER


def attribute(collapsed: str) -> Counter:
    """Samples per layer from py-spy's collapsed stacks ("frame;frame;... count" lines)."""
    samples: Counter = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[layer_of(stack.split(";"))] += int(count)
    return samples


def table(samples: Counter, cpu_ms_per_request: float | None) -> list[str]:
    """Markdown rows: each layer's share of the samples and its CPU milliseconds per request."""
    total = sum(samples.values())
    rows = ["| layer | share of the workers' samples | ms of Gunicorn CPU per request |", "| --- | ---: | ---: |"]
    for layer, count in samples.most_common():
        share = count / total
        ms = "-" if cpu_ms_per_request is None else f"{share * cpu_ms_per_request:.3f}"
        rows.append(f"| {layer} | {100 * share:.1f} % | {ms} |")
    rows.append(f"| all ({total:,} samples) | 100.0 % | "
                f"{'-' if cpu_ms_per_request is None else f'{cpu_ms_per_request:.3f}'} |")
    return rows
