-- catalog_db: media and their genres (owned by the catalog service). Idempotent.
CREATE TABLE IF NOT EXISTS medias (
    id           uuid PRIMARY KEY,
    title        text        NOT NULL,
    description  text,
    release_year int,
    media_type   varchar(50) NOT NULL,
    cover_url    text,
    deleted_at   timestamp
);

CREATE TABLE IF NOT EXISTS tb_media_genre (
    media_id   uuid        NOT NULL,
    genre_name varchar(50) NOT NULL,
    PRIMARY KEY (media_id, genre_name)
);
