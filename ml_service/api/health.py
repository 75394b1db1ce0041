"""Liveness and readiness probes."""

from __future__ import annotations

from flask import current_app

from database.deadline import Deadline
from database.pools import Unavailable
from ml_service import SERVICE_NAME, __version__
from ml_service.api.blueprint import Blueprint
from ml_service.arrival import arrived_at
from ml_service.schemas import HealthSchema, ReadinessSchema

blp = Blueprint("health", __name__, description="Liveness and readiness probes.")
# Without these the service answers nothing useful; without the others it answers degraded.
REQUIRED = ("catalog_db",)


@blp.route("/health")
@blp.response(200, HealthSchema, description="The worker is up and no request is stuck.")
@blp.alt_response(503, schema=HealthSchema, description="A request has been stuck past the deadline; the worker replaces itself.")
def health():
    """Liveness: the worker can serve. Touches no database.

    200 while this worker can serve; 503 once a request is stuck past the deadline (the worker
    then replaces itself). A database outage is not a reason to replace the worker.
    ---
    ml_service/liveness.py decides what is stuck.
    """
    stuck = current_app.extensions["ml_service.liveness"].stuck()
    body = {"status": "unhealthy" if stuck else "healthy", "service": SERVICE_NAME, "version": __version__}
    return body, 503 if stuck else 200


@blp.route("/health/ready")
@blp.response(200, ReadinessSchema, description="Ready to serve recommendations, fully or degraded.")
@blp.alt_response(503, schema=ReadinessSchema, description="Cannot serve (catalog_db unavailable); `checks` names what is missing.")
def ready():
    """Readiness: 200 ready, 200 degraded (`degraded` lists what is missing), 503 without catalog_db.

    200 "ready": every database answered SELECT 1 and a model is loaded (not stale, not empty).
    200 "degraded": answers come, without what `degraded` lists (user_db, engagement_db,
    model_db, model, model_stale, model_empty), so the instance stays in the load balancer.
    503 "unavailable": catalog_db does not answer, so no answer can describe media. Databases
    known to be down are not tried again; the others are each asked for SELECT 1 within a
    share of the request deadline. `model` is this worker's model, the one its answers carry
    in X-Model-Version.
    ---
    docs/operations.md: Readiness.
    """
    runtime = current_app.extensions["ml_service"]
    deadline = Deadline(arrived_at() + runtime.settings.request_deadline_ms / 1000)
    databases = runtime.databases.by_name()
    checks = {}
    for i, (name, db) in enumerate(databases.items()):
        share = deadline.share(1 / (len(databases) - i))
        try:
            with db.connection(share) as conn:
                conn.execute("SELECT 1")
            checks[name] = "ok"
        except Unavailable:  # the database logs why, once per outage
            checks[name] = "unavailable"
    model = None
    loaded = runtime.models.loaded
    if loaded is None:
        checks["model"] = "missing"
    else:
        info = loaded.info
        checks["model"] = "empty" if info.media_count == 0 else "stale" if runtime.models.stale else "ok"
        model = {"version": info.version, "built_at": info.built_at.isoformat(), "media": info.media_count}
    degraded = [
        f"model_{state}" if name == "model" and state in ("stale", "empty") else name
        for name, state in checks.items()
        if state != "ok"
    ]
    if any(checks[name] != "ok" for name in REQUIRED):
        status, code = "unavailable", 503
    else:
        status, code = ("degraded" if degraded else "ready"), 200
    return {"status": status, "checks": checks, "model": model, "degraded": degraded}, code
