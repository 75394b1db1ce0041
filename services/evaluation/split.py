"""The evaluation split: per user, the newest 20% of ratings (rounded up) are the test set."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from services.movielens_import import LIKE_AT_LEAST, Ratings

TEST_SHARE = 0.2
# Users with at most this many train interactions form the cold slice.
COLD_AT_MOST = 5


@dataclass(frozen=True)
class Split:
    """Train ratings (what the models see) and, per evaluated user, the relevant test movies."""

    train: Ratings
    test: Ratings
    relevant: dict[int, frozenset[int]]  # user -> test movies rated >= LIKE_AT_LEAST, only users with any
    train_counts: dict[int, int]  # user -> number of train ratings (0 when all went to test)

    @property
    def users(self) -> list[int]:
        """The evaluated users (those with at least one relevant test movie), ascending."""
        return sorted(self.relevant)

    @property
    def cold_users(self) -> list[int]:
        """Evaluated users with COLD_AT_MOST or fewer train interactions."""
        return [u for u in self.users if self.train_counts.get(u, 0) <= COLD_AT_MOST]


def temporal_split(ratings: Ratings, test_share: float = TEST_SHARE) -> Split:
    """Per user, sort ratings by timestamp (ties by movie id) and hold out the last ceil(share·n)."""
    order = np.lexsort((ratings.movie, ratings.timestamp, ratings.user))
    user_sorted = ratings.user[order]
    users, starts, counts = np.unique(user_sorted, return_index=True, return_counts=True)
    test_counts = np.array([math.ceil(test_share * c) for c in counts.tolist()], dtype=np.int64)
    # Position of each sorted rating within its user's history.
    position = np.arange(len(order)) - np.repeat(starts, counts)
    is_test_sorted = position >= np.repeat(counts - test_counts, counts)
    is_test = np.zeros(len(ratings), dtype=bool)
    is_test[order] = is_test_sorted
    train, test = ratings.subset(~is_test), ratings.subset(is_test)
    relevant: dict[int, set[int]] = {}
    liked = test.rating >= LIKE_AT_LEAST
    for user, movie in zip(test.user[liked].tolist(), test.movie[liked].tolist()):
        relevant.setdefault(user, set()).add(movie)
    train_counts = dict(zip(users.tolist(), (counts - test_counts).tolist()))
    return Split(train, test, {u: frozenset(m) for u, m in relevant.items()}, train_counts)


def describe(test_share: float = TEST_SHARE, user_sample: str = "all", validation: bool = False) -> str:
    """The protocol in one sentence, for metrics.json and the report."""
    users = "" if user_sample == "all" else f"only users with an {user_sample} id; "
    again = (
        "the test set is then set aside and the same split cut from the train ratings: the models are "
        "scored on that validation set; " if validation else ""
    )
    return (
        f"{users}per user, ratings sorted by timestamp; the last {test_share:.0%} (rounded up) are the test set, "
        f"the rest train; {again}a test item is relevant when rated >= {LIKE_AT_LEAST:g}; only train data is "
        "imported; items a user has in train are never recommended to them; users without a relevant "
        f"test item are skipped; cold slice: users with <= {COLD_AT_MOST} train interactions"
    )
