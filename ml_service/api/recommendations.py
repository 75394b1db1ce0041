"""Recommendations for one user and for a batch of users."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from werkzeug.routing import BaseConverter

from ml_service.api.model import MODEL_VERSION_HEADER
from ml_service.arrival import arrived_at
from ml_service.schemas import BatchRequestSchema, SingleRequestSchema, batch_json, page_json, query_arguments

bp = Blueprint("recommendations", __name__, url_prefix="/api/recommendations")


class UserIdSegment(BaseConverter):
    """Any path segment but "batch": GET /batch is then a 405 (POST only), not a malformed user id."""

    regex = r"(?!batch$)[^/]+"


# Before the routes below, so the converter exists when their rules are added.
bp.record_once(lambda state: state.app.url_map.converters.setdefault("user_id", UserIdSegment))

single_request_schema = SingleRequestSchema()
batch_request_schema = BatchRequestSchema()


@bp.get("/<user_id:user_id>")
def recommendations_for_user(user_id: str):
    """Ranked media for one user, filtered and with exclusions when asked. 200 (possibly degraded) · 400
    invalid input or unknown parameter · 503 catalog_db unavailable."""
    args = single_request_schema.load({**query_arguments(single_request_schema, request.args), "user_id": user_id})
    result = current_app.extensions["ml_service"].recommender.recommend(**args, arrived_at=arrived_at())
    return page_json(result), _version_header(result.model_version)  # RecommendationsSchema


@bp.post("/batch")
def recommendations_for_users():
    """Ranked media for 1-50 users. 200 · 400 invalid body · 413 too large · 415 not JSON · 503."""
    args = batch_request_schema.load(request.get_json())
    results = current_app.extensions["ml_service"].recommender.recommend_many(**args, arrived_at=arrived_at())
    body = batch_json(results)  # BatchResponseSchema
    return body, _version_header(body["model_version"])


def _version_header(version: int | None) -> dict:
    """X-Model-Version: the model that ranked the answer (absent when no model is loaded)."""
    return {} if version is None else {MODEL_VERSION_HEADER: str(version)}
