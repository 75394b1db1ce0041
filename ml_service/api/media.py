"""Media pages: "more like this"."""

from __future__ import annotations

from uuid import UUID

from flask import current_app, jsonify

from ml_service.api.blueprint import Blueprint
from ml_service.api.experiments import tagged
from ml_service.api.recommendations import TAGGED, versioned
from ml_service.arrival import arrived_at
from ml_service.schemas import MediaPathSchema, SimilarRequestSchema, SimilarResponseSchema, similar_json

blp = Blueprint("media", __name__, url_prefix="/api/media", description="Media like one media.")


@blp.route("/<media_id>/similar")
@blp.arguments(MediaPathSchema, location="path", as_kwargs=True)
@blp.arguments(SimilarRequestSchema, location="query")
@blp.response(200, SimilarResponseSchema, description="The media most like this one.", headers=TAGGED)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def similar_media(args: dict, media_id: UUID):
    """More like this: the 100 media most like it (its neighbours, then popular media sharing its
    genres), by `score`: its own score for them, as if it were a user's only liked media.

    With `user_id`, what that user has not seen, by their hybrid score. 404 `not_found` for a
    media the catalog does not have.
    """
    page = current_app.extensions["ml_service"].recommender.similar(media_id, **args, arrived_at=arrived_at())
    return tagged(versioned(jsonify(similar_json(page)), page.model_version), page.experiment)  # built directly
