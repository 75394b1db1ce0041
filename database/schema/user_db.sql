-- user_db: users and the genres they prefer. Owned by the user service: ml-service only reads
-- it (SELECT), and applies this file only with `init-db --sources` (apply_schema(urls,
-- sources=True)) for development, tests, the demo and the importers. What the service relies
-- on, and the grants it needs: README.md, "Source database contract". Idempotent.

-- A row per user the user service knows (read: whether a requested user exists).
CREATE TABLE IF NOT EXISTS user_preferences (
    id      uuid PRIMARY KEY,
    user_id uuid NOT NULL UNIQUE
);

-- A user's preferred genres (the content score); looked up by user_id.
CREATE TABLE IF NOT EXISTS tb_user_genre (
    user_id    uuid        NOT NULL,
    genre_name varchar(50) NOT NULL,
    PRIMARY KEY (user_id, genre_name)
);
