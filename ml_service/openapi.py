"""The OpenAPI 3 description of the HTTP API, built from the marshmallow schemas, served at /openapi.json."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app

from ml_service import SERVICE_NAME, __version__
from ml_service.api.model import MODEL_VERSION_HEADER
from ml_service.schemas import (
    BatchRequestSchema,
    BatchResponseSchema,
    ErrorSchema,
    HealthSchema,
    ModelSchema,
    ReadinessSchema,
    RecommendationsSchema,
    SingleRequestSchema,
)

OPENAPI_VERSION = "3.0.3"
REQUEST_ID_HEADER = "X-Request-ID"

bp = Blueprint("openapi", __name__)

# Every error response: its description and, per status, the codes `error.code` can take.
ERRORS = {
    400: "Invalid input: `invalid_request` (with `details` per field, an unknown parameter or field "
    "included) or `bad_request` (the body is not valid JSON).",
    404: "`not_found`: no such endpoint (a user id that is unknown is not an error: it gets popular media).",
    405: "`method_not_allowed` (any path, any method it does not list); `Allow` lists the methods it accepts.",
    413: "`payload_too_large`: the body is over 64 KiB.",
    415: "`unsupported_media_type`: the body must be JSON sent with `Content-Type: application/json`.",
    401: "`unauthorized`: the service requires an API key (API_KEYS) and X-API-Key is missing or wrong.",
    429: "`too_many_requests`: over the rate limit (RATE_LIMIT); retry after the `Retry-After` seconds.",
    503: "`database_unavailable` (catalog_db, or overload) or `model_unavailable` (GET /api/model before a model "
    "is loaded): retry after the `Retry-After` seconds (with backoff).",
}


# Schemas of response bodies, with the properties a response may leave out.
RESPONSE_SCHEMAS = {
    "Health": set(),
    "Readiness": set(),
    "RecommendationItem": set(),
    "Recommendations": set(),
    "BatchResponse": set(),
    "Model": set(),
    "ErrorBody": {"details"},
    "Error": set(),
}


def build_spec() -> dict:
    """The OpenAPI document as a dict (valid OpenAPI 3.0.3; the tests validate it)."""
    spec = APISpec(
        title=SERVICE_NAME,
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={
            "description": (
                "Hybrid media recommendations (0.4 x genre match + 0.6 x co-interaction, popular fill). "
                "Every error is JSON: `{\"error\": {\"code\", \"message\", \"details\"?}}`. "
                "Send `X-Request-ID` to correlate a call with the service's logs; it is echoed back "
                "(one is generated when absent). See INTEGRATION_GUIDE.md."
            )
        },
    )
    for name, schema in [
        ("Health", HealthSchema),
        ("Readiness", ReadinessSchema),
        ("Recommendations", RecommendationsSchema),
        ("BatchRequest", BatchRequestSchema),
        ("BatchResponse", BatchResponseSchema),
        ("Model", ModelSchema),
        ("Error", ErrorSchema),
    ]:
        spec.components.schema(name, schema=schema)
    spec.components.header(
        REQUEST_ID_HEADER,
        {"description": "The request id: the client's `X-Request-ID` when valid, else a generated one.",
         "required": True, "schema": {"type": "string"}},
    )
    spec.components.header(
        MODEL_VERSION_HEADER,
        {"description": "The published model version that ranked the answer (absent when no model is loaded).",
         "schema": {"type": "integer"}},
    )
    spec.components.header(
        "Retry-After",
        {"description": "Seconds to wait before retrying.", "required": True, "schema": {"type": "integer", "minimum": 0}},
    )
    spec.components.header(
        "Allow", {"description": "The methods this path accepts.", "required": True, "schema": {"type": "string"}}
    )
    spec.components.parameter(
        "RequestId",
        "header",
        {
            "name": REQUEST_ID_HEADER,
            "required": False,
            "description": "Client-chosen id (1-128 of `A-Za-z0-9._-`) echoed back and written to the log line.",
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,128}$"},
        },
    )
    for status, description in ERRORS.items():
        headers = {REQUEST_ID_HEADER: {"$ref": f"#/components/headers/{REQUEST_ID_HEADER}"}}
        if status in (429, 503):
            headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
        if status == 405:
            headers["Allow"] = {"$ref": "#/components/headers/Allow"}
        spec.components.response(
            f"Error{status}",
            {"description": description, "headers": headers, "content": {"application/json": {"schema": "Error"}}},
        )

    def ok(description: str, schema: str | dict, content_type: str = "application/json", versioned=False) -> dict:
        headers = {REQUEST_ID_HEADER: {"$ref": f"#/components/headers/{REQUEST_ID_HEADER}"}}
        if versioned:
            headers[MODEL_VERSION_HEADER] = {"$ref": f"#/components/headers/{MODEL_VERSION_HEADER}"}
        return {"description": description, "headers": headers, "content": {content_type: {"schema": schema}}}

    def errors(*statuses: int) -> dict:
        return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses}

    request_id = "RequestId"  # apispec turns a component name into a $ref
    spec.path(
        path="/health",
        operations={
            "get": {
                "operationId": "health",
                "tags": ["health"],
                "summary": "Liveness: the worker can serve. Touches no database.",
                "parameters": [request_id],
                "responses": {
                    "200": ok("The worker is up and no request is stuck.", "Health"),
                    "503": ok("A request has been stuck past the deadline; the worker replaces itself.", "Health"),
                },
            }
        },
    )
    spec.path(
        path="/health/ready",
        operations={
            "get": {
                "operationId": "ready",
                "tags": ["health"],
                "summary": "Readiness: 200 ready, 200 degraded (`degraded` lists what is missing), 503 without catalog_db.",
                "parameters": [request_id],
                "responses": {
                    "200": ok("Ready to serve recommendations, fully or degraded.", "Readiness"),
                    "503": ok("Cannot serve (catalog_db unavailable); `checks` names what is missing.", "Readiness"),
                },
            }
        },
    )
    spec.path(
        path="/api/recommendations/{user_id}",
        operations={
            "get": {
                "operationId": "recommendationsForUser",
                "tags": ["recommendations"],
                "summary": "A page of ranked media for one user (popular media for an unknown user).",
                "parameters": [
                    {"in": "path", "schema": SingleRequestSchema(only=["user_id"])},
                    {"in": "query", "schema": SingleRequestSchema(exclude=["user_id"])},
                    request_id,
                ],
                "responses": {
                    "200": ok("The user's recommendations.", "Recommendations", versioned=True),
                    **errors(400, 401, 404, 429, 503),
                },
            }
        },
    )
    spec.path(
        path="/api/recommendations/batch",
        operations={
            "post": {
                "operationId": "recommendationsForUsers",
                "tags": ["recommendations"],
                "summary": "A page of ranked media for each of 1-50 users (duplicates are answered once).",
                "parameters": [request_id],
                "requestBody": {"required": True, "content": {"application/json": {"schema": "BatchRequest"}}},
                "responses": {
                    "200": ok("Recommendations keyed by user id.", "BatchResponse", versioned=True),
                    **errors(400, 401, 413, 415, 429, 503),
                },
            }
        },
    )
    spec.path(
        path="/api/model",
        operations={
            "get": {
                "operationId": "servingModel",
                "tags": ["operations"],
                "summary": "The model the answering worker serves: version, build time, age, counts.",
                "parameters": [request_id],
                "responses": {
                    "200": ok("The serving model.", "Model", versioned=True),
                    **errors(401, 429, 503),
                },
            }
        },
    )
    spec.path(
        path="/metrics",
        operations={
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "summary": "Prometheus metrics of every worker (text exposition format).",
                "responses": {"200": ok("Metrics.", {"type": "string"}, "text/plain")},
            }
        },
    )
    spec.path(
        path="/openapi.json",
        operations={
            "get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "summary": "This description.",
                "parameters": [request_id],
                "responses": {"200": ok("The OpenAPI 3 document.", {"type": "object"})},
            }
        },
    )
    document = spec.to_dict()
    # Marshmallow output fields are always written, so every response property is required.
    for name, optional in RESPONSE_SCHEMAS.items():
        schema = document["components"]["schemas"][name]
        schema["required"] = [p for p in schema["properties"] if p not in optional]
    return document


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI description. 200."""
    return current_app.extensions["ml_service.openapi"]


def register_openapi(app: Flask) -> None:
    """Serve the description at /openapi.json (built once per app)."""
    app.extensions["ml_service.openapi"] = build_spec()
    app.register_blueprint(bp)
