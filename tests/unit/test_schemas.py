"""Request validation."""

import uuid

import pytest
from marshmallow import ValidationError

from ml_service.schemas import BatchRequestSchema, SingleRequestSchema

USER = str(uuid.uuid4())


def test_single_request_defaults():
    assert SingleRequestSchema().load({"user_id": USER}) == {"user_id": uuid.UUID(USER), "limit": 10, "offset": 0}


@pytest.mark.parametrize(
    "args",
    [
        {"user_id": "not-a-uuid"},
        {"user_id": USER, "limit": "0"},
        {"user_id": USER, "limit": "101"},
        {"user_id": USER, "limit": "ten"},
        {"user_id": USER, "offset": "-1"},
        {"user_id": USER, "offset": "1001"},
    ],
)
def test_single_request_rejects(args):
    with pytest.raises(ValidationError):
        SingleRequestSchema().load(args)


def test_single_request_ignores_unknown_query_parameters():
    assert SingleRequestSchema().load({"user_id": USER, "_": "123"})["limit"] == 10


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
        [USER],
    ],
)
def test_batch_request_rejects(body):
    with pytest.raises(ValidationError):
        BatchRequestSchema().load(body)
