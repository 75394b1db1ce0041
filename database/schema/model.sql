-- The service's own derived tables, in schema ml (by default inside engagement_db, or in
-- MODEL_DB_URL's database). Written only by `python -m ml_service refresh` and `rollback`.
-- Idempotent; the only file `python -m ml_service init-db` applies without --sources.
CREATE SCHEMA IF NOT EXISTS ml;

-- One row per kept model (the last MODEL_KEEP published, and the serving one).
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
-- The settings the refresh built and serves the version with (the tuned and the given ones:
-- services/tuning.py), and its quality on the refresh's validation slice (NDCG@10, recall@10,
-- user coverage, the users measured; null when the data was too small to hold any out).
ALTER TABLE ml.model_builds ADD COLUMN IF NOT EXISTS settings jsonb;
ALTER TABLE ml.model_builds ADD COLUMN IF NOT EXISTS validation jsonb;

-- Which kept model the workers serve: one row, changed in one statement by a refresh
-- (publish) or a rollback. Each version's data lives in two tables of its own, never changed
-- once written:
--   ml.model_media_<version> (idx int PRIMARY KEY, media_id uuid, popularity real, genres text[],
--     media_type text, release_year int): every live media at build time, with the dense index
--     used by the neighbours, its popularity (time-decayed count of positive interactions) and
--     what filters select by (genres, type, release year);
--   ml.media_neighbours_<version> (media_idx int, neighbour_idx int, similarity real,
--     PRIMARY KEY (media_idx, neighbour_idx)): the top NEIGHBOURS_K neighbours of each media.
CREATE TABLE IF NOT EXISTS ml.serving (
    single  boolean     PRIMARY KEY DEFAULT true CHECK (single),
    version bigint      NOT NULL REFERENCES ml.model_builds (version),
    since   timestamptz NOT NULL DEFAULT now()
);

-- From the layout before versioned tables (one ml.model_media and ml.media_neighbours, the
-- newest ml.model_builds row serving): keep that model as its version, serving.
DO $$
DECLARE
    newest bigint;
BEGIN
    IF to_regclass('ml.model_media') IS NOT NULL THEN
        SELECT max(version) INTO newest FROM ml.model_builds;
        IF newest IS NULL THEN
            DROP TABLE ml.model_media, ml.media_neighbours;
        ELSE
            EXECUTE format('ALTER TABLE ml.model_media RENAME TO model_media_%s', newest);
            EXECUTE format('ALTER TABLE ml.media_neighbours RENAME TO media_neighbours_%s', newest);
            DELETE FROM ml.model_builds WHERE version <> newest;
            INSERT INTO ml.serving (version) VALUES (newest);
        END IF;
        DROP TABLE IF EXISTS ml.model_media_next, ml.media_neighbours_next;
    END IF;
END
$$;

-- Models built before the type and release year were kept: their media have neither (filters
-- then leave them out until the next refresh).
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT c.relname
               FROM pg_class c
              WHERE c.relnamespace = 'ml'::regnamespace AND c.relname ~ '^model_media_[0-9]+$'
                AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'media_type')
    LOOP
        EXECUTE format('ALTER TABLE ml.%I ADD COLUMN media_type text, ADD COLUMN release_year int', t.relname);
    END LOOP;
END
$$;

-- A/B experiments (python -m ml_service experiments ...): at most one runs (stopped_at IS NULL);
-- the workers read the running one within MODEL_RELOAD_INTERVAL. `variants` is a JSON array of
-- {"name", "share", "overrides"}, the first the control; a user's variant is a hash of `salt`
-- and the user id (services/experiments/assignment.py).
CREATE TABLE IF NOT EXISTS ml.experiments (
    name       text        PRIMARY KEY,
    salt       text        NOT NULL,
    variants   jsonb       NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    stopped_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS experiments_one_running ON ml.experiments ((true)) WHERE stopped_at IS NULL;

-- Every answered page, written in batches by each worker's impression writer (off the request
-- path): one partition per UTC day, created ahead and dropped whole after IMPRESSION_RETENTION_DAYS
-- by ml.prepare_impression_partitions; rows of a day nobody prepared land in the default
-- partition (and are deleted there after the retention).
CREATE TABLE IF NOT EXISTS ml.impressions (
    shown_at      timestamptz NOT NULL,
    request_id    text        NOT NULL,
    user_id       uuid        NOT NULL,
    experiment    text,
    variant       text,
    model_version bigint,
    row_kind      text        NOT NULL,  -- recommendations, because or similar
    media_ids     uuid[]      NOT NULL   -- the page's media, in the order shown
) PARTITION BY RANGE (shown_at);
CREATE TABLE IF NOT EXISTS ml.impressions_default PARTITION OF ml.impressions DEFAULT;
-- The web workers append impressions (INSERT through the parent: its partitions' privileges are
-- not checked); only roles with USAGE on schema ml can reach it. They change no model.
GRANT INSERT ON ml.impressions TO PUBLIC;

-- Today's and tomorrow's partitions (UTC), and the drop of those older than `retention_days`:
-- called by the web workers' impression writers, which may not create tables themselves, so it
-- runs as its owner (the role that ran init-db).
CREATE OR REPLACE FUNCTION ml.prepare_impression_partitions(retention_days int) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s' AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    keep_from date := today - greatest(retention_days, 1);
    day date;
    part record;
BEGIN
    PERFORM pg_advisory_xact_lock(1835625321);  -- "ml_i": one caller at a time
    FOR day IN SELECT generate_series(today, today + 1, interval '1 day')::date LOOP
        CONTINUE WHEN to_regclass(format('ml.impressions_%s', to_char(day, 'YYYYMMDD'))) IS NOT NULL;
        -- A day that already has rows in the default partition stays there.
        CONTINUE WHEN EXISTS (SELECT FROM ml.impressions_default
                               WHERE shown_at >= day::timestamp AT TIME ZONE 'UTC'
                                 AND shown_at < (day + 1)::timestamp AT TIME ZONE 'UTC');
        EXECUTE format('CREATE TABLE ml.%I PARTITION OF ml.impressions FOR VALUES FROM (%L) TO (%L)',
                       'impressions_' || to_char(day, 'YYYYMMDD'),
                       day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'ml.impressions'::regclass AND c.relname ~ '^impressions_[0-9]{8}$'
                   AND to_date(substr(c.relname, 13), 'YYYYMMDD') < keep_from LOOP
        EXECUTE format('DROP TABLE ml.%I', part.relname);
    END LOOP;
    DELETE FROM ml.impressions_default WHERE shown_at < keep_from::timestamp AT TIME ZONE 'UTC';
END
$$;
