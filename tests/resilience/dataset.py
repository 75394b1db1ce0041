"""A small catalog whose recommendations show which signal produced them.

The user likes Comedy (user_db) and watched DRAMA_1 (engagement_db); many others watched
DRAMA_1 and DRAMA_2 together, so DRAMA_2 is DRAMA_1's neighbour (collaborative signal);
COMEDY_1 and COMEDY_2 match the user's genre (content signal); HORROR is the most popular.
"""

from __future__ import annotations

import uuid

from settings import DatabaseUrls
from tests.db.helpers import add_interactions, add_media, add_user

USER = uuid.UUID("00000000-0000-4000-8000-00000000000a")
DRAMA_1, DRAMA_2, COMEDY_1, COMEDY_2, HORROR = (uuid.UUID(f"00000000-0000-4000-8000-0000000001{i:02d}") for i in range(5))
GENRES = {DRAMA_1: "Drama", DRAMA_2: "Drama", COMEDY_1: "Comedy", COMEDY_2: "Comedy", HORROR: "Horror"}


def fill(urls: DatabaseUrls) -> None:
    """Write the data set into empty databases with the schema."""
    add_user(urls, USER, genres=["Comedy"])
    for media_id, genre in GENRES.items():
        add_media(urls, media_id, title=f"{genre} {media_id.int % 256}", genres=[genre])
    rows = [(USER, DRAMA_1, "WATCH", 5.0, 10)]
    for i in range(6):
        other = uuid.UUID(int=0x5000 + i)
        rows += [(other, DRAMA_1, "WATCH", 4.0, i), (other, DRAMA_2, "WATCH", 4.0, i)]
    for i in range(12):
        rows.append((uuid.UUID(int=0x6000 + i), HORROR, "LIKE", None, i))
    rows += [(uuid.UUID(int=0x7000), COMEDY_1, "WATCH", 3.0, 1), (uuid.UUID(int=0x7001), COMEDY_2, "WATCH", 3.0, 2)]
    add_interactions(urls, rows)


def by_media(body: dict) -> dict[uuid.UUID, dict]:
    """The items of one user's recommendations, keyed by media id."""
    return {uuid.UUID(item["media_id"]): item for item in body["recommendations"]}


def assert_full_service(body: dict) -> None:
    """Both signals are there: DRAMA_2 by co-watching, the comedies by genre, DRAMA_1 excluded."""
    items = by_media(body)
    assert body["degraded"] == [], body
    assert items[DRAMA_2]["collaborative_score"] > 0 and items[COMEDY_1]["content_score"] == 1.0, body
    assert DRAMA_1 not in items


def assert_without_user_db(body: dict) -> None:
    """Collaborative + popular: DRAMA_2 first, no genre match anywhere."""
    assert body["degraded"] == ["user_db"], body
    assert uuid.UUID(body["recommendations"][0]["media_id"]) == DRAMA_2
    assert all(item["content_score"] == 0 for item in body["recommendations"])
    assert DRAMA_1 not in by_media(body)


def assert_without_engagement_db(body: dict, also: tuple[str, ...] = ()) -> None:
    """Genre match + popular: the comedies first, no collaborative score."""
    assert body["degraded"] == ["engagement_db", *also], body
    first_two = {uuid.UUID(item["media_id"]) for item in body["recommendations"][:2]}
    assert first_two == {COMEDY_1, COMEDY_2}
    assert all(item["collaborative_score"] == 0 for item in body["recommendations"])
