-- The service's own derived tables, in schema ml (by default inside engagement_db, or in
-- MODEL_DB_URL's database). Written only by `python -m ml_service refresh`. Idempotent.
CREATE SCHEMA IF NOT EXISTS ml;

-- One row per refresh; the newest row describes the model the tables below hold.
CREATE TABLE IF NOT EXISTS ml.model_builds (
    version            bigint PRIMARY KEY,
    built_at           timestamptz NOT NULL DEFAULT now(),
    interactions_count bigint      NOT NULL,
    users_count        bigint      NOT NULL,
    media_count        bigint      NOT NULL,
    neighbours_count   bigint      NOT NULL,
    newest_interaction timestamp,
    build_seconds      double precision NOT NULL
);

-- Every live media at build time, with a dense index used by media_neighbours, its genres
-- and its popularity (time-decayed count of positive interactions).
CREATE TABLE IF NOT EXISTS ml.model_media (
    idx        int     PRIMARY KEY,
    media_id   uuid    NOT NULL UNIQUE,
    popularity real    NOT NULL,
    genres     text[]  NOT NULL
);

-- Top-K co-interaction neighbours of each media (cosine similarity of the two media's sets
-- of users who engaged positively).
CREATE TABLE IF NOT EXISTS ml.media_neighbours (
    media_idx     int  NOT NULL,
    neighbour_idx int  NOT NULL,
    similarity    real NOT NULL,
    PRIMARY KEY (media_idx, neighbour_idx)
);
