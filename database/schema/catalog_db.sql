-- catalog_db: media and their genres. Owned by the catalog service: ml-service only reads it
-- (SELECT), and applies this file only with `init-db --sources` (apply_schema(urls,
-- sources=True)) for development, tests, the demo and the importers. What the service relies
-- on, and the grants it needs: README.md, "Source database contract". Idempotent.

-- Media; looked up by id, live while deleted_at is NULL.
CREATE TABLE IF NOT EXISTS medias (
    id           uuid PRIMARY KEY,
    title        text        NOT NULL,
    description  text,
    release_year int,
    media_type   varchar(50) NOT NULL,
    cover_url    text,
    deleted_at   timestamp    -- not NULL: deleted (never recommended, left out of the model)
);

-- A media's genres; looked up by media_id.
CREATE TABLE IF NOT EXISTS tb_media_genre (
    media_id   uuid        NOT NULL,
    genre_name varchar(50) NOT NULL,
    PRIMARY KEY (media_id, genre_name)
);
