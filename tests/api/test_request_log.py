"""Each request gets an id (the client's X-Request-ID when valid), echoed back and written on one JSON access line."""

import json
import logging
import re

import pytest

from ml_service.request_log import JsonFormatter, configure_logging
from services.movielens_import import user_uuid


@pytest.fixture
def access_lines(caplog):
    """The access log records of the test, formatted as the service writes them."""
    caplog.set_level(logging.INFO, logger="ml_service.access")
    formatter = JsonFormatter()
    return lambda: [json.loads(formatter.format(r)) for r in caplog.records if r.name == "ml_service.access"]


def test_a_valid_request_id_is_echoed_and_logged(client, access_lines):
    response = client.get(f"/api/recommendations/{user_uuid(1)}?limit=3", headers={"X-Request-ID": "order-42.a_b"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "order-42.a_b"
    [line] = access_lines()
    assert line["message"] == "request" and line["level"] == "INFO"
    assert line["method"] == "GET" and line["path"] == f"/api/recommendations/{user_uuid(1)}"
    assert line["status"] == 200 and line["request_id"] == "order-42.a_b"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 129, "quote\"inject"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_generated_one(client, access_lines, given):
    headers = {"X-Request-ID": given} if given is not None else {}
    response = client.get("/health", headers=headers)
    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert access_lines()[-1]["request_id"] == generated


def test_errors_get_an_id_and_a_line_too(client, access_lines):
    response = client.post("/api/recommendations/batch", data="nope", content_type="text/plain")
    assert response.status_code == 415 and response.headers["X-Request-ID"]
    missing = client.get("/no/such/path")
    assert missing.status_code == 404
    assert [(line["method"], line["status"]) for line in access_lines()] == [("POST", 415), ("GET", 404)]


def test_log_level_comes_from_the_setting(client, capfd):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("WARNING")
        client.get("/health")
        logging.getLogger("ml_service.test").warning("kept", extra={"detail": 7})
        lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert [(line["message"], line["level"], line["detail"]) for line in lines] == [("kept", "WARNING", 7)]
