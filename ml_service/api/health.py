"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app

from ml_service import SERVICE_NAME, __version__
from ml_service.schemas import HealthSchema, ReadinessSchema
from services.errors import ModelUnavailable

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)
health_schema = HealthSchema()
readiness_schema = ReadinessSchema()
# Seconds a readiness probe waits for a connection from each pool.
READY_POOL_TIMEOUT = 2.0


@bp.get("/health")
def health():
    """The process is up. 200 always; touches no database."""
    return health_schema.dump({"status": "healthy", "service": SERVICE_NAME, "version": __version__})


@bp.get("/health/ready")
def ready():
    """Every database answers and a model is loaded. 200 ready · 503 with the failing parts."""
    runtime = current_app.extensions["ml_service"]
    checks = {}
    for name, pool in runtime.pools.by_name().items():
        try:
            with pool.connection(timeout=READY_POOL_TIMEOUT) as conn:
                conn.execute("SELECT 1")
            checks[name] = "ok"
        except Exception as error:  # any failure means "not ready"; the cause goes to the log
            log.warning("readiness: %s unavailable: %s", name, error)
            checks[name] = "unavailable"
    model = None
    try:
        info = runtime.models.current().info
        checks["model"] = "ok"
        model = {"version": info.version, "built_at": info.built_at.isoformat(), "media": info.media_count}
    except ModelUnavailable:
        checks["model"] = "missing"
    ok = all(state == "ok" for state in checks.values())
    body = readiness_schema.dump({"status": "ready" if ok else "unavailable", "checks": checks, "model": model})
    return body, 200 if ok else 503
