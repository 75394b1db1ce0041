"""Build small in-memory ModelData for unit tests of pure scoring logic."""

from __future__ import annotations

import uuid
from datetime import datetime

import numpy as np

from database.records import History, Media, ModelData, ModelInfo


def media_uuid(n: int) -> uuid.UUID:
    """A readable, sortable media id: the n-th media of a test model."""
    return uuid.UUID(int=n + 1)


def make_model(
    genres: list[list[str]],
    popularity: list[float],
    neighbours: dict[int, list[tuple[int, float]]] | None = None,
    ids: list[uuid.UUID] | None = None,
) -> ModelData:
    """A model of len(genres) media; media i has id media_uuid(i) (or ids[i], sorted) and neighbours[i]."""
    n = len(genres)
    ids = np.frombuffer(b"".join((media_uuid(i) if ids is None else ids[i]).bytes for i in range(n)), dtype="V16")
    names = sorted({g for gs in genres for g in gs})
    neighbours = neighbours or {}
    indptr = [0]
    idx, sim = [], []
    for i in range(n):
        for j, s in neighbours.get(i, []):
            idx.append(j)
            sim.append(s)
        indptr.append(len(idx))
    return ModelData(
        info=ModelInfo(1, datetime(2024, 1, 1), 0, 0, n, len(idx), None, 0.0),
        media_ids=ids,
        popularity=np.array(popularity, dtype=np.float32),
        genre_names=tuple(names),
        media_genres=[np.array([i for i, gs in enumerate(genres) if name in gs], dtype=np.int32) for name in names],
        neighbour_indptr=np.array(indptr, dtype=np.int64),
        neighbour_idx=np.array(idx, dtype=np.int32),
        neighbour_similarity=np.array(sim, dtype=np.float32),
    )


def make_history(values: dict[int, float]) -> History:
    """A history of media number -> positive value (0: disliked, see History)."""
    positive = np.array(list(values.values()), dtype=np.float64)
    return History(
        np.frombuffer(b"".join(media_uuid(i).bytes for i in values), dtype="V16"),
        positive,
        positive == 0,
    )


def make_media(genres: list[str], media_id: uuid.UUID | None = None) -> Media:
    """A catalog media with these genres (a new id by default)."""
    return Media(media_id or uuid.uuid4(), "A title", "movie", 2020, None, tuple(sorted(genres)))
