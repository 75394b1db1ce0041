"""Read access to media and their genres in catalog_db."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence
from uuid import UUID

import numpy as np

from database.deadline import Deadline
from database.pools import Database
from database.records import Media
from database.uuid_array import UuidArray


class CatalogRepository:
    """Media, their genres, and which of them are live."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def media_by_ids(self, media_ids: Sequence[UUID] | np.ndarray, deadline: Deadline | None = None) -> dict[UUID, Media]:
        """The live (not deleted) media among `media_ids` (UUIDs, or a "V16" array of their bytes), with their genres."""
        ids = UuidArray(media_ids) if isinstance(media_ids, np.ndarray) else UuidArray.of(media_ids)
        with self._db.connection(deadline) as conn:
            rows = conn.execute(
                """
                SELECT m.id, m.title, m.media_type, m.release_year, m.cover_url,
                       ARRAY(SELECT g.genre_name FROM tb_media_genre g WHERE g.media_id = m.id ORDER BY g.genre_name)
                  FROM medias m
                 WHERE m.id = ANY(%s) AND m.deleted_at IS NULL
                """,
                (ids,),
                binary=True,
            ).fetchall()
        return {row[0]: Media(row[0], row[1], row[2], row[3], row[4], tuple(row[5])) for row in rows}

    def live_media_ids(self, deadline: Deadline | None = None) -> np.ndarray:
        """Every live media id (V16, in no order): one packed value, no Python object per media."""
        with self._db.connection(deadline) as conn:
            row = conn.execute(
                "SELECT string_agg(uuid_send(id), ''::bytea) FROM medias WHERE deleted_at IS NULL", binary=True
            ).fetchone()
        return np.frombuffer(row[0] or b"", dtype="V16")

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

    def live_media(self) -> LiveMedia:
        """Every live media, sorted by id, with what the model keeps of it; for the refresh job."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT id, media_type, coalesce(release_year, 0) FROM medias WHERE deleted_at IS NULL ORDER BY id",
                binary=True,
            ).fetchall()
            genres: dict[bytes, list[str]] = {}
            for media_id, genre in conn.execute(
                """
                SELECT g.media_id, g.genre_name
                  FROM tb_media_genre g
                  JOIN medias m ON m.id = g.media_id
                 WHERE m.deleted_at IS NULL
              ORDER BY g.media_id, g.genre_name
                """
            ):
                genres.setdefault(media_id.bytes, []).append(genre)
        return LiveMedia(
            ids=np.frombuffer(b"".join(row[0].bytes for row in rows), dtype="V16").copy(),
            media_types=[row[1] for row in rows],
            release_years=np.array([row[2] for row in rows], dtype=np.int32),
            genres=genres,
        )


@dataclass(frozen=True)
class LiveMedia:
    """The catalog's live media as the refresh job reads them, aligned by position."""

    ids: np.ndarray  # V16, sorted
    media_types: list[str]
    release_years: np.ndarray  # int32, 0 where unknown
    genres: dict[bytes, list[str]]  # by raw id; media without genres are absent
