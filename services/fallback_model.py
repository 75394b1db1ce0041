"""Content + popular without a published model: a small stand-in model built from live data.

Used while no model could ever be loaded: a fresh worker while the model database is down, or
a deployment whose refresh job has never run (a worker that loaded a model keeps it when the
tables vanish later). The candidates are the FALLBACK_MEDIA media with most positive
interactions among the RECENT_INTERACTIONS newest ones (engagement_db), described by
catalog_db; with engagement_db down as well, the catalog's FALLBACK_MEDIA newest releases,
newest ranked as most popular. The stand-in has no neighbours, so `scoring.rank_for_user`
ranks the candidates by genre match (content score) and fills with popularity: the same code
as with a real model, with every collaborative score 0.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from database.catalog_repository import CatalogRepository
from database.deadline import Deadline
from database.engagement_repository import EngagementRepository
from database.pools import Unavailable
from database.records import Media, ModelData, ModelInfo

FALLBACK_MEDIA = 1000
RECENT_INTERACTIONS = 100_000
# Seconds a stand-in is reused; short when it was built without engagement_db, so that real
# popularity returns within seconds of engagement_db.
FALLBACK_TTL = 60.0
FALLBACK_TTL_DEGRADED = 2.0
# Share of the request's time left that engagement_db may use; catalog_db keeps the rest.
ENGAGEMENT_SHARE = 0.3


@dataclass(frozen=True)
class Fallback:
    """A stand-in model and the databases it had to do without."""

    model: ModelData
    degraded: tuple[str, ...]
    built_at: float


class FallbackModels:
    """Builds and briefly caches the stand-in model; raises Unavailable("catalog_db") without the catalog."""

    def __init__(
        self,
        engagement: EngagementRepository,
        catalog: CatalogRepository,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engagement = engagement
        self._catalog = catalog
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: Fallback | None = None

    def current(self, deadline: Deadline) -> Fallback:
        """The cached stand-in while fresh, else a new one, built within `deadline`.

        A request that finds another one building waits for it no longer than its deadline.
        """
        if not self._lock.acquire(timeout=deadline.remaining()):
            raise Unavailable("catalog_db")
        try:
            cached = self._cached
            if cached is None or self._clock() - cached.built_at >= (
                FALLBACK_TTL_DEGRADED if cached.degraded else FALLBACK_TTL
            ):
                self._cached = cached = self._build(deadline)
            return cached
        finally:
            self._lock.release()

    def _build(self, deadline: Deadline) -> Fallback:
        degraded: tuple[str, ...] = ()
        try:
            popular = self._engagement.recently_popular_media(
                RECENT_INTERACTIONS, FALLBACK_MEDIA, deadline.share(ENGAGEMENT_SHARE)
            )
        except Unavailable:
            popular, degraded = [], ("engagement_db",)
        if popular:
            counts = dict(popular)
            media = list(self._catalog.media_by_ids(list(counts), deadline).values())
            popularity = [float(counts[m.id]) for m in media]
        else:
            media = self._catalog.newest_media(FALLBACK_MEDIA, deadline)
            popularity = [float(len(media) - rank) for rank in range(len(media))]
        return Fallback(stand_in_model(media, popularity), degraded, self._clock())


def stand_in_model(media: list[Media], popularity: list[float]) -> ModelData:
    """A ModelData over `media` with their genres and `popularity`, and no neighbours."""
    order = sorted(range(len(media)), key=lambda i: media[i].id.bytes)
    ordered = [media[i] for i in order]
    genre_names = tuple(sorted({genre for m in ordered for genre in m.genres}))
    genre_position = {name: g for g, name in enumerate(genre_names)}
    members: list[list[int]] = [[] for _ in genre_names]
    for idx, m in enumerate(ordered):
        for genre in m.genres:
            members[genre_position[genre]].append(idx)
    info = ModelInfo(
        version=0,
        built_at=datetime.now(timezone.utc),
        interactions_count=0,
        users_count=0,
        media_count=len(ordered),
        neighbours_count=0,
        newest_interaction=None,
        build_seconds=0.0,
    )
    type_names = tuple(sorted({m.media_type for m in ordered}))
    return ModelData(
        info=info,
        media_ids=np.frombuffer(b"".join(m.id.bytes for m in ordered), dtype="V16").copy(),
        popularity=np.array([popularity[i] for i in order], dtype=np.float32),
        genre_names=genre_names,
        media_genres=[np.array(idx, dtype=np.int32) for idx in members],
        neighbour_indptr=np.zeros(len(ordered) + 1, dtype=np.int64),
        neighbour_idx=np.zeros(0, dtype=np.int32),
        neighbour_similarity=np.zeros(0, dtype=np.float32),
        media_type_names=type_names,
        media_type=np.array([type_names.index(m.media_type) for m in ordered], dtype=np.int16),
        release_year=np.array([m.release_year or 0 for m in ordered], dtype=np.int32),
    )
