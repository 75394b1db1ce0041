"""Orchestration: read users, histories and media in batched queries, rank with `scoring`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence
from uuid import UUID

from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.records import Media
from database.user_repository import UserRepository
from services import scoring
from services.model_store import ModelStore

# Extra candidates ranked per user beyond offset + limit, to replace media deleted from the
# catalog since the last refresh without a second round of queries.
DELETED_SLACK = 20


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

    @property
    def count(self) -> int:
        """How many items this page holds."""
        return len(self.items)


class RecommendationService:
    """Ranks media for users: 3 queries (user_db, engagement_db, catalog_db) for 1 or 50 users."""

    def __init__(
        self,
        users: UserRepository,
        catalog: CatalogRepository,
        engagement: EngagementRepository,
        models: ModelStore,
        weights: scoring.Weights,
        history_weighting: str = "centred",
    ) -> None:
        self._users = users
        self._catalog = catalog
        self._engagement = engagement
        self._models = models
        self._weights = weights
        self._history_weighting = history_weighting

    def recommend(self, user_id: UUID, limit: int = 10, offset: int = 0) -> Recommendations:
        """A page of recommendations for one user."""
        return self.recommend_many([user_id], limit, offset)[user_id]

    def recommend_many(self, user_ids: Sequence[UUID], limit: int = 10, offset: int = 0) -> dict[UUID, Recommendations]:
        """A page of recommendations for each distinct user id, in the order first given."""
        model = self._models.current()
        user_ids = list(dict.fromkeys(user_ids))
        profiles = self._users.profiles_by_ids(user_ids)
        histories = self._engagement.histories_by_user_ids(user_ids)
        rankings = {}
        for user_id in user_ids:
            profile = profiles.get(user_id)
            signals = scoring.user_signals(
                model, profile.genres if profile else (), histories.get(user_id, ()), self._history_weighting
            )
            rankings[user_id] = scoring.rank_for_user(model, signals, self._weights, offset + limit + DELETED_SLACK)
        candidate_idx = {int(i) for ranking in rankings.values() for i in ranking.media_idx}
        media_ids = {i: UUID(bytes=model.media_ids[i].tobytes()) for i in candidate_idx}
        media = self._catalog.media_by_ids(list(media_ids.values()))
        results = {}
        for user_id, ranking in rankings.items():
            items = []
            for position, idx in enumerate(ranking.media_idx):
                found = media.get(media_ids[int(idx)])
                if found is not None:
                    items.append(
                        Recommendation(
                            media=found,
                            score=round(float(ranking.score[position]), 6),
                            content_score=round(float(ranking.content[position]), 6),
                            collaborative_score=round(float(ranking.collaborative[position]), 6),
                            source="hybrid" if ranking.is_hybrid[position] else "popular",
                        )
                    )
            results[user_id] = Recommendations(user_id, items[offset : offset + limit], limit, offset)
        return results
