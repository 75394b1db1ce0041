"""Answers byte for byte as they were: a sample of requests replayed against answers recorded
before the request path was made cheaper (issue 25), on the bundled ml-latest-small.

tests/api/answers.json holds each request with its status, headers and body as the service
answered them then. To record them again, after a change that is meant to change answers:
`ML_RECORD_ANSWERS=1 pytest tests/api/test_answers_unchanged.py` (and say why in the commit).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from services.movielens_import import media_uuid, user_uuid

ANSWERS = Path(__file__).with_name("answers.json")
HEADERS = ("Content-Type", "X-Model-Version", "X-Experiment", "Retry-After")

USERS = [user_uuid(n) for n in (1, 2, 3, 7, 15, 42, 99, 137, 256, 414, 599, 610)]
TOY_STORY, FIFTH_ELEMENT, MATRIX = media_uuid(1), media_uuid(1527), media_uuid(2571)


def requests() -> list[dict]:
    """The sample: every kind of answer the recommendation routes give, errors included."""
    single = [{"method": "GET", "path": f"/api/recommendations/{u}"} for u in USERS]
    first = USERS[0]
    rows = [
        f"/api/recommendations/{first}?limit=3&offset=5",
        f"/api/recommendations/{first}?limit=100",
        f"/api/recommendations/{first}?diversity=0.5",
        f"/api/recommendations/{first}?genres=Comedy&genres=Romance&release_year_min=1990&release_year_max=2009",
        f"/api/recommendations/{first}?media_type=movie&exclude={TOY_STORY}&exclude={MATRIX}",
        f"/api/recommendations/{first}?because={MATRIX}",
        f"/api/recommendations/{USERS[3]}?because={TOY_STORY}",
        "/api/recommendations/00000000-0000-0000-0000-000000000000",
        f"/api/media/{FIFTH_ELEMENT}/similar",
        f"/api/media/{FIFTH_ELEMENT}/similar?user_id={first}&limit=5",
        f"/api/media/{TOY_STORY}/similar?offset=10",
        # errors
        "/api/recommendations/not-a-uuid",
        f"/api/recommendations/{first}?limit=0",
        f"/api/recommendations/{first}?limit=abc&offset=-1",
        f"/api/recommendations/{first}?bogus=1",
        f"/api/recommendations/{first}?because=00000000-0000-0000-0000-000000000001",
        f"/api/recommendations/{first}?diversity=nan",
        "/api/media/00000000-0000-0000-0000-000000000001/similar",
        "/api/recommendations/batch",
    ]
    batches = [
        {"user_ids": [str(u) for u in USERS]},
        {"user_ids": [str(u) for u in USERS[:4]], "limit": 5, "offset": 2, "genres": ["Drama"], "diversity": 0.3},
        {"user_ids": [str(USERS[0]), str(USERS[0]), "00000000-0000-0000-0000-000000000000"],
         "exclude": [str(TOY_STORY)]},
        {"user_ids": []},
        {"user_ids": ["nope"], "limit": "5"},
        {"user_ids": [str(first)], "extra": 1},
    ]
    return [
        *single,
        *({"method": "GET", "path": path} for path in rows),
        *({"method": "POST", "path": "/api/recommendations/batch", "json": body} for body in batches),
        {"method": "POST", "path": "/api/recommendations/batch", "data": "{not json", "content_type": "application/json"},
        {"method": "POST", "path": "/api/recommendations/batch", "data": "user_ids=1", "content_type": "text/plain"},
    ]


def answer(client, request: dict) -> dict:
    kwargs = {key: request[key] for key in ("json", "data", "content_type") if key in request}
    response = client.open(request["path"], method=request["method"], **kwargs)
    return {
        "status": response.status_code,
        "headers": {name: response.headers[name] for name in HEADERS if name in response.headers},
        "body": response.get_data(as_text=True),
    }


def test_the_answers_are_byte_for_byte_those_recorded(client):
    sample = requests()
    if os.environ.get("ML_RECORD_ANSWERS"):
        ANSWERS.write_text(json.dumps([{**r, **answer(client, r)} for r in sample], indent=1) + "\n")
        pytest.skip(f"recorded {len(sample)} answers in {ANSWERS.name}")
    recorded = json.loads(ANSWERS.read_text())
    assert [{k: r[k] for k in r if k not in ("status", "headers", "body")} for r in recorded] == sample
    kinds = {r["status"] for r in recorded}
    assert {200, 400, 404, 415} <= kinds  # the sample covers answers and errors
    for request in recorded:
        got = answer(client, request)
        if os.environ.get("ML_SHOW_DIFF") and got["body"] != request["body"]:
            print("\nGOT ", got["body"][:3000], "\nWANT", request["body"][:3000])
        assert got == {k: request[k] for k in ("status", "headers", "body")}, f"{request['method']} {request['path']}"
