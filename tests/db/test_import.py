"""Importing MovieLens into the three databases."""

import shutil

import psycopg
import pytest

from services.movielens_import import LIKE_AT_LEAST, import_movielens, media_uuid, user_uuid
from tests.conftest import MOVIELENS_DIR


def counts(urls):
    with psycopg.connect(urls.catalog) as c, psycopg.connect(urls.user) as u, psycopg.connect(urls.engagement) as e:
        return {
            "medias": c.execute("SELECT count(*) FROM medias").fetchone()[0],
            "media_genres": c.execute("SELECT count(*) FROM tb_media_genre").fetchone()[0],
            "users": u.execute("SELECT count(*) FROM user_preferences").fetchone()[0],
            "user_genres": u.execute("SELECT count(*) FROM tb_user_genre").fetchone()[0],
            "interactions": e.execute("SELECT count(*) FROM interaction").fetchone()[0],
            "by_type": dict(e.execute("SELECT type, count(*) FROM interaction GROUP BY type").fetchall()),
        }


@pytest.fixture
def small_movielens(tmp_path):
    """The first 3,000 ratings of ml-latest-small, with CRLF line endings."""
    shutil.copy(MOVIELENS_DIR / "movies.csv", tmp_path / "movies.csv")
    lines = (MOVIELENS_DIR / "ratings.csv").read_text().splitlines()[:3001]
    (tmp_path / "ratings.csv").write_bytes("\r\n".join(lines).encode() + b"\r\n")
    return tmp_path, lines[1:]


def test_import_maps_ratings_and_is_idempotent(db_urls, small_movielens):
    directory, rating_lines = small_movielens
    ratings = [float(line.split(",")[2]) for line in rating_lines]
    summary = import_movielens(directory, db_urls, progress=False)
    first = counts(db_urls)
    assert summary.interactions == first["interactions"]
    assert first["medias"] == 9742
    assert first["by_type"] == {
        "WATCH": len(ratings),
        "LIKE": sum(r >= LIKE_AT_LEAST for r in ratings),
        "DISLIKE": sum(r <= 2 for r in ratings),
    }
    assert 0 < first["user_genres"] <= 3 * first["users"]
    import_movielens(directory, db_urls, progress=False)
    assert counts(db_urls) == first


def test_imported_rows_carry_the_movielens_values(db_urls, small_movielens):
    directory, _ = small_movielens
    import_movielens(directory, db_urls, progress=False)
    with psycopg.connect(db_urls.catalog) as conn:
        title, year, kind = conn.execute(
            "SELECT title, release_year, media_type FROM medias WHERE id = %s", (media_uuid(1),)
        ).fetchone()
    assert (title, year, kind) == ("Toy Story", 1995, "movie")
    with psycopg.connect(db_urls.engagement) as conn:
        # ml-latest-small: user 1 rated movie 1 with 4.0 at 964982703 (2000-07-30 18:45:03 UTC)
        rows = conn.execute(
            'SELECT type, interaction_value, "timestamp"::text FROM interaction'
            " WHERE user_id = %s AND media_id = %s ORDER BY type",
            (user_uuid(1), media_uuid(1)),
        ).fetchall()
    assert rows == [("LIKE", 4.0, "2000-07-30 18:45:03"), ("WATCH", 4.0, "2000-07-30 18:45:03")]


def test_a_directory_without_movielens_files_is_refused(db_urls, tmp_path):
    with pytest.raises(FileNotFoundError, match="ratings.csv|movies.csv"):
        import_movielens(tmp_path, db_urls, progress=False)
