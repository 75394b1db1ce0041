"""Structured logs: every record as one JSON line, one access line per request, a request id on both.

The request id is the client's X-Request-ID when it is a plain token (1-128 of A-Za-z0-9._-),
otherwise a generated one; it is echoed back in the response and written on every log line
of the request, so a client can quote it when reporting a problem.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone

from flask import Flask, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
ENVIRON_KEY = "ml_service.request_id"
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
access_log = logging.getLogger("ml_service.access")

# Attributes every LogRecord has; anything else was passed with `extra=` and is written out.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if has_request_context() and "request_id" not in record.__dict__:
            entry["request_id"] = request.environ.get(ENVIRON_KEY)
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def current_request_id() -> str:
    """The id of the request being answered (a new one outside a request: offline callers)."""
    if has_request_context():
        return request.environ.get(ENVIRON_KEY) or uuid.uuid4().hex
    return uuid.uuid4().hex


def configure_logging(level: str) -> None:
    """Send every log record to stderr as a JSON line, at `level` (LOG_LEVEL)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RequestLogMiddleware:
    """WSGI middleware: assigns the request id, echoes it, logs one access line per request.

    It wraps the whole Flask app, so the line is written for every response, including errors
    answered before any view or hook runs. It is the only line per request: gunicorn.conf.py
    turns Gunicorn's access log (which has no request id) off.
    """

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex
        environ[ENVIRON_KEY] = request_id
        status = [0]

        def start(status_line, headers, exc_info=None):
            status[0] = int(status_line.split(" ", 1)[0])
            headers = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER.lower()]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            if access_log.isEnabledFor(logging.INFO):  # LOG_LEVEL=WARNING: no line, nothing built for it
                access_log.info(
                    "request",
                    extra={
                        "method": environ.get("REQUEST_METHOD"),
                        "path": environ.get("PATH_INFO"),
                        "status": status[0] or 500,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "request_id": request_id,
                        "remote_addr": environ.get("REMOTE_ADDR"),
                    },
                )


def register_request_logging(app: Flask) -> None:
    """Wrap `app` so that each request gets an id and an access log line."""
    app.wsgi_app = RequestLogMiddleware(app.wsgi_app)

