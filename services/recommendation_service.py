"""Orchestration: read users, histories and media in batched queries, rank with `scoring`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar
from uuid import UUID

import numpy as np

from database.catalog_repository import CatalogRepository
from database.deadline import Deadline
from database.engagement_repository import EngagementRepository
from database.pools import Unavailable
from database.records import Media, ModelData
from database.user_repository import UserRepository
from services import scoring
from services.errors import DatabaseUnavailable, ModelUnavailable
from services.fallback_model import FallbackModels
from services.filters import MediaFilter
from services.model_store import ModelStore

T = TypeVar("T")

# Extra candidates ranked per user beyond offset + limit, to replace media deleted from the
# catalog since the last refresh without a second round of queries (see _rank_live).
DELETED_SLACK = 3
# Share of the request's time left that each optional database (user_db, engagement_db) may use
# in turn (30 %, then 30 % of the remaining 70 %): even when both hang, catalog_db keeps about
# half, so the answer is degraded, not a 503.
OPTIONAL_SHARE = 0.3
# Seconds a client is told to wait when catalog_db (without which no media can be described) is down.
CATALOG_RETRY_AFTER = 1
# What a degraded answer lacks, in the order responses list it.
DEGRADATIONS = ("user_db", "engagement_db", "model", "model_stale")


@dataclass(frozen=True)
class Recommendation:
    """One recommended media with the parts of its score and where it came from."""

    media: Media
    score: float
    content_score: float
    collaborative_score: float
    source: str  # "hybrid" or "popular"


@dataclass(frozen=True)
class Recommendations:
    """A page of recommendations for one user."""

    user_id: UUID
    items: list[Recommendation]
    limit: int
    offset: int
    # What this answer had to do without (see DEGRADATIONS); empty for full service.
    degraded: tuple[str, ...] = ()
    # The published model version that ranked it; None for the stand-in (degraded "model").
    model_version: int | None = None

    @property
    def count(self) -> int:
        """How many items this page holds."""
        return len(self.items)


class RecommendationService:
    """Ranks media for users: 3 queries (user_db, engagement_db, catalog_db) for 1 or 50 users.

    Degrades instead of failing: without user_db no genre match (collaborative + popular),
    without engagement_db no history (genre match + popular), without a model a stand-in
    (services/fallback_model.py: genre match + popular); each answer lists what it lacked.
    Without catalog_db nothing can be described: DatabaseUnavailable (503, Retry-After).
    All database work of one call ends within `deadline_seconds` (see OPTIONAL_SHARE).
    """

    def __init__(
        self,
        users: UserRepository,
        catalog: CatalogRepository,
        engagement: EngagementRepository,
        models: ModelStore,
        weights: scoring.Weights,
        fallback: FallbackModels,
        deadline_seconds: float,
        history_weighting: str = "centred",
    ) -> None:
        self._users = users
        self._catalog = catalog
        self._engagement = engagement
        self._models = models
        self._weights = weights
        self._fallback = fallback
        self._deadline_seconds = deadline_seconds
        self._history_weighting = history_weighting

    def recommend(
        self,
        user_id: UUID,
        limit: int = 10,
        offset: int = 0,
        arrived_at: float | None = None,
        filters: MediaFilter = MediaFilter(),
        exclude: Sequence[UUID] = (),
    ) -> Recommendations:
        """A page of recommendations for one user."""
        return self.recommend_many([user_id], limit, offset, arrived_at, filters, exclude)[user_id]

    def recommend_many(
        self,
        user_ids: Sequence[UUID],
        limit: int = 10,
        offset: int = 0,
        arrived_at: float | None = None,
        filters: MediaFilter = MediaFilter(),
        exclude: Sequence[UUID] = (),
    ) -> dict[UUID, Recommendations]:
        """A page of recommendations for each distinct user id, in the order first given.

        Only media that pass `filters` and are not in `exclude` are recommended; a filtered page
        is as full as an unfiltered one while the catalog has media that pass. The database work
        ends `deadline_seconds` after `arrived_at` (time.monotonic(); now by default).
        """
        deadline = Deadline((time.monotonic() if arrived_at is None else arrived_at) + self._deadline_seconds)
        lacking: set[str] = set()
        model = self._model(lacking, deadline)
        pool = scoring.Pool.of(model, filters.mask(model)) if filters else None
        excluded_idx = scoring.excluded_indices(model, exclude)
        user_ids = list(dict.fromkeys(user_ids))
        optional = deadline.share(OPTIONAL_SHARE)
        profiles = self._optional(lambda: self._users.profiles_by_ids(user_ids, optional), {}, lacking)
        optional = deadline.share(OPTIONAL_SHARE)
        histories = self._optional(lambda: self._engagement.histories_by_user_ids(user_ids, optional), {}, lacking)
        signals = {}
        for user_id in user_ids:
            profile = profiles.get(user_id)
            genres = profile.genres if profile else ()
            signals[user_id] = scoring.user_signals(
                model, genres, histories.get(user_id), self._history_weighting, excluded_idx
            )
        rankings, media = self._rank_live(model, signals, offset + limit, deadline, pool, filters)
        degraded = tuple(name for name in DEGRADATIONS if name in lacking)
        version = None if "model" in lacking else model.info.version
        results = {}
        for user_id, ranking in rankings.items():
            items = [
                Recommendation(media[idx], score, content, collaborative, "hybrid" if hybrid else "popular")
                for idx, score, content, collaborative, hybrid in zip(
                    ranking.media_idx.tolist(),
                    np.round(ranking.score, 6).tolist(),
                    np.round(ranking.content, 6).tolist(),
                    np.round(ranking.collaborative, 6).tolist(),
                    ranking.is_hybrid.tolist(),
                )
                if media[idx] is not None
            ]
            results[user_id] = Recommendations(user_id, items[offset : offset + limit], limit, offset, degraded, version)
        return results

    def _rank_live(
        self,
        model: ModelData,
        signals: dict[UUID, scoring.UserSignals],
        wanted: int,
        deadline: Deadline,
        pool: scoring.Pool | None,
        filters: MediaFilter,
    ) -> tuple[dict[UUID, scoring.Ranking], dict[int, Media | None]]:
        """Each user's ranking, long enough to hold `wanted` live media, and those media by model index.

        Media deleted from the catalog since the last refresh are still in the model, so each
        ranking holds DELETED_SLACK more than wanted; the catalog query (one for every user)
        tells which are live (None: deleted, or no longer passing `filters` as the catalog
        describes them now). Only when that is not enough for some users, they
        are ranked further and the next candidates asked for: one more query per round.
        """
        counts = dict.fromkeys(signals, wanted + DELETED_SLACK)
        rankings: dict[UUID, scoring.Ranking] = {}
        media: dict[int, Media | None] = {}
        pending = list(signals)
        while pending:
            for user_id in pending:
                rankings[user_id] = scoring.rank_for_user(model, signals[user_id], self._weights, counts[user_id], pool)
            unknown = {i for u in pending for i in rankings[u].media_idx.tolist() if i not in media}
            ids = {UUID(bytes=model.media_ids[i].tobytes()): i for i in unknown}
            found = self._required(lambda: self._catalog.media_by_ids(list(ids), deadline))
            media.update(dict.fromkeys(unknown))
            media.update((ids[media_id], item) for media_id, item in found.items() if filters.matches(item))
            pending = [
                u
                for u in pending
                if len(rankings[u].media_idx) == counts[u]  # the model has more to offer
                and sum(media[i] is not None for i in rankings[u].media_idx.tolist()) < wanted
            ]
            for user_id in pending:
                counts[user_id] *= 2
        return rankings, media

    def _model(self, lacking: set[str], deadline: Deadline) -> ModelData:
        try:
            model = self._models.current()
        except ModelUnavailable:
            fallback = self._required(lambda: self._fallback.current(deadline))
            lacking.update(("model", *fallback.degraded))
            return fallback.model
        if self._models.stale:
            lacking.add("model_stale")
        return model

    @staticmethod
    def _optional(read: Callable[[], T], default: T, lacking: set[str]) -> T:
        """`read()`, or `default` with the database recorded as lacking when it is unavailable."""
        try:
            return read()
        except Unavailable as error:
            lacking.add(error.name)
            return default

    @staticmethod
    def _required(read: Callable[[], T]) -> T:
        """`read()`; catalog_db missing (the only database we cannot do without) is a 503."""
        try:
            return read()
        except Unavailable as error:
            raise DatabaseUnavailable(
                "a database is unavailable; retry shortly", retry_after=CATALOG_RETRY_AFTER
            ) from error
