"""Ranking metrics at K with binary relevance, averaged over users."""

from __future__ import annotations

import math
from typing import Mapping, Sequence


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
