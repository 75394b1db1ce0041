"""Production Gunicorn configuration: `gunicorn -c ml_service/gunicorn.conf.py`.

Every value can be overridden from the environment (see .env.example).
"""

import gc
import os
import shutil
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

wsgi_app = "ml_service.wsgi:app"
bind = os.environ.get("BIND", "0.0.0.0:5000")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
# Threads let a worker overlap requests that wait on PostgreSQL; each holds one pooled
# connection at a time, so POOL_MAX_SIZE >= threads keeps requests from waiting for one.
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
# Gunicorn's gthread worker, noting when each request was queued: the request deadline counts
# from then (ml_service/arrival.py).
worker_class = "ml_service.arrival.DeadlineThreadWorker"
# Never preload: psycopg connections cannot cross a fork, so each worker imports the app
# and opens its own pools after the fork.
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Gunicorn's largest request line (its default is 4094 bytes): room for about 175 `exclude` ids
# in a query string (the batch body takes all 200).
limit_request_line = 8190
# Gunicorn opens a management socket by default ($XDG_RUNTIME_DIR or $HOME/.gunicorn); nothing here
# uses it, the image's user cannot write its default path, and Gunicorns run side by side on
# one machine (the tests) would share it.
control_socket_disable = True

# Gunicorn's own lines (start, worker boot and exit) in the same JSON format as the service's,
# so that stderr is one JSON object per line throughout (ml_service/request_log.py).
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
_json_stderr = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
logconfig_dict = {
    "root": {"level": loglevel.upper(), "handlers": ["error_console"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["error_console"], "propagate": False},
        # never written (see ServiceLogger), even with another logger class
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
    "handlers": {"console": _json_stderr, "error_console": _json_stderr},
    "formatters": {"json": {"()": "ml_service.request_log.JsonFormatter"}},
}


class ServiceLogger(Logger):
    """Gunicorn's logger without its access log.

    The service writes one line per request itself (`ml_service.access`, with the request id);
    Gunicorn's own access line would be a second one, without it. Gunicorn writes that line as
    soon as an access log file or a logging configuration is set, so it is switched off here,
    whatever --access-logfile or GUNICORN_CMD_ARGS say (only --logger-class replaces this).
    """

    access_log_enabled = False  # Gunicorn then skips building the line's fields

    def access(self, resp, req, environ, request_time):
        pass


logger_class = ServiceLogger

# Prometheus multiprocess mode: workers write their samples to files in this directory and
# /metrics adds them up. It must be in the environment before a worker imports
# prometheus_client, so it is set here, in the master, before the workers are forked.
_own_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ml-service-metrics-")


# One copy of the model per machine: the workers map the model from files in this directory
# (services/shared_models.py). A directory of this server's own, so that servers of other
# model databases on the same machine never map its files.
_own_model_dir = None
if not os.environ.get("MODEL_SHARE_DIR"):
    _own_model_dir = os.environ["MODEL_SHARE_DIR"] = tempfile.mkdtemp(prefix="ml-service-models-")


# The service's modules are imported here, in the master, so that the workers share their
# memory (pages copied only when a worker writes to them) instead of each importing its own;
# the app itself, with its pools and threads, is still created in each worker, after the fork
# (ml_service/wsgi.py). Nothing these imports run opens a connection or starts a thread.
import ml_service.app  # noqa: E402,F401  (after PROMETHEUS_MULTIPROC_DIR: prometheus_client reads it on import)


# glibc's malloc: blocks of at least this many bytes are mapped on their own and unmapped when
# freed (a request's arrays over the catalog are 8 MB each at a million media). Left to glibc,
# the threshold rises to the largest block freed so far, and freed arrays then stay in the
# worker's heap: about 60 MB per worker at a million media, one model's worth across 4 workers.
MALLOC_MMAP_THRESHOLD = 1 << 20
# Free memory at the top of the heap beyond this is given back to the system.
MALLOC_TRIM_THRESHOLD = 4 << 20


def post_fork(server, worker):
    """Fix the worker's malloc thresholds (see MALLOC_MMAP_THRESHOLD; nothing to do without glibc)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, MALLOC_MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (also stops its dynamic rise)
    libc.mallopt(-1, MALLOC_TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


def pre_fork(server, worker):
    """Keep the workers' garbage collector off the objects imported here: a collection writes to
    every object it visits, which would copy their shared pages into each worker."""
    gc.freeze()


def on_starting(server):
    """Fail once, clearly, in the master when the configuration is wrong, not in every worker."""
    from settings import ConfigError, Settings

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        raise SystemExit(f"ml-service: configuration error: {error}") from None
    warning = rate_limit_warning(settings.rate_limit, settings.rate_limit_storage_url, server.cfg.workers)
    if warning:
        server.log.warning(warning)
    # Samples left by a previous run would be added to this run's: start from an empty directory.
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    # Model files left by a previous run may be of another model database's versions.
    for stale in Path(os.environ["MODEL_SHARE_DIR"]).glob("*.model"):
        stale.unlink()


def rate_limit_warning(rate_limit: str, storage_url: str, workers: int) -> str | None:
    """What to tell when every worker counts the rate limit on its own (None when they share it)."""
    if not rate_limit or workers < 2 or (storage_url and not storage_url.startswith("memory://")):
        return None
    return (
        f"RATE_LIMIT={rate_limit} is counted in each worker's memory (RATE_LIMIT_STORAGE_URL is "
        f"{storage_url or 'not set'}): with {workers} workers a client gets up to {workers}x that limit overall. "
        "To share one limit between every worker and instance, set RATE_LIMIT_STORAGE_URL=redis://HOST:6379/0"
    )


def child_exit(server, worker):
    """A worker exited (or was killed): drop its live gauges, keep its counters in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """A worker stops: write the impressions it still holds (at most impressions.CLOSE_TIMEOUT seconds)."""
    runtime = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("ml_service")
    if runtime is not None:
        runtime.impressions.close()


def on_exit(server):
    """Remove the metrics and model directories that are temporary ones this configuration made."""
    for directory in (_own_metrics_dir, _own_model_dir):
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


def post_worker_init(worker):
    """Report the model (loaded by create_app) and stop this worker if a request ever gets stuck.

    A stuck request (ml_service/liveness.py) makes the worker stop taking requests, so that
    Gunicorn starts a fresh one; its other requests end within the request deadline, and since
    the stuck thread would keep the process from exiting, it then exits anyway.
    """
    extensions = worker.wsgi.extensions
    settings = extensions["ml_service"].settings

    def stop():
        worker.alive = False

    extensions["ml_service.liveness"].monitor(on_stuck=stop, exit_after=settings.request_deadline_ms / 1000 + 2)
    if "ml_service.metrics" in extensions:  # report it now: a worker may wait long for its first request
        extensions["ml_service.metrics"].update_model(extensions["ml_service"].models.loaded)
