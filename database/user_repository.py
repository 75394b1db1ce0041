"""Read access to users and their preferred genres in user_db."""

from __future__ import annotations

from typing import Sequence
from uuid import UUID

from database.deadline import Deadline
from database.pools import Database
from database.records import UserProfile
from database.uuid_array import UuidArray


class UserRepository:
    """Users and their genre preferences."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def profiles_by_ids(self, user_ids: Sequence[UUID], deadline: Deadline | None = None) -> dict[UUID, UserProfile]:
        """A profile for every requested id; an id user_db does not know gets exists=False."""
        with self._db.connection(deadline) as conn:
            rows = conn.execute(
                """
                SELECT u.user_id,
                       EXISTS (SELECT FROM user_preferences p WHERE p.user_id = u.user_id),
                       ARRAY(SELECT g.genre_name FROM tb_user_genre g WHERE g.user_id = u.user_id)
                  FROM unnest(%s::uuid[]) AS u(user_id)
                """,
                (UuidArray.of(user_ids),),
                binary=True,
            ).fetchall()
        return {user_id: UserProfile(user_id, exists, frozenset(genres)) for user_id, exists, genres in rows}
