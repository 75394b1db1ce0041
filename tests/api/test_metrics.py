"""/metrics in one process (the Flask test client): what each request adds, and no user id as a label."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ml_service.app import create_app
from services.movielens_import import user_uuid
from tests.conftest import settings_for

UNKNOWN = "00000000-0000-0000-0000-00000000abcd"
RULE = "/api/recommendations/<user_id:user_id>"  # the rule as Flask names it (converter excludes "batch")


@pytest.fixture(scope="module")
def app(movielens_urls):
    app = create_app(settings_for(movielens_urls))
    yield app
    app.extensions["ml_service"].close()


def scrape(client) -> dict[tuple, float]:
    """Samples of /metrics keyed by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)


def test_requests_are_counted_by_url_rule_and_never_by_user_id(app):
    client = app.test_client()
    before = scrape(client)
    users = [str(user_uuid(i)) for i in (1, 2, 3)]
    for user in users:
        assert client.get(f"/api/recommendations/{user}").status_code == 200
    assert client.get("/api/recommendations/not-a-uuid").status_code == 400
    after = scrape(client)
    count = "flask_http_request_duration_seconds_count"
    assert value(after, count, method="GET", status=200, url_rule=RULE) - value(before, count, method="GET", status=200, url_rule=RULE) == 3
    assert value(after, count, method="GET", status=400, url_rule=RULE) - value(before, count, method="GET", status=400, url_rule=RULE) == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert not any(user in text for user in users) and "not-a-uuid" not in text


def test_items_by_source_and_fallback_pages(app):
    client = app.test_client()
    before = scrape(client)
    known = client.get(f"/api/recommendations/{user_uuid(1)}?limit=10").get_json()
    unknown = client.get(f"/api/recommendations/{UNKNOWN}?limit=7").get_json()
    batch = client.post("/api/recommendations/batch", json={"user_ids": [str(user_uuid(4)), UNKNOWN], "limit": 5})
    assert batch.status_code == 200
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    served = [known["recommendations"], unknown["recommendations"]] + [
        page["recommendations"] for page in batch.get_json()["results"].values()
    ]
    for source in ("hybrid", "popular"):
        expected = sum(item["source"] == source for page in served for item in page)
        assert delta("ml_recommended_items_total", source=source) == expected
    assert delta("ml_recommendation_pages_total", endpoint="single", fallback="full") == 1  # the unknown user
    assert delta("ml_recommendation_pages_total", endpoint="batch", fallback="full") == 1
    assert delta("ml_recommendation_duration_seconds_count", endpoint="single") == 2
    assert delta("ml_recommendation_duration_seconds_count", endpoint="batch") == 1


def test_pool_usage_and_model_age(app):
    client = app.test_client()
    before = scrape(client)
    client.get(f"/api/recommendations/{user_uuid(5)}")
    after = scrape(client)
    for database in ("user_db", "catalog_db", "engagement_db"):
        assert value(after, "ml_db_pool_requests_total", database=database) > value(
            before, "ml_db_pool_requests_total", database=database
        )
        assert value(after, "ml_db_pool_max_connections", database=database) == 4
        assert value(after, "ml_db_pool_connections_in_use", database=database) == 0  # all returned
    ready = client.get("/health/ready").get_json()
    assert value(after, "ml_model_version") == ready["model"]["version"]
    assert value(after, "ml_model_age_seconds") > 0
    assert value(after, "ml_workers_without_model") == 0
    validation = client.get("/api/model").get_json()["validation"]
    for key in ("ndcg", "recall", "user_coverage"):
        assert value(after, f"ml_model_validation_{key}") == validation[key] > 0
