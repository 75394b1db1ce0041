-- engagement_db: what users did with media. Owned by the engagement service: ml-service only
-- reads it (SELECT), and applies this file only with `init-db --sources` (apply_schema(urls,
-- sources=True)) for development, tests, the demo and the importers. What the service relies
-- on, and the grants it needs: README.md, "Source database contract". Idempotent.

CREATE TABLE IF NOT EXISTS interaction (
    id                bigint PRIMARY KEY,
    user_id           uuid             NOT NULL,
    media_id          uuid             NOT NULL,
    type              varchar(50)      NOT NULL,  -- LIKE, DISLIKE or WATCH (others are ignored)
    interaction_value double precision,  -- LIKE/WATCH: how much (e.g. the rating); NULL counts 1
    "timestamp"       timestamp        NOT NULL
);

-- One user's history is read per request by user_id (index-only scan), and the refresh job
-- reads everything ordered by (user_id, media_id) so that it can aggregate in one pass.
CREATE INDEX IF NOT EXISTS interaction_user_media_idx
    ON interaction (user_id, media_id) INCLUDE (type, interaction_value, "timestamp");
