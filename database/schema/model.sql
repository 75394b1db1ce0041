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
