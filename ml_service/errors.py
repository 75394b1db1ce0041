"""One JSON error shape for everything that can go wrong: {"error": {"code", "message"}}.

Validation errors add "details": one entry per field path (`limit`, `user_ids[1]`, `_schema`
for the body as a whole) listing its problems, e.g. {"user_ids[1]": ["not a valid UUID"]},
and "message" sums them up: "user_ids[1]: not a valid UUID; limit: must be ...".
"""

from __future__ import annotations

import logging

import psycopg
from flask import Flask, jsonify
from marshmallow import ValidationError
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

from services.errors import ServiceError

log = logging.getLogger(__name__)

# Stable codes and messages for the HTTP errors werkzeug raises.
HTTP_ERRORS = {
    400: ("bad_request", "the request could not be understood (is the body valid JSON?)"),
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "this endpoint does not accept that method"),
    413: ("payload_too_large", "the request body is larger than 64 KiB"),
    415: ("unsupported_media_type", "the body must be JSON, sent with Content-Type: application/json"),
    401: ("unauthorized", "a valid X-API-Key header is required"),
    429: ("too_many_requests", "rate limit exceeded; retry after the time in Retry-After"),
}
DATABASE_RETRY_AFTER = 1
# Problems spelt out in the message of a validation error; every one is in "details".
MESSAGE_PROBLEMS = 10
WHOLE_BODY = "_schema"  # marshmallow's key for problems of the input as a whole


def error_response(status: int, code: str, message: str, details: dict | None = None, retry_after: int | None = None):
    """A JSON error response."""
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify(error=body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def register_error_handlers(app: Flask) -> None:
    """Turn every exception into the JSON error shape; internals go to the log only."""

    @app.errorhandler(ValidationError)
    def invalid_request(error: ValidationError):
        details = validation_details(error.messages)
        return error_response(400, "invalid_request", validation_message(details), details=details)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code, message = HTTP_ERRORS.get(error.code or 500, (_snake(error.name), error.name))
        response = error_response(error.code or 500, code, message)
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError):
        return error_response(
            error.status, error.code, error.message, retry_after=error.retry_after, details=error.details
        )

    @app.errorhandler(PoolTimeout)
    @app.errorhandler(psycopg.Error)
    def database_unavailable(error: Exception):
        log.error("database error: %s: %s", type(error).__name__, error)
        return error_response(
            503, "database_unavailable", "a database is unavailable; retry shortly", retry_after=DATABASE_RETRY_AFTER
        )

    @app.errorhandler(Exception)
    def internal_error(error: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")


def validation_details(messages) -> dict[str, list[str]]:
    """marshmallow's nested error messages flattened to {field path: [problem, ...]}.

    List items are indexed in brackets and nested fields dotted (`user_ids[1]`, `a.b`);
    each problem is marshmallow's sentence with a lower-case first letter and no final period.
    """
    details: dict[str, list[str]] = {}

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, int):
                    walk(value, f"{path}[{key}]")
                elif key == WHOLE_BODY:
                    walk(value, path)
                else:
                    walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item, path)
        else:
            details.setdefault(path or WHOLE_BODY, []).append(_sentence(str(node)))

    walk(messages, "")
    return details


def validation_message(details: dict[str, list[str]]) -> str:
    """One line naming every problem ("user_ids[1]: not a valid UUID; limit: ..."), the first few of many."""
    problems = [
        problem if path == WHOLE_BODY else f"{path}: {problem}" for path, found in details.items() for problem in found
    ]
    message = "; ".join(problems[:MESSAGE_PROBLEMS])
    if len(problems) > MESSAGE_PROBLEMS:
        message += f"; and {len(problems) - MESSAGE_PROBLEMS} more (see details)"
    return message


def _sentence(text: str) -> str:
    """marshmallow's "Not a valid UUID." as "not a valid UUID" (an acronym such as "UUID is..." keeps its case)."""
    text = text.strip().removesuffix(".")
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    return text


def _snake(name: str) -> str:
    return name.lower().replace(" ", "_").replace("-", "_")
