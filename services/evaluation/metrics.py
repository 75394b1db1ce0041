"""Ranking metrics at K with binary relevance, and intra-list genre diversity, averaged over users."""

from __future__ import annotations

import math
from itertools import combinations
from typing import AbstractSet, Mapping, Sequence


def precision_at_k(recommended: Sequence[int], relevant: frozenset[int], k: int) -> float:
    """Relevant items among the first k, divided by k (a short list is not rewarded)."""
    return sum(1 for item in recommended[:k] if item in relevant) / k


def recall_at_k(recommended: Sequence[int], relevant: frozenset[int], k: int) -> float:
    """Relevant items among the first k, divided by all relevant items."""
    if not relevant:
        return 0.0
    return sum(1 for item in recommended[:k] if item in relevant) / len(relevant)


def ndcg_at_k(recommended: Sequence[int], relevant: frozenset[int], k: int) -> float:
    """DCG of the first k (gain 1 per relevant item, discount log2(rank + 1)) over the ideal DCG."""
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def average_precision_at_k(recommended: Sequence[int], relevant: frozenset[int], k: int) -> float:
    """Mean of precision@rank at each relevant rank within k, over min(|relevant|, k)."""
    hits, total = 0, 0.0
    for rank, item in enumerate(recommended[:k]):
        if item in relevant:
            hits += 1
            total += hits / (rank + 1)
    denominator = min(len(relevant), k)
    return total / denominator if denominator else 0.0


def summarise(
    recommendations: Mapping[int, Sequence[int]], relevant: Mapping[int, frozenset[int]], users: Sequence[int], k: int
) -> dict:
    """Mean precision, recall, NDCG and MAP at k over `users`, plus catalog and user coverage.

    A user missing from `recommendations` counts as an empty list. With no users, every mean
    is None (the slice is empty) and the counts are 0.
    """
    lists = {u: list(recommendations.get(u, ()))[:k] for u in users}
    n = len(users)

    def mean(metric) -> float | None:
        return sum(metric(lists[u], relevant[u], k) for u in users) / n if n else None

    return {
        "users": n,
        "precision": mean(precision_at_k),
        "recall": mean(recall_at_k),
        "ndcg": mean(ndcg_at_k),
        "map": mean(average_precision_at_k),
        "catalog_coverage": len({item for items in lists.values() for item in items}),
        "user_coverage": sum(1 for items in lists.values() if len(items) >= k) / n if n else None,
    }


def paired_difference(
    a: Mapping[int, Sequence[int]], b: Mapping[int, Sequence[int]], relevant: Mapping[int, frozenset[int]],
    users: Sequence[int], k: int, metric,
) -> dict | None:
    """How much list `a` beats list `b` on `metric` at k for the same users: the mean of the
    per-user differences and its 95 % interval (mean ± 1.96 standard errors: the users are the
    sample); None with fewer than 2 users. An interval across 0 says the two are not told
    apart on these users."""
    if len(users) < 2:
        return None
    mean, error = mean_and_error([metric(list(a.get(u, ()))[:k], relevant[u], k) - metric(list(b.get(u, ()))[:k], relevant[u], k)
                                  for u in users])
    return {"mean": mean, "low": mean - 1.96 * error, "high": mean + 1.96 * error}


def mean_and_error(values: Sequence[float]) -> tuple[float, float]:
    """The mean of two or more values and its standard error (sample standard deviation / √n)."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def genre_distance(a: AbstractSet[str], b: AbstractSet[str]) -> float:
    """1 - the Jaccard index |a & b| / |a | b| of two genre sets.

    Two media without genres are at distance 1: their Jaccard index is taken as 0, as the
    re-ranker's genre similarity (services.scoring.diversify) takes it.
    """
    union = len(a | b)
    return 1.0 - (len(a & b) / union if union else 0.0)


def intra_list_diversity(recommended: Sequence[int], genres: Mapping[int, AbstractSet[str]], k: int) -> float | None:
    """ILD@k of one list: the mean genre_distance over the unordered pairs of its first k items.

    None when the first k hold fewer than 2 items (no pair). `genres` maps each item to its
    genre set (for MovieLens, movies.csv's genres, "(no genres listed)" as the empty set).
    """
    pairs = list(combinations(recommended[:k], 2))
    if not pairs:
        return None
    return sum(genre_distance(genres[a], genres[b]) for a, b in pairs) / len(pairs)


def mean_intra_list_diversity(
    recommendations: Mapping[int, Sequence[int]],
    genres: Mapping[int, AbstractSet[str]],
    users: Sequence[int],
    k: int,
) -> float | None:
    """ILD@k averaged over the `users` whose top k hold at least 2 items; None when none does.

    A user missing from `recommendations` counts as an empty list (and so is left out).
    """
    values = [intra_list_diversity(list(recommendations.get(u, ()))[:k], genres, k) for u in users]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
