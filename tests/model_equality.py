"""Two refreshes' models held equal (services/model_compare.py): the same media, counts and
popularity, and the same neighbours (ties at the k-th aside) within 1e-9 (the Spark engine's tests)."""

from __future__ import annotations

from database.model_repository import ModelRepository
from ml_service import jobs
from services.model_compare import by_row, compare_models, compare_neighbours

__all__ = ["assert_same_model", "assert_same_neighbours", "by_row", "published"]


def published(settings, engine=None):
    """The model jobs.run_refresh publishes with `engine` (default: numpy), as the service loads it."""
    version = jobs.run_refresh(settings, engine=engine)
    with jobs.offline_databases(settings, "test") as databases:
        model = ModelRepository(databases.model).load()
    assert model.info.version == version
    return model


def assert_same_model(expected_model, model, k):
    """Returns (weights compared, largest difference)."""
    comparison = compare_models(expected_model, model, k)
    assert comparison.equal, comparison.describe()
    return comparison.compared, comparison.largest_difference


def assert_same_neighbours(expected, got, k):
    """`by_row` tables; returns (weights compared, largest difference)."""
    comparison = compare_neighbours(expected, got, k)
    assert comparison.equal, comparison.describe()
    return comparison.compared, comparison.largest_difference
