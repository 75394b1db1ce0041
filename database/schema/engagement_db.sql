-- engagement_db: what users did with media (owned by the engagement service). Idempotent.
CREATE TABLE IF NOT EXISTS interaction (
    id                bigint PRIMARY KEY,
    user_id           uuid             NOT NULL,
    media_id          uuid             NOT NULL,
    type              varchar(50)      NOT NULL,  -- LIKE, DISLIKE or WATCH
    interaction_value double precision,
    "timestamp"       timestamp        NOT NULL
);

-- One user's history is read per request by user_id (index-only scan), and the refresh job
-- reads everything ordered by (user_id, media_id) so that it can aggregate in one pass.
CREATE INDEX IF NOT EXISTS interaction_user_media_idx
    ON interaction (user_id, media_id) INCLUDE (type, interaction_value, "timestamp");
