"""Schemathesis against our own /openapi.json: generated requests, valid and not, to every operation.

No answer may be a 5xx, and every answer must match its documented status, headers and schema;
schemathesis' other default checks run too (schema-violating input must be rejected, valid
input accepted, undeclared methods 405, Allow exact, declared authentication enforced), with
one exception by design: X-Request-ID: an invalid value is replaced by a generated id rather
than rejected (ml_service/request_log.py), so the fuzzed header is set to a valid one.
The app requires API keys, as a deployed one does: every call sends the key, and schemathesis
checks that the operations declaring it refuse a call without it or with a wrong one.
The number of examples per operation is bounded (MAX_EXAMPLES) to keep the run short.
"""

from __future__ import annotations

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from ml_service.app import create_app
from ml_service.openapi import build_spec
from tests.conftest import settings_for

MAX_EXAMPLES = 40
KEY = "fuzzing-key"  # API_KEYS and METRICS_API_KEY
HEADERS = {"X-API-Key": KEY}
CASES: collections.Counter = collections.Counter()


class FuzzedApp:
    """The WSGI app schemathesis sends to, its own calls included: the fixture's app, which needs
    the databases, while the schema is loaded at import (parametrize needs the operations)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


FUZZED = FuzzedApp()


@pytest.fixture(scope="module")
def fuzzed_app(movielens_urls):
    app = create_app(settings_for(movielens_urls, api_keys=KEY, metrics_api_key=KEY))
    assert app.test_client().get("/openapi.json").get_json() == SPEC  # the document the app serves
    FUZZED.app = app
    yield app
    FUZZED.app = None
    app.extensions["ml_service"].close()
    print(f"\nschemathesis: {sum(CASES.values())} cases, by status {dict(sorted(CASES.items()))}")


# Loaded at import; the fixture above checks that the app serves exactly this document.
SPEC = build_spec()
schema = schemathesis.openapi.from_dict(SPEC)
schema.app = FUZZED  # as schemathesis.openapi.from_wsgi does


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_answer_matches_the_schema(case, fuzzed_app):
    if case.headers and "X-Request-ID" in case.headers:
        case.headers["X-Request-ID"] = "schemathesis"
    response = case.call(headers=HEADERS)
    CASES[response.status_code] += 1
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    case.validate_response(response, headers=HEADERS)
