-- user_db: users and the genres they prefer (owned by the user service; applied here for
-- development, tests and the demo). Idempotent.
CREATE TABLE IF NOT EXISTS user_preferences (
    id      uuid PRIMARY KEY,
    user_id uuid NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS tb_user_genre (
    user_id    uuid        NOT NULL,
    genre_name varchar(50) NOT NULL,
    PRIMARY KEY (user_id, genre_name)
);
