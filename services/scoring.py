"""The recommendation arithmetic: pure functions of the model arrays and one user's data, no I/O.

The API and the offline evaluation both rank through `rank_for_user`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable
from uuid import UUID

import numpy as np

from database.records import Interaction, ModelData

POSITIVE_TYPES = frozenset({"LIKE", "WATCH"})
# Hybrid scores below this count as zero: such an item is popular-filled, not hybrid-ranked.
MIN_HYBRID_SCORE = 1e-6
# Popularity breaks ties between equal hybrid scores without ever outweighing a real
# difference: it adds at most this much to the ranking key.
POPULARITY_TIEBREAK = 1e-9
# How a user's interaction values weigh their positive media (Settings.history_weighting):
# "centred" by the user's own mean and spread, or the "raw" values.
HISTORY_WEIGHTINGS = ("centred", "raw")
# Centred weights: max(z · n / (n + CENTRED_PRIOR_COUNT) + CENTRED_OFFSET, 0) + CENTRED_FLOOR,
# z in the user's standard deviations, n the user's positive media.
CENTRED_OFFSET = 0.5
CENTRED_FLOOR = 0.05
CENTRED_PRIOR_COUNT = 10


@dataclass(frozen=True)
class Weights:
    """How content and collaborative scores blend into the hybrid score."""

    content: float = 0.4
    collaborative: float = 0.6


@dataclass(frozen=True)
class UserSignals:
    """One user's data in model indices: what they liked, what to exclude, which genres they prefer."""

    positive_idx: np.ndarray  # media engaged with positively (LIKE/WATCH, never disliked)
    positive_weight: np.ndarray  # their interaction values
    excluded_idx: np.ndarray  # every media the user interacted with in any way
    genre_idx: np.ndarray  # the user's preferred genres known to the model (into genre_names)
    genre_count: int  # all the user's preferred genres: the content score's denominator


@dataclass(frozen=True)
class Ranking:
    """The best media for one user, best first, with the parts of each score."""

    media_idx: np.ndarray
    score: np.ndarray
    content: np.ndarray
    collaborative: np.ndarray

    @property
    def is_hybrid(self) -> np.ndarray:
        """True where the item was ranked by its hybrid score, False where popularity filled it."""
        return self.score >= MIN_HYBRID_SCORE


def media_indices(model: ModelData, media_ids: Iterable[UUID]) -> tuple[np.ndarray, np.ndarray]:
    """Model indices of `media_ids`, and a mask of which ids the model knows."""
    raw = np.frombuffer(b"".join(m.bytes for m in media_ids), dtype="V16")
    if len(raw) == 0 or len(model.media_ids) == 0:
        return np.zeros(len(raw), dtype=np.int64), np.zeros(len(raw), dtype=bool)
    idx = np.searchsorted(model.media_ids, raw)
    idx_clipped = np.minimum(idx, len(model.media_ids) - 1)
    return idx_clipped, model.media_ids[idx_clipped] == raw


def user_signals(
    model: ModelData, genres: Iterable[str], history: Iterable[Interaction], history_weighting: str = "centred"
) -> UserSignals:
    """Aggregate a user's interactions per media and map everything to model indices.

    A media's value is its largest LIKE/WATCH interaction value (1 when the value is missing);
    a media the user ever disliked carries no positive weight. The positive weights are those
    values centred on the user (see `centred_weights`) or, with history_weighting="raw", as is.
    """
    weight: dict[UUID, float] = {}
    disliked: set[UUID] = set()
    for item in history:
        if item.type == "DISLIKE":
            disliked.add(item.media_id)
        elif item.type in POSITIVE_TYPES:
            value = 1.0 if item.value is None else max(float(item.value), 0.0)
            weight[item.media_id] = max(weight.get(item.media_id, 0.0), value)
    interacted = list(weight.keys() | disliked)
    excluded, known = media_indices(model, interacted)
    positives = [m for m in weight if m not in disliked and weight[m] > 0]
    positive_idx, positive_known = media_indices(model, positives)
    positive_weight = np.array([weight[m] for m in positives], dtype=np.float64)
    if history_weighting == "centred":
        positive_weight = centred_weights(positive_weight)
    genres = set(genres)
    genre_idx = np.array([i for i, name in enumerate(model.genre_names) if name in genres], dtype=np.int64)
    return UserSignals(
        positive_idx=positive_idx[positive_known],
        positive_weight=positive_weight[positive_known],
        excluded_idx=excluded[known],
        genre_idx=genre_idx,
        genre_count=len(genres),
    )


def centred_weights(values: np.ndarray) -> np.ndarray:
    """Weights from one user's values, relative to that user: max(z · n / (n + 10) + 0.5, 0) + 0.05.

    z is each value in standard deviations from the user's mean, so a generous rater's 4 and
    a strict rater's 4 stop meaning the same, and what the user liked most leads. The mean and
    spread of a short history say little, so z is shrunk by n / (n + 10) (n values): a new
    user's media weigh nearly alike. The result does not depend on the value scale (stars,
    percent watched); all-equal values weigh the same; the floor keeps every media in play.
    """
    n = len(values)
    if n == 0:
        return values
    spread = values.std()
    z = (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)
    return np.maximum(z * (n / (n + CENTRED_PRIOR_COUNT)) + CENTRED_OFFSET, 0.0) + CENTRED_FLOOR


def collaborative_scores(model: ModelData, positive_idx: np.ndarray, positive_weight: np.ndarray) -> np.ndarray:
    """Sum over the user's positive media of weight × similarity to each neighbour, scaled to [0, 1]."""
    scores = np.zeros(len(model.media_ids), dtype=np.float64)
    if len(positive_idx) == 0:
        return scores
    starts = model.neighbour_indptr[positive_idx]
    lengths = model.neighbour_indptr[positive_idx + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return scores
    # Positions of every neighbour entry of every positive media, without a Python loop.
    positions = np.arange(total) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    contributions = np.repeat(positive_weight, lengths) * model.neighbour_similarity[positions]
    scores += np.bincount(model.neighbour_idx[positions], weights=contributions, minlength=len(scores))
    top = scores.max()
    if top > 0:
        scores /= top
    return scores


def content_scores(model: ModelData, genre_idx: np.ndarray, genre_count: int) -> np.ndarray:
    """Matching genres / the user's total preferred genres, for every media."""
    scores = np.zeros(len(model.media_ids), dtype=np.float64)
    if genre_count == 0:
        return scores
    for g in genre_idx:
        scores[model.media_genres[g]] += 1.0
    scores /= genre_count
    return scores


def rank_for_user(model: ModelData, signals: UserSignals, weights: Weights, count: int) -> Ranking:
    """The `count` best media the user has not interacted with, by hybrid score then popularity.

    Media with a hybrid score come first; popular media fill the remaining places, so every
    user gets `count` items as long as the catalog has that many they have not seen.
    """
    content = content_scores(model, signals.genre_idx, signals.genre_count)
    collaborative = collaborative_scores(model, signals.positive_idx, signals.positive_weight)
    hybrid = weights.content * content + weights.collaborative * collaborative
    hybrid[hybrid < MIN_HYBRID_SCORE] = 0.0
    top_popularity = float(model.popularity.max()) if len(model.popularity) else 0.0
    key = hybrid.copy()
    if top_popularity > 0:
        key += POPULARITY_TIEBREAK * (model.popularity / top_popularity)
    key[signals.excluded_idx] = -np.inf
    available = len(key) - len(np.unique(signals.excluded_idx))
    count = max(0, min(count, available))
    if count == 0:
        empty = np.zeros(0)
        return Ranking(np.zeros(0, dtype=np.int64), empty, empty, empty)
    top = np.argpartition(-key, count - 1)[:count]
    top = top[np.argsort(-key[top], kind="stable")]
    return Ranking(top, hybrid[top], content[top], collaborative[top])
