"""Read access to media and their genres in catalog_db."""

from __future__ import annotations

from typing import Sequence
from uuid import UUID

import numpy as np

from database import binary_copy
from database.deadline import Deadline
from database.pools import Database
from database.records import Media


class CatalogRepository:
    """Media, their genres, and which of them are live."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def media_by_ids(self, media_ids: Sequence[UUID], deadline: Deadline | None = None) -> dict[UUID, Media]:
        """The live (not deleted) media among `media_ids`, with their genres."""
        with self._db.connection(deadline) as conn:
            rows = conn.execute(
                """
                SELECT m.id, m.title, m.media_type, m.release_year, m.cover_url,
                       ARRAY(SELECT g.genre_name FROM tb_media_genre g WHERE g.media_id = m.id ORDER BY g.genre_name)
                  FROM medias m
                 WHERE m.id = ANY(%s) AND m.deleted_at IS NULL
                """,
                (list(media_ids),),
                binary=True,
            ).fetchall()
        return {row[0]: Media(row[0], row[1], row[2], row[3], row[4], tuple(row[5])) for row in rows}

    def newest_media(self, limit: int, deadline: Deadline | None = None) -> list[Media]:
        """The `limit` most recently released live media, newest first, with their genres."""
        with self._db.connection(deadline) as conn:
            rows = conn.execute(
                """
                SELECT m.id, m.title, m.media_type, m.release_year, m.cover_url,
                       coalesce(array_agg(g.genre_name ORDER BY g.genre_name)
                                FILTER (WHERE g.genre_name IS NOT NULL), '{}')
                  FROM (SELECT *
                          FROM medias
                         WHERE deleted_at IS NULL
                      ORDER BY release_year DESC NULLS LAST, id
                         LIMIT %s) AS m
             LEFT JOIN tb_media_genre g ON g.media_id = m.id
              GROUP BY m.id, m.title, m.media_type, m.release_year, m.cover_url
              ORDER BY m.release_year DESC NULLS LAST, m.id
                """,
                (limit,),
            ).fetchall()
        return [Media(row[0], row[1], row[2], row[3], row[4], tuple(row[5])) for row in rows]

    def live_media_genres(self) -> tuple[np.ndarray, dict[bytes, list[str]]]:
        """All live media ids (numpy V16, sorted) and each one's genres; for the refresh job."""
        with self._db.connection() as conn:
            ids = binary_copy.read_all(
                conn, "SELECT id FROM medias WHERE deleted_at IS NULL ORDER BY id", [("id", "uuid")]
            )["id"].copy()
            genres: dict[bytes, list[str]] = {}
            rows = conn.execute(
                """
                SELECT g.media_id, g.genre_name
                  FROM tb_media_genre g
                  JOIN medias m ON m.id = g.media_id
                 WHERE m.deleted_at IS NULL
              ORDER BY g.media_id, g.genre_name
                """
            )
            for media_id, genre in rows:
                genres.setdefault(media_id.bytes, []).append(genre)
        return ids, genres
