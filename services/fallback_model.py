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
from database.engagement_repository import EngagementRepository
from database.records import Media, ModelData, ModelInfo
from services.availability import Availability, Unavailable

FALLBACK_MEDIA = 1000
RECENT_INTERACTIONS = 100_000
# Seconds a stand-in is reused; short when it was built without engagement_db, so that real
# popularity returns within seconds of engagement_db.
FALLBACK_TTL = 60.0
FALLBACK_TTL_DEGRADED = 2.0


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
        availability: Availability,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engagement = engagement
        self._catalog = catalog
        self._availability = availability
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: Fallback | None = None

    def current(self) -> Fallback:
        """The cached stand-in while fresh, else a new one."""
        with self._lock:
            cached = self._cached
            if cached is None or self._clock() - cached.built_at >= (
                FALLBACK_TTL_DEGRADED if cached.degraded else FALLBACK_TTL
            ):
                self._cached = cached = self._build()
            return cached

    def _build(self) -> Fallback:
        degraded: tuple[str, ...] = ()
        try:
            popular = self._availability["engagement_db"].call(
                lambda: self._engagement.recently_popular_media(RECENT_INTERACTIONS, FALLBACK_MEDIA)
            )
        except Unavailable:
            popular, degraded = [], ("engagement_db",)
        catalog = self._availability["catalog_db"]
        if popular:
            counts = dict(popular)
            media = list(catalog.call(lambda: self._catalog.media_by_ids(list(counts))).values())
            popularity = [float(counts[m.id]) for m in media]
        else:
            media = catalog.call(lambda: self._catalog.newest_media(FALLBACK_MEDIA))
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
    return ModelData(
        info=info,
        media_ids=np.frombuffer(b"".join(m.id.bytes for m in ordered), dtype="V16").copy(),
        popularity=np.array([popularity[i] for i in order], dtype=np.float32),
        genre_names=genre_names,
        media_genres=[np.array(idx, dtype=np.int32) for idx in members],
        neighbour_indptr=np.zeros(len(ordered) + 1, dtype=np.int64),
        neighbour_idx=np.zeros(0, dtype=np.int32),
        neighbour_similarity=np.zeros(0, dtype=np.float32),
    )
