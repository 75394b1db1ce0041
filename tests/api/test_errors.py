"""Every bad request gets a JSON error with a 4xx status, and database failures a 503."""

import json
import re

import pytest
from marshmallow import Schema, ValidationError, fields

from ml_service.app import create_app
from ml_service.errors import MESSAGE_PROBLEMS, validation_details, validation_message
from settings import DatabaseUrls
from tests.conftest import ROOT, settings_for

# A user nobody knows; fixed, not random: test ids name it, and pytest-xdist's workers must collect the same ids.
USER = "5d0c7a4e-2b9f-4c31-8e6a-93f1d2b7c845"


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize(
    "path, field",
    [
        ("/api/recommendations/not-a-uuid", "user_id"),
        (f"/api/recommendations/{USER}?limit=0", "limit"),
        (f"/api/recommendations/{USER}?limit=101", "limit"),
        (f"/api/recommendations/{USER}?limit=abc", "limit"),
        (f"/api/recommendations/{USER}?offset=-1", "offset"),
        (f"/api/recommendations/{USER}?offset=99999999999999999999", "offset"),
        ("/api/recommendations/1'%20OR%20'1'='1", "user_id"),
    ],
)
def test_invalid_parameters_are_400_naming_the_field(client, path, field):
    error = error_of(client.get(path), 400)
    assert error["code"] == "invalid_request" and field in error["details"]
    assert error["message"].startswith(field)


def test_a_validation_error_names_each_problem_by_its_path_without_python_reprs(client):
    body = {"user_ids": [USER, "nope", USER, "1234"], "limit": 0, "colour": "red"}
    error = error_of(client.post("/api/recommendations/batch", json=body), 400)
    assert error["code"] == "invalid_request"
    assert error["details"] == {
        "user_ids[1]": ["not a valid UUID"],
        "user_ids[3]": ["not a valid UUID"],
        "limit": ["must be greater than or equal to 1 and less than or equal to 100"],
        "colour": ["unknown field"],
    }
    assert error["message"] == (
        "user_ids[1]: not a valid UUID; user_ids[3]: not a valid UUID; "
        "limit: must be greater than or equal to 1 and less than or equal to 100; colour: unknown field"
    )


def test_the_integration_guide_shows_the_error_the_service_answers(client):
    guide = (ROOT / "INTEGRATION_GUIDE.md").read_text()
    section = guide[guide.index("## 3. Errors"):]
    match = re.search(r"A batch\s+call with `(\{.*?\})` gets:\s+```json\n(.*?)```", section, re.DOTALL)
    assert match, "INTEGRATION_GUIDE.md section 3 no longer shows a request and its error"
    response = client.post("/api/recommendations/batch", json=json.loads(match[1]))
    assert response.status_code == 400
    assert response.get_json() == json.loads(match[2])


@pytest.mark.parametrize(
    "path, message",
    [
        ("/api/recommendations/not-a-uuid", "user_id: not a valid UUID"),
        (f"/api/recommendations/{USER}?limit=abc&offset=-1", "limit: not a valid integer; offset: must be greater than or equal to 0 and less than or equal to 1000"),
    ],
)
def test_a_parameter_error_reads_as_one_sentence(client, path, message):
    error = error_of(client.get(path), 400)
    assert error["message"] == message
    assert all(isinstance(p, str) and not p.endswith(".") for problems in error["details"].values() for p in problems)


def test_a_body_that_is_not_an_object_is_a_problem_of_the_whole_body(client):
    error = error_of(client.post("/api/recommendations/batch", json=[USER]), 400)
    assert error["details"] == {"_schema": ["invalid input type"]}
    assert error["message"] == "invalid input type"


def test_a_message_spells_out_the_first_problems_and_counts_the_rest(client):
    ids = [f"bad-{i}" for i in range(MESSAGE_PROBLEMS + 5)]
    error = error_of(client.post("/api/recommendations/batch", json={"user_ids": ids}), 400)
    assert list(error["details"]) == [f"user_ids[{i}]" for i in range(len(ids))]
    problems = error["message"].split("; ")
    assert problems[:MESSAGE_PROBLEMS] == [f"user_ids[{i}]: not a valid UUID" for i in range(MESSAGE_PROBLEMS)]
    assert problems[MESSAGE_PROBLEMS:] == ["and 5 more (see details)"]


class _Address(Schema):
    city = fields.String(required=True)
    zip = fields.Integer()


class _Person(Schema):
    name = fields.String(required=True)
    addresses = fields.List(fields.Nested(_Address))
    home = fields.Nested(_Address)


def test_nested_fields_are_dotted_and_list_items_indexed():
    with pytest.raises(ValidationError) as raised:
        _Person().load({"addresses": [{"city": "Lyon"}, {"zip": "x"}], "home": {"city": 3}})
    details = validation_details(raised.value.messages)
    assert details == {
        "name": ["missing data for required field"],
        "addresses[1].city": ["missing data for required field"],
        "addresses[1].zip": ["not a valid integer"],
        "home.city": ["not a valid string"],
    }
    assert validation_message(details) == (
        "name: missing data for required field; addresses[1].city: missing data for required field; "
        "addresses[1].zip: not a valid integer; home.city: not a valid string"
    )


@pytest.mark.parametrize(
    "sentence, expected",
    [("Not a valid UUID.", "not a valid UUID"), ("UUID expected.", "UUID expected"), ("already fine", "already fine")],
)
def test_sentences_lose_their_capital_and_period_but_not_an_acronym(sentence, expected):
    assert validation_details({"f": [sentence]}) == {"f": [expected]}


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "bad_request"),
        ({"data": "user_ids=1", "content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"json": [USER]}, 400, "invalid_request"),
        ({"json": {"user_ids": [USER], "limit": 0}}, 400, "invalid_request"),
        ({"json": {"user_ids": [USER], "extra": 1}}, 400, "invalid_request"),
        ({"json": {"user_ids": ["nope"]}}, 400, "invalid_request"),
        ({"json": {"user_ids": [USER] * 4000}}, 413, "payload_too_large"),
    ],
)
def test_bad_batch_bodies_get_clear_errors(client, kwargs, status, code):
    assert error_of(client.post("/api/recommendations/batch", **kwargs), status)["code"] == code


@pytest.mark.parametrize(
    "path, fields",
    [
        (f"/api/recommendations/{USER}?limit=2&limit=3", {"limit"}),
        (f"/api/recommendations/{USER}?offset=1&offset=1&diversity=0.1&diversity=0.2", {"offset", "diversity"}),
        (f"/api/recommendations/{USER}?because={USER}&because={USER}", {"because"}),
        (f"/api/media/{USER}/similar?user_id={USER}&user_id={USER}", {"user_id"}),
    ],
)
def test_a_single_valued_parameter_given_twice_is_400(client, path, fields):
    error = error_of(client.get(path), 400)
    assert error["code"] == "invalid_request" and set(error["details"]) == fields
    assert all(messages == ["given more than once: give it once"] for messages in error["details"].values())


def test_lists_may_repeat_their_name(client):
    response = client.get(f"/api/recommendations/{USER}?genres=Comedy&genres=Drama&exclude={USER}&exclude={USER}")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/api/recommendations/batch?limit=3&bogus=1"),
        ("GET", "/api/model?verbose=1"),
        ("GET", "/api/experiments?name=x"),
    ],
)
def test_an_api_route_without_query_arguments_refuses_a_query_string(client, method, path):
    response = client.open(path, method=method, json={"user_ids": [USER]} if method == "POST" else None)
    error = error_of(response, 400)
    names = path.split("?")[1].split("&")
    assert error["code"] == "invalid_request"
    assert error["details"] == {name.split("=")[0]: ["unknown field"] for name in names}


def test_probes_and_the_description_take_a_query_string(client):
    assert client.get("/health?probe=1").status_code == 200
    assert client.get("/openapi.json?v=1").status_code == 200


def test_unknown_paths_and_methods_are_json(client):
    assert error_of(client.get("/api/nothing"), 404)["code"] == "not_found"
    response = client.delete(f"/api/recommendations/{USER}")
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_health_touches_no_database():
    app = create_app(settings_for(DatabaseUrls(*(["postgresql://nobody@127.0.0.1:1/none"] * 4))))
    try:
        body = app.test_client().get("/health").get_json()
        assert body["status"] == "healthy" and body["service"] == "ml-service" and body["version"]
    finally:
        app.extensions["ml_service"].close()


def test_unreachable_databases_give_503_without_internals():
    url = "postgresql://nobody@127.0.0.1:1/none"
    app = create_app(settings_for(DatabaseUrls(url, url, url, url)))
    try:
        client = app.test_client()
        for response in (
            client.get(f"/api/recommendations/{USER}"),
            client.post("/api/recommendations/batch", json={"user_ids": [USER]}),
        ):
            error = error_of(response, 503)
            assert error["code"] == "database_unavailable"
            assert "Retry-After" in response.headers
            text = response.get_data(as_text=True)
            assert "127.0.0.1" not in text and "SELECT" not in text and "Traceback" not in text
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["user_db"] == "unavailable"
    finally:
        app.extensions["ml_service"].close()


def test_ready_when_databases_answer_and_a_model_is_loaded(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready" and body["model"]["version"] >= 1 and body["model"]["media"] == 9742
