"""Generate a realistic synthetic data set at production size into the three databases.

Shape (defaults follow MovieLens-25M: 162,000 users, 59,000 media, 25,000,000 interactions):
- media popularity is a power law (weight (rank + 40) ** -1, the top media holding about
  0.3 % of all interactions, as in MovieLens), each media has 1 to 3 genres;
- user activity is log-normal with a floor of 20 interactions (median about half the mean);
- each user prefers 2 or 3 genres (user_db holds them for 90 % of users) and picks media of
  those genres 70 % of the time, otherwise from the whole catalog, always by popularity;
- every (user, media) pair gets a rating on MovieLens's half-star scale, higher when the media
  is of a preferred genre, and becomes interactions as the MovieLens import maps ratings:
  a WATCH with the rating as value, plus a LIKE at 4 or more, a DISLIKE at 2 or less;
- timestamps are spread over ten years (each user active for a log-normal span of it);
- 0.2 % of media are deleted in the catalog.
Everything is vectorised numpy and written with binary COPY; the interaction table's indexes
are dropped during the load and rebuilt afterwards (PostgreSQL's advice for bulk loads).
The same seed gives the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg
from psycopg import sql
from tqdm import tqdm

from database import binary_copy
from database.schema import SCHEMA_DIR
from settings import DatabaseUrls

# MovieLens genres with their relative frequency among MovieLens-25M movies.
GENRES = {
    "Drama": 25.6, "Comedy": 16.9, "Thriller": 8.6, "Romance": 7.7, "Action": 7.3,
    "Horror": 5.9, "Documentary": 5.6, "Crime": 5.3, "Adventure": 4.3, "Sci-Fi": 3.7,
    "Children": 2.8, "Animation": 2.9, "Mystery": 2.9, "Fantasy": 2.8, "War": 1.9,
    "Western": 1.2, "Musical": 1.1, "Film-Noir": 0.4, "IMAX": 0.3,
}
POPULARITY_OFFSET = 40
POPULARITY_EXPONENT = 1.0
MIN_USER_INTERACTIONS = 20
ACTIVITY_SIGMA = 1.1
AFFINITY_SHARE = 0.7
USERS_WITH_PREFERENCES = 0.9
DELETED_SHARE = 0.002
FIRST_DAY = datetime(2015, 1, 1)
SPAN_DAYS = 3652
POSTGRES_EPOCH = datetime(2000, 1, 1)
# Interactions per (user, media) pair come out at about 1.6; draw this many pairs per
# interaction asked for, then keep exactly as many as needed.
PAIRS_PER_INTERACTION = 0.75
COPY_CHUNK = 1_000_000
DRAW_ROUNDS = 4
MISSING_PAIRS_ACCEPTED = 0.005
TYPE_NAMES = {1: b"WATCH", 2: b"LIKE", 3: b"DISLIKE"}


@dataclass(frozen=True)
class SyntheticSummary:
    """What the generator wrote."""

    users: int
    media: int
    interactions: int
    pairs: int


@dataclass(frozen=True)
class SyntheticData:
    """The generated rows, as aligned numpy arrays (model-free; ids as V16 UUID bytes)."""

    user_ids: np.ndarray  # V16
    preferences_ids: np.ndarray  # V16
    user_genres: list[tuple[int, int]]  # (user number, genre number) in user_db
    media_ids: np.ndarray  # V16
    media_type: np.ndarray  # bool: True for series, False for movie
    release_year: np.ndarray  # int32
    deleted: np.ndarray  # bool
    media_genres: list[tuple[int, int]]  # (media number, genre number)
    pair_user: np.ndarray  # int32 user number, one per (user, media) pair
    pair_media: np.ndarray  # int32 media number
    rating: np.ndarray  # float64, 0.5 to 5 in half stars
    timestamp: np.ndarray  # int64 microseconds since 2000-01-01


def generate(users: int, media: int, interactions: int, seed: int = 0) -> SyntheticData:
    """Draw a data set of exactly `interactions` interaction rows (fewer only if the catalog is too small)."""
    if users < 1 or media < 1 or interactions < 1:
        raise ValueError("users, media and interactions must all be at least 1")
    rng = np.random.default_rng(seed)
    genre_p = np.array(list(GENRES.values()))
    genre_p /= genre_p.sum()

    # Media: genres, popularity (a shuffled power law), type, year, deletion.
    media_genres = _draw_genres(rng, media, genre_p, (0.45, 0.35, 0.20))
    popularity = (np.arange(media) + POPULARITY_OFFSET) ** -POPULARITY_EXPONENT
    popularity = popularity[rng.permutation(media)]
    by_genre = {g: np.array([m for m, gg in media_genres if gg == g], dtype=np.int64) for g in range(len(GENRES))}
    genre_cumulative = {g: np.cumsum(popularity[ms]) for g, ms in by_genre.items() if len(ms)}
    global_cumulative = np.cumsum(popularity)

    # Users: preferred genres (2 or 3 each) and activity.
    user_genres = _draw_genres(rng, users, genre_p, (0.0, 0.5, 0.5))
    favourites = np.full((users, 3), -1, dtype=np.int64)
    favourite_count = np.zeros(users, dtype=np.int64)
    for u, g in user_genres:
        favourites[u, favourite_count[u]] = g
        favourite_count[u] += 1
    target_pairs = max(users, int(interactions * PAIRS_PER_INTERACTION))
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, users)
    extra = max(0, target_pairs - MIN_USER_INTERACTIONS * users)
    counts = MIN_USER_INTERACTIONS + np.floor(activity / activity.sum() * extra).astype(np.int64)
    counts = np.minimum(np.maximum(counts, 1), max(1, media // 2))
    pair_user, pair_media = _draw_pairs(
        rng, counts, media, favourites, favourite_count, by_genre, genre_cumulative, global_cumulative
    )

    # Ratings: higher for media of a preferred genre.
    media_genre_bits = np.zeros(media, dtype=np.int64)
    for m, g in media_genres:
        media_genre_bits[m] |= 1 << g
    user_genre_bits = np.zeros(users, dtype=np.int64)
    for u, g in user_genres:
        user_genre_bits[u] |= 1 << g
    matches = (media_genre_bits[pair_media] & user_genre_bits[pair_user]) != 0
    taste = rng.normal(0.0, 0.5, users)
    quality = rng.normal(0.0, 0.4, media)
    raw = 3.1 + 0.6 * matches + taste[pair_user] + quality[pair_media] + rng.normal(0.0, 0.8, len(pair_user))
    rating = np.clip(np.round(raw * 2) / 2, 0.5, 5.0)

    # Keep exactly `interactions` rows: drop whole pairs at random until the rows fit.
    rows_per_pair = 1 + (rating >= 4.0) + (rating <= 2.0)
    order = rng.permutation(len(pair_user))
    fits = np.cumsum(rows_per_pair[order]) <= interactions
    # The last rows missing (a pair may bring up to 3) come from pairs of one WATCH each.
    gap = interactions - int(rows_per_pair[order[fits]].sum())
    single = order[~fits][rows_per_pair[order[~fits]] == 1][:gap]
    kept = np.sort(np.concatenate([order[fits], single]))
    pair_user, pair_media, rating = pair_user[kept], pair_media[kept], rating[kept]

    # Timestamps: each user active from a random day for a log-normal span.
    span = SPAN_DAYS * 86_400
    first = (FIRST_DAY - POSTGRES_EPOCH).total_seconds()
    user_start = rng.random(users) * span
    user_length = np.minimum(rng.lognormal(np.log(180 * 86_400), 1.2, users), span - user_start)
    seconds = first + user_start[pair_user] + rng.random(len(pair_user)) * user_length[pair_user]
    timestamp = seconds.astype(np.int64) * 1_000_000

    declared = rng.random(users) < USERS_WITH_PREFERENCES
    return SyntheticData(
        user_ids=_uuids(rng, users),
        preferences_ids=_uuids(rng, users),
        user_genres=[(u, g) for u, g in user_genres if declared[u]],
        media_ids=_uuids(rng, media),
        media_type=rng.random(media) < 0.2,
        release_year=(2024 - np.minimum(rng.exponential(15.0, media), 100)).astype(np.int32),
        deleted=rng.random(media) < DELETED_SHARE,
        media_genres=media_genres,
        pair_user=pair_user.astype(np.int32),
        pair_media=pair_media.astype(np.int32),
        rating=rating,
        timestamp=timestamp,
    )


def generate_synthetic(
    urls: DatabaseUrls, users: int, media: int, interactions: int, seed: int = 0,
    replace: bool = False, progress: bool = True,
) -> SyntheticSummary:
    """Generate a data set and write it into the three databases (empty ones unless `replace`)."""
    _check_empty(urls, replace)
    data = generate(users, media, interactions, seed)
    with psycopg.connect(urls.catalog) as conn:
        _write_catalog(conn, data)
    with psycopg.connect(urls.user) as conn:
        _write_users(conn, data)
    with psycopg.connect(urls.engagement) as conn:
        written = _write_interactions(conn, data, progress)
    return SyntheticSummary(users=users, media=media, interactions=written, pairs=len(data.pair_user))


def _check_empty(urls: DatabaseUrls, replace: bool) -> None:
    tables = {"catalog": ("medias", "tb_media_genre"), "user": ("user_preferences", "tb_user_genre"),
              "engagement": ("interaction",)}
    for database, names in tables.items():
        with psycopg.connect(getattr(urls, database), autocommit=True) as conn:
            for name in names:
                if replace:
                    conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(name)))
                elif conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(name))).fetchone()[0]:
                    raise ValueError(f"table {name} in the {database} database is not empty (use --replace)")


def _write_catalog(conn: psycopg.Connection, data: SyntheticData) -> None:
    genre_names = list(GENRES)
    ids = [bytes(raw) for raw in data.media_ids]
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy("COPY medias (id, title, release_year, media_type, cover_url, deleted_at) FROM STDIN") as copy:
            for m, raw in enumerate(ids):
                copy.write_row((
                    raw_uuid(raw), f"Synthetic media {m + 1}", int(data.release_year[m]),
                    "series" if data.media_type[m] else "movie", f"https://covers.example/{m + 1}.jpg",
                    datetime(2024, 6, 1) if data.deleted[m] else None,
                ))
        with cur.copy("COPY tb_media_genre (media_id, genre_name) FROM STDIN") as copy:
            for m, g in data.media_genres:
                copy.write_row((raw_uuid(ids[m]), genre_names[g]))
    conn.execute("ANALYZE medias")
    conn.execute("ANALYZE tb_media_genre")


def _write_users(conn: psycopg.Connection, data: SyntheticData) -> None:
    genre_names = list(GENRES)
    with conn.transaction():
        binary_copy.write_rows(
            conn, sql.Identifier("user_preferences"), [("id", "uuid"), ("user_id", "uuid")],
            [data.preferences_ids, data.user_ids],
        )
        with conn.cursor() as cur, cur.copy("COPY tb_user_genre (user_id, genre_name) FROM STDIN") as copy:
            for u, g in data.user_genres:
                copy.write_row((raw_uuid(bytes(data.user_ids[u])), genre_names[g]))
    conn.execute("ANALYZE user_preferences")
    conn.execute("ANALYZE tb_user_genre")


def _write_interactions(conn: psycopg.Connection, data: SyntheticData, progress: bool) -> int:
    kinds = [
        (1, np.ones(len(data.rating), dtype=bool)),
        (2, data.rating >= 4.0),
        (3, data.rating <= 2.0),
    ]
    total = int(sum(mask.sum() for _, mask in kinds))
    columns = [("id", "int8"), ("user_id", "uuid"), ("media_id", "uuid"), ("type", "text"),
               ("interaction_value", "float8"), ("timestamp", "timestamp")]
    bar = tqdm(total=total, desc="copying interactions", unit=" rows", unit_scale=True, disable=not progress)
    next_id = 1
    with conn.transaction():
        # Bulk load without index maintenance, then build the indexes once.
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        conn.execute("ALTER TABLE interaction DROP CONSTRAINT IF EXISTS interaction_pkey")
        conn.execute("DROP INDEX IF EXISTS interaction_user_media_idx")
        for code, mask in kinds:
            where = np.flatnonzero(mask)
            name = TYPE_NAMES[code]
            for start in range(0, len(where), COPY_CHUNK):
                part = where[start : start + COPY_CHUNK]
                binary_copy.write_rows(
                    conn, sql.Identifier("interaction"), columns,
                    [
                        np.arange(next_id, next_id + len(part), dtype=np.int64),
                        data.user_ids[data.pair_user[part]],
                        data.media_ids[data.pair_media[part]],
                        np.full(len(part), name, dtype=f"S{len(name)}"),
                        data.rating[part],
                        data.timestamp[part],
                    ],
                )
                next_id += len(part)
                bar.update(len(part))
        bar.close()
        if progress:
            print("building indexes ...", flush=True)
        conn.execute("ALTER TABLE interaction ADD PRIMARY KEY (id)")
        conn.execute((SCHEMA_DIR / "engagement_db.sql").read_text())
    conn.execute("ANALYZE interaction")
    return total


def _draw_pairs(rng, counts, media, favourites, favourite_count, by_genre, genre_cumulative, global_cumulative):
    """Distinct (user, media) pairs, `counts[u]` for user u, sorted by user then media.

    Draws with replacement (a preferred genre's media or any media, by popularity), removes
    duplicates, and draws again for the users still short, a few rounds at most.
    """
    users = len(counts)
    pair_user = np.zeros(0, dtype=np.int64)
    pair_media = np.zeros(0, dtype=np.int64)
    missing = counts.copy()
    for _ in range(DRAW_ROUNDS):
        # Heavy users of a small catalog may never fill up by popularity-weighted draws: stop
        # when nearly every pair is there (the oversampling of pairs covers the rest).
        if missing.sum() <= MISSING_PAIRS_ACCEPTED * counts.sum():
            break
        draws = np.ceil(missing * 1.15).astype(np.int64)
        new_user = np.repeat(np.arange(users, dtype=np.int64), draws)
        affinity = rng.random(len(new_user)) < AFFINITY_SHARE
        chosen = favourites[new_user, (rng.random(len(new_user)) * favourite_count[new_user]).astype(np.int64)]
        new_media = np.empty(len(new_user), dtype=np.int64)
        new_media[~affinity] = _pick(rng, global_cumulative, int((~affinity).sum()))
        for g, members in by_genre.items():
            mask = affinity & (chosen == g)
            if mask.any():
                if len(members) == 0:
                    new_media[mask] = _pick(rng, global_cumulative, int(mask.sum()))
                else:
                    new_media[mask] = members[_pick(rng, genre_cumulative[g], int(mask.sum()))]
        keys = np.unique(np.concatenate([pair_user * media + pair_media, new_user * media + new_media]))
        pair_user, pair_media = keys // media, keys % media
        # Keep a random subset of at most counts[u] per user, not the lowest media numbers.
        order = np.lexsort((rng.random(len(pair_user)), pair_user))
        starts = np.searchsorted(pair_user, np.arange(users))
        rank_in_user = np.arange(len(pair_user)) - starts[pair_user[order]]
        keep = np.sort(order[rank_in_user < counts[pair_user[order]]])
        pair_user, pair_media = pair_user[keep], pair_media[keep]
        missing = counts - np.bincount(pair_user, minlength=users)
    return pair_user, pair_media


def raw_uuid(raw: bytes):
    """A uuid.UUID from 16 raw bytes."""
    import uuid

    return uuid.UUID(bytes=raw)


def _uuids(rng: np.random.Generator, count: int) -> np.ndarray:
    raw = np.frombuffer(rng.bytes(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.view("V16").reshape(count)


def _draw_genres(rng: np.random.Generator, count: int, p: np.ndarray, sizes: tuple[float, ...]) -> list[tuple[int, int]]:
    """(item, genre) pairs: each item gets 1..len(sizes) distinct genres drawn by frequency `p`."""
    how_many = rng.choice(np.arange(1, len(sizes) + 1), size=count, p=np.array(sizes) / sum(sizes))
    picks = rng.choice(len(p), size=(count, len(sizes) * 3), p=p)
    pairs = []
    for item in range(count):
        seen: list[int] = []
        for g in picks[item]:
            if g not in seen:
                seen.append(int(g))
                if len(seen) == how_many[item]:
                    break
        pairs.extend((item, g) for g in seen)
    return pairs


def _pick(rng: np.random.Generator, cumulative: np.ndarray, count: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cumulative, rng.random(count) * cumulative[-1]), len(cumulative) - 1)
