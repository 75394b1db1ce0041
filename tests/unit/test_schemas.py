"""Request validation."""

import uuid

import pytest
from marshmallow import ValidationError

from ml_service.schemas import BatchRequestSchema, SingleRequestSchema, UserPathSchema
from services.filters import MediaFilter

USER = str(uuid.uuid4())


def test_single_request_defaults():
    assert UserPathSchema().load({"user_id": USER}) == {"user_id": uuid.UUID(USER)}
    assert SingleRequestSchema().load({}) == {
        "limit": 10, "offset": 0, "filters": MediaFilter(), "exclude": []}  # diversity: the variant's, else 0


def test_a_row_loads_into_a_filter_and_exclusions():
    media = str(uuid.uuid4())
    args = SingleRequestSchema().load(
        {"media_type": ["series", "movie"], "genres": ["Comedy"], "release_year_min": "1990",
         "release_year_max": "1999", "exclude": [media]}
    )
    assert args["filters"] == MediaFilter(frozenset({"series", "movie"}), frozenset({"Comedy"}), 1990, 1999)
    assert args["exclude"] == [uuid.UUID(media)] and args["limit"] == 10
    batch = BatchRequestSchema().load({"user_ids": [USER], "genres": ["Drama"], "exclude": [media]})
    assert batch["filters"] == MediaFilter(genres=frozenset({"Drama"})) and batch["exclude"] == [uuid.UUID(media)]


@pytest.mark.parametrize(
    "args",
    [
        {"user_id": "not-a-uuid"},
        {"user_id": USER, "limit": "0"},
        {"user_id": USER, "limit": "101"},
        {"user_id": USER, "limit": "ten"},
        {"user_id": USER, "offset": "-1"},
        {"user_id": USER, "offset": "1001"},
        {"user_id": USER, "_": "123"},  # unknown parameters are refused, not ignored
        {"user_id": USER, "exclude": [str(uuid.uuid4()) for _ in range(201)]},
        {"user_id": USER, "exclude": ["not-a-uuid"]},
        {"user_id": USER, "genres": []},
        {"user_id": USER, "media_type": [""]},
    ],
)
def test_single_request_rejects(args):
    query = {name: value for name, value in args.items() if name != "user_id"}
    with pytest.raises(ValidationError):
        UserPathSchema().load({"user_id": args["user_id"]})
        SingleRequestSchema().load(query)


def test_batch_accepts_fifty_users_and_refuses_fifty_one():
    ids = [str(uuid.uuid4()) for _ in range(51)]
    assert len(BatchRequestSchema().load({"user_ids": ids[:50]})["user_ids"]) == 50
    with pytest.raises(ValidationError, match="between 1 and 50"):
        BatchRequestSchema().load({"user_ids": ids})


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_ids": []},
        {"user_ids": "abc"},
        {"user_ids": [USER], "limit": "10"},
        {"user_ids": [USER], "userIds": [USER]},
        {"user_ids": [123]},
        {"user_ids": [USER], "release_year_min": "1990"},
        {"user_ids": [USER], "exclude": "abc"},
        [USER],
    ],
)
def test_batch_request_rejects(body):
    with pytest.raises(ValidationError):
        BatchRequestSchema().load(body)
