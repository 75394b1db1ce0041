"""The model this worker serves: GET /api/model, and the genres it knows: GET /api/genres."""

from __future__ import annotations

from datetime import datetime, timezone

from flask import current_app

from ml_service.api.blueprint import Blueprint
from ml_service.schemas import GenresSchema, ModelSchema

blp = Blueprint("model", __name__, url_prefix="/api", description="The model this worker serves.")
MODEL_VERSION_HEADER = "X-Model-Version"


@blp.route("/model")
@blp.response(200, ModelSchema, description="The serving model.", headers={MODEL_VERSION_HEADER: MODEL_VERSION_HEADER})
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def serving_model():
    """The model the answering worker serves: version, build time, age, counts, the settings it
    serves it with and its quality on the refresh's validation slice.

    503 `model_unavailable` until the worker has loaded one.
    """
    runtime = current_app.extensions["ml_service"]
    models = runtime.models
    model = models.current()  # ModelUnavailable: 503 model_unavailable
    info = model.info
    body = {
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
        "settings": runtime.recommender.settings_for(model).as_dict(),
        "validation": info.validation,
    }
    return body, {MODEL_VERSION_HEADER: str(info.version)}


@blp.route("/genres")
@blp.response(200, GenresSchema, description="The genres, by name.", headers={MODEL_VERSION_HEADER: MODEL_VERSION_HEADER})
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def genres():
    """The genres of the serving model's media, with how many media have each: the names the
    `genres` filter takes (in any case). No database is read.

    503 `model_unavailable` until the worker has loaded a model.
    """
    model = current_app.extensions["ml_service"].models.current()  # ModelUnavailable: 503 model_unavailable
    listed = sorted(zip(model.genre_names, (len(members) for members in model.media_genres)))
    body = {"genres": [{"name": name, "media": media} for name, media in listed], "model_version": model.info.version}
    return body, {MODEL_VERSION_HEADER: str(model.info.version)}
