"""Two refreshes' models held equal: the same media, counts and popularity, and the same
neighbours (ties at the k-th aside) within 1e-9 (the Spark engine's tests)."""

from __future__ import annotations

import numpy as np

from database.model_repository import ModelRepository
from ml_service import jobs


def published(settings, engine=None):
    """The model jobs.run_refresh publishes with `engine` (default: numpy), as the service loads it."""
    version = jobs.run_refresh(settings, engine=engine)
    with jobs.offline_databases(settings, "test") as databases:
        model = ModelRepository(databases.model).load()
    assert model.info.version == version
    return model


def by_row(media, idx, weight):
    """{media index: {neighbour index: weight}} of a neighbour table."""
    rows: dict[int, dict[int, float]] = {}
    for m, j, w in zip(media.tolist(), idx.tolist(), weight.tolist()):
        rows.setdefault(m, {})[j] = w
    return rows


def model_rows(model):
    counts = np.diff(model.neighbour_indptr)
    return by_row(np.repeat(np.arange(len(counts)), counts), model.neighbour_idx, model.neighbour_similarity)


def assert_same_model(expected_model, model, k):
    """The same media, counts and popularity (1e-6 relative), and the same neighbours
    (`assert_same_neighbours`). Returns (weights compared, largest difference)."""
    assert np.array_equal(model.media_ids, expected_model.media_ids)
    for count in ("interactions_count", "users_count", "media_count", "neighbours_count", "newest_interaction"):
        assert getattr(model.info, count) == getattr(expected_model.info, count), count
    np.testing.assert_allclose(model.popularity, expected_model.popularity, rtol=1e-6, atol=0)
    return assert_same_neighbours(model_rows(expected_model), model_rows(model), k)


def assert_same_neighbours(expected, got, k):
    """Per media (`by_row`) the same number of neighbours, every one above the k-th weight in
    both, the others tied at the k-th, and the weights of the neighbours in both within 1e-9.
    Returns (weights compared, largest difference)."""
    assert expected.keys() == got.keys()
    compared = 0
    worst = 0.0
    for media, neighbours_of in expected.items():
        spark_neighbours = got[media]
        assert len(spark_neighbours) == len(neighbours_of), media
        if len(neighbours_of) < k:  # every neighbour with a weight: no tie left any out
            assert spark_neighbours.keys() == neighbours_of.keys(), media
        else:  # ties at the k-th weight may keep either
            kth = min(abs(w) for w in neighbours_of.values())
            assert abs(kth - min(abs(w) for w in spark_neighbours.values())) <= 1e-9, media
            for j, w in neighbours_of.items():
                if abs(w) > kth + 1e-9:
                    assert j in spark_neighbours, (media, j)
            for j in neighbours_of.keys() - spark_neighbours.keys():  # another of those tied at the k-th
                assert abs(abs(neighbours_of[j]) - kth) <= 1e-9, (media, j)
        for j in neighbours_of.keys() & spark_neighbours.keys():
            worst = max(worst, abs(neighbours_of[j] - spark_neighbours[j]))
            compared += 1
    assert worst <= 1e-9, worst
    return compared, worst
