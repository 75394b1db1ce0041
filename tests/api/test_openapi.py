"""/openapi.json is a valid OpenAPI 3 document that lists every route and describes real responses."""

import re

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from ml_service.app import create_app
from services.movielens_import import user_uuid
from tests.api.conftest import check_documented
from tests.conftest import settings_for

KNOWN = str(user_uuid(1))
UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def no_model_client(pg_server, schema_template):
    """An app over empty databases: no model has been published, so recommendations are degraded."""
    prefix = "openapi_nomodel"
    urls = pg_server.create_urls(prefix, schema_template)
    app = create_app(settings_for(urls))
    yield app.test_client()
    app.extensions["ml_service"].close()
    pg_server.drop_urls(prefix)


def test_the_document_is_valid_openapi_3(spec):
    validate(spec)
    assert spec["openapi"].startswith("3.")


def test_every_route_of_the_app_is_described_with_its_methods(client, spec):
    routes = {}
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint.rsplit(".", 1)[-1] == "static":  # files: the docs page's scripts and styles
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)  # <converter:name> -> {name}
        routes[path] = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
    described = {path: set(item) - {"parameters"} for path, item in spec["paths"].items()}  # item: operations by method
    assert described == routes


def test_parameters_carry_the_limits_the_service_enforces(spec):
    parameters = {p["name"]: p for p in spec["paths"]["/api/recommendations/{user_id}"]["get"]["parameters"] if "name" in p}
    assert parameters["user_id"]["in"] == "path" and parameters["user_id"]["required"] is True
    assert parameters["user_id"]["schema"] == {"type": "string", "format": "uuid"}
    assert (parameters["limit"]["schema"]["minimum"], parameters["limit"]["schema"]["maximum"]) == (1, 100)
    assert (parameters["offset"]["schema"]["minimum"], parameters["offset"]["schema"]["maximum"]) == (0, 1000)
    batch = spec["components"]["schemas"]["BatchRequest"]
    assert batch["required"] == ["user_ids"] and batch["additionalProperties"] is False
    assert (batch["properties"]["user_ids"]["minItems"], batch["properties"]["user_ids"]["maxItems"]) == (1, 50)


@pytest.mark.parametrize(
    "method, path, url, body, expected",
    [
        ("get", "/health", "/health", None, 200),
        ("get", "/health/ready", "/health/ready", None, 200),
        ("get", "/openapi.json", "/openapi.json", None, 200),
        ("get", "/api/recommendations/{user_id}", f"/api/recommendations/{KNOWN}?limit=5&offset=2", None, 200),
        ("get", "/api/recommendations/{user_id}", f"/api/recommendations/{UNKNOWN}", None, 200),
        ("get", "/api/recommendations/{user_id}", "/api/recommendations/not-a-uuid", None, 400),
        ("get", "/api/recommendations/{user_id}", f"/api/recommendations/{KNOWN}?limit=101", None, 400),
        ("get", "/api/recommendations/{user_id}", f"/api/recommendations/{KNOWN}?offset=-1", None, 400),
        ("post", "/api/recommendations/batch", "/api/recommendations/batch", {"user_ids": [KNOWN, UNKNOWN]}, 200),
        ("post", "/api/recommendations/batch", "/api/recommendations/batch", {"user_ids": []}, 400),
        ("post", "/api/recommendations/batch", "/api/recommendations/batch", {"user_ids": [KNOWN], "x": 1}, 400),
    ],
)
def test_responses_match_the_description(client, spec, method, path, url, body, expected):
    response = client.open(url, method=method.upper(), json=body)
    assert response.status_code == expected
    check_documented(spec, method, path, response)


def test_body_errors_match_the_description(client, spec):
    path = "/api/recommendations/batch"
    cases = [
        (client.post(path, data="{not json", content_type="application/json"), 400),
        (client.post(path, data="user_ids=1", content_type="text/plain"), 415),
        (client.post(path, data="[" + "1," * 40_000 + "1]", content_type="application/json"), 413),
    ]
    for response, expected in cases:
        assert response.status_code == expected
        check_documented(spec, "post", path, response)


def test_unknown_paths_and_methods_get_the_documented_error_shape(client, spec):
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404
    OAS30Validator({"$ref": "#/components/schemas/Error", "components": spec["components"]}).validate(missing.get_json())
    wrong_method = client.delete("/api/recommendations/batch")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    OAS30Validator({"$ref": "#/components/schemas/Error", "components": spec["components"]}).validate(
        wrong_method.get_json()
    )


def test_answers_without_a_model_are_degraded_and_documented(no_model_client, spec):
    single = no_model_client.get(f"/api/recommendations/{KNOWN}")
    batch = no_model_client.post("/api/recommendations/batch", json={"user_ids": [KNOWN]})
    ready = no_model_client.get("/health/ready")
    for response, method, path in [
        (single, "get", "/api/recommendations/{user_id}"),
        (batch, "post", "/api/recommendations/batch"),
        (ready, "get", "/health/ready"),
    ]:
        assert response.status_code == 200
        check_documented(spec, method, path, response)
        assert "model" in response.get_json()["degraded"]
        assert "X-Model-Version" not in response.headers
    assert single.get_json()["model_version"] is None and batch.get_json()["model_version"] is None
    model = no_model_client.get("/api/model")
    assert model.status_code == 503 and model.get_json()["error"]["code"] == "model_unavailable"
    check_documented(spec, "get", "/api/model", model)


def test_unavailable_catalog_answers_the_documented_503(spec):
    from settings import DatabaseUrls

    closed = "postgresql://nobody@127.0.0.1:1/none"
    app = create_app(settings_for(DatabaseUrls(closed, closed, closed, closed)))
    try:
        client = app.test_client()
        single = client.get(f"/api/recommendations/{KNOWN}")
        ready = client.get("/health/ready")
        for response, path in [(single, "/api/recommendations/{user_id}"), (ready, "/health/ready")]:
            assert response.status_code == 503
            check_documented(spec, "get", path, response)
        assert single.get_json()["error"]["code"] == "database_unavailable" and single.headers["Retry-After"]
    finally:
        app.extensions["ml_service"].close()


def test_the_declared_security_is_what_an_app_with_keys_enforces(spec):
    from settings import DatabaseUrls

    closed = "postgresql://nobody@127.0.0.1:1/none"  # the key is checked before any database is
    app = create_app(settings_for(DatabaseUrls(closed, closed, closed, closed), api_keys="api-key", metrics_api_key="metrics-key"))
    keys = {"ApiKey": "api-key", "MetricsKey": "metrics-key"}
    schemes = spec["components"]["securitySchemes"]
    assert set(schemes) == set(keys)
    try:
        client = app.test_client()
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                call = dict(path=path.replace("{user_id}", UNKNOWN), method=method.upper())
                if "requestBody" in operation:
                    call["json"] = {"user_ids": [UNKNOWN]}
                if "security" not in operation:
                    assert client.open(**call).status_code != 401, (method, path)
                    continue
                ((requirement,),) = operation["security"]  # [{scheme: []}]: one scheme, no alternative
                header = schemes[requirement]["name"]
                assert client.open(**call).status_code == 401, (method, path)
                assert client.open(**call, headers={header: "wrong"}).status_code == 401, (method, path)
                assert client.open(**call, headers={header: keys[requirement]}).status_code != 401, (method, path)
    finally:
        app.extensions["ml_service"].close()
