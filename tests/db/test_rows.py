"""Filters select on the model, and the catalog's answer has the last word."""

import psycopg
import pytest

from ml_service.app import build_runtime
from ml_service.jobs import run_refresh
from services.filters import MediaFilter
from tests.conftest import settings_for
from tests.db.helpers import add_interactions, add_media, new_id

SERIES = frozenset({"series"})


@pytest.fixture
def catalog(db_urls):
    """12 movies and 12 series, the lower numbers the more popular; refreshed."""
    movies, series = [new_id() for _ in range(12)], [new_id() for _ in range(12)]
    for n, (movie, show) in enumerate(zip(movies, series)):
        add_media(db_urls, movie, genres=["Drama"], year=1990 + n)
        add_media(db_urls, show, genres=["Drama"], year=2000 + n, media_type="series")
    users = [new_id() for _ in range(12)]
    add_interactions(
        db_urls, [(users[u], m[i], "WATCH", 4.0) for m in (movies, series) for i in range(12) for u in range(12 - i)]
    )
    run_refresh(settings_for(db_urls))
    return movies, series


@pytest.fixture
def recommender(db_urls):
    runtime = build_runtime(settings_for(db_urls))
    yield runtime.recommender
    runtime.close()


def test_a_row_of_series_holds_only_series_and_is_full(catalog, recommender):
    movies, series = catalog
    page = recommender.recommend(new_id(), limit=10, filters=MediaFilter(media_types=SERIES))
    assert [item.media.id for item in page.items] == series[:10]
    # Released 1995-2003: movies 5-11 and series 0-3, most popular first (series n and movie n
    # are as popular as each other, and more popular than n + 1).
    years = recommender.recommend(new_id(), limit=10, filters=MediaFilter(release_year_min=1995, release_year_max=2003))
    assert [item.media.id for item in years.items] == series[:4] + movies[5:11]


def test_a_media_that_no_longer_passes_in_the_catalog_is_replaced(db_urls, catalog, recommender):
    """The model still calls it a series; the catalog says it is a movie now: the catalog wins."""
    movies, series = catalog
    with psycopg.connect(db_urls.catalog) as conn:
        conn.execute("UPDATE medias SET media_type = 'movie' WHERE id = ANY(%s)", (series[:2],))
    page = recommender.recommend(new_id(), limit=10, filters=MediaFilter(media_types=SERIES))
    assert [item.media.id for item in page.items] == series[2:12]
