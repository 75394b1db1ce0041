"""One JSON error shape for everything that can go wrong: {"error": {"code", "message"}}."""

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
        messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        return error_response(400, "invalid_request", _summary(messages), details=messages)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code, message = HTTP_ERRORS.get(error.code or 500, (_snake(error.name), error.name))
        response = error_response(error.code or 500, code, message)
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError):
        return error_response(error.status, error.code, error.message, retry_after=error.retry_after)

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


def _summary(messages: dict) -> str:
    parts = []
    for field, problems in messages.items():
        if isinstance(problems, dict):  # errors of list items or nested fields
            problems = [f"{key}: {value}" for key, value in problems.items()]
        text = " ".join(str(p) for p in problems) if isinstance(problems, list) else str(problems)
        parts.append(text if field == "_schema" else f"{field}: {text}")
    return "; ".join(parts)


def _snake(name: str) -> str:
    return name.lower().replace(" ", "_").replace("-", "_")
