"""The model this worker serves: GET /api/model."""

from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, current_app

from ml_service.schemas import ModelSchema

bp = Blueprint("model", __name__, url_prefix="/api")
model_schema = ModelSchema()
MODEL_VERSION_HEADER = "X-Model-Version"


@bp.get("/model")
def serving_model():
    """Version, build time, age and counts of the model this worker serves. 200 · 503 none loaded yet."""
    models = current_app.extensions["ml_service"].models
    info = models.current().info  # ModelUnavailable: 503 model_unavailable
    body = model_schema.dump(
        {
            "version": info.version,
            "built_at": info.built_at,
            "age_seconds": round((datetime.now(timezone.utc) - info.built_at).total_seconds(), 1),
            "stale": models.stale,
            "media": info.media_count,
            "users": info.users_count,
            "interactions": info.interactions_count,
            "neighbours": info.neighbours_count,
            "build_seconds": round(info.build_seconds, 3),
            # Interaction timestamps are stored without a time zone: UTC.
            "newest_interaction": info.newest_interaction and info.newest_interaction.replace(tzinfo=timezone.utc),
        }
    )
    return body, 200, {MODEL_VERSION_HEADER: str(info.version)}
