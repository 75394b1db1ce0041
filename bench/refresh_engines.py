"""The refresh on each engine at growing sizes: `python -m bench.refresh_engines` (`make bench-refresh`).

For each size (--sizes, interactions; users and media scaled with them at MovieLens-25M's
ratios, 162,000 users and 59,000 media per 25M interactions):

1. an embedded PostgreSQL in --pgdata/<size>, listening on 127.0.0.1 too (JDBC needs TCP),
   with `generate-synthetic` data (generated once: the directory is kept for the next run);
2. `python -m ml_service refresh --force` (numpy), then the same with `--engine spark --master
   local[N]` and the --spark-conf settings, each a fresh process, the server idle in between;
   at the --cluster-sizes, also `spark-cluster`: the refresh submitted with spark-submit to a
   standalone cluster of two one-core workers on this machine (services/spark_cluster.py);
3. each run's wall time, CPU time and peak memory: the resident memory of the command's whole
   process tree (Spark's JVMs included; a cluster's master, workers and executors too), sampled
   every 0.2 s, and a Spark run's seconds per step (from its log);
4. each Spark engine's published model compared with numpy-untuned's (the same settings: the
   Spark engine does not tune) as the equality test compares them (services/model_compare.py):
   the neighbour weights in both and their largest difference.

The report (--output) has one row per size and engine, the Spark/numpy ratios of each size,
and how each figure grows from size to size. Runs are sequential: numpy and Spark of one size
share the machine's state, so their ratio is the figure to read on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil
import psycopg

from services import spark_cluster

ROOT = Path(__file__).resolve().parent.parent
USERS_PER_INTERACTION = 162_000 / 25_000_000
MEDIA_PER_INTERACTION = 59_000 / 25_000_000
SAMPLE_SECONDS = 0.2
SPARK_ENGINES = ("spark", "spark-cluster")
# A Spark run's steps, as its log lines name them (services/spark_engine.py).
STEPS = {
    "read": re.compile(r"Spark: .* read and aggregated in ([\d.]+) s"),
    "EASE co-occurrence": re.compile(r"EASE: co-occurrence of .* counted on Spark in ([\d.]+) s"),
    "cosine": re.compile(r"cosine: .* found on Spark in ([\d.]+) s"),
}
# The standalone cluster's two workers: one core each, and memory for an executor each.
CLUSTER_WORKERS = 2
CLUSTER_WORKER_MEMORY = "3g"
CLUSTER_EXECUTOR_MEMORY = "2500m"


@dataclass(frozen=True)
class Run:
    engine: str
    interactions: int
    returncode: int
    wall: float
    cpu: float
    peak_rss: int
    last_line: str
    tuning: str = ""  # the refresh's line saying what its tuning chose and what each step took
    steps: dict[str, float] | None = None  # a Spark run's seconds per STEPS
    comparison: str = ""  # a Spark run's model against numpy-untuned's

    @property
    def version(self) -> int | None:
        """The model version it published (its last line says)."""
        found = re.fullmatch(r"published model version (\d+)", self.last_line)
        return int(found.group(1)) if self.returncode == 0 and found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.refresh_engines", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1M,5M,25M", help="interactions per size, e.g. 1M,5M,25M (default: %(default)s)")
    parser.add_argument("--pgdata", type=Path, default=ROOT.parent / "bench-data" / "refresh",
                        help="where each size's database is kept (default: %(default)s)")
    parser.add_argument("--engines", default="numpy,spark",
                        help="numpy, spark, and numpy-untuned (numpy with REFRESH_TUNE=false: what the refresh's "
                             "tuning costs); default: %(default)s")
    parser.add_argument("--cores", type=int, default=2, help="Spark's local[N] (default: %(default)s)")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to refresh --conf (repeatable), e.g. spark.driver.memory=6g; to the "
                             "cluster's spark-submit too")
    parser.add_argument("--cluster-sizes", default="5M",
                        help="the sizes (of --sizes) also refreshed on a standalone cluster of two one-core workers "
                             "(spark-cluster), or none (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a refresh may take (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-refresh-engines.md")
    parser.add_argument("--logs", type=Path, default=ROOT / "bench" / "out" / "refresh-engines",
                        help="each run's whole output, as <size>-<engine>.log (default: %(default)s)")
    args = parser.parse_args(argv)
    sizes = [parse_size(size) for size in args.sizes.split(",")]
    engines = args.engines.split(",")
    env_settings = {name: os.environ[name] for name in ("NEIGHBOURS_USER_CAP", "EASE_MEDIA", "NEIGHBOURS_K")
                    if os.environ.get(name)}
    cluster_sizes = set() if args.cluster_sizes == "none" else {parse_size(size) for size in args.cluster_sizes.split(",")}
    conf = dict(item.split("=", 1) for item in args.spark_conf)
    runs: list[Run] = []
    for interactions in sizes:
        size = label(interactions)
        with database(args.pgdata / size, interactions) as env:
            size_runs = []
            for engine in engines + (["spark-cluster"] if interactions in cluster_sizes else []):
                log = args.logs / f"{size}-{engine}.log"
                if engine == "spark-cluster":
                    run = on_cluster(interactions, env, conf, args.timeout, log)
                else:
                    command = [sys.executable, "-m", "ml_service", "refresh", "--force"]
                    run_env = {**env, "REFRESH_TUNE": "false"} if engine == "numpy-untuned" else env
                    if engine == "spark":
                        command += ["--engine", "spark", "--master", f"local[{args.cores}]"]
                        for item in args.spark_conf:
                            command += ["--conf", item]
                    print(f"{size} {engine}: {' '.join(command[1:])}", flush=True)
                    run = measure(engine, interactions, command, run_env, args.timeout, log)
                print(f"  {'ok' if run.returncode == 0 else f'FAILED ({run.returncode})'} in {run.wall:.1f} s, "
                      f"peak {run.peak_rss / 2**20:,.0f} MiB: {run.last_line}", flush=True)
                size_runs.append(run)
            runs += compared(size_runs, env)
        args.output.write_text(report(runs, args, env_settings))  # after each size: a long run keeps its figures
    print(f"wrote {args.output}")
    return 0 if all(run.returncode == 0 and not run.comparison.startswith("**") for run in runs) else 1


def on_cluster(interactions: int, env: dict[str, str], conf: dict[str, str], timeout: float, log: Path) -> Run:
    """The refresh submitted to a standalone cluster started for it; measured with the
    cluster's daemons (and so its executors), started beforehand and stopped afterwards."""
    with spark_cluster.standalone_cluster(CLUSTER_WORKERS, log.with_suffix(""), memory=CLUSTER_WORKER_MEMORY) as cluster:
        command, submit_env = spark_cluster.submission(
            cluster.master, ["--force"], {k: v for k, v in env.items() if k.endswith("_DB_URL")},
            driver_memory=conf.get("spark.driver.memory", "2g"), executor_memory=CLUSTER_EXECUTOR_MEMORY,
            conf={k: v for k, v in conf.items() if k != "spark.driver.memory"})
        print(f"{label(interactions)} spark-cluster ({CLUSTER_WORKERS} workers): spark-submit "
              f"{' '.join(command[1:])}", flush=True)
        return measure("spark-cluster", interactions, command, submit_env, timeout, log, also=cluster.daemons)


def compared(runs: list[Run], env: dict[str, str]) -> list[Run]:
    """`runs` (one size's), each Spark run with its model compared with numpy-untuned's."""
    reference = next((run for run in runs if run.engine == "numpy-untuned" and run.version), None)
    if reference is None or not any(run.engine in SPARK_ENGINES and run.version for run in runs):
        return runs
    from database.model_repository import ModelRepository
    from ml_service import jobs
    from services.model_compare import compare_models
    from settings import Settings

    settings = Settings.from_env(env)
    out = []
    with jobs.offline_databases(settings, "bench") as databases:
        repository = ModelRepository(databases.model)
        expected = repository.load(version=reference.version)
        for run in runs:
            if run.engine in SPARK_ENGINES and run.version:
                comparison = compare_models(expected, repository.load(version=run.version), settings.neighbours_k)
                text = ("equal: " if comparison.equal else "**not equal**: ") + comparison.describe()
                print(f"  {label(run.interactions)} {run.engine} against numpy-untuned: {text}", flush=True)
                run = dataclasses.replace(run, comparison=text)
            out.append(run)
    return out


def parse_size(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1_000, "M": 1_000_000, "B": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KMB")) * factor)


def label(interactions: int) -> str:
    return f"{interactions / 1e6:g}M" if interactions >= 1_000_000 else f"{interactions / 1e3:g}K"


@contextlib.contextmanager
def database(pgdata: Path, interactions: int):
    """The size's embedded PostgreSQL in `pgdata` (data generated on first use), listening on
    127.0.0.1 too; yields the environment a refresh needs to reach it over TCP. Stopped at the
    end, its data kept."""
    from database.embedded import create_databases, start_embedded
    from database.schema import apply_schema

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = start_embedded(pgdata, cleanup_mode=None)
    from pgserver._commands import pg_ctl  # after start_embedded: it gives pgserver its runtime directory

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for name, value in {"fsync": "off", "shared_buffers": "2GB", "maintenance_work_mem": "1GB",
                            "max_wal_size": "8GB"}.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    port = spark_cluster.free_port()
    pg_ctl(["-w", "restart", "-m", "fast", "-o", f"-h 127.0.0.1 -p {port}"], pgdata=pgdata,
           user=server.system_user, timeout=300)
    try:
        urls = create_databases(TcpServer(f"postgresql://postgres@127.0.0.1:{port}/postgres"))
        apply_schema(urls, sources=True)
        with psycopg.connect(urls.engagement) as conn:
            have = conn.execute("SELECT count(*) FROM interaction").fetchone()[0]
        if have == 0:
            from services.synthetic import generate_synthetic

            users = round(interactions * USERS_PER_INTERACTION)
            media = round(interactions * MEDIA_PER_INTERACTION)
            print(f"generating {label(interactions)} interactions ({users:,} users, {media:,} media)", flush=True)
            generate_synthetic(urls, users, media, interactions, progress=sys.stderr.isatty())
        elif have != interactions:
            raise SystemExit(f"{pgdata} holds {have:,} interactions, not {interactions:,}: delete it or pick its size")
        with psycopg.connect(urls.engagement, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE interaction")
        yield {**os.environ, "USER_DB_URL": urls.user, "CATALOG_DB_URL": urls.catalog,
               "ENGAGEMENT_DB_URL": urls.engagement, "MODEL_DB_URL": urls.model}
    finally:
        # pgserver knows the server it started, not the one pg_ctl restarted: stop that one.
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user, timeout=120)


@dataclass(frozen=True)
class TcpServer:
    """database.embedded.create_databases's server, reached over TCP."""

    admin: str

    def get_uri(self, database: str = "postgres") -> str:
        return psycopg.conninfo.make_conninfo(self.admin, dbname=database)


def measure(engine: str, interactions: int, command: list[str], env: dict[str, str], timeout: float, log: Path,
            also: tuple[int, ...] = ()) -> Run:
    """Run `command`; its wall time, CPU time and the peak resident memory of its process tree
    and of the process trees `also` (their CPU time from now on). Its output (the refresh logs
    each step's time) goes to `log`."""
    others = [psutil.Process(pid) for pid in also]
    before = {proc.pid: sum(proc.cpu_times()[:2]) for other in others for proc in [other, *other.children(recursive=True)]}
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    root = psutil.Process(process.pid)
    peak = 0
    cpu: dict[int, float] = {}
    while process.poll() is None:
        if time.monotonic() - started > timeout:
            for child in root.children(recursive=True):
                child.kill()
            process.kill()
            lines.append(f"stopped after {timeout:.0f} s (--timeout)\n")
            break
        rss = 0
        tree = [root, *root.children(recursive=True)]
        for other in others:
            with contextlib.suppress(psutil.Error):
                tree += [other, *other.children(recursive=True)]
        for proc in tree:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu[proc.pid] = times.user + times.system
            except psutil.Error:
                pass  # exited meanwhile
        peak = max(peak, rss)
        time.sleep(SAMPLE_SECONDS)
    process.wait()
    wall = time.monotonic() - started
    reader.join(5)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(lines))
    text = [line.strip() for line in lines if line.strip()]
    tuning = next((line.split("services.refresh: ", 1)[-1] for line in text if "services.refresh: validation on" in line), "")
    steps = None
    if engine in SPARK_ENGINES:
        steps = {step: float(found.group(1)) for step, pattern in STEPS.items()
                 for found in [next(filter(None, map(pattern.search, text)), None)] if found}
    return Run(engine, interactions, process.returncode, wall, sum(cpu.values()) - sum(before[pid] for pid in before if pid in cpu), peak,
               text[-1] if text else "", tuning, steps)


def report(runs: list[Run], args, env_settings: dict[str, str]) -> str:
    gib = 2**30
    out = [
        "# The refresh on each engine (bench/refresh_engines.py)",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.node()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / gib:.0f} GiB; Python {platform.python_version()}",
        "",
        f"Command: `python -m bench.refresh_engines {' '.join(sys.argv[1:])}`; model settings: "
        + (", ".join(f"{k}={v}" for k, v in env_settings.items()) or "the defaults"),
        "",
        "| interactions | engine | wall | CPU | peak memory (process tree) | result |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        result = "published" if run.returncode == 0 else f"**failed** ({run.returncode}): {run.last_line[:200]}"
        out.append(f"| {label(run.interactions)} | {run.engine} | {run.wall:,.1f} s | {run.cpu:,.0f} s | "
                   f"{run.peak_rss / gib:.2f} GiB | {result} |")
    spark_runs = [run for run in runs if run.steps is not None]
    if spark_runs:
        out += ["", "A Spark run's seconds per step (its log lines; `other`: the rest of its wall time: starting "
                "Spark, reading the catalog, EASE's inversion and weights, popularity, publishing):", "",
                "| interactions | engine | " + " | ".join(STEPS) + " | other |",
                "| --- | --- |" + " ---: |" * (len(STEPS) + 1)]
        for run in spark_runs:
            seconds = [run.steps.get(step) for step in STEPS]
            other = run.wall - sum(x for x in seconds if x is not None)
            out.append(f"| {label(run.interactions)} | {run.engine} | "
                       + " | ".join("" if x is None else f"{x:,.1f} s" for x in seconds) + f" | {other:,.1f} s |")
    compared_runs = [run for run in runs if run.comparison]
    if compared_runs:
        out += ["", "Each Spark model against numpy-untuned's of the same size (services/model_compare.py: ties "
                "at the k-th weight aside, weights within 1e-9):", ""]
        out += [f"- {label(run.interactions)}, {run.engine}: {run.comparison}" for run in compared_runs]
    by = {(run.interactions, run.engine): run for run in runs if run.returncode == 0}
    sizes = sorted({run.interactions for run in runs})
    pairs = [(size, numpy_engine, spark) for size in sizes for numpy_engine in ("numpy", "numpy-untuned")
             for spark in SPARK_ENGINES if (size, numpy_engine) in by and (size, spark) in by]
    if pairs:
        out += ["", "Spark / numpy, per size (same run):", "",
                "| interactions | Spark / numpy | wall | peak memory |", "| --- | --- | ---: | ---: |"]
        for size, numpy_engine, spark in pairs:
            numpy_run, spark_run = by[size, numpy_engine], by[size, spark]
            out.append(f"| {label(size)} | {spark} / {numpy_engine} | {spark_run.wall / numpy_run.wall:.2f}× | "
                       f"{spark_run.peak_rss / numpy_run.peak_rss:.2f}× |")
    tuned = [size for size in sizes if (size, "numpy") in by and (size, "numpy-untuned") in by]
    if tuned:
        out += ["", "The refresh's tuning (REFRESH_TUNE, the default: numpy) against none (numpy-untuned), per size "
                "(same run):", "",
                "| interactions | wall added | wall | peak memory |", "| --- | ---: | ---: | ---: |"]
        for size in tuned:
            on, off = by[size, "numpy"], by[size, "numpy-untuned"]
            out.append(f"| {label(size)} | {on.wall - off.wall:,.1f} s | {on.wall / off.wall:.2f}× | "
                       f"{on.peak_rss / off.peak_rss:.2f}× |")
        out += ["", "What each tuned refresh chose and each step's seconds (its log line):", ""]
        out += [f"- {label(size)}: {by[size, 'numpy'].tuning or '(no tuning line)'}" for size in tuned]
    if len(sizes) > 1:
        out += ["", "Growth from the previous size (data × the factor in the first column):", "",
                "| from → to | data | engine | wall | peak memory |", "| --- | ---: | --- | ---: | ---: |"]
    for before, after in zip(sizes, sizes[1:]):
        for engine in ("numpy", "numpy-untuned", "spark"):
            if (before, engine) in by and (after, engine) in by:
                a, b = by[before, engine], by[after, engine]
                out.append(f"| {label(before)} → {label(after)} | {after / before:g}× | {engine} | "
                           f"{b.wall / a.wall:.1f}× | {b.peak_rss / a.peak_rss:.1f}× |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
