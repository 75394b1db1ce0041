"""Media deleted from the catalog after the last refresh: never recommended, and pages stay full."""

import psycopg
import pytest

from database.catalog_repository import CatalogRepository
from ml_service.app import build_runtime
from ml_service.jobs import run_refresh
from services.recommendation_service import DELETED_SLACK
from tests.conftest import settings_for
from tests.db.helpers import add_interactions, add_media, new_id

MEDIA = 40


@pytest.fixture
def catalog(db_urls):
    """MEDIA media, media i watched by MEDIA - i users (so the most popular come first), refreshed."""
    media = [new_id() for _ in range(MEDIA)]
    users = [new_id() for _ in range(MEDIA)]
    for m in media:
        add_media(db_urls, m, genres=["Drama"])
    add_interactions(db_urls, [(users[u], media[i], "WATCH", 4.0) for i in range(MEDIA) for u in range(MEDIA - i)])
    run_refresh(settings_for(db_urls), progress=False)
    return media


@pytest.fixture
def runtime(db_urls):
    runtime = build_runtime(settings_for(db_urls))
    yield runtime
    runtime.close()


@pytest.fixture
def catalog_queries(monkeypatch):
    calls = []
    original = CatalogRepository.media_by_ids

    def counted(self, media_ids, deadline=None):
        calls.append(len(media_ids))
        return original(self, media_ids, deadline)

    monkeypatch.setattr(CatalogRepository, "media_by_ids", counted)
    return calls


def delete(db_urls, media_ids):
    with psycopg.connect(db_urls.catalog) as conn:
        conn.execute("UPDATE medias SET deleted_at = now() WHERE id = ANY(%s)", (media_ids,))


def test_few_deletions_cost_no_extra_query(db_urls, catalog, runtime, catalog_queries):
    delete(db_urls, catalog[:DELETED_SLACK])
    page = runtime.recommender.recommend(new_id(), limit=10)
    assert [item.media.id for item in page.items] == catalog[DELETED_SLACK : DELETED_SLACK + 10]
    assert len(catalog_queries) == 1


def test_many_deletions_are_replaced_by_the_next_best_in_more_rounds(db_urls, catalog, runtime, catalog_queries):
    delete(db_urls, catalog[:25])
    users = [new_id(), new_id()]
    pages = runtime.recommender.recommend_many(users, limit=10)
    for user in users:
        assert [item.media.id for item in pages[user].items] == catalog[25:35]
    assert len(catalog_queries) > 1
    # each round asks only for media not asked for before
    assert sum(catalog_queries) <= MEDIA


def test_a_page_is_short_only_when_the_catalog_has_no_more(db_urls, catalog, runtime):
    delete(db_urls, catalog[:35])
    page = runtime.recommender.recommend(new_id(), limit=10)
    assert [item.media.id for item in page.items] == catalog[35:]
