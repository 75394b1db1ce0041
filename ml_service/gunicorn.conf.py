"""Production Gunicorn configuration: `gunicorn -c ml_service/gunicorn.conf.py`.

Every value can be overridden from the environment (see .env.example).
"""

import os

wsgi_app = "ml_service.wsgi:app"
bind = os.environ.get("BIND", "0.0.0.0:5000")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
# Threads let a worker overlap requests that wait on PostgreSQL; each holds one pooled
# connection at a time, so POOL_MAX_SIZE >= threads keeps requests from waiting for one.
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
worker_class = "gthread"
# Never preload: psycopg connections cannot cross a fork, so each worker imports the app
# and opens its own pools after the fork.
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5


def on_starting(server):
    """Fail once, clearly, in the master when the configuration is wrong, not in every worker."""
    from ml_service.config import ConfigError, Settings

    try:
        Settings.from_env()
    except ConfigError as error:
        raise SystemExit(f"ml-service: configuration error: {error}") from None


def post_worker_init(worker):
    """Load the model before the worker takes its first request, so no request waits for it.

    If it cannot be loaded now (no model published, database down), the first requests retry.
    """
    from services.errors import ModelUnavailable

    try:
        worker.wsgi.extensions["ml_service"].models.current()
    except ModelUnavailable:
        pass
