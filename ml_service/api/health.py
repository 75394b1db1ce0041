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
# Without these the service answers nothing useful; without the others it answers degraded.
REQUIRED = ("catalog_db",)


@bp.get("/health")
def health():
    """The process is up. 200 always; touches no database."""
    return health_schema.dump({"status": "healthy", "service": SERVICE_NAME, "version": __version__})


@bp.get("/health/ready")
def ready():
    """Can this worker answer? 200 ready or degraded (listing what is missing) · 503 unavailable.

    A missing user_db, engagement_db or model leaves recommendations degraded but useful, so
    the instance stays in the load balancer (200, "degraded"); without catalog_db no answer
    can describe media (503).
    """
    runtime = current_app.extensions["ml_service"]
    checks = {}
    for name, pool in runtime.pools.by_name().items():
        if not runtime.availability[name].available:
            checks[name] = "unavailable"  # known down: the probe thread reports when it is back
            continue
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
        checks["model"] = "stale" if runtime.models.stale else "ok"
        model = {"version": info.version, "built_at": info.built_at.isoformat(), "media": info.media_count}
    except ModelUnavailable:
        checks["model"] = "missing"
    degraded = [name if state != "stale" else "model_stale" for name, state in checks.items() if state != "ok"]
    if any(checks[name] != "ok" for name in REQUIRED):
        status, code = "unavailable", 503
    else:
        status, code = ("degraded" if degraded else "ready"), 200
    body = readiness_schema.dump({"status": status, "checks": checks, "model": model, "degraded": degraded})
    return body, code
