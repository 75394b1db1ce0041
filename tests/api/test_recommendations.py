"""GET /api/recommendations/<user_id> and POST /api/recommendations/batch over real databases."""

import uuid

import psycopg
import pytest

from ml_service.schemas import BatchResponseSchema, RecommendationsSchema
from services.movielens_import import media_uuid, user_uuid

ITEM_FIELDS = {
    "media_id", "title", "media_type", "release_year", "cover_url", "genres",
    "score", "content_score", "collaborative_score", "source", "because",
}


def test_a_user_with_history_gets_mostly_hybrid_items_they_have_not_seen(client, movielens_urls):
    user = user_uuid(1)
    response = client.get(f"/api/recommendations/{user}")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["user_id"], body["count"], body["limit"], body["offset"]) == (str(user), 10, 10, 0)
    items = body["recommendations"]
    assert all(set(item) == ITEM_FIELDS for item in items)
    assert sum(item["source"] == "hybrid" for item in items) >= 8
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
    with psycopg.connect(movielens_urls.engagement) as conn:
        seen = {str(r[0]) for r in conn.execute("SELECT media_id FROM interaction WHERE user_id = %s", (user,))}
    assert not seen & {item["media_id"] for item in items}
    served = client.get("/api/model").get_json()["settings"]  # the blend this version is served with
    for item in items:
        blend = served["content_weight"] * item["content_score"] + served["collaborative_weight"] * item["collaborative_score"]
        assert item["score"] == pytest.approx(blend, abs=1e-5)


def test_responses_are_what_the_documented_schemas_dump(client):
    """The views build their JSON directly (for speed); it must equal the schemas' dump."""
    users = [user_uuid(1), user_uuid(2), uuid.uuid4()]
    results = client.application.extensions["ml_service"].recommender.recommend_many(users, limit=5, offset=1)
    single = client.get(f"/api/recommendations/{users[0]}?limit=5&offset=1").get_json()
    assert single == RecommendationsSchema().dump(results[users[0]])
    batch = client.post("/api/recommendations/batch", json={"user_ids": [str(u) for u in users], "limit": 5, "offset": 1})
    expected = {
        "results": {str(u): page for u, page in results.items()}, "total_users": 3, "degraded": [], "model_version": 1
    }
    assert batch.get_json() == BatchResponseSchema().dump(expected)
    # MovieLens has no cover images: the pages also carry the null path.
    assert all(item["cover_url"] is None for item in single["recommendations"]) and single["count"] == 5


def test_an_unknown_user_gets_popular_media(client):
    body = client.get(f"/api/recommendations/{uuid.uuid4()}?limit=20").get_json()
    assert body["count"] == 20
    assert {item["source"] for item in body["recommendations"]} == {"popular"}
    # ml-latest-small's most-rated films lead the popular list.
    titles = [item["title"] for item in body["recommendations"]]
    assert "Forrest Gump" in titles and "Shawshank Redemption, The" in titles


def test_pages_follow_each_other(client):
    user = user_uuid(7)
    whole = client.get(f"/api/recommendations/{user}?limit=20").get_json()["recommendations"]
    second = client.get(f"/api/recommendations/{user}?limit=10&offset=10").get_json()
    assert second["offset"] == 10
    assert [i["media_id"] for i in second["recommendations"]] == [i["media_id"] for i in whole[10:]]


def test_items_describe_the_media(client):
    body = client.get(f"/api/recommendations/{uuid.uuid4()}?limit=100").get_json()
    assert body["count"] == 100
    toy_story = str(media_uuid(1))
    item = next(i for i in body["recommendations"] if i["media_id"] == toy_story)
    assert (item["title"], item["release_year"], item["media_type"]) == ("Toy Story", 1995, "movie")
    assert item["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]


def test_a_batch_of_fifty_users_returns_each_of_them(client):
    users = [str(user_uuid(i)) for i in range(1, 50)] + [str(uuid.uuid4())]
    response = client.post("/api/recommendations/batch", json={"user_ids": users, "limit": 5})
    assert response.status_code == 200
    body = response.get_json()
    assert body["total_users"] == 50 and set(body["results"]) == set(users)
    for user in users:
        result = body["results"][user]
        assert result["user_id"] == user and result["count"] == 5
    single = client.get(f"/api/recommendations/{users[0]}?limit=5").get_json()
    assert body["results"][users[0]] == single


def test_a_batch_with_duplicated_ids_answers_each_user_once(client):
    user = str(user_uuid(3))
    body = client.post("/api/recommendations/batch", json={"user_ids": [user, user]}).get_json()
    assert body["total_users"] == 1 and list(body["results"]) == [user]


def test_a_batch_of_fifty_one_users_is_refused(client):
    users = [str(uuid.uuid4()) for _ in range(51)]
    response = client.post("/api/recommendations/batch", json={"user_ids": users})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"
    assert "between 1 and 50" in response.get_json()["error"]["message"]
