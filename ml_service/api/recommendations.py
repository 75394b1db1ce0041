"""Recommendations for one user and for a batch of users."""

from __future__ import annotations

from uuid import UUID

from flask import current_app, jsonify
from werkzeug.routing import BaseConverter

from ml_service.api.blueprint import Blueprint
from ml_service.api.experiments import EXPERIMENT_HEADER, tagged
from ml_service.api.model import MODEL_VERSION_HEADER
from ml_service.arrival import arrived_at
from ml_service.schemas import (
    BatchRequestSchema,
    BatchResponseSchema,
    RecommendationsSchema,
    SingleRequestSchema,
    UserPathSchema,
    batch_json,
    page_json,
)

blp = Blueprint(
    "recommendations", __name__, url_prefix="/api/recommendations", description="Ranked media for one user or a batch."
)
VERSIONED = {MODEL_VERSION_HEADER: MODEL_VERSION_HEADER}  # documented headers (components of ml_service/openapi.py)
TAGGED = {**VERSIONED, EXPERIMENT_HEADER: EXPERIMENT_HEADER}


class UserIdSegment(BaseConverter):
    """Any path segment but "batch": GET /batch is then a 405 (POST only), not a malformed user id."""

    regex = r"(?!batch$)[^/]+"


# Before the routes below, so the converter exists when their rules are added.
blp.record_once(lambda state: state.app.url_map.converters.setdefault("user_id", UserIdSegment))


@blp.route("/<user_id:user_id>")
@blp.arguments(UserPathSchema, location="path", as_kwargs=True)
@blp.arguments(SingleRequestSchema, location="query")
@blp.response(200, RecommendationsSchema, description="The user's recommendations.", headers=TAGGED)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def recommendations_for_user(row: dict, user_id: UUID):
    """A page of ranked media for one user (popular media for an unknown user).

    Filtered and with exclusions when asked; degraded (`degraded` says how) when a database
    other than catalog_db is missing.
    """
    result = current_app.extensions["ml_service"].recommender.recommend(user_id, **row, arrived_at=arrived_at())
    # Built directly (page_json), not dumped by the schema: marshmallow would cost more than the ranking.
    return tagged(versioned(jsonify(page_json(result)), result.model_version), result.experiment)


@blp.route("/batch", methods=["POST"])
@blp.arguments(BatchRequestSchema)
@blp.response(200, BatchResponseSchema, description="Recommendations keyed by user id.", headers=VERSIONED)
@blp.alt_response(413, response="REQUEST_ENTITY_TOO_LARGE")
@blp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def recommendations_for_users(args: dict):
    """A page of ranked media for each of 1-50 users (duplicates are answered once)."""
    results = current_app.extensions["ml_service"].recommender.recommend_many(**args, arrived_at=arrived_at())
    body = batch_json(results)
    return versioned(jsonify(body), body["model_version"])


def versioned(response, version: int | None):
    """X-Model-Version: the model that ranked the answer (absent when no model is loaded)."""
    if version is not None:
        response.headers[MODEL_VERSION_HEADER] = str(version)
    return response
