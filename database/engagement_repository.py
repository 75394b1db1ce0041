"""Read access to interactions in engagement_db."""

from __future__ import annotations

from datetime import datetime
from typing import Iterator, Sequence
from uuid import UUID

import numpy as np

from database import binary_copy
from database.deadline import Deadline
from database.pools import Database
from database.records import History, InteractionWeights
from database.uuid_array import UuidArray

# A LIKE's or WATCH's value (1 when missing, never below 0) times its type's weight.
WEIGHTED_VALUE = """greatest(coalesce(interaction_value, 1), 0)
                    * CASE type WHEN 'LIKE' THEN %(like)s::float8 ELSE %(watch)s::float8 END"""


class EngagementRepository:
    """Users' interactions with media, each type weighted by `weights`."""

    def __init__(self, db: Database, weights: InteractionWeights = InteractionWeights()) -> None:
        self._db = db
        self._weights = {"like": weights.like, "watch": weights.watch}

    def histories_by_user_ids(self, user_ids: Sequence[UUID], deadline: Deadline | None = None) -> dict[UUID, History]:
        """Each requested user's interactions aggregated per media (users without any are absent)."""
        # Aggregated here and sent as one packed array per user and column (uuid_send and
        # float8send bytes, in the same row order): no Python object per interaction. A batch
        # of 50 users reads ~8,000 interactions.
        with self._db.connection(deadline) as conn:
            rows = conn.execute(
                f"""
                SELECT user_id, string_agg(uuid_send(media_id), ''::bytea),
                       string_agg(float8send(positive_value), ''::bytea),
                       string_agg(boolsend(disliked), ''::bytea)
                  FROM (SELECT user_id, media_id,
                               CASE WHEN bool_or(type = 'DISLIKE') THEN 0
                                    ELSE coalesce(max({WEIGHTED_VALUE}), 0)
                               END AS positive_value,
                               bool_or(type = 'DISLIKE') AS disliked
                          FROM interaction
                         WHERE user_id = ANY(%(users)s) AND type IN ('LIKE', 'DISLIKE', 'WATCH')
                      GROUP BY user_id, media_id) AS per_media
              GROUP BY user_id
                """,
                {"users": UuidArray.of(user_ids), **self._weights},
                binary=True,
            ).fetchall()
        return {
            user_id: History(
                np.frombuffer(media, dtype="V16"),
                np.frombuffer(values, dtype=">f8").astype(np.float64),
                np.frombuffer(disliked, dtype=np.bool_),
            )
            for user_id, media, values, disliked in rows
        }

    def positive_interactions(
        self, user_ids: Sequence[UUID], since: datetime, chunk_users: int = 10_000
    ) -> Iterator[np.ndarray]:
        """The LIKE and WATCH interactions of `user_ids` from `since` (UTC) on, as rows of
        (user_id uuid, media_id uuid, at: microseconds since 2000-01-01), read in batched
        `= ANY()` queries of `chunk_users` users (offline: the experiments report)."""
        columns = [("user_id", "uuid"), ("media_id", "uuid"), ("at", "timestamp")]
        with self._db.connection() as conn:
            for start in range(0, len(user_ids), chunk_users):
                yield from binary_copy.read_rows(
                    conn,
                    'SELECT user_id, media_id, "timestamp" FROM interaction'
                    " WHERE user_id = ANY(%s) AND type IN ('LIKE', 'WATCH') AND \"timestamp\" > %s",
                    columns,
                    (list(user_ids[start:start + chunk_users]), since),
                )

    def recently_popular_media(self, recent: int, limit: int, deadline: Deadline | None = None) -> list[tuple[UUID, int]]:
        """The `limit` media with most positive interactions among the `recent` newest ones, most first.

        Bounded work for serving without a model (services/fallback_model.py); the sort over
        "timestamp" is cheap with an index on it, and statement_timeout caps it without one.
        """
        with self._db.connection(deadline) as conn:
            rows = conn.execute(
                """
                SELECT media_id, count(*) AS positives
                  FROM (SELECT media_id
                          FROM interaction
                         WHERE type IN ('LIKE', 'WATCH')
                      ORDER BY "timestamp" DESC
                         LIMIT %s) AS recent
              GROUP BY media_id
              ORDER BY positives DESC, media_id
                 LIMIT %s
                """,
                (recent, limit),
            ).fetchall()
        return [(media_id, positives) for media_id, positives in rows]

    def user_media_pairs(self, chunk_rows: int = 1_000_000) -> Iterator[np.ndarray]:
        """Every (user, media) pair with interactions, ordered by user: for the refresh job.

        Fields: user (V16), media (V16), disliked (bool), liked (bool: a LIKE of weighted value > 0),
        positive_value (float8, the largest weighted LIKE/WATCH value, see WEIGHTED_VALUE; 0 when
        there is no LIKE/WATCH),
        newest (timestamp, microseconds since 2000-01-01; 1970 when unknown), interactions (int8).
        """
        columns = [
            ("user", "uuid"),
            ("media", "uuid"),
            ("disliked", "bool"),
            ("liked", "bool"),
            ("positive_value", "float8"),
            ("newest", "timestamp"),
            ("interactions", "int8"),
        ]
        query = f"""
            SELECT user_id, media_id,
                   bool_or(type = 'DISLIKE'),
                   coalesce(bool_or({WEIGHTED_VALUE} > 0) FILTER (WHERE type = 'LIKE'), false),
                   coalesce(max({WEIGHTED_VALUE}) FILTER (WHERE type IN ('LIKE', 'WATCH')), 0),
                   coalesce(max("timestamp"), 'epoch'),
                   count(*)
              FROM interaction
          GROUP BY user_id, media_id
          ORDER BY user_id, media_id
        """
        with self._db.connection() as conn:
            yield from binary_copy.read_rows(conn, query, columns, self._weights, chunk_rows=chunk_rows)
