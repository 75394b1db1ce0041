"""Read access to users and their preferred genres in user_db."""

from __future__ import annotations

from typing import Sequence
from uuid import UUID

from psycopg_pool import ConnectionPool

from database.records import UserProfile


class UserRepository:
    """Users and their genre preferences."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def profiles_by_ids(self, user_ids: Sequence[UUID]) -> dict[UUID, UserProfile]:
        """A profile for every requested id; an id user_db does not know gets exists=False."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                """
                SELECT u.user_id,
                       EXISTS (SELECT FROM user_preferences p WHERE p.user_id = u.user_id),
                       ARRAY(SELECT g.genre_name FROM tb_user_genre g WHERE g.user_id = u.user_id)
                  FROM unnest(%s::uuid[]) AS u(user_id)
                """,
                (list(user_ids),),
                binary=True,
            ).fetchall()
        return {user_id: UserProfile(user_id, exists, frozenset(genres)) for user_id, exists, genres in rows}
