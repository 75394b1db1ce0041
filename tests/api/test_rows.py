"""Filtered rows and exclusions over HTTP (Flask client) on the imported MovieLens data."""

from services.movielens_import import user_uuid

USER = user_uuid(1)


def ids(body: dict) -> list[str]:
    return [item["media_id"] for item in body["recommendations"]]


def test_a_filtered_row_is_full_and_every_item_passes(client):
    response = client.get(
        f"/api/recommendations/{USER}?genres=Comedy&genres=Romance&release_year_min=1990&release_year_max=1999&limit=20"
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["count"] == 20 and body["degraded"] == []
    for item in body["recommendations"]:
        assert {"Comedy", "Romance"} & set(item["genres"]) and 1990 <= item["release_year"] <= 1999
    sources = [item["source"] for item in body["recommendations"]]
    assert sources == sorted(sources, key=lambda s: s != "hybrid") and sources[0] == "hybrid"  # hybrid first
    unfiltered = client.get(f"/api/recommendations/{USER}?limit=100").get_json()["recommendations"]
    passing = [i["media_id"] for i in unfiltered if {"Comedy", "Romance"} & set(i["genres"])
               and 1990 <= i["release_year"] <= 1999]
    assert ids(body)[: len(passing)] == passing[:20]  # the same order as the full row, restricted


def test_genres_and_types_match_whatever_their_case(client):
    exact = client.get(f"/api/recommendations/{USER}?genres=Comedy&media_type=movie&limit=20").get_json()
    assert exact["count"] == 20
    for query in ("genres=comedy&media_type=MOVIE", "genres=COMEDY&media_type=Movie"):
        assert client.get(f"/api/recommendations/{USER}?{query}&limit=20").get_json() == exact
    batch = client.post("/api/recommendations/batch", json={"user_ids": [str(USER)], "limit": 20, "genres": ["cOmEdY"]})
    assert ids(batch.get_json()["results"][str(USER)]) == ids(exact)


def test_the_genres_the_filter_takes_are_listed_with_their_media(client, spec):
    from tests.api.conftest import check_documented

    response = client.get("/api/genres")
    assert response.status_code == 200
    check_documented(spec, "get", "/api/genres", response)
    body = response.get_json()
    names = [genre["name"] for genre in body["genres"]]
    assert names == sorted(names) and {"Comedy", "Drama", "Film-Noir"} <= set(names)
    assert response.headers["X-Model-Version"] == str(body["model_version"])
    counts = {genre["name"]: genre["media"] for genre in body["genres"]}
    assert counts["Drama"] > counts["Film-Noir"] > 0  # ml-latest-small: 4,361 dramas, 87 films noirs
    row = client.get(f"/api/recommendations/{USER}?genres=film-noir&limit=100").get_json()
    assert 0 < row["count"] <= counts["Film-Noir"] and all("Film-Noir" in i["genres"] for i in row["recommendations"])


def test_a_filter_nothing_passes_gives_an_empty_row(client):
    body = client.get(f"/api/recommendations/{USER}?media_type=series").get_json()
    assert body["count"] == 0 and body["recommendations"] == []
    years = client.get(f"/api/recommendations/{USER}?release_year_min=2000&release_year_max=1990").get_json()
    assert years["count"] == 0
    movies = client.get(f"/api/recommendations/{USER}?media_type=series&media_type=movie").get_json()
    assert movies["count"] == 10


def test_excluded_media_never_appear_and_the_row_stays_full(client):
    first = ids(client.get(f"/api/recommendations/{USER}?limit=10").get_json())
    query = "&".join(f"exclude={media}" for media in first)
    without = client.get(f"/api/recommendations/{USER}?limit=10&{query}").get_json()
    assert without["count"] == 10 and not set(ids(without)) & set(first)
    assert ids(without) == ids(client.get(f"/api/recommendations/{USER}?limit=10&offset=10").get_json())


def test_a_batch_applies_its_filters_and_exclusions_to_every_user(client):
    users = [str(user_uuid(n)) for n in (1, 2, 3)]
    plain = client.post("/api/recommendations/batch", json={"user_ids": users, "limit": 5}).get_json()
    excluded = [ids(page)[0] for page in plain["results"].values()]
    body = client.post(
        "/api/recommendations/batch",
        json={"user_ids": users, "limit": 5, "genres": ["Drama"], "release_year_max": 1980, "exclude": excluded},
    ).get_json()
    for page in body["results"].values():
        assert page["count"] == 5 and not set(ids(page)) & set(excluded)
        assert all("Drama" in item["genres"] and item["release_year"] <= 1980 for item in page["recommendations"])


def test_unknown_or_invalid_row_parameters_are_400(client):
    unknown = client.get(f"/api/recommendations/{USER}?genre=Comedy")
    assert unknown.status_code == 400 and "genre" in unknown.get_json()["error"]["details"]
    assert client.get(f"/api/recommendations/{USER}?release_year_min=year").status_code == 400
    too_many = "&".join(f"exclude={user_uuid(n)}" for n in range(201))
    assert client.get(f"/api/recommendations/{USER}?{too_many}").status_code == 400
