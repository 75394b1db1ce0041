"""The refresh's validation slice: some users' most recent positive interactions held out, and
how well a model ranks them back through the serving code (services/scoring.py).

The cut is the evaluator's (services/evaluation/split.py) on the refresh's own data: each
sampled user's newest TEST_SHARE of positive pairs (rounded up) is held out, the liked ones
among them to be found (see cut); the model under
test is built on the rest and ranks for the sampled users as a request would (their other
pairs as history, their preferred genres, everything they touched excluded). NDCG@10 and
recall@10 over the held-out media say how good it is; user coverage, how many got a full list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from database.records import History, ModelData
from services import scoring
from services.evaluation.metrics import ndcg_at_k, recall_at_k

# Users sampled for the slice: enough for a stable mean (the standard error of NDCG@10 over
# 2,000 users is about 0.005), few enough that a ranking pass takes a second at 25M.
SAMPLE_USERS = 2_000
# Fewer eligible users than this and there is no validation (the data is too small to say).
MIN_USERS = 50
# A sampled user needs this many positive pairs: one held out, the rest a history.
MIN_POSITIVE = 3
TEST_SHARE = 0.2
K = 10
SEED = 0


@dataclass(frozen=True)
class Quality:
    """How a model ranked the held-out media of the slice's users."""

    ndcg: float
    recall: float
    user_coverage: float
    users: int
    # NDCG@K per user of the slice, in its order: what two settings are compared on (tuning.py).
    per_user: np.ndarray | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        return {"ndcg": round(self.ndcg, 6), "recall": round(self.recall, 6),
                "user_coverage": round(self.user_coverage, 6), "users": self.users}


@dataclass(frozen=True)
class Slice:
    """The validation users, what each keeps as history and what is held out (model indices)."""

    users: np.ndarray  # user numbers (Interactions.user), ascending
    history: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per user: media, positive value, disliked
    held_out: list[frozenset[int]]  # per user: the held-out media
    train: np.ndarray  # bool per pair of the interactions: what a candidate is built on
    genres: Mapping[int, frozenset[str]] = None  # user number -> preferred genres (user_db)

    def with_genres(self, genres: Mapping[int, frozenset[str]]) -> "Slice":
        return replace(self, genres=genres)


def cut(user: np.ndarray, media: np.ndarray, positive: np.ndarray, value: np.ndarray, disliked: np.ndarray,
        newest: np.ndarray, liked: np.ndarray | None = None, sample: int = SAMPLE_USERS,
        seed: int = SEED) -> Slice | None:
    """The slice of the (user, media) pairs given (Interactions' arrays; `value` the pair's
    positive value, `disliked` whether it was ever disliked, `liked` whether it has a LIKE);
    None when fewer than MIN_USERS users have MIN_POSITIVE positive pairs. Deterministic for
    the same pairs and seed.

    What a model should find is what the user liked: of the held-out pairs, those with a LIKE
    when the data has any (a watch alone says less), as the evaluator counts a held-out rating
    relevant at 4 stars or more. A sampled user with nothing to find is left out of the slice."""
    positives = np.bincount(user[positive], minlength=int(user.max()) + 1 if len(user) else 0)
    eligible = np.flatnonzero(positives >= MIN_POSITIVE)
    if len(eligible) < MIN_USERS:
        return None
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(eligible, min(sample, len(eligible)), replace=False))
    chosen = np.flatnonzero(np.isin(user, users))
    # The chosen users' pairs by user, then positive ones newest last (ties: lower media first).
    order = chosen[np.lexsort((media[chosen], newest[chosen], positive[chosen], user[chosen]))]
    bounds = np.searchsorted(user[order], np.r_[users, users[-1] + 1])
    relevant = liked if liked is not None and liked.any() else positive
    train = np.ones(len(user), dtype=bool)
    kept_users, history, held_out = [], [], []
    for u, start, stop, n in zip(users.tolist(), bounds[:-1].tolist(), bounds[1:].tolist(), positives[users].tolist()):
        rows = order[start:stop]
        hold = math.ceil(TEST_SHARE * n)
        out, kept = rows[len(rows) - hold:], rows[: len(rows) - hold]
        found = out[relevant[out]]
        if len(found) == 0:
            continue
        train[out] = False
        kept_users.append(u)
        held_out.append(frozenset(media[found].tolist()))
        history.append((media[kept], value[kept], disliked[kept]))
    if len(kept_users) < MIN_USERS:
        return None
    return Slice(np.array(kept_users, dtype=users.dtype), history, held_out, train)


def measure(model: ModelData, slice_: Slice, weights: scoring.Weights, history_weighting: str) -> Quality:
    """NDCG@K, recall@K and user coverage of `model` ranking the slice's users with these settings
    (user_signals and rank_for_user, as a request ranks)."""
    recall = covered = 0.0
    ndcg = np.zeros(len(slice_.users))
    pool = scoring.Pool.of(model)
    genres = slice_.genres or {}
    for n, user in enumerate(slice_.users.tolist()):
        media, value, disliked = slice_.history[n]
        history = History(model.media_ids[media], value.astype(np.float64), disliked)
        signals = scoring.user_signals(model, genres.get(user, ()), history, history_weighting)
        ranked = scoring.rank_for_user(model, signals, weights, K, pool).media_idx.tolist()
        ndcg[n] = ndcg_at_k(ranked, slice_.held_out[n], K)
        recall += recall_at_k(ranked, slice_.held_out[n], K)
        covered += len(ranked) >= K
    count = len(slice_.users)
    return Quality(float(ndcg.mean()), recall / count, covered / count, count, ndcg)  # a slice has MIN_USERS or more
