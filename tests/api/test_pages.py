"""More like this, because you watched and diversity over HTTP (Flask client) on MovieLens."""

from uuid import UUID

import numpy as np

from services import scoring
from services.movielens_import import media_uuid, user_uuid
from tests.api.conftest import check_documented

USER = user_uuid(1)
TOY_STORY = media_uuid(1)
SIMILAR = "/api/media/{media_id}/similar"


def test_more_like_this_answers_with_the_media_and_its_neighbours(client, spec):
    response = client.get(f"/api/media/{TOY_STORY}/similar?limit=12")
    assert response.status_code == 200
    check_documented(spec, "get", SIMILAR, response)
    body = response.get_json()
    assert body["media"]["title"].startswith("Toy Story") and body["user_id"] is None
    assert body["count"] == 12 and str(TOY_STORY) not in [i["media_id"] for i in body["similar"]]
    assert response.headers["X-Model-Version"] == str(body["model_version"])
    first = body["similar"][0]
    assert first["source"] == "hybrid" and first["because"] == [{"media_id": str(TOY_STORY), "title": body["media"]["title"]}]
    page_two = client.get(f"/api/media/{TOY_STORY}/similar?limit=6&offset=6").get_json()
    assert page_two["similar"] == body["similar"][6:12]


def most_similar(client, media_id, count: int) -> set[str]:
    """The `count` media most like `media_id` in the serving model (scoring.similar_media)."""
    model = client.application.extensions["ml_service"].models.current()
    seed, _ = scoring.media_indices(model, np.frombuffer(media_id.bytes, dtype="V16"))
    idx, _ = scoring.similar_media(model, int(seed[0]), scoring.seed_genres(model, int(seed[0])), count, np.zeros(0))
    return {str(UUID(bytes=raw)) for raw in model.media_ids[idx].tolist()}


def test_more_like_this_is_ordered_by_score_from_the_100_most_similar(client):
    body = client.get(f"/api/media/{TOY_STORY}/similar?limit=100").get_json()
    scores = [i["score"] for i in body["similar"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 50
    assert {i["media_id"] for i in body["similar"]} == most_similar(client, TOY_STORY, 100)
    pages = [client.get(f"/api/media/{TOY_STORY}/similar?limit=10&offset={o}").get_json()["similar"] for o in (0, 10)]
    assert pages[0] + pages[1] == body["similar"][:20]  # pages continue one another
    # A user with no history and no genres (unknown to the service) gets the same order, not scores of 0.
    unknown = client.get(f"/api/media/{TOY_STORY}/similar?limit=100&user_id={user_uuid(10**6)}").get_json()
    assert unknown["similar"] == body["similar"] and unknown["user_id"] == str(user_uuid(10**6))


def test_more_like_this_for_a_user_leaves_out_what_they_saw(client, spec):
    # The user's candidates are the most similar media they have not interacted with: within the
    # first 200 similar media (the user's history is far shorter than 100 of them).
    similar = most_similar(client, TOY_STORY, 200)
    response = client.get(f"/api/media/{TOY_STORY}/similar?limit=10&user_id={USER}")
    assert response.status_code == 200
    check_documented(spec, "get", SIMILAR, response)
    body = response.get_json()
    assert body["user_id"] == str(USER) and body["count"] == 10
    assert {i["media_id"] for i in body["similar"]} <= similar  # drawn from the same similar media
    scores = [i["score"] for i in body["similar"]]
    assert scores == sorted(scores, reverse=True)


def test_more_like_this_refuses_unknown_media_and_parameters(client, spec):
    for url, status in [
        (f"/api/media/{media_uuid(10**7)}/similar", 404),
        ("/api/media/not-a-uuid/similar", 400),
        (f"/api/media/{TOY_STORY}/similar?limit=0", 400),
        (f"/api/media/{TOY_STORY}/similar?user=1", 400),
        (f"/api/media/{TOY_STORY}/similar?user_id=nope", 400),
    ]:
        response = client.get(url)
        assert response.status_code == status, url
        check_documented(spec, "get", SIMILAR, response)
    assert client.get(f"/api/media/{media_uuid(10**7)}/similar").get_json()["error"]["code"] == "not_found"


def test_items_say_because_of_which_of_the_users_media_and_a_because_row_follows(client, spec):
    body = client.get(f"/api/recommendations/{USER}?limit=20").get_json()
    hybrid = [i for i in body["recommendations"] if i["source"] == "hybrid"]
    assert hybrid and all(1 <= len(i["because"]) <= 2 for i in hybrid if i["collaborative_score"] > 0)
    assert all(i["because"] == [] for i in body["recommendations"] if i["source"] == "popular")
    seed = hybrid[0]["because"][0]
    response = client.get(f"/api/recommendations/{USER}?because={seed['media_id']}&limit=10")
    assert response.status_code == 200
    check_documented(spec, "get", "/api/recommendations/{user_id}", response)
    row = response.get_json()
    assert row["count"] == 10 and row["because"] == seed
    assert all(i["because"] == [seed] for i in row["recommendations"] if i["source"] == "hybrid")
    scores = [i["score"] for i in row["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    refused = client.get(f"/api/recommendations/{USER}?because={media_uuid(10**7)}")
    assert refused.status_code == 404 and refused.get_json()["error"]["code"] == "not_found"
    assert refused.get_json()["error"]["details"] == {"because": ["not a media this user liked or watched"]}
    check_documented(spec, "get", "/api/recommendations/{user_id}", refused)


def test_diversity_is_a_share_between_0_and_1(client, spec):
    plain = client.get(f"/api/recommendations/{USER}").get_json()
    assert client.get(f"/api/recommendations/{USER}?diversity=0").get_json() == plain
    varied = client.get(f"/api/recommendations/{USER}?diversity=1").get_json()
    assert varied["count"] == 10 and varied["recommendations"][0] == plain["recommendations"][0]
    batch = client.post("/api/recommendations/batch", json={"user_ids": [str(USER)], "diversity": 1})
    assert batch.status_code == 200 and batch.get_json()["results"][str(USER)] == varied
    for bad in ("2", "-0.1", "nan", "x"):
        response = client.get(f"/api/recommendations/{USER}?diversity={bad}")
        assert response.status_code == 400, bad
        check_documented(spec, "get", "/api/recommendations/{user_id}", response)
