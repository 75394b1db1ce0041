"""Hostile input: injection strings, huge and malformed bodies, unicode, duplicates, absurd numbers.

Each gets a clear JSON 4xx (or, as a filter value, simply matches nothing), never a 5xx, and
no answer echoes SQL or internals.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import psycopg
import pytest

from ml_service.app import create_app
from services.movielens_import import user_uuid
from tests.conftest import settings_for

KNOWN = str(user_uuid(1))
INJECTIONS = [
    "' OR '1'='1",
    "1; DROP TABLE medias; --",
    "x') UNION SELECT id, title FROM medias --",
    "$$; SELECT pg_sleep(10); $$",
    "\\'; COPY interaction TO PROGRAM 'id'; --",
    "%00' OR 1=1 --",
    "00000000-0000-0000-0000-000000000000'::uuid OR true --",
]
UNICODE = ["ünïcødé", "😀" * 40, "\u202eRTL", "ℌ𝔢𝔩𝔩𝔬", "\u0000", "\ufeff" + KNOWN, "１０x", "٣٣٣٣"]  # Unicode digits parse as numbers (3333: out of range)


@pytest.fixture(scope="module")
def app(movielens_urls):
    app = create_app(settings_for(movielens_urls))
    yield app
    app.extensions["ml_service"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def assert_clean_4xx(response, statuses=(400,)):
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"]
    text = response.get_data(as_text=True)
    for leak in ("psycopg", "Traceback", "postgres", 'File "', "statement", "syntax error"):
        assert leak not in text  # the client's own input may be named back (an unknown field), internals never


@pytest.mark.parametrize("payload", INJECTIONS + UNICODE)
def test_every_parameter_rejects_injection_and_unicode(client, payload):
    quoted = quote(payload, safe="")
    assert_clean_4xx(client.get(f"/api/recommendations/{quoted}"), (400, 404))
    assert_clean_4xx(client.get(f"/api/recommendations/{KNOWN}?limit={quoted}"))
    assert_clean_4xx(client.get(f"/api/recommendations/{KNOWN}?offset={quoted}"))
    assert_clean_4xx(client.post("/api/recommendations/batch", json={"user_ids": [payload]}))
    assert_clean_4xx(client.post("/api/recommendations/batch", json={"user_ids": [KNOWN], "limit": payload}))
    assert_clean_4xx(client.post("/api/recommendations/batch", json={"user_ids": [KNOWN], "offset": payload}))
    assert_clean_4xx(client.post("/api/recommendations/batch", json={"user_ids": [KNOWN], payload: 1}))
    # Unknown query parameters are refused, whatever they hold.
    assert_clean_4xx(client.get(f"/api/recommendations/{KNOWN}?{quoted}={quoted}"))
    # As a filter value the payload is an id, year, genre or type name that nothing has (or a
    # year that digits of another script spell): a clean 400, or a row of what passes.
    for name in ("exclude", "release_year_min", "genres", "media_type"):
        row = client.get(f"/api/recommendations/{KNOWN}?{name}={quoted}")
        if row.status_code == 400:
            assert_clean_4xx(row)
        else:
            assert row.status_code == 200 and row.get_json()["count"] in (0, 10), (name, row.get_json())


def test_injection_left_the_databases_untouched(client, movielens_urls):
    for payload in INJECTIONS:
        client.get(f"/api/recommendations/{quote(payload, safe='')}")
    with psycopg.connect(movielens_urls.catalog) as conn:
        assert conn.execute("SELECT count(*) FROM medias").fetchone()[0] == 9742


@pytest.mark.parametrize(
    "body, status",
    [
        ("{", 400),
        ("null", 400),
        ("[]", 400),
        ('"user_ids"', 400),
        ("1e999", 400),
        ('{"user_ids": null}', 400),
        ('{"user_ids": "' + KNOWN + '"}', 400),
        ('{"user_ids": [1, 2]}', 400),
        ('{"user_ids": [[]]}', 400),
        ('{"user_ids": [{}]}', 400),
        ('{"user_ids": []}', 400),
        ('{"user_ids": ["' + KNOWN + '"], "limit": NaN}', 400),
        ('{"user_ids": ["' + KNOWN + '"], "limit": Infinity}', 400),
        ('{"user_ids": ["' + KNOWN + '"], "limit": true}', 400),
        ('{"user_ids": ["' + KNOWN + '"], "limit": 1.5}', 400),
        ('{"user_ids": ["' + KNOWN + '"], "limit": "10"}', 400),
        ("[" * 30_000 + "]" * 30_000, 400),  # nesting deeper than the JSON parser's recursion limit
        ('{"user_ids": ' + "[" * 5_000 + "]" * 5_000 + "}", 400),
        ("\xff\xfe garbage", 400),
    ],
)
def test_malformed_bodies_are_400(client, body, status):
    response = client.post("/api/recommendations/batch", data=body, content_type="application/json")
    assert_clean_4xx(response, (status,))


def test_huge_bodies_are_413_without_reading_them(client):
    too_big = json.dumps({"user_ids": [KNOWN] * 2000, "pad": "x" * 70_000})
    assert_clean_4xx(client.post("/api/recommendations/batch", data=too_big, content_type="application/json"), (413,))
    ten_mb = b"[" + b"0," * 5_000_000 + b"0]"
    assert_clean_4xx(client.post("/api/recommendations/batch", data=ten_mb, content_type="application/json"), (413,))


def test_huge_headers_and_query_strings_do_not_break_anything(client):
    long_query = "&".join(f"p{i}={'x' * 50}" for i in range(500))
    assert_clean_4xx(client.get(f"/api/recommendations/{KNOWN}?{long_query}"))  # 500 unknown parameters
    exclusions = "&".join(f"exclude={uuid.uuid4()}" for _ in range(200))
    assert client.get(f"/api/recommendations/{KNOWN}?{exclusions}&genres={'x' * 50}").status_code == 200
    assert client.get(f"/api/recommendations/{KNOWN}", headers={"X-Noise": "y" * 60_000}).status_code == 200


def test_duplicated_user_ids_are_answered_once(client):
    upper = KNOWN.upper()
    response = client.post("/api/recommendations/batch", json={"user_ids": [KNOWN, upper, KNOWN] * 16, "limit": 3})
    assert response.status_code == 200
    body = response.get_json()
    assert body["total_users"] == 1 and list(body["results"]) == [KNOWN]
    assert body["results"][KNOWN]["count"] == 3


@pytest.mark.parametrize(
    "query",
    ["limit=-1", "limit=0", "limit=101", "limit=99999999999999999999999999", "limit=-99999999999999999999",
     "offset=-1", "offset=1001", "offset=1e3", "limit=1.5", "limit=0x10", "limit=", "offset=", "limit=%2B%2B1"],
)
def test_absurd_limits_and_offsets_are_400(client, query):
    response = client.get(f"/api/recommendations/{KNOWN}?{query}")
    if query in ("limit=", "offset="):  # empty means "not given": the defaults apply
        assert response.status_code in (200, 400)
        return
    assert_clean_4xx(response)


@pytest.mark.parametrize("limit, offset", [(-5, 0), (0, 0), (10**30, 0), (10, -1), (10, 10**30), (10, 1001)])
def test_absurd_batch_numbers_are_400(client, limit, offset):
    response = client.post("/api/recommendations/batch", json={"user_ids": [KNOWN], "limit": limit, "offset": offset})
    assert_clean_4xx(response)


def test_the_largest_page_is_served(client):
    response = client.get(f"/api/recommendations/{KNOWN}?limit=100&offset=1000")
    assert response.status_code == 200 and response.get_json()["count"] == 100


def test_get_on_the_batch_path_is_405_not_a_bad_user_id(client):
    response = client.get("/api/recommendations/batch")
    assert_clean_4xx(response, (405,))
    assert response.headers["Allow"].replace(" ", "").split(",") == ["POST", "OPTIONS"] or "GET" not in response.headers["Allow"]


def test_an_unknown_user_gets_popular_media(client):
    response = client.get(f"/api/recommendations/{uuid.uuid4()}")
    assert response.status_code == 200
    assert {item["source"] for item in response.get_json()["recommendations"]} == {"popular"}
