"""Import a MovieLens directory (ratings.csv + movies.csv) into the three databases.

Mapping (documented in docs/operations.md, MovieLens mapping):
- every movie becomes a media (media_type "movie"); "Title (1995)" gives title and release year;
  its `|`-separated genres go to tb_media_genre ("(no genres listed)" is dropped);
- every rating becomes a WATCH interaction whose value is the rating (0.5 to 5); a rating of 4
  or more is also a LIKE, and one of 2 or less also a DISLIKE, each with the rating as value;
- every user who rated gets a user_preferences row, and as preferred genres the
  PREFERRED_GENRES genres that occur most often among the movies they liked (rated 4+).
Ids are deterministic (UUIDv5 of the MovieLens ids; interaction ids computed from user, movie
and type), and rows are upserted, so importing the same directory twice changes nothing.
"""

from __future__ import annotations

import csv
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql
from tqdm import tqdm

from database import binary_copy
from settings import DatabaseUrls

NAMESPACE = uuid.UUID("5b0f6a8e-1c7e-4a43-9f67-7d1c2a0c9d10")
NO_GENRES = "(no genres listed)"
PREFERRED_GENRES = 3
LIKE_AT_LEAST = 4.0
DISLIKE_AT_MOST = 2.0
TYPE_CODES = {"WATCH": 1, "LIKE": 2, "DISLIKE": 3}
UNIX_TO_POSTGRES_EPOCH = 946_684_800  # seconds from 1970-01-01 to 2000-01-01
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


def user_uuid(movielens_user_id: int) -> uuid.UUID:
    """The deterministic UUID of a MovieLens user."""
    return uuid.uuid5(NAMESPACE, f"movielens/user/{movielens_user_id}")


def media_uuid(movielens_movie_id: int) -> uuid.UUID:
    """The deterministic UUID of a MovieLens movie."""
    return uuid.uuid5(NAMESPACE, f"movielens/movie/{movielens_movie_id}")


def preferences_uuid(movielens_user_id: int) -> uuid.UUID:
    """The deterministic id of a MovieLens user's user_preferences row."""
    return uuid.uuid5(NAMESPACE, f"movielens/preferences/{movielens_user_id}")


def interaction_id(user_ids: np.ndarray, movie_ids: np.ndarray, type_code: int) -> np.ndarray:
    """Deterministic bigint interaction ids: unique per (user, movie, type) for ids below 2**22."""
    return (user_ids.astype(np.int64) * (1 << 22) + movie_ids.astype(np.int64)) * 4 + type_code


@dataclass(frozen=True)
class Movie:
    """A row of movies.csv."""

    movie_id: int
    title: str
    release_year: int | None
    genres: tuple[str, ...]


@dataclass(frozen=True)
class Ratings:
    """ratings.csv as aligned arrays."""

    user: np.ndarray  # int64 MovieLens user id
    movie: np.ndarray  # int64 MovieLens movie id
    rating: np.ndarray  # float64
    timestamp: np.ndarray  # int64 unix seconds

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, mask: np.ndarray) -> "Ratings":
        """The ratings where `mask` is true."""
        return Ratings(self.user[mask], self.movie[mask], self.rating[mask], self.timestamp[mask])


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote."""

    media: int
    users: int
    interactions: int


def read_movies(path: Path) -> list[Movie]:
    """Parse movies.csv (quoted titles, LF or CRLF line endings)."""
    movies = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            match = _TITLE_YEAR.match(row["title"])
            title, year = (match.group(1), int(match.group(2))) if match else (row["title"].strip(), None)
            genres = tuple(g for g in row["genres"].split("|") if g and g != NO_GENRES)
            movies.append(Movie(int(row["movieId"]), title, year, genres))
    return movies


def read_ratings(path: Path) -> Ratings:
    """Parse ratings.csv (userId,movieId,rating,timestamp; LF or CRLF line endings)."""
    with path.open(encoding="utf-8") as f:  # text mode: universal newlines
        header = f.readline().strip().split(",")
        if header[:4] != ["userId", "movieId", "rating", "timestamp"]:
            raise ValueError(f"{path}: expected the header userId,movieId,rating,timestamp, got {header}")
        data = np.loadtxt(f, delimiter=",", usecols=(0, 1, 2, 3), dtype=np.float64, ndmin=2)
    return Ratings(
        user=data[:, 0].astype(np.int64),
        movie=data[:, 1].astype(np.int64),
        rating=data[:, 2],
        timestamp=data[:, 3].astype(np.int64),
    )


def import_movielens(directory: Path, urls: DatabaseUrls, progress: bool = True) -> ImportSummary:
    """Read `directory`/movies.csv and ratings.csv and upsert them into the three databases."""
    directory = Path(directory)
    for name in ("movies.csv", "ratings.csv"):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found: expected a MovieLens directory")
    movies = read_movies(directory / "movies.csv")
    ratings = read_ratings(directory / "ratings.csv")
    return import_data(movies, ratings, urls, progress)


def import_data(movies: list[Movie], ratings: Ratings, urls: DatabaseUrls, progress: bool = True) -> ImportSummary:
    """Upsert movies and ratings (already parsed) into the three databases."""
    known_movies = {m.movie_id for m in movies}
    unknown = set(np.unique(ratings.movie).tolist()) - known_movies
    if unknown:
        raise ValueError(f"ratings refer to {len(unknown)} movie id(s) missing from movies.csv, e.g. {min(unknown)}")
    steps = tqdm(total=3, desc="importing", unit=" database", disable=not progress)
    with psycopg.connect(urls.catalog) as conn:
        _import_catalog(conn, movies)
    steps.update()
    with psycopg.connect(urls.engagement) as conn:
        interactions = _import_interactions(conn, ratings, progress)
    steps.update()
    with psycopg.connect(urls.user) as conn:
        users = _import_users(conn, movies, ratings)
    steps.update()
    steps.close()
    return ImportSummary(media=len(movies), users=users, interactions=interactions)


def _import_catalog(conn: psycopg.Connection, movies: list[Movie]) -> None:
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE import_media (LIKE medias) ON COMMIT DROP")
        conn.execute("CREATE TEMP TABLE import_media_genre (LIKE tb_media_genre) ON COMMIT DROP")
        with conn.cursor() as cur:
            with cur.copy("COPY import_media (id, title, release_year, media_type) FROM STDIN") as copy:
                for m in movies:
                    copy.write_row((media_uuid(m.movie_id), m.title, m.release_year, "movie"))
            with cur.copy("COPY import_media_genre (media_id, genre_name) FROM STDIN") as copy:
                for m in movies:
                    for genre in m.genres:
                        copy.write_row((media_uuid(m.movie_id), genre))
        conn.execute(
            """
            INSERT INTO medias (id, title, release_year, media_type)
            SELECT id, title, release_year, media_type FROM import_media
                ON CONFLICT (id) DO UPDATE
               SET title = excluded.title, release_year = excluded.release_year, media_type = excluded.media_type
            """
        )
        conn.execute("DELETE FROM tb_media_genre WHERE media_id IN (SELECT id FROM import_media)")
        conn.execute("INSERT INTO tb_media_genre SELECT DISTINCT media_id, genre_name FROM import_media_genre")


def _import_interactions(conn: psycopg.Connection, ratings: Ratings, progress: bool) -> int:
    users, user_index = np.unique(ratings.user, return_inverse=True)
    movies, movie_index = np.unique(ratings.movie, return_inverse=True)
    user_raw = _uuid_array(user_uuid(int(u)) for u in users)[user_index]
    movie_raw = _uuid_array(media_uuid(int(m)) for m in movies)[movie_index]
    timestamps = (ratings.timestamp - UNIX_TO_POSTGRES_EPOCH) * 1_000_000
    columns = [
        ("id", "int8"),
        ("user_id", "uuid"),
        ("media_id", "uuid"),
        ("type_code", "int2"),
        ("interaction_value", "float8"),
        ("ts", "timestamp"),
    ]
    total = 0
    with conn.transaction():
        conn.execute(
            """
            CREATE TEMP TABLE import_interaction (
                id bigint, user_id uuid, media_id uuid, type_code smallint,
                interaction_value double precision, ts timestamp
            ) ON COMMIT DROP
            """
        )
        kinds = [
            ("WATCH", np.ones(len(ratings), dtype=bool)),
            ("LIKE", ratings.rating >= LIKE_AT_LEAST),
            ("DISLIKE", ratings.rating <= DISLIKE_AT_MOST),
        ]
        for kind, mask in tqdm(kinds, desc="copying interactions", disable=not progress):
            code = TYPE_CODES[kind]
            total += binary_copy.write_rows(
                conn,
                sql.SQL("import_interaction"),
                columns,
                [
                    interaction_id(ratings.user[mask], ratings.movie[mask], code),
                    user_raw[mask],
                    movie_raw[mask],
                    np.full(int(mask.sum()), code, dtype=np.int16),
                    ratings.rating[mask],
                    timestamps[mask],
                ],
            )
        conn.execute(
            """
            INSERT INTO interaction (id, user_id, media_id, type, interaction_value, "timestamp")
            SELECT id, user_id, media_id,
                   CASE type_code WHEN 1 THEN 'WATCH' WHEN 2 THEN 'LIKE' ELSE 'DISLIKE' END,
                   interaction_value, ts
              FROM import_interaction
                ON CONFLICT (id) DO UPDATE
               SET interaction_value = excluded.interaction_value, "timestamp" = excluded."timestamp"
            """
        )
        # A rating that changed can stop being a LIKE or DISLIKE: drop those rows for the
        # imported users so the database matches the file.
        conn.execute(
            """
            DELETE FROM interaction i
             USING (SELECT DISTINCT user_id FROM import_interaction) u
             WHERE i.user_id = u.user_id
               AND NOT EXISTS (SELECT 1 FROM import_interaction n WHERE n.id = i.id)
            """
        )
    conn.execute("ANALYZE interaction")
    return total


def _import_users(conn: psycopg.Connection, movies: list[Movie], ratings: Ratings) -> int:
    preferred = preferred_genres(movies, ratings)
    user_ids = np.unique(ratings.user).tolist()
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE import_prefs (LIKE user_preferences) ON COMMIT DROP")
        conn.execute("CREATE TEMP TABLE import_user_genre (LIKE tb_user_genre) ON COMMIT DROP")
        with conn.cursor() as cur:
            with cur.copy("COPY import_prefs (id, user_id) FROM STDIN") as copy:
                for u in user_ids:
                    copy.write_row((preferences_uuid(u), user_uuid(u)))
            with cur.copy("COPY import_user_genre (user_id, genre_name) FROM STDIN") as copy:
                for u, genres in preferred.items():
                    for genre in genres:
                        copy.write_row((user_uuid(u), genre))
        conn.execute(
            "INSERT INTO user_preferences SELECT id, user_id FROM import_prefs ON CONFLICT (user_id) DO NOTHING"
        )
        conn.execute("DELETE FROM tb_user_genre WHERE user_id IN (SELECT user_id FROM import_prefs)")
        conn.execute("INSERT INTO tb_user_genre SELECT user_id, genre_name FROM import_user_genre")
    return len(user_ids)


def preferred_genres(movies: list[Movie], ratings: Ratings) -> dict[int, list[str]]:
    """Each user's PREFERRED_GENRES most frequent genres among the movies they liked (ties by name)."""
    genres_of = {m.movie_id: m.genres for m in movies}
    counts: dict[int, dict[str, int]] = {}
    liked = ratings.rating >= LIKE_AT_LEAST
    for user, movie in zip(ratings.user[liked].tolist(), ratings.movie[liked].tolist()):
        user_counts = counts.setdefault(user, {})
        for genre in genres_of.get(movie, ()):
            user_counts[genre] = user_counts.get(genre, 0) + 1
    return {
        user: [g for g, _ in sorted(c.items(), key=lambda item: (-item[1], item[0]))[:PREFERRED_GENRES]]
        for user, c in counts.items()
    }


def _uuid_array(ids) -> np.ndarray:
    return np.frombuffer(b"".join(u.bytes for u in ids), dtype="V16")
