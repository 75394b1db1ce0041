"""The service's derived tables (schema `ml`): loading a model and publishing a new one atomically."""

from __future__ import annotations

import contextlib
import ctypes
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, Sequence
from uuid import UUID

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from database import binary_copy
from database.deadline import Deadline
from database.pools import Database
from database.records import ModelData, ModelInfo

log = logging.getLogger(__name__)

# Key of the advisory lock a refresh (or a rollback) holds from its start to its end, so that
# two never build or publish at the same time.
REFRESH_LOCK_KEY = 0x6D6C5F72  # "ml_r"
# Seconds a publish waits to drop an old model's tables while a worker is still loading it;
# it leaves them for the next publish rather than wait longer.
PRUNE_LOCK_TIMEOUT = "5s"

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
    """Another refresh or rollback holds the refresh lock; the message says which session."""


class NoSuchModel(ValueError):
    """A rollback named a version that is not kept (or there is no earlier one)."""


@dataclass(frozen=True)
class NewModel:
    """A freshly built model, ready to publish (arrays as in ModelData, before indexing)."""

    media_ids: np.ndarray  # V16 sorted
    popularity: np.ndarray  # float32
    media_genres: Sequence[Sequence[str]]  # per media
    media_types: Sequence[str]  # per media
    release_years: np.ndarray  # int32 per media, 0 where unknown
    neighbour_media: np.ndarray  # int32
    neighbour_idx: np.ndarray  # int32
    neighbour_similarity: np.ndarray  # float32
    interactions_count: int
    users_count: int
    newest_interaction: datetime | None
    build_seconds: float
    settings: dict | None = None  # ModelInfo.settings
    validation: dict | None = None  # ModelInfo.validation


def in_memory(model: NewModel, info: ModelInfo) -> ModelData:
    """`model` as the ModelData that loading it after a publish would give (genres and types
    grouped as the load groups them): what a refresh measures its candidates with."""
    genres: dict[str, list[int]] = {}
    for idx, names in enumerate(model.media_genres):
        for name in names:
            genres.setdefault(name, []).append(idx)
    type_names = sorted({t for t in model.media_types if t is not None})
    type_code = {name: code for code, name in enumerate(type_names)}
    media_idx, neighbour_idx, similarity = neighbour_order(model.neighbour_media, model.neighbour_idx, model.neighbour_similarity)
    indptr = np.zeros(len(model.media_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(media_idx, minlength=len(model.media_ids)), out=indptr[1:])
    return ModelData(
        info=info,
        media_ids=model.media_ids,
        popularity=model.popularity,
        genre_names=tuple(sorted(genres)),
        media_genres=[np.asarray(genres[name], dtype=np.int32) for name in sorted(genres)],
        neighbour_indptr=indptr,
        neighbour_idx=neighbour_idx,
        neighbour_similarity=similarity,
        media_type_names=tuple(type_names),
        media_type=np.array([type_code.get(t, -1) for t in model.media_types], dtype=np.int16),
        release_year=np.asarray(model.release_years, dtype=np.int32),
    )


INFO_COLUMNS = (
    "version, built_at, interactions_count, users_count, media_count, neighbours_count, newest_interaction, "
    "build_seconds, settings, validation"
)
# The serving model's build record.
SERVING_BUILD = f"SELECT {INFO_COLUMNS} FROM ml.model_builds JOIN ml.serving USING (version)"


def media_table(version: int) -> sql.Identifier:
    """The table holding the media of model `version`."""
    return sql.Identifier("ml", f"model_media_{version}")


def neighbours_table(version: int) -> sql.Identifier:
    """The table holding the neighbours of model `version`."""
    return sql.Identifier("ml", f"media_neighbours_{version}")


class ModelRepository:
    """Reads and writes the tables in schema `ml` (see database/schema/model.sql)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def serving_version(self, deadline: Deadline | None = None) -> int | None:
        """The version the workers should serve, None when none is published (or no schema yet)."""
        with self._db.connection(deadline) as conn:
            try:
                row = conn.execute("SELECT version FROM ml.serving").fetchone()
            except psycopg.errors.UndefinedTable:
                return None
        return None if row is None else row[0]

    def builds(self) -> tuple[list[ModelInfo], int | None]:
        """Every kept model, newest first, and the serving version (None: none published)."""
        with self._db.connection() as conn:
            return _builds(conn)

    def load(self, deadline: Deadline | None = None, version: int | None = None) -> ModelData | None:
        """The serving model (or the kept model `version`) as arrays; None when there is none."""
        with self._db.connection(deadline) as conn, conn.transaction():
            # Loading runs in the background, off the request path: the request statement
            # timeout does not apply (at 25M interactions the neighbours are ~3M rows).
            conn.execute(f"SET LOCAL statement_timeout = {LOAD_TIMEOUT_MS}")
            try:
                if version is None:
                    row = conn.execute(SERVING_BUILD).fetchone()
                else:
                    row = conn.execute(f"SELECT {INFO_COLUMNS} FROM ml.model_builds WHERE version = %s", (version,)).fetchone()
            except psycopg.errors.UndefinedTable:
                return None
            if row is None:
                return None
            info = ModelInfo(*row)
            media_t, neighbours_t = media_table(info.version), neighbours_table(info.version)
            # A version's tables never change; the lock keeps a publish from dropping them
            # (an old model that is pruned) while they are read.
            conn.execute(sql.SQL("LOCK TABLE {}, {} IN ACCESS SHARE MODE").format(media_t, neighbours_t))
            media = binary_copy.read_all(
                conn,
                sql.SQL("SELECT media_id, popularity, coalesce(release_year, 0) FROM {} ORDER BY idx").format(media_t),
                [("media_id", "uuid"), ("popularity", "float4"), ("release_year", "int4")],
            )
            type_rows = conn.execute(
                sql.SQL(
                    "SELECT media_type, array_agg(idx) FROM {} WHERE media_type IS NOT NULL"
                    " GROUP BY media_type ORDER BY media_type"
                ).format(media_t)
            ).fetchall()
            genre_rows = conn.execute(
                sql.SQL(
                    "SELECT genre, array_agg(idx ORDER BY idx) FROM {}, unnest(genres) AS genre"
                    " GROUP BY genre ORDER BY genre"
                ).format(media_t)
            ).fetchall()
            # Sorted here rather than by the server: a sort of millions of rows would spill to
            # disk under a default work_mem, numpy's takes a fraction of a second.
            neighbours = binary_copy.read_all(
                conn,
                sql.SQL("SELECT media_idx, neighbour_idx, similarity FROM {}").format(neighbours_t),
                NEIGHBOUR_COLUMNS,
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
        media_type = np.full(len(media), -1, dtype=np.int16)
        for code, (_, members) in enumerate(type_rows):
            media_type[members] = code
        model = ModelData(
            info=info,
            media_ids=media["media_id"].copy(),
            popularity=media["popularity"].astype(np.float32),
            genre_names=tuple(name for name, _ in genre_rows),
            media_genres=[np.asarray(idx, dtype=np.int32) for _, idx in genre_rows],
            neighbour_indptr=indptr,
            neighbour_idx=neighbour_idx,
            neighbour_similarity=similarity,
            media_type_names=tuple(name for name, _ in type_rows),
            media_type=media_type,
            release_year=media["release_year"].astype(np.int32),
        )
        del media, genre_rows, type_rows, media_idx, neighbour_idx, similarity
        release_free_memory()
        return model

    @contextlib.contextmanager
    def refresh_lock(self) -> Iterator[ModelWriter]:
        """Hold the refresh lock for the body, on one connection that also writes the model.

        Raises RefreshInProgress at once when another session holds it, naming that session
        (its application_name, client and since when). The lock goes with the connection, so
        a job that dies or loses its connection releases it.
        """
        with self._db.connection() as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (REFRESH_LOCK_KEY,)).fetchone()[0]:
                raise RefreshInProgress(f"another refresh or rollback is running: {_lock_holder(conn)}")
            try:
                yield ModelWriter(conn)
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (REFRESH_LOCK_KEY,))


class ModelWriter:
    """Publishing and rollback, on the connection that holds the refresh lock."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def serving(self) -> ModelInfo | None:
        """The serving model's build record, None when none is published."""
        row = self._conn.execute(SERVING_BUILD).fetchone()
        return None if row is None else ModelInfo(*row)

    def builds(self) -> tuple[list[ModelInfo], int | None]:
        """Every kept model, newest first, and the serving version."""
        return _builds(self._conn)

    def publish(self, model: NewModel, keep: int, serve: bool = True) -> int:
        """Write `model` as a new version, make it the serving one (unless not `serve`: it is
        only kept, for an experiment's variant or a later `publish`), drop all but the last `keep`.

        The workers switch when they see ml.serving change (one UPDATE, so each loads either the
        old model or the whole new one). Returns the new version.
        """
        conn = self._conn
        version = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM ml.model_builds").fetchone()[0]
        self._write_tables(version, model)
        with conn.transaction():
            conn.execute(
                f"INSERT INTO ml.model_builds ({INFO_COLUMNS.replace('built_at, ', '')})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    version,
                    model.interactions_count,
                    model.users_count,
                    len(model.media_ids),
                    len(model.neighbour_idx),
                    model.newest_interaction,
                    model.build_seconds,
                    None if model.settings is None else Jsonb(model.settings),
                    None if model.validation is None else Jsonb(model.validation),
                ),
            )
            if serve:
                self._serve(version)
        self._prune(keep)
        return version

    def rollback(self, version: int | None = None, allow_first: bool = False) -> tuple[int | None, int]:
        """Serve the kept model `version` (default: the newest one older than the serving one).

        Returns (previous serving version, new serving version). NoSuchModel when there is no
        such kept model, or none serves yet (unless `allow_first`: `publish` of a model that
        `refresh --no-publish` kept).
        """
        builds, serving = self.builds()
        if serving is None and not (allow_first and version is not None):
            raise NoSuchModel("no model is published yet")
        kept = [info.version for info in builds]
        if version is None:
            earlier = [v for v in kept if v < serving]
            if not earlier:
                raise NoSuchModel(f"no model older than the serving version {serving} is kept")
            version = earlier[0]
        elif version not in kept:
            raise NoSuchModel(f"version {version} is not kept (kept: {', '.join(map(str, kept))})")
        elif version == serving:
            raise NoSuchModel(f"model version {version} is already serving")
        self._serve(version)
        return serving, version

    def _serve(self, version: int) -> None:
        self._conn.execute(
            "INSERT INTO ml.serving (version) VALUES (%s)"
            " ON CONFLICT (single) DO UPDATE SET version = excluded.version, since = now()",
            (version,),
        )

    def _write_tables(self, version: int, model: NewModel) -> None:
        conn = self._conn
        media_t, neighbours_t = media_table(version), neighbours_table(version)
        with conn.transaction():
            # Left by a publish that failed before it recorded the version.
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(media_t, neighbours_t))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (idx int NOT NULL, media_id uuid NOT NULL, popularity real NOT NULL,"
                    " genres text[] NOT NULL, media_type text, release_year int)"
                ).format(media_t)
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (media_idx int NOT NULL, neighbour_idx int NOT NULL, similarity real NOT NULL)"
                ).format(neighbours_t)
            )
            with conn.cursor() as cur, cur.copy(
                sql.SQL("COPY {} (idx, media_id, popularity, genres, media_type, release_year) FROM STDIN").format(
                    media_t
                )
            ) as copy:
                for idx, (raw_id, popularity, genres, media_type, year) in enumerate(
                    zip(
                        model.media_ids.tolist(),
                        model.popularity.tolist(),
                        model.media_genres,
                        model.media_types,
                        model.release_years.tolist(),
                    )
                ):
                    copy.write_row((idx, UUID(bytes=raw_id), popularity, list(genres), media_type, year or None))
            # Written in the order readers want, so that loading finds them sorted.
            binary_copy.write_rows(
                conn,
                neighbours_t,
                NEIGHBOUR_COLUMNS,
                neighbour_order(model.neighbour_media, model.neighbour_idx, model.neighbour_similarity),
            )
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (idx), ADD UNIQUE (media_id)").format(media_t))
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (media_idx, neighbour_idx)").format(neighbours_t))

    def _prune(self, keep: int) -> None:
        """Drop the models beyond the newest `keep` (never the serving one, nor one that a
        running experiment's variant serves)."""
        conn = self._conn
        in_use = "SELECT version FROM ml.serving"
        if conn.execute("SELECT to_regclass('ml.experiments')").fetchone()[0] is not None:
            in_use += (" UNION SELECT (v -> 'overrides' ->> 'model')::bigint FROM ml.experiments,"
                       " jsonb_array_elements(variants) AS v WHERE stopped_at IS NULL AND v -> 'overrides' ? 'model'")
        old = conn.execute(
            f"SELECT version FROM ml.model_builds WHERE version NOT IN ({in_use})"
            " ORDER BY version DESC OFFSET %s",
            (max(keep - 1, 0),),
        ).fetchall()
        for (version,) in old:
            try:
                with conn.transaction():
                    conn.execute(f"SET LOCAL lock_timeout = '{PRUNE_LOCK_TIMEOUT}'")
                    conn.execute(
                        sql.SQL("DROP TABLE IF EXISTS {}, {}").format(media_table(version), neighbours_table(version))
                    )
                    conn.execute("DELETE FROM ml.model_builds WHERE version = %s", (version,))
            except psycopg.errors.LockNotAvailable:
                log.warning("model %s is being loaded by a worker; it is dropped by a later publish", version)


def _builds(conn: psycopg.Connection) -> tuple[list[ModelInfo], int | None]:
    try:
        rows = conn.execute(f"SELECT {INFO_COLUMNS} FROM ml.model_builds ORDER BY version DESC").fetchall()
        serving = conn.execute("SELECT version FROM ml.serving").fetchone()
    except psycopg.errors.UndefinedTable:
        return [], None
    return [ModelInfo(*row) for row in rows], None if serving is None else serving[0]


def _lock_holder(conn: psycopg.Connection) -> str:
    """Who holds the refresh lock, as well as pg_stat_activity tells this role."""
    row = conn.execute(
        """
        SELECT a.application_name, a.client_addr, a.pid, a.backend_start
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid::bigint = %s
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        (REFRESH_LOCK_KEY,),
    ).fetchone()
    if row is None:
        return "a session that has just ended"
    name, client, pid, since = row
    client = f" from {client}" if client else ""
    started = f", connected since {since:%Y-%m-%d %H:%M:%S %Z}" if since else ""
    return f"'{name or 'unnamed'}'{client} (server pid {pid}{started})"
