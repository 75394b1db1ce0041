"""The service's derived tables (schema `ml`): loading a model and publishing a new one atomically."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence
from uuid import UUID

import numpy as np
import psycopg
from psycopg import sql

from database import binary_copy
from database.deadline import Deadline
from database.pools import Database
from database.records import ModelData, ModelInfo

# Readers and the publisher lock the model tables in this order, so a reader sees either the
# whole old model or the whole new one, and the two never deadlock.
MODEL_TABLES = "ml.model_builds, ml.model_media, ml.media_neighbours"
# Key of the advisory lock that keeps two refresh jobs from building at the same time.
REFRESH_LOCK_KEY = 0x6D6C5F72  # "ml_r"

# Statement timeout (ms) for loading a model into a worker.
LOAD_TIMEOUT_MS = 120_000

NEIGHBOUR_COLUMNS = [("media_idx", "int4"), ("neighbour_idx", "int4"), ("similarity", "float4")]


def release_free_memory() -> None:
    """Hand memory freed by the load's temporaries back to the OS (glibc keeps it otherwise).

    Loading streams ~100 MB of COPY data through buffers that are freed afterwards; without
    this a worker's RSS stays at the load's peak (at 25M interactions: ~160 MB instead of ~90).
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def neighbour_order(
    media_idx: np.ndarray, neighbour_idx: np.ndarray, similarity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbour rows ordered by media, then similarity descending, then neighbour.

    Returns the arrays themselves when they are in that order already (a published model
    is written so), sorting only otherwise.
    """
    if len(media_idx) > 1:
        same_media = media_idx[1:] == media_idx[:-1]
        in_order = (media_idx[1:] >= media_idx[:-1]) & (
            ~same_media
            | (similarity[1:] < similarity[:-1])
            | ((similarity[1:] == similarity[:-1]) & (neighbour_idx[1:] > neighbour_idx[:-1]))
        )
        if not in_order.all():
            order = np.lexsort((neighbour_idx, -similarity, media_idx))
            return media_idx[order], neighbour_idx[order], similarity[order]
    return media_idx, neighbour_idx, similarity


class RefreshInProgress(RuntimeError):
    """Another refresh holds the refresh lock."""


@dataclass(frozen=True)
class NewModel:
    """A freshly built model, ready to publish (arrays as in ModelData, before indexing)."""

    media_ids: np.ndarray  # V16 sorted
    popularity: np.ndarray  # float32
    media_genres: Sequence[Sequence[str]]  # per media
    neighbour_media: np.ndarray  # int32
    neighbour_idx: np.ndarray  # int32
    neighbour_similarity: np.ndarray  # float32
    interactions_count: int
    users_count: int
    newest_interaction: datetime | None
    build_seconds: float


class ModelRepository:
    """Reads and writes the tables in schema `ml`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def current_version(self, deadline: Deadline | None = None) -> int | None:
        """The version of the published model, None when there is none (or no schema yet)."""
        with self._db.connection(deadline) as conn:
            try:
                return conn.execute("SELECT max(version) FROM ml.model_builds").fetchone()[0]
            except psycopg.errors.UndefinedTable:
                return None

    def load(self, deadline: Deadline | None = None) -> ModelData | None:
        """The published model as arrays, read consistently; None when none is published."""
        with self._db.connection(deadline) as conn, conn.transaction():
            # Loading runs in the background, off the request path: the request statement
            # timeout does not apply (at 25M interactions the neighbours are ~3M rows).
            conn.execute(f"SET LOCAL statement_timeout = {LOAD_TIMEOUT_MS}")
            try:
                conn.execute(f"LOCK TABLE {MODEL_TABLES} IN ACCESS SHARE MODE")
            except psycopg.errors.UndefinedTable:
                return None
            row = conn.execute(
                """
                SELECT version, built_at, interactions_count, users_count, media_count,
                       neighbours_count, newest_interaction, build_seconds
                  FROM ml.model_builds
              ORDER BY version DESC
                 LIMIT 1
                """
            ).fetchone()
            if row is None:
                return None
            info = ModelInfo(*row)
            media = binary_copy.read_all(
                conn,
                "SELECT media_id, popularity FROM ml.model_media ORDER BY idx",
                [("media_id", "uuid"), ("popularity", "float4")],
            )
            genre_rows = conn.execute(
                """
                SELECT genre, array_agg(idx ORDER BY idx)
                  FROM ml.model_media, unnest(genres) AS genre
              GROUP BY genre
              ORDER BY genre
                """
            ).fetchall()
            # Sorted here rather than by the server: a sort of millions of rows would spill to
            # disk under a default work_mem, numpy's takes a fraction of a second.
            neighbours = binary_copy.read_all(
                conn, "SELECT media_idx, neighbour_idx, similarity FROM ml.media_neighbours", NEIGHBOUR_COLUMNS
            )
        media_idx, neighbour_idx, similarity = neighbour_order(
            neighbours["media_idx"].astype(np.int32),
            neighbours["neighbour_idx"].astype(np.int32),
            neighbours["similarity"].astype(np.float32),
        )
        del neighbours
        counts = np.bincount(media_idx, minlength=len(media))
        indptr = np.zeros(len(media) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        model = ModelData(
            info=info,
            media_ids=media["media_id"].copy(),
            popularity=media["popularity"].astype(np.float32),
            genre_names=tuple(name for name, _ in genre_rows),
            media_genres=[np.asarray(idx, dtype=np.int32) for _, idx in genre_rows],
            neighbour_indptr=indptr,
            neighbour_idx=neighbour_idx,
            neighbour_similarity=similarity,
        )
        del media, genre_rows, media_idx, neighbour_idx, similarity
        release_free_memory()
        return model

    def publish(self, model: NewModel) -> int:
        """Write `model` beside the published one, then swap it in in one transaction.

        Returns the new version. Raises RefreshInProgress when another refresh is publishing.
        """
        with self._db.connection() as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (REFRESH_LOCK_KEY,)).fetchone()[0]:
                raise RefreshInProgress("another refresh is running against this model database")
            try:
                self._write_next_tables(conn, model)
                return self._swap_in(conn, model)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (REFRESH_LOCK_KEY,))

    def _write_next_tables(self, conn: psycopg.Connection, model: NewModel) -> None:
        with conn.transaction():
            conn.execute("DROP TABLE IF EXISTS ml.model_media_next, ml.media_neighbours_next")
            conn.execute(
                """
                CREATE TABLE ml.model_media_next (
                    idx int NOT NULL, media_id uuid NOT NULL, popularity real NOT NULL, genres text[] NOT NULL
                )
                """
            )
            conn.execute(
                "CREATE TABLE ml.media_neighbours_next"
                " (media_idx int NOT NULL, neighbour_idx int NOT NULL, similarity real NOT NULL)"
            )
            with conn.cursor() as cur, cur.copy(
                "COPY ml.model_media_next (idx, media_id, popularity, genres) FROM STDIN"
            ) as copy:
                for idx, (raw_id, popularity, genres) in enumerate(
                    zip(model.media_ids.tolist(), model.popularity.tolist(), model.media_genres)
                ):
                    copy.write_row((idx, UUID(bytes=raw_id), popularity, list(genres)))
            # Written in the order readers want, so that loading finds them sorted.
            binary_copy.write_rows(
                conn,
                sql.SQL("ml.media_neighbours_next"),
                NEIGHBOUR_COLUMNS,
                neighbour_order(model.neighbour_media, model.neighbour_idx, model.neighbour_similarity),
            )
            conn.execute("ALTER TABLE ml.model_media_next ADD CONSTRAINT model_media_next_pkey PRIMARY KEY (idx)")
            conn.execute("ALTER TABLE ml.model_media_next ADD CONSTRAINT model_media_next_media_id_key UNIQUE (media_id)")
            conn.execute(
                "ALTER TABLE ml.media_neighbours_next"
                " ADD CONSTRAINT media_neighbours_next_pkey PRIMARY KEY (media_idx, neighbour_idx)"
            )
        conn.execute("ANALYZE ml.model_media_next, ml.media_neighbours_next")

    def _swap_in(self, conn: psycopg.Connection, model: NewModel) -> int:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '30s'")
            conn.execute(f"LOCK TABLE {MODEL_TABLES} IN ACCESS EXCLUSIVE MODE")
            conn.execute("DROP TABLE ml.model_media, ml.media_neighbours")
            for table, constraints in (
                ("model_media", ("pkey", "media_id_key")),
                ("media_neighbours", ("pkey",)),
            ):
                conn.execute(f"ALTER TABLE ml.{table}_next RENAME TO {table}")
                for suffix in constraints:
                    conn.execute(f"ALTER INDEX ml.{table}_next_{suffix} RENAME TO {table}_{suffix}")
            version = conn.execute(
                """
                INSERT INTO ml.model_builds (version, interactions_count, users_count, media_count,
                                             neighbours_count, newest_interaction, build_seconds)
                SELECT coalesce(max(version), 0) + 1, %s, %s, %s, %s, %s, %s
                  FROM ml.model_builds
             RETURNING version
                """,
                (
                    model.interactions_count,
                    model.users_count,
                    len(model.media_ids),
                    len(model.neighbour_idx),
                    model.newest_interaction,
                    model.build_seconds,
                ),
            ).fetchone()[0]
        return version

