"""The HTTP API's description, generated from the routes, served at /openapi.json and as a page at /docs.

Each route states its arguments and answers with flask-smorest's decorators (ml_service/api/);
flask-smorest's Api registers the routes and builds the OpenAPI document from them. What holds
for many routes is added here, once, where the rule that makes it true is:

- every operation takes an X-Request-ID and every answer carries one (ml_service/request_log.py);
- operations under /api/ need the X-API-Key when API_KEYS is set, and are rate limited
  (ml_service/security.py): security `ApiKey`, 401 and 429;
- the error answers (ml_service/errors.py), by HTTP status name: @blp.arguments documents its
  400 as BAD_REQUEST, and a route names its other errors with @blp.alt_response(503,
  response="SERVICE_UNAVAILABLE");
- every field of a response body is required (the service writes them all; schemas.ResponseSchema);
- operationId: the view function's name in camelCase.

The routes flask-smorest does not declare (/metrics from prometheus_flask_exporter, /openapi.json
and /docs from flask-smorest itself) are described below. The /docs page is Swagger UI, served
from the files of the flask-swagger-ui package (no CDN: the service may run without internet).
"""

from __future__ import annotations

import http
from importlib import resources

import flask_smorest
from apispec import BasePlugin
from flask import Blueprint, Flask, request
from werkzeug.routing import Map, Rule

from ml_service import SERVICE_NAME, __version__
from ml_service.api import experiments, health, media, model, recommendations
from ml_service.api.experiments import EXPERIMENT_HEADER
from ml_service.api.model import MODEL_VERSION_HEADER
from ml_service.request_log import REQUEST_ID_HEADER
from ml_service.schemas import ErrorSchema, ResponseSchema
from ml_service.security import API_PREFIX, METRICS_PATH

BLUEPRINTS = (health.blp, recommendations.blp, media.blp, model.blp, experiments.blp)
DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
API_KEY = "ApiKey"  # security scheme names
METRICS_KEY = "MetricsKey"

CONFIG = {
    "API_TITLE": SERVICE_NAME,
    "API_VERSION": __version__,
    "OPENAPI_VERSION": "3.0.3",
    "API_SPEC_OPTIONS": {
        "info": {
            "description": (
                "Hybrid media recommendations (genre match blended with a collaborative score from EASE item-item "
                "weights, popular fill). "
                "Every error is JSON: `{\"error\": {\"code\", \"message\", \"details\"?}}`; a method a path "
                "does not list is a 405 `method_not_allowed` whose `Allow` header lists those it does. "
                "Send `X-Request-ID` to correlate a call with the service's logs; it is echoed back "
                "(one is generated when absent). See INTEGRATION_GUIDE.md."
            )
        }
    },
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": DOCS_PATH,
    # Relative to the page, so that it holds under a path prefix (SCRIPT_NAME) too.
    "OPENAPI_SWAGGER_UI_URL": ASSETS_PATH.removeprefix("/") + "/",
    # No validator badge: it would ask swagger.io about the document.
    "OPENAPI_SWAGGER_UI_CONFIG": {"validatorUrl": None, "deepLinking": True},
}
DOCS_ENDPOINT = "api-docs.openapi_swagger_ui"  # flask-smorest's names for its page and document
# The page runs the service's own scripts only (ml_service/templates/swagger_ui.html starts
# Swagger UI from static/docs.js, no inline script) and calls the service only ("Try it out").
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

# Every error answer: its description and, per status, the codes `error.code` can take.
ERRORS = {
    400: "Invalid input: `invalid_request` (with `details` per field, an unknown parameter or field "
    "included) or `bad_request` (the body is not valid JSON).",
    401: "`unauthorized`: the service requires an API key (API_KEYS) and X-API-Key is missing or wrong.",
    404: "`not_found`: no such endpoint, no such media for `/api/media/{media_id}/similar`, or a `because` media "
    "the user has not liked or watched (a user id that is unknown is not an error: it gets popular media).",
    413: "`payload_too_large`: the body is over 64 KiB.",
    415: "`unsupported_media_type`: the body must be JSON sent with `Content-Type: application/json`.",
    429: "`too_many_requests`: over the rate limit (RATE_LIMIT); retry after the `Retry-After` seconds.",
    503: "`database_unavailable` (catalog_db, or overload) or `model_unavailable` (GET /api/model before a model "
    "is loaded): retry after the `Retry-After` seconds (with backoff).",
}
RETRY_AFTER = (429, 503)


class Api(flask_smorest.Api):
    """flask-smorest's Api, describing and answering errors as ml_service/errors.py does."""

    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None  # each operation lists the errors it can answer

    def _register_error_handlers(self) -> None:
        """None: ml_service/errors.py answers every error (flask-smorest's handler has a shape of its own)."""

    def _register_pagination_header(self) -> None:
        """None: no route is paginated (it would only add an unused schema to the description)."""


class ServiceWide(BasePlugin):
    """apispec plugin: what the app does around the routes, in their description (module docstring)."""

    def schema_helper(self, name, definition, **kwargs):
        schema = kwargs.get("schema")
        schema_class = schema if isinstance(schema, type) else type(schema)
        if not issubclass(schema_class, ResponseSchema):
            return None
        return {"required": [p for p in definition.get("properties", {}) if p not in schema_class.optional]}

    def operation_helper(self, path=None, operations=None, **kwargs):
        rule = kwargs.get("rule")
        for operation in operations.values():
            if rule is not None and rule.endpoint:
                first, *rest = rule.endpoint.rsplit(".", 1)[-1].split("_")
                operation.setdefault("operationId", first + "".join(word.title() for word in rest))
            operation.setdefault("parameters", []).append("RequestId")
            responses = operation.setdefault("responses", {})
            if path.startswith(API_PREFIX):
                operation["security"] = [{API_KEY: []}]
                responses.setdefault(400, _error_name(400))  # an unknown query parameter, on every API route
                responses[401] = _error_name(401)
                responses[429] = _error_name(429)
            for response in responses.values():
                if isinstance(response, dict):  # not a reference to an error response, which has its headers
                    response.setdefault("headers", {})[REQUEST_ID_HEADER] = REQUEST_ID_HEADER
            operation["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))


def register_api(app: Flask) -> Api:
    """Register the routes on `app`, their description at /openapi.json and the page at /docs."""
    app.config.update(CONFIG)
    api = Api(app, spec_kwargs={"extra_plugins": [ServiceWide()]})
    _describe_components(api.spec)
    api.register_converter(recommendations.UserIdSegment, lambda converter: {"type": "string", "format": "uuid"})
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    _describe_other_routes(api.spec)
    api.spec.tag({"name": "operations", "description": "Metrics and this description."})
    app.register_blueprint(
        Blueprint("docs_assets", __name__, static_folder=resources.files("flask_swagger_ui") / "dist",
                  static_url_path=ASSETS_PATH)
    )

    @app.after_request
    def docs_page_policy(response):
        if request.endpoint == DOCS_ENDPOINT:
            response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response

    return api


def build_spec() -> dict:
    """The OpenAPI document, without databases: the routes registered on an app that serves nothing."""
    return register_api(Flask(__name__)).spec.to_dict()


def _error_name(status: int) -> str:
    """The component name of an error response: flask-smorest's, the HTTP status name (BAD_REQUEST)."""
    return http.HTTPStatus(status).name


def _describe_components(spec) -> None:
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
        EXPERIMENT_HEADER,
        {"description": "NAME/VARIANT: the running experiment and the user's variant (absent when none runs).",
         "schema": {"type": "string"}},
    )
    spec.components.header(
        "Retry-After",
        {"description": "Seconds to wait before retrying.", "required": True, "schema": {"type": "integer", "minimum": 0}},
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
    spec.components.security_scheme(
        API_KEY,
        {"type": "apiKey", "in": "header", "name": "X-API-Key",
         "description": "One of the keys in API_KEYS; needed by every /api/ call when the service is started with "
         "API_KEYS (without it, the API is open)."},
    )
    spec.components.security_scheme(
        METRICS_KEY,
        {"type": "apiKey", "in": "header", "name": "X-API-Key",
         "description": "METRICS_API_KEY; needed by /metrics when the service is started with it."},
    )
    for status, description in ERRORS.items():
        headers = {REQUEST_ID_HEADER: REQUEST_ID_HEADER}
        if status in RETRY_AFTER:
            headers["Retry-After"] = "Retry-After"
        # lazy, like flask-smorest's own (which this replaces): listed only when an operation refers to it
        spec.components.response(
            _error_name(status),
            {"description": description, "headers": headers, "content": {"application/json": {"schema": ErrorSchema}}},
            lazy=True,
        )


def _describe_other_routes(spec) -> None:
    def ok(description: str, schema: dict, content_type: str) -> dict:
        return {"200": {"description": description, "content": {content_type: {"schema": schema}}}}

    def path(rule: str, operations: dict) -> None:
        # flask-smorest's plugin reads the path from a werkzeug Rule, which exists once bound to a Map.
        (bound,) = Map([Rule(rule)]).iter_rules()
        spec.path(rule=bound, operations=operations)

    path(
        METRICS_PATH,
        operations={
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "summary": "Prometheus metrics of every worker (text exposition format).",
                "security": [{METRICS_KEY: []}],
                "responses": {**ok("Metrics.", {"type": "string"}, "text/plain"), "401": _error_name(401)},
            }
        },
    )
    path(
        "/openapi.json",
        operations={
            "get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "summary": "This description (OpenAPI 3).",
                "responses": ok("The OpenAPI 3 document.", {"type": "object"}, "application/json"),
            }
        },
    )
    path(
        DOCS_PATH,
        operations={
            "get": {
                "operationId": "docs",
                "tags": ["operations"],
                "summary": "This description as a page to read and try (Swagger UI).",
                "responses": ok("The page.", {"type": "string"}, "text/html"),
            }
        },
    )
