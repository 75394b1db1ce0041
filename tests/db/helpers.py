"""Write rows into test databases."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta

import psycopg

from settings import DatabaseUrls

_interaction_ids = itertools.count(1)
T0 = datetime(2024, 1, 1)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def add_user(urls: DatabaseUrls, user_id: uuid.UUID, genres=()) -> None:
    with psycopg.connect(urls.user) as conn:
        conn.execute("INSERT INTO user_preferences (id, user_id) VALUES (%s, %s)", (uuid.uuid4(), user_id))
        for genre in genres:
            conn.execute("INSERT INTO tb_user_genre (user_id, genre_name) VALUES (%s, %s)", (user_id, genre))


def add_media(
    urls: DatabaseUrls, media_id: uuid.UUID, title="A film", genres=(), deleted=False, year=2000, media_type="movie"
) -> None:
    with psycopg.connect(urls.catalog) as conn:
        conn.execute(
            "INSERT INTO medias (id, title, release_year, media_type, cover_url, deleted_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (media_id, title, year, media_type, f"https://img.example/{media_id}.jpg", T0 if deleted else None),
        )
        for genre in genres:
            conn.execute("INSERT INTO tb_media_genre (media_id, genre_name) VALUES (%s, %s)", (media_id, genre))


def add_interactions(urls: DatabaseUrls, rows) -> None:
    """rows: (user_id, media_id, type, value[, days after T0])."""
    with psycopg.connect(urls.engagement) as conn, conn.cursor() as cur:
        with cur.copy(
            'COPY interaction (id, user_id, media_id, type, interaction_value, "timestamp") FROM STDIN'
        ) as copy:
            for row in rows:
                user_id, media_id, kind, value, *days = row
                copy.write_row((next(_interaction_ids), user_id, media_id, kind, value, T0 + timedelta(days=days[0] if days else 0)))
