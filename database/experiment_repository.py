"""Experiments and impressions in the model database (ml.experiments, ml.impressions)."""

from __future__ import annotations

from datetime import datetime
from typing import Iterator, Sequence

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from database import binary_copy
from database.deadline import Deadline
from database.pools import Database
from database.records import Experiment, Impression, Variant

EXPERIMENT_COLUMNS = "name, salt, variants, started_at, stopped_at"
IMPRESSION_COLUMNS = ("shown_at", "request_id", "user_id", "experiment", "variant", "model_version", "row_kind",
                      "media_ids")
IMPRESSION_TYPES = ("timestamptz", "text", "uuid", "text", "text", "int8", "text", "uuid[]")
# An experiment's impressions as the report reads them: one row per media shown on a page, each
# field of fixed width (binary_copy), the variant as its position in the experiment's list.
SHOWN_COLUMNS = [("user_id", "uuid"), ("variant", "int2"), ("shown_at", "timestamp"), ("page", "int8"),
                 ("media_id", "uuid")]


class ExperimentExists(ValueError):
    """An experiment of that name exists, or another one is running; the message says which."""


class NoSuchExperiment(LookupError):
    """No experiment of that name (or it is not running, for a stop)."""


def _experiment(row) -> Experiment:
    name, salt, variants, started_at, stopped_at = row
    return Experiment(
        name, salt, tuple(Variant(v["name"], v["share"], v.get("overrides", {})) for v in variants),
        started_at, stopped_at,
    )


class ExperimentRepository:
    """Reads and writes ml.experiments and ml.impressions (database/schema/model.sql)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def running(self, deadline: Deadline | None = None) -> Experiment | None:
        """The running experiment, None when none runs (or the schema predates experiments)."""
        with self._db.connection(deadline) as conn:
            try:
                row = conn.execute(f"SELECT {EXPERIMENT_COLUMNS} FROM ml.experiments WHERE stopped_at IS NULL").fetchone()
            except psycopg.errors.UndefinedTable:
                return None
        return None if row is None else _experiment(row)

    def all(self) -> list[Experiment]:
        """Every experiment, the most recently started first."""
        with self._db.connection() as conn:
            rows = conn.execute(f"SELECT {EXPERIMENT_COLUMNS} FROM ml.experiments ORDER BY started_at DESC").fetchall()
        return [_experiment(row) for row in rows]

    def get(self, name: str) -> Experiment:
        """The experiment `name`; NoSuchExperiment when there is none."""
        with self._db.connection() as conn:
            row = conn.execute(f"SELECT {EXPERIMENT_COLUMNS} FROM ml.experiments WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise NoSuchExperiment(f"no experiment {name!r} (see: experiments list)")
        return _experiment(row)

    def start(self, experiment: Experiment) -> Experiment:
        """Record `experiment` as running; ExperimentExists when its name is taken or one runs."""
        variants = [{"name": v.name, "share": v.share, "overrides": v.overrides} for v in experiment.variants]
        with self._db.connection() as conn:
            running = conn.execute("SELECT name FROM ml.experiments WHERE stopped_at IS NULL").fetchone()
            if running is not None:
                raise ExperimentExists(f"experiment {running[0]!r} is running; stop it first (one at a time)")
            try:
                row = conn.execute(
                    f"INSERT INTO ml.experiments (name, salt, variants) VALUES (%s, %s, %s) RETURNING {EXPERIMENT_COLUMNS}",
                    (experiment.name, experiment.salt, Jsonb(variants)),
                ).fetchone()
            except psycopg.errors.UniqueViolation as error:
                if error.diag.constraint_name == "experiments_pkey":
                    raise ExperimentExists(f"an experiment named {experiment.name!r} exists; choose another name") from None
                raise ExperimentExists("another experiment was started at the same time; stop it first") from None
        return _experiment(row)

    def stop(self, name: str) -> Experiment:
        """Stop the running experiment `name`; NoSuchExperiment when it is not running."""
        with self._db.connection() as conn:
            row = conn.execute(
                f"UPDATE ml.experiments SET stopped_at = now() WHERE name = %s AND stopped_at IS NULL"
                f" RETURNING {EXPERIMENT_COLUMNS}",
                (name,),
            ).fetchone()
        if row is None:
            self.get(name)  # NoSuchExperiment when there is none at all
            raise NoSuchExperiment(f"experiment {name!r} is not running")
        return _experiment(row)

    def write_impressions(self, impressions: Sequence[Impression]) -> None:
        """Append `impressions` to ml.impressions in one binary COPY."""
        with self._db.connection() as conn, conn.cursor() as cur:
            with cur.copy(f"COPY ml.impressions ({', '.join(IMPRESSION_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(IMPRESSION_TYPES)
                for i in impressions:
                    copy.write_row((i.shown_at, i.request_id, i.user_id, i.experiment, i.variant, i.model_version,
                                    i.row_kind, list(i.media_ids)))

    def prepare_partitions(self, retention_days: int) -> None:
        """Create today's and tomorrow's impression partitions, drop those past the retention."""
        with self._db.connection() as conn:
            conn.execute("SELECT ml.prepare_impression_partitions(%s)", (retention_days,))

    def shown(self, experiment: Experiment, since: datetime, until: datetime | None) -> Iterator[np.ndarray]:
        """The experiment's impressions between `since` and `until` (None: now), one row per media
        shown (SHOWN_COLUMNS; `page` numbers the pages; a page that showed none has one row with
        the nil UUID), in chunks."""
        names = [v.name for v in experiment.variants]
        with self._db.connection() as conn:
            yield from binary_copy.read_rows(
                conn,
                """
                SELECT user_id, (array_position(%s::text[], variant) - 1)::int2, shown_at AT TIME ZONE 'UTC', page,
                       coalesce(media_id, '00000000-0000-0000-0000-000000000000')
                  FROM (SELECT *, row_number() OVER () AS page
                          FROM ml.impressions
                         WHERE experiment = %s AND shown_at >= %s AND (%s::timestamptz IS NULL OR shown_at <= %s)
                           AND variant = ANY(%s::text[])) AS pages
                       LEFT JOIN LATERAL unnest(media_ids) AS media_id ON true
                """,
                SHOWN_COLUMNS,
                (names, experiment.name, since, until, until, names),
            )
